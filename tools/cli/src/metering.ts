import { type ServiceError, status } from '@grpc/grpc-js';
import { errorInfo, MeteringClient, MeteringRequestError } from '@metering/client';
import {
  type AlertRule,
  AlertRuleKind,
  ApiKeyScope,
  DeliveryStatus,
  WebhookFormat,
  BadRequest,
  type BalanceEntry,
  BalanceEntryKind,
  CreditPolicy,
  GrantKind,
  GrantStatus,
  ChargeEvent,
  ChargeEventKind,
  type Charge,
  ChargeType,
  ExportFormat,
  type DailyUsage,
  type LimitUsage,
  type ListAccountsResponse,
  LimitEnforcement,
  LimitMeasure,
  LimitPeriod,
  LimitScope,
  type Money,
  type ModelPrice,
  PriceRates,
  PricingStatus,
  protoJson,
  RerateMode,
  Status,
  type UsageSums,
} from '@metering/contracts';
import { Command, CommanderError, InvalidArgumentError, Option } from 'commander';
import Decimal from 'decimal.js';
import { createWriteStream, readFileSync } from 'node:fs';
import { once } from 'node:events';
import { type DjangoImportOptions, type DjangoImportReport, importDjango } from './import-django';
import { barChart, csv, type ListingFormat, out, printJson, responseJson, table, terminalWidth } from './output';

/**
 * `metering`: the admin CLI. Speaks the same gRPC API as every client, so it works against any
 * deployment (METERING_ADDRESS, METERING_API_KEY). Every command and subcommand has --help;
 * every listing has --json (the protobuf JSON mapping) and --csv.
 * Exit codes: 0 done, 1 the server refused or failed (the message says why), 2 bad usage.
 */

/** Bad usage found after parsing (exit code 2). */
class UsageError extends Error {}

/** The server did what it was asked, but what it reports failed (exit code 1): a test delivery that did not get through. */
class ReportedFailure extends Error {}

interface Connection {
  address: string;
  apiKey?: string;
  ca?: string;
  tls?: boolean;
}

let connection: Connection = { address: '127.0.0.1:50051' };
let open: MeteringClient | undefined;
const client = (): MeteringClient =>
  (open ??= new MeteringClient({
    address: connection.address,
    apiKey: connection.apiKey,
    tls: connection.ca ? { ca: readFileSync(connection.ca) } : connection.tls,
    deadlineMs: 30_000,
  }));

const money = (m?: Money) => m?.amount || '0';
const PERIOD = { day: LimitPeriod.LIMIT_PERIOD_DAY, month: LimitPeriod.LIMIT_PERIOD_MONTH };
/** A limit's period: --period (a calendar one) or --window-hours (a rolling window), exactly one. */
function limitPeriodOf(o: { period?: keyof typeof PERIOD; windowHours?: number }): { period: LimitPeriod; windowHours: number } {
  if ((o.period === undefined) === (o.windowHours === undefined)) throw new UsageError("give exactly one of option '--period <period>' and option '--window-hours <hours>'");
  return o.windowHours === undefined ? { period: PERIOD[o.period!], windowHours: 0 } : { period: LimitPeriod.LIMIT_PERIOD_ROLLING, windowHours: o.windowHours };
}
const MEASURE = { messages: LimitMeasure.LIMIT_MEASURE_MESSAGES, tokens: LimitMeasure.LIMIT_MEASURE_TOKENS, cost: LimitMeasure.LIMIT_MEASURE_COST };
const CHARGE_TYPE = { completion: ChargeType.CHARGE_TYPE_COMPLETION, plugin: ChargeType.CHARGE_TYPE_PLUGIN, tool: ChargeType.CHARGE_TYPE_TOOL };
const SCOPE = { record: ApiKeyScope.API_KEY_SCOPE_RECORD, read: ApiKeyScope.API_KEY_SCOPE_READ, admin: ApiKeyScope.API_KEY_SCOPE_ADMIN };
const nameOf = <T extends Record<string, number>>(map: T, n: number) => Object.keys(map).find((k) => map[k] === n) ?? String(n);
const kindName = (kind: ChargeEventKind) => (ChargeEventKind[kind] ?? String(kind)).replace('CHARGE_EVENT_KIND_', '').toLowerCase();
const when = (t?: { seconds: string; nanos?: number }) => (t ? new Date(Number(t.seconds) * 1000).toISOString() : '');

/** A cost for people: `unpriced` when no charge of the sums had a price, the unpriced ones named when some had none. */
function costOf(sums: Pick<UsageSums, 'messageCount' | 'unpricedMessageCount' | 'totalCost'> | undefined): string {
  const unpriced = Number(sums?.unpricedMessageCount ?? 0);
  if (unpriced > 0 && unpriced === Number(sums?.messageCount ?? 0)) return 'unpriced';
  return unpriced > 0 ? `${money(sums?.totalCost)} +${unpriced} unpriced` : money(sums?.totalCost);
}

/** The listing options every listing has. */
const listing = (cmd: Command): Command =>
  cmd
    .addOption(new Option('--json', 'print the protobuf JSON mapping of the answer (as buf curl does)').conflicts('csv'))
    .addOption(new Option('--csv', 'print CSV with a header row').conflicts('json'));

// ---- usage

interface UsageOptions extends ListingFormat {
  account: string;
  from: string;
  to: string;
  timeZone: string;
  user: string;
  provider: string;
  model: string;
}

async function usage(o: UsageOptions): Promise<void> {
  const rows: DailyUsage[] = [];
  let pageToken = '';
  let totals: UsageSums | undefined;
  do {
    const page = await client().call('getDailyUsage', {
      accountId: o.account, startDate: o.from, endDate: o.to, userId: o.user, provider: o.provider, model: o.model, chargeType: 0, pageSize: 1000, pageToken, timeZone: o.timeZone,
    });
    rows.push(...page.usage);
    totals = page.totals;
    pageToken = page.nextPageToken;
  } while (pageToken);
  if (o.json) return printJson(responseJson('getDailyUsage', { usage: rows, totals, nextPageToken: '' }));
  if (o.csv) {
    return out(csv(
      ['date', 'user_id', 'provider', 'model', 'charge_type', 'messages', 'unpriced_messages', 'prompt_tokens', 'completion_tokens', 'total_tokens', 'total_cost_usd'],
      rows.map((r) => [r.date, r.userId, r.provider, r.model, nameOf(CHARGE_TYPE, r.chargeType), r.sums!.messageCount, r.sums!.unpricedMessageCount, r.sums!.tokens!.promptTokens, r.sums!.tokens!.completionTokens, r.sums!.tokens!.totalTokens, r.sums!.messageCount === r.sums!.unpricedMessageCount ? '' : money(r.sums!.totalCost)]),
    ));
  }
  out(table(
    ['date', 'user', 'provider', 'model', 'type', 'messages', 'tokens', 'cost USD'],
    rows.map((r) => [r.date, r.userId, r.provider, r.model, nameOf(CHARGE_TYPE, r.chargeType), r.sums!.messageCount, r.sums!.tokens!.totalTokens, costOf(r.sums)]),
    ['messages', 'tokens', 'cost USD'],
  ));
  const unpriced = Number(totals?.unpricedMessageCount ?? 0);
  out(`total: ${totals?.messageCount ?? 0} messages, ${totals?.tokens?.totalTokens ?? 0} tokens, ${money(totals?.totalCost)} USD` + (unpriced ? ` (${unpriced} unpriced)` : ''));
  // Spend per day as bars, when the terminal has room for them.
  const width = terminalWidth();
  if (width >= 60 && rows.length > 0) {
    const days = new Map<string, { cost: Decimal; unpriced: number }>();
    for (const r of rows) {
      const day = days.get(r.date) ?? { cost: new Decimal(0), unpriced: 0 };
      day.cost = day.cost.plus(money(r.sums!.totalCost));
      day.unpriced += Number(r.sums!.unpricedMessageCount);
      days.set(r.date, day);
    }
    const chart = [...days].map(([date, d]) => ({ label: date, value: d.cost, note: `${d.cost.toFixed()} USD${d.unpriced ? ` (+${d.unpriced} unpriced)` : ''}` }));
    out(`\nspend per day (USD)\n${barChart(chart, Math.min(50, width - 50))}`);
  }
}

// ---- charges

interface ChargeFilterOptions {
  account: string;
  from: string;
  to: string;
  user: string;
  provider: string;
  model: string;
  chargeType?: keyof typeof CHARGE_TYPE;
  pricing?: keyof typeof PRICING;
}

const PRICING = { priced: PricingStatus.PRICING_STATUS_PRICED, unpriced: PricingStatus.PRICING_STATUS_UNPRICED };
const filtersOf = (o: ChargeFilterOptions) => ({
  accountId: o.account, startDate: o.from, endDate: o.to, userId: o.user, provider: o.provider, model: o.model,
  chargeType: o.chargeType ? CHARGE_TYPE[o.chargeType] : 0, pricingStatus: o.pricing ? PRICING[o.pricing] : 0,
});
const chargeCost = (c: Charge) => (c.pricingStatus === PricingStatus.PRICING_STATUS_UNPRICED ? 'unpriced' : money(c.totalCost));
const CHARGE_COLUMNS = ['charge id', 'usage time', 'user', 'provider', 'model', 'type', 'tokens', 'cost USD', 'idempotency key'];
const CHARGE_CSV_COLUMNS = ['charge_id', 'usage_time', 'user_id', 'provider', 'model', 'charge_type', 'total_tokens', 'total_cost_usd', 'idempotency_key'];
const chargeRow = (c: Charge) => [c.chargeId, when(c.usageTime), c.userId, c.provider, c.model, nameOf(CHARGE_TYPE, c.chargeType), c.tokens?.totalTokens ?? '0', chargeCost(c), c.idempotencyKey];

async function chargesGet(o: { account: string; chargeId?: string; idempotencyKey?: string; json?: boolean }): Promise<void> {
  if (!o.chargeId === !o.idempotencyKey) throw new UsageError("give exactly one of option '--charge-id <id>' and option '--idempotency-key <key>'");
  const response = await client().call('getCharge', { accountId: o.account, chargeId: o.chargeId ?? '', idempotencyKey: o.idempotencyKey ?? '' });
  if (o.json) return printJson(responseJson('getCharge', response));
  const c = response.charge!;
  const fields: Array<[string, string]> = [
    ['charge id', c.chargeId], ['account', c.accountId], ['user', c.userId], ['idempotency key', c.idempotencyKey], ['model', `${c.provider}/${c.model}`],
    ['type', nameOf(CHARGE_TYPE, c.chargeType)], ['usage time', when(c.usageTime)], ['recorded', when(c.recordTime)], ['usage date', c.usageDate],
    ['tokens', `${c.tokens?.totalTokens ?? 0} (prompt ${c.tokens?.promptTokens ?? 0}, completion ${c.tokens?.completionTokens ?? 0}, cached ${c.tokens?.cachedPromptTokens ?? 0}, reasoning ${c.tokens?.reasoningTokens ?? 0})`],
    ['cost USD', chargeCost(c)], ['price version', c.priceVersion], ['markup', c.markup],
  ];
  out(fields.map(([k, v]) => `${k.padEnd(16)}${v}`).join('\n'));
}

async function chargesList(o: ChargeFilterOptions & { pageSize: number; pageToken: string; all?: boolean } & ListingFormat): Promise<void> {
  const charges: Charge[] = [];
  let pageToken = o.pageToken;
  do {
    const page = await client().call('listCharges', { ...filtersOf(o), pageSize: o.pageSize, pageToken });
    charges.push(...page.charges);
    pageToken = page.nextPageToken;
  } while (o.all && pageToken);
  if (o.json) printJson(responseJson('listCharges', { charges, nextPageToken: pageToken }));
  else if (o.csv) out(csv(CHARGE_CSV_COLUMNS, charges.map((c) => [...chargeRow(c).slice(0, 7), c.pricingStatus === PricingStatus.PRICING_STATUS_UNPRICED ? '' : money(c.totalCost), c.idempotencyKey])));
  else out(table(CHARGE_COLUMNS, charges.map(chargeRow), ['tokens', 'cost USD']));
  // On stderr, so that --json and --csv stay one document.
  if (pageToken && !o.json) process.stderr.write(`more charges; next page: --page-token ${pageToken}\n`);
}

async function chargesExport(o: ChargeFilterOptions & { format: 'csv' | 'jsonl'; output?: string }): Promise<void> {
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  const sink = o.output ? createWriteStream(o.output) : process.stdout;
  let count = 0;
  for await (const chunk of client().exportCharges({ ...filtersOf(o), format: o.format === 'csv' ? ExportFormat.EXPORT_FORMAT_CSV : ExportFormat.EXPORT_FORMAT_JSON_LINES }, abort.signal)) {
    count += Number(chunk.chargeCount);
    if (!sink.write(chunk.data)) await once(sink, 'drain');
  }
  if (o.output) {
    await new Promise((resolve) => (sink as ReturnType<typeof createWriteStream>).end(resolve));
    process.stderr.write(`exported ${count} charges to ${o.output}\n`);
  }
}

// ---- limits

interface LimitKey {
  account: string;
  user: string;
  /** --key-id: an API key's limit (--api-key is the connection's own key). */
  keyId?: string;
  tag?: string;
  period?: keyof typeof PERIOD;
  windowHours?: number;
  measure: keyof typeof MEASURE;
  soft?: boolean;
}

/** The scope fields of a limit request: --user, --key-id or --tag key=value (the server refuses more than one). */
function scopeOf(o: Pick<LimitKey, 'user' | 'keyId' | 'tag'>): { userId: string; apiKeyId: string; tagKey: string; tagValue: string } {
  const eq = (o.tag ?? '').indexOf('=');
  if (o.tag !== undefined && eq < 0) throw new UsageError("option '--tag <key=value>' takes key=value, e.g. feature=summarize");
  return { userId: o.user, apiKeyId: o.keyId ?? '', tagKey: o.tag === undefined ? '' : o.tag.slice(0, eq), tagValue: o.tag === undefined ? '' : o.tag.slice(eq + 1) };
}

/** How a limit's scope is shown: (account), the user id, api_key:<id> or tag:<key>=<value>. */
const scopeName = (l: { userId: string; apiKeyId: string; tagKey: string; tagValue: string }) =>
  l.apiKeyId ? `api_key:${l.apiKeyId}` : l.tagKey ? `tag:${l.tagKey}=${l.tagValue}` : l.userId || '(account)';

const enforcementOf = (o: { soft?: boolean }) => (o.soft ? LimitEnforcement.LIMIT_ENFORCEMENT_SOFT : LimitEnforcement.LIMIT_ENFORCEMENT_HARD);

async function limitsSet(o: LimitKey & { amount: string }): Promise<void> {
  const { limit } = await client().call('putLimit', { accountId: o.account, ...scopeOf(o), ...limitPeriodOf(o), measure: MEASURE[o.measure], amount: o.amount, enforcement: enforcementOf(o) });
  out(`set: ${limit ? scopeName(limit) : ''} ${limit?.windowHours ? `rolling ${limit.windowHours}h` : o.period} ${o.measure} ${o.soft ? 'soft' : 'hard'} limit ${limit?.amount}`);
}

async function limitsDelete(o: LimitKey): Promise<void> {
  const { deleted } = await client().call('deleteLimit', { accountId: o.account, ...scopeOf(o), period: limitPeriodOf(o).period, measure: MEASURE[o.measure], enforcement: enforcementOf(o) });
  out(deleted ? 'deleted' : 'no such limit');
}

async function limitsShow(o: { account: string; user: string } & ListingFormat): Promise<void> {
  const limits: LimitUsage[] = [];
  let pageToken = '';
  let timeZone = '';
  do {
    const page = await client().call('listLimits', { accountId: o.account, userId: o.user, pageSize: 1000, pageToken });
    limits.push(...page.limits);
    timeZone = page.timeZone;
    pageToken = page.nextPageToken;
  } while (pageToken);
  if (o.json) return printJson(responseJson('listLimits', { limits, timeZone, nextPageToken: '' }));
  const rows = limits.map((l) => [scopeName(l.limit!), l.limit!.windowHours ? `rolling ${l.limit!.windowHours}h` : nameOf(PERIOD, l.limit!.period), nameOf(MEASURE, l.limit!.measure), l.limit!.enforcement === LimitEnforcement.LIMIT_ENFORCEMENT_SOFT ? 'soft' : 'hard', l.limit!.amount, l.used, l.reserved, l.remaining, l.periodStart, l.exceeded ? 'yes' : '']);
  // The API key and tag columns only when some limit has such a scope, so that the CSV of the account's and users' limits keeps its columns.
  const scoped = limits.some((l) => l.limit!.apiKeyId || l.limit!.tagKey);
  const more = (l: LimitUsage) => (scoped ? [l.limit!.apiKeyId, l.limit!.tagKey, l.limit!.tagValue] : []);
  if (o.csv) {
    const header = ['user_id', 'period', 'measure', 'enforcement', 'amount', 'used', 'reserved', 'remaining', 'period_start', 'exceeded', ...(scoped ? ['api_key_id', 'tag_key', 'tag_value'] : [])];
    return out(csv(header, rows.map((r, i) => [limits[i].limit!.userId, ...r.slice(1, 9), r[9] ? 'true' : 'false', ...more(limits[i])])));
  }
  out(table(['scope', 'period', 'measure', 'kind', 'limit', 'used', 'reserved', 'remaining', 'since', 'exceeded'], rows, ['limit', 'used', 'reserved', 'remaining']));
  out(`time zone: ${timeZone}`);
}

// ---- markups

async function markupsSet(o: { account: string; provider: string; model: string; factor: string; chargeType: keyof typeof CHARGE_TYPE }): Promise<void> {
  const { markup } = await client().call('setMarkup', { accountId: o.account, provider: o.provider, model: o.model, chargeType: CHARGE_TYPE[o.chargeType], factor: o.factor, actor: 'metering CLI' });
  out(`set: ${markup?.provider}/${markup?.model} ${o.chargeType} x${markup?.factor}${markup?.accountId ? ` for ${markup.accountId}` : ' (default)'}`);
}

async function markupsShow(o: { account: string; provider: string } & ListingFormat): Promise<void> {
  const response = await client().call('listMarkups', { accountId: o.account, provider: o.provider });
  if (o.json) return printJson(responseJson('listMarkups', response));
  const rows = response.markups.map((m) => [m.provider, m.model, nameOf(CHARGE_TYPE, m.chargeType), m.factor, m.accountId || '(default)']);
  if (o.csv) return out(csv(['provider', 'model', 'charge_type', 'factor', 'account_id'], rows.map((r) => [...r.slice(0, 4), r[4] === '(default)' ? '' : r[4]])));
  out(table(['provider', 'model', 'type', 'factor', 'account'], rows, ['factor']));
}

// ---- prices

async function pricesSet(o: { account: string; provider: string; model: string; input: string; output: string; from?: string; source: string }): Promise<void> {
  const from = o.from ? new Date(o.from) : undefined;
  if (from && Number.isNaN(from.getTime())) throw new UsageError(`option '--from <time>' argument '${o.from}' is not an ISO time, e.g. 2026-12-01T00:00:00Z`);
  const { price } = await client().call('setPrice', {
    accountId: o.account, provider: o.provider, model: o.model,
    effectiveTime: from ? { seconds: String(Math.floor(from.getTime() / 1000)), nanos: 0 } : undefined,
    rates: PriceRates.fromPartial({ inputPerMillion: o.input, outputPerMillion: o.output }),
    source: o.source, actor: 'metering CLI',
  });
  out(`set: ${price?.provider}/${price?.model} ${price?.version}`);
}

/** One page of the catalogue (ListModels pages and filters on the server), or every page with --all. */
async function pricesShow(o: { account: string; provider: string; name: string; pageSize: number; pageToken: string; all?: boolean } & ListingFormat): Promise<void> {
  const prices: ModelPrice[] = [];
  let pageToken = o.pageToken;
  do {
    const page = await client().call('listModels', { provider: o.provider, accountId: o.account, at: undefined, includeHistory: false, name: o.name, pageSize: o.all ? 1000 : o.pageSize, pageToken });
    prices.push(...page.prices);
    pageToken = page.nextPageToken;
  } while (o.all && pageToken);
  if (o.json) printJson(responseJson('listModels', { prices, nextPageToken: pageToken }));
  else if (o.csv) out(csv(['provider', 'model', 'input_per_million', 'output_per_million', 'cached_input_per_million', 'version'], prices.map((p) => [p.provider, p.model, p.rates?.inputPerMillion ?? '', p.rates?.outputPerMillion ?? '', p.rates?.cachedInputPerMillion ?? '', p.version])));
  else out(table(['provider', 'model', 'input/1M', 'output/1M', 'version'], prices.map((p) => [p.provider, p.model, p.rates?.inputPerMillion ?? '', p.rates?.outputPerMillion ?? '', p.version]), ['input/1M', 'output/1M']));
  // On stderr, so that --json and --csv stay one document.
  if (pageToken && !o.json) process.stderr.write(`more models; next page: --page-token ${pageToken}\n`);
}

// ---- keys

async function keysCreate(o: { account: string; name: string; scopes: string }): Promise<void> {
  const names = o.scopes.split(',').map((s) => s.trim());
  const bad = names.find((s) => !(s in SCOPE));
  if (bad !== undefined) throw new UsageError(`option '--scopes <list>' has '${bad}'; each scope must be one of ${Object.keys(SCOPE).join(', ')}`);
  const { key, secret } = await client().call('createApiKey', { accountId: o.account, name: o.name, scopes: names.map((s) => SCOPE[s as keyof typeof SCOPE]) });
  out(`created ${key?.keyId} for ${key?.accountId} (${names.join(',')})`);
  out(`secret (shown only now): ${secret}`);
}

async function keysRevoke(o: { account: string; keyId: string }): Promise<void> {
  const { key } = await client().call('revokeApiKey', { accountId: o.account, keyId: o.keyId });
  out(`revoked ${key?.keyId}`);
}

async function keysList(o: { account: string } & ListingFormat): Promise<void> {
  const response = await client().call('listApiKeys', { accountId: o.account });
  if (o.json) return printJson(responseJson('listApiKeys', response));
  const rows = response.keys.map((k) => [k.keyId, k.name, k.scopes.map((s) => nameOf(SCOPE, s)).join(','), when(k.createTime), when(k.revokeTime)]);
  if (o.csv) return out(csv(['key_id', 'name', 'scopes', 'create_time', 'revoke_time'], rows));
  out(table(['key id', 'name', 'scopes', 'created', 'revoked'], rows));
}

// ---- accounts and reservations

async function accountsList(o: { prefix: string; all?: boolean } & ListingFormat): Promise<void> {
  const accounts: Array<ListAccountsResponse['accounts'][number]> = [];
  let pageToken = '';
  do {
    const page = await client().call('listAccounts', { accountIdPrefix: o.prefix, pageSize: 1000, pageToken });
    accounts.push(...page.accounts);
    pageToken = page.nextPageToken;
  } while (o.all && pageToken);
  if (o.json) return printJson(responseJson('listAccounts', { accounts, nextPageToken: pageToken }));
  // A month whose every charge had no price has an unknown spend, not 0.
  const spend = (a: (typeof accounts)[number]) => (a.monthMessageCount !== '0' && a.monthUnpricedMessageCount === a.monthMessageCount ? 'unpriced' : money(a.monthCost));
  const rows = accounts.map((a) => [a.account?.accountId ?? '', a.account?.timeZone ?? '', a.monthStart, spend(a), a.monthMessageCount, a.monthUnpricedMessageCount]);
  if (o.csv) out(csv(['account_id', 'time_zone', 'month_start', 'month_cost', 'month_message_count', 'month_unpriced_message_count'], rows));
  else out(table(['account', 'time zone', 'month from', 'spend USD', 'charges', 'unpriced'], rows, ['spend USD', 'charges', 'unpriced']));
  if (pageToken && !o.json) process.stderr.write('more accounts: --all lists every one\n');
}

async function reservationsList(o: { account: string; user: string } & ListingFormat): Promise<void> {
  const response = await client().call('listReservations', { accountId: o.account, userId: o.user, pageSize: 1000, pageToken: '' });
  if (o.json) return printJson(responseJson('listReservations', response));
  const rows = response.reservations.map((r) => [r.reservationId, r.userId, r.heldMessages, r.heldTokens, money(r.heldCost), r.periodDay, when(r.expireTime)]);
  if (o.csv) out(csv(['reservation_id', 'user_id', 'held_messages', 'held_tokens', 'held_cost', 'period_day', 'expire_time'], rows));
  else out(table(['reservation', 'user', 'messages', 'tokens', 'cost USD', 'day', 'expires'], rows, ['messages', 'tokens', 'cost USD']));
  if (response.nextPageToken && !o.json) process.stderr.write('more than 1000 open reservations; the first 1000 are shown\n');
}

// ---- balance

const GRANT_STATUS = { scheduled: GrantStatus.GRANT_STATUS_SCHEDULED, active: GrantStatus.GRANT_STATUS_ACTIVE, exhausted: GrantStatus.GRANT_STATUS_EXHAUSTED, expired: GrantStatus.GRANT_STATUS_EXPIRED, voided: GrantStatus.GRANT_STATUS_VOIDED };
const GRANT_KIND = { paid: GrantKind.GRANT_KIND_PAID, promotional: GrantKind.GRANT_KIND_PROMOTIONAL };
const CREDIT_POLICY = { deny: CreditPolicy.CREDIT_POLICY_DENY, allow_overage: CreditPolicy.CREDIT_POLICY_ALLOW_OVERAGE };
const entryKind = (k: BalanceEntryKind) => (BalanceEntryKind[k] ?? String(k)).replace('BALANCE_ENTRY_KIND_', '').toLowerCase();

/** `metering balance`: the balance, then every grant (or, with --history, every balance entry) as a table. */
async function balance(o: { account: string; user: string; history?: boolean } & ListingFormat): Promise<void> {
  const { balance: b } = await client().call('getBalance', { accountId: o.account, userId: o.user });
  if (o.history) {
    const entries: BalanceEntry[] = [];
    let pageToken = '';
    do {
      const page = await client().call('listBalanceEntries', { accountId: o.account, pageSize: 1000, pageToken });
      entries.push(...page.entries);
      pageToken = page.nextPageToken;
    } while (pageToken);
    if (o.json) return printJson(responseJson('listBalanceEntries', { entries, nextPageToken: '' }));
    const rows = entries.map((e) => [e.sequence, when(e.entryTime), entryKind(e.kind), money(e.amount), money(e.balanceAfter), e.grantId, e.chargeId, e.reservationId]);
    if (o.csv) return out(csv(['sequence', 'entry_time', 'kind', 'amount_usd', 'balance_after_usd', 'grant_id', 'charge_id', 'reservation_id'], rows));
    return out(table(['#', 'time', 'kind', 'amount USD', 'balance USD', 'grant', 'charge', 'reservation'], rows, ['#', 'amount USD', 'balance USD']));
  }
  const grants = [];
  let pageToken = '';
  do {
    const page = await client().call('listGrants', { accountId: o.account, pageSize: 1000, pageToken });
    grants.push(...page.grants);
    pageToken = page.nextPageToken;
  } while (pageToken);
  const mine = o.user ? grants.filter((g) => g.userId === '' || g.userId === o.user) : grants;
  if (o.json) return printJson({ balance: responseJson('getBalance', { balance: b }), grants: responseJson('listGrants', { grants: mine, nextPageToken: '' }) });
  const rows = mine.map((g) => [g.grantId, nameOf(GRANT_KIND, g.kind), nameOf(GRANT_STATUS, g.status), String(g.priority), money(g.amount), money(g.remaining), money(g.held), money(g.spent), money(g.expired), money(g.voided), when(g.expireTime), g.userId]);
  const header = ['grant_id', 'kind', 'status', 'priority', 'amount_usd', 'remaining_usd', 'held_usd', 'spent_usd', 'expired_usd', 'voided_usd', 'expire_time', 'user_id'];
  if (o.csv) return out(csv(header, rows));
  if (!b?.hasCredits) return out(`${b?.accountId ?? o.account} has no credits: its calls are not limited by a balance`);
  out(`available ${money(b.available)} USD (remaining ${money(b.remaining)}, held ${money(b.held)}, upcoming ${money(b.upcoming)}); policy ${nameOf(CREDIT_POLICY, b.policy)}; overage since ${b.overagePeriodStart}: ${money(b.overage)} USD`);
  for (const x of b.upcomingExpiries) out(`expires ${when(x.expireTime)}: ${money(x.amount)} USD of ${x.grantId}`);
  out(table(['grant', 'kind', 'status', 'priority', 'amount', 'remaining', 'held', 'spent', 'expired', 'voided', 'expires', 'user'], rows, ['priority', 'amount', 'remaining', 'held', 'spent', 'expired', 'voided']));
}

// ---- tail

/** One event of the charge stream for people, whatever its kind. */
export function describeEvent(e: ChargeEvent): string {
  const head = `#${e.sequence} ${kindName(e.kind)}`;
  if (e.charge) {
    const c = e.charge;
    const cost = c.pricingStatus === PricingStatus.PRICING_STATUS_UNPRICED ? 'unpriced' : `${money(c.totalCost)} USD`;
    return `${head} ${c.userId} ${c.provider}/${c.model} ${c.tokens?.totalTokens ?? 0} tokens ${cost} key=${c.idempotencyKey}`;
  }
  if (e.reservation) {
    const r = e.reservation;
    return `${head} ${r.reservationId} of ${r.userId || '(account)'} held ${r.heldMessages} messages ${r.heldTokens} tokens ${money(r.heldCost)} USD key=${r.idempotencyKey}`;
  }
  if (e.grant) {
    const g = e.grant;
    return `${head} ${g.grantId} ${money(g.amount)} USD${g.userId ? ` for user ${g.userId}` : ''}: remaining ${money(g.remaining)}, expired ${money(g.expired)}${g.expireTime ? `, expires ${when(g.expireTime)}` : ''}`;
  }
  if (e.balance) {
    const b = e.balance;
    return `${head} available ${money(b.available)} USD${b.lowBalanceThreshold ? ` (threshold ${money(b.lowBalanceThreshold)} USD)` : ''}`;
  }
  if (e.limit) {
    const l = e.limit;
    const scope = l.scope === LimitScope.LIMIT_SCOPE_USER ? `user ${e.userId}` : `account (by user ${e.userId})`;
    return `${head} ${scope}: ${nameOf(PERIOD, l.period)} ${nameOf(MEASURE, l.measure)} soft limit ${l.limit}, used ${l.used}, reserved ${l.reserved}, remaining ${l.remaining}, since ${l.periodStart}`;
  }
  if (e.alert) {
    const a = e.alert;
    const unit = a.measure === LimitMeasure.LIMIT_MEASURE_COST ? ' USD' : ` ${nameOf(MEASURE, a.measure)}`;
    return `${head} ${a.description || a.ruleId}: ${a.userId ? `user ${a.userId}` : 'account'} ${nameOf(PERIOD, a.period)} from ${a.periodStart}: threshold ${a.threshold}${unit}${a.percentage ? ` (${a.percentage}%)` : ''}, used ${a.used}${unit}`;
  }
  if (e.webhookEndpoint) return `${head} ${e.webhookEndpoint.endpointId} ${e.webhookEndpoint.url}: ${e.webhookEndpoint.disabledReason}`;
  return `${head} ${JSON.stringify(protoJson('metering.v1.ChargeEvent', ChargeEvent.encode(e).finish()))}`;
}

async function tail(o: { account: string; after?: string; user: string; provider: string; model: string; json?: boolean }): Promise<void> {
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  process.once('SIGTERM', () => abort.abort());
  // On stderr, so that --json output stays one event per line; the sequence is a cursor for --after.
  const watching = (after: string) => process.stderr.write(`watching ${o.account} after sequence ${after}\n`);
  for await (const e of client().watchCharges({ accountId: o.account, afterSequence: o.after, userId: o.user, provider: o.provider, model: o.model }, abort.signal, watching)) {
    out(o.json ? JSON.stringify(protoJson('metering.v1.ChargeEvent', ChargeEvent.encode(e).finish())) : describeEvent(e));
  }
}

// ---- rerate

async function rerate(o: { account: string; from: string; to: string; provider: string; model: string; all?: boolean; dryRun?: boolean }): Promise<void> {
  const days: string[] = [];
  for (let t = Date.parse(`${o.from}T00:00:00Z`); t <= Date.parse(`${o.to}T00:00:00Z`); t += 86_400_000) days.push(new Date(t).toISOString().slice(0, 10));
  const sum = { examined: 0, changed: 0, newlyPriced: 0 };
  for (const [n, day] of days.entries()) {
    const r = await client().call('rerateCharges', { accountId: o.account, startDate: day, endDate: day, mode: o.all ? RerateMode.RERATE_MODE_ALL : RerateMode.RERATE_MODE_UNPRICED_ONLY, provider: o.provider, model: o.model, dryRun: o.dryRun ?? false });
    sum.examined += Number(r.chargesExamined);
    sum.changed += Number(r.chargesChanged);
    sum.newlyPriced += Number(r.chargesNewlyPriced);
    const bar = '#'.repeat(Math.round(((n + 1) / days.length) * 30)).padEnd(30);
    process.stderr.write(`\r[${bar}] ${n + 1}/${days.length} days, ${sum.examined} charges examined, ${sum.changed} changed`);
  }
  process.stderr.write('\n');
  out(`${o.dryRun ? 'dry run: would change' : 'changed'} ${sum.changed} of ${sum.examined} charges (${sum.newlyPriced} newly priced)`);
}

// ---- import

/** `metering import django`: prints what was imported, what was not and why, and the days whose totals differ. */
async function importDjangoCommand(o: DjangoImportOptions): Promise<void> {
  if (!o.databaseUrl === !o.csvDir) throw new UsageError('give the Django database with --database-url, or its exported tables with --csv-dir (one of them)');
  const quiet = o.json || !process.stderr.isTTY;
  let report: DjangoImportReport;
  try {
    report = await importDjango(client(), o, (line) => (quiet ? undefined : process.stderr.write(`\r${line}\u001b[K`)));
  } catch (err) {
    // The source database (not the service) failed: say so, as bad usage when it is an option's fault.
    if ((err as { code?: unknown }).code !== undefined && (err as { metadata?: unknown }).metadata !== undefined) throw err;
    throw new ReportedFailure(`the Django ${o.csvDir ? 'tables' : 'database'}: ${(err as Error).message}`);
  }
  if (!quiet) process.stderr.write('\n');
  if (o.json) printJson(report);
  else {
    const verb = report.dryRun ? 'would import' : 'imported';
    out(`markups (${o.llmPricesTable}): ${report.markups.read} read, ${report.markups.set} ${report.dryRun ? 'would be set' : 'set'}, ${report.markups.unchanged} unchanged, ${report.markups.notImported} not imported`);
    for (const t of report.tables) {
      out(`${t.table}: ${t.read} read, ${t.imported} ${verb}, ${t.alreadyImported} already imported${t.pricedOtherwise ? ` (${t.pricedOtherwise} priced otherwise than asked: ${report.keepCosts ? 're-priced' : 'kept costs'} by an earlier run)` : ''}, ${t.notImported} not imported`);
    }
    for (const note of report.notes) out(`note: ${note}`);
    if (report.notImported.length) {
      out('\nnot imported:');
      out(table(['table', 'id', 'reason'], report.notImported.map((n) => [n.table, n.id, n.reason]), ['id']));
    }
    if (!report.dryRun && o.check) {
      out(`\nper-day check: ${report.checked.charges} account/user/days against GetDailyUsage, ${report.checked.dailyBillingRecords} DailyBillingRecord days against the Charge rows imported`);
      if (report.differences.length === 0) out('every day is equal');
      else out(table(['check', 'account', 'user', 'date', 'field', 'source', 'service'], report.differences.map((d) => [d.check, d.accountId, d.userId, d.date, d.field, d.source, d.service]), ['source', 'service']));
    }
  }
  if (report.differences.length) throw new ReportedFailure(`${report.differences.length} totals differ on ${new Set(report.differences.map((d) => `${d.check} ${d.accountId} ${d.userId} ${d.date}`)).size} days (see the table)`);
}

// ---- alerts and webhooks

const RULE_KIND = { limit: AlertRuleKind.ALERT_RULE_KIND_LIMIT, spend: AlertRuleKind.ALERT_RULE_KIND_SPEND, balance: AlertRuleKind.ALERT_RULE_KIND_BALANCE };
const ENFORCEMENT = { hard: LimitEnforcement.LIMIT_ENFORCEMENT_HARD, soft: LimitEnforcement.LIMIT_ENFORCEMENT_SOFT };
const DELIVERY = { pending: DeliveryStatus.DELIVERY_STATUS_PENDING, delivered: DeliveryStatus.DELIVERY_STATUS_DELIVERED, failed: DeliveryStatus.DELIVERY_STATUS_FAILED };
const FORMAT = { standard: WebhookFormat.WEBHOOK_FORMAT_STANDARD, slack: WebhookFormat.WEBHOOK_FORMAT_SLACK };
const list = (text: string) => text.split(',').map((x) => x.trim()).filter(Boolean);

/** What a rule watches, for people: "day spend of each user", "50%,80% of the day cost limit (account, hard)" or "available credit balance falls below". */
function targetOf(r: AlertRule): [string, string] {
  if (r.balance) return ['available credit balance falls below', r.balance.amounts.map((a) => `${a.amount} USD`).join(',')];
  if (r.limit) {
    const l = r.limit;
    return [`${nameOf(PERIOD, l.period)} ${nameOf(MEASURE, l.measure)} limit of ${l.userId || 'the account'} (${nameOf(ENFORCEMENT, l.enforcement)})`, l.percentages.map((p) => `${p}%`).join(',')];
  }
  const sp = r.spend;
  return [`${nameOf(PERIOD, sp?.period ?? 0)} spend of ${sp?.eachUser ? 'each user' : sp?.userId || 'the account'}`, (sp?.amounts ?? []).map((a) => `${a.amount} USD`).join(',')];
}

async function alertsRules(o: { account: string } & ListingFormat): Promise<void> {
  const response = await client().call('listAlertRules', { accountId: o.account });
  if (o.json) return printJson(responseJson('listAlertRules', response));
  const rows = response.rules.map((r) => [r.ruleId, nameOf(RULE_KIND, r.kind), ...targetOf(r), r.description]);
  if (o.csv) return out(csv(['rule_id', 'kind', 'watches', 'thresholds', 'description'], rows));
  out(table(['rule id', 'kind', 'watches', 'thresholds', 'description'], rows));
}

async function alertsCreate(o: { account: string; kind: keyof typeof RULE_KIND; period?: keyof typeof PERIOD; user: string; eachUser?: boolean; amounts?: string; percentages?: string; measure?: keyof typeof MEASURE; soft?: boolean; description: string }): Promise<void> {
  if (o.kind === 'balance' && (!o.amounts || o.period || o.percentages || o.measure || o.user || o.eachUser || o.soft))
    throw new UsageError("a balance rule takes option '--amounts <usd,...>' (and no --period, --percentages, --measure, --user, --each-user or --soft: it watches the account's whole available balance)");
  if (o.kind !== 'balance' && !o.period) throw new UsageError(`a ${o.kind} rule takes option '--period <period>' (day or month)`);
  if (o.kind === 'spend' && (!o.amounts || o.percentages || o.measure)) throw new UsageError("a spend rule takes option '--amounts <usd,...>' (and no --percentages or --measure)");
  if (o.kind === 'limit' && (!o.percentages || !o.measure || o.amounts || o.eachUser)) throw new UsageError("a limit rule takes options '--measure <measure>' and '--percentages <list>' (and no --amounts or --each-user)");
  const rule = {
    accountId: o.account, ruleId: '', description: o.description, kind: RULE_KIND[o.kind], createTime: undefined, updateTime: undefined,
    limit: o.kind === 'limit' ? { userId: o.user, period: PERIOD[o.period ?? 'day'], measure: MEASURE[o.measure as keyof typeof MEASURE], enforcement: o.soft ? ENFORCEMENT.soft : ENFORCEMENT.hard, percentages: list(o.percentages ?? '') } : undefined,
    spend: o.kind === 'spend' ? { period: PERIOD[o.period ?? 'day'], userId: o.user, eachUser: o.eachUser ?? false, amounts: list(o.amounts ?? '').map((amount) => ({ amount, currencyCode: 'USD' })) } : undefined,
    balance: o.kind === 'balance' ? { amounts: list(o.amounts ?? '').map((amount) => ({ amount, currencyCode: 'USD' })) } : undefined,
  };
  const { rule: created } = await client().call('createAlertRule', { rule });
  out(`created alert rule ${created?.ruleId}`);
}

async function alertsDelete(o: { account: string; rule: string }): Promise<void> {
  const { deleted } = await client().call('deleteAlertRule', { accountId: o.account, ruleId: o.rule });
  out(deleted ? `deleted alert rule ${o.rule}` : `no alert rule ${o.rule}`);
}

async function alertsEndpoints(o: { account: string } & ListingFormat): Promise<void> {
  const response = await client().call('listWebhookEndpoints', { accountId: o.account });
  if (o.json) return printJson(responseJson('listWebhookEndpoints', response));
  const rows = response.endpoints.map((e) => [e.endpointId, e.url, nameOf(FORMAT, e.format), e.enabled ? 'yes' : 'no', e.eventTypes.join(',') || 'all', e.disabledReason || e.description]);
  if (o.csv) return out(csv(['endpoint_id', 'url', 'format', 'enabled', 'event_types', 'note'], rows));
  out(table(['endpoint id', 'url', 'format', 'enabled', 'events', 'note'], rows));
}

async function alertsDeliveries(o: { account: string; endpoint: string; status?: keyof typeof DELIVERY; pageSize: number } & ListingFormat): Promise<void> {
  const response = await client().call('listDeliveries', { accountId: o.account, endpointId: o.endpoint, status: o.status ? DELIVERY[o.status] : 0, pageSize: o.pageSize, pageToken: '' });
  if (o.json) return printJson(responseJson('listDeliveries', response));
  const rows = response.deliveries.map((d) => [d.deliveryId, d.endpointId, d.eventType, nameOf(DELIVERY, d.status), String(d.attemptCount), when(d.createTime), when(d.nextAttemptTime)]);
  if (o.csv) return out(csv(['delivery_id', 'endpoint_id', 'event_type', 'status', 'attempts', 'create_time', 'next_attempt_time'], rows));
  out(table(['delivery id (webhook-id)', 'endpoint', 'event', 'status', 'attempts', 'created', 'next attempt'], rows, ['attempts']));
}

async function alertsAttempts(o: { account: string; delivery: string } & ListingFormat): Promise<void> {
  const response = await client().call('listDeliveryAttempts', { accountId: o.account, deliveryId: o.delivery });
  if (o.json) return printJson(responseJson('listDeliveryAttempts', response));
  const rows = response.attempts.map((a) => [String(a.attempt), when(a.startTime), String(a.latencyMs), a.httpStatus ? String(a.httpStatus) : '', a.success ? 'yes' : 'no', a.error, a.responseExcerpt.replace(/\s+/g, ' ').slice(0, 60), when(a.nextAttemptTime)]);
  if (o.csv) return out(csv(['attempt', 'start_time', 'latency_ms', 'http_status', 'success', 'error', 'response_excerpt', 'next_attempt_time'], rows));
  out(table(['attempt', 'started', 'ms', 'status', 'ok', 'error', 'answer', 'next attempt'], rows, ['attempt', 'ms']));
}

async function webhooksCreate(o: { account: string; url: string; slack?: boolean; events: string; description: string }): Promise<void> {
  const { endpoint } = await client().call('createWebhookEndpoint', {
    endpoint: { accountId: o.account, endpointId: '', url: o.url, description: o.description, enabled: true, eventTypes: list(o.events), format: o.slack ? FORMAT.slack : FORMAT.standard, secret: '', disabledReason: '', createTime: undefined, updateTime: undefined },
  });
  out(`created webhook endpoint ${endpoint?.endpointId}\nsigning secret (shown once): ${endpoint?.secret}`);
}

async function webhooksTest(o: { account: string; endpoint: string; wait?: boolean }): Promise<void> {
  const { delivery } = await client().call('sendTestEvent', { accountId: o.account, endpointId: o.endpoint });
  const id = delivery?.deliveryId ?? '';
  out(`queued test delivery ${id}`);
  if (!o.wait) return;
  const deadline = Date.now() + 60_000;
  for (;;) {
    const { delivery: d, attempts } = await client().call('listDeliveryAttempts', { accountId: o.account, deliveryId: id });
    const last = attempts[attempts.length - 1];
    if (d?.status !== DeliveryStatus.DELIVERY_STATUS_PENDING || (last && !last.success) || Date.now() > deadline) {
      if (last) out(`attempt ${last.attempt}: ${last.success ? 'delivered' : 'failed'} ${last.httpStatus ? `HTTP ${last.httpStatus}` : last.error} in ${last.latencyMs} ms`);
      if (!last || !last.success) throw new ReportedFailure(last ? `the endpoint did not take the test event (${last.httpStatus ? `HTTP ${last.httpStatus}` : last.error}); it is retried on the schedule` : 'no attempt within 60 s: is a server running its dispatcher?');
      return;
    }
    await new Promise((r) => setTimeout(r, 200));
  }
}

async function webhooksRotate(o: { account: string; endpoint: string }): Promise<void> {
  const { endpoint } = await client().call('rotateWebhookSecret', { accountId: o.account, endpointId: o.endpoint });
  out(`new signing secret (shown once): ${endpoint?.secret}`);
}

async function webhooksRedeliver(o: { account: string; delivery: string }): Promise<void> {
  await client().call('redeliver', { accountId: o.account, deliveryId: o.delivery });
  out(`delivery ${o.delivery} is pending again`);
}

async function webhooksDelete(o: { account: string; endpoint: string }): Promise<void> {
  const { deleted } = await client().call('deleteWebhookEndpoint', { accountId: o.account, endpointId: o.endpoint });
  out(deleted ? `deleted webhook endpoint ${o.endpoint}` : `no webhook endpoint ${o.endpoint}`);
}

// ---- the program

const DATE = /^\d{4}-\d{2}-\d{2}$/;
/** A YYYY-MM-DD option value (the server checks that the day exists); commander names the option in the error. */
const date = (value: string): string => {
  if (!DATE.test(value)) throw new InvalidArgumentError('It must be a day in the form YYYY-MM-DD.');
  return value;
};
const positiveInt = (value: string): number => {
  const n = Number(value);
  if (!Number.isInteger(n) || n < 1 || n > 100_000) throw new InvalidArgumentError('It must be a whole number from 1 to 100000.');
  return n;
};

const accountOption = () => new Option('--account <id>', 'the account').default('', "the API key's own");
const userOption = (what = 'only this user', otherwise = 'every user') => new Option('--user <id>', what).default('', otherwise);
const limitPeriodOption = () => new Option('--period <period>', 'a calendar period (or --window-hours for a rolling window)').choices(Object.keys(PERIOD));
const windowHoursOption = () =>
  new Option('--window-hours <hours>', 'a rolling window instead of --period: the last 1 to 744 whole hours, the current one included').argParser((v) => {
    if (!/^\d+$/.test(v)) throw new InvalidArgumentError('It must be a whole number of hours, 1 to 744.');
    return Number(v);
  });
const apiKeyOption = () => new Option('--key-id <id>', 'a limit of the calls made with this API key, k_... (instead of --user)');
const tagOption = () => new Option('--tag <key=value>', 'a limit of the calls with this tag value, e.g. feature=summarize; the key must be a declared dimension (instead of --user)');
const providerOption = () => new Option('--provider <id>', 'only this provider').default('', 'every provider');
const modelOption = () => new Option('--model <id>', 'only this model').default('', 'every model');
const fromOption = () => new Option('--from <date>', "first day, YYYY-MM-DD, in the account's time zone (UTC unless set)").argParser(date).makeOptionMandatory();
const toOption = () => new Option('--to <date>', "last day, YYYY-MM-DD, in the account's time zone (UTC unless set)").argParser(date).makeOptionMandatory();
const measureOption = () => new Option('--measure <measure>', 'what the limit counts').choices(Object.keys(MEASURE)).makeOptionMandatory();

export function program(): Command {
  const root = new Command('metering')
    .description('The Metering admin CLI: usage, limits, markups, prices, API keys, alerts and webhooks, the charge stream and re-rating, over the gRPC API.')
    .addOption(new Option('--address <host:port>', 'the server').env('METERING_ADDRESS').default('127.0.0.1:50051'))
    .addOption(new Option('--api-key <key>', 'an API key or the operator key').env('METERING_API_KEY'))
    .option('--ca <file>', 'TLS, trusting this CA certificate (PEM)')
    .option('--tls', 'TLS with the system roots')
    .helpOption('-h, --help', 'show help for the command')
    .showHelpAfterError('(run with --help for usage)')
    .exitOverride()
    .configureOutput({ writeOut: (s) => process.stdout.write(s), writeErr: (s) => process.stderr.write(s) })
    .addHelpText('after', '\nExit codes: 0 done, 1 the server refused or failed (the message says why), 2 bad usage.')
    .hook('preAction', (cmd) => {
      connection = cmd.opts<Connection>();
    });
  // Subcommands made from here on inherit the help option, exitOverride and output settings.
  const command = (parent: Command, name: string, description: string) => parent.command(name).description(description).helpOption('-h, --help', 'show help for the command');

  listing(command(root, 'usage', 'usage per day, user, provider, model and charge type, with totals (and spend per day when the terminal is wide)'))
    .addOption(accountOption())
    .addOption(fromOption())
    .addOption(toOption())
    .addOption(userOption())
    .addOption(providerOption())
    .addOption(modelOption())
    .addOption(new Option('--time-zone <zone>', 'days in this IANA time zone, e.g. America/New_York (summed from the charges)').default('', "the account's"))
    .action(usage);

  const charges = command(root, 'charges', 'single charges: look one up, list them, export them');
  command(charges, 'get', 'one charge, by its id or its idempotency key')
    .addOption(accountOption())
    .option('--charge-id <id>', 'the charge id RecordCharge answered')
    .option('--idempotency-key <key>', 'the key the backend recorded it with')
    .option('--json', 'print the protobuf JSON mapping of the answer (as buf curl does)')
    .action(chargesGet);
  const chargeFilters = (cmd: Command) =>
    cmd
      .addOption(accountOption())
      .addOption(fromOption())
      .addOption(toOption())
      .addOption(userOption())
      .addOption(providerOption())
      .addOption(modelOption())
      .addOption(new Option('--charge-type <type>', 'only this charge type').choices(Object.keys(CHARGE_TYPE)))
      .addOption(new Option('--pricing <status>', 'only priced or only unpriced charges').choices(Object.keys(PRICING)));
  listing(chargeFilters(command(charges, 'list', 'charges of a range of days, a page at a time').alias('show')))
    .addOption(new Option('--page-size <n>', 'charges per page').argParser(positiveInt).default(100))
    .addOption(new Option('--page-token <token>', 'the page after the one that printed this token').default('', 'the first page'))
    .option('--all', 'every page, in one listing')
    .action(chargesList);
  chargeFilters(command(charges, 'export', 'every charge of a range of days as CSV or JSON lines, streamed (any size)'))
    .addOption(new Option('--format <format>', 'the file format').choices(['csv', 'jsonl']).default('csv'))
    .option('--output <file>', 'write to this file (default: stdout)')
    .action(chargesExport);

  const limits = command(root, 'limits', 'limits of the account, its users, its API keys and its tag values');
  listing(command(limits, 'show', 'every limit with used, reserved and remaining in its current period').alias('list'))
    .addOption(accountOption())
    .addOption(userOption('only this user\'s limits'))
    .action(limitsShow);
  command(limits, 'set', 'set (create or change) a limit')
    .addOption(accountOption())
    .addOption(userOption('a limit of this user', 'the whole account'))
    .addOption(apiKeyOption())
    .addOption(tagOption())
    .addOption(limitPeriodOption())
    .addOption(windowHoursOption())
    .addOption(measureOption())
    .requiredOption('--amount <amount>', 'an integer for messages and tokens, a decimal USD amount for cost')
    .option('--soft', 'a soft limit: checks stay allowed and say it is exceeded')
    .action(limitsSet);
  command(limits, 'delete', 'delete a limit')
    .addOption(accountOption())
    .addOption(userOption('a limit of this user', 'the whole account'))
    .addOption(apiKeyOption())
    .addOption(tagOption())
    .addOption(limitPeriodOption())
    .addOption(windowHoursOption())
    .addOption(measureOption())
    .option('--soft', 'the soft limit')
    .action(limitsDelete);

  const markups = command(root, 'markups', 'markup factors on provider cost');
  listing(command(markups, 'show', 'the markups, an account\'s own and the defaults').alias('list'))
    .addOption(accountOption())
    .addOption(providerOption())
    .action(markupsShow);
  command(markups, 'set', 'set a markup factor')
    .addOption(new Option('--account <id>', 'for this account').default('', 'the default of every account'))
    .requiredOption('--provider <id>', 'the provider')
    .requiredOption('--model <id>', 'the model')
    .requiredOption('--factor <factor>', 'the factor, e.g. 1.2')
    .addOption(new Option('--charge-type <type>', 'the charge type').choices(Object.keys(CHARGE_TYPE)).default('completion'))
    .action(markupsSet);

  const prices = command(root, 'prices', 'the price catalogue and operator prices');
  listing(command(prices, 'show', 'the prices in effect, a page at a time').alias('list'))
    .addOption(new Option('--account <id>', "merge in this account's own prices").default('', 'none'))
    .addOption(providerOption())
    .addOption(new Option('--name <text>', 'only models whose id or alias contains this text').default('', 'any'))
    .addOption(new Option('--page-size <n>', 'models per page').argParser(positiveInt).default(100))
    .addOption(new Option('--page-token <token>', 'the page after the one that printed this token').default('', 'the first page'))
    .option('--all', 'every model, in one listing')
    .action(pricesShow);
  command(prices, 'set', 'set an operator price (for every account, or one account\'s own)')
    .addOption(new Option('--account <id>', "this account's own price").default('', 'for every account'))
    .requiredOption('--provider <id>', 'the provider')
    .requiredOption('--model <id>', 'the model')
    .requiredOption('--input <usd>', 'USD per 1M input tokens')
    .requiredOption('--output <usd>', 'USD per 1M output tokens')
    .option('--from <time>', 'in effect from this ISO time (default: now)')
    .option('--source <text>', 'where the price comes from', 'set with the metering CLI')
    .action(pricesSet);

  listing(command(root, 'accounts', 'every account the service knows, with its month to date (the operator key)'))
    .addOption(new Option('--prefix <text>', 'only accounts whose id starts with this').default('', 'any'))
    .option('--all', 'every page, in one listing')
    .action(accountsList);

  listing(command(root, 'reservations', 'the account\'s open reservations, soonest to expire first'))
    .addOption(accountOption())
    .addOption(userOption())
    .action(reservationsList);

  const keys = command(root, 'keys', 'the account\'s API keys');
  listing(command(keys, 'list', 'the keys (never their secrets)').alias('show'))
    .addOption(accountOption())
    .action(keysList);
  command(keys, 'create', 'create a key; prints its secret once')
    .addOption(accountOption())
    .requiredOption('--name <text>', 'what the key is for')
    .requiredOption('--scopes <list>', `comma-separated, of ${Object.keys(SCOPE).join(', ')}`)
    .action(keysCreate);
  command(keys, 'revoke', 'revoke a key at once')
    .addOption(accountOption())
    .requiredOption('--key-id <id>', 'the key, k_...')
    .action(keysRevoke);

  listing(command(root, 'balance', 'the prepaid credit balance, and its grants (or with --history its balance entries)'))
    .addOption(accountOption())
    .addOption(new Option('--user <id>', 'what this user may spend').default('', 'the whole account'))
    .option('--history', 'every balance entry, with the running balance')
    .action(balance);

  command(root, 'tail', 'follow the charge stream (every event kind); Ctrl-C stops')
    .addOption(accountOption())
    .option('--after <sequence>', 'start after this sequence (default: from now)')
    .addOption(userOption())
    .addOption(providerOption())
    .addOption(modelOption())
    .option('--json', 'one protobuf JSON event per line')
    .action(tail);

  command(root, 'rerate', 'price unpriced charges again (or all with --all), day by day with progress')
    .addOption(accountOption())
    .addOption(fromOption())
    .addOption(toOption())
    .addOption(providerOption())
    .addOption(modelOption())
    .option('--all', 'every charge, not only the unpriced ones')
    .option('--dry-run', 'count what would change, change nothing')
    .action(rerate);

  const imports = command(root, 'import', 'import usage from the system this service replaces');
  command(imports, 'django', 'copy the Django models\' charges, token usage and markups into the service, idempotently, and check the totals per day')
    .option('--database-url <url>', 'the Django database (Postgres), e.g. postgres://user@host:5432/db; read only, in one snapshot')
    .option('--csv-dir <dir>', 'instead: a folder of the tables exported as CSV with a header row (<table>.csv, e.g. psql\'s \\copy account_charge TO account_charge.csv CSV HEADER)')
    .addOption(new Option('--keep-costs', 'keep TokenUsage\'s stored costs (ImportCharges, the operator key) instead of pricing every row again'))
    .addOption(new Option('--account <id>', 'import every row into this account').default('', "each row's Account.account_number"))
    .addOption(new Option('--user-from <field>', 'the Django user field that becomes user_id').choices(['id', 'username', 'email']).default('id'))
    .addOption(new Option('--token-usage-provider <id>', 'the provider of TokenUsage rows (the model names none)').default('openai'))
    .addOption(new Option('--source-time-zone <zone>', 'the IANA zone of DailyBillingRecord.date, and of created_at when it has no time zone (USE_TZ = False)').default('UTC'))
    .addOption(new Option('--charge-table <table>', 'the Charge table').default('account_charge'))
    .addOption(new Option('--token-usage-table <table>', 'the TokenUsage table').default('chatbot_tokenusage'))
    .addOption(new Option('--daily-billing-table <table>', 'the DailyBillingRecord table').default('account_dailybillingrecord'))
    .addOption(new Option('--llm-prices-table <table>', 'the LLMPrices table').default('account_llmprices'))
    .addOption(new Option('--user-profile-table <table>', 'the UserProfile table').default('account_userprofile'))
    .addOption(new Option('--account-table <table>', 'the Account table').default('account_account'))
    .addOption(new Option('--user-table <table>', 'the user table').default('auth_user'))
    .addOption(new Option('--batch-size <n>', 'rows per call').argParser((v) => {
      const n = positiveInt(v);
      if (n > 1000) throw new InvalidArgumentError('It must be a whole number from 1 to 1000.');
      return n;
    }).default(500))
    .option('--no-markups', 'do not import LLMPrices as markups')
    .option('--no-check', 'do not compare the totals per day')
    .option('--dry-run', 'map and report, write nothing')
    .option('--json', 'the report as JSON')
    .action(importDjangoCommand);

  const alerts = command(root, 'alerts', 'alert rules (thresholds on limits, spend and the credit balance), webhook endpoints and deliveries');
  listing(command(alerts, 'rules', 'the alert rules').alias('list'))
    .addOption(accountOption())
    .action(alertsRules);
  command(alerts, 'create', 'create an alert rule: spend amounts (USD), percentages of a limit, or credit balance amounts (USD)')
    .addOption(accountOption())
    .addOption(new Option('--kind <kind>', 'what the rule watches').choices(Object.keys(RULE_KIND)).makeOptionMandatory())
    .addOption(new Option('--period <period>', 'spend and limit: the period').choices(Object.keys(PERIOD)))
    .addOption(userOption('one user\'s spend or limit', 'the whole account'))
    .option('--each-user', 'spend: each user on its own')
    .option('--amounts <usd,...>', 'spend and balance: thresholds in USD, e.g. 10,50,100 (balance: fires when the available balance falls below each)')
    .option('--percentages <list>', 'limit: thresholds in percent of the limit, e.g. 50,80,100')
    .addOption(new Option('--measure <measure>', 'limit: what the limit counts').choices(Object.keys(MEASURE)))
    .option('--soft', 'limit: the soft limit (default: the hard one)')
    .option('--description <text>', 'shown in alerts', '')
    .action(alertsCreate);
  command(alerts, 'delete', 'delete an alert rule')
    .addOption(accountOption())
    .requiredOption('--rule <id>', 'the rule id')
    .action(alertsDelete);
  listing(command(alerts, 'endpoints', 'the webhook endpoints (never their secrets)'))
    .addOption(accountOption())
    .action(alertsEndpoints);
  listing(command(alerts, 'deliveries', 'webhook deliveries, newest first'))
    .addOption(accountOption())
    .addOption(new Option('--endpoint <id>', 'only this endpoint\'s').default('', 'every endpoint\'s'))
    .addOption(new Option('--status <status>', 'only deliveries in this status').choices(Object.keys(DELIVERY)))
    .addOption(new Option('--page-size <n>', 'at most this many').argParser(positiveInt).default(100))
    .action(alertsDeliveries);
  listing(command(alerts, 'attempts', 'the attempts of one delivery: time, HTTP status, latency, answer'))
    .addOption(accountOption())
    .requiredOption('--delivery <id>', 'the delivery id (its webhook-id), msg_...')
    .action(alertsAttempts);

  const webhooks = command(root, 'webhooks', 'webhook endpoints: create, test, rotate secrets, redeliver');
  command(webhooks, 'create', 'create an endpoint; prints its signing secret once')
    .addOption(accountOption())
    .requiredOption('--url <url>', 'an http or https URL the server\'s allow-list accepts')
    .option('--slack', 'post Slack incoming-webhook bodies ({"text": ...})')
    .addOption(new Option('--events <list>', 'comma-separated event types (alert.triggered, alert.resolved)').default('', 'all'))
    .option('--description <text>', 'what the endpoint is for', '')
    .action(webhooksCreate);
  command(webhooks, 'test', 'send a test event (webhook.test) to an endpoint')
    .addOption(accountOption())
    .requiredOption('--endpoint <id>', 'the endpoint id')
    .option('--wait', 'wait for the first attempt and print it (exit code 1 when it failed)')
    .action(webhooksTest);
  command(webhooks, 'rotate', 'replace an endpoint\'s signing secret; prints the new one once')
    .addOption(accountOption())
    .requiredOption('--endpoint <id>', 'the endpoint id')
    .action(webhooksRotate);
  command(webhooks, 'redeliver', 'make a delivery pending again (same webhook-id)')
    .addOption(accountOption())
    .requiredOption('--delivery <id>', 'the delivery id, msg_...')
    .action(webhooksRedeliver);
  command(webhooks, 'delete', 'delete an endpoint and its deliveries')
    .addOption(accountOption())
    .requiredOption('--endpoint <id>', 'the endpoint id')
    .action(webhooksDelete);

  return root;
}

/** A refusal or failure from the server, for humans: the code, the message, and the fields BadRequest names. */
function explain(err: ServiceError): string {
  const lines = [`error: ${status[err.code] ?? err.code}: ${err.details}`];
  const bin = err.metadata?.get('grpc-status-details-bin')[0];
  if (Buffer.isBuffer(bin)) {
    for (const any of Status.decode(bin).details) {
      if (any.typeUrl === 'type.googleapis.com/google.rpc.BadRequest') for (const v of BadRequest.decode(any.value).fieldViolations) lines.push(`  ${v.field}: ${v.description}`);
    }
  }
  const reason = errorInfo(err)?.reason;
  if (err.code === status.UNAVAILABLE) lines.push(`  is the server running at ${connection.address}?`);
  if (err.code === status.UNAUTHENTICATED) lines.push('  give an API key with --api-key or METERING_API_KEY');
  if (reason && reason !== status[err.code]) lines.push(`  reason: ${reason}`);
  return lines.join('\n');
}

export async function main(argv: string[]): Promise<number> {
  // `metering ... | head` closes the pipe early: that ends the output, it is no error.
  process.stdout.on('error', (err: NodeJS.ErrnoException) => {
    if (err.code === 'EPIPE') process.exit(0);
    throw err;
  });
  try {
    await program().parseAsync(argv, { from: 'user' });
    return 0;
  } catch (err) {
    if (err instanceof CommanderError) {
      // Help asked for (--help, -h, `help`) is success; any other parse error (commander printed it) is bad usage.
      return err.code === 'commander.helpDisplayed' || err.code === 'commander.version' || (err.code === 'commander.help' && err.exitCode === 0) ? 0 : 2;
    }
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n(run with --help for usage)\n`);
      return 2;
    }
    // The client refused to send a request the contract cannot carry (e.g. a count out of int64's range): bad usage.
    if (err instanceof MeteringRequestError) {
      process.stderr.write(`error: ${err.message}\n(run with --help for usage)\n`);
      return 2;
    }
    if (err instanceof ReportedFailure) {
      process.stderr.write(`error: ${err.message}\n`);
      return 1;
    }
    if ((err as ServiceError).code !== undefined && (err as ServiceError).metadata !== undefined) {
      process.stderr.write(`${explain(err as ServiceError)}\n`);
      return 1;
    }
    throw err;
  } finally {
    open?.close();
  }
}

if (require.main === module) void main(process.argv.slice(2)).then((code) => process.exit(code));

import { type ServiceError, status } from '@grpc/grpc-js';
import { errorInfo, MeteringClient } from '@metering/client';
import {
  ApiKeyScope,
  BadRequest,
  ChargeEventKind,
  ChargeType,
  LimitEnforcement,
  LimitMeasure,
  LimitPeriod,
  Money,
  PriceRates,
  RerateMode,
  Status,
} from '@metering/contracts';
import { readFileSync } from 'node:fs';
import { parseArgs } from 'node:util';

/**
 * `metering`: the admin CLI. Speaks the same gRPC API as every client, so it
 * works against any deployment (METERING_ADDRESS, METERING_API_KEY).
 */
const HELP = `metering <command> [options]

  usage     --account A --from YYYY-MM-DD --to YYYY-MM-DD [--user U] [--provider P] [--model M] [--json]
  limits    show --account A [--user U] [--json]
            set --account A [--user U] --period day|month --measure messages|tokens|cost --amount X [--soft]
            delete --account A [--user U] --period day|month --measure messages|tokens|cost [--soft]
  markups   show [--account A] [--provider P] [--json]
            set --provider P --model M --factor F [--account A] [--charge-type completion|plugin|tool]
  prices    show [--provider P] [--account A] [--json]
            set --provider P --model M --input USD/1M --output USD/1M [--account A] [--from ISO-TIME] [--source TEXT]
  keys      list --account A [--json]
            create --account A --name TEXT --scopes record,read,admin   (prints the secret once)
            revoke --account A --key-id k_...
  tail      --account A [--after N] [--user U] [--json]      (the charge stream; Ctrl-C stops)
  rerate    --account A --from YYYY-MM-DD --to YYYY-MM-DD [--all] [--dry-run]   (day by day, with progress)
  help

Connection: --address host:port (METERING_ADDRESS, default 127.0.0.1:50051), --api-key KEY
(METERING_API_KEY), --ca FILE (TLS with this CA), --tls (TLS with the system roots).
Exit codes: 0 done, 1 the server refused or failed (the message says why), 2 bad usage.`;

class UsageError extends Error {}

const { values: opt, positionals } = parseArgs({
  allowPositionals: true,
  options: {
    account: { type: 'string', default: '' },
    user: { type: 'string', default: '' },
    provider: { type: 'string', default: '' },
    model: { type: 'string', default: '' },
    from: { type: 'string' },
    to: { type: 'string' },
    period: { type: 'string' },
    measure: { type: 'string' },
    amount: { type: 'string' },
    soft: { type: 'boolean', default: false },
    factor: { type: 'string' },
    'charge-type': { type: 'string', default: 'completion' },
    name: { type: 'string' },
    scopes: { type: 'string' },
    'key-id': { type: 'string' },
    input: { type: 'string' },
    output: { type: 'string' },
    source: { type: 'string', default: 'set with the metering CLI' },
    after: { type: 'string' },
    all: { type: 'boolean', default: false },
    'dry-run': { type: 'boolean', default: false },
    json: { type: 'boolean', default: false },
    address: { type: 'string', default: process.env.METERING_ADDRESS ?? '127.0.0.1:50051' },
    'api-key': { type: 'string', default: process.env.METERING_API_KEY },
    ca: { type: 'string' },
    tls: { type: 'boolean', default: false },
  },
});

const client = new MeteringClient({
  address: opt.address,
  apiKey: opt['api-key'],
  tls: opt.ca ? { ca: readFileSync(opt.ca) } : opt.tls,
  deadlineMs: 30_000,
});

const out = (text: string): void => {
  process.stdout.write(`${text}\n`);
};
const money = (m?: Money) => m?.amount ?? '0';
const need = (name: keyof typeof opt): string => {
  const v = opt[name];
  if (typeof v !== 'string' || v === '') throw new UsageError(`--${name} is required`);
  return v;
};
const pick = <T>(name: string, value: string | undefined, choices: Record<string, T>): T => {
  if (value === undefined || !(value in choices)) throw new UsageError(`--${name} must be one of ${Object.keys(choices).join(', ')}`);
  return choices[value];
};

/** A table with right-aligned numbers. */
function table(header: string[], rows: string[][]): string {
  const widths = header.map((h, i) => Math.max(h.length, ...rows.map((r) => r[i].length)));
  const numeric = header.map((_, i) => rows.length > 0 && rows.every((r) => /^-?[\d.,]*$/.test(r[i])));
  const line = (cells: string[]) => cells.map((c, i) => (numeric[i] ? c.padStart(widths[i]) : c.padEnd(widths[i]))).join('  ').trimEnd();
  return [line(header), widths.map((w) => '-'.repeat(w)).join('  '), ...rows.map(line)].join('\n');
}

const PERIOD = { day: LimitPeriod.LIMIT_PERIOD_DAY, month: LimitPeriod.LIMIT_PERIOD_MONTH };
const MEASURE = { messages: LimitMeasure.LIMIT_MEASURE_MESSAGES, tokens: LimitMeasure.LIMIT_MEASURE_TOKENS, cost: LimitMeasure.LIMIT_MEASURE_COST };
const CHARGE_TYPE = { completion: ChargeType.CHARGE_TYPE_COMPLETION, plugin: ChargeType.CHARGE_TYPE_PLUGIN, tool: ChargeType.CHARGE_TYPE_TOOL };
const nameOf = <T extends Record<string, number>>(map: T, n: number) => Object.keys(map).find((k) => map[k] === n) ?? String(n);

async function usage(): Promise<void> {
  const rows = [];
  let pageToken = '';
  let totals;
  do {
    const page = await client.call('getDailyUsage', {
      accountId: opt.account, startDate: need('from'), endDate: need('to'), userId: opt.user, provider: opt.provider, model: opt.model, chargeType: 0, pageSize: 1000, pageToken,
    });
    rows.push(...page.usage);
    totals = page.totals;
    pageToken = page.nextPageToken;
  } while (pageToken);
  if (opt.json) return out(JSON.stringify({ usage: rows, totals }, null, 2));
  out(table(
    ['date', 'user', 'provider', 'model', 'type', 'messages', 'tokens', 'cost USD'],
    rows.map((r) => [r.date, r.userId, r.provider, r.model, nameOf(CHARGE_TYPE, r.chargeType), r.sums!.messageCount, r.sums!.tokens!.totalTokens, money(r.sums!.totalCost)]),
  ));
  out(`total: ${totals?.messageCount ?? 0} messages, ${totals?.tokens?.totalTokens ?? 0} tokens, ${money(totals?.totalCost)} USD` + (Number(totals?.unpricedMessageCount ?? 0) ? ` (${totals?.unpricedMessageCount} unpriced)` : ''));
}

async function limits(action: string): Promise<void> {
  const key = { accountId: opt.account, userId: opt.user };
  const enforcement = opt.soft ? LimitEnforcement.LIMIT_ENFORCEMENT_SOFT : LimitEnforcement.LIMIT_ENFORCEMENT_HARD;
  if (action === 'set') {
    const { limit } = await client.call('putLimit', { ...key, period: pick('period', opt.period, PERIOD), measure: pick('measure', opt.measure, MEASURE), amount: need('amount'), enforcement });
    return out(`set: ${limit?.userId || '(account)'} ${opt.period} ${opt.measure} ${opt.soft ? 'soft' : 'hard'} limit ${limit?.amount}`);
  }
  if (action === 'delete') {
    const { deleted } = await client.call('deleteLimit', { ...key, period: pick('period', opt.period, PERIOD), measure: pick('measure', opt.measure, MEASURE), enforcement });
    return out(deleted ? 'deleted' : 'no such limit');
  }
  if (action !== 'show') throw new UsageError('limits show|set|delete');
  const page = await client.call('listLimits', { ...key, pageSize: 1000, pageToken: '' });
  if (opt.json) return out(JSON.stringify(page, null, 2));
  out(table(
    ['scope', 'period', 'measure', 'kind', 'limit', 'used', 'reserved', 'remaining', 'since', 'exceeded'],
    page.limits.map((l) => [l.limit!.userId || '(account)', nameOf(PERIOD, l.limit!.period), nameOf(MEASURE, l.limit!.measure), l.limit!.enforcement === LimitEnforcement.LIMIT_ENFORCEMENT_SOFT ? 'soft' : 'hard', l.limit!.amount, l.used, l.reserved, l.remaining, l.periodStart, l.exceeded ? 'yes' : '']),
  ));
  out(`time zone: ${page.timeZone}`);
}

async function markups(action: string): Promise<void> {
  if (action === 'set') {
    const { markup } = await client.call('setMarkup', { accountId: opt.account, provider: need('provider'), model: need('model'), chargeType: pick('charge-type', opt['charge-type'], CHARGE_TYPE), factor: need('factor'), actor: 'metering CLI' });
    return out(`set: ${markup?.provider}/${markup?.model} ${opt['charge-type']} x${markup?.factor}${markup?.accountId ? ` for ${markup.accountId}` : ' (default)'}`);
  }
  if (action !== 'show') throw new UsageError('markups show|set');
  const { markups: list } = await client.call('listMarkups', { accountId: opt.account, provider: opt.provider });
  if (opt.json) return out(JSON.stringify(list, null, 2));
  out(table(['provider', 'model', 'type', 'factor', 'account'], list.map((m) => [m.provider, m.model, nameOf(CHARGE_TYPE, m.chargeType), m.factor, m.accountId || '(default)'])));
}

async function prices(action: string): Promise<void> {
  if (action === 'set') {
    const from = opt.from ? new Date(opt.from) : undefined;
    if (from && Number.isNaN(from.getTime())) throw new UsageError('--from must be an ISO time, e.g. 2026-12-01T00:00:00Z');
    const { price } = await client.call('setPrice', {
      accountId: opt.account, provider: need('provider'), model: need('model'),
      effectiveTime: from ? { seconds: String(Math.floor(from.getTime() / 1000)), nanos: 0 } : undefined,
      rates: PriceRates.fromPartial({ inputPerMillion: need('input'), outputPerMillion: need('output') }),
      source: opt.source, actor: 'metering CLI',
    });
    return out(`set: ${price?.provider}/${price?.model} ${price?.version}`);
  }
  if (action !== 'show') throw new UsageError('prices show|set');
  const { prices: list } = await client.call('listModels', { provider: opt.provider, accountId: opt.account, at: undefined, includeHistory: false, pageSize: 0, pageToken: '', name: '' });
  if (opt.json) return out(JSON.stringify(list, null, 2));
  out(table(['provider', 'model', 'input/1M', 'output/1M', 'version'], list.map((p) => [p.provider, p.model, p.rates?.inputPerMillion ?? '', p.rates?.outputPerMillion ?? '', p.version])));
}

const SCOPE = { record: ApiKeyScope.API_KEY_SCOPE_RECORD, read: ApiKeyScope.API_KEY_SCOPE_READ, admin: ApiKeyScope.API_KEY_SCOPE_ADMIN };

async function keys(action: string): Promise<void> {
  if (action === 'create') {
    const scopes = need('scopes').split(',').map((s) => pick('scopes', s.trim(), SCOPE));
    const { key, secret } = await client.call('createApiKey', { accountId: opt.account, name: need('name'), scopes });
    out(`created ${key?.keyId} for ${key?.accountId} (${need('scopes')})`);
    return out(`secret (shown only now): ${secret}`);
  }
  if (action === 'revoke') {
    const { key } = await client.call('revokeApiKey', { accountId: opt.account, keyId: need('key-id') });
    return out(`revoked ${key?.keyId}`);
  }
  if (action !== 'list' && action !== 'show') throw new UsageError('keys list|create|revoke');
  const { keys: list } = await client.call('listApiKeys', { accountId: opt.account });
  if (opt.json) return out(JSON.stringify(list, null, 2));
  const when = (t?: { seconds: string }) => (t ? new Date(Number(t.seconds) * 1000).toISOString() : '');
  out(table(['key id', 'name', 'scopes', 'created', 'revoked'], list.map((k) => [k.keyId, k.name, k.scopes.map((s) => nameOf(SCOPE, s)).join(','), when(k.createTime), when(k.revokeTime)])));
}

async function tail(): Promise<void> {
  const abort = new AbortController();
  process.once('SIGINT', () => abort.abort());
  process.once('SIGTERM', () => abort.abort());
  // On stderr, so that --json output stays one event per line; the sequence is a cursor for --after.
  const watching = (after: string) => process.stderr.write(`watching ${opt.account} after sequence ${after}\n`);
  for await (const e of client.watchCharges({ accountId: opt.account, afterSequence: opt.after, userId: opt.user, provider: opt.provider, model: opt.model }, abort.signal, watching)) {
    if (opt.json) {
      out(JSON.stringify(e));
      continue;
    }
    const what = e.charge
      ? `${e.charge.userId} ${e.charge.provider}/${e.charge.model} ${e.charge.tokens?.totalTokens ?? 0} tokens ${money(e.charge.totalCost)} USD key=${e.charge.idempotencyKey}`
      : `reservation ${e.reservation?.reservationId} of ${e.reservation?.userId}`;
    out(`#${e.sequence} ${nameOf(ChargeEventKind as unknown as Record<string, number>, e.kind).replace('CHARGE_EVENT_KIND_', '').toLowerCase()} ${what}`);
  }
}

async function rerate(): Promise<void> {
  const [from, to] = [need('from'), need('to')];
  const days: string[] = [];
  for (let t = Date.parse(`${from}T00:00:00Z`); t <= Date.parse(`${to}T00:00:00Z`); t += 86_400_000) days.push(new Date(t).toISOString().slice(0, 10));
  if (days.length === 0 || Number.isNaN(Date.parse(`${from}T00:00:00Z`))) throw new UsageError('--from and --to must be YYYY-MM-DD with from <= to');
  const sum = { examined: 0, changed: 0, newlyPriced: 0 };
  for (const [n, day] of days.entries()) {
    const r = await client.call('rerateCharges', { accountId: opt.account, startDate: day, endDate: day, mode: opt.all ? RerateMode.RERATE_MODE_ALL : RerateMode.RERATE_MODE_UNPRICED_ONLY, provider: opt.provider, model: opt.model, dryRun: opt['dry-run'] });
    sum.examined += Number(r.chargesExamined);
    sum.changed += Number(r.chargesChanged);
    sum.newlyPriced += Number(r.chargesNewlyPriced);
    const bar = '#'.repeat(Math.round(((n + 1) / days.length) * 30)).padEnd(30);
    process.stderr.write(`\r[${bar}] ${n + 1}/${days.length} days, ${sum.examined} charges examined, ${sum.changed} changed`);
  }
  process.stderr.write('\n');
  out(`${opt['dry-run'] ? 'dry run: would change' : 'changed'} ${sum.changed} of ${sum.examined} charges (${sum.newlyPriced} newly priced)`);
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
  if (err.code === status.UNAVAILABLE) lines.push(`  is the server running at ${opt.address}?`);
  if (err.code === status.UNAUTHENTICATED) lines.push('  give an API key with --api-key or METERING_API_KEY');
  if (reason && reason !== status[err.code]) lines.push(`  reason: ${reason}`);
  return lines.join('\n');
}

async function main(): Promise<number> {
  const [command, action = 'show'] = positionals;
  try {
    if (command === 'usage') await usage();
    else if (command === 'limits') await limits(action);
    else if (command === 'markups') await markups(action);
    else if (command === 'prices') await prices(action);
    else if (command === 'keys') await keys(action === 'show' ? 'list' : action);
    else if (command === 'tail') await tail();
    else if (command === 'rerate') await rerate();
    else if (command === 'help' || command === undefined) out(HELP);
    else throw new UsageError(`unknown command "${command}"`);
    return 0;
  } catch (err) {
    if (err instanceof UsageError) {
      process.stderr.write(`error: ${err.message}\n\n${HELP}\n`);
      return 2;
    }
    if ((err as ServiceError).code !== undefined) {
      process.stderr.write(`${explain(err as ServiceError)}\n`);
      return 1;
    }
    throw err;
  } finally {
    client.close();
  }
}

main().then((code) => process.exit(code));

import type { MeteringClient } from '@metering/client';
import { ChargeType, type KeptCost, PriceOrigin, type RecordChargeRequest, type RecordChargeResult, RequestType } from '@metering/contracts';
import Decimal from 'decimal.js';
import { existsSync, readFileSync } from 'node:fs';
import { join } from 'node:path';
import { Client as PgClient, escapeIdentifier } from 'pg';

/**
 * `metering import django`: copies the charges, token usage and markups of the Django models this
 * service replaces (Charge, TokenUsage, LLMPrices; DailyBillingRecord for the check) from their
 * Postgres database into the service, through the API like any client. Idempotent: each row's
 * idempotency key is derived from its table and primary key (django:charge:<id>,
 * django:tokenusage:<id>), so a second run records nothing again. Rows that cannot be mapped are
 * reported by table and id with the reason, never dropped silently. Afterwards the per-day totals
 * of what was imported are compared with GetDailyUsage (README "Migrating from the Django models").
 */

export interface DjangoImportOptions {
  /** The Django database; or */
  databaseUrl?: string;
  /** a folder of its tables exported as CSV (`<table>.csv` with a header row, as psql's \copy ... CSV HEADER writes). */
  csvDir?: string;
  /** Every row into this account instead of its Django Account's account_number. */
  account: string;
  userFrom: 'id' | 'username' | 'email';
  keepCosts?: boolean;
  /** The provider of TokenUsage rows (the model has none). */
  tokenUsageProvider: string;
  /** The zone of naive timestamps (USE_TZ = False) and of DailyBillingRecord.date. */
  sourceTimeZone: string;
  chargeTable: string;
  tokenUsageTable: string;
  dailyBillingTable: string;
  llmPricesTable: string;
  userProfileTable: string;
  accountTable: string;
  userTable: string;
  batchSize: number;
  markups: boolean;
  check: boolean;
  dryRun?: boolean;
  json?: boolean;
}

/** A source row that was not imported, and why. */
export interface NotImported {
  table: string;
  id: string;
  reason: string;
}

interface TableReport {
  table: string;
  read: number;
  imported: number;
  alreadyImported: number;
  /** Replays whose stored pricing is not what this run asked for (kept vs re-priced). */
  pricedOtherwise: number;
  notImported: number;
}

/** One (account, user, day) whose totals differ between the source and the service. */
export interface DayDifference {
  check: 'charges' | 'daily_billing_records';
  accountId: string;
  userId: string;
  date: string;
  field: string;
  source: string;
  service: string;
}

export interface DjangoImportReport {
  dryRun: boolean;
  keepCosts: boolean;
  markups: { read: number; set: number; unchanged: number; notImported: number };
  tables: TableReport[];
  notImported: NotImported[];
  checked: { charges: number; dailyBillingRecords: number };
  differences: DayDifference[];
  notes: string[];
}

const CHARGE_TYPES: Record<string, ChargeType> = { completion: ChargeType.CHARGE_TYPE_COMPLETION, plugin: ChargeType.CHARGE_TYPE_PLUGIN, tool: ChargeType.CHARGE_TYPE_TOOL };
const REQUEST_TYPES: Record<string, RequestType> = {
  chat: RequestType.REQUEST_TYPE_CHAT,
  summarization: RequestType.REQUEST_TYPE_SUMMARIZATION,
  embedding: RequestType.REQUEST_TYPE_EMBEDDING,
  tool_call: RequestType.REQUEST_TYPE_TOOL_CALL,
  vision: RequestType.REQUEST_TYPE_VISION,
};
const EARLIEST = Date.UTC(2000, 0, 1) / 1000;
const usd = (amount: string) => ({ amount, currencyCode: 'USD' });

/** A table name as given (optionally schema.table), quoted for SQL. */
function quoted(name: string): string {
  if (!/^[A-Za-z_][A-Za-z0-9_$]*(\.[A-Za-z_][A-Za-z0-9_$]*)?$/.test(name)) throw new Error(`"${name}" is not a table name`);
  return name.split('.').map((p) => escapeIdentifier(p)).join('.');
}

/** The local day (YYYY-MM-DD) of an instant in an IANA zone. */
const dayFormats = new Map<string, Intl.DateTimeFormat>();
function localDay(epochSeconds: number, zone: string): string {
  let f = dayFormats.get(zone);
  if (!f) dayFormats.set(zone, (f = new Intl.DateTimeFormat('en-CA', { timeZone: zone, year: 'numeric', month: '2-digit', day: '2-digit' })));
  return f.format(new Date(epochSeconds * 1000));
}

/** Seconds and nanos of an epoch given as exact decimal text ("1733500000.123456"). */
function timestampOf(epoch: string): { seconds: string; nanos: number } {
  const [whole, frac = ''] = epoch.split('.');
  const negative = whole.startsWith('-');
  let seconds = BigInt(whole);
  let nanos = Number(frac.padEnd(9, '0').slice(0, 9));
  if (negative && nanos > 0) {
    seconds -= 1n;
    nanos = 1_000_000_000 - nanos;
  }
  return { seconds: seconds.toString(), nanos };
}

/** The sums one (account, user, day) has: in the source or in the service. */
interface Sums {
  messages: number;
  prompt: number;
  completion: number;
  total: number;
  /** The billed cost, when every charge counted has a kept cost (else not compared). */
  cost: Decimal | null;
}
const emptySums = (): Sums => ({ messages: 0, prompt: 0, completion: 0, total: 0, cost: new Decimal(0) });

/** A mapped row: the charge to send, and what it adds to the source's per-day sums. */
interface Mapped {
  table: string;
  id: string;
  charge: Partial<RecordChargeRequest>;
  kept?: Partial<KeptCost>;
  epoch: number;
  keptTotal: Decimal | null;
}

export async function importDjango(client: MeteringClient, o: DjangoImportOptions, progress: (line: string) => void): Promise<DjangoImportReport> {
  const pg = await openSource(o);
  const report: DjangoImportReport = {
    dryRun: !!o.dryRun, keepCosts: !!o.keepCosts,
    markups: { read: 0, set: 0, unchanged: 0, notImported: 0 },
    tables: [], notImported: [], checked: { charges: 0, dailyBillingRecords: 0 }, differences: [], notes: [],
  };
  try {
    await pg.query(`SET TIME ZONE ${escapeLiteral('UTC')}`);
    // Read-only, one snapshot: every table is read as of one moment, and nothing can be written.
    await pg.query('BEGIN ISOLATION LEVEL REPEATABLE READ READ ONLY');
    const exists = async (table: string) => (await pg.query('SELECT to_regclass($1) IS NOT NULL AS ok', [table])).rows[0].ok as boolean;
    const has = {
      charge: await exists(o.chargeTable), tokenUsage: await exists(o.tokenUsageTable), daily: await exists(o.dailyBillingTable), prices: await exists(o.llmPricesTable),
      profile: await exists(o.userProfileTable), account: await exists(o.accountTable), user: await exists(o.userTable),
    };
    if (!has.charge && !has.tokenUsage && !has.prices) throw new Error(`none of ${o.chargeTable}, ${o.tokenUsageTable}, ${o.llmPricesTable} exists in that database`);
    for (const [t, ok] of [[o.chargeTable, has.charge], [o.tokenUsageTable, has.tokenUsage], [o.llmPricesTable, has.prices], [o.dailyBillingTable, has.daily]] as const) {
      if (!ok) report.notes.push(`${t} does not exist: skipped`);
    }
    if (!o.account && (has.charge || has.daily) && !(has.profile && has.account)) throw new Error(`${o.userProfileTable} and ${o.accountTable} are needed to find each row's account (or give --account)`);
    if (o.userFrom !== 'id' && !has.user) throw new Error(`${o.userTable} is needed for --user-from ${o.userFrom}`);

    /** The SQL of a row's usage time as exact epoch seconds, whatever the column's type (naive: in the source's zone). */
    const epochOf = async (table: string, alias: string) => {
      const { rows } = await pg.query(`SELECT format_type(atttypid, atttypmod) AS type FROM pg_attribute WHERE attrelid = $1::regclass AND attname = 'created_at'`, [table]);
      if (!rows[0]) throw new Error(`${table} has no created_at column`);
      return rows[0].type === 'timestamp with time zone' ? `extract(epoch FROM ${alias}.created_at)::text` : `extract(epoch FROM ${alias}.created_at AT TIME ZONE ${escapeLiteral(o.sourceTimeZone)})::text`;
    };
    const userKey = (idColumn: string) => (o.userFrom === 'id' ? `${idColumn}::text` : `(SELECT u.${o.userFrom === 'email' ? 'email' : 'username'} FROM ${quoted(o.userTable)} u WHERE u.id = ${idColumn})`);
    const accountOfAccountId = (idColumn: string) => (o.account ? escapeLiteral(o.account) : `(SELECT a.account_number FROM ${quoted(o.accountTable)} a WHERE a.id = ${idColumn})`);

    // ---- markups first: re-priced charges are billed with them
    if (has.prices && o.markups) await importMarkups(client, pg, o, report, progress);

    // ---- the service's time zone of each account (the days its rollups count in)
    const zones = new Map<string, string>();
    const zoneOf = async (accountId: string) => {
      if (!zones.has(accountId)) {
        const { account } = await client.call('getAccount', { accountId });
        zones.set(accountId, account?.timeZone || 'UTC');
      }
      return zones.get(accountId) as string;
    };
    /** What was imported (or had been): per account, user and the account's day; and the Charge rows per source day, for DailyBillingRecord. */
    const expected = new Map<string, Sums>();
    const chargeRowsBySourceDay = new Map<string, Sums>();
    const add = (map: Map<string, Sums>, key: string, m: Mapped) => {
      const s = map.get(key) ?? emptySums();
      s.messages += 1;
      s.prompt += Number(m.charge.promptTokens);
      s.completion += Number(m.charge.completionTokens);
      s.total += Number(m.charge.promptTokens) + Number(m.charge.completionTokens);
      s.cost = s.cost && m.keptTotal ? s.cost.plus(m.keptTotal) : null;
      map.set(key, s);
    };

    const send = async (table: string, batch: Mapped[], t: TableReport) => {
      if (batch.length === 0) return;
      if (o.dryRun) {
        t.imported += batch.length;
        return;
      }
      const results: RecordChargeResult[] = o.keepCosts
        ? (await client.call('importCharges', { charges: batch.map((m) => ({ charge: m.charge, keptCost: m.kept })) })).results
        : (await client.call('recordCharges', { charges: batch.map((m) => m.charge) })).results;
      for (const [n, r] of results.entries()) {
        const m = batch[n];
        if (r.result?.$case === 'recorded') {
          const { replayed, charge } = r.result.value;
          if (replayed) {
            t.alreadyImported++;
            const kept = charge?.priceOrigin === PriceOrigin.PRICE_ORIGIN_IMPORTED;
            if (kept !== !!m.kept) t.pricedOtherwise++;
            // What the service holds decides the cost compared: a kept cost only if it kept one.
            if (!kept) m.keptTotal = null;
            else m.keptTotal = new Decimal(charge?.totalCost?.amount || '0');
          } else t.imported++;
          await count(m);
        } else if (r.result?.$case === 'error') {
          const status = r.result.value;
          // ALREADY_EXISTS: imported before with other content (the row changed since): the service keeps the first.
          if (status.code === 6) {
            notImported(table, m.id, `imported before with other content (the row changed since, or other options): ${status.message}`, t);
            m.keptTotal = null;
            await count(m);
          } else notImported(table, m.id, `refused by the service: ${status.message}`, t);
        }
      }
    };
    const count = async (m: Mapped) => {
      const accountId = m.charge.accountId as string;
      add(expected, `${accountId}\u0000${m.charge.userId}\u0000${localDay(m.epoch, await zoneOf(accountId))}`, m);
      if (m.table === o.chargeTable) add(chargeRowsBySourceDay, `${accountId}\u0000${m.charge.userId}\u0000${localDay(m.epoch, o.sourceTimeZone)}`, m);
    };
    const notImported = (table: string, id: string, reason: string, t: TableReport) => {
      t.notImported++;
      report.notImported.push({ table, id, reason });
    };

    /** Reads a table in primary key order, a batch at a time, maps each row and sends the batch. */
    const importTable = async (table: string, select: string, map: (row: Record<string, unknown>) => Mapped | string) => {
      const t: TableReport = { table, read: 0, imported: 0, alreadyImported: 0, pricedOtherwise: 0, notImported: 0 };
      report.tables.push(t);
      let after = '-9223372036854775808';
      for (;;) {
        const { rows } = await pg.query(`${select} WHERE r.id > $1::bigint ORDER BY r.id LIMIT $2`, [after, o.batchSize]);
        if (rows.length === 0) break;
        const batch: Mapped[] = [];
        for (const row of rows) {
          t.read++;
          const mapped = map(row);
          if (typeof mapped === 'string') notImported(table, String(row.id), mapped, t);
          else batch.push(mapped);
        }
        await send(table, batch, t);
        after = String(rows[rows.length - 1].id);
        progress(`${table}: ${t.read} read, ${t.imported} imported, ${t.alreadyImported} already imported, ${t.notImported} not imported`);
      }
    };

    const common = (table: string, row: Record<string, unknown>, accountId: unknown, userId: unknown): string | undefined => {
      if (accountId === null || accountId === undefined || accountId === '') return 'no account: the row reaches no Account (or give --account)';
      if (userId === null || userId === undefined || userId === '') return `no user: the row reaches no user${o.userFrom === 'id' ? '' : ` with a ${o.userFrom}`}`;
      for (const f of ['prompt_tokens', 'completion_tokens', 'total_tokens', 'reasoning_tokens'] as const) {
        if (row[f] !== undefined && row[f] !== null && Number(row[f]) < 0) return `${f} is negative (${row[f]})`;
      }
      const epoch = Number(row.epoch);
      if (epoch < EARLIEST) return `created_at ${new Date(epoch * 1000).toISOString()} is before 2000-01-01`;
      if (epoch * 1000 > Date.now() + 3_600_000) return `created_at ${new Date(epoch * 1000).toISOString()} is in the future`;
      void table;
      return undefined;
    };

    // ---- Charge: no costs in the model; always priced by the service (with the markups above)
    if (has.charge) {
      const c = quoted(o.chargeTable);
      const profile = quoted(o.userProfileTable);
      const select = `SELECT r.id::text AS id, r.session_key, r.provider, r.charge_type, r.prompt_tokens, r.completion_tokens, r.total_tokens, r.model, r.reference,
          ${await epochOf(o.chargeTable, 'r')} AS epoch,
          ${has.profile ? `(SELECT ${o.account ? escapeLiteral(o.account) : accountOfAccountId('p.account_id')} FROM ${profile} p WHERE p.id = r.user_profile_id)` : escapeLiteral(o.account)} AS account_id,
          ${has.profile ? `(SELECT ${userKey('p.user_id')} FROM ${profile} p WHERE p.id = r.user_profile_id)` : 'NULL'} AS user_id
        FROM ${c} r`;
      await importTable(o.chargeTable, select, (row) => {
        if (row.account_id === null && row.user_id === null) return 'user_profile_id is null: the charge names no user profile, so no account or user to bill';
        const problem = common(o.chargeTable, row, row.account_id, row.user_id);
        if (problem) return problem;
        const chargeType = CHARGE_TYPES[row.charge_type as string];
        if (chargeType === undefined) return `charge_type "${row.charge_type}" is none of completion, plugin, tool`;
        const prompt = Number(row.prompt_tokens);
        const completion = Number(row.completion_tokens);
        if (Number(row.total_tokens) !== prompt + completion) return `total_tokens ${row.total_tokens} is not prompt_tokens + completion_tokens (${prompt + completion})`;
        return {
          table: o.chargeTable, id: row.id as string, epoch: Number(row.epoch), keptTotal: null,
          charge: {
            accountId: row.account_id as string, userId: row.user_id as string, idempotencyKey: `django:charge:${row.id}`,
            sessionKey: (row.session_key as string | null) ?? '', provider: row.provider as string, model: row.model as string, chargeType,
            requestType: RequestType.REQUEST_TYPE_CHAT, promptTokens: String(prompt), completionTokens: String(completion),
            reference: row.reference as string, usageTime: timestampOf(row.epoch as string),
          },
        };
      });
    }

    // ---- TokenUsage: costs kept (--keep-costs) or priced by the service
    if (has.tokenUsage) {
      const accountOfUser = o.account
        ? escapeLiteral(o.account)
        : has.profile && has.account
          ? `(SELECT CASE WHEN count(DISTINCT p.account_id) = 1 THEN min(a.account_number) END FROM ${quoted(o.userProfileTable)} p JOIN ${quoted(o.accountTable)} a ON a.id = p.account_id WHERE p.user_id = r.user_id)`
          : 'NULL';
      const accounts = has.profile ? `(SELECT count(DISTINCT p.account_id) FROM ${quoted(o.userProfileTable)} p WHERE p.user_id = r.user_id)` : '0';
      const select = `SELECT r.id::text AS id, r.model_name, r.prompt_tokens, r.completion_tokens, r.total_tokens, r.reasoning_tokens,
          r.prompt_cost::text AS prompt_cost, r.completion_cost::text AS completion_cost, r.total_cost::text AS total_cost,
          r.request_type, r.endpoint, r.response_time_ms, r.was_cached, r.had_error, r.error_message, r.metadata, r.chat_session_id::text AS chat_session_id,
          ${await epochOf(o.tokenUsageTable, 'r')} AS epoch, ${accountOfUser} AS account_id, ${accounts} AS accounts, ${userKey('r.user_id')} AS user_id
        FROM ${quoted(o.tokenUsageTable)} r`;
      await importTable(o.tokenUsageTable, select, (row) => {
        if (!o.account && row.account_id === null) {
          return Number(row.accounts) > 1 ? `user ${row.user_id} has profiles in ${row.accounts} accounts: give --account` : `user ${row.user_id} has no account (no user profile): give --account`;
        }
        const problem = common(o.tokenUsageTable, row, row.account_id, row.user_id);
        if (problem) return problem;
        const requestType = REQUEST_TYPES[row.request_type as string];
        if (requestType === undefined) return `request_type "${row.request_type}" is none of chat, summarization, embedding, tool_call, vision`;
        const metadata = row.metadata ?? {};
        if (typeof metadata !== 'object' || Array.isArray(metadata)) return 'metadata is not a JSON object';
        const prompt = Number(row.prompt_tokens);
        const reasoning = Number(row.reasoning_tokens ?? 0);
        // TokenUsage counts reasoning tokens beside completion tokens (total = prompt + completion + reasoning);
        // here they are part of completion_tokens, so the total and the billed output tokens stay the same.
        const completion = Number(row.completion_tokens) + reasoning;
        if (Number(row.total_tokens) !== prompt + completion) return `total_tokens ${row.total_tokens} is not prompt_tokens + completion_tokens + reasoning_tokens (${prompt + completion})`;
        let kept: Mapped['kept'];
        let keptTotal: Decimal | null = null;
        if (o.keepCosts) {
          const [p, c, t] = [new Decimal(row.prompt_cost as string), new Decimal(row.completion_cost as string), new Decimal(row.total_cost as string)];
          if (p.isNegative() || c.isNegative()) return `a cost is negative (prompt_cost ${row.prompt_cost}, completion_cost ${row.completion_cost})`;
          if (!t.equals(p.plus(c))) return `total_cost ${row.total_cost} is not prompt_cost + completion_cost (${p.plus(c).toFixed()})`;
          kept = { promptCost: usd(p.toFixed()), completionCost: usd(c.toFixed()), totalCost: usd(t.toFixed()), markup: '', source: `django:${o.tokenUsageTable}` };
          keptTotal = t;
        }
        return {
          table: o.tokenUsageTable, id: row.id as string, epoch: Number(row.epoch), kept, keptTotal,
          charge: {
            accountId: row.account_id as string, userId: row.user_id as string, idempotencyKey: `django:tokenusage:${row.id}`,
            sessionKey: (row.chat_session_id as string | null) ?? '', provider: o.tokenUsageProvider, model: row.model_name as string,
            chargeType: ChargeType.CHARGE_TYPE_COMPLETION, requestType, promptTokens: String(prompt), completionTokens: String(completion), reasoningTokens: String(reasoning),
            endpoint: (row.endpoint as string | null) ?? '', responseTimeMs: row.response_time_ms === null ? undefined : String(row.response_time_ms),
            wasCached: row.was_cached as boolean, hadError: row.had_error as boolean, errorMessage: (row.error_message as string | null) ?? '',
            metadata: metadata as Record<string, unknown>, usageTime: timestampOf(row.epoch as string),
          },
        };
      });
    }

    // ---- the per-day check
    if (o.check && !o.dryRun) {
      const actual = new Map<string, Sums>();
      const readUsage = async (accountId: string, days: string[], timeZone: string) => {
        const sorted = [...days].sort();
        for (let start = sorted[0]; start <= sorted[sorted.length - 1];) {
          const end = [addDays(start, 365), sorted[sorted.length - 1]].sort()[0];
          let pageToken = '';
          do {
            const page = await client.call('getDailyUsage', { accountId, startDate: start, endDate: end, pageSize: 1000, pageToken, timeZone });
            for (const u of page.usage) {
              const key = `${accountId}\u0000${u.userId}\u0000${u.date}\u0000${timeZone}`;
              const s = actual.get(key) ?? emptySums();
              s.messages += Number(u.sums?.messageCount ?? 0);
              s.prompt += Number(u.sums?.tokens?.promptTokens ?? 0);
              s.completion += Number(u.sums?.tokens?.completionTokens ?? 0);
              s.total += Number(u.sums?.tokens?.totalTokens ?? 0);
              s.cost = (s.cost ?? new Decimal(0)).plus(u.sums?.totalCost?.amount || '0');
              actual.set(key, s);
            }
            pageToken = page.nextPageToken;
          } while (pageToken);
          start = addDays(end, 1);
        }
      };
      const daysOf = (map: Map<string, Sums>) => {
        const by = new Map<string, string[]>();
        for (const key of map.keys()) {
          const [accountId, , day] = key.split('\u0000');
          by.set(accountId, [...(by.get(accountId) ?? []), day]);
        }
        return by;
      };
      // Charges: what was imported, per the account's days, against the rollups.
      for (const [accountId, days] of daysOf(expected)) await readUsage(accountId, days, '');
      // Every (account, user, day) of the imported accounts on either side: a day the service has
      // and the source does not differs too.
      const accounts = new Set([...expected.keys()].map((k) => k.split('\u0000')[0]));
      const keys = new Set(expected.keys());
      for (const key of actual.keys()) {
        const [accountId, userId, date, zone] = key.split('\u0000');
        if (zone === '' && accounts.has(accountId)) keys.add(`${accountId}\u0000${userId}\u0000${date}`);
      }
      for (const key of [...keys].sort()) {
        const [accountId, userId, date] = key.split('\u0000');
        const w = expected.get(key) ?? emptySums();
        const a = actual.get(`${key}\u0000`) ?? emptySums();
        for (const f of ['messages', 'prompt', 'completion', 'total'] as const) {
          if (w[f] !== a[f]) report.differences.push({ check: 'charges', accountId, userId, date, field: f, source: String(w[f]), service: String(a[f]) });
        }
        // Costs are compared where the source states them: days of kept costs only.
        if (w.cost && expected.has(key) && !w.cost.equals(a.cost ?? 0)) {
          report.differences.push({ check: 'charges', accountId, userId, date, field: 'cost', source: w.cost.toFixed(), service: (a.cost ?? new Decimal(0)).toFixed() });
        }
      }
      report.checked.charges = expected.size;
      // DailyBillingRecord: Django's own daily sums (in the source's days) against the Charge rows imported.
      if (has.daily && has.charge) {
        const records = new Map<string, Sums>();
        const { rows } = await pg.query(
          `SELECT ${accountOfAccountId('r.account_id')} AS account_id, ${userKey('r.user_id')} AS user_id, r.date::text AS date,
                  sum(r.prompt_tokens)::text AS prompt, sum(r.completion_tokens)::text AS completion, sum(r.total_tokens)::text AS total
             FROM ${quoted(o.dailyBillingTable)} r GROUP BY 1, 2, 3`,
        );
        for (const r of rows) {
          const key = `${r.account_id}\u0000${r.user_id}\u0000${r.date}`;
          const s = records.get(key) ?? { ...emptySums(), cost: null };
          s.prompt += Number(r.prompt);
          s.completion += Number(r.completion);
          s.total += Number(r.total);
          records.set(key, s);
        }
        for (const [key, s] of records) {
          const [accountId, userId, date] = key.split('\u0000');
          const got = chargeRowsBySourceDay.get(key) ?? emptySums();
          for (const f of ['prompt', 'completion', 'total'] as const) {
            if (s[f] !== got[f]) report.differences.push({ check: 'daily_billing_records', accountId, userId, date, field: f, source: String(s[f]), service: String(got[f]) });
          }
        }
        for (const [key, got] of chargeRowsBySourceDay) {
          if (records.has(key)) continue;
          const [accountId, userId, date] = key.split('\u0000');
          report.differences.push({ check: 'daily_billing_records', accountId, userId, date, field: 'total', source: '(no record)', service: String(got.total) });
        }
        report.checked.dailyBillingRecords = records.size;
      }
    }
    return report;
  } finally {
    await pg.end();
  }
}

/** LLMPrices -> markups: the default factor of every account for (charge type, provider, model). */
async function importMarkups(client: MeteringClient, pg: Source, o: DjangoImportOptions, report: DjangoImportReport, progress: (line: string) => void) {
  const { rows } = await pg.query(`SELECT r.id::text AS id, r.charge_type, r.provider, r.model, r.price::text AS price FROM ${quoted(o.llmPricesTable)} r ORDER BY r.id`);
  const { markups } = await client.call('listMarkups', { accountId: '', provider: '' });
  const fail = (id: string, reason: string) => {
    report.markups.notImported++;
    report.notImported.push({ table: o.llmPricesTable, id, reason });
  };
  for (const row of rows) {
    report.markups.read++;
    const chargeType = CHARGE_TYPES[row.charge_type];
    if (chargeType === undefined) {
      fail(row.id, `charge_type "${row.charge_type}" is none of completion, plugin, tool`);
      continue;
    }
    const factor = new Decimal(row.price);
    if (factor.lessThanOrEqualTo(0) || factor.greaterThan(100)) {
      fail(row.id, `price ${row.price} is not a markup factor greater than 0 and at most 100`);
      continue;
    }
    const same = markups.find((m) => !m.accountId && m.chargeType === chargeType && m.provider === row.provider && m.model === row.model);
    if (same && new Decimal(same.factor).equals(factor)) {
      report.markups.unchanged++;
      continue;
    }
    if (o.dryRun) {
      report.markups.set++;
      continue;
    }
    try {
      await client.call('setMarkup', { accountId: '', chargeType, provider: row.provider, model: row.model, factor: factor.toFixed(), actor: `django import (${o.llmPricesTable} ${row.id})` });
      report.markups.set++;
    } catch (err) {
      const e = err as { code?: number; details?: string };
      if (e.code !== 3) throw err;
      fail(row.id, `refused by the service: ${e.details}`);
    }
  }
  progress(`${o.llmPricesTable}: ${report.markups.set} markups set, ${report.markups.unchanged} unchanged, ${report.markups.notImported} not imported`);
}

const escapeLiteral = (s: string) => `'${s.replace(/'/g, "''")}'`;
const addDays = (day: string, n: number) => new Date(Date.parse(`${day}T00:00:00Z`) + n * 86_400_000).toISOString().slice(0, 10);

/** What the import reads from: the Django database, or its tables exported as CSV. */
interface Source {
  query(text: string, values?: unknown[]): Promise<{ rows: Array<Record<string, any>> }>; // eslint-disable-line @typescript-eslint/no-explicit-any
  end(): Promise<void>;
}

/** The column types of the Django models' tables, by column name (for CSV files, which carry none). */
const COLUMN_TYPES: Array<[RegExp, string]> = [
  [/^(id|.*_id)$/, 'bigint'],
  [/^(created_at|updated_at|last_login|date_joined)$/, 'timestamptz'],
  [/^date$/, 'date'],
  [/^(.*_tokens|response_time_ms)$/, 'integer'],
  [/^(.*_cost|price)$/, 'numeric'],
  [/^(was_cached|had_error|is_[a-z_]+)$/, 'boolean'],
  [/^metadata$/, 'jsonb'],
];

async function openSource(o: DjangoImportOptions): Promise<Source> {
  if (!o.csvDir) {
    const pg = new PgClient({ connectionString: o.databaseUrl, application_name: 'metering import django' });
    await pg.connect();
    return { query: (text, values) => pg.query(text, values), end: () => pg.end() };
  }
  // CSV: each file becomes a table of an in-memory embedded Postgres (PGlite, the server's own
  // embedded database), read by Postgres's own CSV parser; then the same SQL runs on it.
  const { PGlite } = await import('@electric-sql/pglite');
  const db = new PGlite();
  // A time without an offset (a database with USE_TZ = False) is in the source's zone.
  await db.query(`SET TIME ZONE ${escapeLiteral(o.sourceTimeZone)}`);
  for (const table of new Set([o.chargeTable, o.tokenUsageTable, o.dailyBillingTable, o.llmPricesTable, o.userProfileTable, o.accountTable, o.userTable])) {
    const file = join(o.csvDir, `${table}.csv`);
    if (!existsSync(file)) continue;
    const text = readFileSync(file, 'utf8');
    const columns = (text.split(/\r?\n/, 1)[0] ?? '').split(',').map((c) => c.trim().replace(/^"(.*)"$/, '$1'));
    if (!columns.every((c) => /^[a-z_][a-z0-9_]*$/.test(c))) throw new Error(`${file}: the first line must be the header of column names`);
    const types = columns.map((c) => COLUMN_TYPES.find(([re]) => re.test(c))?.[1] ?? 'text');
    await db.query(`CREATE TABLE ${quoted(table)} (${columns.map((c, n) => `${escapeIdentifier(c)} ${types[n]}`).join(', ')})`);
    try {
      await db.query(`COPY ${quoted(table)} FROM '/dev/blob' WITH (FORMAT csv, HEADER true)`, [], { blob: new Blob([text]) });
    } catch (err) {
      throw new Error(`${file}: ${(err as Error).message}`);
    }
  }
  return {
    query: (text, values) => db.query(text, values) as Promise<{ rows: Array<Record<string, unknown>> }>,
    end: () => db.close(),
  };
}

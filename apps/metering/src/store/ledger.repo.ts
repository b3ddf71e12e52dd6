import { ChargeRecord, counterId, CounterDelta, dimensionDaysOf, CounterKey, CounterState, HourDelta, hourId, HourKey, LedgerEntries, ScopedHour, LedgerEvent, LimitPeriod, ROLLUP_INT_SUMS, ROLLUP_MONEY_SUMS, RollupSums, ZERO_USAGE } from '@metering/domain';
import { Dec } from '@metering/pricing';
import { CREDIT_CTES, creditParams, CreditWrites } from './credits.repo';
import { chargeColumns, toChargeRow } from './charges.repo';
import { updatedAccounts } from './citus';
import { countRollupRows, Db, onCitus, perCallStatement, statement, Tx } from './db';
import { SETTINGS_ARE } from './settings-epoch.repo';
import { appendEventsWithDeliveries, hasAlerts } from './alerts.repo';
import { appendEvents, EVENTS_CHANNEL, OUTBOX_CTES, outboxParam } from './events.repo';
import { ROLLUP_COLUMNS } from './usage.repo';

/**
 * Applies the usage ledger's entries (libs/domain/src/ledger.ts) in the
 * caller's transaction, in the one order every write path uses, so that
 * concurrent writers lock rows in the same order and cannot deadlock:
 *
 *   reservations (already locked by the caller, in id order) -> daily_usage
 *   (key order) -> dimension_usage, then dimension_usage_daily (key order) ->
 *   usage_counters (key order: account, period, period start, user, scope;
 *   the API key and tag scopes have user '' and follow the account's row) ->
 *   hourly_counters (key order: account, hour, user, scope; what rolling
 *   windows sum) -> the outbox (last: its per-account sequence row is held
 *   until commit).
 *
 * Charges are inserted by the caller before (their idempotency keys decide
 * what is new), or, when all are new, by the same statement first
 * (recordNewCharges, outside a transaction). Every statement filters on or writes one account's rows by
 * account_id (a batch of several accounts writes each account's rows), and
 * timestamps are parameters, not the database's clock. No business rules.
 */

const COUNTER_COLUMNS = ['message_count', 'unpriced_message_count', 'total_tokens', 'total_cost', 'reserved_messages', 'reserved_tokens', 'reserved_cost'] as const;
const COUNTER_KEY = ['account_id', 'period', 'period_start', 'user_id', 'scope'];

export function toCounterState(r: Record<string, string>): CounterState {
  return {
    accountId: r.account_id, period: r.period as LimitPeriod, periodStart: r.period_start, userId: r.user_id, ...(r.scope ? { scope: r.scope } : {}),
    used: { messageCount: BigInt(r.message_count ?? 0), totalTokens: BigInt(r.total_tokens ?? 0), totalCost: new Dec(r.total_cost ?? 0) },
    reserved: { messageCount: BigInt(r.reserved_messages ?? 0), totalTokens: BigInt(r.reserved_tokens ?? 0), totalCost: new Dec(r.reserved_cost ?? 0) },
  };
}

const counterRow = (d: CounterDelta, now: Date) => ({
  account_id: d.key.accountId, period: d.key.period, period_start: d.key.periodStart, user_id: d.key.userId, scope: d.key.scope ?? '',
  message_count: d.used.messageCount.toString(), unpriced_message_count: d.unpricedMessages.toString(), total_tokens: d.used.totalTokens.toString(), total_cost: d.used.totalCost.toFixed(),
  reserved_messages: d.reserved.messageCount.toString(), reserved_tokens: d.reserved.totalTokens.toString(), reserved_cost: d.reserved.totalCost.toFixed(),
  updated_at: now,
});

/**
 * Locks usage counters (creating missing ones at zero) in key order and
 * returns them: what a decision against limits reads before it writes, so
 * that concurrent reservations and charges of the same counters queue here.
 * An upsert rather than SELECT FOR UPDATE, which cannot lock a row that does
 * not exist yet. One account's counters (the caller's keys share one account_id).
 */
export async function lockCounters(tx: Tx, keys: CounterKey[], now: Date): Promise<CounterState[]> {
  const sorted = [...new Map(keys.map((k) => [counterId(k), k])).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, k]) => k);
  const { rows } = await statement(tx, 'lock_counters', LOCK_COUNTERS_SQL, [JSON.stringify(sorted.map((key) => counterRow({ key, used: ZERO_USAGE, unpricedMessages: 0n, reserved: ZERO_USAGE }, now)))]);
  return (rows as Array<Record<string, string>>).map(toCounterState);
}

const HOUR_KEY = ['account_id', 'hour_start', 'user_id', 'scope'];
const HOUR_COLUMNS = ['message_count', 'total_tokens', 'total_cost', 'reserved_messages', 'reserved_tokens', 'reserved_cost'] as const;

const hourRow = (d: HourDelta, now: Date) => ({
  account_id: d.key.accountId, hour_start: d.key.hourStart, user_id: d.key.userId, scope: d.key.scope,
  message_count: d.used.messageCount.toString(), total_tokens: d.used.totalTokens.toString(), total_cost: d.used.totalCost.toFixed(),
  reserved_messages: d.reserved.messageCount.toString(), reserved_tokens: d.reserved.totalTokens.toString(), reserved_cost: d.reserved.totalCost.toFixed(),
  updated_at: now,
});

export const toHourUsage = (r: Record<string, string | Date>): ScopedHour => ({
  hourStart: r.hour_start instanceof Date ? r.hour_start : new Date(r.hour_start),
  userId: r.user_id as string,
  scope: r.scope as string,
  used: { messageCount: BigInt(r.message_count as string), totalTokens: BigInt(r.total_tokens as string), totalCost: new Dec(r.total_cost as string) },
  reserved: { messageCount: BigInt(r.reserved_messages as string), totalTokens: BigInt(r.reserved_tokens as string), totalCost: new Dec(r.reserved_cost as string) },
});

/**
 * Locks usage hours (creating missing ones at zero) in key order: a reservation of an account
 * with rolling limits locks the current hour of every scope it holds on, after its counters (the
 * lock order: usage_counters, then hourly_counters), so concurrent reservations of those scopes
 * queue here. One account's hours.
 */
export async function lockHours(tx: Tx, keys: HourKey[], now: Date): Promise<void> {
  const sorted = [...new Map(keys.map((k) => [hourId(k), k])).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, k]) => k);
  await statement(tx, 'lock_hours', LOCK_HOURS_SQL, [JSON.stringify(sorted.map((key) => hourRow({ key, used: ZERO_USAGE, reserved: ZERO_USAGE }, now)))]);
}

const LOCK_HOURS_SQL = `INSERT INTO hourly_counters AS h (${[...HOUR_KEY, ...HOUR_COLUMNS, 'updated_at'].join(', ')})
    SELECT ${[...HOUR_KEY, ...HOUR_COLUMNS, 'updated_at'].join(', ')} FROM json_populate_recordset(NULL::hourly_counters, ?::json)
  ON CONFLICT (${HOUR_KEY.join(', ')}) DO UPDATE SET updated_at = excluded.updated_at`;

/**
 * The hours (`h`) of some scopes of an account from an hour on, scope by scope (the key is
 * account, user, scope, hour: migration 20261207140000_hourly_counters_by_scope), as a FROM
 * clause. Its parameters, in order: the users (with '' for the account and the other scopes),
 * the other scopes (with ''), the account, the first hour. readHours and CheckLimits' read.
 * OFFSET 0 keeps the subquery a probe per scope: without it the planner may flatten it into a
 * join and, planning without the values (a generic plan), read the account's hours by
 * (account_id, hour_start >= ...) alone, every user's.
 */
export const SCOPE_HOURS = `(SELECT DISTINCT unnest(?::text[])) u(user_id) CROSS JOIN (SELECT DISTINCT unnest(?::text[])) s(scope)
         CROSS JOIN LATERAL (SELECT * FROM hourly_counters WHERE account_id = ? AND user_id = u.user_id AND scope = s.scope AND hour_start >= ? OFFSET 0) h`;

/**
 * The usage hours of some scopes of an account from an hour on (a rolling window's, read after
 * its current hours are locked: a statement of its own, so that it sees what the transactions it
 * waited for committed). Users '' (the account and the other scopes) and the given users (SCOPE_HOURS).
 */
export async function readHours(tx: Tx, accountId: string, userIds: string[], scopes: string[], from: Date): Promise<Array<ScopedHour>> {
  const { rows } = await perCallStatement(
    tx,
    `SELECT ${[...HOUR_KEY, ...HOUR_COLUMNS].map((c) => `h.${c}`).join(', ')} FROM ${SCOPE_HOURS}`,
    [['', ...userIds], ['', ...scopes], accountId, from],
  );
  return (rows as Array<Record<string, string>>).map(toHourUsage);
}

/**
 * Which accounts keep usage hours (migration 20261207200000_hour_tracking): only rolling limits
 * read hourly_counters, so its rows are kept for the accounts listed in hour_tracking, those
 * that have one (listed by the first, unlisted when the last is deleted: untrackHours), from the
 * hour listed on (`since`: a charge recorded late, for an hour before it, moves no hour row; no
 * window reads that far back). The ledger makes hour entries
 * for every change; every statement that writes hourly_counters keeps only those this condition
 * on its rows (`alias`) admits, read in the same statement: the store's storage rule, like an
 * index kept for some accounts, not a usage rule.
 *
 * Why no change can fall between the listing and the filling (trackHours): a statement that
 * writes hourly_counters holds the table's ROW EXCLUSIVE lock from before its snapshot is taken
 * until its transaction commits (Postgres takes a statement's locks before its snapshot), and
 * trackHours holds SHARE ROW EXCLUSIVE, which conflicts with it, from before it lists the
 * account until it commits. So each write either committed before trackHours filled the hours
 * (the filling, a later statement, sees it) or sees the account listed and writes its hours.
 * Every charge and hold statement names hourly_counters, so while an account's hours are filled
 * all of them wait, whatever their account.
 */
const HOURS_KEPT = (alias: string) => `EXISTS (SELECT 1 FROM hour_tracking t WHERE t.account_id = ${alias}.account_id AND t.since <= ${alias}.hour_start)`;

/**
 * Starts keeping an account's usage hours, in the transaction that puts its first rolling limit:
 * lists it with `since` (the first hour kept; the caller passes one hour more than the longest
 * window can reach, for clocks a little apart) and fills its hours from `since` on from its
 * charges (by the hour of their usage time) and its held reservations (by the hour they were
 * placed), for every scope each counts in: the account, its user, its API key, each tag value
 * it records (the domain's hourKeysOf). Rows the account had are replaced. A no-op for an account
 * already listed. While it runs, every charge and hold statement waits for it (the table lock):
 * the filling reads only the charges of the window (`charges_by_day_id`, and
 * `charges_settled_late` for the charges dated before their usage time), once per account.
 */
export async function trackHours(tx: Tx, accountId: string, since: Date, now: Date): Promise<boolean> {
  if (await lockHourTracking(tx, accountId, 'SHARE')) return false;
  await tx.raw('LOCK TABLE hourly_counters IN SHARE ROW EXCLUSIVE MODE');
  const inserted = await tx.raw('INSERT INTO hour_tracking (account_id, since, created_at) VALUES (?, ?, ?) ON CONFLICT (account_id) DO NOTHING RETURNING 1', [accountId, since, now]);
  if (inserted.rows.length === 0) return false;
  await tx.raw('DELETE FROM hourly_counters WHERE account_id = ?', [accountId]);
  // usage_date is the charge's day in the account's time zone (UTC-12 to UTC+14): at least the UTC
  // day before its usage time's, except for the charges dated earlier (the partial index's rows).
  const sinceDay = new Date(since.getTime() - 86_400_000).toISOString().slice(0, 10);
  await tx.raw(FILL_HOURS_SQL, { account: accountId, since, sinceDay, now });
  return true;
}

/**
 * Locks an account's listing in hour_tracking, if it is listed; true when it is. Both limit writes
 * lock it before the limit, in that order: PutLimit of a rolling limit FOR SHARE (trackHours: a
 * listing seen stays until it commits), DeleteLimit of one FOR UPDATE, so that untrackHours may
 * follow (the lock waits for the PutLimits that saw the listing).
 */
export async function lockHourTracking(tx: Tx, accountId: string, strength: 'SHARE' | 'UPDATE'): Promise<boolean> {
  const listed = await tx.raw(`SELECT 1 FROM hour_tracking WHERE account_id = ? FOR ${strength}`, [accountId]);
  return listed.rows.length > 0;
}

/**
 * Stops keeping an account's usage hours once its last rolling limit is deleted (after
 * lockHourTracking and the delete, in that transaction): unlists it and deletes its hours, so that
 * its charges and holds write none. Nothing is unlisted while a rolling limit remains.
 *
 * Why a concurrent PutLimit of a rolling limit cannot be left without hours: it share-locks the
 * listing (trackHours) before it writes its limit. If it did first, the lock above waited for it to
 * commit and the check below, a later statement, sees its limit: the account stays listed. If this
 * transaction locked first, PutLimit's lock waits for it to commit and then finds no listing (the
 * row is gone): it lists the account and fills its hours from the charges, as for a first limit.
 * The table lock, as trackHours': every write of hourly_counters in flight commits first (none
 * adds rows for the account after they are deleted) and the later ones see it unlisted.
 */
export async function untrackHours(tx: Tx, accountId: string): Promise<void> {
  const rolling = await tx.raw(`SELECT 1 FROM limits WHERE account_id = ? AND period = 'rolling' LIMIT 1`, [accountId]);
  if (rolling.rows.length > 0) return;
  await tx.raw('LOCK TABLE hourly_counters IN SHARE ROW EXCLUSIVE MODE');
  await tx.raw('DELETE FROM hour_tracking WHERE account_id = ?', [accountId]);
  await tx.raw('DELETE FROM hourly_counters WHERE account_id = ?', [accountId]);
}

/** The scopes of a charge or reservation row `x` (the domain's extraScopesOf, with the account and the user), as a LATERAL FROM item. */
const ROW_SCOPES = `LATERAL (SELECT '' AS user_id, '' AS scope UNION ALL SELECT x.user_id, ''
      UNION ALL SELECT '', 'api_key:' || x.api_key_id WHERE x.api_key_id <> ''
      UNION ALL SELECT '', 'tag:' || d.key || '=' || d.value FROM jsonb_each_text(coalesce(x.dimensions, '{}'::jsonb)) d) s`;

const CHARGE_HOURS = `user_id, api_key_id, dimensions, date_trunc('hour', usage_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC' AS hour_start, 1 AS messages, total_tokens AS tokens, coalesce(total_cost, 0) AS cost,
             0 AS held_messages, 0 AS held_tokens, 0 AS held_cost`;

const FILL_HOURS_SQL = `INSERT INTO hourly_counters (${[...HOUR_KEY, ...HOUR_COLUMNS, 'updated_at'].join(', ')})
  SELECT :account, x.hour_start, s.user_id, s.scope, sum(x.messages), sum(x.tokens), sum(x.cost), sum(x.held_messages), sum(x.held_tokens), sum(x.held_cost), :now
    FROM (
      SELECT ${CHARGE_HOURS} FROM charges WHERE account_id = :account AND usage_date >= :sinceDay::date AND usage_time >= :since
      UNION ALL
      SELECT ${CHARGE_HOURS} FROM charges
       WHERE account_id = :account AND usage_date < (usage_time AT TIME ZONE 'UTC')::date - 1 AND usage_date < :sinceDay::date AND usage_time >= :since
      UNION ALL
      SELECT user_id, api_key_id, dimensions, date_trunc('hour', create_time AT TIME ZONE 'UTC') AT TIME ZONE 'UTC', 0, 0, 0, held_messages, held_tokens, held_cost
        FROM reservations WHERE account_id = :account AND status = 'held' AND create_time >= :since
    ) x, ${ROW_SCOPES}
   GROUP BY x.hour_start, s.user_id, s.scope`;

const ROLLUP_KEY = ['account_id', 'usage_date', 'user_id', 'provider', 'model', 'charge_type'];
const ROLLUP_SUMS = Object.values(ROLLUP_COLUMNS);
const list = (columns: readonly string[]) => columns.join(', ');
const adds = (table: string, columns: readonly string[]) => columns.map((c) => `${c} = ${table}.${c} + excluded.${c}`).join(', ');

/** A rollup's sums as its columns (strings: exact in JSON). */
function sumColumns(sums: RollupSums): Record<string, string> {
  const out: Record<string, string> = {};
  for (const k of ROLLUP_INT_SUMS) out[ROLLUP_COLUMNS[k]] = sums[k].toString();
  for (const k of ROLLUP_MONEY_SUMS) out[ROLLUP_COLUMNS[k]] = sums[k].toFixed();
  return out;
}

const rollupRows = (entries: LedgerEntries, now: Date) =>
  entries.rollups.map((d) => ({
    account_id: d.accountId, usage_date: d.usageDate, user_id: d.userId, provider: d.provider, model: d.model, charge_type: d.chargeType,
    ...sumColumns(d.sums),
    updated_at: now,
  }));

const DIMENSION_KEY = ['account_id', 'usage_date', 'hour', 'user_id', 'provider', 'model', 'charge_type', 'api_key_id', 'dims'];

const dimensionRows = (entries: LedgerEntries, now: Date) =>
  entries.dimensions.map((d) => ({
    account_id: d.accountId, usage_date: d.usageDate, hour: d.hour, user_id: d.userId, provider: d.provider, model: d.model, charge_type: d.chargeType,
    api_key_id: d.apiKeyId, dims: d.dims,
    ...sumColumns(d.sums),
    updated_at: now,
  }));

const DIMENSION_DAY_KEY = DIMENSION_KEY.filter((c) => c !== 'hour');

/** The day-level dimension rollup's rows: the hourly entries summed per day (the domain's dimensionDaysOf), in key order. */
const dimensionDayRows = (entries: LedgerEntries, now: Date) =>
  dimensionDaysOf(entries.dimensions).map((d) => ({
    account_id: d.accountId, usage_date: d.usageDate, user_id: d.userId, provider: d.provider, model: d.model, charge_type: d.chargeType,
    api_key_id: d.apiKeyId, dims: d.dims,
    ...sumColumns(d.sums),
    updated_at: now,
  }));

const reservationRows = (entries: LedgerEntries) =>
  entries.reservations.map((e) => ({ account_id: e.ref.accountId, reservation_id: e.ref.reservationId, status: e.status, finish_time: e.at, charge_id: e.chargeId ?? null }));

/**
 * The writes of a set of entries as data-modifying CTEs of one statement (one
 * round trip), each made to run after the one before by a condition on it (so
 * every writer locks tables, and rows within them, in the same order):
 * reservations leave the held state, then the credit writes (CREDIT_CTES,
 * credits.repo.ts: five parameters, empty for accounts without credits), then
 * daily_usage, then dimension_usage and dimension_usage_daily (accounts with
 * declared dimensions; empty arrays for the others), then usage_counters (RETURNING the counters), then hourly_counters (the hours rolling windows sum;
 * as they now are). The parameters, in that order: JSON arrays, each UPDATE's
 * followed by the batch's accounts (account_id = ANY(accounts): one shard per
 * account on Citus). The text is constant:
 * nothing is built per call.
 *
 * On Citus (`chained` false) the conditions are left out. Citus cannot run
 * this statement on a shard whole (its INSERT ... SELECTs go through the
 * coordinator), so it runs each CTE as a subplan of its own, one after the
 * other in the order written, which is the lock order already; and it sends
 * the result of every CTE that an INSERT ... SELECT reads to every node, so
 * the conditions made a one-account statement write to both workers and
 * commit with two-phase commit on both (docs/scaling.md, section 4).
 */
const APPLY_CTES = (chained: boolean) => `finished AS (
       UPDATE reservations r SET status = u.status, finish_time = u.finish_time, charge_id = u.charge_id
         FROM json_populate_recordset(NULL::reservations, ?::json) u
        WHERE ${updatedAccounts('r', chained)} AND r.account_id = u.account_id AND r.reservation_id = u.reservation_id
       RETURNING 1
     ), ${CREDIT_CTES(chained ? '(SELECT count(*) FROM finished) >= 0' : 'TRUE', chained)}, ${ROLLUP_CTES(chained ? '(SELECT count(*) FROM credit_entries_added) >= 0' : 'TRUE', chained)}`;

/**
 * The rollup and counter writes of APPLY_CTES alone (its last five parameters; three without the
 * dimension rollups): what the entries
 * of new charges write (recordNewCharges), which never move a hold or credits, so that its
 * statement has no UPDATE of reservations or credits to set up on every execution (the executor
 * prepares every CTE's plan, joins and indexes even when its input is empty). `after`: the
 * condition daily_usage's write waits for ('TRUE' on Citus, as above).
 */
const ROLLUP_CTES = (after: string, chained: boolean, dimensions = true) => `daily AS (
       INSERT INTO daily_usage AS d (${list([...ROLLUP_KEY, ...ROLLUP_SUMS, 'updated_at'])})
         SELECT ${list([...ROLLUP_KEY, ...ROLLUP_SUMS, 'updated_at'])} FROM json_populate_recordset(NULL::daily_usage, ?::json)
          WHERE ${after}
       ON CONFLICT (${list(ROLLUP_KEY)}) DO UPDATE SET ${adds('d', ROLLUP_SUMS)}, updated_at = excluded.updated_at
       RETURNING (d.xmax = 0) AS inserted
     ), ${dimensions ? DIMENSION_CTES(chained) : ''}counters AS (
       INSERT INTO usage_counters AS c (${list([...COUNTER_KEY, ...COUNTER_COLUMNS, 'updated_at'])})
         SELECT ${list([...COUNTER_KEY, ...COUNTER_COLUMNS, 'updated_at'])} FROM json_populate_recordset(NULL::usage_counters, ?::json)
          WHERE ${chained ? `(SELECT count(*) FROM ${dimensions ? 'dimension_day' : 'daily'}) >= 0` : 'TRUE'}
       ON CONFLICT (${list(COUNTER_KEY)}) DO UPDATE SET ${adds('c', COUNTER_COLUMNS)}, updated_at = excluded.updated_at
       RETURNING ${list([...COUNTER_KEY, ...COUNTER_COLUMNS])}
     ), hourly AS (
       INSERT INTO hourly_counters AS h (${list([...HOUR_KEY, ...HOUR_COLUMNS, 'updated_at'])})
         SELECT ${list([...HOUR_KEY, ...HOUR_COLUMNS, 'updated_at'])} FROM json_populate_recordset(NULL::hourly_counters, ?::json) j
          WHERE ${chained ? '(SELECT count(*) FROM counters) >= 0' : 'TRUE'} AND ${HOURS_KEPT('j')}
       ON CONFLICT (${list(HOUR_KEY)}) DO UPDATE SET ${adds('h', HOUR_COLUMNS)}, updated_at = excluded.updated_at
       RETURNING 1
     ), grown AS (
       SELECT (SELECT count(*) FROM daily WHERE inserted) AS daily_inserted,
              ${dimensions ? '(SELECT count(*) FROM dimension WHERE inserted)' : '0'} AS dimension_inserted,
              ${dimensions ? '(SELECT count(*) FROM dimension_day WHERE inserted)' : '0'} AS dimension_day_inserted
     )`;

/** The dimension rollups' writes of ROLLUP_CTES (between daily_usage and the counters; two parameters). */
const DIMENSION_CTES = (chained: boolean) => `dimension AS (
       INSERT INTO dimension_usage AS x (${list([...DIMENSION_KEY, ...ROLLUP_SUMS, 'updated_at'])})
         SELECT ${list([...DIMENSION_KEY, ...ROLLUP_SUMS, 'updated_at'])} FROM json_populate_recordset(NULL::dimension_usage, ?::json)
          WHERE ${chained ? '(SELECT count(*) FROM daily) >= 0' : 'TRUE'}
       ON CONFLICT (${list(DIMENSION_KEY)}) DO UPDATE SET ${adds('x', ROLLUP_SUMS)}, updated_at = excluded.updated_at
       RETURNING (x.xmax = 0) AS inserted
     ), dimension_day AS (
       INSERT INTO dimension_usage_daily AS y (${list([...DIMENSION_DAY_KEY, ...ROLLUP_SUMS, 'updated_at'])})
         SELECT ${list([...DIMENSION_DAY_KEY, ...ROLLUP_SUMS, 'updated_at'])} FROM json_populate_recordset(NULL::dimension_usage_daily, ?::json)
          WHERE ${chained ? '(SELECT count(*) FROM dimension) >= 0' : 'TRUE'}
       ON CONFLICT (${list(DIMENSION_DAY_KEY)}) DO UPDATE SET ${adds('y', ROLLUP_SUMS)}, updated_at = excluded.updated_at
       RETURNING (y.xmax = 0) AS inserted
     ), `;

/**
 * The counters as now stored, each row with the rollup rows the statement
 * inserted (xmax = 0: a new row, not an update; for metrics); one row of
 * NULL counters carries them when no counter moved.
 */
const COUNTERS_AND_GROWTH = `${list(COUNTER_KEY.map((c) => `c.${c}`))}, ${list(COUNTER_COLUMNS.map((c) => `c.${c}`))}, g.daily_inserted, g.dimension_inserted, g.dimension_day_inserted FROM grown g LEFT JOIN counters c ON true`;

const LOCK_COUNTERS_SQL = `INSERT INTO usage_counters AS c (${list([...COUNTER_KEY, ...COUNTER_COLUMNS, 'updated_at'])})
    SELECT ${list([...COUNTER_KEY, ...COUNTER_COLUMNS, 'updated_at'])} FROM json_populate_recordset(NULL::usage_counters, ?::json)
  ON CONFLICT (${list(COUNTER_KEY)}) DO UPDATE SET updated_at = excluded.updated_at
  RETURNING ${list([...COUNTER_KEY, ...COUNTER_COLUMNS])}`;

/** The parameters of the Citus form (citus.ts, updatedAccounts): after each UPDATE's accounts (an array), whether the JSON rows before it are any. */
const citusParams = (writes: Array<string | string[]>): Array<string | string[] | boolean> =>
  writes.flatMap<string | string[] | boolean>((w, i) => (Array.isArray(w) ? [w, writes[i - 1] !== '[]'] : [w]));

/** The entries' writes, and their events last, in one statement. */
const applyWithEventsSql = (chained: boolean) => `WITH ${APPLY_CTES(chained)}, ${OUTBOX_CTES(chained ? '(SELECT count(*) FROM hourly) >= 0' : 'TRUE')}
  SELECT 'counter' AS kind, ${COUNTERS_AND_GROWTH}
  UNION ALL
  SELECT 'notify', account_id, ${COUNTER_KEY.slice(1).map(() => 'NULL').join(', ')}, ${COUNTER_COLUMNS.map(() => 'NULL').join(', ')}, NULL, NULL, NULL FROM seq, pg_notify(?, account_id)`;
const APPLY_WITH_EVENTS_SQL = applyWithEventsSql(true);
const APPLY_WITH_EVENTS_SQL_CITUS = applyWithEventsSql(false);

/** The entries' writes without events (the caller appends events that depend on the counters after). */
const applySql = (chained: boolean) => `WITH ${APPLY_CTES(chained)} SELECT ${COUNTERS_AND_GROWTH}`;
const APPLY_SQL = applySql(true);
const APPLY_SQL_CITUS = applySql(false);

/** Counts the rollup rows the apply statement inserted (first row) and returns its counters. */
function countersOf(tx: Tx, rows: Array<Record<string, string>>): CounterState[] {
  const first = rows.find((r) => r.daily_inserted !== null && r.daily_inserted !== undefined);
  if (first) countRollupRows(tx, { dailyUsage: Number(first.daily_inserted), dimensionUsage: Number(first.dimension_inserted), dimensionUsageDaily: Number(first.dimension_day_inserted) });
  return rows.filter((r) => r.account_id !== null && (r.kind === undefined || r.kind === 'counter')).map(toCounterState);
}

/** The apply statement's parameters (APPLY_CTES), in order. */
function applyParams(entries: LedgerEntries, now: Date, credits?: CreditWrites): Array<string | string[]> {
  // The batch's accounts, for the UPDATEs' account_id = ANY($accounts) (one shard per account on Citus).
  const accounts = [
    ...new Set([
      ...entries.reservations.map((e) => e.ref.accountId),
      ...entries.rollups.map((d) => d.accountId),
      ...entries.counters.map((d) => d.key.accountId),
      ...(credits?.accounts.map((a) => a.accountId) ?? []),
      ...(credits?.credits.grants.map((g) => g.accountId) ?? []),
      ...(credits?.credits.holds.map((h) => h.accountId) ?? []),
    ]),
  ].sort();
  return [JSON.stringify(reservationRows(entries)), accounts, ...creditParams(credits, now, accounts), ...rollupParams(entries, now)];
}

/** The parameters of ROLLUP_CTES, in order (without `dimensions`, its form without the dimension rollups). */
const rollupParams = (entries: LedgerEntries, now: Date, dimensions = true): string[] => [
  JSON.stringify(rollupRows(entries, now)),
  ...(dimensions ? [JSON.stringify(dimensionRows(entries, now)), JSON.stringify(dimensionDayRows(entries, now))] : []),
  JSON.stringify(entries.counters.map((d) => counterRow(d, now))),
  JSON.stringify(entries.hours.map((d) => hourRow(d, now))),
];

/**
 * Applies entries: reservations leave the held state, rollups and counters
 * move, and the events go to the outbox: the entries' own, then those
 * `eventsAfter` derives from the counters as now stored (soft limits and
 * alert thresholds crossed; alerts also queue their webhook deliveries).
 * One statement without `eventsAfter`, two with it (the second appends the
 * events). Returns the counters the entries moved, as they now are.
 * Credit writes (their rows locked by lockCredits, numbered by the domain's
 * numberEntries) are part of the same statement, after the reservations and
 * before daily_usage and the counters, as the lock order says.
 */
export async function applyEntries(tx: Tx, entries: LedgerEntries, now: Date, eventsAfter?: (counters: CounterState[]) => LedgerEvent[], credits?: CreditWrites): Promise<CounterState[]> {
  if (!credits && entries.reservations.length + entries.rollups.length + entries.counters.length + entries.events.length === 0) return [];
  const writes = applyParams(entries, now, credits);
  const citus = onCitus(tx);
  // Alert events already in the entries (BALANCE rules, from the credits) queue deliveries too: then the events go in a second statement.
  // Without events (a reservation placed or released), the statement without the outbox (and no
  // second statement either): on Citus the outbox's CTEs would reach every node even when empty.
  if (!eventsAfter && !hasAlerts(entries.events) && entries.events.length > 0) {
    const params = [...writes, outboxParam(entries.events), EVENTS_CHANNEL];
    const { rows } = await statement(tx, citus ? 'apply_entries_events_citus' : 'apply_entries_events', citus ? APPLY_WITH_EVENTS_SQL_CITUS : APPLY_WITH_EVENTS_SQL, citus ? citusParams(params) : params);
    return countersOf(tx, rows as Array<Record<string, string>>);
  }
  const { rows } = await statement(tx, citus ? 'apply_entries_citus' : 'apply_entries', citus ? APPLY_SQL_CITUS : APPLY_SQL, citus ? citusParams(writes) : writes);
  const counters = countersOf(tx, rows as Array<Record<string, string>>);
  const events = [...entries.events, ...(eventsAfter?.(counters) ?? [])];
  // Alerts crossed also queue their webhook deliveries, in the same statement (store/alerts.repo.ts).
  await (hasAlerts(events) ? appendEventsWithDeliveries(tx, events, now) : appendEvents(tx, events));
  return counters;
}

/**
 * Charges that are all new, and their ledger entries (decided before the insert, for the
 * charges as they are inserted), in one statement sent outside a transaction: a statement is
 * atomic on its own, so the write costs one round trip instead of four (BEGIN, insert, apply,
 * COMMIT). The charges are inserted first (in the caller's key order), with the settings
 * epoch's check (MT001), then the entries are applied in the lock order of APPLY_CTES (its
 * ROLLUP_CTES: new charges settle no reservation and move no credits; the dimension rollups
 * only when a charge has declared dimensions' values, a second statement text), then
 * their events go to the outbox and are notified. When a key was already used (a replay, or a
 * concurrent call with the same key) the statement raises MT002 (metering_all_new, checked
 * right after the insert, before the first write of the entries waits on it) and writes
 * nothing: false is returned and the caller finds out which (a lookup, or the transaction).
 * True when every charge was stored, as given (nothing is read back: the rows are the charges).
 * For charges whose decision needs nothing read under lock (no reservation settled, no credits,
 * no dimension values to admit, no soft limits or alert rules measured on the counters after
 * the write) and not on Citus; the caller checks.
 */
export async function recordNewCharges(db: Db, charges: ChargeRecord[], settingsEpoch: string | undefined, entries: LedgerEntries, now: Date): Promise<boolean> {
  const rows = charges.map(toChargeRow);
  // Each row as JSON once: the insert's parameter and the charge_recorded events' payloads.
  const json = new Map(charges.map((c, n) => [c, JSON.stringify(rows[n])]));
  if (entries.reservations.length > 0) throw new Error('recordNewCharges: new charges settle no reservation (the transaction records those)');
  // Charges without declared dimensions' values (most) use the statement without the dimension rollups.
  const dimensions = entries.dimensions.length > 0;
  const params = [`[${[...json.values()].join(',')}]`, settingsEpoch ?? null, charges.length, ...rollupParams(entries, now, dimensions), outboxParam(entries.events, (c) => json.get(c)), EVENTS_CHANNEL];
  try {
    const name = dimensions ? 'record_new_charges_dimensions' : 'record_new_charges';
    const text = (recordNewText[name] ??= recordNewSql(chargeColumns(rows[0]), dimensions));
    const { rows: out } = await statement(db, name, text, params);
    const [grown] = out as Array<{ daily_inserted: string; dimension_inserted: string; dimension_day_inserted: string }>;
    countRollupRows(db, { dailyUsage: Number(grown.daily_inserted), dimensionUsage: Number(grown.dimension_inserted), dimensionUsageDaily: Number(grown.dimension_day_inserted) });
    return true;
  } catch (err) {
    if ((err as { code?: string }).code === 'MT002') return false;
    throw err;
  }
}

/** The statement's two texts by name (with and without the dimension rollups), each made on first use (its column list is toChargeRow's). */
const recordNewText: Partial<Record<'record_new_charges' | 'record_new_charges_dimensions', string>> = {};
const recordNewSql = (columns: string, dimensions: boolean) => `WITH recorded AS (
       INSERT INTO charges (${columns})
         SELECT ${columns} FROM json_populate_recordset(NULL::charges, ?::json) WHERE ${SETTINGS_ARE}
       ON CONFLICT (account_id, idempotency_key) DO NOTHING
       RETURNING 1
     ), checked AS (
       SELECT metering_all_new((SELECT count(*) FROM recorded), ?::bigint) AS all_new
     ), ${ROLLUP_CTES('(SELECT all_new FROM checked)', true, dimensions)}, ${OUTBOX_CTES('(SELECT count(*) FROM hourly) >= 0')}, notified AS (
       SELECT pg_notify(?, account_id) FROM seq
     )
  SELECT g.daily_inserted, g.dimension_inserted, g.dimension_day_inserted, (SELECT all_new FROM checked) AS all_new, (SELECT count(*) FROM notified) AS notified
    FROM grown g`;

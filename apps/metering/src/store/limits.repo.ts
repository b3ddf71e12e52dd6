import { Dec } from '@metering/pricing';
import { AlertRule, CounterState, CreditPolicy, DailyLimits, Grant, dailyOfLimits, Limit, LimitKey, limitsOfDaily, ListLimitsQuery, periodStartOf, ScopedHour } from '@metering/domain';
import { fromRuleRow } from './alerts.repo';
import { Db, onCitus, perCallStatement, plannedOnceRead, statement, Tx } from './db';
import { bumpSettingsEpoch } from './settings-epoch.repo';
import { CHECK_CREDITS_SQL, fromCheckCredits } from './credits.repo';
import { SCOPE_HOURS, toCounterState, toHourUsage } from './ledger.repo';

/** SQL of the limits and accounts tables: one limit row per scope, period, measure and enforcement. No business rules. */

interface LimitRow {
  account_id: string;
  user_id: string;
  /** '' for the account and its users; an API key's or a tag value's scope (migration 20261207100000_scoped_budgets). */
  scope?: string | null;
  period: Limit['period'];
  /** Migration 20261207113000_rolling_windows: the window of a rolling limit, 0 otherwise. */
  window_hours?: number | string | null;
  measure: Limit['measure'];
  enforcement: Limit['enforcement'];
  amount: string;
  updated_at: Date;
}

const LIMIT_COLUMNS = ['account_id', 'user_id', 'scope', 'period', 'measure', 'enforcement', 'amount', 'window_hours', 'updated_at'];
const LIMIT_ORDER = ['user_id', 'scope', 'period', 'measure', 'enforcement'];

const fromLimitRow = (r: LimitRow): Limit => ({
  accountId: r.account_id,
  userId: r.user_id,
  ...(r.scope ? { scope: r.scope } : {}),
  period: r.period,
  ...(r.period === 'rolling' ? { windowHours: Number(r.window_hours) } : {}),
  measure: r.measure,
  enforcement: r.enforcement,
  amount: new Dec(r.amount),
  updateTime: r.updated_at,
});

const keyOf = (k: LimitKey) => ({ account_id: k.accountId, user_id: k.userId, scope: k.scope ?? '', period: k.period, measure: k.measure, enforcement: k.enforcement });

/** Creates or changes one limit. */
export async function putLimit(tx: Tx, limit: Limit): Promise<Limit> {
  // The time is a parameter: Citus refuses a non-immutable function (now()) in DO UPDATE SET on a distributed table.
  const now = new Date();
  const [row] = await tx('limits')
    .insert({ ...keyOf(limit), amount: limit.amount.toFixed(), window_hours: limit.windowHours ?? 0, updated_at: now })
    .onConflict(['account_id', 'user_id', 'scope', 'period', 'measure', 'enforcement'])
    .merge({ amount: limit.amount.toFixed(), window_hours: limit.windowHours ?? 0, updated_at: now })
    .returning(LIMIT_COLUMNS);
  await bumpSettingsEpoch(tx);
  return fromLimitRow(row);
}

/**
 * The tag keys an account declared as dimensions ([] when none), its row
 * locked in share mode until commit, so that a tag limit is put only while
 * its key stays declared (SetDimensions updates the row).
 */
export async function declaredTagKeysForShare(tx: Tx, accountId: string): Promise<string[]> {
  const row = await tx('account_dimensions').select('tag_keys').where({ account_id: accountId }).forShare().first();
  return (row?.tag_keys as string[] | undefined) ?? [];
}

export async function deleteLimit(tx: Tx, key: LimitKey): Promise<boolean> {
  // RETURNING rather than the affected-row count, which the embedded driver does not report.
  const deleted = (await tx('limits').where(keyOf(key)).delete().returning('account_id')).length > 0;
  if (deleted) await bumpSettingsEpoch(tx);
  return deleted;
}

/** Every limit of the given users of an account ('' = account-wide) and of the given other scopes ('' = none: the users' own), in key order. */
export async function readLimits(db: Db | Tx, accountId: string, userIds: string[], scopes: string[] = ['']): Promise<Limit[]> {
  const rows: LimitRow[] = await db('limits').select(LIMIT_COLUMNS).where({ account_id: accountId }).whereIn('user_id', userIds).whereIn('scope', scopes).orderBy(LIMIT_ORDER);
  return rows.map(fromLimitRow);
}

/**
 * What the write paths (recording, re-rating) read of the accounts they write
 * for, in one round trip: their time zones (absent: UTC), their soft limits
 * (every scope and period), which have credits, and their alert rules with,
 * for an account that has any, all its limits (a LIMIT rule measures a hard
 * one too), in key order. A rule's row carries rule_id, kind, description and
 * spec in the user_id, period, measure and amount columns.
 */
export async function readWriteSettings(
  tx: Db | Tx,
  accountIds: string[],
): Promise<{ zones: Map<string, string>; softLimits: Limit[]; credits: Set<string>; alertRules: AlertRule[]; ruleLimits: Limit[]; dimensions: Map<string, string[]>; maxValuesPerDay: Map<string, number> }> {
  const { rows } = await tx.raw(
    `SELECT 'zone' AS kind, account_id, time_zone AS user_id, NULL AS scope, NULL AS period, NULL AS measure, NULL AS enforcement, NULL AS amount, NULL::timestamptz AS updated_at
       FROM accounts WHERE account_id = ANY(?::text[])
     UNION ALL
     SELECT 'credits', account_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM credit_accounts WHERE account_id = ANY(?::text[])
     UNION ALL
     SELECT 'dims', account_id, array_to_json(tag_keys)::text, NULL, NULL, NULL, NULL, max_values_per_day::text, NULL FROM account_dimensions WHERE account_id = ANY(?::text[])
     UNION ALL
     SELECT 'limit', account_id, user_id, scope, period, measure, enforcement, amount::text, updated_at
       FROM limits WHERE account_id = ANY(?::text[]) AND period <> 'rolling'
        AND (enforcement = 'soft' OR (scope = '' AND account_id IN (SELECT account_id FROM alert_rules WHERE account_id = ANY(?::text[]))))
     UNION ALL
     SELECT 'rule', account_id, rule_id::text, NULL, kind, description, NULL, spec::text, updated_at
       FROM alert_rules WHERE account_id = ANY(?::text[])
     ORDER BY kind, account_id, user_id, period, measure, enforcement`,
    [accountIds, accountIds, accountIds, accountIds, accountIds, accountIds],
  );
  const all = rows as Array<LimitRow & { kind: string }>;
  const limits = all.filter((r) => r.kind === 'limit').map(fromLimitRow);
  const alertRules = all
    .filter((r) => r.kind === 'rule')
    .map((r) => fromRuleRow({ account_id: r.account_id, rule_id: r.user_id, kind: r.period as AlertRule['kind'], description: r.measure, spec: r.amount, created_at: r.updated_at, updated_at: r.updated_at }));
  const withRules = new Set(alertRules.map((r) => r.accountId));
  return {
    zones: new Map(all.filter((r) => r.kind === 'zone').map((r) => [r.account_id, r.user_id])),
    softLimits: limits.filter((l) => l.enforcement === 'soft'),
    credits: new Set(all.filter((r) => r.kind === 'credits').map((r) => r.account_id)),
    alertRules,
    // Alert rules measure the account and its users (libs/domain/src/alerts.ts).
    ruleLimits: limits.filter((l) => withRules.has(l.accountId) && !l.scope),
    dimensions: new Map(all.filter((r) => r.kind === 'dims').map((r) => [r.account_id, JSON.parse(r.user_id) as string[]])),
    maxValuesPerDay: new Map(all.filter((r) => r.kind === 'dims').map((r) => [r.account_id, Number(r.amount)])),
  };
}

/** One page of an account's limits in key order (one extra row tells whether more follow). */
export async function listLimits(db: Db, q: ListLimitsQuery): Promise<Limit[]> {
  const query = db('limits').select(LIMIT_COLUMNS).where({ account_id: q.accountId });
  if (q.userId !== undefined) query.whereIn('user_id', ['', q.userId]);
  if (q.after) query.whereRaw('(user_id, scope, period, measure, enforcement) > (?, ?, ?, ?, ?)', [q.after.userId, q.after.scope ?? '', q.after.period, q.after.measure, q.after.enforcement]);
  const rows: LimitRow[] = await query.orderBy(LIMIT_ORDER).limit(q.pageSize + 1);
  return rows.map(fromLimitRow);
}

/** Replaces the hard day limits of one scope (the Django models' daily limits): measures absent from `limits` are removed. */
export async function replaceDailyLimits(tx: Tx, limits: DailyLimits): Promise<void> {
  await tx('limits').where({ account_id: limits.accountId, user_id: limits.userId, period: 'day', enforcement: 'hard' }).delete();
  const rows = limitsOfDaily(limits).map((l) => ({ ...keyOf(l), amount: l.amount.toFixed() }));
  if (rows.length) await tx('limits').insert(rows);
  await bumpSettingsEpoch(tx);
}

/** The hard day limits of one scope of an account. */
export async function readDailyLimits(db: Db | Tx, accountId: string, userId: string, scope = ''): Promise<DailyLimits> {
  return dailyOfLimits(accountId, userId, await readLimits(db, accountId, [userId], [scope]));
}

/**
 * What CheckLimits reads, in one round trip of primary-key reads: the
 * account's time zone, every limit of the users and of their account, and their
 * day and month counters for the given candidate days (the caller passes the
 * days around UTC's today, one of which is the account's local today, and
 * their months), the counters and limits of the other scopes asked for (an
 * API key's, tag values'), the account's declared dimensions, the settings epoch (a reference row: a check that priced
 * an estimate from the settings cache compares it), and the account's credits
 * (its policy and open grants; no row without credits). The counters are read key by key (a
 * lateral subquery of equalities on the whole primary key for every user, scope and period
 * start), and the hours scope by scope (from the window's first hour on, the key's last column)
 * when one of the limits read is a rolling window's. The limits and hours are read by probes
 * (OFFSET 0 keeps each a subquery of its own, which the planner cannot flatten into a join that
 * reads every user's rows of the account).
 *
 * Its plan: with arrays on the key's later columns (user_id = ANY(...)) a named statement's
 * generic plan, made while the table was small, read every counter of the account by account_id
 * (Postgres assumes 10 elements per array parameter), and so did a plan made with the values from
 * statistics of before the account grew; the lateral form as a named statement, its generic plan
 * made after an ANALYZE of the small table, scanned the whole table for every key. Sent unnamed,
 * it was planned on every call, which cost more than running it (bind 1.2 ms, execute 0.1 ms:
 * `log_min_duration_statement`, docs/benchmarks.md). So it is a PlannedOnceRead (store/db.ts): a
 * function that plans it once per connection with index scans only
 * (test/integration/hot-read-plans.spec.ts); on Citus the same text is sent unnamed. Its
 * arguments, in order: the account, the users (with ''), the scopes (with ''), the counters'
 * periods and their starts, the first hour of the hours. Concurrent checks of an account share
 * one read (services/check-state-reads.ts).
 */
const COUNTER_PERIODS = ['day', 'month'] as const;

export const CHECK_STATE = plannedOnceRead(
  'check_state',
  `
  WITH asked_limits AS (
    SELECT l.* FROM (SELECT DISTINCT unnest(?::text[])) u(user_id) CROSS JOIN (SELECT DISTINCT unnest(?::text[])) s(scope)
                    CROSS JOIN LATERAL (SELECT * FROM limits WHERE account_id = ? AND user_id = u.user_id AND scope = s.scope OFFSET 0) l
  )
  SELECT 'zone' AS kind, time_zone AS user_id, NULL AS period, NULL AS measure, NULL AS enforcement, NULL AS amount, NULL::timestamptz AS updated_at,
         NULL::date AS period_start, NULL AS message_count, NULL AS total_tokens, NULL AS total_cost, NULL AS reserved_messages, NULL AS reserved_tokens, NULL AS reserved_cost,
         NULL AS scope, NULL::integer AS window_hours
    FROM accounts WHERE account_id = ?
  UNION ALL
  SELECT 'limit', user_id, period, measure, enforcement, amount::text, updated_at, NULL, NULL, NULL, NULL, NULL, NULL, NULL, scope, window_hours FROM asked_limits
  UNION ALL
  SELECT 'counter', c.user_id, c.period, NULL, NULL, NULL, c.updated_at, c.period_start, c.message_count::text, c.total_tokens::text, c.total_cost::text,
         c.reserved_messages::text, c.reserved_tokens::text, c.reserved_cost::text, c.scope, NULL
    FROM (SELECT DISTINCT * FROM unnest(?::text[], ?::date[])) p(period, start) CROSS JOIN (SELECT DISTINCT unnest(?::text[])) u(user_id) CROSS JOIN (SELECT DISTINCT unnest(?::text[])) s(scope)
         CROSS JOIN LATERAL (SELECT * FROM usage_counters
                              WHERE account_id = ? AND period = p.period AND period_start = p.start AND user_id = u.user_id AND scope = s.scope LIMIT 1) c
  UNION ALL
  SELECT 'dims', array_to_json(tag_keys)::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL
    FROM account_dimensions WHERE account_id = ?
  UNION ALL
  SELECT 'hour', h.user_id, NULL, NULL, NULL, (extract(epoch FROM h.hour_start) * 1000)::bigint::text, NULL, NULL, h.message_count::text, h.total_tokens::text, h.total_cost::text,
         h.reserved_messages::text, h.reserved_tokens::text, h.reserved_cost::text, h.scope, NULL
    FROM ${SCOPE_HOURS}
   WHERE EXISTS (SELECT 1 FROM asked_limits WHERE period = 'rolling')
  UNION ALL
  SELECT 'epoch', epoch::text, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM settings_epoch
  UNION ALL
  SELECT kind, user_id, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL, NULL FROM (${CHECK_CREDITS_SQL}) credits`,
  ['text', 'text[]', 'text[]', 'text[]', 'date[]', 'timestamptz'],
  [2, 3, 1, 1, 4, 5, 2, 3, 1, 1, 2, 3, 1, 6, 1, 1],
  `kind text, user_id text, period text, measure text, enforcement text, amount text, updated_at timestamptz, period_start date, message_count text,
   total_tokens text, total_cost text, reserved_messages text, reserved_tokens text, reserved_cost text, scope text, window_hours integer`,
);

export async function readLimitCheckState(
  db: Db | Tx,
  accountId: string,
  userIds: string[],
  candidateStarts: readonly string[],
  /** The API key and tag scopes to read besides the users' and the account's (libs/domain/src/limits.ts extraScopesOf). */
  otherScopes: string[] = [],
  /** The first hour of the longest rolling window (the hours from then on are read when the account has rolling limits). */
  hoursFrom: Date = new Date(0),
): Promise<{ timeZone?: string; limits: Limit[]; counters: CounterState[]; settingsEpoch: string; credits?: { policy: CreditPolicy; grants: Grant[] }; dimensions: string[]; hours: Array<ScopedHour> }> {
  const users = ['', ...userIds]; // '' = the account (and the rows of the other scopes)
  const scopes = ['', ...otherScopes];
  // The counters that can exist: a period's counter starts on its own period start (a day counter on any day, a month counter on the 1st).
  const periods = candidateStarts.flatMap((start) => COUNTER_PERIODS.filter((period) => periodStartOf(period, start) === start).map((period) => ({ period, start })));
  const args = [accountId, users, scopes, periods.map((p) => p.period), periods.map((p) => p.start), hoursFrom];
  const { rows } = onCitus(db) ? await perCallStatement(db, CHECK_STATE.sql, CHECK_STATE.bindings(args)) : await statement(db, 'check_state', CHECK_STATE.call, args);
  const all = rows as Array<Record<string, string> & { kind: string }>;
  const credits = all.find((r) => r.kind === 'credits');
  return {
    timeZone: all.find((r) => r.kind === 'zone')?.user_id,
    settingsEpoch: all.find((r) => r.kind === 'epoch')?.user_id ?? '',
    dimensions: JSON.parse(all.find((r) => r.kind === 'dims')?.user_id ?? '[]') as string[],
    hours: all.filter((r) => r.kind === 'hour').map((r) => toHourUsage({ ...r, hour_start: new Date(Number(r.amount)), scope: r.scope ?? '' })),
    limits: all.filter((r) => r.kind === 'limit').map((r) => fromLimitRow({ ...(r as unknown as LimitRow), account_id: accountId })),
    counters: all.filter((r) => r.kind === 'counter').map((r) => toCounterState({ ...r, account_id: accountId })),
    ...(credits ? { credits: fromCheckCredits(credits.user_id) } : {}),
  };
}

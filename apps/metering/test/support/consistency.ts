import type { Db } from '../../src/store/db';

/**
 * The rollups of an account as stored, and recomputed from its raw charges:
 * daily_usage per key, and the day and month counters per user and for the
 * account (user_id ''), whose held amounts must equal the sums of the held
 * reservations, and (issue 20) dimension_usage per key, recomputed from the
 * charges by the values and hour each records it was summed under, and
 * dimension_usage_daily, the same summed per day. Tests
 * assert the two are equal after every kind of write.
 * Money is compared exactly, as NUMERIC with trailing zeros trimmed.
 */
const DAILY = `SELECT usage_date::text AS day, user_id, provider, model, charge_type, message_count::text AS messages,
    unpriced_message_count::text AS unpriced, total_tokens::text AS tokens, cache_write_1h_tokens::text AS writes_1h,
    call_count::text AS calls, trim_scale(provider_cost)::text AS provider_cost, trim_scale(call_cost)::text AS call_cost,
    trim_scale(total_cost)::text AS total_cost
  FROM %s WHERE account_id = ? ORDER BY 1, 2, 3, 4, 5`;
const DAILY_FROM_CHARGES = `(SELECT account_id, usage_date, user_id, provider, model, charge_type, count(*) AS message_count,
    count(*) FILTER (WHERE pricing_status = 'unpriced') AS unpriced_message_count, sum(total_tokens) AS total_tokens,
    sum(cache_write_1h_tokens) AS cache_write_1h_tokens, sum(call_count) AS call_count, coalesce(sum(provider_cost), 0) AS provider_cost,
    coalesce(sum(call_cost), 0) AS call_cost, coalesce(sum(total_cost), 0) AS total_cost
  FROM charges GROUP BY account_id, usage_date, user_id, provider, model, charge_type) c`;
const COUNTERS = `SELECT period, period_start::text AS start, user_id, scope, message_count::text AS messages, unpriced_message_count::text AS unpriced,
    total_tokens::text AS tokens, trim_scale(total_cost)::text AS total_cost, reserved_messages::text AS held_messages,
    reserved_tokens::text AS held_tokens, trim_scale(reserved_cost)::text AS held_cost
  FROM usage_counters
  WHERE account_id = ? AND NOT (message_count = 0 AND total_tokens = 0 AND total_cost = 0 AND reserved_messages = 0 AND reserved_tokens = 0 AND reserved_cost = 0)
  ORDER BY 1, 2, 3, 4`;
// The day and month counters of every scope: recorded charges, plus the amounts of held reservations. The scopes of a
// charge or hold (issue 20): the account, its user, its API key (when it has one) and each declared tag value it records.
const PERIODS = `LATERAL (SELECT '' AS u, '' AS s UNION ALL SELECT user_id, ''
                  UNION ALL SELECT '', 'api_key:' || api_key_id WHERE api_key_id <> ''
                  UNION ALL SELECT '', 'tag:' || key || '=' || value FROM jsonb_each_text(coalesce(dimensions, '{}'::jsonb))) AS scopes(u, s), LATERAL (VALUES ('day', %s), ('month', date_trunc('month', %s)::date)) AS p(period, start)`;
const COUNTERS_FROM_CHARGES = `SELECT period, start::text AS start, u AS user_id, s AS scope, sum(n)::text AS messages, sum(unpriced)::text AS unpriced,
    sum(tokens)::text AS tokens, trim_scale(sum(cost))::text AS total_cost, sum(held_n)::text AS held_messages,
    sum(held_tokens)::text AS held_tokens, trim_scale(sum(held_cost))::text AS held_cost
  FROM (
    SELECT period, start, u, s, 1 AS n, CASE WHEN pricing_status = 'unpriced' THEN 1 ELSE 0 END AS unpriced, total_tokens AS tokens,
           coalesce(total_cost, 0) AS cost, 0 AS held_n, 0 AS held_tokens, 0 AS held_cost
      FROM charges, ${PERIODS.replaceAll('%s', 'usage_date')} WHERE account_id = ?
    UNION ALL
    SELECT period, start, u, s, 0, 0, 0, 0, held_messages, held_tokens, held_cost
      FROM reservations, ${PERIODS.replaceAll('%s', 'period_day')} WHERE account_id = ? AND status = 'held'
  ) x
  GROUP BY 1, 2, 3, 4 ORDER BY 1, 2, 3, 4`;

// The usage hours (issue 20, rolling windows): per UTC hour and scope, the charges of their usage_time's hour plus the
// holds of the hour they were placed in; kept only for the accounts listed in hour_tracking (those that have a
// rolling limit), from the hour it names on: none for the others.
const HOURS = `SELECT (hour_start AT TIME ZONE 'UTC')::text AS hour, user_id, scope, message_count::text AS messages, total_tokens::text AS tokens,
    trim_scale(total_cost)::text AS total_cost, reserved_messages::text AS held_messages, reserved_tokens::text AS held_tokens,
    trim_scale(reserved_cost)::text AS held_cost
  FROM hourly_counters
  WHERE account_id = ? AND NOT (message_count = 0 AND total_tokens = 0 AND total_cost = 0 AND reserved_messages = 0 AND reserved_tokens = 0 AND reserved_cost = 0)
  ORDER BY 1, 2, 3`;
const SCOPES = PERIODS.slice(0, PERIODS.indexOf(', LATERAL (VALUES'));
const KEPT_SINCE = (table: string) => `(SELECT since FROM hour_tracking t WHERE t.account_id = ${table}.account_id)`;
const HOURS_FROM_CHARGES = `SELECT hour::text AS hour, u AS user_id, s AS scope, sum(n)::text AS messages, sum(tokens)::text AS tokens,
    trim_scale(sum(cost))::text AS total_cost, sum(held_n)::text AS held_messages, sum(held_tokens)::text AS held_tokens,
    trim_scale(sum(held_cost))::text AS held_cost
  FROM (
    SELECT date_trunc('hour', usage_time AT TIME ZONE 'UTC') AS hour, u, s, 1 AS n, total_tokens AS tokens, coalesce(total_cost, 0) AS cost,
           0 AS held_n, 0 AS held_tokens, 0 AS held_cost
      FROM charges, ${SCOPES} WHERE account_id = ? AND usage_time >= ${KEPT_SINCE('charges')}
    UNION ALL
    SELECT date_trunc('hour', create_time AT TIME ZONE 'UTC'), u, s, 0, 0, 0, held_messages, held_tokens, held_cost
      FROM reservations, ${SCOPES} WHERE account_id = ? AND status = 'held' AND create_time >= ${KEPT_SINCE('reservations')}
  ) x
  GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`;

// The dimension rollups (issue 20): dimension_usage per key, and the charges summed under the values and hour they record.
const DIMENSIONS = `SELECT usage_date::text AS day, hour::text AS hour, user_id, provider, model, charge_type, api_key_id, dims::text AS dims,
    message_count::text AS messages, unpriced_message_count::text AS unpriced, prompt_tokens::text AS prompt, total_tokens::text AS tokens,
    call_count::text AS calls, trim_scale(provider_cost)::text AS provider_cost, trim_scale(call_cost)::text AS call_cost, trim_scale(total_cost)::text AS total_cost
  FROM %s WHERE account_id = ? ORDER BY 1, 2, 3, 4, 5, 6, 7, 8`;
const DIMENSIONS_FROM_CHARGES = `(SELECT account_id, usage_date, rollup_hour AS hour, user_id, provider, model, charge_type, api_key_id, dimensions AS dims,
    count(*) AS message_count, count(*) FILTER (WHERE pricing_status = 'unpriced') AS unpriced_message_count, sum(prompt_tokens) AS prompt_tokens,
    sum(total_tokens) AS total_tokens, sum(call_count) AS call_count, coalesce(sum(provider_cost), 0) AS provider_cost,
    coalesce(sum(call_cost), 0) AS call_cost, coalesce(sum(total_cost), 0) AS total_cost
  FROM charges WHERE dimensions IS NOT NULL GROUP BY account_id, usage_date, rollup_hour, user_id, provider, model, charge_type, api_key_id, dimensions) c`;

// The day-level dimension rollup: dimension_usage_daily per key, and the charges summed under the values they record, per day.
const DIMENSION_DAYS = DIMENSIONS.replace('hour::text AS hour, ', '').replace('ORDER BY 1, 2, 3, 4, 5, 6, 7, 8', 'ORDER BY 1, 2, 3, 4, 5, 6, 7');
const DIMENSION_DAYS_FROM_CHARGES = DIMENSIONS_FROM_CHARGES.replace('rollup_hour AS hour, ', '').replace('usage_date, rollup_hour, user_id', 'usage_date, user_id');

export async function rollupsVersusCharges(db: Db, accountId: string) {
  const rows = async (sql: string) => (await db.raw(sql, [accountId])).rows as Array<Record<string, string>>;
  return {
    stored: await rows(DAILY.replace('%s', 'daily_usage')),
    computed: await rows(DAILY.replace('%s', DAILY_FROM_CHARGES)),
    storedCounters: await rows(COUNTERS),
    computedCounters: (await db.raw(COUNTERS_FROM_CHARGES, [accountId, accountId])).rows as Array<Record<string, string>>,
    storedHours: await rows(HOURS),
    computedHours: (await db.raw(HOURS_FROM_CHARGES, [accountId, accountId])).rows as Array<Record<string, string>>,
    storedDimensions: await rows(DIMENSIONS.replace('%s', 'dimension_usage')),
    computedDimensions: await rows(DIMENSIONS.replace('%s', DIMENSIONS_FROM_CHARGES)),
    storedDimensionDays: await rows(DIMENSION_DAYS.replace('%s', 'dimension_usage_daily')),
    computedDimensionDays: await rows(DIMENSION_DAYS.replace('%s', DIMENSION_DAYS_FROM_CHARGES)),
  };
}

/** Asserts (with jest's expect) that an account's rollups and counters equal the sums of its charges. */
export async function expectRollupsMatchCharges(db: Db, accountId: string): Promise<void> {
  const r = await rollupsVersusCharges(db, accountId);
  expect(r.stored.length + r.storedCounters.length).toBeGreaterThan(0);
  expect(r.stored).toEqual(r.computed);
  expect(r.storedCounters).toEqual(r.computedCounters);
  expect(r.storedHours).toEqual(r.computedHours);
  expect(r.storedDimensions).toEqual(r.computedDimensions);
  expect(r.storedDimensionDays).toEqual(r.computedDimensionDays);
}

/**
 * The balance identity of an account with credits (issue 16), each as a list
 * of the rows that break it (so a failure shows them):
 * - the account's running balance = sum over its grants of amount - spent -
 *   expired - voided - held = its last entry's balance_after = the sum of its
 *   entries' effects, and its entries are numbered 1..last_entry without gaps;
 * - each grant's amount, spent, held, expired and voided = the sums of its
 *   grant, burn - refund, hold - hold_released, expiry and void entries;
 * - each grant's held = what the account's held reservations hold of it;
 * - each charge with credit entries burned (net) plus its overage = its billed cost;
 * - the overage of each month = the sum of the overage entries of its charges' months.
 */
const CREDIT_CHECKS: Record<string, string> = {
  balance: `SELECT a.balance::text AS stored, g.sum::text AS grants, e.last::text AS last_entry, e.total::text AS entries, a.last_entry::text AS last, e.n::text AS n, e.max::text AS max
    FROM credit_accounts a,
      LATERAL (SELECT coalesce(sum(amount - spent - expired - voided - held), 0) AS sum FROM credit_grants WHERE account_id = a.account_id) g,
      LATERAL (SELECT coalesce((SELECT balance_after FROM credit_entries WHERE account_id = a.account_id ORDER BY sequence DESC LIMIT 1), 0) AS last,
                      coalesce(sum(CASE WHEN kind IN ('grant', 'hold_released', 'refund') THEN amount WHEN kind = 'overage' THEN 0 ELSE -amount END), 0) AS total,
                      count(*) AS n, coalesce(max(sequence), 0) AS max
                 FROM credit_entries WHERE account_id = a.account_id) e
   WHERE a.account_id = ? AND NOT (a.balance = g.sum AND a.balance = e.last AND a.balance = e.total AND a.last_entry = e.n AND e.n = e.max)`,
  grants: `SELECT g.grant_id, g.amount::text, g.spent::text, g.held::text, g.expired::text, g.voided::text, e.*
    FROM credit_grants g LEFT JOIN LATERAL (
      SELECT coalesce(sum(amount) FILTER (WHERE kind = 'grant'), 0) AS e_amount,
             coalesce(sum(amount) FILTER (WHERE kind = 'burn'), 0) - coalesce(sum(amount) FILTER (WHERE kind = 'refund'), 0) AS e_spent,
             coalesce(sum(amount) FILTER (WHERE kind = 'hold'), 0) - coalesce(sum(amount) FILTER (WHERE kind = 'hold_released'), 0) AS e_held,
             coalesce(sum(amount) FILTER (WHERE kind = 'expiry'), 0) AS e_expired,
             coalesce(sum(amount) FILTER (WHERE kind = 'void'), 0) AS e_voided
        FROM credit_entries WHERE account_id = g.account_id AND grant_id = g.grant_id) e ON true
   WHERE g.account_id = ? AND NOT (g.amount = e.e_amount AND g.spent = e.e_spent AND g.held = e.e_held AND g.expired = e.e_expired AND g.voided = e.e_voided)`,
  holds: `SELECT g.grant_id, g.held::text, coalesce(h.sum, 0)::text AS reservations
    FROM credit_grants g LEFT JOIN (
      SELECT r.account_id, (x->>'grant_id')::uuid AS grant_id, sum((x->>'amount')::numeric) AS sum
        FROM reservations r, jsonb_array_elements(r.credit_holds) x WHERE r.status = 'held' GROUP BY 1, 2) h
      ON h.account_id = g.account_id AND h.grant_id = g.grant_id
   WHERE g.account_id = ? AND g.held <> coalesce(h.sum, 0)`,
  charges: `SELECT c.charge_id, coalesce(c.total_cost, 0)::text AS cost, e.burned::text
    FROM charges c JOIN (
      SELECT charge_id, sum(CASE WHEN kind = 'refund' THEN -amount ELSE amount END) AS burned
        FROM credit_entries WHERE account_id = ? AND kind IN ('burn', 'refund', 'overage') GROUP BY charge_id) e ON e.charge_id = c.charge_id
   WHERE c.account_id = ? AND coalesce(c.total_cost, 0) <> e.burned`,
  overage: `SELECT coalesce(o.period_start, e.month)::text AS month, o.amount::text AS stored, e.sum::text AS entries
    FROM (SELECT * FROM credit_overage WHERE account_id = ?) o FULL JOIN (
      SELECT date_trunc('month', c.usage_date)::date AS month, sum(x.amount) AS sum
        FROM credit_entries x JOIN charges c ON c.account_id = x.account_id AND c.charge_id = x.charge_id
       WHERE x.account_id = ? AND x.kind = 'overage' GROUP BY 1) e ON e.month = o.period_start
   WHERE o.amount IS DISTINCT FROM e.sum`,
};

export async function creditViolations(db: Db, accountId: string): Promise<Record<string, unknown[]>> {
  const out: Record<string, unknown[]> = {};
  for (const [name, sql] of Object.entries(CREDIT_CHECKS)) {
    const n = (sql.match(/\?/g) ?? []).length;
    out[name] = (await db.raw(sql, Array(n).fill(accountId))).rows;
  }
  return out;
}

/** Asserts the balance identity of an account with credits (and that it has them). */
export async function expectBalanceIdentity(db: Db, accountId: string): Promise<void> {
  expect(await db('credit_accounts').where({ account_id: accountId }).first()).toBeDefined();
  expect(await creditViolations(db, accountId)).toEqual({ balance: [], grants: [], holds: [], charges: [], overage: [] });
}

import type { Db } from '../../src/store/db';

/**
 * The rollups of an account as stored, and recomputed from its raw charges:
 * daily_usage per key, and the day and month counters per user and for the
 * account (user_id ''), whose held amounts must equal the sums of the held
 * reservations. Tests assert the two are equal after every kind of write.
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
const COUNTERS = `SELECT period, period_start::text AS start, user_id, message_count::text AS messages, unpriced_message_count::text AS unpriced,
    total_tokens::text AS tokens, trim_scale(total_cost)::text AS total_cost, reserved_messages::text AS held_messages,
    reserved_tokens::text AS held_tokens, trim_scale(reserved_cost)::text AS held_cost
  FROM usage_counters
  WHERE account_id = ? AND NOT (message_count = 0 AND total_tokens = 0 AND total_cost = 0 AND reserved_messages = 0 AND reserved_tokens = 0 AND reserved_cost = 0)
  ORDER BY 1, 2, 3`;
// The day and month counters of every scope: recorded charges, plus the amounts of held reservations.
const PERIODS = `LATERAL (VALUES (''), (user_id)) AS scopes(u), LATERAL (VALUES ('day', %s), ('month', date_trunc('month', %s)::date)) AS p(period, start)`;
const COUNTERS_FROM_CHARGES = `SELECT period, start::text AS start, u AS user_id, sum(n)::text AS messages, sum(unpriced)::text AS unpriced,
    sum(tokens)::text AS tokens, trim_scale(sum(cost))::text AS total_cost, sum(held_n)::text AS held_messages,
    sum(held_tokens)::text AS held_tokens, trim_scale(sum(held_cost))::text AS held_cost
  FROM (
    SELECT period, start, u, 1 AS n, CASE WHEN pricing_status = 'unpriced' THEN 1 ELSE 0 END AS unpriced, total_tokens AS tokens,
           coalesce(total_cost, 0) AS cost, 0 AS held_n, 0 AS held_tokens, 0 AS held_cost
      FROM charges, ${PERIODS.replaceAll('%s', 'usage_date')} WHERE account_id = ?
    UNION ALL
    SELECT period, start, u, 0, 0, 0, 0, held_messages, held_tokens, held_cost
      FROM reservations, ${PERIODS.replaceAll('%s', 'period_day')} WHERE account_id = ? AND status = 'held'
  ) x
  GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`;

export async function rollupsVersusCharges(db: Db, accountId: string) {
  const rows = async (sql: string) => (await db.raw(sql, [accountId])).rows as Array<Record<string, string>>;
  return {
    stored: await rows(DAILY.replace('%s', 'daily_usage')),
    computed: await rows(DAILY.replace('%s', DAILY_FROM_CHARGES)),
    storedCounters: await rows(COUNTERS),
    computedCounters: (await db.raw(COUNTERS_FROM_CHARGES, [accountId, accountId])).rows as Array<Record<string, string>>,
  };
}

/** Asserts (with jest's expect) that an account's rollups and counters equal the sums of its charges. */
export async function expectRollupsMatchCharges(db: Db, accountId: string): Promise<void> {
  const r = await rollupsVersusCharges(db, accountId);
  expect(r.stored.length + r.storedCounters.length).toBeGreaterThan(0);
  expect(r.stored).toEqual(r.computed);
  expect(r.storedCounters).toEqual(r.computedCounters);
}

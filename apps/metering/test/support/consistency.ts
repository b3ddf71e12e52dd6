import type { Db } from '../../src/store/db';

/**
 * The rollups of an account as stored, and recomputed from its raw charges:
 * daily_usage per key, and the day counters per user and for the account
 * (user_id ''). Tests assert the two are equal after every kind of write.
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
const COUNTERS = `SELECT period_start::text AS day, user_id, message_count::text AS messages, unpriced_message_count::text AS unpriced,
    total_tokens::text AS tokens, trim_scale(total_cost)::text AS total_cost
  FROM usage_counters WHERE account_id = ? AND period = 'day' ORDER BY 1, 2`;
const COUNTERS_FROM_CHARGES = `SELECT usage_date::text AS day, u AS user_id, count(*)::text AS messages,
    (count(*) FILTER (WHERE pricing_status = 'unpriced'))::text AS unpriced, sum(total_tokens)::text AS tokens,
    trim_scale(coalesce(sum(total_cost), 0))::text AS total_cost
  FROM charges, LATERAL (VALUES (''), (user_id)) AS scopes(u) WHERE account_id = ? GROUP BY 1, 2 ORDER BY 1, 2`;

export async function rollupsVersusCharges(db: Db, accountId: string) {
  const rows = async (sql: string) => (await db.raw(sql, [accountId])).rows as Array<Record<string, string>>;
  return {
    stored: await rows(DAILY.replace('%s', 'daily_usage')),
    computed: await rows(DAILY.replace('%s', DAILY_FROM_CHARGES)),
    storedCounters: await rows(COUNTERS),
    computedCounters: await rows(COUNTERS_FROM_CHARGES),
  };
}

/** Asserts (with jest's expect) that an account's rollups and counters equal the sums of its charges. */
export async function expectRollupsMatchCharges(db: Db, accountId: string): Promise<void> {
  const r = await rollupsVersusCharges(db, accountId);
  expect(r.stored.length).toBeGreaterThan(0);
  expect(r.stored).toEqual(r.computed);
  expect(r.storedCounters).toEqual(r.computedCounters);
}

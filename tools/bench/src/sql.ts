/**
 * The SQL the benchmark runs on Postgres directly: the write ceilings (the
 * service's own write, without the service), fast data generation, and the
 * correctness checks.
 */
import { randomUUID } from 'node:crypto';
import type { Pool } from 'pg';

const CHARGE_COLUMNS = [
  'account_id', 'charge_id', 'idempotency_key', 'user_id', 'session_key', 'provider', 'model', 'charge_type', 'request_type',
  'prompt_tokens', 'completion_tokens', 'reasoning_tokens', 'cached_prompt_tokens', 'cache_write_tokens', 'total_tokens',
  'reference', 'endpoint', 'response_time_ms', 'metadata', 'usage_time', 'usage_time_supplied', 'usage_date',
  'pricing_status', 'price_version', 'markup', 'price_origin', 'provider_cost', 'prompt_cost', 'completion_cost', 'call_cost', 'total_cost',
];

/** Every charge's scopes (its account '' and its user) and periods (its day and its month). */
const PERIODS = `LATERAL (VALUES (''), (user_id)) AS s(u), LATERAL (VALUES ('day', usage_date), ('month', date_trunc('month', usage_date)::date)) AS p(period, start)`;

/**
 * One transaction of `perTx` charges written as the service writes them: a
 * multi-row insert with ON CONFLICT on the idempotency key, then the daily
 * rollup and the day and month counters (account and user) upserted, pre-aggregated, in key order;
 * with `outbox`, also the charge stream's events (the account's sequence row, one event per charge
 * with the charge as its payload, and the NOTIFY), as the service appends them last.
 */
export async function writeCharges(pool: Pool, accountId: string, users: number, perTx: number, keyPrefix: string, outbox = false): Promise<void> {
  const day = new Date().toISOString().slice(0, 10);
  const now = new Date();
  const rows = Array.from({ length: perTx }, () => {
    const user = users === 1 ? 'hot-user' : `u${Math.floor(Math.random() * users)}`;
    return [accountId, randomUUID(), `${keyPrefix}-${randomUUID()}`, user, 'bench-session', 'openai', 'gpt-4o-mini', 'completion', 'chat',
      1200, 350, 0, 400, 0, 1550, 'bench', '/v1/chat/completions', 850, '{"team":"bench"}', now, false, day,
      'priced', 'openai/gpt-4o-mini@2024-07-18', '1', 'catalog', '0.00035', '0.00014', '0.00021', '0', '0.00035'];
  }).sort((a, b) => (String(a[2]) < String(b[2]) ? -1 : 1));
  const params: unknown[] = [];
  const values = rows.map((r) => `(${r.map((v) => `$${params.push(v)}`).join(',')})`).join(',');
  const byUser = new Map<string, number>();
  for (const r of rows) byUser.set(String(r[3]), (byUser.get(String(r[3])) ?? 0) + 1);
  const users_ = [...byUser.entries()].sort(([a], [b]) => (a < b ? -1 : 1));
  const client = await pool.connect();
  try {
    await client.query('BEGIN');
    const inserted = await client.query(`INSERT INTO charges (${CHARGE_COLUMNS.join(',')}) VALUES ${values} ON CONFLICT (account_id, idempotency_key) DO NOTHING RETURNING *`, params);
    await client.query(
      `INSERT INTO daily_usage AS d (account_id, usage_date, user_id, provider, model, charge_type, message_count, prompt_tokens, completion_tokens, cached_prompt_tokens, total_tokens, provider_cost, prompt_cost, completion_cost, total_cost)
       SELECT $1, $2, u, 'openai', 'gpt-4o-mini', 'completion', n, n * 1200, n * 350, n * 400, n * 1550, n * 0.00035, n * 0.00014, n * 0.00021, n * 0.00035
         FROM unnest($3::text[], $4::bigint[]) AS x(u, n)
       ON CONFLICT (account_id, usage_date, user_id, provider, model, charge_type) DO UPDATE SET
         message_count = d.message_count + excluded.message_count, prompt_tokens = d.prompt_tokens + excluded.prompt_tokens,
         completion_tokens = d.completion_tokens + excluded.completion_tokens, cached_prompt_tokens = d.cached_prompt_tokens + excluded.cached_prompt_tokens,
         total_tokens = d.total_tokens + excluded.total_tokens, provider_cost = d.provider_cost + excluded.provider_cost, prompt_cost = d.prompt_cost + excluded.prompt_cost,
         completion_cost = d.completion_cost + excluded.completion_cost, total_cost = d.total_cost + excluded.total_cost, updated_at = now()`,
      [accountId, day, users_.map(([u]) => u), users_.map(([, n]) => n)],
    );
    // Day and month counters of the account ('') and of each user, in key order (day rows, then month rows).
    const scopes: Array<[string, number]> = [['', perTx], ...users_];
    const periods = [...scopes.map(() => 'day'), ...scopes.map(() => 'month')];
    await client.query(
      `INSERT INTO usage_counters AS c (account_id, period, period_start, user_id, message_count, total_tokens, total_cost)
       SELECT $1, p, CASE WHEN p = 'day' THEN $2::date ELSE date_trunc('month', $2::date)::date END, u, n, n * 1550, n * 0.00035
         FROM unnest($3::text[], $4::text[], $5::bigint[]) AS x(p, u, n)
       ON CONFLICT (account_id, period, period_start, user_id, scope) DO UPDATE SET message_count = c.message_count + excluded.message_count,
         total_tokens = c.total_tokens + excluded.total_tokens, total_cost = c.total_cost + excluded.total_cost, updated_at = now()`,
      [accountId, day, periods, [...scopes, ...scopes].map(([u]) => u), [...scopes, ...scopes].map(([, n]) => n)],
    );
    if (outbox) {
      await client.query(
        `WITH seq AS (
           INSERT INTO event_sequences AS s (account_id, last_sequence) VALUES ($1, $2)
           ON CONFLICT (account_id) DO UPDATE SET last_sequence = s.last_sequence + excluded.last_sequence
           RETURNING last_sequence
         ), ins AS (
           INSERT INTO charge_events (account_id, sequence, kind, payload)
             SELECT $1, seq.last_sequence - $2 + e.ord, 'charge_recorded', e.payload
             FROM seq, jsonb_array_elements($3::jsonb) WITH ORDINALITY AS e(payload, ord)
           RETURNING 1
         )
         SELECT pg_notify('metering_events', $1)`,
        [accountId, inserted.rows.length, JSON.stringify(inserted.rows)],
      );
    }
    await client.query('COMMIT');
  } catch (e) {
    await client.query('ROLLBACK');
    throw e;
  } finally {
    client.release();
  }
}

/** Transactions of `perTx` charges from `clients` connections for `durationMs`: charges per second. */
export async function writeCeiling(pool: Pool, clients: number, perTx: number, durationMs: number, accountId: string, outbox = false): Promise<{ chargesPerSecond: number; transactions: number }> {
  const deadline = Date.now() + durationMs;
  let transactions = 0;
  const started = process.hrtime.bigint();
  await Promise.all(
    Array.from({ length: clients }, async () => {
      while (Date.now() < deadline) {
        await writeCharges(pool, accountId, 10_000, perTx, `ceiling-${perTx}`, outbox);
        transactions++;
      }
    }),
  );
  const seconds = Number(process.hrtime.bigint() - started) / 1e9;
  return { chargesPerSecond: (transactions * perTx) / seconds, transactions };
}

/** The dimensions the generated account declares (its charges carry both tags, and one undeclared). */
export const SCALE_DIMENSIONS = ['env', 'feature'];

const ROLLUP_SUMS = `count(*), sum(prompt_tokens), sum(completion_tokens), sum(cached_prompt_tokens), sum(total_tokens), sum(provider_cost), sum(prompt_cost),
       sum(completion_cost), sum(total_cost)`;
const ROLLUP_SUM_COLUMNS = 'message_count, prompt_tokens, completion_tokens, cached_prompt_tokens, total_tokens, provider_cost, prompt_cost, completion_cost, total_cost';

/**
 * Grows an account's charges to `total` over the last 30 days (100 users, 3
 * models), generated inside Postgres in chunks (progress on stderr), then
 * rebuilds its rollups and counters from them and analyzes the tables. The
 * account declares dimensions (SCALE_DIMENSIONS): each charge has a random
 * `feature` (4 values) and `env` (2 values), summed in dimension_usage (by
 * local hour) and dimension_usage_daily as the service sums them.
 */
export async function growAccount(pool: Pool, accountId: string, from: number, total: number): Promise<void> {
  const chunk = 200_000;
  const started = Date.now();
  await pool.query(`INSERT INTO account_dimensions (account_id, tag_keys, update_time) VALUES ($1, $2, now()) ON CONFLICT (account_id) DO NOTHING`, [accountId, SCALE_DIMENSIONS]);
  for (let at = from; at < total; at += chunk) {
    const upto = Math.min(total, at + chunk);
    await pool.query(
      `INSERT INTO charges (account_id, charge_id, idempotency_key, user_id, provider, model, charge_type, request_type, prompt_tokens, completion_tokens,
         reasoning_tokens, cached_prompt_tokens, cache_write_tokens, total_tokens, usage_time, usage_time_supplied, usage_date, pricing_status,
         price_version, markup, price_origin, provider_cost, prompt_cost, completion_cost, call_cost, total_cost, tags, dimensions, rollup_hour)
       SELECT $1, gen_random_uuid(), 'gen-' || i, 'u' || (i % 100), 'openai', (ARRAY['gpt-4o-mini','gpt-4o','o3'])[1 + i % 3], 'completion', 'chat',
         1200, 350, 0, 400, 0, 1550, t, true, (t AT TIME ZONE 'UTC')::date, 'priced', 'openai/gpt-4o-mini@2024-07-18', 1, 'catalog',
         0.00035, 0.00014, 0.00021, 0, 0.00035, dims || jsonb_build_object('request', 'gen-' || i), dims, extract(hour FROM t AT TIME ZONE 'UTC')::smallint
         FROM generate_series($2::bigint, $3::bigint - 1) AS i,
              LATERAL (SELECT now() - ((i % 30) || ' days')::interval - ((i % 86400) || ' seconds')::interval AS t) AS times,
              -- Refers to i, so each charge draws its own tags.
              LATERAL (SELECT jsonb_build_object('feature', (ARRAY['summarize','chat','search','extract'])[1 + floor(random() * 4)::int],
                                                 'env', (ARRAY['prod','dev'])[1 + floor(random() * 2)::int]) AS dims
                        WHERE i IS NOT NULL) AS tagged`,
      [accountId, at, upto],
    );
    const done = upto / total;
    const rate = (upto - from) / ((Date.now() - started) / 1000);
    process.stderr.write(`\r  generating ${accountId}: [${'#'.repeat(Math.round(done * 30)).padEnd(30)}] ${upto.toLocaleString()} / ${total.toLocaleString()} charges, ${Math.round(rate).toLocaleString()}/s   `);
  }
  process.stderr.write('\n');
  for (const table of ['daily_usage', 'usage_counters', 'dimension_usage', 'dimension_usage_daily']) await pool.query(`DELETE FROM ${table} WHERE account_id = $1`, [accountId]);
  await pool.query(
    `INSERT INTO daily_usage (account_id, usage_date, user_id, provider, model, charge_type, ${ROLLUP_SUM_COLUMNS})
     SELECT account_id, usage_date, user_id, provider, model, charge_type, ${ROLLUP_SUMS}
       FROM charges WHERE account_id = $1 GROUP BY 1, 2, 3, 4, 5, 6`,
    [accountId],
  );
  await pool.query(
    `INSERT INTO usage_counters (account_id, period, period_start, user_id, message_count, total_tokens, total_cost)
     SELECT account_id, p.period, p.start, u, count(*), sum(total_tokens), sum(total_cost)
       FROM charges, ${PERIODS} WHERE account_id = $1 GROUP BY 1, 2, 3, 4`,
    [accountId],
  );
  await pool.query(
    `INSERT INTO dimension_usage (account_id, usage_date, hour, user_id, provider, model, charge_type, api_key_id, dims, ${ROLLUP_SUM_COLUMNS}, updated_at)
     SELECT account_id, usage_date, rollup_hour, user_id, provider, model, charge_type, api_key_id, dimensions, ${ROLLUP_SUMS}, now()
       FROM charges WHERE account_id = $1 AND dimensions IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9`,
    [accountId],
  );
  await pool.query(
    `INSERT INTO dimension_usage_daily (account_id, usage_date, user_id, provider, model, charge_type, api_key_id, dims, ${ROLLUP_SUM_COLUMNS}, updated_at)
     SELECT account_id, usage_date, user_id, provider, model, charge_type, api_key_id, dimensions, ${ROLLUP_SUMS}, now()
       FROM charges WHERE account_id = $1 AND dimensions IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7, 8`,
    [accountId],
  );
  // VACUUM as well as ANALYZE: a database that grew to this size over months has been vacuumed; measured
  // right after a bulk insert, autovacuum's first pass over the new rows would run during the reads.
  for (const table of ['charges', 'daily_usage', 'usage_counters', 'dimension_usage', 'dimension_usage_daily']) await pool.query(`VACUUM ANALYZE ${table}`);
  // And flushed: without it the checkpointer writes the generated gigabytes out while the first
  // reads are measured (on this session's machine GetDailyUsage and CheckLimits, measured first,
  // were 1.6x and 2.4x slower at 10M charges than at 100k, the QueryUsage reads after them not).
  await pool.query('CHECKPOINT');
}

/** How many rows the account has in each rollup (reported with the scale scenarios). */
export async function rollupRowCounts(pool: Pool, accountId: string): Promise<Record<string, number>> {
  const out: Record<string, number> = {};
  for (const table of ['daily_usage', 'dimension_usage', 'dimension_usage_daily']) out[table] = (await pool.query(`SELECT count(*)::int AS n FROM ${table} WHERE account_id = $1`, [accountId])).rows[0].n;
  return out;
}

/** Rollup rows and counters that differ from the sums of the charges (0 and 0 when consistent). */
export async function rollupMismatches(pool: Pool): Promise<{ daily: number; counters: number; dimensions: number }> {
  const daily = await pool.query(
    `WITH c AS (SELECT account_id, usage_date, user_id, provider, model, charge_type, count(*) AS n, sum(total_tokens) AS t, coalesce(sum(total_cost), 0) AS cost
                  FROM charges GROUP BY 1, 2, 3, 4, 5, 6)
     SELECT count(*)::int AS n FROM c FULL JOIN daily_usage d USING (account_id, usage_date, user_id, provider, model, charge_type)
      WHERE c.n IS DISTINCT FROM d.message_count OR c.t IS DISTINCT FROM d.total_tokens OR c.cost IS DISTINCT FROM d.total_cost`,
  );
  // The account's and its users' counters (scope ''); the API key and tag value counters (issue 20) are checked by the tests' oracle.
  const counters = await pool.query(
    `WITH c AS (SELECT account_id, p.period, p.start, u AS user_id, count(*) AS n, sum(total_tokens) AS t, coalesce(sum(total_cost), 0) AS cost
                  FROM charges, ${PERIODS} GROUP BY 1, 2, 3, 4)
     SELECT count(*)::int AS n FROM c FULL JOIN (SELECT * FROM usage_counters WHERE scope = '') u
         ON u.account_id = c.account_id AND u.period = c.period AND u.period_start = c.start AND u.user_id = c.user_id
      WHERE c.n IS DISTINCT FROM u.message_count OR c.t IS DISTINCT FROM u.total_tokens OR c.cost IS DISTINCT FROM u.total_cost`,
  );
  // Dimension rollups (issue 20): the charges summed under the values and hour each records.
  const dimensions = await pool.query(
    `WITH c AS (SELECT account_id, usage_date, rollup_hour AS hour, user_id, provider, model, charge_type, api_key_id, dimensions AS dims,
                       count(*) AS n, sum(total_tokens) AS t, coalesce(sum(total_cost), 0) AS cost
                  FROM charges WHERE dimensions IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7, 8, 9)
     SELECT count(*)::int AS n FROM c FULL JOIN dimension_usage d USING (account_id, usage_date, hour, user_id, provider, model, charge_type, api_key_id, dims)
      WHERE c.n IS DISTINCT FROM d.message_count OR c.t IS DISTINCT FROM d.total_tokens OR c.cost IS DISTINCT FROM d.total_cost`,
  );
  // The day-level dimension rollups: the same charges summed per day.
  const dimensionDays = await pool.query(
    `WITH c AS (SELECT account_id, usage_date, user_id, provider, model, charge_type, api_key_id, dimensions AS dims,
                       count(*) AS n, sum(total_tokens) AS t, coalesce(sum(total_cost), 0) AS cost
                  FROM charges WHERE dimensions IS NOT NULL GROUP BY 1, 2, 3, 4, 5, 6, 7, 8)
     SELECT count(*)::int AS n FROM c FULL JOIN dimension_usage_daily d USING (account_id, usage_date, user_id, provider, model, charge_type, api_key_id, dims)
      WHERE c.n IS DISTINCT FROM d.message_count OR c.t IS DISTINCT FROM d.total_tokens OR c.cost IS DISTINCT FROM d.total_cost`,
  );
  return { daily: daily.rows[0].n, counters: counters.rows[0].n, dimensions: dimensions.rows[0].n + dimensionDays.rows[0].n };
}

/** How many of the acknowledged charge ids are stored (each id is stored at most once: it is unique per account). */
export async function storedOf(pool: Pool, ids: string[]): Promise<number> {
  let stored = 0;
  for (let i = 0; i < ids.length; i += 50_000) {
    const r = await pool.query('SELECT count(*)::int AS n FROM charges WHERE charge_id = ANY($1::uuid[])', [ids.slice(i, i + 50_000)]);
    stored += r.rows[0].n;
  }
  return stored;
}

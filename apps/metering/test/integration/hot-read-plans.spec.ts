import type { Knex } from 'knex';
import { findChargesByIdempotencyKeys } from '../../src/store/charges.repo';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { readLimitCheckState } from '../../src/store/limits.repo';
import { databaseTargets, onCitus, requirePostgresInCi, TestDatabase } from '../support/databases';
import { SentStatement, statementsSentBy } from '../support/statements';

/**
 * The hot reads that select rows by keys read those keys only, also when the tables' statistics
 * are from before the account had rows, as for a new account that grows fast between two
 * ANALYZEs or a database whose autovacuum is off (docs/benchmarks.md, "Plans made from stale
 * statistics"):
 * - the look-up of used idempotency keys (replays, conflicts), sent unnamed: its very text and
 *   values are run again under EXPLAIN ANALYZE (the old join read all 20,000 charges);
 * - CheckLimits' read of the limits, the counters and a rolling window's hours: the rows it
 *   reads, from the transaction's statistics (the old texts read every counter of the account,
 *   and every user's hours of the window). It is a function that plans it once per connection
 *   (store/db.ts, PlannedOnceRead), and it runs before the account grows, so the plan it cached
 *   then, from the small tables' statistics, is the one measured (without `enable_seqscan = off`
 *   that plan read 241,099 counters: a sequential scan per key).
 */
requirePostgresInCi();

/** A node of EXPLAIN (ANALYZE, FORMAT JSON)'s plan, as far as this test reads it. */
interface PlanNode {
  'Node Type': string;
  'Relation Name'?: string;
  'Index Name'?: string;
  'Index Cond'?: string;
  'Actual Rows': number;
  'Actual Loops': number;
  'Rows Removed by Filter'?: number;
  'Rows Removed by Index Recheck'?: number;
  Plans?: PlanNode[];
}

const describeUnlessCitus = onCitus() ? describe.skip : describe;

/**
 * The rows of `tables` that `fn` read (by sequential, index and bitmap scans), from the
 * transaction's own statistics; CheckLimits' read (a function with a generic plan) runs on the
 * plan it cached before the account grew, and so would a named statement (force_generic_plan:
 * the plan Postgres may pick after five executions).
 */
const rowsReadBy = (db: Db, tables: string[], fn: (trx: Knex.Transaction) => Promise<unknown>) =>
  db.transaction(async (trx) => {
    await trx.raw('SET LOCAL plan_cache_mode = force_generic_plan');
    await fn(trx);
    const { rows } = await trx.raw('SELECT sum(pg_stat_get_xact_tuples_returned(t::regclass) + pg_stat_get_xact_tuples_fetched(t::regclass)) AS n FROM unnest(?::text[]) t', [tables]);
    return Number((rows as Array<{ n: string }>)[0].n);
  });

describeUnlessCitus.each(databaseTargets())('hot reads read only their keys on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  const today = new Date().toISOString().slice(0, 10);
  const month = `${today.slice(0, 7)}-01`;
  /** The first hour of a 24-hour window ending now. */
  const windowStart = new Date(Date.now() - 23 * 3600_000);
  windowStart.setUTCMinutes(0, 0, 0);

  beforeAll(async () => {
    tdb = await target.create();
    // One connection: the named statements' plans cached below are the ones the tests run on.
    db = openDatabase({ ...tdb.config, poolMax: 1 });
    await migrate(db);
    // Statistics taken while another account had all the rows, then a new account grows.
    const charges = (accountId: string, count: number) =>
      db.raw(
        `INSERT INTO charges (account_id, charge_id, idempotency_key, user_id, provider, model, charge_type, request_type, prompt_tokens, completion_tokens,
                reasoning_tokens, cached_prompt_tokens, cache_write_tokens, total_tokens, usage_time, usage_time_supplied, usage_date, pricing_status)
         SELECT ?, gen_random_uuid(), 'key-' || g, 'u' || (g % 100), 'openai', 'gpt-4o', 'completion', 'chat', 1000, 200, 0, 0, 0, 1200, now(), true, current_date, 'unpriced'
           FROM generate_series(1, ?::int) g`,
        [accountId, count],
      );
    // Each user's day counters of `days` days before today and its month counter.
    const counters = (accountId: string, users: number, days: number) =>
      db.raw(
        `INSERT INTO usage_counters (account_id, period, period_start, user_id, message_count, total_tokens, total_cost, updated_at)
         SELECT ?, p.period, p.start, 'u' || g, 1, 1200, 0.01, now()
           FROM generate_series(1, ?::int) g,
                LATERAL (SELECT 'day' AS period, ?::date - d AS start FROM generate_series(0, ?::int - 1) d
                         UNION ALL SELECT 'month', date_trunc('month', ?::date)::date) p`,
        [accountId, users, today, days, today],
      );
    await charges('early', 200);
    await counters('early', 50, 2);
    await db.raw('ANALYZE charges');
    await db.raw('ANALYZE usage_counters');
    // A rolling limit of one of the account's users; then CheckLimits' read runs enough times to
    // cache its plan (made generic now, while the tables are small) before the account grows.
    await db.raw(`INSERT INTO limits (account_id, user_id, period, measure, amount, enforcement, window_hours) VALUES ('grown', 'u17', 'rolling', 'cost', 10, 'hard', 24)`);
    await db.transaction(async (trx) => {
      await trx.raw('SET LOCAL plan_cache_mode = force_generic_plan');
      for (let i = 0; i < 6; i++) await readLimitCheckState(trx, 'grown', ['u17'], [today, month], [], windowStart);
    });
    await charges('grown', 20_000);
    await counters('grown', 10_000, 5);
    // A day limit of each of 10k users.
    await db.raw(`INSERT INTO limits (account_id, user_id, period, measure, amount, enforcement) SELECT 'grown', 'u' || g, 'day', 'cost', 5, 'hard' FROM generate_series(1, 10000) g`);
    // 24 hours of usage of each of 10k users.
    await db.raw(
      `INSERT INTO hourly_counters (account_id, hour_start, user_id, scope, message_count, total_tokens, total_cost, updated_at)
       SELECT 'grown', date_trunc('hour', now()) - make_interval(hours => h), 'u' || g, '', 1, 1200, 0.01, now()
         FROM generate_series(1, 10000) g, generate_series(0, 23) h`,
    );
  }, 120_000);

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  const sentBy = (fn: () => Promise<unknown>) => statementsSentBy(db, fn);

  /** The scans of `table` when `sent` is run again under EXPLAIN ANALYZE, and the rows each read. */
  const scansOf = async (sent: SentStatement, table: string) => {
    const { rows } = await db.raw(`EXPLAIN (ANALYZE, FORMAT JSON) ${sent.sql.replace(/\$\d+/g, '?')}`, sent.bindings);
    const scans: Array<{ type: string; index: string; condition: string; rowsRead: number }> = [];
    const walk = (node: PlanNode) => {
      if (node['Relation Name'] === table) {
        // Actual Rows is a mean per loop, rounded by Postgres.
        const rowsRead = node['Actual Rows'] * node['Actual Loops'] + (node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Index Recheck'] ?? 0);
        scans.push({ type: node['Node Type'], index: node['Index Name'] ?? '', condition: node['Index Cond'] ?? '', rowsRead });
      }
      for (const child of node.Plans ?? []) walk(child);
    };
    walk((rows[0]['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0].Plan);
    return scans;
  };

  it('looks used idempotency keys up by one probe of the unique index per key', async () => {
    let found: Awaited<ReturnType<typeof findChargesByIdempotencyKeys>> = [];
    const sent = await sentBy(async () => {
      found = await findChargesByIdempotencyKeys(db, [
        { accountId: 'grown', idempotencyKey: 'key-7' },
        { accountId: 'grown', idempotencyKey: 'key-19999' },
        { accountId: 'grown', idempotencyKey: 'never-used' },
      ]);
    });
    expect(found.map((c) => c.idempotencyKey).sort()).toEqual(['key-19999', 'key-7']);
    expect(sent).toHaveLength(1);
    expect(sent[0].options?.name).toBeUndefined();
    const scans = await scansOf(sent[0], 'charges');
    expect(scans).toEqual([{ type: 'Index Scan', index: 'charges_idempotency_key', condition: expect.stringContaining('idempotency_key'), rowsRead: expect.any(Number) }]);
    expect(scans[0].rowsRead).toBeLessThanOrEqual(3);
  }, 60_000);

  it("reads CheckLimits' limits of the users asked for, not every limit of the account", async () => {
    let limits: Awaited<ReturnType<typeof readLimitCheckState>>['limits'] = [];
    const read = await rowsReadBy(db, ['limits'], async (trx) => ({ limits } = await readLimitCheckState(trx, 'grown', ['u17'], [today, month], [], windowStart)));
    expect(limits.map((l) => `${l.userId} ${l.period}`).sort()).toEqual(['u17 day', 'u17 rolling']);
    // u17's two limits (one probe per user and scope asked for).
    expect(read).toBeLessThanOrEqual(2);
  }, 60_000);

  it("reads CheckLimits' counters by their keys, not every counter of the account", async () => {
    let counters: Awaited<ReturnType<typeof readLimitCheckState>>['counters'] = [];
    const read = await rowsReadBy(db, ['usage_counters'], async (trx) => ({ counters } = await readLimitCheckState(trx, 'grown', ['u17'], [today, month])));
    expect(counters.map((c) => `${c.userId} ${c.period} ${c.periodStart}`).sort()).toEqual([`u17 day ${today}`, `u17 month ${month}`]);
    // The keys asked for: 2 users ('' and u17), today's day and the 1st's day and month, of which two exist.
    expect(read).toBeLessThanOrEqual(6);
  }, 60_000);

  it("reads a rolling window's hours scope by scope, not every user's hours of the window", async () => {
    let hours: Awaited<ReturnType<typeof readLimitCheckState>>['hours'] = [];
    const read = await rowsReadBy(db, ['hourly_counters'], async (trx) => ({ hours } = await readLimitCheckState(trx, 'grown', ['u17'], [today, month], [], windowStart)));
    expect(hours).toHaveLength(24);
    expect(new Set(hours.map((h) => h.userId))).toEqual(new Set(['u17']));
    // Two scopes (the account's and u17's) of 24 hours: u17's 24 rows, none of the account's.
    expect(read).toBeLessThanOrEqual(24);
  }, 60_000);
});

/**
 * CheckLimits' read caches its plan on a new database whose tables were never analyzed (no
 * statistics at all: a fresh deployment with autovacuum off), then one account grows: the read
 * still probes its keys (without `OFFSET 0` in the limits' probe it read all 10,000 limits; the
 * look-up of used keys, tried as such a function, took another index on such tables:
 * docs/architecture.md).
 */
describeUnlessCitus.each(databaseTargets())("CheckLimits' read on tables never analyzed on $name", (target) => {
  let tdb: TestDatabase;
  let db: Db;

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase({ ...tdb.config, poolMax: 1 });
    await migrate(db);
  }, 60_000);

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  it('reads the counters and limits of the users asked for after the account grew', async () => {
    const today = new Date().toISOString().slice(0, 10);
    for (let i = 0; i < 6; i++) await readLimitCheckState(db, 'fresh', ['u17'], [today]);
    await db.raw(
      `INSERT INTO usage_counters (account_id, period, period_start, user_id, message_count, total_tokens, total_cost, updated_at)
       SELECT 'fresh', 'day', ?::date - d, 'u' || g, 1, 1200, 0.01, now() FROM generate_series(1, 10000) g, generate_series(0, 4) d`,
      [today],
    );
    await db.raw(`INSERT INTO limits (account_id, user_id, period, measure, amount, enforcement) SELECT 'fresh', 'u' || g, 'day', 'cost', 5, 'hard' FROM generate_series(1, 10000) g`);
    let state: Awaited<ReturnType<typeof readLimitCheckState>> | undefined;
    const read = await rowsReadBy(db, ['usage_counters', 'limits'], async (trx) => (state = await readLimitCheckState(trx, 'fresh', ['u17'], [today])));
    expect(state?.counters.map((c) => `${c.userId} ${c.periodStart}`)).toEqual([`u17 ${today}`]);
    expect(state?.limits.map((l) => l.userId)).toEqual(['u17']);
    // u17's counter and limit (50,000 counters and 10,000 limits in the account).
    expect(read).toBeLessThanOrEqual(2);
  }, 60_000);
});

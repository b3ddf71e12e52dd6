import type { Knex } from 'knex';
import { findChargesByIdempotencyKeys } from '../../src/store/charges.repo';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { readLimitCheckState } from '../../src/store/limits.repo';
import { databaseTargets, onCitus, requirePostgresInCi, TestDatabase } from '../support/databases';

/**
 * The hot reads that select rows by arrays of keys read those keys only, also when the tables'
 * statistics are from before the account had rows, as for a new account that grows fast between
 * two ANALYZEs or a database whose autovacuum is off: the look-up of used idempotency keys
 * (replays, conflicts), CheckLimits' read of the account's counters and of a rolling window's
 * hours (by scope, then hour: a range of hours first held every user's hours). Each is sent unnamed
 * (planned with its values on every call: a named statement's generic plan, settled while the
 * tables were small, read all of the account's rows by account_id: 20 ms at 60k counters,
 * docs/benchmarks.md), and its very text and values are run again under EXPLAIN ANALYZE: the
 * rows it read of the grown table. Without a name the plan is made as it is here.
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

interface Sent {
  sql: string;
  bindings: Knex.RawBinding[];
  options?: { name?: string };
}

const describeUnlessCitus = onCitus() ? describe.skip : describe;

describeUnlessCitus.each(databaseTargets())('hot reads read only their keys on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  const today = new Date().toISOString().slice(0, 10);

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
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
    await charges('grown', 20_000);
    await counters('grown', 10_000, 5);
    // A rolling limit of the account's users, and 24 hours of usage of each of 10k users.
    await db.raw(`INSERT INTO limits (account_id, user_id, period, measure, amount, enforcement, window_hours) VALUES ('grown', 'u17', 'rolling', 'cost', 10, 'hard', 24)`);
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

  /** The statements `fn` sends. */
  const sentBy = async (fn: () => Promise<unknown>): Promise<Sent[]> => {
    const sent: Sent[] = [];
    const listener = (q: Sent) => sent.push(q);
    db.on('query', listener);
    try {
      await fn();
    } finally {
      db.off('query', listener);
    }
    return sent;
  };

  /** The scans of `table` when `sent` is run again under EXPLAIN ANALYZE, and the rows each read. */
  const scansOf = async (sent: Sent, table: string) => {
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

  it("reads CheckLimits' counters by their keys, not every counter of the account", async () => {
    let counters: Awaited<ReturnType<typeof readLimitCheckState>>['counters'] = [];
    const month = `${today.slice(0, 7)}-01`;
    const sent = await sentBy(async () => {
      // Run more than five times, after which a named statement would settle on its generic plan.
      for (let i = 0; i < 7; i++) ({ counters } = await readLimitCheckState(db, 'grown', ['u17'], [today, month]));
    });
    expect(counters.map((c) => `${c.userId} ${c.period} ${c.periodStart}`).sort()).toEqual([`u17 day ${today}`, `u17 month ${month}`]);
    expect(sent).toHaveLength(7);
    expect(sent.every((s) => s.options?.name === undefined)).toBe(true);
    const scans = await scansOf(sent[6], 'usage_counters');
    expect(scans).toEqual([{ type: 'Index Scan', index: 'usage_counters_pkey', condition: expect.stringContaining('user_id'), rowsRead: expect.any(Number) }]);
    // The keys asked for: 2 users ('' and u17) x 2 starts x day and month, of which two exist.
    expect(scans[0].rowsRead).toBeLessThanOrEqual(8);
  }, 60_000);

  it("reads a rolling window's hours scope by scope, not every user's hours of the window", async () => {
    const from = new Date(Date.now() - 23 * 3600_000);
    from.setUTCMinutes(0, 0, 0);
    let hours: Awaited<ReturnType<typeof readLimitCheckState>>['hours'] = [];
    const sent = await sentBy(async () => {
      ({ hours } = await readLimitCheckState(db, 'grown', ['u17'], [today], [], from));
    });
    expect(hours).toHaveLength(24);
    expect(new Set(hours.map((h) => h.userId))).toEqual(new Set(['u17']));
    const scans = await scansOf(sent[0], 'hourly_counters');
    expect(scans).toEqual([{ type: 'Index Scan', index: 'hourly_counters_pkey', condition: expect.stringContaining('user_id'), rowsRead: expect.any(Number) }]);
    // Two scopes (the account's and u17's) of 24 hours: u17's 24 rows, none of the account's.
    expect(scans[0].rowsRead).toBeLessThanOrEqual(24);
  }, 60_000);
});

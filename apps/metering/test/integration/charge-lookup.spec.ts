import { findChargesByIdempotencyKeys } from '../../src/store/charges.repo';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { databaseTargets, onCitus, requirePostgresInCi, TestDatabase } from '../support/databases';

/**
 * The look-up of used idempotency keys (replays, conflicts) is one probe of the unique index
 * (account_id, idempotency_key) per key, also when the table's statistics are from before the
 * account had charges, as for a new account that grows fast between two ANALYZEs. The join it
 * replaced was planned from such statistics as "read all of the account's charges by
 * account_id": 4.5-8 ms per look-up at 20k charges. The look-up's very text and values are run
 * again under EXPLAIN ANALYZE: it read at most one charge per key.
 */
requirePostgresInCi();

const describeUnlessCitus = onCitus() ? describe.skip : describe;

describeUnlessCitus.each(databaseTargets())('used keys are looked up by the unique index on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;

  /** Charges of one account straight into the table (no rollups: only the look-up reads them). */
  const insertCharges = (accountId: string, count: number) =>
    db.raw(
      `INSERT INTO charges (account_id, charge_id, idempotency_key, user_id, provider, model, charge_type, request_type, prompt_tokens, completion_tokens,
              reasoning_tokens, cached_prompt_tokens, cache_write_tokens, total_tokens, usage_time, usage_time_supplied, usage_date, pricing_status)
       SELECT ?, gen_random_uuid(), 'key-' || g, 'u' || (g % 100), 'openai', 'gpt-4o', 'completion', 'chat', 1000, 200, 0, 0, 0, 1200, now(), true, current_date, 'unpriced'
         FROM generate_series(1, ?::int) g`,
      [accountId, count],
    );

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
    await migrate(db);
    // Statistics taken while another account had all the charges, then a new account grows.
    await insertCharges('early', 200);
    await db.raw('ANALYZE charges');
    await insertCharges('grown', 20_000);
  }, 120_000);

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  it('probes the unique index for each key and finds the stored charges', async () => {
    const sent: Array<{ sql: string; bindings: unknown[] }> = [];
    const listener = (q: { sql: string; bindings: unknown[] }) => sent.push(q);
    db.on('query', listener);
    let found;
    try {
      found = await findChargesByIdempotencyKeys(db, [
        { accountId: 'grown', idempotencyKey: 'key-7' },
        { accountId: 'grown', idempotencyKey: 'key-19999' },
        { accountId: 'grown', idempotencyKey: 'never-used' },
      ]);
    } finally {
      db.off('query', listener);
    }
    expect(found.map((c) => c.idempotencyKey).sort()).toEqual(['key-19999', 'key-7']);
    expect(sent).toHaveLength(1);
    // The same text and values, executed under EXPLAIN ANALYZE: what each scan of charges read.
    const { rows } = await db.raw(`EXPLAIN (ANALYZE, FORMAT JSON) ${sent[0].sql.replace(/\$\d+/g, '?')}`, sent[0].bindings);
    const scans: Array<{ type: string; index: string; condition: string; rowsRead: number }> = [];
    const walk = (node: Record<string, number & string & Array<Record<string, unknown>>>) => {
      if (node['Relation Name'] === 'charges') {
        const rowsRead = node['Actual Rows'] * node['Actual Loops'] + (node['Rows Removed by Filter'] ?? 0) + (node['Rows Removed by Index Recheck'] ?? 0);
        scans.push({ type: node['Node Type'], index: node['Index Name'], condition: node['Index Cond'], rowsRead });
      }
      for (const child of node.Plans ?? []) walk(child as never);
    };
    walk((rows[0]['QUERY PLAN'] as Array<{ Plan: never }>)[0].Plan);
    // Actual Rows is a mean per loop (one loop per key), rounded by Postgres: at most one row per key.
    expect(scans).toEqual([{ type: 'Index Scan', index: 'charges_idempotency_key', condition: expect.stringContaining('idempotency_key'), rowsRead: expect.any(Number) }]);
    expect(scans[0].rowsRead).toBeLessThanOrEqual(3);
  }, 60_000);
});

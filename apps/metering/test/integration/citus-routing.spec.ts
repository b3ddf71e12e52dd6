import { ReservationEstimate } from '@metering/contracts';
import { PriceTable } from '@metering/pricing';
import pg from 'pg';
import { AccountsService } from '../../src/services/accounts.service';
import { ChargesService } from '../../src/services/charges.service';
import { FIND_CHARGES_BY_KEY } from '../../src/store/charges.repo';
import { DimensionsService } from '../../src/services/dimensions.service';
import { CreditsService } from '../../src/services/credits.service';
import { LimitsService } from '../../src/services/limits.service';
import { MarkupsService } from '../../src/services/markups.service';
import { PricingService } from '../../src/services/pricing.service';
import { ReservationsService } from '../../src/services/reservations.service';
import { claimDue } from '../../src/store/alerts.repo';
import { DISTRIBUTED_TABLES, LOCAL_TABLES, REFERENCE_TABLES } from '../../src/store/citus';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { PLANNED_ONCE_READS } from '../../src/store/planned-once-reads';
import { databaseTargets, describeEachOf, onCitus, requirePostgresInCi, TestDatabase } from '../support/databases';
import { chargeRequest, checkRequest } from '../support/requests';

/**
 * The guard of the Citus layout that runs without Citus (docs/scaling.md, section 4): on plain
 * Postgres, every statement the write path and the sweeps send is run through EXPLAIN with its
 * parameters, and every scan of a distributed table in its plan must filter on account_id
 * equality with a constant (a parameter): on a cluster distributed by account_id that is what
 * routes a statement to one shard. A statement that reads a distributed table by a join, by
 * `account_id = ANY(...)` or not at all by account fans out to every shard there (and Citus
 * refuses row locks across shards). Inserts route by their rows' values and are not checked.
 *
 * The statements that do not route yet are listed in NOT_ROUTED (what each is, why): the test
 * fails on any other, so a new statement must route or be added there with its reason.
 */
requirePostgresInCi();

/**
 * Statements known to span shards on Citus (by the first words of their text), with why: none
 * now. The ledger's apply statement and the batch idempotency lookup were here until they took the
 * batch's accounts as a parameter (account_id = ANY($accounts)).
 */
const NOT_ROUTED: Record<string, string> = {};

/**
 * Statements sent on plain Postgres (and PGlite) only, by their first words, with the form sent on
 * Citus instead (which this guard checks when it runs on a cluster).
 */
const PLAIN_POSTGRES_ONLY: Record<string, string> = {
  [FIND_CHARGES_BY_KEY]:
    'the look-up of used idempotency keys by the whole unique key (a lateral subquery, robust to stale statistics); on Citus a join filtered on account_id = ANY($accounts)',
};

/**
 * Reads that span accounts on purpose: the sweeps' first step, which finds the due accounts
 * without taking a lock (a multi-shard read, allowed on Citus); each account is then locked and
 * written by statements filtered on its account_id.
 */
const SPANS_ON_PURPOSE = [
  'select distinct "account_id" from "reservations"',
  'SELECT DISTINCT account_id FROM credit_grants',
  'SELECT account_id FROM webhook_deliveries',
];

/**
 * Whether `text` (a plan node's condition) compares account_id with one constant or parameter
 * (Postgres shows `account_id = ANY ('{x}'::text[])` for a one-element array, which Citus prunes to one shard).
 */
const filtersAccount = (text: string): boolean =>
  /\baccount_id = (\$\d+|'(?:[^']|'')*'(::text)?)\)?/.test(text) ||
  /\(('(?:[^']|'')*'(::text)?|\$\d+) = (\w+\.)?account_id\)/.test(text) ||
  /\baccount_id = ANY \('\{[^,}]*\}'::text\[\]\)/.test(text);

interface PlanNode {
  'Node Type': string;
  Operation?: string;
  'Relation Name'?: string;
  'Index Cond'?: string;
  'Recheck Cond'?: string;
  Filter?: string;
  Plans?: PlanNode[];
}

/** The scans of distributed tables in a plan that do not filter on account_id equality. */
function unrouted(node: PlanNode, out: string[] = []): string[] {
  const rel = node['Relation Name'];
  const isModify = node['Node Type'] === 'ModifyTable';
  if (rel && (DISTRIBUTED_TABLES as readonly string[]).includes(rel) && !(isModify && node.Operation === 'Insert')) {
    const conds = [node['Index Cond'], node['Recheck Cond'], node.Filter].filter((c): c is string => Boolean(c));
    // A ModifyTable (UPDATE/DELETE) is routed when the scan under it is.
    if (!isModify && !conds.some(filtersAccount)) out.push(`${node['Node Type']} on ${rel}${conds.length ? ` (${conds.join('; ')})` : ''}`);
  }
  for (const p of node.Plans ?? []) unrouted(p, out);
  return out;
}

describeEachOf(
  databaseTargets().filter((t) => t.name === 'postgres' && !onCitus()),
  'plain Postgres (METERING_TEST_DATABASE_URL, without METERING_TEST_CITUS_URL)',
)('statements route to one account on $name (the Citus guard)', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  let explainer: pg.Client;
  const now = new Date();
  const clock = () => now;

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
    await migrate(db);
    explainer = new pg.Client({ connectionString: tdb.config.url });
    await explainer.connect();
  });

  afterAll(async () => {
    await explainer?.end();
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  it('lists every table of the schema in exactly one of the Citus lists (a new table must be placed)', async () => {
    const { rows } = await db.raw(`SELECT relname FROM pg_class WHERE relnamespace = 'public'::regnamespace AND relkind IN ('r', 'p') ORDER BY 1`);
    const listed = [...DISTRIBUTED_TABLES, ...REFERENCE_TABLES, ...LOCAL_TABLES] as string[];
    expect(new Set(listed).size).toBe(listed.length);
    expect((rows as Array<{ relname: string }>).map((r) => r.relname)).toEqual([...listed].sort());
  });

  it('filters every scan of a distributed table on account_id equality in the write path and the sweeps, except the statements listed as not routed yet', async () => {
    const pricing = new PricingService(db, new PriceTable(), clock);
    const charges = new ChargesService(db, pricing, clock);
    const limits = new LimitsService(db, pricing, clock);
    const reservations = new ReservationsService(db, clock);
    const credits = new CreditsService(db, clock);
    const accounts = new AccountsService(db, clock);
    const markups = new MarkupsService(db);
    const a = 'routed';
    const sent: Array<{ sql: string; bindings: unknown[] }> = [];
    const listener = (q: { sql: string; bindings?: unknown[] }) => sent.push({ sql: q.sql, bindings: q.bindings ?? [] });
    db.on('query', listener);
    try {
      await accounts.setAccount({ accountId: a, timeZone: 'Europe/Paris' });
      await limits.putLimit({ accountId: a, userId: '', period: 1, measure: 3, enforcement: 1, amount: '100' });
      await markups.setMarkup({ accountId: a, provider: 'openai', model: 'gpt-4o', chargeType: 2, factor: '1.5', actor: 'ops' });
      await charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'one' }));
      await charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'one' }));
      await charges.recordCharges(Array.from({ length: 10 }, (_, n) => chargeRequest({ accountId: a, userId: `u${n % 3}`, idempotencyKey: `b${n}` })));
      await limits.checkLimits(checkRequest({ accountId: a }));
      const estimate = ReservationEstimate.fromPartial({ provider: 'openai', model: 'gpt-4o', chargeType: 0, promptTokens: '10', completionTokens: '20', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0' });
      const held = await limits.checkLimits(checkRequest({ accountId: a, reserve: true, idempotencyKey: 'r1', estimate }));
      await charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'settle', reservationId: held.reservation?.reservationId }));
      const second = await limits.checkLimits(checkRequest({ accountId: a, reserve: true, idempotencyKey: 'r2', estimate }));
      await reservations.release({ accountId: a, reservationId: second.reservation?.reservationId ?? '' });
      await credits.createGrant({ accountId: a, idempotencyKey: 'g', userId: '', kind: 0, amount: { amount: '100', currencyCode: 'USD' }, priority: 0, reason: '', actor: '' });
      await charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'credited' }));
      await limits.checkLimits(checkRequest({ accountId: a, reserve: true, idempotencyKey: 'r3', holdSeconds: 1 }));
      await reservations.expireAllDue();
      await credits.expireAllDue();
      await claimDue(db, now, 30_000, 10);
      // Declared dimensions: the charge insert that admits new values (one refused past the limit of 1), the dimension rollups.
      await new DimensionsService(db, clock).setDimensions({ accountId: 'routed-dims', tagKeys: ['feature'], maxValuesPerDay: 1 });
      await charges.recordCharges([chargeRequest({ accountId: 'routed-dims', idempotencyKey: 'd1', tags: { feature: 'a' } }), chargeRequest({ accountId: 'routed-dims', idempotencyKey: 'd2', tags: { feature: 'b' } })]);
      await charges.recordCharge(chargeRequest({ accountId: 'routed-dims', idempotencyKey: 'd3', tags: { feature: 'a' } }));
    } finally {
      db.off('query', listener);
    }
    const findings = new Map<string, string[]>();
    for (const sentStatement of sent) {
      // A read planned once is a function call on plain Postgres (store/db.ts, PlannedOnceRead): its query, as it is sent on Citus, is what is checked.
      const planned = PLANNED_ONCE_READS.find((r) => sentStatement.sql.includes(r.name));
      let n = 0;
      const { sql, bindings } = planned ? { sql: planned.sql.replace(/\?/g, () => `$${++n}`), bindings: planned.bindings(sentStatement.bindings) } : sentStatement;
      if (!/^\s*(WITH|SELECT|INSERT|UPDATE|DELETE)\b/i.test(sql) || /^\s*SELECT\s+(pg_advisory|1\b)/i.test(sql)) continue;
      const { rows } = await explainer.query(`EXPLAIN (FORMAT JSON) ${sql}`, bindings.map((b) => (b instanceof Date ? b.toISOString() : b)) as unknown[]);
      const bad = unrouted((rows[0]['QUERY PLAN'] as Array<{ Plan: PlanNode }>)[0].Plan);
      if (bad.length === 0 || SPANS_ON_PURPOSE.some((s) => sql.trimStart().startsWith(s))) continue;
      if (!onCitus() && Object.keys(PLAIN_POSTGRES_ONLY).some((s) => sql.trimStart().startsWith(s))) continue;
      const known = Object.keys(NOT_ROUTED).find((k) => sql.trimStart().startsWith(k));
      const label = known ?? sql.replace(/\s+/g, ' ').trim().slice(0, 160);
      findings.set(label, [...new Set([...(findings.get(label) ?? []), ...bad])]);
    }
    const unexpected = [...findings.entries()].filter(([label]) => !(label in NOT_ROUTED)).map(([label, bad]) => `${label}\n    ${bad.join('\n    ')}`);
    expect(unexpected).toEqual([]);
    // The list holds only statements that still need it (remove an entry once its statement routes).
    expect([...findings.keys()].filter((l) => l in NOT_ROUTED).sort()).toEqual(Object.keys(NOT_ROUTED).sort());
  });
});

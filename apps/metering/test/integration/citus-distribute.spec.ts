import { PriceTable } from '@metering/pricing';
import { ChargesService } from '../../src/services/charges.service';
import { CreditsService } from '../../src/services/credits.service';
import { LimitsService } from '../../src/services/limits.service';
import { PricingService } from '../../src/services/pricing.service';
import { DISTRIBUTED_TABLES, REFERENCE_TABLES } from '../../src/store/citus';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { migrationSource } from '../../src/store/migrations';
import { expectBalanceIdentity, expectRollupsMatchCharges } from '../support/consistency';
import { CITUS_URL_VAR, databaseTargets, describeEachOf, onCitus, PG_URL_VAR, TestDatabase } from '../support/databases';
import { chargeRequest, checkRequest } from '../support/requests';

/**
 * The migration path to Citus (docs/scaling.md, section 4): an existing database, migrated and
 * written to as on one Postgres, is distributed in place by `npm run migrate -- --citus`
 * (migrate(db, { citus: true })), keeping every row; the service then works on it. Needs a Citus
 * coordinator in METERING_TEST_CITUS_URL (not in CI, which cannot install Citus): skipped without.
 */
describeEachOf(onCitus() ? databaseTargets() : [], `a Citus coordinator: set ${CITUS_URL_VAR} (e.g. postgres://postgres@127.0.0.1:9700/postgres) to run this suite`)(
  'distributing an existing database on a Citus $name cluster',
  (target) => {
    let tdb: TestDatabase;
    let db: Db;
    const now = new Date();
    const clock = () => now;

    beforeAll(async () => {
      tdb = await target.create();
      db = openDatabase(tdb.config);
    });

    afterAll(async () => {
      if (db) await closeDatabase(db);
      await tdb?.drop();
    });

    it('keeps every row, distributes every table, and serves charges, reservations and credits afterwards', async () => {
      // The database as one Postgres had it: migrated (knex alone, no distribution) and written to.
      await db.migrate.latest({ migrationSource });
      const before = async () => {
        const pricing = new PricingService(db, new PriceTable(), clock);
        return { charges: new ChargesService(db, pricing, clock), limits: new LimitsService(db, pricing, clock), credits: new CreditsService(db, clock) };
      };
      let s = await before();
      await s.limits.putLimit({ accountId: 'a1', userId: '', period: 1, measure: 3, enforcement: 1, amount: '100' });
      await s.credits.createGrant({ accountId: 'a2', idempotencyKey: 'g', userId: '', kind: 0, amount: { amount: '100', currencyCode: 'USD' }, priority: 0, reason: '', actor: '' });
      for (const a of ['a1', 'a2', 'a3']) await s.charges.recordCharges(Array.from({ length: 20 }, (_, n) => chargeRequest({ accountId: a, userId: `u${n % 4}`, idempotencyKey: `pre-${n}` })));
      const { rows: counted } = await db.raw('SELECT account_id, count(*)::int AS n FROM charges GROUP BY 1 ORDER BY 1');
      expect(counted).toEqual([{ account_id: 'a1', n: 20 }, { account_id: 'a2', n: 20 }, { account_id: 'a3', n: 20 }]);
      const { rows: none } = await db.raw('SELECT count(*)::int AS n FROM pg_dist_partition');
      expect(none[0].n).toBe(0);

      // `npm run migrate -- --citus`
      await migrate(db, { citus: true });

      const { rows: dist } = await db.raw(`SELECT logicalrelid::regclass::text AS t, partmethod, colocationid, column_to_column_name(logicalrelid, partkey) AS col FROM pg_dist_partition ORDER BY 1`);
      const byTable = new Map((dist as Array<{ t: string; partmethod: string; colocationid: number; col: string | null }>).map((r) => [r.t, r]));
      for (const t of REFERENCE_TABLES) expect(byTable.get(t)?.partmethod).toBe('n');
      const colocation = byTable.get('accounts')?.colocationid;
      for (const t of DISTRIBUTED_TABLES) expect([t, byTable.get(t)?.partmethod, byTable.get(t)?.col, byTable.get(t)?.colocationid]).toEqual([t, 'h', 'account_id', colocation]);
      expect((await db.raw('SELECT account_id, count(*)::int AS n FROM charges GROUP BY 1 ORDER BY 1')).rows).toEqual(counted);
      // Idempotent: a second run distributes nothing more.
      await migrate(db, { citus: true });

      // A new process (fresh caches) on the distributed database.
      s = await before();
      for (const a of ['a1', 'a2', 'a3']) {
        await s.charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'after' }));
        const replay = await s.charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'pre-1', userId: 'u1' }));
        expect(replay.charge.idempotencyKey).toBe('pre-1');
      }
      const held = await s.limits.checkLimits(checkRequest({ accountId: 'a1', reserve: true, idempotencyKey: 'r1', additionalCost: { amount: '1', currencyCode: 'USD' } }));
      expect(held.reservation?.reservationId).toBeTruthy();
      await s.charges.recordCharge(chargeRequest({ accountId: 'a1', idempotencyKey: 'settle', reservationId: held.reservation?.reservationId }));
      expect((await db.raw('SELECT count(*)::int AS n FROM charges')).rows[0].n).toBe(60 + 3 + 1);
      for (const a of ['a1', 'a2', 'a3']) await expectRollupsMatchCharges(db, a);
      await expectBalanceIdentity(db, 'a2');
    });
  },
);

describeEachOf(process.env[PG_URL_VAR] && !onCitus() ? databaseTargets().filter((t) => t.name === 'postgres') : [], `plain Postgres (${PG_URL_VAR})`)(
  'npm run migrate -- --citus on plain $name',
  (target) => {
    it('fails, saying the citus extension is missing, after migrating as usual', async () => {
      const tdb = await target.create();
      const db = openDatabase(tdb.config);
      try {
        await expect(migrate(db, { citus: true })).rejects.toThrow(/citus extension is not installed/);
        expect((await db.raw(`SELECT count(*)::int AS n FROM knex_migrations`)).rows[0].n).toBeGreaterThan(0);
      } finally {
        await closeDatabase(db);
        await tdb.drop();
      }
    });
  },
);

import { ReservationEstimate } from '@metering/contracts';
import { PriceTable } from '@metering/pricing';
import { ChargesService } from '../../src/services/charges.service';
import { parseAllowList } from '@metering/domain';
import { AlertsService } from '../../src/services/alerts.service';
import { CreditsService } from '../../src/services/credits.service';
import { DimensionsService } from '../../src/services/dimensions.service';
import { LimitsService } from '../../src/services/limits.service';
import { PricingService } from '../../src/services/pricing.service';
import { ReservationsService } from '../../src/services/reservations.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { expectBalanceIdentity, expectRollupsMatchCharges } from '../support/consistency';
import { databaseTargets, onCitus, requirePostgresInCi, TestDatabase } from '../support/databases';
import { chargeRequest, checkRequest } from '../support/requests';
import { statementsSentBy } from '../support/statements';

/**
 * The round-trip guard (issue 15): the statements each hot operation sends to
 * the database (BEGIN and COMMIT included), counted from the driver's query
 * events, never timed. A change that adds a round trip to a hot path fails
 * here; one that removes a round trip lowers the number here in the same
 * commit. The counts are after warm-up (the price, markup and settings cache
 * filled), as in a running server.
 */
requirePostgresInCi();

describe.each(databaseTargets())('round trips on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  let charges: ChargesService;
  let limits: LimitsService;
  let reservations: ReservationsService;
  const now = new Date();
  const clock = () => now;

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
    await migrate(db);
    const pricing = new PricingService(db, new PriceTable(), clock);
    charges = new ChargesService(db, pricing, clock);
    limits = new LimitsService(db, pricing, clock);
    reservations = new ReservationsService(db, clock);
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  /** The statements `fn` sends. */
  const statements = async (fn: () => Promise<unknown>): Promise<string[]> => (await statementsSentBy(db, fn)).map((q) => q.sql);
  const count = async (fn: () => Promise<unknown>) => (await statements(fn)).length;

  it('counts the statements of RecordCharge, RecordCharges, CheckLimits (plain, with an estimate, reserving), settle and release', async () => {
    const a = 'trips';
    // Warm-up: the account exists with a limit, and one charge and one check have been served.
    await limits.putLimit({ accountId: a, userId: '', period: 1, measure: 3, enforcement: 1, amount: '100' });
    await charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'warm' }));
    await limits.checkLimits(checkRequest({ accountId: a }));
    const estimate = ReservationEstimate.fromPartial({ provider: 'openai', model: 'gpt-4o', chargeType: 0, promptTokens: '10', completionTokens: '20', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0' });

    await limits.checkLimits(checkRequest({ accountId: a, estimate }));
    const held = await limits.checkLimits(checkRequest({ accountId: a, reserve: true, idempotencyKey: 'warm-r', estimate }));
    await charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'warm-s', reservationId: held.reservation?.reservationId }));

    let reservationId = '';
    const counts = {
      recordCharge: await count(() => charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'one' }))),
      recordChargeReplay: await count(() => charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'one' }))),
      recordCharges100: await count(() => charges.recordCharges(Array.from({ length: 100 }, (_, n) => chargeRequest({ accountId: a, userId: `u${n % 10}`, idempotencyKey: `b${n}` })))),
      // One key of the batch already used: the one statement writes nothing, the used key is looked up, the others are written.
      recordCharges100OneUsed: await count(() => charges.recordCharges(Array.from({ length: 100 }, (_, n) => chargeRequest({ accountId: a, userId: `u${n % 10}`, idempotencyKey: n ? `c${n}` : 'one' })))),
      // ImportCharges: half with kept costs (not priced), half priced: the same one transaction.
      importCharges100: await count(() => charges.importCharges(Array.from({ length: 100 }, (_, n) => ({
        charge: chargeRequest({ accountId: a, userId: `u${n % 10}`, idempotencyKey: `django:charge:${n}`, usageTime: { seconds: String(Math.floor(now.getTime() / 1000) - 3600), nanos: 0 } }),
        keptCost: n % 2 ? { promptCost: { amount: '0.001', currencyCode: 'USD' }, completionCost: { amount: '0.002', currencyCode: 'USD' }, markup: '', source: '' } : undefined,
      })))),
      checkLimits: await count(() => limits.checkLimits(checkRequest({ accountId: a }))),
      checkLimitsEstimate: await count(() => limits.checkLimits(checkRequest({ accountId: a, estimate }))),
      reserve: await count(async () => {
        reservationId = (await limits.checkLimits(checkRequest({ accountId: a, reserve: true, idempotencyKey: 'r1' }))).reservation?.reservationId ?? '';
      }),
      settle: await count(() => charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'settle', reservationId }))),
    };
    const second = (await limits.checkLimits(checkRequest({ accountId: a, reserve: true, idempotencyKey: 'r2' }))).reservation?.reservationId ?? '';
    Object.assign(counts, { release: await count(() => reservations.release({ accountId: a, reservationId: second })) });
    // New charges are one statement, a lone charge's replay two (that statement, which writes
    // nothing, and the stored charge's lookup), a batch with a used key three (that statement, the
    // lookup, the statement for the others); on Citus all go through the transaction.
    expect(counts).toEqual({
      recordCharge: onCitus() ? 4 : 1,
      recordChargeReplay: onCitus() ? 4 : 2,
      recordCharges100: onCitus() ? 4 : 1,
      recordCharges100OneUsed: onCitus() ? 5 : 3,
      importCharges100: onCitus() ? 4 : 1,
      checkLimits: 1,
      checkLimitsEstimate: 1,
      reserve: 7,
      settle: 5,
      release: 4,
    });
    await expectRollupsMatchCharges(db, a);
  });

  it('looks the keys of a batch up first once batches keep meeting used keys (replays): two statements instead of three, every answer the same', async () => {
    const a = 'trips-replays';
    const service = new ChargesService(db, new PricingService(db, new PriceTable(), clock), clock);
    const batch = (n: number) => Array.from({ length: 10 }, (_, i) => chargeRequest({ accountId: a, userId: `u${i}`, idempotencyKey: `r${n * 10 + i}` }));
    await service.recordCharges(batch(0));
    const answers: unknown[] = [];
    const counts: number[] = [];
    // Each batch replays a charge of the previous one and brings nine new ones.
    for (let n = 1; n <= 5; n++) {
      const calls = [batch(n - 1)[1], ...batch(n).slice(1)];
      counts.push(await count(async () => answers.push((await service.recordCharges(calls)).map((r) => ('replayed' in r ? r.replayed : r.code)))));
    }
    // Three statements (the one statement, the lookup, the statement again) until the share of such batches passes a quarter.
    expect(counts).toEqual(onCitus() ? [5, 5, 5, 5, 5] : [3, 3, 3, 2, 2]);
    expect(answers).toEqual(Array.from({ length: 5 }, () => [true, ...Array.from({ length: 9 }, () => false)]));
    await expectRollupsMatchCharges(db, a);
  });

  it('counts the statements of the same operations for an account with credits (issue 16): one lock of its grants more (their writes are part of the one apply statement)', async () => {
    const a = 'trips-credits';
    const credits = new CreditsService(db, clock);
    await credits.createGrant({ accountId: a, idempotencyKey: 'g', userId: '', kind: 0, amount: { amount: '100', currencyCode: 'USD' }, priority: 0, reason: '', actor: '' });
    await charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'warm' }));
    await limits.checkLimits(checkRequest({ accountId: a }));
    const cost = { amount: '0.01', currencyCode: 'USD' };
    const held = await limits.checkLimits(checkRequest({ accountId: a, reserve: true, idempotencyKey: 'warm-r', additionalCost: cost }));
    await charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'warm-s', reservationId: held.reservation?.reservationId }));

    let reservationId = '';
    const counts = {
      recordCharge: await count(() => charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'one' }))),
      recordCharges100: await count(() => charges.recordCharges(Array.from({ length: 100 }, (_, n) => chargeRequest({ accountId: a, userId: `u${n % 10}`, idempotencyKey: `b${n}` })))),
      checkLimits: await count(() => limits.checkLimits(checkRequest({ accountId: a, additionalCost: cost }))),
      reserve: await count(async () => {
        reservationId = (await limits.checkLimits(checkRequest({ accountId: a, reserve: true, idempotencyKey: 'r1', additionalCost: cost }))).reservation?.reservationId ?? '';
      }),
      settle: await count(() => charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'settle', reservationId }))),
    };
    const second = (await limits.checkLimits(checkRequest({ accountId: a, reserve: true, idempotencyKey: 'r2', additionalCost: cost }))).reservation?.reservationId ?? '';
    Object.assign(counts, { release: await count(() => reservations.release({ accountId: a, reservationId: second })) });
    expect(counts).toEqual({
      recordCharge: 5,
      recordCharges100: 5,
      checkLimits: 1,
      reserve: 8,
      settle: 6,
      release: 5,
    });
    await expectRollupsMatchCharges(db, a);
    await expectBalanceIdentity(db, a);
  });

  it('counts the same statements for an account with balance alert rules, and one more (the events with their deliveries) only for the change that crosses an amount', async () => {
    const a = 'trips-balance-alerts';
    const credits = new CreditsService(db, clock);
    const alerts = new AlertsService(db, parseAllowList('127.0.0.1'), clock);
    await credits.createGrant({ accountId: a, idempotencyKey: 'g', userId: '', kind: 0, amount: { amount: '1', currencyCode: 'USD' }, priority: 0, reason: '', actor: '' });
    await alerts.createEndpoint({ accountId: a, endpointId: '', url: 'http://127.0.0.1:9/hook', description: '', enabled: true, eventTypes: [], format: 0 });
    await alerts.createRule({ accountId: a, ruleId: '', description: '', kind: 3, balance: { amounts: [{ amount: '0.99', currencyCode: 'USD' }] } });
    await charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'warm' }));
    const available = async () => (await credits.getBalance({ accountId: a, userId: '' })).available;
    expect((await available()).greaterThanOrEqualTo('0.99')).toBe(true);
    const quiet = await count(() => charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'one' })));
    expect((await available()).greaterThanOrEqualTo('0.99')).toBe(true);
    const crossing = await count(() => charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'big', promptTokens: '10000' })));
    expect((await available()).lessThan('0.99')).toBe(true);
    const below = await count(() => charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'after' })));
    expect({ quiet, crossing, below }).toEqual({ quiet: 5, crossing: 6, below: 5 });
    // The crossing was told once, with one delivery to the endpoint.
    expect((await db('charge_events').where({ account_id: a, kind: 'alert_triggered' })).length).toBe(1);
    expect((await db('webhook_deliveries').where({ account_id: a })).map((r: { event_type: string }) => r.event_type)).toEqual(['alert.triggered']);
    await expectBalanceIdentity(db, a);
  });

  it('counts the same statements for an account with declared dimensions (issue 20): its dimension rollups are part of the one apply statement', async () => {
    const a = 'trips-dims';
    await new DimensionsService(db, clock).setDimensions({ accountId: a, tagKeys: ['feature', 'env', 'customer'] });
    const tags = (n: number) => ({ feature: `f${n % 3}`, env: n % 2 ? 'prod' : 'dev', customer: `c${n % 7}`, undeclared: 'x' });
    await charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'warm', tags: tags(0) }));
    await limits.checkLimits(checkRequest({ accountId: a }));
    const counts = {
      recordCharge: await count(() => charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'one', tags: tags(1) }))),
      recordCharges100: await count(() => charges.recordCharges(Array.from({ length: 100 }, (_, n) => chargeRequest({ accountId: a, userId: `u${n % 10}`, idempotencyKey: `b${n}`, tags: tags(n) })))),
    };
    // A lone charge whose values are admitted already (the warm-up's) is one statement; new values go through the transaction.
    expect(counts).toEqual({ recordCharge: 4, recordCharges100: 4 });
    expect(Number((await db('dimension_usage').where({ account_id: a }).count<{ n: string }[]>('* as n'))[0].n)).toBeGreaterThan(1);
    await expectRollupsMatchCharges(db, a);
  });

  it('keeps the settings cache exact across replicas: a price, markup or time zone changed by another process is used by the next charge', async () => {
    const a = 'replicas';
    // Another server process on the same database: its own services and caches.
    const otherPricing = new PricingService(db, new PriceTable(), clock);
    const rates = (input: string, output: string) => ({ inputPerMillion: input, outputPerMillion: output, cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '', reasoningPerMillion: '', perCall: '', longContext: undefined });
    const setPrice = (from: string, input: string, output: string) =>
      otherPricing.setPrice({ accountId: '', provider: 'selfhosted', model: 'cache-test', effectiveTime: { seconds: String(Date.parse(from) / 1000), nanos: 0 }, rates: rates(input, output), source: 'test', actor: 'ops@example.com' });
    const record = (key: string) =>
      charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: key, provider: 'selfhosted', model: 'cache-test', promptTokens: '1000000', completionTokens: '1000000' }));
    await setPrice('2026-01-01T00:00:00Z', '1', '2');
    expect((await record('c1')).charge.costs?.totalCost).toBe('3');
    expect(await count(() => record('c2'))).toBe(onCitus() ? 4 : 1); // cached
    await setPrice('2026-02-01T00:00:00Z', '10', '20');
    const changed = await statements(() => record('c3'));
    expect(changed.length).toBeGreaterThan(onCitus() ? 4 : 1); // the epoch check failed, the cache was dropped and the write ran again
    expect((await db('charges').where({ account_id: a, idempotency_key: 'c3' }).first()).total_cost).toMatch(/^30(\.0+)?$/);
    // A markup and a time zone changed by hand in SQL (no service involved) are seen too.
    // On Citus the settings tables have no epoch triggers (docs/scaling.md): SQL by hand moves the epoch itself.
    const byHand = async (sql: () => Promise<unknown>) => {
      await sql();
      if (onCitus()) await db.raw('UPDATE settings_epoch SET epoch = epoch + 1');
    };
    await byHand(() => db('markups').insert({ account_id: a, provider: 'selfhosted', model: 'cache-test', charge_type: 'completion', factor: '2', updated_by: 'sql' }));
    expect((await record('c4')).charge.costs?.totalCost).toBe('60');
    await byHand(() => db('accounts').insert({ account_id: a, time_zone: 'Pacific/Kiritimati' }).onConflict('account_id').merge());
    expect((await record('c5')).charge.usageDate).toBe(new Intl.DateTimeFormat('en-CA', { timeZone: 'Pacific/Kiritimati' }).format(now));
    await expectRollupsMatchCharges(db, a);
  });
});

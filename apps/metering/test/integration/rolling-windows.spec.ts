import { RecordChargeRequest } from '@metering/contracts';
import { CheckLimitsRequestInput, DomainError, ValidationError } from '@metering/domain';
import { PriceTable } from '@metering/pricing';
import { ChargesService } from '../../src/services/charges.service';
import { DimensionsService } from '../../src/services/dimensions.service';
import { LimitsService } from '../../src/services/limits.service';
import { PricingService } from '../../src/services/pricing.service';
import { ReservationsService } from '../../src/services/reservations.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { migrationSource } from '../../src/store/migrations';
import { expectRollupsMatchCharges } from '../support/consistency';
import { queuedBehind } from '../support/lock-waits';
import { gpt4oCost } from '../support/costing';
import { databaseTargets, onCitus, requirePostgresInCi, TestDatabase } from '../support/databases';
import { chargeRequest, checkRequest } from '../support/requests';

/**
 * Issue 20, rolling windows, on the embedded database and on Postgres, with the
 * services' clock set by the test: a limit over the last N whole hours admits
 * and refuses at the right hours, says when enough usage ages out, holds and
 * frees reservations in the hour they were placed, and the hourly counters
 * equal the sums of the charges and open holds per hour and scope.
 */
requirePostgresInCi();

const ROLLING = 3;
const MEASURE = { messages: 1, tokens: 2, cost: 3 } as const;

describe.each(databaseTargets())('rolling windows on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  // The clock every service reads; each test sets it.
  let now = new Date('2026-12-07T10:15:00Z');
  const clock = () => now;
  let charges: ChargesService;
  let limits: LimitsService;
  let reservations: ReservationsService;
  let dimensions: DimensionsService;

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
    await migrate(db);
    const pricing = new PricingService(db, new PriceTable(), clock);
    charges = new ChargesService(db, pricing, clock);
    limits = new LimitsService(db, pricing, clock);
    reservations = new ReservationsService(db, clock);
    dimensions = new DimensionsService(db, clock);
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  const at = (iso: string) => {
    now = new Date(iso);
  };
  const put = (accountId: string, measure: keyof typeof MEASURE, amount: string, windowHours: number, scope: { tagKey?: string; tagValue?: string } = {}) =>
    limits.putLimit({ accountId, userId: '', ...scope, period: ROLLING, windowHours, measure: MEASURE[measure], enforcement: 1, amount });
  const charge = (accountId: string, key: string, over: Partial<RecordChargeRequest> = {}) => charges.recordCharge(chargeRequest({ accountId, idempotencyKey: key, ...over }));
  const check = (accountId: string, over: Partial<CheckLimitsRequestInput> = {}) => limits.checkLimits({ ...checkRequest({ accountId }), ...over });
  const failure = async (p: Promise<unknown>): Promise<DomainError> => {
    try {
      await p;
    } catch (e) {
      if (e instanceof DomainError) return e;
      throw e;
    }
    throw new Error('expected a domain error');
  };

  it('admits and refuses at the right hours, and says when enough usage ages out', async () => {
    const a = 'roll-msgs';
    await put(a, 'messages', '3', 5);
    at('2026-12-07T10:15:00Z');
    await charge(a, 'c1');
    at('2026-12-07T11:40:00Z');
    await charge(a, 'c2');
    at('2026-12-07T12:05:00Z');
    expect(await check(a)).toMatchObject({ allowed: true, limits: [{ period: 'rolling', windowHours: 5, used: '2', remaining: '1', periodStart: '2026-12-07T08:00:00.000Z' }] });
    await charge(a, 'c3');
    // Three in the window of 08:00 to 12:59: refused until the 10:00 hour leaves it, at 15:00.
    const denied = await check(a);
    expect(denied).toMatchObject({ allowed: false, reason: 'message_limit_reached', message: 'Account 5-hour message limit reached (3)' });
    expect(denied.allowedAt?.toISOString()).toBe('2026-12-07T15:00:00.000Z');
    expect(denied.limits[0].allowedAt?.toISOString()).toBe('2026-12-07T15:00:00.000Z');
    at('2026-12-07T14:59:59Z');
    expect(await check(a)).toMatchObject({ allowed: false, allowedAt: new Date('2026-12-07T15:00:00Z') });
    at('2026-12-07T15:00:00Z');
    expect(await check(a)).toMatchObject({ allowed: true, limits: [{ used: '2', periodStart: '2026-12-07T11:00:00.000Z' }] });
    expect((await check(a)).allowedAt).toBeUndefined();
    // At 16:40 only the 12:05 charge is left; at 17:00 none.
    at('2026-12-07T16:40:00Z');
    expect((await check(a)).limits[0].used).toBe('1');
    at('2026-12-07T17:00:00Z');
    expect((await check(a)).limits[0].used).toBe('0');
    await expectRollupsMatchCharges(db, a);
  });

  it('holds reservations in their hour, frees them when settled, released or expired, and refuses what would overshoot the window', async () => {
    const a = 'roll-cost';
    await dimensions.setDimensions({ accountId: a, tagKeys: ['feature'] });
    const one = gpt4oCost({ promptTokens: 100, completionTokens: 200 });
    // Room for two default charges in any 3 hours of the summarize feature.
    await put(a, 'cost', one.times(2).toFixed(), 3, { tagKey: 'feature', tagValue: 'summarize' });
    const tagged = { tags: { feature: 'summarize' } };
    const reserve = (key: string, over: Partial<CheckLimitsRequestInput> = {}) =>
      limits.checkLimits({ ...checkRequest({ accountId: a, reserve: true, idempotencyKey: key, ...tagged, additionalCost: { amount: one.toFixed(), currencyCode: 'USD' } }), ...over });
    at('2026-12-07T20:30:00Z');
    const r1 = await reserve('r1', { holdSeconds: 3 * 3600 });
    expect(r1.allowed).toBe(true);
    at('2026-12-07T21:10:00Z');
    const r2 = await reserve('r2', { holdSeconds: 60 });
    expect(r2.allowed).toBe(true);
    const r3 = await reserve('r3');
    expect(r3).toMatchObject({ allowed: false, reason: 'cost_limit_exceeded', message: `Tag feature=summarize 3-hour cost limit reached (${one.times(2).toFixed()} USD)` });
    // The 20:00 hour leaves the 3-hour window at 23:00.
    expect(r3.allowedAt?.toISOString()).toBe('2026-12-07T23:00:00.000Z');
    // Untagged calls are not limited by it.
    expect(await reserve('u1', { tags: {} })).toMatchObject({ allowed: true });
    await expectRollupsMatchCharges(db, a);
    // r1 settles (its hold leaves 20:00; the usage counts at 21:15), r2 expires at 21:11.
    at('2026-12-07T21:15:00Z');
    await charge(a, 'c1', { reservationId: r1.reservation!.reservationId, ...tagged });
    at('2026-12-07T21:12:00Z');
    expect(await reservations.expireAllDue()).toBe(1);
    await expectRollupsMatchCharges(db, a);
    at('2026-12-07T21:20:00Z');
    expect(await reserve('r4')).toMatchObject({ allowed: true });
    expect(await reserve('r5')).toMatchObject({ allowed: false, allowedAt: new Date('2026-12-08T00:00:00Z') });
    await reservations.release({ accountId: a, reservationId: (await reserve('r4')).reservation!.reservationId });
    expect(await reserve('r6')).toMatchObject({ allowed: true });
    await expectRollupsMatchCharges(db, a);
  });

  const hourRows = async (accountId: string) => (await db('hourly_counters').where({ account_id: accountId }).count<Array<{ count: string }>>('* as count'))[0].count;
  const timestamp = (iso: string) => ({ seconds: String(new Date(iso).getTime() / 1000), nanos: 0 });

  it('keeps usage hours only for accounts with a rolling limit, and fills them from the charges and holds when the first one is put', async () => {
    const a = 'roll-late';
    await dimensions.setDimensions({ accountId: a, tagKeys: ['feature'] });
    at('2026-12-07T10:15:00Z');
    // Usage before any rolling limit: 33 days ago (older than any window), 30 hours ago (tagged), 2 hours ago, now.
    await charge(a, 'old', { usageTime: timestamp('2026-11-04T10:00:00Z') });
    await charge(a, 'c1', { usageTime: timestamp('2026-12-06T04:20:00Z'), tags: { feature: 'summarize' } });
    await charge(a, 'c2', { usageTime: timestamp('2026-12-07T08:15:00Z') });
    await charge(a, 'c3');
    at('2026-12-07T09:30:00Z');
    const held = await check(a, { reserve: true, idempotencyKey: 'r1', holdSeconds: 7200, tags: { feature: 'summarize' } });
    expect(held.reservation?.reservationId).toBeTruthy();
    at('2026-12-07T10:15:00Z');
    // No rolling limit, no hours: nothing reads them.
    expect(await hourRows(a)).toBe('0');
    await charge('roll-none', 'n1');
    expect(await hourRows('roll-none')).toBe('0');
    await expectRollupsMatchCharges(db, 'roll-none');

    await put(a, 'messages', '10', 3);
    // The 3 hours 08:00-10:59: c2 and c3 used, the reservation placed at 09:30 held.
    expect(await check(a)).toMatchObject({ limits: [{ period: 'rolling', windowHours: 3, used: '2', reserved: '1' }] });
    await put(a, 'messages', '10', 48, { tagKey: 'feature', tagValue: 'summarize' });
    expect(await check(a, { tags: { feature: 'summarize' } })).toMatchObject({
      limits: expect.arrayContaining([expect.objectContaining({ windowHours: 48, scope: 'tag', tagValue: 'summarize', used: '1', reserved: '1' })]),
    });
    // Every hour from the first kept (the longest window and one more hour back) equals the charges and holds; none before.
    await expectRollupsMatchCharges(db, a);
    const [{ since }] = await db('hour_tracking').where({ account_id: a }).select('since');
    expect(new Date(since).toISOString()).toBe('2026-11-06T10:00:00.000Z');
    expect(await db('hourly_counters').where({ account_id: a }).andWhere('hour_start', '<', since)).toEqual([]);
    // Later usage moves the kept hours as it always did; usage recorded late for an hour before the first kept moves none.
    await charge(a, 'c4', { tags: { feature: 'summarize' } });
    await charge(a, 'late', { usageTime: timestamp('2026-11-05T23:30:00Z') });
    expect(await db('hourly_counters').where({ account_id: a }).andWhere('hour_start', '<', since)).toEqual([]);
    await reservations.release({ accountId: a, reservationId: held.reservation!.reservationId });
    await expectRollupsMatchCharges(db, a);
    expect(await check(a)).toMatchObject({ limits: [{ windowHours: 3, used: '3', reserved: '0' }] });
  });

  it('loses no charge recorded while the first rolling limit is put', async () => {
    const a = 'roll-race';
    await Promise.all([
      ...Array.from({ length: 30 }, (_, i) => charge(a, `before-${i}`)),
      put(a, 'tokens', '100000000', 24),
      ...Array.from({ length: 30 }, (_, i) => charge(a, `after-${i}`)),
      charges.recordCharges(Array.from({ length: 20 }, (_, i) => chargeRequest({ accountId: a, idempotencyKey: `batch-${i}` }))),
    ]);
    await expectRollupsMatchCharges(db, a);
    expect(await check(a)).toMatchObject({ limits: [{ windowHours: 24, used: String(80 * 300) }] });
  });

  const limitKey = (accountId: string, measure: keyof typeof MEASURE, period = ROLLING) => ({ accountId, userId: '', period, measure: MEASURE[measure], enforcement: 1 });
  const listed = async (accountId: string) => (await db('hour_tracking').where({ account_id: accountId })).length === 1;

  it("stops keeping an account's hours when its last rolling limit is deleted, and fills them from the charges again when one is put", async () => {
    const a = 'roll-drop';
    at('2026-12-07T10:15:00Z');
    await put(a, 'messages', '10', 3);
    await put(a, 'tokens', '100000', 24);
    await limits.putLimit({ ...limitKey(a, 'messages', 1), amount: '100' });
    await charge(a, 'c1');
    // One rolling limit left: the account stays listed, its hours kept.
    expect(await limits.deleteLimit(limitKey(a, 'messages'))).toBe(true);
    expect([await listed(a), await hourRows(a)]).toEqual([true, '2']);
    await expectRollupsMatchCharges(db, a);
    // The last one: unlisted, its hours deleted; later charges write none.
    expect(await limits.deleteLimit(limitKey(a, 'tokens'))).toBe(true);
    expect([await listed(a), await hourRows(a)]).toEqual([false, '0']);
    at('2026-12-07T11:05:00Z');
    await charge(a, 'c2');
    expect(await hourRows(a)).toBe('0');
    // Deleting a rolling limit that is not there, or a day limit, changes nothing of it.
    expect(await limits.deleteLimit(limitKey(a, 'tokens'))).toBe(false);
    expect(await limits.deleteLimit(limitKey(a, 'messages', 1))).toBe(true);
    await expectRollupsMatchCharges(db, a);
    // Put again: listed and filled from the charges (c1 at 10:15 and c2 at 11:05, both in the last 3 hours).
    await put(a, 'messages', '10', 3);
    expect(await check(a)).toMatchObject({ limits: [{ period: 'rolling', windowHours: 3, used: '2' }] });
    expect(await listed(a)).toBe(true);
    await expectRollupsMatchCharges(db, a);
  });

  it('keeps the hours of a rolling limit put while the last one is deleted, whichever of the two locks the listing first', async () => {
    if (target.name !== 'postgres') return; // one connection on the embedded database: nothing runs concurrently
    const a = 'roll-swap';
    at('2026-12-07T10:15:00Z');
    await put(a, 'messages', '10', 3);
    await charge(a, 'c1');
    // 1. PutLimit first: it share-locks the listing, then waits on its limit's key (a third transaction
    // inserted it); the DeleteLimit of the last rolling limit waits for the listing, then sees the new limit.
    const holder = await db.transaction();
    await holder('limits').insert({ account_id: a, user_id: '', scope: '', period: 'rolling', window_hours: 24, measure: 'tokens', enforcement: 'hard', amount: '1', updated_at: now });
    const [, deleted] = await queuedBehind(db, holder, () => put(a, 'tokens', '100000', 24), () => limits.deleteLimit(limitKey(a, 'messages')));
    expect(deleted).toBe(true);
    expect(await listed(a)).toBe(true);
    await charge(a, 'c2');
    await expectRollupsMatchCharges(db, a);
    // 2. DeleteLimit first: it locks the listing, then waits to delete its limit (a third transaction
    // locked the row); a PutLimit waits for the listing, finds it gone, and lists the account again,
    // its hours filled from the charges.
    const locker = await db.transaction();
    await locker.raw(`SELECT 1 FROM limits WHERE account_id = ? AND period = 'rolling' FOR UPDATE`, [a]);
    const [deleted2] = await queuedBehind(db, locker, () => limits.deleteLimit(limitKey(a, 'tokens')), () => put(a, 'messages', '10', 3));
    expect(deleted2).toBe(true);
    expect(await listed(a)).toBe(true);
    expect(await check(a)).toMatchObject({ limits: [{ windowHours: 3, used: '2' }] });
    await expectRollupsMatchCharges(db, a);
  });

  // Not on Citus: a distributed database is not migrated down (docs/scaling.md).
  (onCitus() ? it.skip : it)('upgrades a database that kept every account\'s hours: the accounts with a rolling limit keep theirs, the others\' are deleted', async () => {
    await db.migrate.down({ migrationSource });
    expect(await db.schema.hasTable('hour_tracking')).toBe(false);
    const hour = (iso: string, accountId: string, userId: string) => ({ account_id: accountId, hour_start: new Date(iso), user_id: userId, scope: '', message_count: 1, updated_at: new Date(iso) });
    await db('limits').insert({ account_id: 'up-rolling', user_id: '', scope: '', period: 'rolling', window_hours: 24, measure: 'messages', enforcement: 'hard', amount: '10', updated_at: now });
    await db('hourly_counters').insert([hour('2026-12-05T03:00:00Z', 'up-rolling', ''), hour('2026-12-06T04:00:00Z', 'up-rolling', 'u1'), hour('2026-12-06T04:00:00Z', 'up-plain', '')]);
    await migrate(db);
    expect((await db('hour_tracking').whereIn('account_id', ['up-rolling', 'up-plain']).select('account_id', 'since')).map((r) => [r.account_id, new Date(r.since).toISOString()])).toEqual([
      ['up-rolling', '2026-12-05T03:00:00.000Z'],
    ]);
    expect(await db('hourly_counters').whereIn('account_id', ['up-rolling', 'up-plain']).orderBy(['account_id', 'hour_start']).pluck('account_id')).toEqual(['up-rolling', 'up-rolling']);
  });

  it('refuses a window that is not 1 to 744 whole hours, and a window on a calendar period, writing nothing', async () => {
    const a = 'roll-bad';
    for (const [period, windowHours] of [[ROLLING, 0], [ROLLING, 745], [ROLLING, -1], [ROLLING, 1.5], [1, 5]]) {
      const e = await failure(limits.putLimit({ accountId: a, userId: '', period, windowHours, measure: 1, enforcement: 1, amount: '1' }));
      expect([e.code, (e as ValidationError).violations.map((v) => v.field)]).toEqual(['INVALID_ARGUMENT', ['window_hours']]);
    }
    expect(await db('limits').where({ account_id: a })).toEqual([]);
    await put(a, 'tokens', '1000', 744);
    expect((await limits.listLimits({ accountId: a, userId: '', pageSize: 0, pageToken: '' })).limits).toEqual([
      expect.objectContaining({ limit: expect.objectContaining({ period: 'rolling', windowHours: 744 }), used: '0', exceeded: false }),
    ]);
  });
});

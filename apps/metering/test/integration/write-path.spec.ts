import { DomainError, hoursKeptFrom, IdempotencyConflictError, RecordChargeRequestInput, ValidationError } from '@metering/domain';
import { PriceTable } from '@metering/pricing';
import { ChargesService } from '../../src/services/charges.service';
import { PricingService } from '../../src/services/pricing.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { expectRollupsMatchCharges } from '../support/consistency';
import { databaseTargets, onCitus, requirePostgresInCi, TestDatabase } from '../support/databases';

/**
 * The write path on real databases: group commit of concurrent RecordCharge
 * calls and the RecordCharges batch. Every acknowledged charge is stored
 * exactly once, rollups equal the charges, and a failed transaction fails
 * exactly the calls in it.
 */
const NOW = new Date('2026-11-23T12:00:00Z');
const clock = () => NOW;

const charge = (over: Partial<RecordChargeRequestInput> = {}): RecordChargeRequestInput => ({
  accountId: 'acme', userId: 'u1', idempotencyKey: 'k', sessionKey: '', provider: 'openai', model: 'gpt-4o-mini', chargeType: 0, requestType: 0,
  promptTokens: '1000', completionTokens: '500', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0',
  callCount: '0', reference: '', endpoint: '', responseTimeMs: undefined, wasCached: false, hadError: false, errorMessage: '', metadata: undefined,
  usageTime: undefined, ...over,
});

requirePostgresInCi();

describe.each(databaseTargets())('write path on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  let charges: ChargesService;
  const countOf = async (accountId: string) => Number((await db('charges').where({ account_id: accountId }).count<{ n: string }[]>('* as n'))[0].n);

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
    await migrate(db);
    charges = new ChargesService(db, new PricingService(db, new PriceTable(), clock), clock);
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  it('coalesces 300 concurrent calls over 50 users and hot keys: every call answered once, every charge stored once', async () => {
    const calls = Array.from({ length: 300 }, (_, i) => charge({ accountId: 'group', userId: `u${i % 250 % 50}`, idempotencyKey: `g-${i % 250}`, model: i % 250 % 3 ? 'gpt-4o-mini' : 'unknown-model' }));
    const results = await Promise.all(calls.map((c) => charges.recordCharge(c)));
    expect(results.filter((r) => !r.replayed)).toHaveLength(250);
    expect(new Set(results.map((r) => r.charge.chargeId)).size).toBe(250);
    expect(await countOf('group')).toBe(250);
    await expectRollupsMatchCharges(db, 'group');
  });

  it('records a batch with one result per charge: invalid and conflicting charges fail alone, duplicates in the batch replay', async () => {
    await charges.recordCharge(charge({ accountId: 'batch', idempotencyKey: 'taken' }));
    const results = await charges.recordCharges([
      charge({ accountId: 'batch', idempotencyKey: 'b1' }),
      charge({ accountId: 'batch', idempotencyKey: 'b2', promptTokens: '-1', model: '' }),
      charge({ accountId: 'batch', idempotencyKey: 'taken', completionTokens: '501' }),
      charge({ accountId: 'batch', idempotencyKey: 'b1' }),
      charge({ accountId: 'batch', idempotencyKey: 'b1', promptTokens: '999' }),
      charge({ accountId: 'batch', idempotencyKey: 'taken' }),
      charge({ accountId: 'batch', idempotencyKey: 'b3', userId: 'u2' }),
    ]);
    const shape = results.map((r) => (r instanceof DomainError ? r.constructor.name : r.replayed ? 'replayed' : 'recorded'));
    expect(shape).toEqual(['recorded', 'ValidationError', 'IdempotencyConflictError', 'replayed', 'IdempotencyConflictError', 'replayed', 'recorded']);
    expect((results[1] as ValidationError).violations.map((v) => v.field).sort()).toEqual(['model', 'prompt_tokens']);
    expect((results[4] as IdempotencyConflictError).fields).toEqual(['prompt_tokens']);
    expect(results[3]).toMatchObject({ charge: (results[0] as { charge: object }).charge });
    expect(await countOf('batch')).toBe(3);
    await expectRollupsMatchCharges(db, 'batch');
  });

  // Its fault is injected by a trigger on daily_usage, which Citus does not support on a distributed table.
  (onCitus() ? it.skip : it)('fails exactly the calls of a failed transaction, retry-safe: the failed ones are absent, the acknowledged ones present once', async () => {
    await db.raw(`CREATE FUNCTION fail_doomed() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'doomed'; END $$`);
    await db.raw(`CREATE TRIGGER fail_doomed BEFORE INSERT ON daily_usage FOR EACH ROW WHEN (NEW.model = 'doomed') EXECUTE FUNCTION fail_doomed()`);
    try {
      const outcomes = await Promise.allSettled(
        Array.from({ length: 120 }, (_, i) => charges.recordCharge(charge({ accountId: 'fail', idempotencyKey: `f-${i}`, model: i === 60 ? 'doomed' : 'gpt-4o-mini' }))),
      );
      expect(outcomes[60].status).toBe('rejected');
      const acked = outcomes.flatMap((o, i) => (o.status === 'fulfilled' ? [`f-${i}`] : []));
      const stored = (await db('charges').where({ account_id: 'fail' }).select('idempotency_key')).map((r: { idempotency_key: string }) => r.idempotency_key);
      expect(stored.sort()).toEqual(acked.sort());
      expect(acked.length).toBeGreaterThan(0);
      // A retry of every failed call (same keys), without the failing one, records them once.
      await Promise.all(outcomes.flatMap((o, i) => (o.status === 'rejected' && i !== 60 ? [charges.recordCharge(charge({ accountId: 'fail', idempotencyKey: `f-${i}` }))] : [])));
      expect(await countOf('fail')).toBe(119);
      await expectRollupsMatchCharges(db, 'fail');
    } finally {
      await db.raw('DROP TRIGGER fail_doomed ON daily_usage');
      await db.raw('DROP FUNCTION fail_doomed()');
    }
  });

  it('splits a group commit whose transaction one charge makes fail: the other tenants\' calls are recorded, the failing one is refused OUT_OF_RANGE, never INTERNAL', async () => {
    // One transaction at a time, so the calls queued behind the first one are written in one batch.
    const serial = new ChargesService(db, new PricingService(db, new PriceTable(), clock), clock, 1);
    await serial.recordCharge(charge({ accountId: 'near-max', idempotencyKey: 'seed' }));
    // A counter near the bigint limit: the next charge of this account cannot be added to it.
    await db('usage_counters').where({ account_id: 'near-max' }).update({ total_tokens: '9223372036854775000' });
    const outcomes = await Promise.allSettled([
      serial.recordCharge(charge({ accountId: 'tenant-a', idempotencyKey: 'first' })),
      serial.recordCharge(charge({ accountId: 'tenant-b', idempotencyKey: 'b' })),
      serial.recordCharge(charge({ accountId: 'near-max', idempotencyKey: 'overflow' })),
      serial.recordCharge(charge({ accountId: 'tenant-c', idempotencyKey: 'c' })),
      serial.recordCharge(charge({ accountId: 'tenant-b', idempotencyKey: 'b2' })),
    ]);
    expect(outcomes.map((o) => o.status)).toEqual(['fulfilled', 'fulfilled', 'rejected', 'fulfilled', 'fulfilled']);
    const refused = (outcomes[2] as PromiseRejectedResult).reason;
    expect(refused).toBeInstanceOf(DomainError);
    expect([refused.code, refused.reason]).toEqual(['OUT_OF_RANGE', 'VALUE_OUT_OF_RANGE']);
    expect(await db('charges').where({ account_id: 'near-max', idempotency_key: 'overflow' }).first()).toBeUndefined();
    for (const a of ['tenant-a', 'tenant-b', 'tenant-c']) await expectRollupsMatchCharges(db, a);
    expect(await countOf('tenant-b')).toBe(2);
  });

  it('lets the second charge of a batch settle a reservation when the first one naming it is a used key (nothing of it is written)', async () => {
    const reservationId = '11111111-1111-4111-8111-111111111111';
    await db('reservations').insert({
      account_id: 'claim', reservation_id: reservationId, idempotency_key: 'r', user_id: 'u1', status: 'held', held_messages: 1, held_tokens: 0, held_cost: '0',
      period_day: '2026-11-23', request_hash: 'h', create_time: NOW, expire_time: new Date(NOW.getTime() + 600_000),
    });
    await db('usage_counters').insert(
      ['day', 'month'].flatMap((period) => ['', 'u1'].map((user_id) => ({ account_id: 'claim', period, period_start: period === 'day' ? '2026-11-23' : '2026-11-01', user_id, reserved_messages: 1 }))),
    );
    // And the hour it was placed in (hourly_counters, rolling windows), as CheckLimits writes it for an account that keeps hours.
    await db('hour_tracking').insert({ account_id: 'claim', since: hoursKeptFrom(NOW), created_at: NOW });
    await db('hourly_counters').insert(['', 'u1'].map((user_id) => ({ account_id: 'claim', hour_start: new Date(Math.floor(NOW.getTime() / 3_600_000) * 3_600_000), user_id, scope: '', reserved_messages: 1, updated_at: NOW })));
    await charges.recordCharge(charge({ accountId: 'claim', idempotencyKey: 'k1' }));
    const [k1, k2] = await charges.recordCharges([
      charge({ accountId: 'claim', idempotencyKey: 'k1', reservationId }),
      charge({ accountId: 'claim', idempotencyKey: 'k2', reservationId }),
    ]);
    expect(k1).toBeInstanceOf(IdempotencyConflictError);
    expect(k2).toMatchObject({ replayed: false, reservation: { reservationId, status: 'settled' } });
    expect(await db('reservations').where({ account_id: 'claim' }).pluck('status')).toEqual(['settled']);
    await expectRollupsMatchCharges(db, 'claim');
  });

  it('answers six concurrent batch calls (they wait for a write slot): every one answered, every charge stored once', async () => {
    const calls = Array.from({ length: 6 }, (_, c) => Array.from({ length: 50 }, (_, i) => charge({ accountId: 'many-batches', userId: `u${i % 5}`, idempotencyKey: `m-${c}-${i}` })));
    const results = await Promise.all(calls.map((batch) => charges.recordCharges(batch)));
    expect(results.flat().every((r) => !(r instanceof DomainError) && !r.replayed)).toBe(true);
    expect(await countOf('many-batches')).toBe(300);
    await expectRollupsMatchCharges(db, 'many-batches');
  });

  it('writes a batch of 1000 charges in one call, and replays it whole', async () => {
    const batch = Array.from({ length: 1000 }, (_, i) => charge({ accountId: 'big', userId: `u${i % 7}`, idempotencyKey: `big-${i}` }));
    const first = await charges.recordCharges(batch);
    expect(first.every((r) => !(r instanceof DomainError) && !r.replayed)).toBe(true);
    const again = await charges.recordCharges(batch);
    expect(again.every((r) => !(r instanceof DomainError) && r.replayed)).toBe(true);
    expect(await countOf('big')).toBe(1000);
    await expectRollupsMatchCharges(db, 'big');
  });

  it('records a lone charge in one statement (no transaction) as the transaction would: the same stored charge, rollups, counters and event; a used key, replayed or conflicting, from two replicas at once, writes nothing more', async () => {
    // Two server processes (replicas) on one database, each with its own settings cache.
    const other = new ChargesService(db, new PricingService(db, new PriceTable(), clock), clock);
    const lone = (i: number, over: Partial<RecordChargeRequestInput> = {}) => charge({ accountId: 'lone', userId: `u${i % 3}`, idempotencyKey: `lone-${i}`, metadata: { ticket: `T-${i}`, b: 1, a: 2 }, ...over });
    // Each key from both replicas at once, one call at a time per replica (nothing queued: the one statement).
    const pairs: Array<[Awaited<ReturnType<ChargesService['recordCharge']>>, Awaited<ReturnType<ChargesService['recordCharge']>>]> = [];
    for (let i = 0; i < 40; i++) pairs.push(await Promise.all([charges.recordCharge(lone(i)), other.recordCharge(lone(i))]));
    for (const [a, b] of pairs) {
      expect([a.replayed, b.replayed].sort()).toEqual([false, true]);
      expect(b.charge).toEqual(a.charge);
    }
    // A batch of the same charges (the transaction): every one a replay of what the one statement stored.
    const batch = await charges.recordCharges(Array.from({ length: 40 }, (_, i) => lone(i)));
    batch.forEach((r, i) => expect(r).toEqual({ charge: pairs[i][0].charge, replayed: true, reservation: undefined }));
    // The same key with other content, alone: a conflict naming the field; nothing written.
    await expect(charges.recordCharge(lone(0, { completionTokens: '501' }))).rejects.toThrow(IdempotencyConflictError);
    expect(await countOf('lone')).toBe(40);
    // A batch of used keys (replays, one conflict) and new ones: the used are answered from the stored charges, the new written.
    const mixed = await charges.recordCharges([lone(1), lone(40), lone(2, { completionTokens: '501' }), lone(41), lone(40)]);
    expect(mixed.map((r) => (r instanceof DomainError ? r.code : r.replayed))).toEqual([true, false, 'ALREADY_EXISTS', false, true]);
    expect(await countOf('lone')).toBe(42);
    await expectRollupsMatchCharges(db, 'lone');
    // One charge_recorded event per charge, carrying the charge as stored (the stream's payload).
    const events = await db('charge_events').where({ account_id: 'lone', kind: 'charge_recorded' }).orderBy('sequence');
    expect(events).toHaveLength(42);
    const stored = await db('charges').where({ account_id: 'lone' });
    for (const e of events) {
      const payload = typeof e.payload === 'string' ? JSON.parse(e.payload) : e.payload;
      const row = stored.find((r: { charge_id: string }) => r.charge_id === payload.charge_id);
      expect(new Date(payload.record_time)).toEqual(row.record_time);
      expect(payload.total_cost).toBe(row.total_cost);
      expect(payload.metadata).toEqual(row.metadata);
    }
  });
});

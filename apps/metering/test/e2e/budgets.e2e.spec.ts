import { status } from '@grpc/grpc-js';
import {
  CheckLimitsReason,
  CheckLimitsRequest,
  LimitEnforcement,
  LimitMeasure,
  LimitPeriod,
  LimitScope,
  MeteringServiceClient,
  ReservationEstimate,
  ReservationStatus,
} from '@metering/contracts';
import { Dec } from '@metering/pricing';
import { closeDatabase, Db, openDatabase } from '../../src/store/db';
import { expectRollupsMatchCharges } from '../support/consistency';
import { databaseTargets, describeEachOf, requirePostgresInCi, TestDatabase } from '../support/databases';
import { call, grpcError, statusDetails } from '../support/grpc';
import { completionTokensCosting } from '../support/costing';
import { chargeRequest, checkRequest } from '../support/requests';
import { buildServer, ServerProcess, startServer, startServers } from '../support/server-process';

/**
 * Issue 4 end to end: real server processes called through the generated
 * client. The reserve -> record -> release flow on each database, and on
 * Postgres 1,000 concurrent reservations spread over 3 server processes on
 * one database, for a cost, a token and a message limit.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

const putLimit = (client: MeteringServiceClient, accountId: string, measure: LimitMeasure, amount: string, enforcement = LimitEnforcement.LIMIT_ENFORCEMENT_HARD) =>
  call(client.putLimit, client, { accountId, userId: '', period: LimitPeriod.LIMIT_PERIOD_DAY, measure, amount, enforcement });
const reserve = (client: MeteringServiceClient, accountId: string, key: string, over: Partial<CheckLimitsRequest> = {}, deadlineMs?: number) =>
  call(client.checkLimits, client, checkRequest({ accountId, reserve: true, idempotencyKey: key, ...over }), undefined, deadlineMs);
/** 1,000 reservations of one account queue on its counters' row locks: on a loaded 2-core machine the last waits well over 10 s. */
const QUEUED_DEADLINE_MS = 120_000;

describe.each(databaseTargets())('budgets API on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let client: MeteringServiceClient;

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, { METERING_RESERVATION_SWEEP_MS: '200' });
    client = server.client;
  });

  afterAll(async () => {
    await server?.stop();
    if (tdb) {
      // The embedded database can be opened once its server has stopped.
      const db = openDatabase(tdb.config);
      try {
        for (const account of ['flow', 'tz']) await expectRollupsMatchCharges(db, account);
      } finally {
        await closeDatabase(db);
      }
      await tdb.drop();
    }
  });

  it('reserves, records against the reservation, releases, and answers FAILED_PRECONDITION on a second settle', async () => {
    await putLimit(client, 'flow', LimitMeasure.LIMIT_MEASURE_COST, '1.00');
    const r = await reserve(client, 'flow', 'r1', { additionalCost: { amount: '0.60', currencyCode: 'USD' } });
    expect(r).toMatchObject({ allowed: true, reason: CheckLimitsReason.CHECK_LIMITS_REASON_WITHIN_LIMITS, timeZone: 'UTC', reservation: { status: ReservationStatus.RESERVATION_STATUS_HELD, heldMessages: '1', heldCost: { amount: '0.6' } } });
    const id = r.reservation!.reservationId;
    const denied = await reserve(client, 'flow', 'r2', { additionalCost: { amount: '0.50', currencyCode: 'USD' } });
    expect(denied).toMatchObject({ allowed: false, reason: CheckLimitsReason.CHECK_LIMITS_REASON_COST_LIMIT_EXCEEDED, reservation: undefined });
    expect(denied.limits[0]).toMatchObject({ reserved: '0.6', remaining: '0.4', exceeded: true, period: LimitPeriod.LIMIT_PERIOD_DAY });
    const asError = await grpcError(reserve(client, 'flow', 'r2', { additionalCost: { amount: '0.50', currencyCode: 'USD' }, denyAsError: true }));
    expect(asError.code).toBe(status.RESOURCE_EXHAUSTED);
    expect(statusDetails(asError).quotaFailure?.violations).toEqual([{ subject: 'account:flow/day/cost', description: expect.stringContaining('reserved 0.6') }]);
    expect(statusDetails(asError).errorInfo?.reason).toBe('LIMIT_EXCEEDED');

    const recorded = await call(client.recordCharge, client, chargeRequest({ accountId: 'flow', idempotencyKey: 'c1', reservationId: id }));
    expect(recorded.reservation).toMatchObject({ status: ReservationStatus.RESERVATION_STATUS_SETTLED, chargeId: recorded.charge!.chargeId });
    const second = await grpcError(call(client.recordCharge, client, chargeRequest({ accountId: 'flow', idempotencyKey: 'c2', reservationId: id })));
    expect(second.code).toBe(status.FAILED_PRECONDITION);
    expect(statusDetails(second).errorInfo).toMatchObject({ reason: 'RESERVATION_SETTLED', metadata: { reservation_id: id, status: 'settled' } });

    const r3 = await reserve(client, 'flow', 'r3', { additionalTokens: '10' });
    const released = await call(client.releaseReservation, client, { accountId: 'flow', reservationId: r3.reservation!.reservationId });
    expect(released.reservation?.status).toBe(ReservationStatus.RESERVATION_STATUS_RELEASED);
    const again = await grpcError(call(client.releaseReservation, client, { accountId: 'flow', reservationId: r3.reservation!.reservationId }));
    expect([again.code, statusDetails(again).errorInfo?.reason]).toEqual([status.FAILED_PRECONDITION, 'RESERVATION_RELEASED']);

    const { limits } = await call(client.listLimits, client, { accountId: 'flow', userId: '', pageSize: 0, pageToken: '' });
    expect(limits).toEqual([expect.objectContaining({ used: '0.00225', reserved: '0', remaining: '0.99775', exceeded: false })]);
  });

  it('frees an expired hold without any caller', async () => {
    await putLimit(client, 'expiry', LimitMeasure.LIMIT_MEASURE_MESSAGES, '1');
    const r = await reserve(client, 'expiry', 'r1', { holdSeconds: 1 });
    expect(r.allowed).toBe(true);
    expect((await call(client.checkLimits, client, checkRequest({ accountId: 'expiry' }))).allowed).toBe(false);
    // The sweeper runs every 200 ms here; a plain check does not expire anything itself.
    const deadline = Date.now() + 10_000;
    let got;
    do {
      await new Promise((resolve) => setTimeout(resolve, 200));
      got = await call(client.getReservation, client, { accountId: 'expiry', reservationId: r.reservation!.reservationId });
    } while (Date.now() < deadline && !(await call(client.checkLimits, client, checkRequest({ accountId: 'expiry' }))).allowed);
    expect(got.reservation?.status).toBe(ReservationStatus.RESERVATION_STATUS_EXPIRED);
    expect((await call(client.checkLimits, client, checkRequest({ accountId: 'expiry' }))).allowed).toBe(true);
  });

  it('keeps an account\'s days in its time zone', async () => {
    const set = await call(client.setAccount, client, { accountId: 'tz', timeZone: 'Pacific/Kiritimati' });
    expect(set.account).toMatchObject({ accountId: 'tz', timeZone: 'Pacific/Kiritimati' });
    const bad = await grpcError(call(client.setAccount, client, { accountId: 'tz', timeZone: '+14:00' }));
    expect(statusDetails(bad).badRequest?.fieldViolations.map((v) => v.field)).toEqual(['time_zone']);
    // Kiritimati is UTC+14: its today is UTC's tomorrow until 10:00 UTC, and never UTC's yesterday.
    const check = await call(client.checkLimits, client, checkRequest({ accountId: 'tz' }));
    const kiritimati = new Date(Date.now() + 14 * 3600_000).toISOString().slice(0, 10);
    expect(check).toMatchObject({ date: kiritimati, timeZone: 'Pacific/Kiritimati' });
    const { charge } = await call(client.recordCharge, client, chargeRequest({ accountId: 'tz', idempotencyKey: 'c1' }));
    expect(charge?.usageDate).toBe(kiritimati);
  });
});

describeEachOf(databaseTargets().filter((t) => t.name === 'postgres'), 'postgres')('reservations across 3 server processes on one $name', (target) => {
  let tdb: TestDatabase;
  let servers: ServerProcess[] = [];
  let db: Db;

  beforeAll(async () => {
    tdb = await target.create();
    // The calls that queue on the account's rows also wait for a pool connection: as long as the deadline.
    servers = await startServers(tdb.config, 3, { METERING_DB_ACQUIRE_TIMEOUT_MS: String(QUEUED_DEADLINE_MS) });
    db = openDatabase(tdb.config);
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  it.each([
    { measure: LimitMeasure.LIMIT_MEASURE_COST, name: 'cost', amount: '5.00', hold: { additionalCost: { amount: '0.10', currencyCode: 'USD' } } },
    { measure: LimitMeasure.LIMIT_MEASURE_TOKENS, name: 'tokens', amount: '5000', hold: { additionalTokens: '100' } },
    { measure: LimitMeasure.LIMIT_MEASURE_MESSAGES, name: 'messages', amount: '50', hold: {} },
  ])('admit exactly 50 of 1,000 concurrent reservations against a $name limit, then settle and release them', async ({ measure, name, amount, hold }) => {
    const account = `multi-${name}`;
    await putLimit(servers[0].client, account, measure, amount);
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, n) => reserve(servers[n % 3].client, account, `r${n}`, { userId: `u${n % 5}`, ...hold }, QUEUED_DEADLINE_MS)),
    );
    const admitted = results.filter((r) => r.allowed);
    expect(admitted).toHaveLength(50);
    // Retries (through another process) answer the same: the 50 admitted are replays of their
    // reservations, and a sample of denials stay denials.
    const sample = results.map((r, n) => ({ r, n })).filter(({ r, n }) => r.allowed || n % 10 === 0);
    const retried = await Promise.all(sample.map(({ n }) => reserve(servers[(n + 1) % 3].client, account, `r${n}`, { userId: `u${n % 5}`, ...hold }, QUEUED_DEADLINE_MS)));
    expect(retried.filter((r) => r.replayed).map((r) => r.reservation!.reservationId).sort()).toEqual(admitted.map((r) => r.reservation!.reservationId).sort());
    expect(retried.filter((r, i) => !sample[i].r.allowed).every((r) => !r.allowed)).toBe(true);
    await expectRollupsMatchCharges(db, account);
    await Promise.all(
      admitted.map((r, n) => {
        const client = servers[n % 3].client;
        const reservationId = r.reservation!.reservationId;
        return n % 2 === 0
          ? call(client.recordCharge, client, chargeRequest({ accountId: account, userId: r.reservation!.userId, idempotencyKey: `c${n}`, reservationId }), undefined, QUEUED_DEADLINE_MS)
          : call(client.releaseReservation, client, { accountId: account, reservationId }, undefined, QUEUED_DEADLINE_MS);
      }),
    );
    expect(await db('reservations').where({ account_id: account }).groupBy('status').orderBy('status').select('status', db.raw('count(*)::int AS n'))).toEqual([
      { status: 'released', n: 25 },
      { status: 'settled', n: 25 },
    ]);
    await expectRollupsMatchCharges(db, account);
  }, 4 * QUEUED_DEADLINE_MS);

  it('admit exactly 50 of 1,000 concurrent reservations tagged feature=summarize against its $5 budget, each estimated at $0.10 from the pricing data (issue 20)', async () => {
    const account = 'multi-tag';
    const { tokens, cost } = completionTokensCosting('0.10');
    const budget = new Dec('5.00');
    const c0 = servers[0].client;
    await call(c0.setDimensions, c0, { accountId: account, tagKeys: ['feature'] });
    await call(c0.putLimit, c0, { accountId: account, userId: '', tagKey: 'feature', tagValue: 'summarize', period: LimitPeriod.LIMIT_PERIOD_DAY, measure: LimitMeasure.LIMIT_MEASURE_COST, amount: budget.toFixed(2), enforcement: LimitEnforcement.LIMIT_ENFORCEMENT_HARD });
    const estimate = { provider: 'openai', model: 'gpt-4o', completionTokens: String(tokens) };
    const tagged = (n: number) => ({ userId: `u${n % 5}`, tags: { feature: 'summarize', run: `n${n % 4}` }, estimate: ReservationEstimate.fromPartial(estimate) });
    const results = await Promise.all(Array.from({ length: 1000 }, (_, n) => reserve(servers[n % 3].client, account, `r${n}`, tagged(n), QUEUED_DEADLINE_MS)));
    const admitted = results.filter((r) => r.allowed);
    expect(admitted).toHaveLength(budget.dividedToIntegerBy(cost).toNumber());
    expect(admitted).toHaveLength(50);
    // Each holds the estimate's price, and carries the call's tags; the denials name the tag.
    expect(admitted.every((r) => new Dec(r.reservation!.heldCost!.amount).equals(cost) && r.reservation!.tags.feature === 'summarize')).toBe(true);
    const denied = results.find((r) => !r.allowed)!;
    expect(denied).toMatchObject({ reason: CheckLimitsReason.CHECK_LIMITS_REASON_COST_LIMIT_EXCEEDED, message: `Tag feature=summarize daily cost limit reached (${budget.toFixed()} USD)` });
    expect(denied.limits).toEqual([expect.objectContaining({ scope: LimitScope.LIMIT_SCOPE_TAG, tagKey: 'feature', tagValue: 'summarize', reserved: budget.toFixed() })]);
    await expectRollupsMatchCharges(db, account);
    // Settled (half) and released (half) through the three processes: the tag's counter holds nothing after, and counts the charges.
    await Promise.all(
      admitted.map((r, n) => {
        const client = servers[n % 3].client;
        const reservationId = r.reservation!.reservationId;
        return n % 2 === 0
          ? call(client.recordCharge, client, chargeRequest({ accountId: account, userId: r.reservation!.userId, idempotencyKey: `c${n}`, reservationId, tags: { feature: 'summarize' } }), undefined, QUEUED_DEADLINE_MS)
          : call(client.releaseReservation, client, { accountId: account, reservationId }, undefined, QUEUED_DEADLINE_MS);
      }),
    );
    const tag = await db('usage_counters').where({ account_id: account, period: 'day', user_id: '', scope: 'tag:feature=summarize' }).first();
    expect([tag.message_count, tag.reserved_messages, Number(tag.reserved_cost)]).toEqual(['25', '0', 0]);
    await expectRollupsMatchCharges(db, account);
  }, 4 * QUEUED_DEADLINE_MS);
});

import { type ClientReadableStream, credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { connect, createServer, type Socket } from 'node:net';
import pg from 'pg';
import { ChargeEvent, ChargeEventKind, LimitEnforcement, LimitMeasure, LimitPeriod, MeteringServiceClient, PriceRates, RerateMode, WatchChargesRequest, WatchChargesResponse } from '@metering/contracts';
import { databaseTargets, describeEachOf, requirePostgresInCi, TestDatabase } from '../support/databases';
import { call, statusDetails } from '../support/grpc';
import { chargeRequest, checkRequest } from '../support/requests';
import { buildServer, ServerProcess, startServer, startServers } from '../support/server-process';

/**
 * Issue 5, the charge stream, end to end: WatchCharges through the generated
 * client. Every committed charge once, in commit order, gapless sequences;
 * resume after a disconnect; several server processes on one database; re-rated
 * charges, expired reservations and soft limits crossed (by a charge or a
 * re-rating) on the same stream; a subscriber that stops reading is ended with
 * its cursor and holds back neither writers nor others; one that vanishes is
 * dropped by keepalive; outbox retention refuses cursors it would skip.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

/** A subscriber: collects events until told to stop. `requestId` finds its stream in the server's log. */
function subscribe(client: MeteringServiceClient, req: Partial<WatchChargesRequest>, requestId?: string) {
  const events: ChargeEvent[] = [];
  const metadata = new Metadata();
  if (requestId) metadata.set('x-request-id', requestId);
  const stream: ClientReadableStream<WatchChargesResponse> = client.watchCharges(WatchChargesRequest.fromPartial(req), metadata);
  let failure: ServiceError | undefined;
  const ended = new Promise<void>((resolve) => {
    stream.on('data', (r: WatchChargesResponse) => events.push(r.event!));
    stream.on('error', (err: ServiceError) => {
      failure = err;
      resolve();
    });
    stream.on('end', () => resolve());
  });
  return {
    events,
    stream,
    ended,
    error: () => failure,
    /** Waits until `n` events arrived (or 20 s passed). */
    async until(n: number) {
      const deadline = Date.now() + 20_000;
      while (events.length < n && Date.now() < deadline && !failure) await sleep(20);
      return events;
    },
    cancel() {
      stream.cancel();
    },
  };
}

/** An account's price for a self-hosted model, $1 per million tokens in and out, since 2000. */
const priceSelfhosted = (client: MeteringServiceClient, accountId: string, model: string) =>
  call(client.setPrice, client, { accountId: accountId, provider: 'selfhosted', model: model, effectiveTime: { seconds: '946684800', nanos: 0 }, rates: PriceRates.fromPartial({ inputPerMillion: '1', outputPerMillion: '1' }), source: 'test', actor: '' });

const record = (client: MeteringServiceClient, accountId: string, key: string, over = {}) => call(client.recordCharge, client, chargeRequest({ accountId, idempotencyKey: key, ...over }));

describe.each(databaseTargets())('WatchCharges on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let client: MeteringServiceClient;

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, { METERING_RESERVATION_SWEEP_MS: '100', METERING_STREAM_SLOW_MS: '1000', METERING_KEEPALIVE_MS: '1000', METERING_KEEPALIVE_TIMEOUT_MS: '1000' });
    client = server.client;
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it('delivers every committed charge once, in sequence order, and resumes after a disconnect with none missed or repeated', async () => {
    const live = subscribe(client, { accountId: 'acme', afterSequence: '0' });
    const recorded = [];
    for (let n = 0; n < 5; n++) recorded.push((await record(client, 'acme', `k${n}`)).charge!.chargeId);
    await live.until(5);
    expect(live.events.map((e) => [e.sequence, e.kind, e.charge?.chargeId])).toEqual(recorded.map((id, n) => [String(n + 1), ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RECORDED, id]));
    // A replay writes nothing, so it is no event.
    await record(client, 'acme', 'k0');
    live.cancel();
    // While disconnected: 20 more, concurrently.
    const more = await Promise.all(Array.from({ length: 20 }, (_, n) => record(client, 'acme', `m${n}`)));
    const resumed = subscribe(client, { accountId: 'acme', afterSequence: '5' });
    await resumed.until(20);
    await sleep(300);
    expect(resumed.events.map((e) => e.sequence)).toEqual(Array.from({ length: 20 }, (_, n) => String(n + 6)));
    expect(new Set(resumed.events.map((e) => e.charge!.chargeId))).toEqual(new Set(more.map((r) => r.charge!.chargeId)));
    // Without after_sequence: only what commits from now on.
    const fromNow = subscribe(client, { accountId: 'acme' });
    await sleep(300);
    const next = await record(client, 'acme', 'after-now');
    await fromNow.until(1);
    expect(fromNow.events.map((e) => [e.sequence, e.charge?.chargeId])).toEqual([['26', next.charge!.chargeId]]);
    resumed.cancel();
    fromNow.cancel();
  });

  it('filters by user, provider and model, and puts re-rated charges and expired reservations on the same stream', async () => {
    const all = subscribe(client, { accountId: 'mixed', afterSequence: '0' });
    const u2 = subscribe(client, { accountId: 'mixed', afterSequence: '0', userId: 'u2' });
    await record(client, 'mixed', 'a', { userId: 'u1' });
    await record(client, 'mixed', 'b', { userId: 'u2', provider: 'selfhosted', model: 'm1' });
    await priceSelfhosted(client, 'mixed', 'm1');
    const today = new Date().toISOString().slice(0, 10);
    await call(client.rerateCharges, client, { accountId: 'mixed', startDate: today, endDate: today, mode: RerateMode.RERATE_MODE_UNPRICED_ONLY, provider: '', model: '', dryRun: false });
    await call(client.checkLimits, client, checkRequest({ accountId: 'mixed', userId: 'u2', reserve: true, idempotencyKey: 'r', holdSeconds: 1 }));
    await all.until(4);
    expect(all.events.map((e) => e.kind)).toEqual([
      ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RECORDED,
      ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RECORDED,
      ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RERATED,
      ChargeEventKind.CHARGE_EVENT_KIND_RESERVATION_EXPIRED,
    ]);
    expect(all.events[2].charge).toMatchObject({ idempotencyKey: 'b', totalCost: { amount: '0.0003' } });
    expect(all.events[3].reservation).toMatchObject({ idempotencyKey: 'r', userId: 'u2' });
    await u2.until(3);
    expect(u2.events.map((e) => e.sequence)).toEqual(['2', '3', '4']);
    all.cancel();
    u2.cancel();
  });

  it('says once per period when a charge takes a soft limit past its amount', async () => {
    await call(client.putLimit, client, { accountId: 'softy', userId: '', period: LimitPeriod.LIMIT_PERIOD_DAY, measure: LimitMeasure.LIMIT_MEASURE_MESSAGES, amount: '2', enforcement: LimitEnforcement.LIMIT_ENFORCEMENT_SOFT });
    await call(client.putLimit, client, { accountId: 'softy', userId: 'u1', period: LimitPeriod.LIMIT_PERIOD_MONTH, measure: LimitMeasure.LIMIT_MEASURE_TOKENS, amount: '500', enforcement: LimitEnforcement.LIMIT_ENFORCEMENT_SOFT });
    const watcher = subscribe(client, { accountId: 'softy', afterSequence: '0' });
    for (let n = 0; n < 4; n++) await record(client, 'softy', `k${n}`, { userId: 'u1' });
    await watcher.until(6);
    await sleep(300);
    expect(watcher.events.map((e) => e.kind)).toEqual([
      ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RECORDED,
      ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RECORDED,
      ChargeEventKind.CHARGE_EVENT_KIND_SOFT_LIMIT_EXCEEDED, // 600 tokens > 500 this month
      ChargeEventKind.CHARGE_EVENT_KIND_SOFT_LIMIT_EXCEEDED, // 2 messages = 2 today
      ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RECORDED,
      ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RECORDED,
    ]);
    const soft = watcher.events.filter((e) => e.limit).map((e) => [e.userId, e.limit?.period, e.limit?.measure, e.limit?.limit, e.limit?.used, e.limit?.exceeded]);
    expect(soft).toEqual(
      expect.arrayContaining([
        ['u1', LimitPeriod.LIMIT_PERIOD_DAY, LimitMeasure.LIMIT_MEASURE_MESSAGES, '2', '2', true],
        ['u1', LimitPeriod.LIMIT_PERIOD_MONTH, LimitMeasure.LIMIT_MEASURE_TOKENS, '500', '600', true],
      ]),
    );
    watcher.cancel();
  });

  it('says so when a re-rating takes a soft cost limit past its amount, and a re-rating that changes nothing says nothing', async () => {
    await call(client.putLimit, client, { accountId: 'repriced', userId: '', period: LimitPeriod.LIMIT_PERIOD_DAY, measure: LimitMeasure.LIMIT_MEASURE_COST, amount: '0.0001', enforcement: LimitEnforcement.LIMIT_ENFORCEMENT_SOFT });
    const watcher = subscribe(client, { accountId: 'repriced', afterSequence: '0' });
    await record(client, 'repriced', 'unpriced', { userId: 'u1', provider: 'selfhosted', model: 'm2' });
    await priceSelfhosted(client, 'repriced', 'm2');
    const today = new Date().toISOString().slice(0, 10);
    const rerate = (mode: RerateMode) => call(client.rerateCharges, client, { accountId: 'repriced', startDate: today, endDate: today, mode, provider: '', model: '', dryRun: false });
    expect((await rerate(RerateMode.RERATE_MODE_UNPRICED_ONLY)).chargesChanged).toBe('1');
    expect((await rerate(RerateMode.RERATE_MODE_ALL)).chargesChanged).toBe('0');
    await watcher.until(3);
    await sleep(300);
    expect(watcher.events.map((e) => e.kind)).toEqual([
      ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RECORDED, // unpriced: cost 0, under 0.0001
      ChargeEventKind.CHARGE_EVENT_KIND_CHARGE_RERATED, // 0.0003
      ChargeEventKind.CHARGE_EVENT_KIND_SOFT_LIMIT_EXCEEDED,
    ]);
    expect(watcher.events[2]).toMatchObject({ userId: 'u1', limit: { measure: LimitMeasure.LIMIT_MEASURE_COST, limit: '0.0001', used: '0.0003', exceeded: true } });
    watcher.cancel();
  });

  const stallWhileWriting = async (account: string) => {
    const reader = subscribe(client, { accountId: account, afterSequence: '0' });
    // The stalled subscriber on a connection of its own, so that nothing on it reads.
    const stalledClient = new MeteringServiceClient(server.address, credentials.createInsecure());
    const stuck = subscribe(stalledClient, { accountId: account, afterSequence: '0' }, `stalled-${account}`);
    stuck.stream.pause();
    const big = { metadata: { note: 'x'.repeat(8000) } };
    for (let batch = 0; batch < 10; batch++) {
      const charges = Array.from({ length: 50 }, (_, n) => chargeRequest({ accountId: account, idempotencyKey: `s${batch}-${n}`, ...big }));
      await call(client.recordCharges, client, { charges });
    }
    return { reader, stuck, stalledClient };
  };

  it('holds back neither writers nor other subscribers while one subscriber stops reading', async () => {
    // Every write is answered and the other subscriber gets all 500, in order, while one subscriber reads nothing.
    const { reader, stuck, stalledClient } = await stallWhileWriting('stall');
    await reader.until(500);
    expect(reader.events.map((e) => e.sequence)).toEqual(Array.from({ length: 500 }, (_, n) => String(n + 1)));
    expect(stuck.events).toEqual([]);
    reader.cancel();
    stuck.cancel();
    stalledClient.close();
  });

  /** Waits until the server logged how the stream of `requestId` ended (or 20 s passed); its status code. */
  const streamEnd = async (requestId: string) => {
    const deadline = Date.now() + 20_000;
    const find = () => server.logs.map((line) => (line.includes('"msg":"stream ended"') && line.includes(`"request_id":"${requestId}"`) ? (JSON.parse(line) as { code: string }).code : undefined)).find(Boolean);
    while (!find() && Date.now() < deadline) await sleep(50);
    return find();
  };

  it('ends a subscriber that stops reading with ABORTED and its cursor, and it resumes from there with none missed or repeated', async () => {
    const { reader, stuck, stalledClient } = await stallWhileWriting('slow');
    await reader.until(500);
    // The stalled client reads again only after the server gave up on it (METERING_STREAM_SLOW_MS=1000).
    expect(await streamEnd('stalled-slow')).toBe('ABORTED');
    stuck.stream.resume();
    await Promise.race([stuck.ended, sleep(20_000)]);
    stalledClient.close();
    const err = stuck.error();
    expect(err?.code).toBe(status.ABORTED);
    expect(statusDetails(err!).errorInfo).toMatchObject({ reason: 'SUBSCRIBER_TOO_SLOW', metadata: { resume_after_sequence: expect.stringMatching(/^\d+$/) } });
    const cursor = Number(statusDetails(err!).errorInfo!.metadata.resume_after_sequence);
    expect(cursor).toBeGreaterThan(0);
    expect(cursor).toBeLessThan(500);
    // Everything up to the cursor arrived before the status, nothing after it.
    expect(stuck.events.map((e) => e.sequence)).toEqual(Array.from({ length: cursor }, (_, n) => String(n + 1)));
    const again = subscribe(client, { accountId: 'slow', afterSequence: String(cursor) });
    await again.until(500 - cursor);
    await sleep(300);
    expect(again.events.map((e) => e.sequence)).toEqual(Array.from({ length: 500 - cursor }, (_, n) => String(cursor + n + 1)));
    reader.cancel();
    again.cancel();
  });

  it('ends the stream of a subscriber whose connection went silent without closing (keepalive)', async () => {
    // A TCP proxy that, when frozen, forwards nothing and closes nothing: a peer that vanished.
    const sockets: Socket[] = [];
    const proxy = createServer((inbound) => {
      const outbound = connect(server.port, '127.0.0.1');
      inbound.pipe(outbound).pipe(inbound);
      for (const socket of [inbound, outbound]) {
        socket.on('error', () => undefined);
        sockets.push(socket);
      }
    });
    await new Promise<void>((resolve) => proxy.listen(0, '127.0.0.1', resolve));
    const viaProxy = new MeteringServiceClient(`127.0.0.1:${(proxy.address() as { port: number }).port}`, credentials.createInsecure());
    try {
      const vanishing = subscribe(viaProxy, { accountId: 'vanish', afterSequence: '0' }, 'vanishing-subscriber');
      await record(client, 'vanish', 'v1');
      expect((await vanishing.until(1)).map((e) => e.sequence)).toEqual(['1']);
      for (const socket of sockets) {
        socket.unpipe();
        socket.pause();
      }
      // Pinged every second, no answer within a second: the server closes the connection and the stream ends.
      expect(await streamEnd('vanishing-subscriber')).toBe('CANCELLED');
    } finally {
      viaProxy.close();
      for (const socket of sockets) socket.destroy();
      proxy.close();
    }
  });

  it('refuses a bad request with INVALID_ARGUMENT', async () => {
    const bad = subscribe(client, { accountId: '', afterSequence: '-1', userId: 'a b' });
    await bad.ended;
    expect(bad.error()?.code).toBe(status.INVALID_ARGUMENT);
    expect(statusDetails(bad.error()!).badRequest?.fieldViolations.map((v) => v.field).sort()).toEqual(['account_id', 'after_sequence', 'user_id']);
  });
});

describeEachOf(databaseTargets().filter((t) => t.name === 'postgres'), 'postgres')('WatchCharges across 3 server processes on one $name', (target) => {
  let tdb: TestDatabase;
  let servers: ServerProcess[] = [];

  beforeAll(async () => {
    tdb = await target.create();
    servers = await startServers(tdb.config, 3);
  });

  afterAll(async () => {
    await Promise.all(servers.map((s) => s.stop()));
    await tdb?.drop();
  });

  it('delivers to a subscriber on one process every charge written concurrently through all three, gapless in commit order, and to a resumed one the same', async () => {
    const watcher = subscribe(servers[0].client, { accountId: 'multi', afterSequence: '0' });
    const written = await Promise.all(Array.from({ length: 300 }, (_, n) => record(servers[n % 3].client, 'multi', `k${n}`, { userId: `u${n % 4}` })));
    await watcher.until(300);
    await sleep(300);
    expect(watcher.events.map((e) => e.sequence)).toEqual(Array.from({ length: 300 }, (_, n) => String(n + 1)));
    expect(new Set(watcher.events.map((e) => e.charge!.chargeId))).toEqual(new Set(written.map((w) => w.charge!.chargeId)));
    // A subscriber on another process, resuming from the middle, gets exactly the rest.
    const resumed = subscribe(servers[2].client, { accountId: 'multi', afterSequence: '150' });
    await resumed.until(150);
    await sleep(300);
    expect(resumed.events.map((e) => e.charge!.chargeId)).toEqual(watcher.events.slice(150).map((e) => e.charge!.chargeId));
    watcher.cancel();
    resumed.cancel();
  });

  it('wakes a subscriber by NOTIFY from another process alone, with polling every 60 s (LISTEN has a session of its own, also behind PgBouncer), listening only while it has subscribers', async () => {
    const listener = await startServer(tdb.config, { METERING_EVENT_POLL_MS: '60000' });
    const admin = new pg.Client({ connectionString: tdb.config.url });
    /** The LISTEN sessions of the four servers on this database. */
    const sessions = async () => Number((await admin.query(`SELECT count(*) FROM pg_stat_activity WHERE application_name = 'metering-listen' AND datname = current_database()`)).rows[0].count);
    /** The same once there are `n` (or after 5 s, however many). */
    const listening = async (n: number) => {
      for (const deadline = Date.now() + 5000; (await sessions()) !== n && Date.now() < deadline; ) await sleep(50);
      return sessions();
    };
    /**
     * A subscriber on the listener from `afterSequence`, then the charge `key` written on another server once the
     * subscriber listens and has read the outbox: with polling every 60 s, only the NOTIFY brings it within 5 s.
     */
    const wokenBy = async (key: string, afterSequence: string) => {
      const watcher = subscribe(listener.client, { accountId: 'notified', afterSequence });
      await new Promise((resolve) => watcher.stream.once('metadata', resolve));
      expect(await listening(1)).toBe(1);
      await sleep(500); // its first read (right after the LISTEN) is done; it waits
      const started = Date.now();
      await record(servers[1].client, 'notified', key);
      while (watcher.events.length < 1 && Date.now() - started < 5000) await sleep(20);
      return watcher;
    };
    try {
      await admin.connect();
      // No server here has a subscriber (the tests above cancelled theirs): nobody listens.
      expect(await listening(0)).toBe(0);
      const first = await wokenBy('n1', '0');
      expect(first.events.map((e) => e.charge!.idempotencyKey)).toEqual(['n1']);
      const second = subscribe(listener.client, { accountId: 'notified', afterSequence: '1' });
      await new Promise((resolve) => second.stream.once('metadata', resolve));
      await sleep(500); // the second has subscribed
      expect(await sessions()).toBe(1); // one session for both subscribers
      first.cancel();
      await sleep(500);
      expect(await sessions()).toBe(1); // the second still listens
      second.cancel();
      expect(await listening(0)).toBe(0); // the last one left
      // The next subscriber listens again before its first read, and is woken again.
      const third = await wokenBy('n2', '1');
      expect(third.events.map((e) => e.charge!.idempotencyKey)).toEqual(['n2']);
      third.cancel();
      expect(await listening(0)).toBe(0);
    } finally {
      await admin.end();
      await listener.stop();
    }
  });

  it('ends streams with UNAVAILABLE and the cursor when their server shuts down, so subscribers resume on another', async () => {
    const extra = await startServer(tdb.config);
    const watcher = subscribe(extra.client, { accountId: 'moving', afterSequence: '0' });
    await record(servers[0].client, 'moving', 'before');
    await watcher.until(1);
    const stopped = extra.stop('SIGTERM');
    await watcher.ended;
    expect(await stopped).toBe(0);
    expect(watcher.error()?.code).toBe(status.UNAVAILABLE);
    await record(servers[1].client, 'moving', 'after');
    const resumed = subscribe(servers[1].client, { accountId: 'moving', afterSequence: watcher.events.at(-1)!.sequence });
    await resumed.until(1);
    expect(resumed.events.map((e) => e.charge!.idempotencyKey)).toEqual(['after']);
    resumed.cancel();
  });
});

describe.each(databaseTargets())('WatchCharges with outbox retention on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, { METERING_EVENT_RETENTION_SECONDS: '2', METERING_EVENT_PRUNE_MS: '200' });
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it('deletes events past the retention, keeps the charges, and refuses a resume that would miss events with OUT_OF_RANGE', async () => {
    const client = server.client;
    for (let n = 0; n < 3; n++) await record(client, 'kept', `old${n}`);
    // The sweep may take them in one run or several, as each passes 2 s of age.
    const pruned = () => server.logs.filter((l) => l.includes('"msg":"events pruned"')).reduce((n, l) => n + (JSON.parse(l) as { count: number }).count, 0);
    const deadline = Date.now() + 20_000;
    while (pruned() < 3 && Date.now() < deadline) await sleep(100);
    expect(pruned()).toBe(3);
    const replay = subscribe(client, { accountId: 'kept', afterSequence: '0' });
    await replay.ended;
    expect(replay.error()?.code).toBe(status.OUT_OF_RANGE);
    expect(statusDetails(replay.error()!).errorInfo).toMatchObject({ reason: 'EVENTS_PRUNED', metadata: { oldest_sequence: '4', resume_after_sequence: '3' } });
    // From the last sequence: nothing is missing, the stream goes on.
    const live = subscribe(client, { accountId: 'kept', afterSequence: '3' });
    const fresh = await record(client, 'kept', 'new');
    expect((await live.until(1)).map((e) => [e.sequence, e.charge?.chargeId])).toEqual([['4', fresh.charge!.chargeId]]);
    live.cancel();
    const today = new Date().toISOString().slice(0, 10);
    const usage = await call(client.getDailyUsage, client, { accountId: 'kept', startDate: today, endDate: today, userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '', timeZone: '' });
    expect(usage.totals?.messageCount).toBe('4');
  });
});

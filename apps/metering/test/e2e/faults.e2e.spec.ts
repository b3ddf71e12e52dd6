import { credentials, Metadata, status, type ServiceError } from '@grpc/grpc-js';
import { HealthCheckResponse_ServingStatus, MeteringServiceClient, RecordChargeResponse } from '@metering/contracts';
import { knex } from 'knex';
import { closeDatabase, Db, openDatabase } from '../../src/store/db';
import { expectRollupsMatchCharges } from '../support/consistency';
import { databaseTargets, describeEachOf, requirePostgresInCi, TestDatabase } from '../support/databases';
import { freePort, PgCluster, postgresBinariesAvailable } from '../support/pg-cluster';
import { PGBOUNCER_BIN, PgBouncer } from '../support/pgbouncer';
import { chargeRequest } from '../support/requests';
import { buildServer, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 7, faults, end to end on Postgres: the real server under load while
 * Postgres restarts (fast and immediate shutdown, on a cluster of its own),
 * while the server is killed with SIGKILL again and again, when a client
 * gives up at its deadline, and on SIGTERM. Clients retry with the same
 * idempotency keys, as the README tells backends to; afterwards every
 * acknowledged charge is stored exactly once and the rollups equal the charges.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

const sleep = (ms: number) => new Promise((resolve) => setTimeout(resolve, ms));

interface Attempt {
  key: string;
  started: number;
  ms: number;
  code: number;
}

/** One RecordCharge with a deadline; resolves with the outcome, never rejects. */
function attempt(client: MeteringServiceClient, accountId: string, key: string, deadlineMs: number, onAccepted?: () => void) {
  const started = Date.now();
  return new Promise<{ attempt: Attempt; response?: RecordChargeResponse }>((resolve) => {
    const c = client.recordCharge(chargeRequest({ accountId, userId: `u${key.length % 3}`, idempotencyKey: key }), new Metadata(), { deadline: started + deadlineMs }, (err: ServiceError | null, res?: RecordChargeResponse) =>
      resolve({ attempt: { key, started, ms: Date.now() - started, code: err ? err.code : status.OK }, response: res ?? undefined }),
    );
    c.on('metadata', () => onAccepted?.());
  });
}

/**
 * Backends under load: `workers` loops, each recording new keys and retrying
 * a failed key (same key) until it is acknowledged. stop() lets each finish
 * its current key and returns every attempt and every acknowledged charge.
 */
function loadWithRetries(client: () => MeteringServiceClient, accountId: string, workers: number, deadlineMs: number) {
  let stopping = false;
  const attempts: Attempt[] = [];
  const acked = new Map<string, string>();
  let next = 0;
  const loops = Array.from({ length: workers }, async () => {
    while (!stopping) {
      const key = `${accountId}-${next++}`;
      const giveUp = Date.now() + 60_000;
      for (;;) {
        const { attempt: a, response } = await attempt(client(), accountId, key, deadlineMs);
        attempts.push(a);
        if (response) {
          acked.set(key, response.charge!.chargeId);
          break;
        }
        if (Date.now() > giveUp) throw new Error(`key ${key} not acknowledged within 60 s (last code ${a.code})`);
        await sleep(50);
      }
    }
  });
  return {
    attempts,
    stop: async () => {
      stopping = true;
      await Promise.all(loops);
      return { attempts, acked };
    },
  };
}

async function expectStoredExactlyOnce(db: Db, accountId: string, acked: Map<string, string>): Promise<void> {
  const rows: Array<{ idempotency_key: string; charge_id: string }> = await db('charges').where({ account_id: accountId }).select('idempotency_key', 'charge_id');
  expect(rows.length).toBe(acked.size);
  expect(new Map(rows.map((r) => [r.idempotency_key, r.charge_id]))).toEqual(acked);
  await expectRollupsMatchCharges(db, accountId);
}

const haveBinaries = postgresBinariesAvailable();
if (process.env.CI && !haveBinaries) it('has the PostgreSQL server binaries for the fault tests', () => expect(haveBinaries).toBe(true));

describeEachOf(haveBinaries ? (['fast', 'immediate'] as const) : [], 'PostgreSQL server binaries')('Postgres %s shutdown during load', (mode) => {
  let cluster: PgCluster;
  let server: ServerProcess;
  let db: Db;

  let bouncer: PgBouncer | undefined;

  beforeAll(async () => {
    cluster = await PgCluster.create();
    // Through PgBouncer when the suites run behind one (it stays up while Postgres restarts); LISTEN goes direct.
    bouncer = PGBOUNCER_BIN ? await PgBouncer.start(cluster.url) : undefined;
    const config = bouncer ? bouncer.connection(cluster.url) : { url: cluster.url };
    server = await startServer({ ...config, dataDir: '', poolMax: 10 }, { METERING_HEALTH_INTERVAL_MS: '200' });
    db = openDatabase({ url: cluster.url, dataDir: '', poolMax: 2 });
  });

  afterAll(async () => {
    await server?.stop();
    if (db) await closeDatabase(db);
    await bouncer?.stop();
    cluster?.destroy();
  });

  it('answers UNAVAILABLE within the deadline during the outage, recovers within 5 s, keeps no stale connections, loses and doubles nothing', async () => {
    const deadlineMs = 2000;
    const load = loadWithRetries(() => server.client, 'restart', 16, deadlineMs);
    await sleep(1000);
    cluster.stop(mode);
    const downAt = Date.now();
    await sleep(2000);
    cluster.start();
    const upAt = Date.now();
    // Recovery: the first acknowledged call after Postgres accepts connections again.
    let recoveredAt = 0;
    for (let n = 0; !recoveredAt && Date.now() - upAt < 15_000; n++) {
      const { response } = await attempt(server.client, 'probe', `probe-${n}`, 1000);
      if (response) recoveredAt = Date.now();
      else await sleep(100);
    }
    await sleep(1000);
    const { attempts, acked } = await load.stop();

    expect(recoveredAt - upAt).toBeLessThanOrEqual(5000);
    const failed = attempts.filter((a) => a.code !== status.OK);
    expect(failed.length).toBeGreaterThan(0);
    expect(failed.filter((a) => a.started >= downAt && a.started < upAt).length).toBeGreaterThan(0);
    expect([...new Set(failed.map((a) => status[a.code]))]).toEqual(['UNAVAILABLE']);
    expect(Math.max(...attempts.map((a) => a.ms))).toBeLessThanOrEqual(deadlineMs + 500);
    expect(server.child.exitCode).toBeNull();
    // No stale pooled connections: the next 100 calls all succeed.
    for (let n = 0; n < 100; n++) expect((await attempt(server.client, 'after', `after-${mode}-${n}`, 2000)).attempt.code).toBe(status.OK);
    await expectStoredExactlyOnce(db, 'restart', acked);
  });
});

describeEachOf(databaseTargets().filter((t) => t.name === 'postgres'), 'postgres')('server faults on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  it('loses and doubles no acknowledged charge when the server is killed with SIGKILL 3 times under load', async () => {
    const port = await freePort();
    let server = await startServer(tdb.config, { PORT: String(port) });
    const client = new MeteringServiceClient(`127.0.0.1:${port}`, credentials.createInsecure());
    try {
      const load = loadWithRetries(() => client, 'killed', 16, 2000);
      for (let kill = 0; kill < 3; kill++) {
        await sleep(800 + Math.random() * 800);
        expect(await server.stop('SIGKILL')).toBeNull();
        server = await startServer(tdb.config, { PORT: String(port) });
      }
      await sleep(1000);
      const { attempts, acked } = await load.stop();
      expect(attempts.filter((a) => a.code !== status.OK).length).toBeGreaterThan(0);
      expect(acked.size).toBeGreaterThan(100);
      await expectStoredExactlyOnce(db, 'killed', acked);
    } finally {
      client.close();
      await server.stop();
    }
  });

  it('gives a client that gave up at its deadline the original charge when it retries with the same key', async () => {
    const server = await startServer(tdb.config);
    const lock = knex({ client: 'pg', connection: tdb.config.url, pool: { min: 0, max: 1 } });
    try {
      await attempt(server.client, 'deadline', 'warm-up', 5000);
      // Hold the account's counter rows so the charge's transaction waits past the client's deadline.
      const trx = await lock.transaction();
      await trx.raw(`SELECT * FROM usage_counters WHERE account_id = 'deadline' FOR UPDATE`);
      const first = await attempt(server.client, 'deadline', 'late', 300);
      expect(first.attempt.code).toBe(status.DEADLINE_EXCEEDED);
      await trx.commit();
      // The server finishes the call it had started; the retry is answered from what it stored.
      let stored: { charge_id: string } | undefined;
      for (let n = 0; !stored && n < 50; n++) {
        stored = await db('charges').where({ account_id: 'deadline', idempotency_key: 'late' }).first();
        if (!stored) await sleep(100);
      }
      const retry = await attempt(server.client, 'deadline', 'late', 5000);
      expect(retry.response).toMatchObject({ replayed: true, charge: { chargeId: stored!.charge_id } });
      expect(await db('charges').where({ account_id: 'deadline', idempotency_key: 'late' }).pluck('charge_id')).toEqual([stored!.charge_id]);
      await expectRollupsMatchCharges(db, 'deadline');
    } finally {
      await lock.destroy();
      await server.stop();
    }
  });

  it('on SIGTERM under load: NOT_SERVING first, every accepted call finishes, new calls are refused, exit 0', async () => {
    const server = await startServer(tdb.config, { METERING_SHUTDOWN_GRACE_MS: '10000' });
    const health: Array<{ at: number; status: HealthCheckResponse_ServingStatus }> = [];
    const watch = server.health.watch({ service: 'metering.v1.MeteringService' });
    watch.on('data', (r: { status: HealthCheckResponse_ServingStatus }) => health.push({ at: Date.now(), status: r.status }));
    watch.on('error', () => undefined);
    const exited = new Promise<number | null>((resolve) => server.child.once('exit', (code) => resolve(code)));
    const calls: Array<{ accepted: boolean; started: number; code: number; key: string; chargeId?: string }> = [];
    let running = true;
    let seq = 0;
    const loops = Array.from({ length: 32 }, async () => {
      while (running) {
        const key = `term-${seq++}`;
        const entry = { accepted: false, started: Date.now(), code: -1, key, chargeId: undefined as string | undefined };
        calls.push(entry);
        const { attempt: a, response } = await attempt(server.client, 'sigterm', key, 15_000, () => (entry.accepted = true));
        entry.code = a.code;
        entry.chargeId = response?.charge?.chargeId;
        if (a.code !== status.OK) await sleep(20);
      }
    });
    await sleep(1500);
    const termAt = Date.now();
    server.child.kill('SIGTERM');
    const code = await exited;
    const exitedAfterMs = Date.now() - termAt;
    await sleep(300); // backends keep calling: those calls are refused
    running = false;
    await Promise.all(loops);

    expect(code).toBe(0);
    // Well within the 10 s grace period: the server stops once its accepted calls are done.
    expect(exitedAfterMs).toBeLessThan(5000);
    const accepted = calls.filter((c) => c.accepted);
    expect(accepted.length).toBeGreaterThan(100);
    expect(accepted.filter((c) => c.code !== status.OK)).toEqual([]);
    const refused = calls.filter((c) => !c.accepted);
    expect(refused.length).toBeGreaterThan(0);
    expect([...new Set(refused.map((c) => status[c.code]))]).toEqual(['UNAVAILABLE']);
    const notServing = health.find((h) => h.status === HealthCheckResponse_ServingStatus.NOT_SERVING && h.at >= termAt);
    expect(health[0]?.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    expect(notServing).toBeDefined();
    const ok = calls.filter((c) => c.code === status.OK);
    await expectStoredExactlyOnce(db, 'sigterm', new Map(ok.map((c) => [c.key, c.chargeId!])));
    await server.stop();
  });
});

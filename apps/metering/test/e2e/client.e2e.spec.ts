import { status, type ServiceError } from '@grpc/grpc-js';
import { MeteringClient } from '@metering/client';
import type { ChargeEvent } from '@metering/contracts';
import { closeDatabase, openDatabase } from '../../src/store/db';
import { databaseTargets, describeEachOf, requirePostgresInCi, TestDatabase } from '../support/databases';
import { freePort } from '../support/pg-cluster';
import { buildServer, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 5: the TypeScript client (libs/client) against the real server, as a
 * backend uses it: reserve -> record -> usage; retries across a server killed
 * with SIGKILL reuse the idempotency key (no double charge); the event stream
 * resumes across a server restart with no event missed or repeated, also one
 * started "from now" and cut off before its first event.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

describeEachOf(databaseTargets().filter((t) => t.name === 'postgres'), 'postgres')('the TypeScript client on $name', (target) => {
  let tdb: TestDatabase;
  let port: number;
  let server: ServerProcess;
  let client: MeteringClient;

  beforeAll(async () => {
    tdb = await target.create();
    port = await freePort();
    server = await startServer(tdb.config, { PORT: String(port) });
    client = new MeteringClient({ address: `127.0.0.1:${port}`, deadlineMs: 2000, attempts: 30 });
  });

  afterAll(async () => {
    client?.close();
    await server?.stop();
    await tdb?.drop();
  });

  it('runs a backend\'s flow: reserve, record against the reservation, read usage; a second release stays FAILED_PRECONDITION', async () => {
    const check = await client.checkLimits({ accountId: 'app', userId: 'u1', reserve: true, additionalTokens: '500' });
    expect(check.allowed).toBe(true);
    expect(check.reservation?.idempotencyKey).toMatch(/^[0-9a-f-]{36}$/);
    const recorded = await client.recordCharge({ accountId: 'app', userId: 'u1', provider: 'openai', model: 'gpt-4o', promptTokens: '100', completionTokens: '200', reservationId: check.reservation!.reservationId });
    expect(recorded.charge?.totalCost?.amount).toBe('0.00225');
    expect(recorded.reservation?.chargeId).toBe(recorded.charge?.chargeId);
    const today = new Date().toISOString().slice(0, 10);
    const usage = await client.call('getDailyUsage', { accountId: 'app', startDate: today, endDate: today, userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '', timeZone: '' });
    expect(usage.totals?.messageCount).toBe('1');
    const other = await client.checkLimits({ accountId: 'app', userId: 'u1', reserve: true });
    await client.releaseReservation('app', other.reservation!.reservationId);
    const twice = await client.releaseReservation('app', other.reservation!.reservationId).catch((e: ServiceError) => e);
    expect((twice as ServiceError).code).toBe(status.FAILED_PRECONDITION);
  });

  it('retries through SIGKILLs of the server with the same idempotency keys: every call answered, no charge twice', async () => {
    const calls = Array.from({ length: 60 }, (_, n) => new Promise((resolve) => setTimeout(resolve, n * 40)).then(() => client.recordCharge({ accountId: 'retry', userId: `u${n % 3}`, provider: 'openai', model: 'gpt-4o-mini', promptTokens: '10', completionTokens: '5' })));
    for (let kill = 0; kill < 2; kill++) {
      await new Promise((resolve) => setTimeout(resolve, 700));
      await server.stop('SIGKILL');
      server = await startServer(tdb.config, { PORT: String(port) });
    }
    const answers = await Promise.all(calls);
    const db = openDatabase(tdb.config);
    try {
      const stored: string[] = await db('charges').where({ account_id: 'retry' }).pluck('charge_id');
      expect(stored.length).toBe(60);
      expect(new Set(answers.map((a) => (a as { charge: { chargeId: string } }).charge.chargeId))).toEqual(new Set(stored));
    } finally {
      await closeDatabase(db);
    }
  });

  it('streams events as an async iterator that resumes across a server restart, none missed or repeated', async () => {
    const abort = new AbortController();
    const seen: ChargeEvent[] = [];
    const consuming = (async () => {
      for await (const event of client.watchCharges({ accountId: 'stream', afterSequence: '0' }, abort.signal)) {
        seen.push(event);
        if (seen.length === 20) abort.abort();
      }
    })();
    for (let n = 0; n < 10; n++) await client.recordCharge({ accountId: 'stream', userId: 'u1', provider: 'openai', model: 'gpt-4o', idempotencyKey: `a${n}` });
    while (seen.length < 10) await new Promise((resolve) => setTimeout(resolve, 20));
    await server.stop('SIGTERM');
    server = await startServer(tdb.config, { PORT: String(port) });
    for (let n = 0; n < 10; n++) await client.recordCharge({ accountId: 'stream', userId: 'u1', provider: 'openai', model: 'gpt-4o', idempotencyKey: `b${n}` });
    await consuming;
    expect(seen.map((e) => e.sequence)).toEqual(Array.from({ length: 20 }, (_, n) => String(n + 1)));
  });

  it('resumes a stream started "from now" that was cut off before its first event from where it started, missing nothing', async () => {
    for (let n = 0; n < 3; n++) await client.recordCharge({ accountId: 'now', userId: 'u1', provider: 'openai', model: 'gpt-4o', idempotencyKey: `before${n}` });
    const other = await startServer(tdb.config);
    const writer = new MeteringClient({ address: other.address, deadlineMs: 2000 });
    try {
      const abort = new AbortController();
      const seen: ChargeEvent[] = [];
      const starts: string[] = [];
      let started: () => void = () => undefined;
      const opened = new Promise<void>((resolve) => (started = resolve));
      const consuming = (async () => {
        const onStart = (after: string) => {
          starts.push(after);
          started();
        };
        for await (const event of client.watchCharges({ accountId: 'now' }, abort.signal, onStart)) {
          seen.push(event);
          if (seen.length === 5) abort.abort();
        }
      })();
      await opened;
      // Cut off without a status (SIGKILL), and charges committed through another process meanwhile.
      await server.stop('SIGKILL');
      for (let n = 0; n < 5; n++) await writer.recordCharge({ accountId: 'now', userId: 'u1', provider: 'openai', model: 'gpt-4o', idempotencyKey: `during${n}` });
      server = await startServer(tdb.config, { PORT: String(port) });
      await Promise.race([consuming, new Promise((resolve) => setTimeout(resolve, 20_000))]);
      abort.abort();
      expect(starts).toEqual(['3', '3']);
      expect(seen.map((e) => e.sequence)).toEqual(['4', '5', '6', '7', '8']);
    } finally {
      writer.close();
      await other.stop();
    }
  });
});

import fc from 'fast-check';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import * as http2 from 'node:http2';
import { connect } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import pg from 'pg';
import { status } from '@grpc/grpc-js';
import {
  BadRequest,
  ChargeType,
  CheckLimitsReason,
  HealthCheckResponse,
  HealthCheckResponse_ServingStatus,
  MeteringServiceClient,
  PricingStatus,
} from '@metering/contracts';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { chargeRequest, checkRequest } from '../support/requests';
import { call, grpcError, statusDetails } from '../support/grpc';
import { HOSTILE } from '../support/hostile';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * End to end: the real server process on 127.0.0.1 and a free port, called
 * through the generated client as a user's backend would, on the embedded
 * database and on Postgres.
 */
const run = promisify(execFile);

const request = chargeRequest;

beforeAll(() => buildServer());
requirePostgresInCi();

describe.each(databaseTargets())('metering server on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let client: MeteringServiceClient;
  const today = new Date().toISOString().slice(0, 10);

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config);
    client = server.client;
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it('records a charge with its exact cost, replays it, and rejects a conflicting reuse with ErrorInfo', async () => {
    const first = await call(client.recordCharge, client, request());
    expect(first.replayed).toBe(false);
    expect(first.charge?.totalCost).toEqual({ amount: '0.00225', currencyCode: 'USD' });
    expect(first.charge?.pricingStatus).toBe(PricingStatus.PRICING_STATUS_PRICED);
    expect(first.charge?.tokens?.totalTokens).toBe('300');

    const again = await call(client.recordCharge, client, request());
    expect(again).toEqual({ charge: first.charge, replayed: true });

    const err = await grpcError(call(client.recordCharge, client, request({ promptTokens: '101' })));
    expect(err.code).toBe(status.ALREADY_EXISTS);
    const { errorInfo, status: st } = statusDetails(err);
    expect(st.code).toBe(status.ALREADY_EXISTS);
    expect(errorInfo?.reason).toBe('IDEMPOTENCY_KEY_REUSED');
    expect(errorInfo?.metadata.fields).toBe('prompt_tokens');
  });

  it('answers hostile input with INVALID_ARGUMENT naming every bad field, and writes nothing', async () => {
    const err = await grpcError(
      call(client.recordCharge, client, request({
        accountId: '', idempotencyKey: 'bad', promptTokens: '9223372036854775807', completionTokens: '-1',
        chargeType: 77 as ChargeType, model: 'x'.repeat(10_000), metadata: { a: 'DROP TABLE charges; --' },
      })),
    );
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    const { badRequest, errorInfo } = statusDetails(err);
    expect(badRequest?.fieldViolations.map((v) => v.field).sort()).toEqual(['account_id', 'charge_type', 'completion_tokens', 'model', 'prompt_tokens']);
    expect(errorInfo?.reason).toBe('INVALID_ARGUMENT');
    expect(err.details).not.toMatch(/select|insert|at .*\.ts/i);
    const usage = await call(client.getDailyUsage, client, { accountId: 'acme', startDate: today, endDate: today, userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '', timeZone: '' });
    expect(usage.totals?.messageCount).toBe('1');
  });

  it('prices one gpt-4o-mini token as 0.00000015 and records an unknown model unpriced', async () => {
    const mini = await call(client.recordCharge, client, request({ idempotencyKey: 'mini', model: 'gpt-4o-mini', promptTokens: '1', completionTokens: '0' }));
    expect(mini.charge?.totalCost?.amount).toBe('0.00000015');
    const unknown = await call(client.recordCharge, client, request({ idempotencyKey: 'unknown', model: 'gpt-99' }));
    expect(unknown.charge?.pricingStatus).toBe(PricingStatus.PRICING_STATUS_UNPRICED);
    expect(unknown.charge?.totalCost).toBeUndefined();
    expect(unknown.charge?.priceVersion).toBe('');
  });

  it('reads daily usage with filters, totals and pages', async () => {
    const base = { accountId: 'acme', startDate: today, endDate: today, userId: '', provider: 'openai', model: '', chargeType: 0, pageSize: 2, pageToken: '', timeZone: '' };
    const first = await call(client.getDailyUsage, client, base);
    expect(first.usage).toHaveLength(2);
    expect(first.nextPageToken).not.toBe('');
    const second = await call(client.getDailyUsage, client, { ...base, pageToken: first.nextPageToken });
    expect(second.usage.map((u) => u.model)).toEqual(['gpt-99']);
    expect(second.nextPageToken).toBe('');
    expect(first.totals).toEqual(second.totals);
    expect(first.totals?.messageCount).toBe('3');
    expect(first.totals?.unpricedMessageCount).toBe('1');
    expect(first.totals?.totalCost?.amount).toBe('0.00225015');
    const bad = await grpcError(call(client.getDailyUsage, client, { ...base, startDate: '2025-02-30', endDate: '2026-13-01' }));
    expect(statusDetails(bad).badRequest?.fieldViolations.map((v) => v.field)).toEqual(['start_date', 'end_date']);
  });

  it('sets, reads and checks limits', async () => {
    const none = await call(client.checkLimits, client, checkRequest());
    expect(none).toMatchObject({ allowed: true, reason: CheckLimitsReason.CHECK_LIMITS_REASON_NO_LIMITS_SET, message: 'No limits set' });
    const set = await call(client.setLimits, client, { accountId: 'acme', userId: 'u1', dailyMessageLimit: '3', dailyTokenLimit: '1000', dailyCostLimit: { amount: '1', currencyCode: 'USD' } });
    expect(set.limits).toMatchObject({ dailyMessageLimit: '3', dailyTokenLimit: '1000', dailyCostLimit: { amount: '1', currencyCode: 'USD' } });
    expect((await call(client.getLimits, client, { accountId: 'acme', userId: 'u1' })).limits).toEqual(set.limits);
    const denied = await call(client.checkLimits, client, checkRequest());
    expect(denied).toMatchObject({ allowed: false, reason: CheckLimitsReason.CHECK_LIMITS_REASON_MESSAGE_LIMIT_REACHED, message: 'Daily message limit reached (3)', date: today });
    expect(denied.userUsage).toEqual({ messageCount: '3', totalTokens: '601', totalCost: { amount: '0.00225015', currencyCode: 'USD' } });
    expect(denied.limits.find((l) => l.limit === '1000')).toMatchObject({ used: '601', remaining: '399', exceeded: false });
  });

  it('sets, lists and deletes markups, and applies them', async () => {
    const set = await call(client.setMarkup, client, { accountId: '', actor: 'e2e', chargeType: ChargeType.CHARGE_TYPE_TOOL, provider: 'openai', model: 'gpt-4o', factor: '2' });
    expect(set.markup).toMatchObject({ chargeType: ChargeType.CHARGE_TYPE_TOOL, factor: '2' });
    const charged = await call(client.recordCharge, client, request({ accountId: 'other', idempotencyKey: 'tool', chargeType: ChargeType.CHARGE_TYPE_TOOL }));
    expect(charged.charge).toMatchObject({ markup: '2', totalCost: { amount: '0.0045', currencyCode: 'USD' }, providerCost: { amount: '0.00225', currencyCode: 'USD' } });
    expect((await call(client.listMarkups, client, { provider: 'openai', accountId: '' })).markups).toHaveLength(1);
    expect((await call(client.deleteMarkup, client, { accountId: '', actor: 'e2e', chargeType: ChargeType.CHARGE_TYPE_TOOL, provider: 'openai', model: 'gpt-4o' })).deleted).toBe(true);
    const zero = await grpcError(call(client.setMarkup, client, { accountId: '', actor: 'e2e', chargeType: ChargeType.CHARGE_TYPE_TOOL, provider: 'openai', model: 'gpt-4o', factor: '-1' }));
    expect(statusDetails(zero).badRequest?.fieldViolations.map((v) => v.field)).toEqual(['factor']);
  });

  it('records a batch with RecordCharges: one result per charge, errors as google.rpc.Status naming the fields', async () => {
    const { results } = await call(client.recordCharges, client, {
      charges: [
        request({ accountId: 'batch', idempotencyKey: 'b1' }),
        request({ accountId: 'batch', idempotencyKey: 'b2', promptTokens: '9223372036854775807', provider: 'OpenAI' }),
        request({ accountId: 'batch', idempotencyKey: 'b1' }),
      ],
    });
    expect(results.map((r) => r.result?.$case)).toEqual(['recorded', 'error', 'recorded']);
    const [first, bad, replay] = results.map((r) => r.result);
    expect(first?.$case === 'recorded' && first.value.charge?.totalCost).toEqual({ amount: '0.00225', currencyCode: 'USD' });
    expect(replay?.$case === 'recorded' && replay.value.replayed).toBe(true);
    if (bad?.$case !== 'error') throw new Error('expected an error');
    expect(bad.value.code).toBe(status.INVALID_ARGUMENT);
    const details = bad.value.details.filter((d) => d.typeUrl === 'type.googleapis.com/google.rpc.BadRequest').map((d) => BadRequest.decode(d.value));
    expect(details[0].fieldViolations.map((v) => v.field).sort()).toEqual(['prompt_tokens', 'provider']);
    const empty = await grpcError(call(client.recordCharges, client, { charges: [] }));
    expect(statusDetails(empty).badRequest?.fieldViolations.map((v) => v.field)).toEqual(['charges']);
  });

  it('answers 300 generated hostile RecordCharge calls over gRPC with INVALID_ARGUMENT naming every bad field, and writes nothing', async () => {
    // Only values the wire can carry: an int64 is always a 64-bit integer there, so out of range, not "NaN".
    const wireInt = ['-1', '1000000000001', '9223372036854775807', '-9223372036854775808'];
    const fields: Record<string, [string, unknown[]]> = {
      accountId: ['account_id', HOSTILE.requiredId], userId: ['user_id', HOSTILE.requiredId], idempotencyKey: ['idempotency_key', HOSTILE.key],
      provider: ['provider', HOSTILE.provider], model: ['model', HOSTILE.model], chargeType: ['charge_type', HOSTILE.enum], requestType: ['request_type', HOSTILE.enum],
      promptTokens: ['prompt_tokens', wireInt], completionTokens: ['completion_tokens', wireInt], callCount: ['call_count', wireInt], reference: ['reference', HOSTILE.text],
    };
    const usage = () => call(client.getDailyUsage, client, { accountId: 'fuzz', startDate: today, endDate: today, userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '', timeZone: '' });
    const arb = fc
      .uniqueArray(fc.constantFrom(...Object.keys(fields)), { minLength: 1, maxLength: 3 })
      .chain((picked) => fc.tuple(fc.constant(picked), fc.tuple(...picked.map((k) => fc.constantFrom(...fields[k][1])))));
    await fc.assert(
      fc.asyncProperty(arb, async ([picked, values]) => {
        const req = request({ accountId: 'fuzz', idempotencyKey: 'fuzz', ...Object.fromEntries(picked.map((k, n) => [k, values[n]])) });
        const err = await grpcError(call(client.recordCharge, client, req));
        const named = statusDetails(err).badRequest?.fieldViolations.map((v) => v.field) ?? [];
        return err.code === status.INVALID_ARGUMENT && picked.every((k) => named.includes(fields[k][0]));
      }),
      { numRuns: 300 },
    );
    expect((await usage()).totals?.messageCount).toBe('0');
  });

  it('keeps serving after raw garbage, a malformed HTTP/2 stream, an invalid protobuf frame and an oversized message', async () => {
    const send = (bytes: Buffer) =>
      new Promise<void>((resolve) => {
        const socket = connect(server.port, '127.0.0.1', () => socket.end(bytes));
        socket.on('error', () => resolve());
        socket.on('close', () => resolve());
        socket.setTimeout(2000, () => socket.destroy());
      });
    await send(randomBytes(64 * 1024));
    await send(Buffer.concat([Buffer.from('PRI * HTTP/2.0\r\n\r\nSM\r\n\r\n'), randomBytes(4096)]));
    // A well-formed gRPC call whose message is not a RecordChargeRequest: 5 bytes of frame header, then junk.
    const junk = randomBytes(256);
    const frame = Buffer.concat([Buffer.from([0, 0, 0, 1, 0]), junk]);
    frame.writeUInt32BE(junk.length, 1);
    const h2 = http2.connect(`http://127.0.0.1:${server.port}`);
    const stream = h2.request({ ':method': 'POST', ':path': '/metering.v1.MeteringService/RecordCharge', 'content-type': 'application/grpc', te: 'trailers' });
    // The status comes in the trailers, or in the headers of a trailers-only response.
    const grpcStatus = new Promise<number>((resolve, reject) => {
      stream.on('response', (h) => h['grpc-status'] !== undefined && resolve(Number(h['grpc-status'])));
      stream.on('trailers', (h) => resolve(Number(h['grpc-status'])));
      stream.on('error', reject);
      setTimeout(() => reject(new Error('no grpc-status within 5 s')), 5000);
    });
    stream.end(frame);
    stream.resume();
    expect(await grpcStatus).not.toBe(status.OK);
    h2.close();
    const big = await grpcError(call(client.recordCharge, client, request({ accountId: 'garbage', idempotencyKey: 'big', reference: 'x'.repeat(5 * 1024 * 1024) })));
    expect(big.code).toBe(status.RESOURCE_EXHAUSTED);
    const ok = await call(client.recordCharge, client, request({ accountId: 'garbage', idempotencyKey: 'after-garbage' }));
    expect(ok.charge?.totalCost?.amount).toBe('0.00225');
  });

  it('warns at start when the Postgres it uses runs without autovacuum, and only then', async () => {
    const warned = server.logs.some((l) => l.includes('"msg":"autovacuum is OFF on this Postgres'));
    if (!tdb.config.url) return expect(warned).toBe(false); // the embedded database has no autovacuum to turn on
    const admin = new pg.Client({ connectionString: tdb.config.url });
    await admin.connect();
    try {
      const { rows } = await admin.query(`SHOW autovacuum`);
      expect(warned).toBe((rows[0] as { autovacuum: string }).autovacuum === 'off');
    } finally {
      await admin.end();
    }
  });

  it('serves grpc.health.v1 Check and Watch', async () => {
    for (const service of ['', 'metering.v1.MeteringService']) {
      const res = await call(server.health.check, server.health, { service });
      expect(res.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
    }
    const first = await new Promise<HealthCheckResponse>((resolve, reject) => {
      const stream = server.health.watch({ service: 'metering.v1.MeteringService' });
      stream.once('data', (d: HealthCheckResponse) => {
        stream.cancel();
        resolve(d);
      });
      stream.once('error', (e: { code?: number }) => (e.code === status.CANCELLED ? undefined : reject(e)));
    });
    expect(first.status).toBe(HealthCheckResponse_ServingStatus.SERVING);
  });

  it('serves reflection: buf curl lists and calls the service with no proto files', async () => {
    const buf = join(ROOT, 'node_modules', '.bin', 'buf');
    const base = ['curl', '--protocol', 'grpc', '--http2-prior-knowledge'];
    const { stdout: services } = await run(buf, [...base, '--list-services', `http://${server.address}`]);
    expect(services.split('\n')).toEqual(expect.arrayContaining(['metering.v1.MeteringService', 'grpc.health.v1.Health']));
    const { stdout } = await run(buf, [
      ...base, '-d', JSON.stringify({ account_id: 'acme', user_id: 'u1', idempotency_key: 'via-buf-curl', provider: 'openai', model: 'gpt-4o', prompt_tokens: 100, completion_tokens: 200 }),
      `http://${server.address}/metering.v1.MeteringService/RecordCharge`,
    ]);
    expect(JSON.parse(stdout).charge.totalCost).toEqual({ amount: '0.00225', currencyCode: 'USD' });
  });

  it('keeps acknowledged charges across a restart and exits cleanly on SIGTERM', async () => {
    expect(await server.stop('SIGTERM')).toBe(0);
    server = await startServer(tdb.config);
    client = server.client;
    const again = await call(client.recordCharge, client, request());
    expect(again.replayed).toBe(true);
    const usage = await call(client.getDailyUsage, client, { accountId: 'acme', startDate: today, endDate: today, userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '', timeZone: '' });
    expect(usage.totals?.messageCount).toBe('4');
  });
});

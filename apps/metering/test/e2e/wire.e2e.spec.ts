import { Client, credentials, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import { MeteringClient } from '@metering/client';
import { CheckLimitsRequest, MAX_MESSAGE_BYTES, RecordChargeRequest, RecordChargesRequest, RecordChargesResponse, ReservationEstimate, WatchChargesRequest } from '@metering/contracts';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { call, grpcError, statusDetails } from '../support/grpc';
import { chargeRequest, checkRequest } from '../support/requests';
import { buildServer, ServerProcess, startServer } from '../support/server-process';
import { longVarint, nestedGroups, nestedMetadata, withBytes } from '../support/wire-bytes';

/**
 * End to end, on the wire: the real server on a real port sent request bytes
 * that the generated client cannot produce (through a grpc-js client whose
 * serializer passes bytes through). Invalid UTF-8 in any string and
 * malformed protobuf are INVALID_ARGUMENT naming the field, for unary and
 * server-streaming RPCs, and nothing is written. And through the generated
 * client and libs/client: no answer is larger than a client accepts.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

const path = (method: string) => `/metering.v1.MeteringService/${method}`;
const bytesIn = (b: Buffer) => b;

describe.each(databaseTargets())('request bytes on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let raw: Client;
  const today = new Date().toISOString().slice(0, 10);

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config);
    raw = new Client(server.address, credentials.createInsecure());
  });

  afterAll(async () => {
    raw?.close();
    await server?.stop();
    await tdb?.drop();
  });

  /** A unary call with these exact request bytes; resolves to the error it fails with. */
  const unaryError = (method: string, bytes: Uint8Array) =>
    new Promise<ServiceError>((resolve, reject) =>
      raw.makeUnaryRequest(path(method), bytesIn, bytesIn, Buffer.from(bytes), new Metadata(), { deadline: Date.now() + 10_000 }, (err) =>
        err ? resolve(err) : reject(new Error(`${method} succeeded`)),
      ),
    );
  /** A server-streaming call with these exact request bytes; resolves to the error the stream ends with. */
  const streamError = (method: string, bytes: Uint8Array) =>
    new Promise<ServiceError>((resolve, reject) => {
      const stream = raw.makeServerStreamRequest(path(method), bytesIn, bytesIn, Buffer.from(bytes), new Metadata(), { deadline: Date.now() + 10_000 });
      stream.on('data', () => reject(new Error(`${method} sent a message`)));
      stream.on('error', resolve);
      stream.on('end', () => reject(new Error(`${method} ended without an error`)));
    });
  const messagesOf = async (accountId: string) =>
    (await call(server.client.getDailyUsage, server.client, { accountId, startDate: today, endDate: today, userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '', timeZone: '' })).totals
      ?.messageCount;

  const expectInvalid = (err: ServiceError, field: string, description: RegExp) => {
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(err.details).toMatch(/^invalid request: /);
    const { badRequest, errorInfo } = statusDetails(err);
    expect(badRequest?.fieldViolations).toEqual([{ field, description: expect.stringMatching(description) }]);
    expect(errorInfo?.reason).toBe('INVALID_ARGUMENT');
  };

  const watch = (over: Partial<WatchChargesRequest>) => WatchChargesRequest.encode({ accountId: 'wire', afterSequence: '0', userId: '', provider: '', model: '', ...over }).finish();
  const charge = (over: Partial<RecordChargeRequest>) => RecordChargeRequest.encode(chargeRequest({ accountId: 'wire', ...over })).finish();

  describe('invalid UTF-8 is INVALID_ARGUMENT naming the field, never stored as U+FFFD', () => {
    it('the issue\'s keys 6bff, 6bfe, 6bc0 are three refusals, not one charge and two replays of it', async () => {
      for (const key of [[0x6b, 0xff], [0x6b, 0xfe], [0x6b, 0xc0]]) {
        expectInvalid(await unaryError('RecordCharge', withBytes(charge({ accountId: 'utf8', idempotencyKey: '#?' }), '#?', Uint8Array.from(key))), 'idempotency_key', /^must be valid UTF-8$/);
      }
      expect(await messagesOf('utf8')).toBe('0');
      // What a lenient decoder would have stored them as is a key like any other: recorded once, fresh.
      const fresh = await call(server.client.recordCharge, server.client, chargeRequest({ accountId: 'utf8', idempotencyKey: 'k\uFFFD' }));
      expect(fresh.replayed).toBe(false);
      expect(await messagesOf('utf8')).toBe('1');
    });

    it('model, session key and metadata of RecordCharge; charges[3] of RecordCharges; estimate.model of CheckLimits; a WatchCharges filter', async () => {
      const bad = Uint8Array.of(0x6b, 0xff);
      expectInvalid(await unaryError('RecordCharge', withBytes(charge({ accountId: 'utf8', model: 'g#' }), 'g#', bad)), 'model', /UTF-8/);
      expectInvalid(await unaryError('RecordCharge', withBytes(charge({ accountId: 'utf8', sessionKey: 's#' }), 's#', bad)), 'session_key', /UTF-8/);
      expectInvalid(await unaryError('RecordCharge', withBytes(charge({ accountId: 'utf8', metadata: { 'm#': 'v' } }), 'm#', bad)), 'metadata', /UTF-8 keys/);
      expectInvalid(await unaryError('RecordCharge', withBytes(charge({ accountId: 'utf8', metadata: { m: ['v#'] } }), 'v#', bad)), 'metadata["m"][0]', /UTF-8/);
      const batch = RecordChargesRequest.encode({ charges: [0, 1, 2, 3, 4].map((i) => chargeRequest({ accountId: 'utf8', idempotencyKey: i === 3 ? 'b#' : `batch-${i}` })) }).finish();
      expectInvalid(await unaryError('RecordCharges', withBytes(batch, 'b#', bad)), 'charges[3].idempotency_key', /^must be valid UTF-8$/);
      const check = CheckLimitsRequest.encode(checkRequest({ accountId: 'utf8', estimate: ReservationEstimate.fromPartial({ provider: 'openai', model: 'e#', chargeType: 0, promptTokens: '1', completionTokens: '1', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0' }) })).finish();
      expectInvalid(await unaryError('CheckLimits', withBytes(check, 'e#', bad)), 'estimate.model', /UTF-8/);
      expectInvalid(await streamError('WatchCharges', withBytes(watch({ accountId: 'utf8', model: 'w#' }), 'w#', bad)), 'model', /UTF-8/);
      // None of the batch was written either.
      expect(await messagesOf('utf8')).toBe('1');
    });
  });

  describe('malformed protobuf is INVALID_ARGUMENT with a clear message, not INTERNAL', () => {
    it('nested too deeply: metadata 34 levels (RecordCharge), groups 101 levels in an unknown field (WatchCharges)', async () => {
      expectInvalid(await unaryError('RecordCharge', charge({ metadata: nestedMetadata(34) })), `metadata${'["a"]'.repeat(33)}`, /^is nested too deeply to decode/);
      expectInvalid(await streamError('WatchCharges', Buffer.concat([watch({}), nestedGroups(99, 101)])), '99', /maximum recursion depth/);
    });

    it('an 11-byte varint (prompt_tokens of RecordCharge, after_sequence of WatchCharges)', async () => {
      expectInvalid(await unaryError('RecordCharge', Buffer.concat([charge({}), longVarint(9, 11)])), 'prompt_tokens', /varint longer than 10 bytes/);
      expectInvalid(await streamError('WatchCharges', Buffer.concat([watch({}), longVarint(2, 11)])), 'after_sequence', /varint longer than 10 bytes/);
    });

    it('a truncated length-delimited field (account_id of RecordCharge, model of WatchCharges)', async () => {
      const unary = charge({});
      expectInvalid(await unaryError('RecordCharge', unary.subarray(0, 4)), 'account_id', /^is truncated: 4 bytes long, 2 left/);
      const stream = watch({ model: 'gpt-4o' });
      expectInvalid(await streamError('WatchCharges', stream.subarray(0, stream.length - 1)), 'model', /^is truncated: 6 bytes long, 5 left/);
    });

    it('wrote nothing, logged no internal error, and keeps serving', async () => {
      expect(await messagesOf('wire')).toBe('0');
      expect(server.logs.filter((l) => l.includes('"rpc failed"'))).toEqual([]);
      const ok = await call(server.client.recordCharge, server.client, chargeRequest({ accountId: 'wire', idempotencyKey: 'after-malformed' }));
      expect(ok.charge?.totalCost?.amount).toBe('0.00225');
    });
  });

  describe('no answer is larger than a client accepts', () => {
    // The batch: 1,000 charges with 4 KB of metadata each, a request under 4 MiB.
    const batch = Array.from({ length: 1000 }, (_, i) => chargeRequest({ accountId: 'big', idempotencyKey: `big-${i}`, metadata: { note: 'x'.repeat(4096) } }));

    it('RecordCharges refuses, before writing, a batch whose answer could exceed 4 MiB, naming the limit', async () => {
      expect(RecordChargesRequest.encode({ charges: batch }).finish().length).toBeLessThan(MAX_MESSAGE_BYTES);
      // The generated client, with gRPC's default limits.
      const err = await grpcError(call(server.client.recordCharges, server.client, { charges: batch }));
      expectInvalid(err, 'charges', new RegExp(`^the answer could exceed the ${MAX_MESSAGE_BYTES}-byte message limit .* send fewer charges per call$`));
      expect(await messagesOf('big')).toBe('0');
    });

    it('the same charges in two calls through libs/client are recorded, answered, and replayed on retry', async () => {
      const client = new MeteringClient({ address: server.address, deadlineMs: 30_000 });
      try {
        const halves = [batch.slice(0, 500), batch.slice(500)];
        const answers = [];
        for (const half of halves) answers.push(await client.recordCharges(half));
        expect(answers.flatMap((a) => a.results.map((r) => r.result?.$case))).toEqual(Array(1000).fill('recorded'));
        expect(await messagesOf('big')).toBe('1000');
        // One answer to all of them would have been over the limit: the refusal was needed.
        const sizes = answers.map((a) => RecordChargesResponse.encode(a).finish().length);
        expect(sizes[0] + sizes[1]).toBeGreaterThan(MAX_MESSAGE_BYTES);
        expect(Math.max(...sizes)).toBeLessThan(MAX_MESSAGE_BYTES);
        // A retry of a committed half is read like the first answer: every charge replayed, with its metadata.
        const again = await client.recordCharges(halves[0]);
        expect(again.results.every((r) => r.result?.$case === 'recorded' && r.result.value.replayed && r.result.value.charge?.metadata?.note === 'x'.repeat(4096))).toBe(true);
        expect(await messagesOf('big')).toBe('1000');
      } finally {
        client.close();
      }
    });

    it('libs/client refuses locally a request over the limit the server has', async () => {
      const client = new MeteringClient({ address: server.address, attempts: 1 });
      try {
        const err = await grpcError(client.recordCharge({ accountId: 'big', userId: 'u1', provider: 'openai', model: 'gpt-4o', reference: 'x'.repeat(MAX_MESSAGE_BYTES) }));
        expect(err.code).toBe(status.RESOURCE_EXHAUSTED);
        expect(err.details).toBe(`Attempted to send message with a size larger than ${MAX_MESSAGE_BYTES}`);
      } finally {
        client.close();
      }
    });
  });
});

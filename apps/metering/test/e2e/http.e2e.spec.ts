import { Code, ConnectError, createClient } from '@connectrpc/connect';
import { createConnectTransport } from '@connectrpc/connect-node';
import { status } from '@grpc/grpc-js';
import { meteringServiceDesc } from '@metering/contracts';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TestDatabase, embeddedTarget } from '../support/databases';
import { bearer, call, grpcError, statusDetails } from '../support/grpc';
import { chargeRequest } from '../support/requests';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 19: the API over HTTP/JSON (the Connect protocol) on METERING_HTTP_PORT of the same
 * process: the README's curl examples run as written, the same authentication (API key or
 * operator key as a bearer token), the same errors (google.rpc details as JSON), the same
 * validation, false and 0 kept, and server streaming (the charge stream, exports).
 */
beforeAll(() => buildServer());
const run = promisify(execFile);

/** The README's HTTP/JSON example, as written there. */
function readmeExample(): string {
  const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
  const block = /<!-- http-example:start -->\s*```sh\n([\s\S]*?)```\s*<!-- http-example:end -->/.exec(readme);
  if (!block) throw new Error('README.md has no http-example block');
  return block[1];
}

describe.each(embeddedTarget())('HTTP/JSON (Connect) on $name', (target) => {
  const operatorKey = randomBytes(32).toString('base64url');
  let tdb: TestDatabase;
  let server: ServerProcess;
  let base: string;
  let apiKey: string;
  /** POSTs JSON to an RPC as curl or a browser's fetch does. */
  const post = async (method: string, body: unknown, key = apiKey) => {
    const res = await fetch(`${base}/metering.v1.MeteringService/${method}`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', ...(key ? { authorization: `Bearer ${key}` } : {}) },
      body: JSON.stringify(body),
    });
    return { status: res.status, headers: res.headers, json: (await res.json()) as Record<string, unknown> };
  };

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, { METERING_AUTH: 'keys', METERING_OPERATOR_KEY: operatorKey, METERING_HTTP_PORT: '0' });
    base = server.httpUrl!;
    const created = await call(server.client.createApiKey, server.client, { accountId: 'acme', name: 'backend', scopes: [1, 2, 3] }, bearer(operatorKey));
    apiKey = created.secret;
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it('runs the README curl examples for CheckLimits and RecordCharge as written', async () => {
    const { stdout } = await run('bash', ['-euo', 'pipefail', '-c', readmeExample()], { env: { PATH: process.env.PATH, METERING_HTTP: base, METERING_API_KEY: apiKey } });
    const [check, recorded] = stdout.trim().split('\n').map((line) => JSON.parse(line));
    expect(check).toMatchObject({ allowed: true, reason: 'CHECK_LIMITS_REASON_NO_LIMITS_SET' });
    expect(recorded.replayed).toBe(false);
    expect(recorded.charge).toMatchObject({ accountId: 'acme', userId: 'u1', provider: 'openai', model: 'gpt-4o', pricingStatus: 'PRICING_STATUS_PRICED', totalCost: { amount: '0.0045', currencyCode: 'USD' } });
    // The charge is the same one gRPC reads.
    const viaGrpc = await call(server.client.getCharge, server.client, { accountId: 'acme', chargeId: recorded.charge.chargeId, idempotencyKey: '' }, bearer(apiKey));
    expect(viaGrpc.charge!.idempotencyKey).toBe(recorded.charge.idempotencyKey);
  });

  it('refuses as the README shows', async () => {
    const readme = readFileSync(join(ROOT, 'README.md'), 'utf8');
    const shown = JSON.parse(/<!-- http-refusal:start -->\s*```json\n([\s\S]*?)```/.exec(readme)![1]);
    const answer = await post('RecordCharge', { userId: 'u1', idempotencyKey: 'chatcmpl-9x3', provider: 'openai', model: 'gpt-4o', promptTokens: '-5', completionTokens: '200' });
    expect(answer.status).toBe(400);
    const elided = JSON.parse(JSON.stringify(answer.json).replace(/"value":"[^"]*"/g, '"value":"..."').replace(/"request_id":"[^"]*"/g, '"request_id":"..."'));
    expect(elided).toEqual(shown);
  });

  it('answers in the protobuf JSON mapping with false and 0 kept, and echoes the request id', async () => {
    await call(server.client.putLimit, server.client, { accountId: 'acme', userId: '', period: 1, measure: 1, amount: '1', enforcement: 1 }, bearer(apiKey));
    const denied = await post('CheckLimits', { userId: 'u9' });
    expect(denied.status).toBe(200);
    expect(denied.json).toMatchObject({ allowed: false, reason: 'CHECK_LIMITS_REASON_MESSAGE_LIMIT_REACHED' });
    const limits = await post('ListLimits', {});
    expect((limits.json.limits as Array<Record<string, unknown>>)[0]).toMatchObject({ reserved: '0', exceeded: true, limit: { enforcement: 'LIMIT_ENFORCEMENT_HARD' } });
    const res = await fetch(`${base}/metering.v1.MeteringService/GetAccount`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}`, 'x-request-id': 'req-42' }, body: '{}' });
    expect(res.headers.get('x-request-id')).toBe('req-42');
  });

  it('refuses with the same errors as gRPC: codes, messages and google.rpc details as JSON', async () => {
    const bad = { userId: 'u1', idempotencyKey: 'bad', provider: 'openai', model: 'gpt-4o', promptTokens: '-5', completionTokens: '99999999999999' };
    const http = await post('RecordCharge', bad);
    const grpc = await grpcError(call(server.client.recordCharge, server.client, chargeRequest({ accountId: '', ...bad }), bearer(apiKey)));
    expect(http.status).toBe(400);
    expect(http.json.code).toBe('invalid_argument');
    expect(http.json.message).toBe(grpc.details);
    const details = http.json.details as Array<{ type: string; value: string; debug: Record<string, unknown> }>;
    expect(details.map((d) => d.type)).toEqual(['google.rpc.BadRequest', 'google.rpc.ErrorInfo']);
    expect(details[0].debug).toEqual({ fieldViolations: statusDetails(grpc).badRequest!.fieldViolations });
    expect(details[1].debug).toMatchObject({ reason: 'INVALID_ARGUMENT', domain: 'metering.v1' });
    // Nothing was written.
    expect((await post('GetCharge', { idempotencyKey: 'bad' })).json.code).toBe('not_found');

    expect((await post('GetDailyUsage', { startDate: '2026-12-01', endDate: '2026-12-01' }, '')).json.code).toBe('unauthenticated');
    expect((await post('GetDailyUsage', { startDate: '2026-12-01', endDate: '2026-12-01' }, 'mk.wrong')).status).toBe(401);
    const latin1 = await fetch(`${base}/metering.v1.MeteringService/GetAccount`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: 'Bearer caf\u00e9' }, body: '{}' });
    expect(latin1.status).toBe(401);
    const other = await post('GetDailyUsage', { accountId: 'other', startDate: '2026-12-01', endDate: '2026-12-01' });
    expect([other.status, other.json.code]).toEqual([403, 'permission_denied']);
    const asOperator = await post('GetDailyUsage', { accountId: 'other', startDate: '2026-12-01', endDate: '2026-12-01' }, operatorKey);
    expect(asOperator.status).toBe(200);
    // Malformed JSON and unknown fields are refused by the protocol layer, before any handler.
    const unknown = await post('RecordCharge', { userId: 'u1', bogusField: 1 });
    expect([unknown.status, unknown.json.code]).toEqual([400, 'invalid_argument']);
    expect(String(unknown.json.message)).toContain('bogusField');
    const broken = await fetch(`${base}/metering.v1.MeteringService/RecordCharge`, { method: 'POST', headers: { 'content-type': 'application/json', authorization: `Bearer ${apiKey}` }, body: '{"userId": ' });
    expect([broken.status, ((await broken.json()) as { code: string }).code]).toEqual([400, 'invalid_argument']);
    const wrongType = await post('RecordCharge', { userId: 'u1', idempotencyKey: 'x', provider: 'openai', model: 'gpt-4o', promptTokens: 'lots' });
    expect([wrongType.status, wrongType.json.code]).toEqual([400, 'invalid_argument']);
    expect(String(wrongType.json.message)).toContain('prompt_tokens');
    expect(grpc.code).toBe(status.INVALID_ARGUMENT);
  });

  it('serves the same RPCs to a Connect client, the charge stream and exports included (server streaming)', async () => {
    // A Connect client built from the contract's descriptors at run time (the methods are untyped here).
    const transport = createConnectTransport({ baseUrl: base, httpVersion: '1.1', interceptors: [(next) => (req) => (req.header.set('authorization', `Bearer ${apiKey}`), next(req))] });
    const client = createClient(meteringServiceDesc, transport) as unknown as Record<string, (request: object, options?: { signal?: AbortSignal }) => AsyncIterable<unknown>>;
    const abort = new AbortController();
    const events: Array<{ kind: number; charge?: { idempotencyKey: string } }> = [];
    const watching = (async () => {
      for await (const m of client.watchCharges({ afterSequence: 0n }, { signal: abort.signal }) as AsyncIterable<{ event: { kind: number; charge?: { idempotencyKey: string } } }>) {
        events.push(m.event);
        if (events.some((e) => e.charge?.idempotencyKey === 'live')) break;
      }
    })();
    await call(server.client.recordCharge, server.client, chargeRequest({ accountId: '', idempotencyKey: 'live' }), bearer(apiKey));
    await watching;
    abort.abort();
    expect(events.map((e) => e.charge?.idempotencyKey)).toContain('live');

    const today = new Date().toISOString().slice(0, 10);
    let text = '';
    for await (const chunk of client.exportCharges({ startDate: today, endDate: today, format: 1 }) as AsyncIterable<{ data: Uint8Array }>) text += Buffer.from(chunk.data).toString();
    expect(text.split('\n')[0]).toMatch(/^charge_id,account_id,/);
    expect(text).toContain(',live,');
    const refused = await (async () => {
      for await (const chunk of client.exportCharges({ startDate: today, endDate: today }) as AsyncIterable<unknown>) void chunk;
    })().catch((e: unknown) => e);
    expect(refused).toBeInstanceOf(ConnectError);
    expect((refused as ConnectError).code).toBe(Code.InvalidArgument);
    expect((refused as ConnectError).rawMessage).toContain('format');
  });
});

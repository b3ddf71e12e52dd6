import { ExportResultCode, type ExportResult } from '@opentelemetry/core';
import { OTLPTraceExporter } from '@opentelemetry/exporter-trace-otlp-http';
import { ProtobufTraceSerializer } from '@opentelemetry/otlp-transformer';
import { resourceFromAttributes } from '@opentelemetry/resources';
import { InMemorySpanExporter, type ReadableSpan, SimpleSpanProcessor, TracerProvider } from '@opentelemetry/sdk-trace';
import { SpanStatusCode, type Attributes } from '@opentelemetry/api';
import * as pb from '@metering/contracts';
import { randomBytes } from 'node:crypto';
import { bearer, call } from '../support/grpc';
import { describeEachOf, TestDatabase, embeddedTarget } from '../support/databases';
import { buildServer, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 18: OpenTelemetry GenAI spans ingested. The official OpenTelemetry JS SDK makes real
 * spans with the GenAI attributes and its OTLP/HTTP exporter sends them (JSON) to the real
 * server's HTTP port (POST /v1/traces) with the account's API key in the headers; the same SDK's
 * protobuf serializer (the one its protobuf exporter uses) sends binary OTLP. Each GenAI span is
 * one charge, priced as RecordCharge prices the same counts; sending it again records nothing
 * new (idempotent by trace and span id); spans without a user are reported in partial_success;
 * other spans are ignored; a bad body is 400, a missing key 401.
 */
beforeAll(() => buildServer());

const today = () => new Date().toISOString().slice(0, 10);

describeEachOf(embeddedTarget(), 'pglite')('OTLP GenAI ingestion on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let secret: string;
  const operatorKey = randomBytes(32).toString('base64url');

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, { METERING_AUTH: 'keys', METERING_OPERATOR_KEY: operatorKey, METERING_HTTP_PORT: '0', METERING_OTLP_USER_ATTRIBUTE: 'app.user_id' });
    const created = await call(server.client.createApiKey, server.client, { accountId: 'otel-app', name: 'otlp', scopes: [pb.ApiKeyScope.API_KEY_SCOPE_RECORD, pb.ApiKeyScope.API_KEY_SCOPE_READ] }, bearer(operatorKey));
    secret = created.secret;
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  /** Real spans from the SDK: a chat call per attribute set, plus one span that is no GenAI call. */
  function makeSpans(calls: Attributes[], service = 'chat-backend'): ReadableSpan[] {
    const memory = new InMemorySpanExporter();
    const provider = new TracerProvider({ resource: resourceFromAttributes({ 'service.name': service }), spanProcessors: [new SimpleSpanProcessor({ exporter: memory } as never)] });
    const tracer = provider.getTracer('otlp-test');
    tracer.startActiveSpan('GET /answer', (parent) => {
      for (const attributes of calls) {
        const span = tracer.startSpan(`chat ${attributes['gen_ai.request.model']}`, { attributes });
        if (attributes['test.error']) span.setStatus({ code: SpanStatusCode.ERROR, message: 'rate limited' });
        span.end();
      }
      parent.end();
    });
    return memory.getFinishedSpans();
  }

  const listCharges = async () => (await call(server.client.listCharges, server.client, pb.ListChargesRequest.fromPartial({ startDate: today(), endDate: today(), pageSize: 1000 }), bearer(secret))).charges;

  it('records the SDK exporter\'s GenAI spans (OTLP/JSON) as charges priced like RecordCharge, once each', async () => {
    const spans = makeSpans([
      { 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o', 'gen_ai.response.model': 'gpt-4o-2024-08-06', 'gen_ai.usage.input_tokens': 1490, 'gen_ai.usage.output_tokens': 310, 'gen_ai.usage.cache_read.input_tokens': 1024, 'app.user_id': 'alice' },
      { 'gen_ai.provider.name': 'anthropic', 'gen_ai.request.model': 'claude-sonnet-4-5', 'gen_ai.usage.input_tokens': 25, 'gen_ai.usage.output_tokens': 450, 'gen_ai.usage.cache_read_input_tokens': 3000, 'gen_ai.usage.cache_creation_input_tokens': 1200, 'app.user_id': 'bob', 'test.error': true },
    ]);
    const exporter = new OTLPTraceExporter({ url: `${server.httpUrl}/v1/traces`, headers: { authorization: `Bearer ${secret}` } });
    const send = () => new Promise<ExportResult>((resolve) => exporter.export(spans, resolve));
    expect((await send()).code).toBe(ExportResultCode.SUCCESS);
    expect((await send()).code).toBe(ExportResultCode.SUCCESS); // the exporter's retry, or the same spans twice
    await exporter.shutdown();

    const charges = await listCharges();
    const genai = spans.filter((s) => s.attributes['gen_ai.usage.input_tokens'] !== undefined);
    expect(charges.map((c) => c.idempotencyKey).sort()).toEqual(genai.map((s) => `otel:${s.spanContext().traceId}:${s.spanContext().spanId}`).sort());
    const byUser = Object.fromEntries(charges.map((c) => [c.userId, c]));
    expect(byUser.alice).toMatchObject({ provider: 'openai', model: 'gpt-4o-2024-08-06' });
    expect(byUser.bob).toMatchObject({ provider: 'anthropic', model: 'claude-sonnet-4-5', hadError: true, errorMessage: 'rate limited' });

    // The same calls sent as counts cost what the spans cost (the server prices both).
    const counts = async (req: Partial<pb.RecordChargeRequest>) =>
      (await call(server.client.recordCharge, server.client, pb.RecordChargeRequest.fromPartial({ userId: 'x', idempotencyKey: randomBytes(8).toString('hex'), ...req }), bearer(secret))).charge!;
    const alice = await counts({ provider: 'openai', model: 'gpt-4o-2024-08-06', promptTokens: '1490', completionTokens: '310', cachedPromptTokens: '1024' });
    // Anthropic's input_tokens leave the cache out: the receiver adds them, as the usage object mapping does.
    const bob = await counts({ provider: 'anthropic', model: 'claude-sonnet-4-5', usage: { input_tokens: 25, output_tokens: 450, cache_read_input_tokens: 3000, cache_creation_input_tokens: 1200 }, usageFormat: pb.UsageFormat.USAGE_FORMAT_ANTHROPIC_MESSAGES });
    expect(byUser.alice.totalCost?.amount).toBe(alice.totalCost?.amount);
    expect(byUser.bob.totalCost?.amount).toBe(bob.totalCost?.amount);
    expect(byUser.alice.pricingStatus).toBe(pb.PricingStatus.PRICING_STATUS_PRICED);
  });

  it('takes binary OTLP (the SDK\'s protobuf serializer); reports spans without a user in partial_success; ignores other spans', async () => {
    const before = (await listCharges()).length;
    const spans = makeSpans([
      { 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o-mini', 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 5, 'app.user_id': 'carol' },
      { 'gen_ai.system': 'openai', 'gen_ai.request.model': 'gpt-4o-mini', 'gen_ai.usage.input_tokens': 10, 'gen_ai.usage.output_tokens': 5 },
      { 'gen_ai.system': 'acme-llm', 'gen_ai.request.model': 'house-model', 'gen_ai.usage.input_tokens': 7, 'gen_ai.usage.output_tokens': 3, 'app.user_id': 'carol' },
    ]);
    const body = ProtobufTraceSerializer.serializeRequest(spans)!;
    const post = (headers: Record<string, string>, data: Uint8Array | string = body) =>
      fetch(`${server.httpUrl}/v1/traces`, { method: 'POST', headers: { 'content-type': 'application/x-protobuf', ...headers }, body: data });
    const res = await post({ authorization: `Bearer ${secret}` });
    expect(res.status).toBe(200);
    const answer = Buffer.from(await res.arrayBuffer());
    // partial_success (field 1): rejected_spans 1, and the message names the user attribute.
    expect(answer.toString('utf8')).toContain('app.user_id');
    expect(answer[0]).toBe(0x0a);
    const charges = await listCharges();
    expect(charges.length - before).toBe(2);
    const unpriced = charges.find((c) => c.model === 'house-model');
    expect(unpriced?.pricingStatus).toBe(pb.PricingStatus.PRICING_STATUS_UNPRICED);

    const again = await post({ authorization: `Bearer ${secret}` });
    expect(again.status).toBe(200);
    expect((await listCharges()).length).toBe(charges.length);

    expect((await post({})).status).toBe(401);
    const bad = await post({ authorization: `Bearer ${secret}` }, 'not protobuf at all \u00ff');
    expect(bad.status).toBe(400);
    const json = await fetch(`${server.httpUrl}/v1/traces`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', authorization: `Bearer ${secret}` },
      body: JSON.stringify({ resourceSpans: [{ scopeSpans: [{ spans: [{ traceId: 'ab'.repeat(16), spanId: 'cd'.repeat(8), name: 'chat', startTimeUnixNano: '1', endTimeUnixNano: '2', attributes: [{ key: 'gen_ai.system', value: { stringValue: 'openai' } }, { key: 'gen_ai.request.model', value: { stringValue: 'gpt-4o' } }, { key: 'gen_ai.usage.input_tokens', value: { doubleValue: 1.5 } }, { key: 'app.user_id', value: { stringValue: 'dave' } }] }] }] }] }),
    });
    expect(json.status).toBe(200);
    const partial = (await json.json()) as { partialSuccess?: { rejectedSpans: string; errorMessage: string } };
    expect(partial.partialSuccess?.rejectedSpans).toBe('1');
    expect(partial.partialSuccess?.errorMessage).toContain('gen_ai.usage.input_tokens');
    expect((await listCharges()).length).toBe(charges.length);
  });
});

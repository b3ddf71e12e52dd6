import { Metadata, status } from '@grpc/grpc-js';
import { createServer, type Server } from 'node:http';
import { WatchChargesRequest, WatchChargesResponse } from '@metering/contracts';
import { TestDatabase, embeddedTarget } from '../support/databases';
import { call, grpcError } from '../support/grpc';
import { chargeRequest, checkRequest } from '../support/requests';
import { buildServer, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 7, observability, end to end: Prometheus metrics on their HTTP port,
 * OpenTelemetry spans exported over OTLP/HTTP to a collector stand-in (an
 * HTTP server of this test) and continuing the caller's W3C trace, and
 * structured logs carrying the caller's request id.
 */
beforeAll(() => buildServer());

interface OtlpSpan {
  traceId: string;
  parentSpanId?: string;
  name: string;
  attributes: Array<{ key: string; value: { stringValue?: string; intValue?: string | number } }>;
}

/** One series' value in a Prometheus text exposition (NaN when absent). */
const seriesValue = (text: string, series: string) => Number(new RegExp(`^${series.replace(/[{}]/g, '\\$&')} (\\S+)$`, 'm').exec(text)?.[1]);

describe.each(embeddedTarget())('observability on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let collector: Server;
  const spans: OtlpSpan[] = [];
  let metricsUrl: string;

  beforeAll(async () => {
    collector = createServer((req, res) => {
      let body = '';
      req.on('data', (d: Buffer) => (body += d.toString()));
      req.on('end', () => {
        const payload = JSON.parse(body) as { resourceSpans: Array<{ scopeSpans: Array<{ spans: OtlpSpan[] }> }> };
        for (const rs of payload.resourceSpans) for (const ss of rs.scopeSpans) spans.push(...ss.spans);
        res.writeHead(200, { 'content-type': 'application/json' }).end('{}');
      });
    });
    await new Promise<void>((resolve) => collector.listen(0, '127.0.0.1', resolve));
    const { port } = collector.address() as { port: number };
    tdb = await target.create();
    server = await startServer(tdb.config, {
      METERING_METRICS_PORT: '0',
      METERING_HTTP_PORT: '0',
      METERING_TRACING: 'otlp',
      OTEL_EXPORTER_OTLP_TRACES_ENDPOINT: `http://127.0.0.1:${port}/v1/traces`,
      OTEL_EXPORTER_OTLP_PROTOCOL: 'http/json',
      LOG_LEVEL: 'debug',
      METERING_EVENT_RETENTION_SECONDS: '1',
      METERING_EVENT_PRUNE_MS: '200',
    });
    const line = server.logs.map((l) => (l.startsWith('{') ? (JSON.parse(l) as { msg?: string; metrics_port?: number }) : {})).find((l) => l.msg === 'metrics');
    metricsUrl = `http://127.0.0.1:${line?.metrics_port}/metrics`;
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
    await new Promise((resolve) => collector?.close(resolve));
  });

  it('exports RPC counts and latency by method and code, write batches, charges, reservations, pool and process metrics', async () => {
    const client = server.client;
    await call(client.recordCharge, client, chargeRequest({ idempotencyKey: 'm1' }));
    await call(client.recordCharge, client, chargeRequest({ idempotencyKey: 'm2', provider: 'selfhosted', model: 'nothing' }));
    expect((await grpcError(call(client.recordCharge, client, chargeRequest({ idempotencyKey: '' })))).code).toBe(status.INVALID_ARGUMENT);
    await call(client.checkLimits, client, checkRequest({ reserve: true, idempotencyKey: 'hold-1' }));
    const res = await fetch(metricsUrl);
    expect(res.headers.get('content-type')).toContain('text/plain');
    const text = await res.text();
    const value = (series: string) => seriesValue(text, series);
    expect(value('metering_rpc_requests_total{method="RecordCharge",code="OK"}')).toBe(2);
    expect(value('metering_rpc_requests_total{method="RecordCharge",code="INVALID_ARGUMENT"}')).toBe(1);
    expect(value('metering_rpc_requests_total{method="CheckLimits",code="OK"}')).toBe(1);
    expect(value('metering_rpc_duration_seconds_count{method="RecordCharge",code="OK"}')).toBe(2);
    expect(value('metering_charges_recorded_total{pricing_status="priced"}')).toBe(1);
    expect(value('metering_charges_recorded_total{pricing_status="unpriced"}')).toBe(1);
    expect(value('metering_write_batch_charges_sum')).toBe(2);
    expect(value('metering_write_transaction_duration_seconds_count{outcome="commit"}')).toBe(2);
    expect(value('metering_reservations_held')).toBe(1);
    expect(value('metering_db_pool_connections{state="used"}')).toBeGreaterThanOrEqual(0);
    expect(value('metering_process_resident_memory_bytes')).toBeGreaterThan(10_000_000);
    expect((await fetch(metricsUrl.replace('/metrics', '/other'))).status).toBe(404);
  });

  it('counts open streams, the events they sent, and the events the retention sweep deleted', async () => {
    const client = server.client;
    const scrape = async () => {
      const text = await (await fetch(metricsUrl)).text();
      return (series: string) => seriesValue(text, series);
    };
    const stream = client.watchCharges(WatchChargesRequest.fromPartial({ accountId: 'acme' }), new Metadata());
    const first = new Promise<WatchChargesResponse>((resolve) => stream.once('data', resolve));
    stream.on('error', () => undefined);
    await new Promise((resolve) => stream.once('metadata', resolve)); // the stream is open on the server
    await call(client.recordCharge, client, chargeRequest({ idempotencyKey: 'streamed' }));
    expect((await first).event?.charge?.idempotencyKey).toBe('streamed');
    let value = await scrape();
    expect(value('metering_streams_open')).toBe(1);
    expect(value('metering_stream_messages_total{method="WatchCharges"}')).toBe(1);
    stream.cancel();
    // Every event of this server is older than 1 s soon; the sweep runs every 200 ms.
    const deadline = Date.now() + 20_000;
    while (((await scrape())('metering_events_pruned_total') || 0) < 3 && Date.now() < deadline) await new Promise((r) => setTimeout(r, 200));
    value = await scrape();
    expect(value('metering_events_pruned_total')).toBe(3); // m1, m2 (the rejected call wrote nothing) and "streamed"
    expect(value('metering_streams_open')).toBe(0);
  });

  it('exports a server span per RPC over OTLP, continuing the caller\'s trace, and logs the caller\'s request id', async () => {
    const traceId = '4bf92f3577b34da6a3ce929d0e0e4736';
    const md = new Metadata();
    md.set('traceparent', `00-${traceId}-00f067aa0ba902b7-01`);
    md.set('x-request-id', 'req-observed-1');
    const client = server.client;
    await call(client.getAccount, client, { accountId: 'acme' }, md);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !spans.some((s) => s.traceId === traceId)) await new Promise((r) => setTimeout(r, 100));
    const span = spans.find((s) => s.traceId === traceId);
    expect(span).toMatchObject({ name: 'metering.v1.MeteringService/GetAccount', parentSpanId: '00f067aa0ba902b7' });
    const attrs = Object.fromEntries(span!.attributes.map((a) => [a.key, a.value.stringValue ?? Number(a.value.intValue)]));
    expect(attrs).toMatchObject({ 'rpc.system': 'grpc', 'rpc.method': 'GetAccount', 'rpc.grpc.status_code': 0, 'metering.request_id': 'req-observed-1' });
    expect(spans.some((s) => s.name === 'metering.v1.MeteringService/RecordCharge')).toBe(true);
    const logged = server.logs.filter((l) => l.includes('req-observed-1')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toEqual([expect.objectContaining({ level: 'debug', msg: 'rpc', method: 'GetAccount', code: 'OK', request_id: 'req-observed-1' })]);
  });

  it('traces, counts and logs a call over HTTP/JSON (Connect) as it does a gRPC call', async () => {
    const traceId = '0af7651916cd43dd8448eb211c80319c';
    const res = await fetch(`${server.httpUrl}/metering.v1.MeteringService/GetAccount`, {
      method: 'POST',
      headers: { 'content-type': 'application/json', traceparent: `00-${traceId}-b7ad6b7169203331-01`, 'x-request-id': 'req-over-http' },
      body: JSON.stringify({ accountId: 'acme' }),
    });
    expect(res.status).toBe(200);
    const deadline = Date.now() + 10_000;
    while (Date.now() < deadline && !spans.some((s) => s.traceId === traceId)) await new Promise((r) => setTimeout(r, 100));
    const span = spans.find((s) => s.traceId === traceId);
    expect(span).toMatchObject({ name: 'metering.v1.MeteringService/GetAccount', parentSpanId: 'b7ad6b7169203331' });
    const attrs = Object.fromEntries(span!.attributes.map((a) => [a.key, a.value.stringValue ?? Number(a.value.intValue)]));
    expect(attrs).toMatchObject({ 'rpc.method': 'GetAccount', 'rpc.transport': 'connect', 'rpc.grpc.status_code': 0, 'metering.request_id': 'req-over-http' });
    const logged = server.logs.filter((l) => l.includes('req-over-http')).map((l) => JSON.parse(l) as Record<string, unknown>);
    expect(logged).toEqual([expect.objectContaining({ msg: 'rpc', method: 'GetAccount', transport: 'connect', code: 'OK' })]);
    const metrics = await (await fetch(metricsUrl)).text();
    expect(metrics).toMatch(/metering_rpc_requests_total\{[^}]*method="GetAccount"[^}]*\} [1-9]/);
  });
});

import { type ClientReadableStream, status } from '@grpc/grpc-js';
import {
  type Charge,
  ChargeType,
  ExportChargesRequest,
  ExportChargesResponse,
  ExportFormat,
  ListChargesRequest,
  type MeteringServiceClient,
  PricingStatus,
  protoJson,
  Charge as PbCharge,
} from '@metering/contracts';
import { readFileSync } from 'node:fs';
import { knex } from 'knex';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { call, grpcError, statusDetails } from '../support/grpc';
import { chargeRequest } from '../support/requests';
import { buildServer, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 19: charges by id (GetCharge by charge id or idempotency key), ListCharges (a date range
 * with filters, paged) and ExportCharges (CSV or JSON lines, streamed), against the real server.
 * On Postgres, an export of 1,000,000 charges (made with SQL) keeps the server's peak RSS bounded.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

/** The server's V8 heap limit (MB) in these tests: well under the size of the big export's file. */
const EXPORT_HEAP_MB = 128;

const listRequest = (over: Partial<ListChargesRequest>) => ListChargesRequest.fromPartial({ accountId: 'acme', startDate: '2026-11-01', endDate: '2026-12-31', ...over });

/** Reads an export to its end, keeping only what `keep` asks for (so a big one is never all in memory here either). */
function readExport(client: MeteringServiceClient, request: Partial<ExportChargesRequest>, keep = true): Promise<{ text: string; bytes: number; lines: number; charges: number; chunks: number }> {
  return new Promise((resolve, reject) => {
    const stream: ClientReadableStream<ExportChargesResponse> = client.exportCharges(ExportChargesRequest.fromPartial({ accountId: 'acme', startDate: '2026-11-01', endDate: '2026-12-31', ...request }));
    const result = { text: '', bytes: 0, lines: 0, charges: 0, chunks: 0 };
    stream.on('data', (m: ExportChargesResponse) => {
      result.chunks++;
      result.bytes += m.data.length;
      result.charges += Number(m.chargeCount);
      const data = Buffer.from(m.data.buffer, m.data.byteOffset, m.data.length);
      for (let at = data.indexOf(10); at >= 0; at = data.indexOf(10, at + 1)) result.lines++;
      if (keep) result.text += Buffer.from(m.data).toString('utf8');
    });
    stream.on('error', reject);
    stream.on('end', () => resolve(result));
  });
}

describe.each(databaseTargets())('GetCharge, ListCharges and ExportCharges on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let client: MeteringServiceClient;
  const recorded: Charge[] = [];

  beforeAll(async () => {
    tdb = await target.create();
    // A V8 heap smaller than the 1M-charge export below (269 MB of CSV): held whole, it could not be made.
    server = await startServer(tdb.config, { NODE_OPTIONS: `--max-old-space-size=${EXPORT_HEAP_MB}` });
    client = server.client;
    // 12 charges over two days, two users, two models (one unpriced), in random id order.
    for (let n = 0; n < 12; n++) {
      const day = n < 7 ? '2026-11-30' : '2026-12-01';
      const { charge } = await call(client.recordCharge, client, chargeRequest({
        idempotencyKey: `k${n}`, userId: n % 2 ? 'u2' : 'u1', model: n % 3 === 0 ? 'llama-local' : 'gpt-4o', provider: n % 3 === 0 ? 'selfhosted' : 'openai',
        usageTime: { seconds: String(Date.parse(`${day}T10:00:00Z`) / 1000 + n), nanos: 0 }, metadata: { ticket: `T-${n}`, nested: { ok: true } },
      }));
      recorded.push(charge!);
    }
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it('reads a charge by its id and by its idempotency key, as RecordCharge answered it', async () => {
    const byId = await call(client.getCharge, client, { accountId: 'acme', chargeId: recorded[4].chargeId, idempotencyKey: '' });
    expect(byId.charge).toEqual(recorded[4]);
    const byKey = await call(client.getCharge, client, { accountId: 'acme', chargeId: '', idempotencyKey: 'k4' });
    expect(byKey.charge).toEqual(recorded[4]);
    const missing = await grpcError(call(client.getCharge, client, { accountId: 'acme', chargeId: '', idempotencyKey: 'nope' }));
    expect([missing.code, statusDetails(missing).errorInfo?.reason]).toEqual([status.NOT_FOUND, 'CHARGE_NOT_FOUND']);
    const other = await grpcError(call(client.getCharge, client, { accountId: 'other', chargeId: recorded[4].chargeId, idempotencyKey: '' }));
    expect(other.code).toBe(status.NOT_FOUND);
  });

  it('refuses a lookup by neither or both, and a malformed id, naming the field', async () => {
    const neither = await grpcError(call(client.getCharge, client, { accountId: 'acme', chargeId: '', idempotencyKey: '' }));
    expect(neither.code).toBe(status.INVALID_ARGUMENT);
    expect(statusDetails(neither).badRequest?.fieldViolations.map((v) => v.field)).toEqual(['charge_id']);
    const both = await grpcError(call(client.getCharge, client, { accountId: 'acme', chargeId: recorded[0].chargeId, idempotencyKey: 'k0' }));
    expect(statusDetails(both).badRequest?.fieldViolations.map((v) => v.field)).toEqual(['idempotency_key']);
    const malformed = await grpcError(call(client.getCharge, client, { accountId: 'acme', chargeId: "1' OR '1'='1", idempotencyKey: '' }));
    expect(statusDetails(malformed).badRequest?.fieldViolations.map((v) => v.field)).toEqual(['charge_id']);
  });

  it('lists charges of a date range in (usage_date, charge_id) order, a page at a time, with filters', async () => {
    const expected = [...recorded].sort((a, b) => (a.usageDate + a.chargeId < b.usageDate + b.chargeId ? -1 : 1));
    const seen: Charge[] = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await call(client.listCharges, client, listRequest({ pageSize: 5, pageToken }));
      seen.push(...page.charges);
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken);
    expect(pages).toBe(3);
    expect(seen).toEqual(expected);

    const u2Unpriced = await call(client.listCharges, client, listRequest({ userId: 'u2', pricingStatus: PricingStatus.PRICING_STATUS_UNPRICED }));
    expect(u2Unpriced.charges.map((c) => c.idempotencyKey).sort()).toEqual(['k3', 'k9']);
    const oneDay = await call(client.listCharges, client, listRequest({ startDate: '2026-12-01', endDate: '2026-12-01', model: 'gpt-4o', chargeType: ChargeType.CHARGE_TYPE_COMPLETION }));
    expect(oneDay.charges.map((c) => c.idempotencyKey).sort()).toEqual(['k10', 'k11', 'k7', 'k8']);
  });

  it('refuses bad ranges, filters and a page token of another query, naming the fields', async () => {
    const first = await call(client.listCharges, client, listRequest({ pageSize: 2 }));
    const reused = await grpcError(call(client.listCharges, client, listRequest({ pageSize: 2, userId: 'u1', pageToken: first.nextPageToken })));
    expect(statusDetails(reused).badRequest?.fieldViolations.map((v) => v.field)).toEqual(['page_token']);
    const bad = await grpcError(call(client.listCharges, client, listRequest({ startDate: '2026-02-30', endDate: '2028-01-01', pageSize: 5000, pricingStatus: 7 as PricingStatus })));
    expect(bad.code).toBe(status.INVALID_ARGUMENT);
    expect(statusDetails(bad).badRequest?.fieldViolations.map((v) => v.field).sort()).toEqual(['page_size', 'pricing_status', 'start_date']);
    const noFormat = await readExport(client, { format: ExportFormat.EXPORT_FORMAT_UNSPECIFIED }).catch((e) => e);
    expect([noFormat.code, statusDetails(noFormat).badRequest?.fieldViolations.map((v: { field: string }) => v.field)]).toEqual([status.INVALID_ARGUMENT, ['format']]);
  });

  it('exports the same charges as CSV and as JSON lines (the protobuf JSON of each)', async () => {
    const { charges } = await call(client.listCharges, client, listRequest({ pageSize: 1000 }));
    const csv = await readExport(client, { format: ExportFormat.EXPORT_FORMAT_CSV });
    const rows = csv.text.trimEnd().split('\n');
    expect(rows[0]).toBe(
      'charge_id,account_id,user_id,idempotency_key,session_key,usage_date,usage_time,record_time,provider,model,charge_type,request_type,prompt_tokens,completion_tokens,reasoning_tokens,cached_prompt_tokens,cache_write_tokens,cache_write_1h_tokens,total_tokens,call_count,pricing_status,price_version,price_origin,markup,currency_code,provider_cost,prompt_cost,completion_cost,call_cost,total_cost,reference,endpoint,response_time_ms,was_cached,had_error,error_message,metadata,tags,api_key_id',
    );
    expect(csv.charges).toBe(12);
    expect(rows.slice(1).map((r) => r.split(',')[0])).toEqual(charges.map((c) => c.chargeId));
    const k1 = charges.find((c) => c.idempotencyKey === 'k1')!;
    expect(rows.find((r) => r.startsWith(k1.chargeId))).toBe(
      `${k1.chargeId},acme,u2,k1,,2026-11-30,2026-11-30T10:00:01.000Z,${new Date(Number(k1.recordTime!.seconds) * 1000 + k1.recordTime!.nanos / 1e6).toISOString()},openai,gpt-4o,completion,chat,100,200,0,0,0,0,300,0,priced,${k1.priceVersion},catalog,1,USD,0.00225,0.00025,0.002,0,0.00225,,,,false,false,,"{""nested"":{""ok"":true},""ticket"":""T-1""}",{},`,
    );
    const unpriced = rows.find((r) => r.includes(',k3,'))!.split(',');
    expect(unpriced.slice(20, 30)).toEqual(['unpriced', '', '', '', 'USD', '', '', '', '', '']);

    const jsonl = await readExport(client, { format: ExportFormat.EXPORT_FORMAT_JSON_LINES });
    const lines = jsonl.text.trimEnd().split('\n').map((l) => JSON.parse(l));
    expect(lines).toEqual(charges.map((c) => protoJson('metering.v1.Charge', PbCharge.encode(c).finish())));
    expect(lines[0]).toMatchObject({ wasCached: false, hadError: false, callCount: '0', chargeType: 'CHARGE_TYPE_COMPLETION' });
    const empty = await readExport(client, { format: ExportFormat.EXPORT_FORMAT_CSV, userId: 'nobody' });
    expect([empty.charges, empty.lines]).toEqual([0, 1]);
  });

  if (target.name === 'postgres') {
    it('exports 1,000,000 charges as CSV with the server\'s peak RSS bounded', async () => {
      // The charges are made with SQL, each a copy of one recorded charge with its own id and key.
      const db = knex({ client: 'pg', connection: tdb.config.url, pool: { min: 0, max: 1 } });
      try {
        await call(client.recordCharge, client, chargeRequest({ accountId: 'big', idempotencyKey: 'seed', usageTime: { seconds: String(Date.parse('2026-11-15T12:00:00Z') / 1000), nanos: 0 } }));
        // Every column copied from the first charge but the keys and the day; ids in ascending order (the
        // indexes are appended to, not split at random: 1M rows in well under a minute).
        const over: Record<string, string> = {
          charge_id: "lpad(to_hex(g), 32, '0')::uuid",
          idempotency_key: "'bulk-' || lpad(g::text, 7, '0')",
          user_id: "'u' || (g % 100)",
          usage_date: "DATE '2026-11-01' + (g / 33334)",
        };
        const columns = (await db.raw("SELECT column_name FROM information_schema.columns WHERE table_name = 'charges' ORDER BY ordinal_position")).rows.map((r: { column_name: string }) => r.column_name as string);
        await db.raw(`
          INSERT INTO charges (${columns.join(', ')})
          SELECT ${columns.map((c: string) => over[c] ?? `c.${c}`).join(', ')}
            FROM charges c CROSS JOIN generate_series(1, 999999) AS g
           WHERE c.account_id = 'big' AND c.idempotency_key = 'seed'`);
        await db.raw('ANALYZE charges');
      } finally {
        await db.destroy();
      }
      const peak = () => Number(/VmHWM:\s+(\d+) kB/.exec(readFileSync(`/proc/${server.child.pid}/status`, 'utf8'))![1]) * 1024;
      const before = peak();
      const started = Date.now();
      const exported = await readExport(client, { accountId: 'big', format: ExportFormat.EXPORT_FORMAT_CSV }, false);
      process.stderr.write(`export of 1M charges: ${Date.now() - started} ms, ${exported.bytes} bytes, ${exported.chunks} chunks, peak RSS ${before} -> ${peak()}\n`);
      expect(exported.charges).toBe(1_000_000);
      expect(exported.lines).toBe(1_000_001);
      // Held whole, the export would take more than the file's size (269 MB of text, and far more
      // as 1M decoded rows), past the server's heap limit; streamed, it completes and the server's
      // peak RSS grows by less than the file's size. (Without the limit V8 lets garbage pile up
      // to about 200 MB before it collects, which this bound would measure instead.)
      const after = peak();
      expect(exported.bytes).toBeGreaterThan(250 * 1024 * 1024);
      expect(after - before).toBeLessThan(exported.bytes * 0.8);
      expect(after).toBeLessThan(400 * 1024 * 1024);
    }, 300_000);
  }
});

import { type ClientReadableStream, Metadata, type ServiceError, status } from '@grpc/grpc-js';
import * as pb from '@metering/contracts';
import { randomBytes } from 'node:crypto';
import { bearer, call, grpcError, statusDetails } from '../support/grpc';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { chargeRequest, checkRequest } from '../support/requests';
import { buildServer, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 20, increment 1: tags on charges and reservations, and the API key that recorded each
 * charge, through the real server with API keys required. Tags come back on the charge (RecordCharge,
 * RecordCharges, GetCharge, ListCharges, ExportCharges CSV and JSON, WatchCharges); a retry with
 * other tags is ALREADY_EXISTS naming tags; hostile tags are INVALID_ARGUMENT naming the field and
 * write nothing.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

const today = () => new Date().toISOString().slice(0, 10);
const yesterday = () => new Date(Date.now() - 86_400_000).toISOString().slice(0, 10);
const usageTime = () => ({ seconds: String(Math.floor(Date.now() / 1000) - 60), nanos: 0 });

/** RFC 4180 records with a header row, as objects by column name (quoted fields may hold commas, quotes and line breaks). */
function parseCsv(text: string): Array<Record<string, string>> {
  const records: string[][] = [];
  let field = '';
  let record: string[] = [];
  let quoted = false;
  for (let i = 0; i < text.length; i++) {
    const ch = text[i];
    if (quoted && ch === '"' && text[i + 1] === '"') {
      field += '"';
      i++;
    } else if (ch === '"') {
      quoted = !quoted;
    } else if (!quoted && ch === ',') {
      record.push(field);
      field = '';
    } else if (!quoted && ch === '\n') {
      record.push(field);
      records.push(record);
      record = [];
      field = '';
    } else if (quoted || ch !== '\r') {
      field += ch;
    }
  }
  const [header, ...rows] = records;
  return rows.map((r) => Object.fromEntries(header.map((name, n) => [name, r[n]])));
}

function readStream<T>(stream: ClientReadableStream<T>, until: (all: T[]) => boolean): Promise<T[]> {
  const got: T[] = [];
  return new Promise((resolve, reject) => {
    const timer = setTimeout(() => {
      stream.cancel();
      reject(new Error(`stream: ${got.length} messages in 20 s`));
    }, 20_000);
    stream.on('data', (m: T) => {
      got.push(m);
      if (until(got)) {
        clearTimeout(timer);
        stream.cancel();
        resolve(got);
      }
    });
    stream.on('error', (err: ServiceError) => {
      clearTimeout(timer);
      if (err.code === status.CANCELLED) resolve(got);
      else reject(err);
    });
    stream.on('end', () => {
      clearTimeout(timer);
      resolve(got);
    });
  });
}

describe.each(databaseTargets())('tags and the API key on charges on $name', (target) => {
  const operatorKey = randomBytes(32).toString('base64url');
  const asOperator = bearer(operatorKey);
  let tdb: TestDatabase;
  let server: ServerProcess;
  let client: pb.MeteringServiceClient;
  let key: { secret: string; keyId: string };
  let asKey: Metadata;

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, { METERING_AUTH: 'keys', METERING_OPERATOR_KEY: operatorKey });
    client = server.client;
    const created = await call(client.createApiKey, client, { accountId: 'acme', name: 'backend', scopes: [1, 2, 3] }, asOperator);
    key = { secret: created.secret, keyId: created.key!.keyId };
    asKey = bearer(key.secret);
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it('records the tags and the API key on the charge, and every read of the charge returns them', async () => {
    const tags = { feature: 'summarize', env: 'prod', customer: 'Søren & Co, "quoted"' };
    const one = await call(client.recordCharge, client, chargeRequest({ accountId: '', idempotencyKey: 'tagged-1', tags, usageTime: usageTime() }), asKey);
    expect(one.charge).toMatchObject({ tags, apiKeyId: key.keyId });
    // The operator key records no API key.
    const byOperator = await call(client.recordCharge, client, chargeRequest({ idempotencyKey: 'tagged-op', tags: { feature: 'chat' }, usageTime: usageTime() }), asOperator);
    expect(byOperator.charge).toMatchObject({ tags: { feature: 'chat' }, apiKeyId: '' });
    // A batch: each charge its own tags.
    const batch = await call(client.recordCharges, client, pb.RecordChargesRequest.fromPartial({
      charges: [
        chargeRequest({ accountId: '', idempotencyKey: 'tagged-b1', tags: { feature: 'search' }, usageTime: usageTime() }),
        chargeRequest({ accountId: '', idempotencyKey: 'tagged-b2', usageTime: usageTime() }),
      ],
    }), asKey);
    const recorded = batch.results.map((r) => (r.result?.$case === 'recorded' ? r.result.value.charge! : undefined));
    expect(recorded.map((c) => [c?.tags, c?.apiKeyId])).toEqual([[{ feature: 'search' }, key.keyId], [{}, key.keyId]]);

    // GetCharge and ListCharges return the charge as RecordCharge answered it.
    expect((await call(client.getCharge, client, { accountId: 'acme', chargeId: one.charge!.chargeId, idempotencyKey: '' }, asKey)).charge).toEqual(one.charge);
    const listed = await call(client.listCharges, client, pb.ListChargesRequest.fromPartial({ accountId: 'acme', startDate: yesterday(), endDate: today() }), asKey);
    const byKey = new Map(listed.charges.map((c) => [c.idempotencyKey, c]));
    expect(byKey.get('tagged-1')).toEqual(one.charge);
    expect(byKey.get('tagged-op')).toEqual(byOperator.charge);
    expect(byKey.get('tagged-b1')).toEqual(recorded[0]);

    // The CSV export has a tags column (JSON) and an api_key_id column; JSON lines carry the Charge.
    const exported = async (format: pb.ExportFormat) =>
      (await readStream(client.exportCharges(pb.ExportChargesRequest.fromPartial({ accountId: 'acme', startDate: yesterday(), endDate: today(), format }), asKey), () => false))
        .map((m) => Buffer.from(m.data).toString('utf8')).join('');
    const rows = parseCsv(await exported(pb.ExportFormat.EXPORT_FORMAT_CSV));
    const csv = new Map(rows.map((r) => [r.idempotency_key, r]));
    expect(JSON.parse(csv.get('tagged-1')!.tags)).toEqual(tags);
    expect(csv.get('tagged-1')!.api_key_id).toBe(key.keyId);
    expect(JSON.parse(csv.get('tagged-b2')!.tags)).toEqual({});
    expect(csv.get('tagged-op')!.api_key_id).toBe('');
    const lines = (await exported(pb.ExportFormat.EXPORT_FORMAT_JSON_LINES)).trim().split('\n').map((l) => JSON.parse(l) as { idempotencyKey: string; tags?: object; apiKeyId?: string });
    expect(lines.find((l) => l.idempotencyKey === 'tagged-1')).toMatchObject({ tags, apiKeyId: key.keyId });

    // The charge stream's payload carries them too.
    const events = await readStream(client.watchCharges(pb.WatchChargesRequest.fromPartial({ accountId: 'acme', afterSequence: '0' }), asKey), (all) => all.length >= 4);
    const streamed = new Map(events.map((e) => [e.event!.charge!.idempotencyKey, e.event!.charge!]));
    expect(streamed.get('tagged-1')).toEqual(one.charge);
    expect(streamed.get('tagged-b1')).toEqual(recorded[0]);
  });

  it('answers a retry with the same tags as a replay, and one with other tags ALREADY_EXISTS naming tags', async () => {
    const first = await call(client.recordCharge, client, chargeRequest({ accountId: '', idempotencyKey: 'retry-1', tags: { feature: 'a', env: 'dev' }, usageTime: usageTime() }), asKey);
    // Same tags, another order on the wire: a replay (also by another caller: the stored key is kept).
    const replay = await call(client.recordCharge, client, chargeRequest({ accountId: 'acme', idempotencyKey: 'retry-1', tags: { env: 'dev', feature: 'a' } }), asOperator);
    expect(replay).toMatchObject({ replayed: true, charge: first.charge });
    const err = await grpcError(call(client.recordCharge, client, chargeRequest({ accountId: '', idempotencyKey: 'retry-1', tags: { feature: 'b', env: 'dev' } }), asKey));
    expect(err.code).toBe(status.ALREADY_EXISTS);
    expect(err.details).toMatch(/tags/);
  });

  it('refuses hostile tags with INVALID_ARGUMENT naming the field, and writes nothing', async () => {
    const cases: Array<[Record<string, string>, string]> = [
      [Object.fromEntries(Array.from({ length: 11 }, (_, i) => [`k${i}`, 'v'])), 'tags'],
      [{ ['k'.repeat(65)]: 'v' }, 'tags'],
      [{ Feature: 'v' }, 'tags'],
      [{ feature: 'x'.repeat(129) }, 'tags[feature]'],
      [{ feature: 'bell\u0007' }, 'tags[feature]'],
      [{ feature: 'new\nline' }, 'tags[feature]'],
      [{ feature: '' }, 'tags[feature]'],
    ];
    for (const [n, [tags, field]] of cases.entries()) {
      const err = await grpcError(call(client.recordCharge, client, chargeRequest({ accountId: '', idempotencyKey: `hostile-${n}`, tags }), asKey));
      expect([n, err.code]).toEqual([n, status.INVALID_ARGUMENT]);
      expect([n, statusDetails(err).badRequest?.fieldViolations.map((v) => v.field)]).toEqual([n, [field]]);
      // In a batch, the charge fails alone, naming its field.
      const batch = await call(client.recordCharges, client, pb.RecordChargesRequest.fromPartial({ charges: [chargeRequest({ accountId: '', idempotencyKey: `hostile-batch-${n}`, tags })] }), asKey);
      expect(batch.results[0].result?.$case).toBe('error');
      const reserveErr = await grpcError(call(client.checkLimits, client, checkRequest({ accountId: '', reserve: true, idempotencyKey: `hostile-hold-${n}`, tags }), asKey));
      expect([n, statusDetails(reserveErr).badRequest?.fieldViolations.map((v) => v.field)]).toEqual([n, [field]]);
    }
    for (const n of cases.keys()) {
      const lookup = await grpcError(call(client.getCharge, client, { accountId: 'acme', chargeId: '', idempotencyKey: `hostile-${n}` }, asKey));
      expect(lookup.code).toBe(status.NOT_FOUND);
    }
    const held = await call(client.listReservations, client, pb.ListReservationsRequest.fromPartial({ accountId: 'acme' }), asKey);
    expect(held.reservations.filter((r) => r.idempotencyKey.startsWith('hostile'))).toEqual([]);
  });

  it('sums charges by API key and declared tags once the account declares dimensions, and QueryUsage reads them', async () => {
    await call(client.setDimensions, client, { accountId: 'dims', tagKeys: ['feature', 'env'], maxValuesPerDay: 0 }, asOperator);
    expect(await call(client.getDimensions, client, { accountId: 'dims' }, asOperator)).toMatchObject({ declared: true, dimensions: { accountId: 'dims', tagKeys: ['env', 'feature'] } });
    const other = await call(client.createApiKey, client, { accountId: 'dims', name: 'other', scopes: [1, 2] }, asOperator);
    const mine = await call(client.createApiKey, client, { accountId: 'dims', name: 'mine', scopes: [1, 2] }, asOperator);
    const recorded: pb.Charge[] = [];
    for (let n = 0; n < 12; n++) {
      const md = [bearer(mine.secret), bearer(other.secret), asOperator][n % 3];
      const tags: Record<string, string> = { feature: ['chat', 'search'][n % 2], ticket: `T-${n}` };
      if (n % 4 === 0) tags.env = 'prod';
      const r = await call(client.recordCharge, client, chargeRequest({ accountId: 'dims', idempotencyKey: `dim-${n}`, userId: `u${n % 2}`, tags, usageTime: usageTime() }), md);
      recorded.push(r.charge!);
    }
    const q = pb.QueryUsageRequest.fromPartial({ accountId: 'dims', startDate: yesterday(), endDate: today(), groupBy: [pb.UsageGroupBy.USAGE_GROUP_BY_API_KEY], groupByTags: ['feature'] });
    const page = await call(client.queryUsage, client, q, bearer(mine.secret));
    const expected = new Map<string, { messages: number; cost: number }>();
    for (const c of recorded) {
      const k = `${c.apiKeyId}|${c.tags.feature}`;
      const e = expected.get(k) ?? { messages: 0, cost: 0 };
      // Costs as exact decimals: compare the sums in millionths of a dollar (every charge here costs a whole number of them).
      expected.set(k, { messages: e.messages + 1, cost: e.cost + Math.round(Number(c.totalCost!.amount) * 1e6) });
    }
    const got = new Map(page.groups.map((g) => [`${g.apiKeyId}|${g.tags.feature}`, { messages: Number(g.sums!.messageCount), cost: Math.round(Number(g.sums!.totalCost!.amount) * 1e6) }]));
    expect(got).toEqual(expected);
    expect(new Set(page.groups.map((g) => g.apiKeyId))).toEqual(new Set([mine.key!.keyId, other.key!.keyId, '']));
    expect(page.totals!.messageCount).toBe('12');
    // A filter on the API key and a declared tag; an undeclared tag is refused naming the field.
    const filtered = await call(client.queryUsage, client, { ...q, groupBy: [], groupByTags: [], apiKeyId: mine.key!.keyId, tagFilters: { env: 'prod' } }, asOperator);
    expect(filtered.totals!.messageCount).toBe(String(recorded.filter((c) => c.apiKeyId === mine.key!.keyId && c.tags.env === 'prod').length));
    const refused = await grpcError(call(client.queryUsage, client, { ...q, groupByTags: ['ticket'] }, asOperator));
    expect(statusDetails(refused).badRequest?.fieldViolations.map((v) => v.field)).toEqual(['group_by_tags[0]']);
  });

  it('keeps a reservation\'s tags: a retry with the same tags is a replay, with other tags ALREADY_EXISTS', async () => {
    const held = await call(client.checkLimits, client, checkRequest({ accountId: '', reserve: true, idempotencyKey: 'hold-tags', tags: { feature: 'summarize' } }), asKey);
    expect(held.allowed).toBe(true);
    const replay = await call(client.checkLimits, client, checkRequest({ accountId: '', reserve: true, idempotencyKey: 'hold-tags', tags: { feature: 'summarize' } }), asKey);
    expect(replay).toMatchObject({ replayed: true, reservation: held.reservation });
    const err = await grpcError(call(client.checkLimits, client, checkRequest({ accountId: '', reserve: true, idempotencyKey: 'hold-tags', tags: { feature: 'chat' } }), asKey));
    expect(err.code).toBe(status.ALREADY_EXISTS);
  });
});

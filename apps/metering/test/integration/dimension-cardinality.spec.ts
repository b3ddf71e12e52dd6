import { DEFAULT_MAX_VALUES_PER_DAY, DimensionValuesExhaustedError, DomainError, MAX_MAX_VALUES_PER_DAY, RecordChargeRequestInput, ValidationError } from '@metering/domain';
import { PriceTable } from '@metering/pricing';
import { toRpcStatus } from '../../src/grpc/errors';
import { Metrics } from '../../src/observability/metrics';
import { BatchItemResult, ChargesService } from '../../src/services/charges.service';
import { DimensionsService } from '../../src/services/dimensions.service';
import { PricingService } from '../../src/services/pricing.service';
import { RerateService } from '../../src/services/rerate.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { QuotaFailure } from '@metering/contracts';
import { expectRollupsMatchCharges } from '../support/consistency';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';

/**
 * Issue 20: the cardinality of declared dimensions is bounded (distinct values per declared
 * tag key per account per local day, max_values_per_day) and visible (metrics of rollup rows
 * inserted and of refusals), on real databases. The limit is exact under concurrency: the
 * (account, day, key) row of dimension_values serializes the charges that bring new values.
 */
requirePostgresInCi();

const NOW = new Date('2026-12-07T12:00:00Z');
const clock = () => NOW;
const DAY = '2026-12-07';
const at = (iso: string) => ({ seconds: String(Date.parse(iso) / 1000), nanos: 0 });

const charge = (over: Partial<RecordChargeRequestInput> = {}): RecordChargeRequestInput => ({
  accountId: 'card', userId: 'u1', idempotencyKey: 'k', sessionKey: '', provider: 'openai', model: 'gpt-4o-mini', chargeType: 0, requestType: 0,
  promptTokens: '1000', completionTokens: '500', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0',
  callCount: '0', reference: '', endpoint: '', responseTimeMs: undefined, wasCached: false, hadError: false, errorMessage: '', metadata: undefined,
  usageTime: at(`${DAY}T10:00:00Z`), ...over,
});

const fieldsOf = async (p: Promise<unknown>): Promise<string[]> => {
  try {
    await p;
  } catch (e) {
    if (e instanceof ValidationError) return e.violations.map((v) => v.field);
    throw e;
  }
  return [];
};

describe.each(databaseTargets())('dimension cardinality on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  let metrics: Metrics;
  let dimensions: DimensionsService;
  let pricing: PricingService;
  /** Charge services as separate server processes would have them (each its own caches), all reporting to one Metrics. */
  const services: ChargesService[] = [];
  let charges: ChargesService;
  let refusalsSeen = 0;

  const count = async (table: string, where: Record<string, unknown>) => Number((await db(table).where(where).count<{ n: string }[]>('* as n'))[0].n);
  const metric = async (name: string, labels: Record<string, string> = {}) => {
    const m = await metrics.registry.getSingleMetric(name)?.get();
    return m?.values.filter((v) => Object.entries(labels).every(([k, x]) => v.labels[k] === x)).reduce((s, v) => s + v.value, 0) ?? 0;
  };
  const tally = (results: BatchItemResult[]) => {
    refusalsSeen += results.filter((r) => r instanceof DimensionValuesExhaustedError).length;
    return results;
  };
  const refusalOf = async (p: Promise<unknown>): Promise<DimensionValuesExhaustedError> => {
    try {
      await p;
    } catch (e) {
      if (e instanceof DimensionValuesExhaustedError) {
        refusalsSeen++;
        return e;
      }
      throw e;
    }
    throw new Error('the charge was not refused');
  };

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase({ ...tdb.config, poolMax: 8 });
    await migrate(db);
    metrics = new Metrics(db, () => 0);
    pricing = new PricingService(db, new PriceTable(), clock);
    dimensions = new DimensionsService(db, clock);
    for (let n = 0; n < 3; n++) services.push(new ChargesService(db, pricing, clock, 4, (b) => metrics.writeBatch(b)));
    charges = services[0];
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  it('takes max_values_per_day within its range, 1,000 by default, and refuses hostile values naming the field (nothing written)', async () => {
    expect((await dimensions.getDimensions({ accountId: 'card' })).dimensions.maxValuesPerDay ?? DEFAULT_MAX_VALUES_PER_DAY).toBe(DEFAULT_MAX_VALUES_PER_DAY);
    for (const bad of [-1, MAX_MAX_VALUES_PER_DAY + 1, 2 ** 31 - 1, -(2 ** 31), 1.5, Number.NaN]) {
      expect(await fieldsOf(dimensions.setDimensions({ accountId: 'card', tagKeys: ['feature'], maxValuesPerDay: bad }))).toEqual(['max_values_per_day']);
    }
    expect((await dimensions.getDimensions({ accountId: 'card' })).declared).toBe(false);
    expect(await dimensions.setDimensions({ accountId: 'card', tagKeys: ['feature'] })).toMatchObject({ maxValuesPerDay: DEFAULT_MAX_VALUES_PER_DAY });
    expect(await dimensions.setDimensions({ accountId: 'card', tagKeys: ['feature', 'customer'], maxValuesPerDay: 3 })).toMatchObject({ tagKeys: ['customer', 'feature'], maxValuesPerDay: 3 });
    expect((await dimensions.getDimensions({ accountId: 'card' })).dimensions).toMatchObject({ maxValuesPerDay: 3 });
  });

  it('refuses a RecordCharge whose declared tag would add a value past the day\'s limit, naming the field and the limit; nothing is written for it', async () => {
    for (const [n, f] of ['a', 'b', 'c'].entries()) await charges.recordCharge(charge({ idempotencyKey: `one-${n}`, tags: { feature: f, undeclared: `u${n}` } }));
    const before = { charges: await count('charges', { account_id: 'card' }), daily: await count('daily_usage', { account_id: 'card' }), dims: await count('dimension_usage', { account_id: 'card' }) };
    const refused = await refusalOf(charges.recordCharge(charge({ idempotencyKey: 'one-d', tags: { feature: 'd' } })));
    expect(refused.code).toBe('RESOURCE_EXHAUSTED');
    expect(refused.message).toContain('tags["feature"]');
    expect(refused.message).toContain('max_values_per_day 3');
    expect(refused.metadata).toMatchObject({ field: 'tags["feature"]', max_values_per_day: '3', usage_date: DAY });
    // On the wire: RESOURCE_EXHAUSTED with a QuotaFailure naming the dimension.
    const status = toRpcStatus(refused);
    const quota = status.details.find((d) => d.typeUrl.endsWith('google.rpc.QuotaFailure'));
    expect(QuotaFailure.decode(quota?.value as Uint8Array).violations.map((v) => v.subject)).toEqual([`account:card/day:${DAY}/tags["feature"]`]);
    expect({ charges: await count('charges', { account_id: 'card' }), daily: await count('daily_usage', { account_id: 'card' }), dims: await count('dimension_usage', { account_id: 'card' }) }).toEqual(before);
    expect(await count('charges', { account_id: 'card', idempotency_key: 'one-d' })).toBe(0);
    // A value already seen that day, an undeclared tag's new value, no tag at all: written. The other dimension has its own limit.
    await charges.recordCharge(charge({ idempotencyKey: 'one-e', tags: { feature: 'b', undeclared: 'new', customer: 'c1' } }));
    await charges.recordCharge(charge({ idempotencyKey: 'one-f' }));
    // Another local day has its own set.
    await charges.recordCharge(charge({ idempotencyKey: 'one-g', tags: { feature: 'd' }, usageTime: at('2026-12-06T23:00:00Z') }));
    // A fresh process (empty cache of admitted values) sees the same set.
    await services[1].recordCharge(charge({ idempotencyKey: 'one-h', tags: { feature: 'a' } }));
    await refusalOf(services[2].recordCharge(charge({ idempotencyKey: 'one-i', tags: { feature: 'e' } })));
    const row = await db('dimension_values').where({ account_id: 'card', usage_date: DAY, tag_key: 'feature' }).first();
    expect(row.vals).toEqual(['a', 'b', 'c']);
    await expectRollupsMatchCharges(db, 'card');
  });

  it('answers RecordCharges and ImportCharges item by item: the refused item gets its error, the other items are written', async () => {
    await dimensions.setDimensions({ accountId: 'batch', tagKeys: ['feature'], maxValuesPerDay: 2 });
    const results = tally(
      await charges.recordCharges([
        charge({ accountId: 'batch', idempotencyKey: 'b1', tags: { feature: 'x' } }),
        charge({ accountId: 'batch', idempotencyKey: 'b2', tags: { feature: 'y' } }),
        charge({ accountId: 'batch', idempotencyKey: 'b3', tags: { feature: 'z' } }),
        charge({ accountId: 'batch', idempotencyKey: 'b4', tags: { feature: 'x' } }),
        charge({ accountId: 'batch', idempotencyKey: 'b5' }),
      ]),
    );
    // Charges are admitted in idempotency key order within a batch: x and y fit, z does not.
    expect(results.map((r) => (r instanceof DomainError ? r.reason : r.charge.idempotencyKey))).toEqual(['b1', 'b2', 'DIMENSION_VALUES_EXHAUSTED', 'b4', 'b5']);
    expect((await db('charges').where({ account_id: 'batch' }).orderBy('idempotency_key')).map((c: { idempotency_key: string }) => c.idempotency_key)).toEqual(['b1', 'b2', 'b4', 'b5']);
    const imported = tally(await charges.importCharges([{ charge: charge({ accountId: 'batch', idempotencyKey: 'i1', tags: { feature: 'w' } }) }, { charge: charge({ accountId: 'batch', idempotencyKey: 'i2', tags: { feature: 'y' } }) }]));
    expect(imported.map((r) => (r instanceof DomainError ? r.reason : r.charge.idempotencyKey))).toEqual(['DIMENSION_VALUES_EXHAUSTED', 'i2']);
    // A replay of a written charge is answered as a replay, whatever the limit.
    const [replay] = await charges.recordCharges([charge({ accountId: 'batch', idempotencyKey: 'b1', tags: { feature: 'x' } })]);
    expect(replay).toMatchObject({ replayed: true });
    await expectRollupsMatchCharges(db, 'batch');
  });

  it('admits exactly the limit of new values when concurrent charges of several processes bring new values', async () => {
    const LIMIT = 7;
    await dimensions.setDimensions({ accountId: 'race', tagKeys: ['customer', 'feature'], maxValuesPerDay: LIMIT });
    // 60 charges, 30 distinct new customers (each twice), singly and in batches, through three processes at once.
    const requests = Array.from({ length: 60 }, (_, n) => charge({ accountId: 'race', idempotencyKey: `r${n}`, userId: `u${n % 4}`, tags: { customer: `c${n % 30}`, feature: 'f' } }));
    const outcomes = await Promise.all([
      ...requests.slice(0, 30).map((q, n) => services[n % 3].recordCharge(q).then((r) => r, (e: unknown) => e)),
      services[0].recordCharges(requests.slice(30, 45)),
      services[1].recordCharges(requests.slice(45, 60)),
    ]);
    const results = outcomes.flatMap((o) => (Array.isArray(o) ? o : [o])) as Array<BatchItemResult | unknown>;
    for (const r of results) if (!(r instanceof DimensionValuesExhaustedError) && r instanceof Error) throw r;
    tally(results as BatchItemResult[]);
    const written = await db('charges').where({ account_id: 'race' });
    const customers = new Set(written.map((c: { tags: Record<string, string> }) => c.tags.customer));
    expect(customers.size).toBe(LIMIT);
    // Every charge with an admitted customer is written (both of each pair), every other one is refused.
    expect(results.filter((r) => r instanceof DimensionValuesExhaustedError)).toHaveLength(60 - 2 * LIMIT);
    expect(written).toHaveLength(2 * LIMIT);
    const row = await db('dimension_values').where({ account_id: 'race', usage_date: DAY, tag_key: 'customer' }).first();
    expect(new Set(row.vals)).toEqual(customers);
    const dimensionCustomers = await db('dimension_usage').where({ account_id: 'race' }).distinct(db.raw(`dims ->> 'customer' AS c`));
    expect(dimensionCustomers).toHaveLength(LIMIT);
    await expectRollupsMatchCharges(db, 'race');
  });

  it('never refuses a re-rating: it moves the rows the charges were counted in, even past a lowered limit', async () => {
    const rerate = new RerateService(db, pricing, clock);
    tally(await charges.recordCharges([charge({ accountId: 'batch', idempotencyKey: 'h1', model: 'house-model', tags: { feature: 'x' } }), charge({ accountId: 'batch', idempotencyKey: 'h2', model: 'house-model', tags: { feature: 'y' } })]));
    await dimensions.setDimensions({ accountId: 'batch', tagKeys: ['feature'], maxValuesPerDay: 1 });
    const rows = async () => db('dimension_usage').where({ account_id: 'batch', model: 'house-model' }).orderBy('dims').select(db.raw(`dims ->> 'feature' AS feature`), 'unpriced_message_count', db.raw('total_cost::text AS cost'));
    expect((await rows()).map((r: { feature: string; unpriced_message_count: string }) => [r.feature, r.unpriced_message_count])).toEqual([['x', '1'], ['y', '1']]);
    await pricing.setPrice({ accountId: 'batch', provider: 'openai', model: 'house-model', effectiveTime: at('2026-01-01T00:00:00Z'), rates: { inputPerMillion: '3', outputPerMillion: '7' }, source: 'test', actor: '' } as never);
    const report = await rerate.rerate({ accountId: 'batch', startDate: DAY, endDate: DAY, mode: 1, provider: '', model: '', dryRun: false });
    expect(report).toMatchObject({ newlyPriced: 2 });
    const after = await rows();
    expect(after.map((r: { feature: string; unpriced_message_count: string }) => [r.feature, r.unpriced_message_count])).toEqual([['x', '0'], ['y', '0']]);
    for (const r of after as Array<{ cost: string }>) expect(Number(r.cost)).toBeGreaterThan(0);
    await expectRollupsMatchCharges(db, 'batch');
  });

  it('counts in metrics exactly the rollup rows inserted and the charges refused', async () => {
    // Every write of this database went through a ChargesService or RerateService of this test, since the Metrics was made on an empty database.
    expect(await metric('metering_rollup_rows_inserted_total', { table: 'daily_usage' })).toBe(await count('daily_usage', {}));
    expect(await metric('metering_rollup_rows_inserted_total', { table: 'dimension_usage' })).toBe(await count('dimension_usage', {}));
    expect(await metric('metering_rollup_rows_inserted_total', { table: 'dimension_usage_daily' })).toBe(await count('dimension_usage_daily', {}));
    expect(await metric('metering_dimension_values_refused_total')).toBe(refusalsSeen);
    expect(refusalsSeen).toBeGreaterThan(40);
    // An update of existing rows inserts none.
    const daily = await metric('metering_rollup_rows_inserted_total', { table: 'daily_usage' });
    const dims = await metric('metering_rollup_rows_inserted_total', { table: 'dimension_usage' });
    await charges.recordCharge(charge({ idempotencyKey: 'again', tags: { feature: 'a' } }));
    expect(await metric('metering_rollup_rows_inserted_total', { table: 'daily_usage' })).toBe(daily);
    expect(await metric('metering_rollup_rows_inserted_total', { table: 'dimension_usage' })).toBe(dims);
  });
});

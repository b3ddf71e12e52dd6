import { DomainError, RecordChargeRequestInput, RollupSums, UsageGroupKey, UsageQueryInput, ValidationError } from '@metering/domain';
import { Dec, PriceTable } from '@metering/pricing';
import { ChargesService } from '../../src/services/charges.service';
import { DimensionsService } from '../../src/services/dimensions.service';
import { PricingService } from '../../src/services/pricing.service';
import { RerateService } from '../../src/services/rerate.service';
import { AccountsService } from '../../src/services/accounts.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { expectRollupsMatchCharges } from '../support/consistency';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';

/**
 * Issue 20, increment 2: declared dimensions, their rollups (dimension_usage, written by the
 * ledger in the apply statement) and QueryUsage, on real databases. The consistency oracle
 * (test/support/consistency.ts) recomputes dimension_usage from the raw charges; here QueryUsage
 * is also checked against sums computed in the test from the charges' own tags, for every
 * grouping and granularity, with filters and paging.
 */
requirePostgresInCi();

const DAYS = ['2026-11-20', '2026-11-21', '2026-12-01'];
const NOW = new Date('2026-12-02T12:00:00Z');
const clock = () => NOW;

const charge = (over: Partial<RecordChargeRequestInput> = {}): RecordChargeRequestInput => ({
  accountId: 'dims', userId: 'u1', idempotencyKey: 'k', sessionKey: '', provider: 'openai', model: 'gpt-4o-mini', chargeType: 0, requestType: 0,
  promptTokens: '1000', completionTokens: '500', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0',
  callCount: '0', reference: '', endpoint: '', responseTimeMs: undefined, wasCached: false, hadError: false, errorMessage: '', metadata: undefined,
  usageTime: undefined, ...over,
});

const query = (over: Partial<UsageQueryInput>): UsageQueryInput => ({
  accountId: 'dims', startDate: DAYS[0], endDate: DAYS[2], groupBy: [], groupByTags: [], granularity: 0, userId: '', provider: '', model: '', chargeType: 0,
  apiKeyId: '', tagFilters: {}, pageSize: 0, pageToken: '', ...over,
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

/** A deterministic pseudo-random sequence (so a failure repeats). */
function* numbers(seed: number): Generator<number> {
  let x = seed;
  for (;;) {
    x = (x * 1103515245 + 12345) % 2 ** 31;
    yield x;
  }
}

describe.each(databaseTargets())('dimensions on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  let charges: ChargesService;
  let dimensions: DimensionsService;
  let pricing: PricingService;
  let rerate: RerateService;
  /** Every charge recorded for 'dims', as the service stored it. */
  const recorded: Array<{ chargeId: string; tags: Record<string, string>; userId: string; model: string; usageDate: string; hour: number; messages: number; tokens: number; cost: Dec; declared: string[] }> = [];

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
    await migrate(db);
    pricing = new PricingService(db, new PriceTable(), clock);
    charges = new ChargesService(db, pricing, clock);
    dimensions = new DimensionsService(db, clock);
    rerate = new RerateService(db, pricing, clock);
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  it('declares at most 5 valid, distinct tag keys, naming the bad field, and reads them back', async () => {
    expect(await dimensions.getDimensions({ accountId: 'dims' })).toEqual({ dimensions: { accountId: 'dims', tagKeys: [] }, declared: false });
    expect(await fieldsOf(dimensions.setDimensions({ accountId: 'dims', tagKeys: ['a', 'b', 'c', 'd', 'e', 'f'] }))).toEqual(['tag_keys']);
    expect(await fieldsOf(dimensions.setDimensions({ accountId: 'dims', tagKeys: ['ok', 'Bad'] }))).toEqual(['tag_keys[1]']);
    expect(await fieldsOf(dimensions.setDimensions({ accountId: 'dims', tagKeys: ['env', 'env'] }))).toEqual(['tag_keys[1]']);
    expect(await fieldsOf(dimensions.setDimensions({ accountId: 'dims', tagKeys: ['a\u0000'] }))).toEqual(['tag_keys[0]']);
    expect(await fieldsOf(dimensions.setDimensions({ accountId: '', tagKeys: [] }))).toEqual(['account_id']);
    expect((await dimensions.getDimensions({ accountId: 'dims' })).declared).toBe(false);
    const set = await dimensions.setDimensions({ accountId: 'dims', tagKeys: ['team', 'feature', 'env'] });
    expect(set).toMatchObject({ accountId: 'dims', tagKeys: ['env', 'feature', 'team'] });
    expect(await dimensions.getDimensions({ accountId: 'dims' })).toEqual({ dimensions: set, declared: true });
  });

  /** Records `n` charges with random tags, users, models, days and hours, in batches and singly; remembers them. */
  const recordRandom = async (n: number, seed: number, declared: string[], prefix: string) => {
    const r = numbers(seed);
    const pick = <T>(xs: T[]) => xs[(r.next().value as number) % xs.length];
    const requests = Array.from({ length: n }, (_, i) => {
      const tags: Record<string, string> = {};
      for (const [key, values] of [['feature', ['summarize', 'chat', 'search']], ['env', ['prod', 'dev']], ['team', ['a', 'b']], ['region', ['eu', 'us']], ['trace', ['t1', 't2', 't3']]] as const) {
        if (pick([true, true, false])) tags[key] = pick([...values]);
      }
      const day = pick(DAYS);
      const hour = pick([0, 5, 13, 23]);
      return charge({
        idempotencyKey: `${prefix}-${i}`, userId: pick(['u1', 'u2', 'u3']), model: pick(['gpt-4o-mini', 'gpt-4o', 'house-model']), provider: 'openai',
        promptTokens: String(100 + (r.next().value as number) % 900), completionTokens: String((r.next().value as number) % 500), tags,
        usageTime: { seconds: String(Date.parse(`${day}T${String(hour).padStart(2, '0')}:17:00Z`) / 1000), nanos: 0 },
      });
    });
    const half = Math.floor(n / 2);
    const results = [
      ...(await charges.recordCharges(requests.slice(0, half))),
      ...(await Promise.all(requests.slice(half).map((q) => charges.recordCharge(q)))),
    ];
    for (const res of results) {
      if (res instanceof DomainError) throw res;
      const c = res.charge;
      recorded.push({
        chargeId: c.chargeId, tags: c.tags, userId: c.userId, model: c.model, usageDate: c.usageDate, hour: c.usageTime.getUTCHours(), messages: 1, tokens: c.totalTokens,
        cost: new Dec(c.costs?.totalCost ?? 0), declared,
      });
    }
  };

  /** Every group of a query, page after page. */
  const allGroups = async (q: UsageQueryInput) => {
    const groups: Array<UsageGroupKey & { sums: RollupSums }> = [];
    let pageToken = '';
    let totals: RollupSums | undefined;
    do {
      const page = await dimensions.queryUsage({ ...q, pageToken });
      groups.push(...page.groups);
      totals ??= page.totals;
      pageToken = page.nextPageToken;
    } while (pageToken);
    return { groups, totals: totals as RollupSums };
  };

  /** Sums of the remembered charges by a key, as QueryUsage should give them. */
  const expected = (key: (c: (typeof recorded)[number]) => string | undefined) => {
    const out = new Map<string, { messages: bigint; tokens: bigint; cost: string }>();
    for (const c of recorded) {
      const k = key(c);
      if (k === undefined) continue;
      const before = out.get(k) ?? { messages: 0n, tokens: 0n, cost: '0' };
      out.set(k, { messages: before.messages + 1n, tokens: before.tokens + BigInt(c.tokens), cost: new Dec(before.cost).plus(c.cost).toFixed() });
    }
    return [...out.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
  };
  const got = (groups: Array<UsageGroupKey & { sums: RollupSums }>, key: (g: UsageGroupKey) => string) =>
    groups.map((g) => [key(g), { messages: g.sums.messageCount, tokens: g.sums.totalTokens, cost: g.sums.totalCost.toFixed() }] as const).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));

  it('sums tagged charges by their declared tags: rollups equal the charges (oracle), and QueryUsage equals the sums of the charges\' tags for every grouping', async () => {
    await recordRandom(120, 7, ['env', 'feature', 'team'], 'a');
    await expectRollupsMatchCharges(db, 'dims');

    // By feature (charges without the tag group under ""), paged 2 at a time: the same groups as one page.
    const byFeature = await allGroups(query({ groupByTags: ['feature'], pageSize: 2 }));
    expect(got(byFeature.groups, (g) => g.tags.feature)).toEqual(expected((c) => c.tags.feature ?? ''));
    expect((await allGroups(query({ groupByTags: ['feature'], pageSize: 1000 }))).groups).toEqual(byFeature.groups);
    // Totals: every charge.
    expect(byFeature.totals.messageCount).toBe(BigInt(recorded.length));
    expect(byFeature.totals.totalCost.toFixed()).toBe(recorded.reduce((a, c) => a.plus(c.cost), new Dec(0)).toFixed());

    // By env and team and user, per day.
    const byDay = await allGroups(query({ groupBy: [1], groupByTags: ['team', 'env'], granularity: 2, pageSize: 7 }));
    expect(got(byDay.groups, (g) => [g.period, g.userId, g.tags.env, g.tags.team].join('|'))).toEqual(expected((c) => [c.usageDate, c.userId, c.tags.env ?? '', c.tags.team ?? ''].join('|')));
    // Per hour (UTC account: the usage time's hour) and model, filtered on a tag value.
    const hourly = await allGroups(query({ groupBy: [3], granularity: 1, tagFilters: { feature: 'summarize' } }));
    expect(got(hourly.groups, (g) => [g.period, g.model].join('|'))).toEqual(
      expected((c) => (c.tags.feature === 'summarize' ? [`${c.usageDate}T${String(c.hour).padStart(2, '0')}`, c.model].join('|') : undefined)),
    );
    // Per month, filtered on a user and two tags.
    const monthly = await allGroups(query({ granularity: 3, userId: 'u2', tagFilters: { env: 'prod', team: 'a' } }));
    expect(got(monthly.groups, (g) => g.period)).toEqual(
      expected((c) => (c.userId === 'u2' && c.tags.env === 'prod' && c.tags.team === 'a' ? `${c.usageDate.slice(0, 7)}-01` : undefined)),
    );
    // The API key: every charge here was recorded without one ("" group).
    const byKey = await allGroups(query({ groupBy: [5] }));
    expect(byKey.groups.map((g) => g.apiKeyId)).toEqual(['']);
  });

  it('re-rating moves the dimension rows the charges were summed under', async () => {
    const before = await allGroups(query({ groupByTags: ['feature'], model: 'house-model' }));
    expect(before.totals.unpricedMessageCount).toBeGreaterThan(0n);
    await pricing.setPrice({ accountId: 'dims', provider: 'openai', model: 'house-model', effectiveTime: { seconds: String(Date.parse('2026-01-01T00:00:00Z') / 1000), nanos: 0 }, rates: { inputPerMillion: '3', outputPerMillion: '7' }, source: 'test', actor: '' });
    await rerate.rerate({ accountId: 'dims', startDate: DAYS[0], endDate: DAYS[2], mode: 1, provider: '', model: '', dryRun: false });
    const after = await allGroups(query({ groupByTags: ['feature'], model: 'house-model' }));
    expect(after.totals.unpricedMessageCount).toBe(0n);
    expect(after.totals.totalCost.gt(0)).toBe(true);
    await expectRollupsMatchCharges(db, 'dims');
    // The re-rated charges' costs, as stored, for the sums the later tests expect.
    const costs = new Map((await db('charges').where({ account_id: 'dims' }).select('charge_id', db.raw('coalesce(total_cost, 0)::text AS cost'))).map((r: { charge_id: string; cost: string }) => [r.charge_id, r.cost]));
    for (const c of recorded) c.cost = new Dec(costs.get(c.chargeId) as string);
    expect((await allGroups(query({ groupByTags: ['feature'] }))).totals.totalCost.toFixed()).toBe(recorded.reduce((a, c) => a.plus(c.cost), new Dec(0)).toFixed());
  });

  it('changing the declared dimensions is not retroactive: earlier charges keep their rows, later ones use the new keys', async () => {
    const earlier = await allGroups(query({ groupByTags: ['team'] }));
    await dimensions.setDimensions({ accountId: 'dims', tagKeys: ['feature', 'region'] });
    // team is no longer declared: refused; region is.
    expect(await fieldsOf(dimensions.queryUsage(query({ groupByTags: ['team'] })))).toEqual(['group_by_tags[0]']);
    expect(await fieldsOf(dimensions.queryUsage(query({ tagFilters: { team: 'a' } })))).toEqual(['tag_filters[team]']);
    const n = recorded.length;
    await recordRandom(40, 11, ['feature', 'region'], 'b');
    await expectRollupsMatchCharges(db, 'dims');
    const byRegion = await allGroups(query({ groupByTags: ['region'] }));
    // Charges from before the change group under "" for region, whatever their tags said.
    expect(got(byRegion.groups, (g) => g.tags.region)).toEqual(expected((c) => (c.declared.includes('region') ? c.tags.region ?? '' : '')));
    expect(byRegion.totals.messageCount).toBe(BigInt(recorded.length));
    expect(recorded.length).toBe(n + 40);
    expect(earlier.totals.messageCount).toBe(BigInt(n));
  });

  it('keeps no dimension rows for an account that declared none, and refuses hostile queries naming the field', async () => {
    await charges.recordCharge(charge({ accountId: 'plain', idempotencyKey: 'p1', tags: { feature: 'chat' } }));
    expect(await db('dimension_usage').where({ account_id: 'plain' })).toEqual([]);
    await expectRollupsMatchCharges(db, 'plain');
    expect(await fieldsOf(dimensions.queryUsage(query({ accountId: 'plain', groupByTags: ['feature'] })))).toEqual(['group_by_tags[0]']);
    // Grouped by what daily_usage keeps (user, provider, model, charge type; per day, month or the
    // range), QueryUsage reads daily_usage: the account's usage, declared dimensions or not.
    await charges.recordCharge(charge({ accountId: 'plain', idempotencyKey: 'p2', userId: 'u2', model: 'gpt-4o' }));
    const today = NOW.toISOString().slice(0, 10);
    const byUser = await dimensions.queryUsage(query({ accountId: 'plain', startDate: today, endDate: today, groupBy: [1, 3], granularity: 2 }));
    const stored = await db('charges').where({ account_id: 'plain' }).orderBy('user_id');
    expect(byUser.groups.map((g) => [g.period, g.userId, g.model, g.sums.messageCount, g.sums.totalTokens, g.sums.totalCost.toFixed()])).toEqual(
      stored.map((c: { user_id: string; model: string; total_tokens: string; total_cost: string }) => [today, c.user_id, c.model, 1n, BigInt(c.total_tokens), new Dec(c.total_cost).toFixed()]),
    );
    expect(byUser.totals.messageCount).toBe(2n);
    // By hour or API key (only the dimension rollups have them): FAILED_PRECONDITION naming the field, not an empty answer.
    for (const [over, field] of [
      [{ granularity: 1 }, 'granularity'],
      [{ groupBy: [5] }, 'group_by'],
      [{ apiKeyId: 'k_0123456789ab' }, 'api_key_id'],
    ] as Array<[Partial<UsageQueryInput>, string]>) {
      const refused = await dimensions.queryUsage(query({ accountId: 'plain', startDate: today, endDate: today, ...over })).catch((e: unknown) => e);
      expect(refused).toBeInstanceOf(DomainError);
      expect([(refused as DomainError).code, (refused as DomainError).reason, (refused as DomainError).metadata.field]).toEqual(['FAILED_PRECONDITION', 'DIMENSIONS_NOT_DECLARED', field]);
      expect((refused as DomainError).message).toMatch(/^(granularity|group_by|api_key_id): account plain has no declared dimensions/);
    }
    for (const [over, field] of [
      [{ groupBy: [99] }, 'group_by[0]'],
      [{ groupBy: [0] }, 'group_by[0]'],
      [{ groupBy: [1, 1] }, 'group_by[1]'],
      [{ granularity: 9 }, 'granularity'],
      [{ startDate: '2026-02-30' }, 'start_date'],
      [{ endDate: '2028-01-01' }, 'end_date'],
      [{ groupByTags: ['Feature'] }, 'group_by_tags[0]'],
      [{ groupByTags: ['a', 'b', 'c', 'd', 'e', 'f'] }, 'group_by_tags'],
      [{ tagFilters: { feature: 'x'.repeat(129) } }, 'tag_filters[feature]'],
      [{ tagFilters: { feature: 'a\nb' } }, 'tag_filters[feature]'],
      [{ apiKeyId: "'; DROP TABLE charges;--" }, 'api_key_id'],
      [{ pageSize: 1001 }, 'page_size'],
      [{ pageToken: 'garbage' }, 'page_token'],
    ] as Array<[Partial<UsageQueryInput>, string]>) {
      expect([over, await fieldsOf(dimensions.queryUsage(query(over)))]).toEqual([over, [field]]);
    }
    // A page token of one query is refused by another.
    const first = await dimensions.queryUsage(query({ groupByTags: ['feature'], pageSize: 1 }));
    expect(first.nextPageToken).not.toBe('');
    expect(await fieldsOf(dimensions.queryUsage(query({ groupByTags: ['region'], pageSize: 1, pageToken: first.nextPageToken })))).toEqual(['page_token']);
  });

  it('rolls up by the local hour and day of the account\'s time zone', async () => {
    await new AccountsService(db, clock).setAccount({ accountId: 'tokyo', timeZone: 'Asia/Tokyo' });
    await dimensions.setDimensions({ accountId: 'tokyo', tagKeys: ['feature'] });
    // 2026-11-30T20:30Z is 05:30 on 2026-12-01 in Tokyo.
    await charges.recordCharge(charge({ accountId: 'tokyo', idempotencyKey: 't1', tags: { feature: 'chat' }, usageTime: { seconds: String(Date.parse('2026-11-30T20:30:00Z') / 1000), nanos: 0 } }));
    const page = await dimensions.queryUsage(query({ accountId: 'tokyo', granularity: 1, groupByTags: ['feature'] }));
    expect(page.timeZone).toBe('Asia/Tokyo');
    expect(page.groups.map((g) => [g.period, g.tags.feature])).toEqual([['2026-12-01T05', 'chat']]);
    await expectRollupsMatchCharges(db, 'tokyo');
  });
});

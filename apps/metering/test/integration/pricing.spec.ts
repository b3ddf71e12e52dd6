import { hoursKeptFrom, NotFoundError, RecordChargeRequestInput, SetPriceInput, ValidationError } from '@metering/domain';
import { CATALOGUE, catalogueRows, PRICE_CATALOG, PriceTable } from '@metering/pricing';
import { ChargesService } from '../../src/services/charges.service';
import { MarkupsService } from '../../src/services/markups.service';
import { PricingService } from '../../src/services/pricing.service';
import { RerateService } from '../../src/services/rerate.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { expectRollupsMatchCharges } from '../support/consistency';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';

/**
 * Issue 3 through the services on real databases (PGlite, and Postgres when
 * configured; required in CI): operator prices and their precedence, per-account
 * markups with the audit trail, stamps, per-call and 1-hour cache-write
 * charges, estimates, and re-rating with the rollups kept equal to the charges.
 */
const NOW = new Date('2026-11-23T12:00:00Z');
const clock = () => NOW;
const ts = (iso: string) => ({ seconds: String(Date.parse(iso) / 1000), nanos: 0 });

const charge = (over: Partial<RecordChargeRequestInput> = {}): RecordChargeRequestInput => ({
  accountId: 'acme', userId: 'u1', idempotencyKey: 'k', sessionKey: '', provider: 'openai', model: 'gpt-4o', chargeType: 0, requestType: 0,
  promptTokens: '1000000', completionTokens: '1000000', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0',
  cacheWrite1hTokens: '0', callCount: '0', reference: '', endpoint: '', responseTimeMs: undefined, wasCached: false, hadError: false,
  errorMessage: '', metadata: undefined, usageTime: undefined, ...over,
});

const rates = (input: string, output: string, extra: Partial<NonNullable<SetPriceInput['rates']>> = {}): NonNullable<SetPriceInput['rates']> => ({
  inputPerMillion: input, outputPerMillion: output, cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '',
  reasoningPerMillion: '', perCall: '', longContext: undefined, ...extra,
});

const price = (over: Partial<SetPriceInput>): SetPriceInput => ({
  accountId: '', provider: 'selfhosted', model: 'llama-3-70b', effectiveTime: ts('2026-01-01T00:00:00Z'), rates: rates('1', '2'),
  source: 'hosting contract 2026', actor: 'ops@example.com', ...over,
});

const noMix = { promptTokens: '0', completionTokens: '0', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0' };

requirePostgresInCi();

describe.each(databaseTargets())('pricing on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  let pricing: PricingService;
  let charges: ChargesService;
  let markups: MarkupsService;
  let rerate: RerateService;
  let n = 0;
  const key = () => `key-${++n}`;
  const count = async (table: string) => Number((await db(table).count<{ n: string }[]>('* as n'))[0].n);

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
    await migrate(db);
    pricing = new PricingService(db, new PriceTable(), clock);
    charges = new ChargesService(db, pricing, clock);
    markups = new MarkupsService(db);
    rerate = new RerateService(db, pricing);
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  it('records a model without a price as unpriced, prices it by re-rating once a price exists, and a second run changes nothing', async () => {
    const first = await charges.recordCharge(charge({ accountId: 'rerate', idempotencyKey: key(), provider: 'selfhosted', model: 'llama-3-70b' }));
    const second = await charges.recordCharge(charge({ accountId: 'rerate', idempotencyKey: key(), provider: 'selfhosted', model: 'llama-3-70b', userId: 'u2' }));
    expect(first.charge).toMatchObject({ pricingStatus: 'unpriced', costs: null, priceVersion: null, priceOrigin: null });
    await expectRollupsMatchCharges(db, 'rerate');

    const range = { accountId: 'rerate', startDate: '2026-11-01', endDate: '2026-11-30', mode: 0, provider: '', model: '', dryRun: false };
    const none = await rerate.rerate(range);
    expect(none).toMatchObject({ examined: 2, changed: 0, stillUnpriced: 2 });

    await pricing.setPrice(price({}));
    const dry = await rerate.rerate({ ...range, dryRun: true });
    expect(dry).toMatchObject({ examined: 2, changed: 2, newlyPriced: 2, dryRun: true });
    expect(await db('charges').where({ account_id: 'rerate', pricing_status: 'unpriced' }).count<{ n: string }[]>('* as n')).toEqual([{ n: '2' }]);

    const report = await rerate.rerate(range);
    expect(report).toMatchObject({ examined: 2, changed: 2, newlyPriced: 2, stillUnpriced: 0, dryRun: false });
    // 1M tokens in at $1 + 1M out at $2 = $3 per charge.
    expect(report.totalCostBefore.toFixed()).toBe('0');
    expect(report.totalCostAfter.toFixed()).toBe('6');
    const row = await db('charges').where({ account_id: 'rerate', charge_id: first.charge.chargeId }).first();
    expect(row).toMatchObject({ pricing_status: 'priced', total_cost: '3', price_origin: 'operator', price_version: 'operator:selfhosted/llama-3-70b@2026-01-01T00:00:00.000Z' });
    await expectRollupsMatchCharges(db, 'rerate');
    const rollup = await db('daily_usage').where({ account_id: 'rerate', user_id: 'u1' }).first();
    expect(rollup).toMatchObject({ unpriced_message_count: '0', total_cost: '3' });

    expect(await rerate.rerate(range)).toMatchObject({ examined: 0, changed: 0 });
    expect(await rerate.rerate({ ...range, mode: 2 })).toMatchObject({ examined: 2, changed: 0 });
    void second;
  });

  it('keeps the version of charges priced before a regenerated price: the new row applies from its day, re-rating changes nothing before it', async () => {
    // The catalogue as a regeneration leaves it after upstream changed gpt-5.4 (tools/prices proves the generator appends
    // exactly this): the old row stays, a new one applies from 2026-12-10.
    const file = structuredClone(CATALOGUE);
    const gpt = file.models.find((m) => m.provider === 'openai' && m.model === 'gpt-5.4');
    if (!gpt) throw new Error('no openai/gpt-5.4 in the catalogue');
    gpt.rows.push({ effectiveFrom: '2026-12-10', version: 'genai-prices@0.1.9:openai/gpt-5.4@2026-12-10', source: 'genai-prices@0.1.9', rates: { input: '2', output: '12' } });
    const at = (iso: string) => () => new Date(iso);
    const priceWith = (table: PriceTable, now: string) => new PricingService(db, table, at(now));
    const oldPricing = priceWith(new PriceTable(), '2026-12-05T12:00:00Z');
    const mix = { promptTokens: '100000', completionTokens: '10000' };
    const before = await new ChargesService(db, oldPricing, at('2026-12-05T12:00:00Z')).recordCharge(
      charge({ accountId: 'regen', idempotencyKey: key(), model: 'gpt-5.4', usageTime: ts('2026-12-05T10:00:00Z'), ...mix }),
    );
    // 100000 x 2.50 + 10000 x 15 = 400000 per 1M
    expect(before.charge).toMatchObject({ priceVersion: 'genai-prices@0.1.8:openai/gpt-5.4@2026-12-01', costs: { totalCost: '0.4' } });

    const newPricing = priceWith(new PriceTable(catalogueRows(file), file.providers), '2026-12-11T12:00:00Z');
    const after = await new ChargesService(db, newPricing, at('2026-12-11T12:00:00Z')).recordCharge(
      charge({ accountId: 'regen', idempotencyKey: key(), model: 'gpt-5.4', usageTime: ts('2026-12-11T10:00:00Z'), ...mix }),
    );
    // 100000 x 2 + 10000 x 12 = 320000 per 1M
    expect(after.charge).toMatchObject({ priceVersion: 'genai-prices@0.1.9:openai/gpt-5.4@2026-12-10', costs: { totalCost: '0.32' } });
    const range = { accountId: 'regen', startDate: '2026-12-01', endDate: '2026-12-11', mode: 2, provider: '', model: '', dryRun: false };
    expect(await new RerateService(db, newPricing).rerate(range)).toMatchObject({ examined: 2, changed: 0 });
    const kept = await db('charges').where({ account_id: 'regen', charge_id: before.charge.chargeId }).first();
    expect(kept).toMatchObject({ price_version: 'genai-prices@0.1.8:openai/gpt-5.4@2026-12-01', total_cost: '0.4' });
  });

  it('re-prices a date range after a price correction (mode ALL) and moves the rollups by the difference', async () => {
    const p = price({ accountId: 'corrected', provider: 'custom', model: 'ft-1', rates: rates('10', '10') });
    await pricing.setPrice(p);
    for (let i = 0; i < 3; i++) await charges.recordCharge(charge({ accountId: 'corrected', idempotencyKey: key(), provider: 'custom', model: 'ft-1' }));
    expect((await db('daily_usage').where({ account_id: 'corrected' }).first()).total_cost).toBe('60');
    // The same effective_time again corrects that version.
    await pricing.setPrice({ ...p, rates: rates('1', '1.5') });
    const range = { accountId: 'corrected', startDate: '2026-11-23', endDate: '2026-11-23', mode: 0, provider: '', model: '', dryRun: false };
    expect(await rerate.rerate(range)).toMatchObject({ examined: 0, changed: 0 });
    const report = await rerate.rerate({ ...range, mode: 2, provider: 'custom', model: 'ft-1' });
    expect(report).toMatchObject({ examined: 3, changed: 3, newlyPriced: 0 });
    expect([report.totalCostBefore.toFixed(), report.totalCostAfter.toFixed()]).toEqual(['60', '7.5']);
    expect((await db('daily_usage').where({ account_id: 'corrected' }).first()).total_cost).toBe('7.5');
    await expectRollupsMatchCharges(db, 'corrected');
  });

  it('re-rates more charges than one batch, each batch in its own transaction', async () => {
    const many = 1203;
    await db('charges').insert(
      Array.from({ length: many }, (_, i) => ({
        account_id: 'bulk', charge_id: `00000000-0000-4000-8000-${String(i).padStart(12, '0')}`, idempotency_key: `bulk-${i}`, user_id: 'u1',
        provider: 'selfhosted', model: 'bulk-model', charge_type: 'completion', request_type: 'chat', prompt_tokens: 1000, completion_tokens: 0,
        reasoning_tokens: 0, cached_prompt_tokens: 0, cache_write_tokens: 0, total_tokens: 1000, usage_time: NOW, usage_time_supplied: true,
        usage_date: '2026-11-23', pricing_status: 'unpriced',
      })),
    );
    await db('daily_usage').insert({ account_id: 'bulk', usage_date: '2026-11-23', user_id: 'u1', provider: 'selfhosted', model: 'bulk-model', charge_type: 'completion', message_count: many, unpriced_message_count: many, prompt_tokens: many * 1000, total_tokens: many * 1000 });
    await db('usage_counters').insert(
      ['', 'u1'].flatMap((u) =>
        [['day', '2026-11-23'], ['month', '2026-11-01']].map(([period, start]) => ({ account_id: 'bulk', period, period_start: start, user_id: u, message_count: many, unpriced_message_count: many, total_tokens: many * 1000 })),
      ),
    );
    // And their hour (hourly_counters, rolling windows), as the write path keeps it for an account that keeps hours.
    await db('hour_tracking').insert({ account_id: 'bulk', since: hoursKeptFrom(NOW), created_at: NOW });
    await db('hourly_counters').insert(['', 'u1'].map((u) => ({ account_id: 'bulk', hour_start: new Date(Math.floor(NOW.getTime() / 3_600_000) * 3_600_000), user_id: u, scope: '', message_count: many, total_tokens: many * 1000, updated_at: NOW })));
    await expectRollupsMatchCharges(db, 'bulk');
    await pricing.setPrice(price({ model: 'bulk-model', rates: rates('0.15', '0') }));
    const report = await rerate.rerate({ accountId: 'bulk', startDate: '2026-11-23', endDate: '2026-11-23', mode: 1, provider: '', model: '', dryRun: false });
    expect(report).toMatchObject({ examined: many, changed: many, newlyPriced: many });
    // 1203 charges x 1000 tokens x $0.15 / 1M = $0.18045, exactly.
    expect(report.totalCostAfter.toFixed()).toBe('0.18045');
    await expectRollupsMatchCharges(db, 'bulk');
  });

  it('takes an account price over an operator price over the catalogue, and stamps the charge with the one it used', async () => {
    const at = ts('2026-06-01T00:00:00Z');
    const get = (accountId: string) => pricing.getPrice({ provider: 'openai', model: 'gpt-4o', accountId, at: undefined });
    expect(await get('')).toMatchObject({ origin: 'catalog', version: 'openai/gpt-4o@2024-10-02' });
    await pricing.setPrice(price({ provider: 'openai', model: 'gpt-4o', effectiveTime: at, rates: rates('2', '8'), source: 'negotiated' }));
    await pricing.setPrice(price({ accountId: 'vip', provider: 'openai', model: 'gpt-4o', effectiveTime: at, rates: rates('1', '4'), source: 'vip deal' }));
    expect(await get('')).toMatchObject({ origin: 'operator', source: 'negotiated' });
    expect(await get('vip')).toMatchObject({ origin: 'account', accountId: 'vip', version: 'account:vip:openai/gpt-4o@2026-06-01T00:00:00.000Z' });
    // Before the operator prices took effect, the catalogue applies (a backdated charge gets the old price).
    expect(await pricing.getPrice({ provider: 'openai', model: 'gpt-4o', accountId: 'vip', at: ts('2026-05-31T23:59:59Z') })).toMatchObject({ origin: 'catalog' });

    const vip = await charges.recordCharge(charge({ accountId: 'vip', idempotencyKey: key() }));
    expect(vip.charge).toMatchObject({ priceOrigin: 'account', markup: '1', costs: { totalCost: '5', providerCost: '5' } });
    const other = await charges.recordCharge(charge({ accountId: 'plain', idempotencyKey: key() }));
    expect(other.charge).toMatchObject({ priceOrigin: 'operator', costs: { totalCost: '10' } });
    const old = await charges.recordCharge(charge({ accountId: 'vip', idempotencyKey: key(), usageTime: ts('2026-05-01T00:00:00Z') }));
    expect(old.charge).toMatchObject({ priceOrigin: 'catalog', priceVersion: 'openai/gpt-4o@2024-10-02', costs: { totalCost: '12.5' } });

    const { prices: listed } = await pricing.listModels({ provider: 'openai', accountId: 'vip', at: undefined, includeHistory: false });
    expect(listed.find((p) => p.model === 'gpt-4o')).toMatchObject({ origin: 'account' });
    expect(new Set(listed.map((p) => p.model)).size).toBe(listed.length);
    const { prices: history } = await pricing.listModels({ provider: 'openai', accountId: 'vip', at: undefined, includeHistory: true });
    expect(history.filter((p) => p.model === 'gpt-4o').map((p) => p.origin)).toEqual(['catalog', 'catalog', 'operator', 'account']);

    expect(await pricing.deletePrice({ accountId: 'vip', provider: 'openai', model: 'gpt-4o', effectiveTime: at, actor: 'ops' })).toBe(true);
    expect(await pricing.deletePrice({ accountId: 'vip', provider: 'openai', model: 'gpt-4o', effectiveTime: at, actor: 'ops' })).toBe(false);
    expect(await get('vip')).toMatchObject({ origin: 'operator' });
    await pricing.deletePrice({ accountId: '', provider: 'openai', model: 'gpt-4o', effectiveTime: at, actor: 'ops' });
    expect(await get('vip')).toMatchObject({ origin: 'catalog' });
  });

  it('lists every catalogue model, and has no price for an unknown model (NOT_FOUND, never another model)', async () => {
    const { prices: all, nextPageToken } = await pricing.listModels({ provider: '', accountId: '', at: undefined, includeHistory: true });
    expect(all.filter((p) => p.origin === 'catalog')).toHaveLength(PRICE_CATALOG.length);
    expect(nextPageToken).toBe('');
    await expect(pricing.getPrice({ provider: 'openai', model: 'gpt-unknown', accountId: '', at: undefined })).rejects.toBeInstanceOf(NotFoundError);
  });

  it('pages ListModels (the pages are the whole list, in order, once), filters by provider (or its alias) and by name, and refuses a foreign token', async () => {
    const list = (over: Record<string, unknown>) => pricing.listModels({ provider: '', accountId: '', at: ts('2026-12-01T12:00:00Z'), includeHistory: false, ...over });
    const { prices: all } = await list({});
    expect(all.length).toBeGreaterThan(1000);
    const paged = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await list({ pageSize: 400, pageToken });
      expect(page.prices.length).toBeLessThanOrEqual(400);
      paged.push(...page.prices);
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken);
    expect(pages).toBe(Math.ceil(all.length / 400));
    expect(paged.map((p) => p.version)).toEqual(all.map((p) => p.version));

    const google = (await list({ provider: 'google' })).prices;
    expect(google.length).toBeGreaterThan(20);
    expect(google.every((p) => p.provider === 'googleai')).toBe(true);
    const named = (await list({ name: 'GPT-5.4' })).prices;
    expect(named.map((p) => `${p.provider}/${p.model}`)).toEqual(expect.arrayContaining(['openai/gpt-5.4', 'aws/openai.gpt-5.4', 'openrouter/openai/gpt-5.4']));
    expect(named.every((p) => p.model.toLowerCase().includes('gpt-5.4') || (p.aliases ?? []).some((a) => a.includes('gpt-5.4')))).toBe(true);

    const first = await list({ pageSize: 10 });
    const violation = async (over: Record<string, unknown>) => {
      const e = await list(over).catch((err: unknown) => err);
      expect(e).toBeInstanceOf(ValidationError);
      return (e as ValidationError).violations.map((v) => v.field);
    };
    expect(await violation({ pageSize: 10, pageToken: first.nextPageToken, provider: 'openai' })).toEqual(['page_token']);
    expect(await violation({ pageSize: 10, pageToken: 'garbage!' })).toEqual(['page_token']);
    expect(await violation({ pageSize: 1001 })).toEqual(['page_size']);
    expect(await violation({ pageToken: first.nextPageToken })).toEqual(['page_size']);
    expect(await violation({ pageSize: -1, name: 'x'.repeat(256) })).toEqual(['name', 'page_size']);
  });

  it('gets a price with its source and version: upstream rows name the upstream package, curated rows our layer', async () => {
    const get = (provider: string, model: string) => pricing.getPrice({ provider, model, accountId: '', at: ts('2026-12-01T12:00:00Z') });
    expect(await get('openai', 'gpt-5.4')).toMatchObject({ version: 'genai-prices@0.1.8:openai/gpt-5.4@2026-12-01', source: expect.stringMatching(/^genai-prices@0\.1\.8 /) });
    // Through an alias (a dated snapshot), a provider alias, and a declared fallback provider (Azure serves OpenAI's models).
    expect((await get('openai', 'gpt-5.4-2026-03-05')).model).toBe('gpt-5.4');
    expect((await get('google', 'gemini-3-flash-preview')).provider).toBe('googleai');
    expect((await get('azure', 'gpt-4o-mini-2024-07-18')).version).toMatch(/^genai-prices@0\.1\.8:/);
    expect(await get('googleai', 'gemini-1.5-flash-8b')).toMatchObject({ version: 'googleai/gemini-1.5-flash-8b@2024-10-03', source: expect.stringContaining('ai.google.dev') });
  });

  it('applies an account markup over the default, keeps who changed what in the audit trail, and pages it', async () => {
    const mk = (accountId: string, factor: string, actor: string) =>
      markups.setMarkup({ accountId, chargeType: 1, provider: 'openai', model: 'gpt-4o-mini', factor, actor });
    await mk('', '1.5', 'alice');
    await mk('', '2', 'bob');
    await mk('reseller', '1.1', 'carol');
    const base = { promptTokens: '1000000', completionTokens: '0', model: 'gpt-4o-mini' };
    const def = await charges.recordCharge(charge({ ...base, accountId: 'mk-default', idempotencyKey: key() }));
    expect(def.charge).toMatchObject({ markup: '2', costs: { providerCost: '0.15', totalCost: '0.3' } });
    const own = await charges.recordCharge(charge({ ...base, accountId: 'reseller', idempotencyKey: key() }));
    expect(own.charge).toMatchObject({ markup: '1.1', costs: { totalCost: '0.165' } });

    expect(await markups.listMarkups({ provider: 'openai', accountId: 'reseller' })).toMatchObject([{ accountId: 'reseller', updatedBy: 'carol' }]);
    expect(await markups.deleteMarkup({ accountId: '', chargeType: 1, provider: 'openai', model: 'gpt-4o-mini', actor: 'dave' })).toBe(true);

    const page1 = await pricing.listPricingChanges({ accountId: '', pageSize: 2, pageToken: '' });
    expect(page1.changes.map((c) => [c.kind, c.actor, c.before, c.after])).toEqual([
      ['markup_deleted', 'dave', { factor: '2' }, null],
      ['markup_set', 'bob', { factor: '1.5' }, { factor: '2' }],
    ]);
    const page2 = await pricing.listPricingChanges({ accountId: '', pageSize: 2, pageToken: page1.nextPageToken });
    expect(page2.changes[0]).toMatchObject({ kind: 'markup_set', actor: 'alice', before: null, after: { factor: '1.5' } });
    const reseller = await pricing.listPricingChanges({ accountId: 'reseller', pageSize: 0, pageToken: '' });
    expect(reseller.changes).toHaveLength(1);
    await expect(pricing.listPricingChanges({ accountId: 'reseller', pageSize: 0, pageToken: page1.nextPageToken })).rejects.toBeInstanceOf(ValidationError);
  });

  it('rejects zero, negative and absurd markups and malformed prices, naming every field, and writes nothing', async () => {
    const before = [await count('markups'), await count('prices'), await count('pricing_changes')];
    for (const factor of ['0', '-1', '100.5', '1e2', 'NaN', '']) {
      const err = await markups.setMarkup({ accountId: '', chargeType: 1, provider: 'openai', model: 'gpt-4o', factor, actor: '' }).catch((e) => e);
      expect((err as ValidationError).violations.map((v) => v.field)).toEqual(['factor']);
    }
    const bad = await pricing
      .setPrice(price({ accountId: 'a b', provider: 'Bad', source: '', rates: rates('-1', 'x', { cachedInputPerMillion: '1e3', longContext: { thresholdPromptTokens: '0', inputPerMillion: '1', outputPerMillion: '', cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '' } }) }))
      .catch((e) => e);
    expect((bad as ValidationError).violations.map((v) => v.field).sort()).toEqual(
      ['account_id', 'provider', 'rates.cached_input_per_million', 'rates.input_per_million', 'rates.long_context.output_per_million', 'rates.long_context.threshold_prompt_tokens', 'rates.output_per_million', 'source'].sort(),
    );
    const missing = await pricing.setPrice(price({ rates: undefined })).catch((e) => e);
    expect((missing as ValidationError).violations.map((v) => v.field)).toEqual(['rates']);
    expect([await count('markups'), await count('prices'), await count('pricing_changes')]).toEqual(before);
  });

  it('estimates exactly what RecordCharge then charges, and records nothing', async () => {
    const mix = { ...noMix, promptTokens: '12345', completionTokens: '678', cachedPromptTokens: '1000' };
    const before = await count('charges');
    const estimate = await pricing.estimateCost({ accountId: 'est', provider: 'openai', model: 'gpt-4o', chargeType: 0, callCount: '0', at: undefined, ...mix });
    expect(await count('charges')).toBe(before);
    const recorded = await charges.recordCharge(charge({ accountId: 'est', idempotencyKey: key(), ...mix }));
    expect(recorded.charge.costs?.totalCost).toBe(estimate.cost?.totalCost.toFixed());
    // 11345 x 2.5 + 1000 x 1.25 + 678 x 10 = 28362.5 + 1250 + 6780 = 36392.5 per 1M
    expect(estimate.cost?.totalCost.toFixed()).toBe('0.0363925');
    const unknown = await pricing.estimateCost({ accountId: '', provider: 'nobody', model: 'nothing', chargeType: 0, callCount: '0', at: undefined, ...mix });
    expect([unknown.price, unknown.cost]).toEqual([undefined, undefined]);
  });

  it('bills per-call charges and 1-hour cache writes, and rolls them up', async () => {
    await pricing.setPrice(price({ provider: 'tools', model: 'web_search', rates: rates('0', '0', { perCall: '0.01' }) }));
    await pricing.setPrice(price({ provider: 'cachey', model: 'm1', rates: rates('3', '15', { cacheWritePerMillion: '3.75', cacheWrite1hPerMillion: '6', cachedInputPerMillion: '0.3' }) }));
    const search = await charges.recordCharge(
      charge({ accountId: 'calls', idempotencyKey: key(), provider: 'tools', model: 'web_search', chargeType: 3, promptTokens: '0', completionTokens: '0', callCount: '3' }),
    );
    expect(search.charge).toMatchObject({ callCount: 3, costs: { callCost: '0.03', totalCost: '0.03' } });
    const cached = await charges.recordCharge(
      charge({ accountId: 'calls', idempotencyKey: key(), provider: 'cachey', model: 'm1', promptTokens: '10000', completionTokens: '0', cachedPromptTokens: '1000', cacheWriteTokens: '4000', cacheWrite1hTokens: '3000' }),
    );
    expect(cached.charge.costs?.promptCost).toBe('0.03705');
    await expectRollupsMatchCharges(db, 'calls');
    const err = await charges.recordCharge(charge({ accountId: 'calls', idempotencyKey: key(), cacheWriteTokens: '1', cacheWrite1hTokens: '2', callCount: '1000001' })).catch((e) => e);
    expect((err as ValidationError).violations.map((v) => v.field).sort()).toEqual(['cache_write_1h_tokens', 'call_count']);
  });
});

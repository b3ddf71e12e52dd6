import { status } from '@grpc/grpc-js';
import {
  ChargeType,
  EstimateCostRequest,
  MeteringServiceClient,
  PriceOrigin,
  PriceRates,
  PricingChangeKind,
  PricingStatus,
  RerateMode,
} from '@metering/contracts';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { chargeRequest } from '../support/requests';
import { call, grpcError, statusDetails } from '../support/grpc';
import { buildServer, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 3 end to end: the real server process, called through the generated
 * client as an operator's tools and a user's backend would.
 */
const request = chargeRequest;

const rates = (over: Partial<PriceRates> = {}): PriceRates => PriceRates.fromPartial({
  inputPerMillion: '1', outputPerMillion: '2', cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '',
  reasoningPerMillion: '', perCall: '', longContext: undefined, ...over,
});

const epoch = (iso: string) => ({ seconds: String(Date.parse(iso) / 1000), nanos: 0 });

beforeAll(() => buildServer());
requirePostgresInCi();

describe.each(databaseTargets())('pricing API on $name', (target) => {
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

  it('lists models with their current prices, gets one at a time, and answers NOT_FOUND for an unknown model', async () => {
    const { prices } = await call(client.listModels, client, { provider: 'openai', accountId: '', at: undefined, includeHistory: false, pageSize: 0, pageToken: '', name: '' });
    expect(prices.length).toBeGreaterThan(5);
    expect(prices.every((p) => p.provider === 'openai' && p.currencyCode === 'USD' && p.origin === PriceOrigin.PRICE_ORIGIN_CATALOG)).toBe(true);
    const old = await call(client.getPrice, client, { provider: 'openai', model: 'gpt-4o', accountId: '', at: epoch('2024-06-01T00:00:00Z') });
    expect(old.price).toMatchObject({ version: 'openai/gpt-4o@2024-05-13', rates: { inputPerMillion: '5.00', outputPerMillion: '15.00' } });
    const missing = await grpcError(call(client.getPrice, client, { provider: 'openai', model: 'gpt-unknown', accountId: '', at: undefined }));
    expect(missing.code).toBe(status.NOT_FOUND);
    expect(statusDetails(missing).errorInfo?.reason).toBe('PRICE_NOT_FOUND');
  });

  it('prices a custom model set at run time, re-rates what was recorded before, and keeps the audit trail', async () => {
    const custom = { provider: 'selfhosted', model: 'llama-3-70b' };
    const before = await call(client.recordCharge, client, request({ ...custom, idempotencyKey: 'pre' }));
    expect(before.charge).toMatchObject({ pricingStatus: PricingStatus.PRICING_STATUS_UNPRICED, totalCost: undefined, priceOrigin: PriceOrigin.PRICE_ORIGIN_UNSPECIFIED });

    const set = await call(client.setPrice, client, {
      accountId: 'acme', ...custom, effectiveTime: epoch('2026-01-01T00:00:00Z'), rates: rates({ perCall: '0.5' }), source: 'GPU lease', actor: 'ops@example.com',
    });
    expect(set.price).toMatchObject({ origin: PriceOrigin.PRICE_ORIGIN_ACCOUNT, version: 'account:acme:selfhosted/llama-3-70b@2026-01-01T00:00:00.000Z' });

    const after = await call(client.recordCharge, client, request({ ...custom, idempotencyKey: 'post', chargeType: ChargeType.CHARGE_TYPE_TOOL, callCount: '2' }));
    // 100 x $1 + 200 x $2 per 1M = $0.0005; 2 calls x $0.5 = $1.
    expect(after.charge).toMatchObject({
      pricingStatus: PricingStatus.PRICING_STATUS_PRICED, priceOrigin: PriceOrigin.PRICE_ORIGIN_ACCOUNT, priceVersion: set.price?.version, markup: '1',
      callCount: '2', callCost: { amount: '1', currencyCode: 'USD' }, totalCost: { amount: '1.0005', currencyCode: 'USD' },
    });

    const estimate = await call(client.estimateCost, client, EstimateCostRequest.fromPartial({
      accountId: 'acme', ...custom, chargeType: ChargeType.CHARGE_TYPE_TOOL, promptTokens: '100', completionTokens: '200', reasoningTokens: '0',
      cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '2', at: undefined,
    }));
    expect(estimate).toMatchObject({ pricingStatus: PricingStatus.PRICING_STATUS_PRICED, totalCost: after.charge?.totalCost, priceVersion: set.price?.version });

    const rerated = await call(client.rerateCharges, client, { accountId: 'acme', startDate: today, endDate: today, mode: RerateMode.RERATE_MODE_UNPRICED_ONLY, provider: '', model: '', dryRun: false });
    expect(rerated).toMatchObject({ chargesExamined: '1', chargesChanged: '1', chargesNewlyPriced: '1', chargesStillUnpriced: '0', totalCostAfter: { amount: '0.0005', currencyCode: 'USD' } });
    const again = await call(client.rerateCharges, client, { accountId: 'acme', startDate: today, endDate: today, mode: 0, provider: '', model: '', dryRun: false });
    expect(again).toMatchObject({ chargesExamined: '0', chargesChanged: '0' });

    const usage = await call(client.getDailyUsage, client, { accountId: 'acme', startDate: today, endDate: today, userId: '', provider: 'selfhosted', model: '', chargeType: 0, pageSize: 0, pageToken: '', timeZone: '' });
    expect(usage.totals).toMatchObject({ messageCount: '2', unpricedMessageCount: '0', callCount: '2', totalCost: { amount: '1.001', currencyCode: 'USD' } });

    const { changes } = await call(client.listPricingChanges, client, { accountId: 'acme', pageSize: 0, pageToken: '' });
    expect(changes[0]).toMatchObject({ kind: PricingChangeKind.PRICING_CHANGE_KIND_PRICE_SET, actor: 'ops@example.com', ...custom, before: undefined });
    expect(changes[0].after).toMatchObject({ source: 'GPU lease', rates: { input: '1', output: '2', perCall: '0.5' } });
  });

  it('sets an account markup over the default and records both in the audit trail', async () => {
    const key = { chargeType: ChargeType.CHARGE_TYPE_COMPLETION, provider: 'openai', model: 'gpt-4o-mini' };
    await call(client.setMarkup, client, { accountId: '', ...key, factor: '1.5', actor: 'alice' });
    const own = await call(client.setMarkup, client, { accountId: 'acme', ...key, factor: '1.25', actor: 'bob' });
    expect(own.markup).toMatchObject({ accountId: 'acme', factor: '1.25', updatedBy: 'bob' });
    const mine = await call(client.recordCharge, client, request({ idempotencyKey: 'mini', model: 'gpt-4o-mini', promptTokens: '1000000', completionTokens: '0' }));
    expect(mine.charge).toMatchObject({ markup: '1.25', providerCost: { amount: '0.15', currencyCode: 'USD' }, totalCost: { amount: '0.1875', currencyCode: 'USD' } });
    const theirs = await call(client.recordCharge, client, request({ accountId: 'other', idempotencyKey: 'mini', model: 'gpt-4o-mini', promptTokens: '1000000', completionTokens: '0' }));
    expect(theirs.charge?.markup).toBe('1.5');
    const defaults = await call(client.listPricingChanges, client, { accountId: '', pageSize: 0, pageToken: '' });
    expect(defaults.changes[0]).toMatchObject({ kind: PricingChangeKind.PRICING_CHANGE_KIND_MARKUP_SET, actor: 'alice', after: { factor: '1.5' } });
  });

  it('rejects a malformed price and absurd markups with INVALID_ARGUMENT naming every field', async () => {
    const err = await grpcError(
      call(client.setPrice, client, { accountId: '', provider: 'x', model: 'y', effectiveTime: undefined, rates: rates({ inputPerMillion: 'NaN', outputPerMillion: '-2' }), source: '', actor: '' }),
    );
    expect(err.code).toBe(status.INVALID_ARGUMENT);
    expect(statusDetails(err).badRequest?.fieldViolations.map((v) => v.field).sort()).toEqual(['rates.input_per_million', 'rates.output_per_million', 'source']);
    for (const factor of ['0', '-1', '1000']) {
      const bad = await grpcError(call(client.setMarkup, client, { accountId: '', chargeType: ChargeType.CHARGE_TYPE_COMPLETION, provider: 'openai', model: 'gpt-4o', factor, actor: '' }));
      expect(statusDetails(bad).badRequest?.fieldViolations.map((v) => v.field)).toEqual(['factor']);
    }
  });
});

import { MeteringServiceClient, ModelPrice, PricingStatus } from '@metering/contracts';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { call } from '../support/grpc';
import { chargeRequest } from '../support/requests';
import { buildServer, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 13's catalogue end to end: the real server with the generated
 * catalogue, called through the generated client. ListModels pages through at
 * least 1,000 priced models over at least 30 providers, and the models users
 * call today (direct and through Bedrock, Azure and OpenRouter) are priced to
 * the digit with a price_version that names the source. 100k prompt + 10k
 * completion tokens stay below every long-context threshold; the usage time is
 * today at 00:00 UTC, outside DeepSeek's peak windows.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

const PROMPT = '100000';
const COMPLETION = '10000';

/** provider, model, expected total cost (USD per 1M rates in the comment), the version's prefix. */
const CALLS: Array<[string, string, string, string]> = [
  // 100000 x 1.25 + 10000 x 10 = 125000 + 100000 = 225000 per 1M
  ['openai', 'gpt-5.1', '0.225', 'genai-prices@0.1.8:openai/gpt-5.1@'],
  // 100000 x 2.50 + 10000 x 15 = 250000 + 150000
  ['openai', 'gpt-5.4', '0.4', 'genai-prices@0.1.8:openai/gpt-5.4@'],
  // 100000 x 5 + 10000 x 25 = 500000 + 250000
  ['anthropic', 'claude-opus-4-6', '0.75', 'genai-prices@0.1.8:anthropic/claude-opus-4-6@'],
  // 100000 x 0.50 + 10000 x 3 = 50000 + 30000
  ['googleai', 'gemini-3-flash-preview', '0.08', 'genai-prices@0.1.8:google/gemini-3-flash-preview@'],
  // off-peak since 2026-08-17: 100000 x 0.22 + 10000 x 0.66 = 22000 + 6600
  ['deepseek', 'deepseek-v4-flash', '0.0286', 'genai-prices@0.1.8:deepseek/deepseek-v4-flash@2026-08-17'],
  // Bedrock US cross-region profile of Claude Sonnet 4.5 (regional rate, 10% over global): 100000 x 3.30 + 10000 x 16.50 = 330000 + 165000
  ['aws', 'us.anthropic.claude-sonnet-4-5-20250929-v1:0', '0.495', 'genai-prices@0.1.8:aws/regional.anthropic.claude-sonnet-4-5-20250929-v1:0@'],
  // Azure's own o4-mini: 100000 x 1.10 + 10000 x 4.40 = 110000 + 44000
  ['azure', 'o4-mini', '0.154', 'genai-prices@0.1.8:azure/o4-mini@'],
  // Azure serving OpenAI's gpt-4o at OpenAI's price (our curated row): 100000 x 2.50 + 10000 x 10 = 250000 + 100000
  ['azure', 'gpt-4o', '0.35', 'openai/gpt-4o@2024-10-02'],
  // OpenRouter: 100000 x 5 + 10000 x 25
  ['openrouter', 'anthropic/claude-opus-4.6', '0.75', 'genai-prices@0.1.8:openrouter/anthropic/claude-opus-4.6@'],
  // The Django models' provider ids, and an alias: "google" is googleai.
  ['google', 'gemini-3-flash-preview', '0.08', 'genai-prices@0.1.8:google/gemini-3-flash-preview@'],
];

describe.each(databaseTargets())('the price catalogue through the server on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let client: MeteringServiceClient;
  const midnight = new Date(`${new Date().toISOString().slice(0, 10)}T00:00:00Z`);

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config);
    client = server.client;
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it('lists at least 1,000 priced models over at least 30 providers, a page at a time', async () => {
    const all: ModelPrice[] = [];
    let pageToken = '';
    do {
      const page = await call(client.listModels, client, { provider: '', accountId: '', at: undefined, includeHistory: false, pageSize: 500, pageToken, name: '' });
      expect(page.prices.length).toBeLessThanOrEqual(500);
      all.push(...page.prices);
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(all.length).toBeGreaterThanOrEqual(1000);
    expect(new Set(all.map((p) => p.provider)).size).toBeGreaterThanOrEqual(30);
    expect(new Set(all.map((p) => `${p.provider}/${p.model}`)).size).toBe(all.length);
    for (const p of all) expect([p.provider, p.model, /^\d+(\.\d+)?$/.test(p.rates?.inputPerMillion ?? ''), p.source.length > 0]).toEqual([p.provider, p.model, true, true]);
    const whole = await call(client.listModels, client, { provider: '', accountId: '', at: undefined, includeHistory: false, pageSize: 0, pageToken: '', name: '' });
    expect(whole.prices.map((p) => p.version)).toEqual(all.map((p) => p.version));
  });

  it.each(CALLS)('prices %s/%s exactly, with a price_version naming the source', async (provider, model, total, version) => {
    const { charge } = await call(client.recordCharge, client, chargeRequest({
      accountId: 'catalogue', idempotencyKey: `catalogue-${provider}-${model}`, provider, model, promptTokens: PROMPT, completionTokens: COMPLETION,
      usageTime: { seconds: String(midnight.getTime() / 1000), nanos: 0 },
    }));
    expect(charge).toMatchObject({ provider, model, pricingStatus: PricingStatus.PRICING_STATUS_PRICED, totalCost: { amount: total, currencyCode: 'USD' } });
    expect(charge?.priceVersion.startsWith(version)).toBe(true);
    const price = await call(client.getPrice, client, { provider, model, accountId: '', at: undefined });
    expect(price.price?.version).toBe(charge?.priceVersion);
    expect(price.price?.source).toMatch(/genai-prices@0\.1\.8|openai\.com/);
  });

  it('leaves a near miss unpriced: no prefix, substring or pattern guess', async () => {
    for (const model of ['gpt-5.4-turbo-x', 'claude-opus-4-6-preview', 'us.anthropic.claude-sonnet-4-5']) {
      const { charge } = await call(client.recordCharge, client, chargeRequest({ accountId: 'catalogue', idempotencyKey: `miss-${model}`, provider: model.startsWith('us.') ? 'aws' : 'openai', model }));
      expect([model, charge?.pricingStatus]).toEqual([model, PricingStatus.PRICING_STATUS_UNPRICED]);
    }
  });
});

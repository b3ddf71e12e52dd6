import { CATALOGUE, PRICE_CATALOG } from './catalog';
import { computeCost } from './cost';
import { Dec, formatDecimal } from './money';
import { parsePriceRow, PriceTable } from './price-table';
import { TokenCounts, zeroTokens } from './tokens';
import { mapUsage, UsageFormat } from './usage-shapes';

/** The token classes of a usage object of a format (throws on a problem). */
const tokensOf = (format: UsageFormat) => (usage: object): TokenCounts => {
  const { mapped, problems } = mapUsage(format, usage);
  if (!mapped) throw new Error(JSON.stringify(problems));
  return mapped.tokens;
};
const fromOpenAIChatUsage = tokensOf('openai_chat');
const fromOpenAIResponsesUsage = tokensOf('openai_responses');
const fromAnthropicUsage = tokensOf('anthropic_messages');
const fromGeminiUsage = tokensOf('gemini');
const fromDeepSeekUsage = tokensOf('deepseek');
const fromCohereUsage = tokensOf('cohere');

/**
 * The built-in catalogue: coverage, well-formedness, and conformance — each
 * provider's documented usage object, mapped to our token classes, priced to
 * the digit against arithmetic done by hand in the comments (USD per 1M tokens).
 */
const table = new PriceTable();
const NOW = new Date('2026-12-01T12:00:00Z');
const ONE = new Dec(1);
const PROVIDERS = ['openai', 'anthropic', 'googleai', 'metaai', 'mistral', 'deepseek', 'xai', 'cohere'];
const models = new Set(PRICE_CATALOG.map((r) => `${r.provider}/${r.model}`));

const cost = (provider: string, model: string, tokens: TokenCounts, at = NOW, calls = 0) => {
  const price = table.priceAt(provider, model, at);
  if (!price) throw new Error(`no price for ${provider}/${model}`);
  return formatDecimal(computeCost(price, tokens, ONE, { callCount: calls, at }).totalCost);
};
const none: TokenCounts = zeroTokens();

describe('catalogue coverage', () => {
  it('prices at least 1,000 models over at least 30 providers today, the eight of the Django models among them, and embedding models', () => {
    const priced = table.current(NOW);
    expect(priced.length).toBeGreaterThanOrEqual(1000);
    expect(new Set(priced.map((v) => v.provider)).size).toBeGreaterThanOrEqual(30);
    for (const provider of PROVIDERS) expect(priced.filter((v) => v.provider === provider).length).toBeGreaterThanOrEqual(2);
    expect(PRICE_CATALOG.filter((r) => /embed/.test(r.model)).length).toBeGreaterThanOrEqual(5);
  });

  it('holds several versions of models whose price changed', () => {
    const versions = (m: string) => PRICE_CATALOG.filter((r) => `${r.provider}/${r.model}` === m).length;
    for (const m of ['openai/gpt-4o', 'openai/o3', 'googleai/gemini-1.5-pro', 'deepseek/deepseek-chat', 'cohere/command-r-plus']) expect(versions(m)).toBeGreaterThan(1);
  });
});

describe('catalogue rows', () => {
  it('every row parses, has a source and a real date, and no model is listed twice for one date', () => {
    const seen = new Set<string>();
    for (const row of PRICE_CATALOG) {
      const parsed = parsePriceRow(row);
      expect(row.source.trim().length).toBeGreaterThan(0);
      const key = `${row.provider}/${row.model}@${row.effectiveFrom}`;
      expect(seen.has(key)).toBe(false);
      seen.add(key);
      // Upstream rows name the upstream version; curated rows are provider/model@day.
      expect([key, parsed.version]).toEqual([key, row.version ?? key]);
      expect(parsed.version.endsWith(`@${row.effectiveFrom}`)).toBe(true);
    }
    expect(() => new PriceTable([...PRICE_CATALOG, PRICE_CATALOG[5]])).toThrow(/listed twice/);
  });

  it('is sane: cache reads cost at most input, long-context rates at least the base, Anthropic rows price both cache-write lifetimes', () => {
    for (const row of PRICE_CATALOG) {
      const p = parsePriceRow(row);
      const where = p.version;
      expect([where, p.rates.cachedInput.lessThanOrEqualTo(p.rates.input)]).toEqual([where, true]);
      expect([where, p.rates.output.isNegative()]).toEqual([where, false]);
      if (p.longContext) {
        for (const k of ['input', 'output', 'cachedInput'] as const) {
          expect([where, k, p.longContext.rates[k].greaterThanOrEqualTo(p.rates[k])]).toEqual([where, k, true]);
        }
      }
      if (row.provider === 'anthropic' && row.cacheWrite !== undefined) {
        expect([where, row.cacheWrite !== undefined && row.cacheWrite1h !== undefined]).toEqual([where, true]);
        expect([where, p.rates.cacheWrite1h.greaterThan(p.rates.cacheWrite)]).toEqual([where, true]);
      }
    }
  });

  it('prices an alias (a dated snapshot id) with its model, and aliases never shadow a model', () => {
    expect(table.priceAt('anthropic', 'claude-sonnet-4-5-20250929', NOW)?.version).toBe('genai-prices@0.1.8:anthropic/claude-sonnet-4-5@2025-09-29');
    const aliases = CATALOGUE.models.flatMap((m) => (m.aliases ?? []).map((a) => `${m.provider}/${a}`));
    for (const a of aliases) expect(models.has(a)).toBe(false);
    expect(new Set(aliases).size).toBe(aliases.length);
  });
});

describe('conformance: provider usage shapes priced to the digit', () => {
  it('OpenAI Chat Completions, a reasoning model with cached tokens (o4-mini: 1.10 / 0.275 / 4.40)', () => {
    const t = fromOpenAIChatUsage({ prompt_tokens: 12000, completion_tokens: 3000, prompt_tokens_details: { cached_tokens: 8000 }, completion_tokens_details: { reasoning_tokens: 2000 } });
    // 4000 x 1.10 + 8000 x 0.275 + 3000 x 4.40 (reasoning is inside completion, billed once) = 4400 + 2200 + 13200 = 19800
    expect(cost('openai', 'o4-mini', t)).toBe('0.0198');
  });

  it('OpenAI Responses API (gpt-5: 1.25 / 0.125 / 10)', () => {
    const t = fromOpenAIResponsesUsage({ input_tokens: 5000, input_tokens_details: { cached_tokens: 4096 }, output_tokens: 1500, output_tokens_details: { reasoning_tokens: 1024 } });
    // 904 x 1.25 + 4096 x 0.125 + 1500 x 10 = 1130 + 512 + 15000 = 16642
    expect(cost('openai', 'gpt-5', t)).toBe('0.016642');
  });

  it('Anthropic with cache reads and 5-minute and 1-hour cache writes (claude-sonnet-4-5: 3 / 0.30 / 3.75 / 6 / 15)', () => {
    const t = fromAnthropicUsage({
      input_tokens: 2000, cache_read_input_tokens: 10000, cache_creation_input_tokens: 5000,
      cache_creation: { ephemeral_5m_input_tokens: 3000, ephemeral_1h_input_tokens: 2000 }, output_tokens: 800,
    });
    expect(t).toMatchObject({ promptTokens: 17000, cachedPromptTokens: 10000, cacheWriteTokens: 5000, cacheWrite1hTokens: 2000 });
    // 2000 x 3 + 10000 x 0.30 + 3000 x 3.75 + 2000 x 6 + 800 x 15 = 6000 + 3000 + 11250 + 12000 + 12000 = 44250
    expect(cost('anthropic', 'claude-sonnet-4-5', t)).toBe('0.04425');
  });

  it('Anthropic above 200k prompt tokens: the whole request at the long-context rates (6 / 22.50)', () => {
    const t = fromAnthropicUsage({ input_tokens: 250000, output_tokens: 1000 });
    // 250000 x 6 + 1000 x 22.50 = 1500000 + 22500 = 1522500
    expect(cost('anthropic', 'claude-sonnet-4-5', t)).toBe('1.5225');
  });

  it('Gemini 2.5 Pro above 200k prompt tokens, with cached content and thoughts (2.50 / 0.625 / 15)', () => {
    const t = fromGeminiUsage({ promptTokenCount: 250000, cachedContentTokenCount: 50000, candidatesTokenCount: 2000, thoughtsTokenCount: 3000 });
    expect(t).toMatchObject({ promptTokens: 250000, completionTokens: 5000, reasoningTokens: 3000 });
    // Cache reads at 10% of input since November 2025 (0.25 in the tier):
    // 200000 x 2.50 + 50000 x 0.25 + 5000 x 15 = 500000 + 12500 + 75000 = 587500
    expect(cost('googleai', 'gemini-2.5-pro', t)).toBe('0.5875');
    // Before, at 25% (0.625): 500000 + 31250 + 75000 = 606250
    expect(cost('googleai', 'gemini-2.5-pro', t, new Date('2025-10-01T00:00:00Z'))).toBe('0.60625');
  });

  it('Gemini 2.5 Flash with tool-use prompt tokens and thoughts (0.30 / 2.50)', () => {
    const t = fromGeminiUsage({ promptTokenCount: 1000, candidatesTokenCount: 200, thoughtsTokenCount: 300, toolUsePromptTokenCount: 100 });
    // 1100 x 0.30 + 500 x 2.50 = 330 + 1250 = 1580
    expect(cost('googleai', 'gemini-2.5-flash', t)).toBe('0.00158');
  });

  it('DeepSeek cache hits, at the price of the usage time', () => {
    const t = fromDeepSeekUsage({ prompt_tokens: 10000, prompt_cache_hit_tokens: 6000, prompt_cache_miss_tokens: 4000, completion_tokens: 1000 });
    // V3.2 (0.28 / 0.028 / 0.42): 4000 x 0.28 + 6000 x 0.028 + 1000 x 0.42 = 1120 + 168 + 420 = 1708
    expect(cost('deepseek', 'deepseek-chat', t, new Date('2025-11-01T00:00:00Z'))).toBe('0.001708');
    // In March 2025 (0.27 / 0.07 / 1.10): 1080 + 420 + 1100 = 2600
    expect(cost('deepseek', 'deepseek-chat', t, new Date('2025-03-01T00:00:00Z'))).toBe('0.0026');
    // deepseek-chat was retired after 2026-07-24: unpriced since.
    expect(table.priceAt('deepseek', 'deepseek-chat', NOW)).toBeUndefined();
    // V4-Flash since 2026-08-17 (0.22 / 0.007 / 0.66): 880 + 42 + 660 = 1582; in its peak window 01:00-04:00 UTC at 2x.
    expect(cost('deepseek', 'deepseek-v4-flash', t, new Date('2026-11-30T12:00:00Z'))).toBe('0.001582');
    expect(cost('deepseek', 'deepseek-v4-flash', t, new Date('2026-11-30T02:30:00Z'))).toBe('0.003164');
  });

  it('xAI (OpenAI-compatible usage) above 128k prompt tokens (grok-4: 6 / 0.75 / 30)', () => {
    const t = fromOpenAIChatUsage({ prompt_tokens: 150000, completion_tokens: 2000, prompt_tokens_details: { cached_tokens: 100000 } });
    // 50000 x 6 + 100000 x 0.75 + 2000 x 30 = 300000 + 75000 + 60000 = 435000
    expect(cost('xai', 'grok-4', t)).toBe('0.435');
  });

  it('Mistral and Meta Llama (OpenAI-compatible usage)', () => {
    // mistral-large-latest (an alias of mistral-large): 3000 x 2 + 700 x 6 = 6000 + 4200 = 10200
    expect(cost('mistral', 'mistral-large-latest', fromOpenAIChatUsage({ prompt_tokens: 3000, completion_tokens: 700 }))).toBe('0.0102');
    // llama-3.3-70b-instruct: 10000 x 0.88 + 2000 x 0.88 = 8800 + 1760 = 10560
    expect(cost('metaai', 'llama-3.3-70b-instruct', fromOpenAIChatUsage({ prompt_tokens: 10000, completion_tokens: 2000 }))).toBe('0.01056');
  });

  it('Cohere billed units (command-a: 2.50 / 10)', () => {
    // 1234 x 2.50 + 567 x 10 = 3085 + 5670 = 8755
    expect(cost('cohere', 'command-a-03-2025', fromCohereUsage({ billed_units: { input_tokens: 1234, output_tokens: 567 } }))).toBe('0.008755');
  });

  it('per-call tools: Anthropic web search and Google grounding, and embeddings', () => {
    // 3 searches x $0.01; 2 grounded prompts x $0.035
    expect(cost('anthropic', 'web_search', none, NOW, 3)).toBe('0.03');
    expect(cost('googleai', 'google_search_grounding', none, NOW, 2)).toBe('0.07');
    // 1M tokens x 0.02
    expect(cost('openai', 'text-embedding-3-small', { ...none, promptTokens: 1_000_000 })).toBe('0.02');
  });
});

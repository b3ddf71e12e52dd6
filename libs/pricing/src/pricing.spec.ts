import fc from 'fast-check';
import { PRICE_CATALOG } from './catalog';
import { computeCost } from './cost';
import { Dec, formatDecimal, parseDecimal, parseMarkup } from './money';
import { choosePrice, parsePriceRow, PriceTable, PriceVersion } from './price-table';
import { checkRates } from './rates';
import { nestingProblem, tokenCounts, TokenCounts } from './tokens';

const table = new PriceTable();
const NOW = new Date('2026-11-23T12:00:00Z');
const tokens = (t: Partial<TokenCounts>): TokenCounts => tokenCounts(t);
const priceOf = (provider: string, model: string, at = NOW) => {
  const p = table.priceAt(provider, model, at);
  if (!p) throw new Error(`no price for ${provider}/${model}`);
  return p;
};
const ONE = new Dec(1);

describe('cost math', () => {
  it('gpt-4o, 100 prompt + 200 completion tokens costs 0.00225', () => {
    const c = computeCost(priceOf('openai', 'gpt-4o'), tokens({ promptTokens: 100, completionTokens: 200 }), ONE);
    expect(formatDecimal(c.totalCost)).toBe('0.00225');
    expect(formatDecimal(c.promptCost)).toBe('0.00025');
    expect(formatDecimal(c.completionCost)).toBe('0.002');
  });

  it('gpt-4o-mini, 1 prompt token costs 0.00000015 (the Django models rounded it to 0)', () => {
    const c = computeCost(priceOf('openai', 'gpt-4o-mini'), tokens({ promptTokens: 1 }), ONE);
    expect(formatDecimal(c.totalCost)).toBe('0.00000015');
  });

  it('prices a backdated charge with the price in effect then', () => {
    const mix = tokens({ promptTokens: 1_000_000, completionTokens: 1_000_000 });
    const old = computeCost(priceOf('openai', 'gpt-4o', new Date('2024-06-01T00:00:00Z')), mix, ONE);
    const now = computeCost(priceOf('openai', 'gpt-4o'), mix, ONE);
    expect(formatDecimal(old.totalCost)).toBe('20');
    expect(formatDecimal(now.totalCost)).toBe('12.5');
    expect(table.priceAt('openai', 'gpt-4o', new Date('2024-01-01T00:00:00Z'))).toBeUndefined();
  });

  it('bills cached prompt tokens at the cached rate and reasoning inside completion once', () => {
    // 1000 prompt of which 800 cached; 500 completion of which 300 reasoning (o3: 2.00 / 0.50 / 8.00)
    const c = computeCost(
      priceOf('openai', 'o3'),
      tokens({ promptTokens: 1000, cachedPromptTokens: 800, completionTokens: 500, reasoningTokens: 300 }),
      ONE,
    );
    // 200 * 2 + 800 * 0.5 = 800 per 1M -> 0.0008; 500 * 8 = 4000 per 1M -> 0.004
    expect(formatDecimal(c.promptCost)).toBe('0.0008');
    expect(formatDecimal(c.completionCost)).toBe('0.004');
  });

  it('bills Anthropic cache writes at the write rate and uses the long-context tier above 200k prompt tokens', () => {
    const sonnet = priceOf('anthropic', 'claude-sonnet-4-5');
    const short = computeCost(sonnet, tokens({ promptTokens: 1000, cacheWriteTokens: 1000 }), ONE);
    expect(formatDecimal(short.promptCost)).toBe('0.00375');
    const long = computeCost(sonnet, tokens({ promptTokens: 200_001, completionTokens: 1000 }), ONE);
    expect(formatDecimal(long.promptCost)).toBe('1.200006');
    expect(formatDecimal(long.completionCost)).toBe('0.0225');
  });

  it('applies the markup to each part and keeps the provider cost', () => {
    const c = computeCost(priceOf('openai', 'gpt-4o'), tokens({ promptTokens: 100, completionTokens: 200 }), new Dec('1.25'));
    expect(formatDecimal(c.providerCost)).toBe('0.00225');
    expect(formatDecimal(c.totalCost)).toBe('0.0028125');
    expect(c.totalCost.equals(c.promptCost.plus(c.completionCost))).toBe(true);
  });

  it('bills 1-hour cache writes at their own rate, inside the cache writes', () => {
    const custom = parsePriceRow({
      provider: 'test', model: 'm', effectiveFrom: '2025-01-01', source: 'test',
      input: '3', cachedInput: '0.3', cacheWrite: '3.75', cacheWrite1h: '6', output: '15',
    });
    // 10k prompt: 1k cache reads, 4k cache writes of which 3k for 1 hour; 5k plain input.
    const c = computeCost(custom, tokens({ promptTokens: 10_000, cachedPromptTokens: 1000, cacheWriteTokens: 4000, cacheWrite1hTokens: 3000 }), ONE);
    // 5000*3 + 1000*0.3 + 1000*3.75 + 3000*6 = 15000 + 300 + 3750 + 18000 = 37050 per 1M
    expect(formatDecimal(c.promptCost)).toBe('0.03705');
    expect(nestingProblem(tokens({ cacheWriteTokens: 1, cacheWrite1hTokens: 2, promptTokens: 5 }))?.field).toBe('cache_write_1h_tokens');
  });

  it('bills per-call prices (tool and plugin calls) with the markup, apart from tokens', () => {
    const search = parsePriceRow({ provider: 'test', model: 'web_search', effectiveFrom: '2025-01-01', source: 'test', input: '0', output: '0', perCall: '0.01' });
    const c = computeCost(search, tokens({}), new Dec('1.5'), { callCount: 3 });
    expect(formatDecimal(c.callCost)).toBe('0.045');
    expect(formatDecimal(c.providerCost)).toBe('0.03');
    expect(formatDecimal(c.totalCost)).toBe('0.045');
    // A model without a per-call price bills tokens only.
    expect(formatDecimal(computeCost(priceOf('openai', 'gpt-4o'), tokens({}), ONE, { callCount: 5 }).totalCost)).toBe('0');
  });

  it('rejects token classes that do not nest', () => {
    expect(() => computeCost(priceOf('openai', 'gpt-4o'), tokens({ promptTokens: 1, cachedPromptTokens: 2 }), ONE)).toThrow(RangeError);
  });
});

describe('cost math properties', () => {
  const models = table.versions();
  const arbPrice = fc.constantFrom(...models);

  it('N one-token charges cost exactly what one N-token charge costs', () => {
    fc.assert(
      fc.property(arbPrice, fc.integer({ min: 1, max: 5000 }), fc.constantFrom('1', '1.1', '1.333', '2.5', '0.01'), (price, n, m) => {
        const markup = new Dec(m);
        const one = computeCost(price, tokens({ promptTokens: 1, completionTokens: 1 }), markup);
        const many = computeCost(price, tokens({ promptTokens: n, completionTokens: n }), markup);
        return one.totalCost.times(n).equals(many.totalCost) && one.providerCost.times(n).equals(many.providerCost);
      }),
    );
  });

  it('total = prompt + completion and costs are never negative, for any valid token mix', () => {
    const arbTokens = fc
      .record({ p: fc.integer({ min: 0, max: 1e12 }), c: fc.integer({ min: 0, max: 1e12 }), a: fc.double({ min: 0, max: 1, noNaN: true }), b: fc.double({ min: 0, max: 1, noNaN: true }), r: fc.double({ min: 0, max: 1, noNaN: true }) })
      .map(({ p, c, a, b, r }) => {
        const cached = Math.floor(p * a);
        const write = Math.floor((p - cached) * b);
        return tokens({ promptTokens: p, completionTokens: c, cachedPromptTokens: cached, cacheWriteTokens: write, reasoningTokens: Math.floor(c * r) });
      });
    fc.assert(
      fc.property(arbPrice, arbTokens, (price, t) => {
        const cost = computeCost(price, t, ONE);
        return cost.totalCost.equals(cost.promptCost.plus(cost.completionCost)) && !cost.totalCost.isNegative() && !/e/i.test(formatDecimal(cost.totalCost));
      }),
    );
  });
});

describe('price precedence', () => {
  const version = (origin: PriceVersion['origin']) => ({ ...priceOf('openai', 'gpt-4o'), origin });
  it('takes an account price over an operator price over the catalogue', () => {
    expect(choosePrice({ account: version('account'), operator: version('operator'), catalog: version('catalog') })?.origin).toBe('account');
    expect(choosePrice({ operator: version('operator'), catalog: version('catalog') })?.origin).toBe('operator');
    expect(choosePrice({ catalog: version('catalog') })?.origin).toBe('catalog');
    expect(choosePrice({})).toBeUndefined();
  });

  it('names every bad rate of an operator price', () => {
    const { problems } = checkRates({ input: '-1', output: 'NaN', cachedInput: '1e3', longContext: { thresholdPromptTokens: 0, input: '1', output: '100000.1' } });
    expect(problems.map((p) => p.field).sort()).toEqual(
      ['cached_input_per_million', 'input_per_million', 'long_context.output_per_million', 'long_context.threshold_prompt_tokens', 'output_per_million'].sort(),
    );
  });
});

describe('money parsing', () => {
  it('accepts plain decimals only', () => {
    for (const ok of ['0', '1', '0.00000015', '-2.5', '123456789012345678901234567890.1']) expect(parseDecimal(ok)).toBeDefined();
    for (const bad of ['', 'NaN', 'Infinity', '1e3', ' 1', '1.', '.5', '01', '+1', '0x10', '1,5']) expect(parseDecimal(bad)).toBeUndefined();
  });

  it('bounds markups to (0, 100]', () => {
    expect(parseMarkup('1.25')?.toFixed()).toBe('1.25');
    for (const bad of ['0', '-1', '100.0001', '1e2', 'abc']) expect(parseMarkup(bad)).toBeUndefined();
  });
});

describe('the catalogue', () => {
  it('every row parses, has a source and a date, and no model is listed twice for one date', () => {
    const seen = new Set<string>();
    for (const row of PRICE_CATALOG) {
      const parsed = parsePriceRow(row);
      expect(row.source.length).toBeGreaterThan(0);
      expect(row.effectiveFrom).toMatch(/^\d{4}-\d{2}-\d{2}$/);
      expect(seen.has(parsed.version)).toBe(false);
      seen.add(parsed.version);
    }
    expect(() => new PriceTable([...PRICE_CATALOG, PRICE_CATALOG[0]])).toThrow(/listed twice/);
    expect(() => parsePriceRow({ ...PRICE_CATALOG[0], effectiveFrom: '2025-02-30' })).toThrow(/real day/);
    expect(() => parsePriceRow({ ...PRICE_CATALOG[0], source: ' ' })).toThrow(/source/);
  });

  it('has the six models the Django app priced and a current flagship of OpenAI, Anthropic and Google', () => {
    for (const [provider, model] of [
      ['openai', 'gpt-4o'], ['openai', 'gpt-4o-mini'], ['openai', 'gpt-4-turbo'], ['openai', 'gpt-3.5-turbo'], ['openai', 'o1-preview'], ['openai', 'o1-mini'],
      ['openai', 'gpt-5'], ['anthropic', 'claude-sonnet-4-5'], ['googleai', 'gemini-2.5-pro'],
    ]) {
      expect(table.priceAt(provider, model, NOW)).toBeDefined();
    }
  });

  it('has no price for an unknown model (never falls back to another model)', () => {
    expect(table.priceAt('openai', 'gpt-unknown', NOW)).toBeUndefined();
  });
});

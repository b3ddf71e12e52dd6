import { computeCost, unpricedReason } from './cost';
import { Dec, formatDecimal } from './money';
import { parsePriceRow, PriceTable } from './price-table';
import { checkRates, PriceRates } from './rates';
import { curatedServiceTierSources } from './service-tiers';
import { nestingProblem, tokenCounts } from './tokens';

/**
 * Token classes and units of issue 13: audio and image tokens, per-request
 * fees, per-model tool prices, time-of-day windows and service tiers. Every
 * expected number is worked out by hand in the comment above it (USD per 1M
 * tokens unless said otherwise).
 */
const ONE = new Dec(1);
const row = (rates: PriceRates) => parsePriceRow({ provider: 'test', model: 'm', effectiveFrom: '2025-01-01', source: 'test', ...rates });
const total = (c: { totalCost: Dec }) => formatDecimal(c.totalCost);

describe('audio and image tokens', () => {
  // The rates of OpenAI's gpt-realtime: text 4 / 0.4 / 16, audio 32 / 0.4 / 64, image 5 / 0.5.
  const realtime = row({
    input: '4', cachedInput: '0.4', output: '16', inputAudio: '32', cachedInputAudio: '0.4', outputAudio: '64', inputImage: '5', cachedInputImage: '0.5',
  });

  it('bills each modality and its cache reads at its own rate, once', () => {
    // prompt 10,000: audio 6,000 (1,000 cached), image 1,000 (200 cached), text 3,000 (500 cached); completion 2,000: audio 1,500, text 500.
    const t = tokenCounts({
      promptTokens: 10_000, cachedPromptTokens: 1_700, audioPromptTokens: 6_000, cachedAudioPromptTokens: 1_000, imagePromptTokens: 1_000, cachedImagePromptTokens: 200,
      completionTokens: 2_000, audioCompletionTokens: 1_500,
    });
    const c = computeCost(realtime, t, ONE);
    // text 2,500 x 4 + 500 x 0.4 + audio 5,000 x 32 + 1,000 x 0.4 + image 800 x 5 + 200 x 0.5
    // = 10,000 + 200 + 160,000 + 400 + 4,000 + 100 = 174,700 -> 0.1747
    expect(formatDecimal(c.promptCost)).toBe('0.1747');
    // text 500 x 16 + audio 1,500 x 64 = 8,000 + 96,000 = 104,000 -> 0.104
    expect(formatDecimal(c.completionCost)).toBe('0.104');
  });

  it('falls back: audio and image input to input, their cache reads to cached input, their output to output', () => {
    const plain = row({ input: '2', cachedInput: '0.5', output: '8' });
    const t = tokenCounts({ promptTokens: 1_000, audioPromptTokens: 600, cachedPromptTokens: 100, cachedAudioPromptTokens: 100, completionTokens: 100, imageCompletionTokens: 100 });
    // 900 x 2 + 100 x 0.5 = 1,850; 100 x 8 = 800 -> 0.00265, as if all were text
    expect(total(computeCost(plain, t, ONE))).toBe('0.00265');
  });

  it('names the class that does not nest', () => {
    expect(nestingProblem(tokenCounts({ promptTokens: 10, audioPromptTokens: 5, cachedAudioPromptTokens: 6, cachedPromptTokens: 6 }))?.field).toBe('cached_audio_prompt_tokens');
    expect(nestingProblem(tokenCounts({ promptTokens: 10, imagePromptTokens: 5, cachedImagePromptTokens: 6, cachedPromptTokens: 6 }))?.field).toBe('cached_image_prompt_tokens');
    expect(nestingProblem(tokenCounts({ promptTokens: 10, audioPromptTokens: 5, cachedAudioPromptTokens: 5, cachedPromptTokens: 4 }))?.field).toBe('cached_prompt_tokens');
    expect(nestingProblem(tokenCounts({ promptTokens: 10, audioPromptTokens: 8, imagePromptTokens: 3 }))?.field).toBe('prompt_tokens');
    expect(nestingProblem(tokenCounts({ completionTokens: 10, reasoningTokens: 5, audioCompletionTokens: 6 }))?.field).toBe('completion_tokens');
    expect(nestingProblem(tokenCounts({ promptTokens: 10, audioPromptTokens: 4, imagePromptTokens: 3, cachedPromptTokens: 3 }))).toBeUndefined();
    expect(() => computeCost(row({ input: '1', output: '1' }), tokenCounts({ promptTokens: 1, audioPromptTokens: 2 }), ONE)).toThrow(RangeError);
  });
});

describe('per-request fees and tool prices', () => {
  it('bills the per-request fee and each tool at the model price into the call cost, with the markup', () => {
    const p = row({ input: '3', output: '15', perRequest: '0.005', toolCalls: { web_search: '0.01', code_execution: '0.03' } });
    const c = computeCost(p, tokenCounts({ promptTokens: 1_000, completionTokens: 100 }), new Dec('1.5'), { requests: 1, toolCalls: { web_search: 3, code_execution: 1 } });
    // tokens 1,000 x 3 + 100 x 15 = 4,500 -> 0.0045; calls 0.005 + 3 x 0.01 + 0.03 = 0.065; x 1.5
    expect(formatDecimal(c.providerCost)).toBe('0.0695');
    expect(formatDecimal(c.callCost)).toBe('0.0975');
    expect(total(c)).toBe('0.10425');
  });

  it('prices web search per model from the catalogue (Anthropic: $10 per 1,000)', () => {
    const price = new PriceTable().priceAt('anthropic', 'claude-sonnet-4-5', new Date('2026-12-01T12:00:00Z'));
    expect(price?.rates.toolCalls.get('web_search')?.toFixed()).toBe('0.01');
  });

  it('fails closed for a tool the model has no price for', () => {
    const p = row({ input: '1', output: '1' });
    expect(unpricedReason(p, { toolCalls: { web_search: 1 } })).toMatch(/no price for web_search/);
    expect(unpricedReason(p, { toolCalls: { web_search: 0 } })).toBeUndefined();
    expect(() => computeCost(p, tokenCounts({}), ONE, { toolCalls: { web_search: 1 } })).toThrow(RangeError);
  });
});

describe('time-of-day prices', () => {
  // DeepSeek-style: base (off-peak) 0.14 / 0.0028 / 0.28, peak 01:00-04:00 and 06:00-10:00 UTC at 0.44 / 0.014 / 1.32,
  // and a window across midnight.
  const p = row({
    input: '0.14', cachedInput: '0.0028', output: '0.28',
    timeOfDay: [
      { startTime: '01:00', endTime: '04:00', input: '0.44', cachedInput: '0.014', output: '1.32' },
      { startTime: '06:00:00', endTime: '10:00:00', input: '0.44', cachedInput: '0.014', output: '1.32' },
      { startTime: '23:30', endTime: '00:30', input: '1', output: '1' },
    ],
  });
  const mix = tokenCounts({ promptTokens: 1_000_000, cachedPromptTokens: 500_000, completionTokens: 1_000_000 });
  const at = (hhmm: string) => total(computeCost(p, mix, ONE, { at: new Date(`2026-12-01T${hhmm}:00Z`) }));

  it('bills the window the usage time falls in, start inclusive, end exclusive', () => {
    // peak: 500,000 x 0.44 + 500,000 x 0.014 + 1,000,000 x 1.32 = 0.22 + 0.007 + 1.32
    expect(at('02:00')).toBe('1.547');
    expect(at('01:00')).toBe('1.547');
    // off-peak: 0.07 + 0.0014 + 0.28
    expect(at('04:00')).toBe('0.3514');
    expect(at('12:00')).toBe('0.3514');
    // across midnight: 500,000 x 1 + 500,000 x 1 (cached falls back to the window's input) + 1,000,000 x 1
    expect(at('23:45')).toBe('2');
    expect(at('00:15')).toBe('2');
    expect(at('00:30')).toBe('0.3514');
  });

  it('is in the catalogue for DeepSeek', () => {
    const v4 = new PriceTable().priceAt('deepseek', 'deepseek-v4-flash', new Date('2026-12-01T12:00:00Z'));
    expect(v4?.timeOfDay?.length).toBeGreaterThan(0);
  });

  it('rejects bad and overlapping windows, naming them', () => {
    const { problems } = checkRates({
      input: '1', output: '1',
      timeOfDay: [
        { startTime: '25:00', endTime: '01:00', input: '1', output: '1' },
        { startTime: '02:00', endTime: '02:00', input: '1', output: '1' },
        { startTime: '10:00', endTime: '12:00', input: '1', output: 'x' },
      ],
    });
    expect(problems.map((x) => x.field)).toEqual(['time_of_day[0].start_time', 'time_of_day[1].end_time', 'time_of_day[2].output_per_million']);
    const overlapping = checkRates({
      input: '1', output: '1',
      timeOfDay: [
        { startTime: '22:00', endTime: '02:00', input: '1', output: '1' },
        { startTime: '10:00', endTime: '12:00', input: '1', output: '1' },
        { startTime: '01:00', endTime: '03:00', input: '1', output: '1' },
      ],
    });
    expect(overlapping.problems).toEqual([{ field: 'time_of_day[2]', description: 'overlaps an earlier window' }]);
  });
});

describe('service tiers', () => {
  const table = new PriceTable();
  const NOW = new Date('2026-12-01T12:00:00Z');
  const gpt5 = table.priceAt('openai', 'gpt-5', NOW);
  const mix = tokenCounts({ promptTokens: 1_000_000, cachedPromptTokens: 200_000, completionTokens: 100_000 });

  it('multiplies the token rates by the tier factor (gpt-5: 1.25 / 0.125 / 10)', () => {
    if (!gpt5) throw new Error('gpt-5 is not priced');
    // standard: 800,000 x 1.25 + 200,000 x 0.125 + 100,000 x 10 = 1 + 0.025 + 1 = 2.025
    expect(total(computeCost(gpt5, mix, ONE))).toBe('2.025');
    expect(total(computeCost(gpt5, mix, ONE, { serviceTier: 'batch' }))).toBe('1.0125');
    expect(total(computeCost(gpt5, mix, ONE, { serviceTier: 'flex' }))).toBe('1.0125');
    // priority: $2.50 / $0.25 / $20
    expect(total(computeCost(gpt5, mix, ONE, { serviceTier: 'priority' }))).toBe('4.05');
  });

  it('leaves per-call and per-request prices alone', () => {
    const p = row({ input: '1', output: '1', perRequest: '0.01', serviceTiers: { batch: '0.5' } });
    const c = computeCost(p, tokenCounts({ promptTokens: 1_000_000 }), ONE, { requests: 1, serviceTier: 'batch' });
    expect(formatDecimal(c.promptCost)).toBe('0.5');
    expect(formatDecimal(c.callCost)).toBe('0.01');
  });

  it('fails closed for a tier the model has no factor for', () => {
    const o4 = table.priceAt('openai', 'o4-mini', NOW);
    if (!o4) throw new Error('o4-mini is not priced');
    expect(unpricedReason(o4, { serviceTier: 'priority' })).toMatch(/no priority service tier/);
    expect(unpricedReason(o4, { serviceTier: 'batch' })).toBeUndefined();
    expect(unpricedReason(row({ input: '1', output: '1' }), { serviceTier: 'batch' })).toMatch(/no batch/);
  });

  it('every curated factor has a source and is a valid factor', () => {
    for (const { key, tier } of curatedServiceTierSources()) {
      expect([key, tier.source.length > 10]).toEqual([key, true]);
      expect([key, checkRates({ input: '1', output: '1', serviceTiers: tier.factors }).problems]).toEqual([key, []]);
    }
    expect(checkRates({ input: '1', output: '1', serviceTiers: { batch: '0', turbo: '2' } as never }).problems.map((x) => x.field)).toEqual(['service_tiers.batch', 'service_tiers']);
  });
});

describe('rates validation', () => {
  it('names every bad new rate', () => {
    const { problems } = checkRates({
      input: '1', output: '1', inputAudio: '-1', outputImage: '1e3', perRequest: 'NaN',
      toolCalls: { web_search: 'x', 'Bad Name': '1' },
      longContext: { thresholdPromptTokens: 10, input: '1', output: '1', cachedInputAudio: '100000.5' },
    });
    expect(problems.map((x) => x.field).sort()).toEqual(
      ['input_audio_per_million', 'long_context.cached_input_audio_per_million', 'output_image_per_million', 'per_request', 'tool_calls', 'tool_calls[web_search]'].sort(),
    );
  });
});

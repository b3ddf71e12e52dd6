import type { PriceRates } from './rates';

/**
 * The built-in price table: one row per (provider, model, effective_from),
 * prices in USD as exact decimal strings (per 1M tokens; per call for
 * `perCall`). A model can have several rows; a charge uses the row in effect
 * at its usage time. Operators add or override prices at run time (SetPrice);
 * those take precedence over this table (see ./precedence.ts).
 *
 * Token classes (see README "Token accounting"): `input` is the rate of
 * prompt tokens that are neither cache reads nor cache writes; `cachedInput`
 * the rate of cache reads; `cacheWrite` the rate of cache writes (5-minute
 * lifetime where the provider distinguishes), `cacheWrite1h` of 1-hour cache
 * writes; `output` the rate of completion tokens; `reasoning` the rate of
 * reasoning tokens where a provider bills them apart from other output
 * (otherwise they are output); `perCall` the price of one call (a web-search
 * tool call, a plugin). `longContext` gives the rates of the whole request
 * when its prompt tokens exceed `thresholdPromptTokens`.
 *
 * To add a model: add a row (with the provider's pricing page as source and
 * the date the price took effect) and run `npm test`.
 */
export interface PriceRow extends PriceRates {
  provider: string;
  model: string;
  /** First UTC day (YYYY-MM-DD) on which this price applies. */
  effectiveFrom: string;
  /** Where the price comes from: the provider's pricing page. */
  source: string;
}

const OPENAI = 'OpenAI API pricing (openai.com/api/pricing)';
const ANTHROPIC = 'Anthropic pricing (docs.anthropic.com/en/docs/about-claude/pricing)';
const GOOGLE = 'Gemini Developer API pricing (ai.google.dev/gemini-api/docs/pricing)';

export const PRICE_CATALOG: readonly PriceRow[] = [
  // The six models of the seeds' TokenUsage.calculate_cost, and their price history.
  { provider: 'openai', model: 'gpt-4o', effectiveFrom: '2024-05-13', source: OPENAI, input: '5.00', output: '15.00' },
  { provider: 'openai', model: 'gpt-4o', effectiveFrom: '2024-10-02', source: OPENAI, input: '2.50', cachedInput: '1.25', output: '10.00' },
  { provider: 'openai', model: 'gpt-4o-mini', effectiveFrom: '2024-07-18', source: OPENAI, input: '0.15', cachedInput: '0.075', output: '0.60' },
  { provider: 'openai', model: 'gpt-4-turbo', effectiveFrom: '2024-04-09', source: OPENAI, input: '10.00', output: '30.00' },
  { provider: 'openai', model: 'gpt-3.5-turbo', effectiveFrom: '2024-01-25', source: OPENAI, input: '0.50', output: '1.50' },
  { provider: 'openai', model: 'o1-preview', effectiveFrom: '2024-09-12', source: OPENAI, input: '15.00', cachedInput: '7.50', output: '60.00' },
  { provider: 'openai', model: 'o1-mini', effectiveFrom: '2024-09-12', source: OPENAI, input: '3.00', cachedInput: '1.50', output: '12.00' },
  { provider: 'openai', model: 'o1-mini', effectiveFrom: '2025-01-31', source: OPENAI, input: '1.10', cachedInput: '0.55', output: '4.40' },
  // Current OpenAI flagships.
  { provider: 'openai', model: 'gpt-5', effectiveFrom: '2025-08-07', source: OPENAI, input: '1.25', cachedInput: '0.125', output: '10.00' },
  { provider: 'openai', model: 'gpt-5-mini', effectiveFrom: '2025-08-07', source: OPENAI, input: '0.25', cachedInput: '0.025', output: '2.00' },
  { provider: 'openai', model: 'gpt-4.1', effectiveFrom: '2025-04-14', source: OPENAI, input: '2.00', cachedInput: '0.50', output: '8.00' },
  { provider: 'openai', model: 'o3', effectiveFrom: '2025-06-10', source: OPENAI, input: '2.00', cachedInput: '0.50', output: '8.00' },
  // Current Anthropic flagships: cache reads at 0.1x input, 5-minute cache writes at 1.25x.
  {
    provider: 'anthropic', model: 'claude-sonnet-4-5', effectiveFrom: '2025-09-29', source: ANTHROPIC,
    input: '3.00', cachedInput: '0.30', cacheWrite: '3.75', output: '15.00',
    longContext: { thresholdPromptTokens: 200_000, input: '6.00', cachedInput: '0.60', cacheWrite: '7.50', output: '22.50' },
  },
  { provider: 'anthropic', model: 'claude-opus-4-1', effectiveFrom: '2025-08-05', source: ANTHROPIC, input: '15.00', cachedInput: '1.50', cacheWrite: '18.75', output: '75.00' },
  { provider: 'anthropic', model: 'claude-haiku-4-5', effectiveFrom: '2025-10-15', source: ANTHROPIC, input: '1.00', cachedInput: '0.10', cacheWrite: '1.25', output: '5.00' },
  // Current Google flagships: thinking tokens are billed as output.
  {
    provider: 'googleai', model: 'gemini-2.5-pro', effectiveFrom: '2025-06-17', source: GOOGLE,
    input: '1.25', cachedInput: '0.31', output: '10.00',
    longContext: { thresholdPromptTokens: 200_000, input: '2.50', cachedInput: '0.625', output: '15.00' },
  },
  { provider: 'googleai', model: 'gemini-2.5-flash', effectiveFrom: '2025-06-17', source: GOOGLE, input: '0.30', cachedInput: '0.075', output: '2.50' },
];

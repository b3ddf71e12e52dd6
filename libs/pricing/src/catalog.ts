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
  /**
   * Other names the provider's API reports for the same model at the same
   * price (e.g. Anthropic's dated snapshot ids); they are priced with this row.
   */
  aliases?: readonly string[];
}

const OPENAI = 'OpenAI API pricing (openai.com/api/pricing)';
const ANTHROPIC = 'Anthropic pricing (docs.anthropic.com/en/docs/about-claude/pricing)';
const GOOGLE = 'Gemini Developer API pricing (ai.google.dev/gemini-api/docs/pricing)';
const META = 'Meta Llama list prices of Together AI serverless inference (together.ai/pricing)';
const MISTRAL = 'Mistral AI pricing (mistral.ai/pricing)';
const DEEPSEEK = 'DeepSeek API pricing (api-docs.deepseek.com/quick_start/pricing)';
const XAI = 'xAI models and pricing (docs.x.ai/docs/models)';
const COHERE = 'Cohere pricing (cohere.com/pricing)';

type Rates = Omit<PriceRow, 'provider' | 'model' | 'effectiveFrom' | 'source'>;
const rowsOf =
  (provider: string, source: string) =>
  (model: string, effectiveFrom: string, rates: Rates): PriceRow => ({ provider, model, effectiveFrom, source, ...rates });
const openai = rowsOf('openai', OPENAI);
const anthropic = rowsOf('anthropic', ANTHROPIC);
const google = rowsOf('googleai', GOOGLE);
const meta = rowsOf('metaai', META);
const mistral = rowsOf('mistral', MISTRAL);
const deepseek = rowsOf('deepseek', DEEPSEEK);
const xai = rowsOf('xai', XAI);
const cohere = rowsOf('cohere', COHERE);

export const PRICE_CATALOG: readonly PriceRow[] = [
  // OpenAI. Cached input is inside prompt tokens; reasoning tokens are output.
  // The six models of the seeds' TokenUsage.calculate_cost, and their price history.
  openai('gpt-4o', '2024-05-13', { input: '5.00', output: '15.00' }),
  openai('gpt-4o', '2024-10-02', { input: '2.50', cachedInput: '1.25', output: '10.00' }),
  openai('gpt-4o-mini', '2024-07-18', { input: '0.15', cachedInput: '0.075', output: '0.60' }),
  openai('gpt-4-turbo', '2024-04-09', { input: '10.00', output: '30.00' }),
  openai('gpt-3.5-turbo', '2024-01-25', { input: '0.50', output: '1.50' }),
  openai('o1-preview', '2024-09-12', { input: '15.00', cachedInput: '7.50', output: '60.00' }),
  openai('o1-mini', '2024-09-12', { input: '3.00', cachedInput: '1.50', output: '12.00' }),
  openai('o1-mini', '2025-01-31', { input: '1.10', cachedInput: '0.55', output: '4.40' }),
  // Dated snapshots keep the price they launched with.
  openai('gpt-4o-2024-05-13', '2024-05-13', { input: '5.00', output: '15.00' }),
  openai('gpt-4o-2024-08-06', '2024-08-06', { input: '2.50', cachedInput: '1.25', output: '10.00' }),
  openai('gpt-4o-2024-11-20', '2024-11-20', { input: '2.50', cachedInput: '1.25', output: '10.00' }),
  openai('gpt-4o-mini-2024-07-18', '2024-07-18', { input: '0.15', cachedInput: '0.075', output: '0.60' }),
  openai('chatgpt-4o-latest', '2024-08-13', { input: '5.00', output: '15.00' }),
  openai('gpt-4-turbo-2024-04-09', '2024-04-09', { input: '10.00', output: '30.00' }),
  openai('gpt-4', '2023-03-14', { input: '30.00', output: '60.00' }),
  openai('gpt-4-32k', '2023-03-14', { input: '60.00', output: '120.00' }),
  openai('gpt-3.5-turbo-0125', '2024-01-25', { input: '0.50', output: '1.50' }),
  openai('gpt-3.5-turbo-instruct', '2023-09-18', { input: '1.50', output: '2.00' }),
  openai('davinci-002', '2023-08-22', { input: '2.00', output: '2.00' }),
  openai('babbage-002', '2023-08-22', { input: '0.40', output: '0.40' }),
  // Reasoning models (o3 had a price cut on 2025-06-10).
  openai('o1', '2024-12-17', { input: '15.00', cachedInput: '7.50', output: '60.00' }),
  openai('o1-pro', '2025-03-19', { input: '150.00', output: '600.00' }),
  openai('o3-mini', '2025-01-31', { input: '1.10', cachedInput: '0.55', output: '4.40' }),
  openai('o3', '2025-04-16', { input: '10.00', cachedInput: '2.50', output: '40.00' }),
  openai('o3', '2025-06-10', { input: '2.00', cachedInput: '0.50', output: '8.00' }),
  openai('o3-pro', '2025-06-10', { input: '20.00', output: '80.00' }),
  openai('o4-mini', '2025-04-16', { input: '1.10', cachedInput: '0.275', output: '4.40' }),
  openai('o3-deep-research', '2025-06-26', { input: '10.00', cachedInput: '2.50', output: '40.00' }),
  openai('o4-mini-deep-research', '2025-06-26', { input: '2.00', cachedInput: '0.50', output: '8.00' }),
  openai('codex-mini-latest', '2025-05-16', { input: '1.50', cachedInput: '0.375', output: '6.00' }),
  // GPT-4.1, GPT-4.5 and GPT-5.
  openai('gpt-4.1', '2025-04-14', { input: '2.00', cachedInput: '0.50', output: '8.00' }),
  openai('gpt-4.1-mini', '2025-04-14', { input: '0.40', cachedInput: '0.10', output: '1.60' }),
  openai('gpt-4.1-nano', '2025-04-14', { input: '0.10', cachedInput: '0.025', output: '0.40' }),
  openai('gpt-4.5-preview', '2025-02-27', { input: '75.00', cachedInput: '37.50', output: '150.00' }),
  openai('gpt-5', '2025-08-07', { input: '1.25', cachedInput: '0.125', output: '10.00' }),
  openai('gpt-5-mini', '2025-08-07', { input: '0.25', cachedInput: '0.025', output: '2.00' }),
  openai('gpt-5-nano', '2025-08-07', { input: '0.05', cachedInput: '0.005', output: '0.40' }),
  openai('gpt-5-chat-latest', '2025-08-07', { input: '1.25', cachedInput: '0.125', output: '10.00' }),
  openai('gpt-5-codex', '2025-09-15', { input: '1.25', cachedInput: '0.125', output: '10.00' }),
  openai('gpt-5-pro', '2025-10-06', { input: '15.00', output: '120.00' }),
  // Search, audio and realtime models: text token rates.
  openai('gpt-4o-search-preview', '2025-03-11', { input: '2.50', output: '10.00' }),
  openai('gpt-4o-mini-search-preview', '2025-03-11', { input: '0.15', output: '0.60' }),
  openai('computer-use-preview', '2025-03-11', { input: '3.00', output: '12.00' }),
  openai('gpt-4o-realtime-preview', '2024-12-17', { input: '5.00', cachedInput: '2.50', output: '20.00' }),
  openai('gpt-4o-mini-realtime-preview', '2024-12-17', { input: '0.60', cachedInput: '0.30', output: '2.40' }),
  openai('gpt-4o-audio-preview', '2024-12-17', { input: '2.50', output: '10.00' }),
  openai('gpt-4o-mini-audio-preview', '2024-12-17', { input: '0.15', output: '0.60' }),
  // Embeddings (input only).
  openai('text-embedding-3-small', '2024-01-25', { input: '0.02', output: '0' }),
  openai('text-embedding-3-large', '2024-01-25', { input: '0.13', output: '0' }),
  openai('text-embedding-ada-002', '2022-12-15', { input: '0.10', output: '0' }),
  // Built-in tools billed per call (record as CHARGE_TYPE_TOOL with call_count).
  openai('web_search_preview', '2025-03-11', { input: '0', output: '0', perCall: '0.025' }),
  openai('file_search', '2025-03-11', { input: '0', output: '0', perCall: '0.0025' }),
  openai('code_interpreter', '2025-03-11', { input: '0', output: '0', perCall: '0.03' }),

  // Anthropic: cache reads at 0.1x input, 5-minute cache writes at 1.25x, 1-hour writes at 2x.
  anthropic('claude-opus-4-5', '2025-11-24', {
    input: '5.00', cachedInput: '0.50', cacheWrite: '6.25', cacheWrite1h: '10.00', output: '25.00', aliases: ['claude-opus-4-5-20251101'],
  }),
  anthropic('claude-opus-4-1', '2025-08-05', {
    input: '15.00', cachedInput: '1.50', cacheWrite: '18.75', cacheWrite1h: '30.00', output: '75.00', aliases: ['claude-opus-4-1-20250805'],
  }),
  anthropic('claude-opus-4-0', '2025-05-22', {
    input: '15.00', cachedInput: '1.50', cacheWrite: '18.75', cacheWrite1h: '30.00', output: '75.00', aliases: ['claude-opus-4-20250514'],
  }),
  // Sonnet 4 and 4.5: above 200k prompt tokens (1M context) the whole request is billed at the long-context rates.
  anthropic('claude-sonnet-4-5', '2025-09-29', {
    input: '3.00', cachedInput: '0.30', cacheWrite: '3.75', cacheWrite1h: '6.00', output: '15.00', aliases: ['claude-sonnet-4-5-20250929'],
    longContext: { thresholdPromptTokens: 200_000, input: '6.00', cachedInput: '0.60', cacheWrite: '7.50', cacheWrite1h: '12.00', output: '22.50' },
  }),
  anthropic('claude-sonnet-4-0', '2025-05-22', {
    input: '3.00', cachedInput: '0.30', cacheWrite: '3.75', cacheWrite1h: '6.00', output: '15.00', aliases: ['claude-sonnet-4-20250514'],
    longContext: { thresholdPromptTokens: 200_000, input: '6.00', cachedInput: '0.60', cacheWrite: '7.50', cacheWrite1h: '12.00', output: '22.50' },
  }),
  anthropic('claude-3-7-sonnet-latest', '2025-02-24', {
    input: '3.00', cachedInput: '0.30', cacheWrite: '3.75', cacheWrite1h: '6.00', output: '15.00', aliases: ['claude-3-7-sonnet-20250219'],
  }),
  anthropic('claude-3-5-sonnet-latest', '2024-10-22', {
    input: '3.00', cachedInput: '0.30', cacheWrite: '3.75', cacheWrite1h: '6.00', output: '15.00', aliases: ['claude-3-5-sonnet-20241022', 'claude-3-5-sonnet-20240620'],
  }),
  anthropic('claude-haiku-4-5', '2025-10-15', {
    input: '1.00', cachedInput: '0.10', cacheWrite: '1.25', cacheWrite1h: '2.00', output: '5.00', aliases: ['claude-haiku-4-5-20251001'],
  }),
  anthropic('claude-3-5-haiku-latest', '2024-11-04', {
    input: '0.80', cachedInput: '0.08', cacheWrite: '1.00', cacheWrite1h: '1.60', output: '4.00', aliases: ['claude-3-5-haiku-20241022'],
  }),
  anthropic('claude-3-opus-latest', '2024-02-29', {
    input: '15.00', cachedInput: '1.50', cacheWrite: '18.75', cacheWrite1h: '30.00', output: '75.00', aliases: ['claude-3-opus-20240229'],
  }),
  anthropic('claude-3-haiku-20240307', '2024-03-13', { input: '0.25', cachedInput: '0.03', cacheWrite: '0.30', cacheWrite1h: '0.50', output: '1.25' }),
  // Server tools billed per call: web search at $10 per 1,000 searches.
  anthropic('web_search', '2025-05-07', { input: '0', output: '0', perCall: '0.01' }),

  // Google Gemini (provider "googleai", as in the seeds): thinking tokens are billed as output.
  google('gemini-3-pro-preview', '2025-11-18', {
    input: '2.00', cachedInput: '0.20', output: '12.00',
    longContext: { thresholdPromptTokens: 200_000, input: '4.00', cachedInput: '0.40', output: '18.00' },
  }),
  google('gemini-2.5-pro', '2025-06-17', {
    input: '1.25', cachedInput: '0.31', output: '10.00',
    longContext: { thresholdPromptTokens: 200_000, input: '2.50', cachedInput: '0.625', output: '15.00' },
  }),
  google('gemini-2.5-flash', '2025-06-17', { input: '0.30', cachedInput: '0.075', output: '2.50' }),
  google('gemini-2.5-flash-lite', '2025-07-22', { input: '0.10', cachedInput: '0.025', output: '0.40' }),
  google('gemini-2.0-flash', '2025-02-05', { input: '0.10', cachedInput: '0.025', output: '0.40' }),
  google('gemini-2.0-flash-lite', '2025-02-25', { input: '0.075', output: '0.30' }),
  // Gemini 1.5: a price cut on 2024-10-01 (Pro) and 2024-08-12 (Flash); above 128k prompt tokens the higher tier.
  google('gemini-1.5-pro', '2024-05-14', {
    input: '3.50', cachedInput: '0.875', output: '10.50',
    longContext: { thresholdPromptTokens: 128_000, input: '7.00', cachedInput: '1.75', output: '21.00' },
  }),
  google('gemini-1.5-pro', '2024-10-01', {
    input: '1.25', cachedInput: '0.3125', output: '5.00',
    longContext: { thresholdPromptTokens: 128_000, input: '2.50', cachedInput: '0.625', output: '10.00' },
  }),
  google('gemini-1.5-flash', '2024-05-14', {
    input: '0.35', cachedInput: '0.0875', output: '1.05',
    longContext: { thresholdPromptTokens: 128_000, input: '0.70', cachedInput: '0.175', output: '2.10' },
  }),
  google('gemini-1.5-flash', '2024-08-12', {
    input: '0.075', cachedInput: '0.01875', output: '0.30',
    longContext: { thresholdPromptTokens: 128_000, input: '0.15', cachedInput: '0.0375', output: '0.60' },
  }),
  google('gemini-1.5-flash-8b', '2024-10-03', {
    input: '0.0375', cachedInput: '0.01', output: '0.15',
    longContext: { thresholdPromptTokens: 128_000, input: '0.075', cachedInput: '0.02', output: '0.30' },
  }),
  google('gemini-embedding-001', '2025-07-14', { input: '0.15', output: '0' }),
  // Grounding with Google Search: $35 per 1,000 grounded prompts.
  google('google_search_grounding', '2024-10-31', { input: '0', output: '0', perCall: '0.035' }),

  // Meta Llama (provider "metaai", as in the seeds): Meta sells no metered API of its own at
  // list prices, so these are Together AI's serverless list prices for the same open weights.
  meta('llama-4-maverick-17b-128e-instruct', '2025-04-05', { input: '0.27', output: '0.85' }),
  meta('llama-4-scout-17b-16e-instruct', '2025-04-05', { input: '0.18', output: '0.59' }),
  meta('llama-3.3-70b-instruct', '2024-12-06', { input: '0.88', output: '0.88' }),
  meta('llama-3.2-3b-instruct', '2024-09-25', { input: '0.06', output: '0.06' }),
  meta('llama-3.2-11b-vision-instruct', '2024-09-25', { input: '0.18', output: '0.18' }),
  meta('llama-3.2-90b-vision-instruct', '2024-09-25', { input: '1.20', output: '1.20' }),
  meta('llama-3.1-8b-instruct', '2024-07-23', { input: '0.18', output: '0.18' }),
  meta('llama-3.1-70b-instruct', '2024-07-23', { input: '0.88', output: '0.88' }),
  meta('llama-3.1-405b-instruct', '2024-07-23', { input: '3.50', output: '3.50' }),
  meta('llama-3-70b-instruct', '2024-04-18', { input: '0.88', output: '0.88' }),
  meta('llama-3-8b-instruct', '2024-04-18', { input: '0.20', output: '0.20' }),

  // Mistral AI.
  mistral('mistral-large-latest', '2024-11-18', { input: '2.00', output: '6.00' }),
  mistral('mistral-medium-latest', '2025-05-07', { input: '0.40', output: '2.00' }),
  mistral('mistral-small-latest', '2025-03-17', { input: '0.10', output: '0.30' }),
  mistral('magistral-medium-latest', '2025-06-10', { input: '2.00', output: '5.00' }),
  mistral('magistral-small-latest', '2025-06-10', { input: '0.50', output: '1.50' }),
  mistral('codestral-latest', '2025-01-13', { input: '0.30', output: '0.90' }),
  mistral('devstral-small-latest', '2025-05-21', { input: '0.10', output: '0.30' }),
  mistral('devstral-medium-latest', '2025-07-10', { input: '0.40', output: '2.00' }),
  mistral('pixtral-large-latest', '2024-11-18', { input: '2.00', output: '6.00' }),
  mistral('pixtral-12b-2409', '2024-09-17', { input: '0.15', output: '0.15' }),
  mistral('open-mistral-nemo', '2024-07-18', { input: '0.15', output: '0.15' }),
  mistral('ministral-8b-latest', '2024-10-16', { input: '0.10', output: '0.10' }),
  mistral('ministral-3b-latest', '2024-10-16', { input: '0.04', output: '0.04' }),
  mistral('mistral-saba-latest', '2025-02-17', { input: '0.20', output: '0.60' }),
  mistral('mistral-embed', '2023-12-11', { input: '0.10', output: '0' }),
  mistral('codestral-embed', '2025-05-28', { input: '0.15', output: '0' }),

  // DeepSeek: cache hits (prompt_cache_hit_tokens) at the cached rate; prices changed
  // on 2025-09-05 (V3.1) and were cut on 2025-09-29 (V3.2-Exp).
  deepseek('deepseek-chat', '2025-02-09', { input: '0.27', cachedInput: '0.07', output: '1.10' }),
  deepseek('deepseek-chat', '2025-09-05', { input: '0.56', cachedInput: '0.07', output: '1.68' }),
  deepseek('deepseek-chat', '2025-09-29', { input: '0.28', cachedInput: '0.028', output: '0.42' }),
  deepseek('deepseek-reasoner', '2025-01-20', { input: '0.55', cachedInput: '0.14', output: '2.19' }),
  deepseek('deepseek-reasoner', '2025-09-05', { input: '0.56', cachedInput: '0.07', output: '1.68' }),
  deepseek('deepseek-reasoner', '2025-09-29', { input: '0.28', cachedInput: '0.028', output: '0.42' }),

  // xAI: above 128k prompt tokens the higher tier applies to Grok 4 models.
  xai('grok-4', '2025-07-09', {
    input: '3.00', cachedInput: '0.75', output: '15.00', aliases: ['grok-4-0709'],
    longContext: { thresholdPromptTokens: 128_000, input: '6.00', cachedInput: '0.75', output: '30.00' },
  }),
  xai('grok-4-fast-reasoning', '2025-09-19', {
    input: '0.20', cachedInput: '0.05', output: '0.50',
    longContext: { thresholdPromptTokens: 128_000, input: '0.40', cachedInput: '0.05', output: '1.00' },
  }),
  xai('grok-4-fast-non-reasoning', '2025-09-19', {
    input: '0.20', cachedInput: '0.05', output: '0.50',
    longContext: { thresholdPromptTokens: 128_000, input: '0.40', cachedInput: '0.05', output: '1.00' },
  }),
  xai('grok-code-fast-1', '2025-08-28', { input: '0.20', cachedInput: '0.02', output: '1.50' }),
  xai('grok-3', '2025-04-09', { input: '3.00', cachedInput: '0.75', output: '15.00' }),
  xai('grok-3-mini', '2025-04-09', { input: '0.30', cachedInput: '0.075', output: '0.50' }),
  xai('grok-2-1212', '2024-12-12', { input: '2.00', output: '10.00' }),
  xai('grok-2-vision-1212', '2024-12-12', { input: '2.00', output: '10.00' }),

  // Cohere: billed units. Command R and R+ had a price cut on 2024-08-30.
  cohere('command-a-03-2025', '2025-03-13', { input: '2.50', output: '10.00' }),
  cohere('command-r-plus', '2024-04-04', { input: '3.00', output: '15.00' }),
  cohere('command-r-plus', '2024-08-30', { input: '2.50', output: '10.00' }),
  cohere('command-r-plus-08-2024', '2024-08-30', { input: '2.50', output: '10.00' }),
  cohere('command-r', '2024-03-11', { input: '0.50', output: '1.50' }),
  cohere('command-r', '2024-08-30', { input: '0.15', output: '0.60' }),
  cohere('command-r-08-2024', '2024-08-30', { input: '0.15', output: '0.60' }),
  cohere('command-r7b-12-2024', '2024-12-13', { input: '0.0375', output: '0.15' }),
  cohere('embed-v4.0', '2025-04-15', { input: '0.12', output: '0' }),
  cohere('embed-english-v3.0', '2023-11-02', { input: '0.10', output: '0' }),
  cohere('embed-multilingual-v3.0', '2023-11-02', { input: '0.10', output: '0' }),
];

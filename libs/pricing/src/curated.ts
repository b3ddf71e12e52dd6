import type { CuratedModel, CuratedProvider } from './catalogue-file';
import type { PriceRates } from './rates';

/**
 * Our curated layer on top of the upstream price database: what we know
 * better, each entry saying why. tools/prices merges it into the generated
 * catalogue (./generated/catalogue.json) and prints every disagreement with
 * upstream. An entry with `rows` (our rows replace upstream's) or `extend`
 * (rates added to upstream's) records in `reviewed` the upstream price it was
 * checked against; when upstream changes, `npm run prices:generate` fails
 * until the entry is reviewed again (then update `reviewed` to the value it
 * prints). Rows are in USD per 1M tokens (per call for `perCall`), exact
 * decimal strings, with the first day they apply.
 *
 * Reasons used below:
 * - SINCE: upstream gives no start date; this is the day the price took
 *   effect (the provider's launch or price change), so earlier usage of the
 *   model is priced too.
 * - HISTORY: dated price history upstream lacks (it keeps only today's price).
 * - SNAPSHOT: a dated snapshot id keeps the price it launched with, while the
 *   alias it belongs to upstream had another price then.
 * - ABSENT: upstream does not list the model (or only as a loose rule of
 *   another model); we keep pricing it.
 */

const OPENAI = 'OpenAI API pricing (openai.com/api/pricing)';
const ANTHROPIC = 'Anthropic pricing (docs.anthropic.com/en/docs/about-claude/pricing)';
const GOOGLE = 'Gemini Developer API pricing (ai.google.dev/gemini-api/docs/pricing)';
const META = 'Meta Llama list prices of Together AI serverless inference (together.ai/pricing)';
const MISTRAL = 'Mistral AI pricing (mistral.ai/pricing)';
const DEEPSEEK = 'DeepSeek API pricing (api-docs.deepseek.com/quick_start/pricing)';
const XAI = 'xAI models and pricing (docs.x.ai/docs/models)';
const COHERE = 'Cohere pricing (cohere.com/pricing)';

const SINCE = 'SINCE: upstream gives no start date; the price took effect on this day';
const HISTORY = 'HISTORY: dated price history upstream lacks';
const SNAPSHOT = 'SNAPSHOT: the dated snapshot keeps its launch price';
const ABSENT = 'ABSENT: upstream does not list the model';

type Row = PriceRates & { effectiveFrom: string; source: string };
const row = (source: string) => (effectiveFrom: string, rates: PriceRates): Row => ({ effectiveFrom, source, ...rates });
const openai = row(OPENAI);
const anthropic = row(ANTHROPIC);
const google = row(GOOGLE);
const meta = row(META);
const mistral = row(MISTRAL);
const deepseek = row(DEEPSEEK);
const xai = row(XAI);
const cohere = row(COHERE);

const since = (provider: string, model: string, day: string, more: Partial<CuratedModel> = {}): CuratedModel => ({ provider, model, since: day, why: SINCE, ...more });

/** OpenAI's web_search_preview tool per model: $25 per 1,000 calls on GPT-4o and GPT-4.1 models, $10 on reasoning models; the GA web_search tool is $10 everywhere. */
const PREVIEW_SEARCH_4O = { web_search: '0.01', web_search_preview: '0.025', file_search: '0.0025' };
const PREVIEW_SEARCH_REASONING = { web_search: '0.01', web_search_preview: '0.01', file_search: '0.0025' };
const TOOLS_4O = 'OpenAI bills the web_search_preview tool at $25 per 1,000 calls on GPT-4o / GPT-4.1 models (upstream has only the GA web_search price)';
const TOOLS_REASONING = 'OpenAI bills the web_search_preview tool at $10 per 1,000 calls on reasoning models (upstream has only the GA web_search price)';

/** Anthropic Claude long context (1M window, beta): above 200k prompt tokens the whole request at 2x input, 1.5x output. */
const SONNET_4_LONG = { thresholdPromptTokens: 200_000, input: '6.00', cachedInput: '0.60', cacheWrite: '7.50', cacheWrite1h: '12.00', output: '22.50' };

export const CURATED: readonly CuratedModel[] = [
  // ---- OpenAI ----
  {
    provider: 'openai', model: 'gpt-4o', why: `${HISTORY} (price cut on 2024-10-02); ${TOOLS_4O}`, reviewed: 'input 2.5, output 10, cachedInput 1.25, toolCalls {file_search 0.0025, web_search 0.01}',
    rows: [
      openai('2024-05-13', { input: '5.00', output: '15.00' }),
      openai('2024-10-02', { input: '2.50', cachedInput: '1.25', output: '10.00', toolCalls: PREVIEW_SEARCH_4O }),
    ],
  },
  {
    provider: 'openai', model: 'gpt-4o-2024-08-06', why: `${SNAPSHOT} (upstream prices it as gpt-4o, which cost $5/$15 until 2024-10-02)`, reviewed: 'input 2.5, output 10, cachedInput 1.25, toolCalls {file_search 0.0025, web_search 0.01}',
    rows: [openai('2024-08-06', { input: '2.50', cachedInput: '1.25', output: '10.00', toolCalls: PREVIEW_SEARCH_4O })],
  },
  {
    provider: 'openai', model: 'gpt-4o-2024-11-20', why: `${SNAPSHOT} (upstream prices it as gpt-4o)`, reviewed: 'input 2.5, output 10, cachedInput 1.25, toolCalls {file_search 0.0025, web_search 0.01}',
    rows: [openai('2024-11-20', { input: '2.50', cachedInput: '1.25', output: '10.00', toolCalls: PREVIEW_SEARCH_4O })],
  },
  since('openai', 'gpt-4o-mini', '2024-07-18', { why: `${SINCE}; ${TOOLS_4O}`, extend: { toolCalls: PREVIEW_SEARCH_4O }, reviewed: 'input 0.15, output 0.6, cachedInput 0.075, toolCalls {file_search 0.0025, web_search 0.01}' }),
  since('openai', 'gpt-4.1', '2025-04-14', { why: `${SINCE}; ${TOOLS_4O}`, extend: { toolCalls: PREVIEW_SEARCH_4O }, reviewed: 'input 2, output 8, cachedInput 0.5, toolCalls {file_search 0.0025, web_search 0.01}' }),
  since('openai', 'gpt-4.1-mini', '2025-04-14', { why: `${SINCE}; ${TOOLS_4O}`, extend: { toolCalls: PREVIEW_SEARCH_4O }, reviewed: 'input 0.4, output 1.6, cachedInput 0.1, toolCalls {file_search 0.0025, web_search 0.01}' }),
  since('openai', 'o4-mini', '2025-04-16', { why: `${SINCE}; ${TOOLS_REASONING}`, extend: { toolCalls: PREVIEW_SEARCH_REASONING }, reviewed: 'input 1.1, output 4.4, cachedInput 0.275, toolCalls {file_search 0.0025, web_search 0.01}' }),
  since('openai', 'gpt-5', '2025-08-07', { why: `${SINCE}; ${TOOLS_REASONING}`, extend: { toolCalls: PREVIEW_SEARCH_REASONING }, reviewed: 'input 1.25, output 10, cachedInput 0.125, toolCalls {file_search 0.0025, web_search 0.01}' }),
  since('openai', 'gpt-5-mini', '2025-08-07', { why: `${SINCE}; ${TOOLS_REASONING}`, extend: { toolCalls: PREVIEW_SEARCH_REASONING }, reviewed: 'input 0.25, output 2, cachedInput 0.025, toolCalls {file_search 0.0025, web_search 0.01}' }),
  since('openai', 'gpt-5-nano', '2025-08-07', { why: `${SINCE}; ${TOOLS_REASONING}`, extend: { toolCalls: PREVIEW_SEARCH_REASONING }, reviewed: 'input 0.05, output 0.4, cachedInput 0.005, toolCalls {file_search 0.0025, web_search 0.01}' }),
  since('openai', 'gpt-5-pro', '2025-10-06', { why: `${SINCE}; ${TOOLS_REASONING}`, extend: { toolCalls: PREVIEW_SEARCH_REASONING }, reviewed: 'input 15, output 120, toolCalls {file_search 0.0025, web_search 0.01}' }),
  {
    provider: 'openai', model: 'o3', why: `${SINCE} (launch 2025-04-16 at $10/$40; upstream dates only the 2025-06-10 cut); ${TOOLS_REASONING}`, reviewed: 'input 10, output 40, cachedInput 0.5, toolCalls {file_search 0.0025, web_search 0.01} | from 2025-06-10: input 2, output 8, cachedInput 0.5, toolCalls {file_search 0.0025, web_search 0.01}',
    rows: [
      openai('2025-04-16', { input: '10.00', cachedInput: '2.50', output: '40.00' }),
      openai('2025-06-10', { input: '2.00', cachedInput: '0.50', output: '8.00', toolCalls: PREVIEW_SEARCH_REASONING }),
    ],
  },
  {
    provider: 'openai', model: 'o1-mini', why: `${HISTORY} (cut to $1.10/$4.40 on 2025-01-31)`, reviewed: 'input 1.1, output 4.4, cachedInput 0.55',
    rows: [openai('2024-09-12', { input: '3.00', cachedInput: '1.50', output: '12.00' }), openai('2025-01-31', { input: '1.10', cachedInput: '0.55', output: '4.40' })],
  },
  since('openai', 'gpt-4-turbo', '2024-04-09'),
  since('openai', 'gpt-3.5-turbo', '2024-01-25'),
  since('openai', 'o1-preview', '2024-09-12'),
  since('openai', 'chatgpt-4o-latest', '2024-08-13'),
  since('openai', 'gpt-4o-2024-05-13', '2024-05-13'),
  since('openai', 'gpt-4', '2023-03-14'),
  since('openai', 'gpt-4-32k', '2023-03-14'),
  since('openai', 'gpt-3.5-turbo-instruct', '2023-09-18'),
  since('openai', 'o1', '2024-12-17'),
  since('openai', 'o1-pro', '2025-03-19'),
  since('openai', 'o3-mini', '2025-01-31'),
  since('openai', 'o3-pro', '2025-06-10'),
  since('openai', 'o3-deep-research', '2025-06-26'),
  since('openai', 'o4-mini-deep-research', '2025-06-26'),
  since('openai', 'codex-mini', '2025-05-16'),
  since('openai', 'gpt-4.1-nano', '2025-04-14'),
  since('openai', 'gpt-4.5-preview', '2025-02-27'),
  since('openai', 'gpt-4o-search-preview', '2025-03-11'),
  since('openai', 'gpt-4o-realtime-preview', '2024-12-17'),
  since('openai', 'gpt-4o-mini-realtime-preview', '2024-12-17'),
  since('openai', 'gpt-4o-audio-preview', '2024-12-17'),
  since('openai', 'gpt-4o-mini-audio-preview', '2024-12-17'),
  since('openai', 'text-embedding-3-small', '2024-01-25'),
  since('openai', 'text-embedding-3-large', '2024-01-25'),
  since('openai', 'text-embedding-ada-002', '2022-12-15'),
  { provider: 'openai', model: 'davinci-002', why: ABSENT, reviewed: 'absent', rows: [openai('2023-08-22', { input: '2.00', output: '2.00' })] },
  { provider: 'openai', model: 'babbage-002', why: ABSENT, reviewed: 'absent', rows: [openai('2023-08-22', { input: '0.40', output: '0.40' })] },
  { provider: 'openai', model: 'computer-use-preview', why: ABSENT, reviewed: 'absent', rows: [openai('2025-03-11', { input: '3.00', output: '12.00' })] },
  // Built-in tools as charges of their own (CHARGE_TYPE_TOOL with call_count); inside a completion, record
  // tool_calls on the model's charge instead: the model's own tool prices apply (see web_search_preview above).
  {
    provider: 'openai', model: 'web_search', reviewed: 'absent',
    why: `${ABSENT}: the GA web search tool as a TOOL charge, $10 per 1,000 calls on every model (we have no start date for it: priced from the day it was added here)`,
    rows: [openai('2026-12-01', { input: '0', output: '0', perCall: '0.01' })],
  },
  {
    provider: 'openai', model: 'web_search_preview', why: `${ABSENT}: the preview web search tool as a TOOL charge at its GPT-4o / GPT-4.1 price (reasoning models bill $10: record it as tool_calls on their charge)`, reviewed: 'absent',
    rows: [openai('2025-03-11', { input: '0', output: '0', perCall: '0.025' })],
  },
  { provider: 'openai', model: 'file_search', why: `${ABSENT}: the file search tool as a TOOL charge`, reviewed: 'absent', rows: [openai('2025-03-11', { input: '0', output: '0', perCall: '0.0025' })] },
  { provider: 'openai', model: 'code_interpreter', why: `${ABSENT}: a code interpreter container as a TOOL charge`, reviewed: 'absent', rows: [openai('2025-03-11', { input: '0', output: '0', perCall: '0.03' })] },

  // ---- Anthropic ----
  since('anthropic', 'claude-opus-4-5', '2025-11-24', { aliases: ['claude-opus-4-5-20251101'] }),
  since('anthropic', 'claude-opus-4-1', '2025-08-05', { aliases: ['claude-opus-4-1-20250805'] }),
  since('anthropic', 'claude-opus-4-0', '2025-05-22'),
  since('anthropic', 'claude-sonnet-4-5', '2025-09-29', { aliases: ['claude-sonnet-4-5-20250929'] }),
  {
    provider: 'anthropic', model: 'claude-sonnet-4-0', aliases: ['claude-sonnet-4-20250514'], reviewed: 'input 3, output 15, cachedInput 0.3, cacheWrite 3.75, cacheWrite1h 6, toolCalls {web_search 0.01}',
    why: 'long context upstream misses: with the 1M context window, above 200k prompt tokens the whole request is billed at $6 / $22.50 (cache 0.1x / 1.25x / 2x of that)',
    rows: [anthropic('2025-05-22', { input: '3.00', cachedInput: '0.30', cacheWrite: '3.75', cacheWrite1h: '6.00', output: '15.00', toolCalls: { web_search: '0.01' }, longContext: SONNET_4_LONG })],
  },
  since('anthropic', 'claude-3-7-sonnet-latest', '2025-02-24', { aliases: ['claude-3-7-sonnet-20250219'] }),
  since('anthropic', 'claude-3-5-sonnet', '2024-06-20', { aliases: ['claude-3-5-sonnet-latest', 'claude-3-5-sonnet-20241022', 'claude-3-5-sonnet-20240620'] }),
  since('anthropic', 'claude-haiku-4-5', '2025-10-15', { aliases: ['claude-haiku-4-5-20251001'] }),
  since('anthropic', 'claude-3-5-haiku-latest', '2024-11-04', { aliases: ['claude-3-5-haiku-20241022'] }),
  since('anthropic', 'claude-3-opus-latest', '2024-02-29', { aliases: ['claude-3-opus-20240229'] }),
  since('anthropic', 'claude-3-haiku', '2024-03-13', { aliases: ['claude-3-haiku-20240307'] }),
  {
    provider: 'anthropic', model: 'web_search', why: `${ABSENT}: the server web search tool as a TOOL charge, $10 per 1,000 searches`, reviewed: 'absent',
    rows: [anthropic('2025-05-07', { input: '0', output: '0', perCall: '0.01' })],
  },

  // ---- Google Gemini (provider "googleai", as the Django models this service replaces call it) ----
  since('googleai', 'gemini-3-pro-preview', '2025-11-18'),
  {
    provider: 'googleai', model: 'gemini-2.5-pro', reviewed: 'input 1.25, output 10, cachedInput 0.125; above 200000: input 2.5, output 15, cachedInput 0.25',
    why: `${HISTORY}: cache reads were 25% of input until Google cut them to 10% in November 2025 (upstream recorded it on 2025-11-07)`,
    rows: [
      google('2025-06-17', { input: '1.25', cachedInput: '0.31', output: '10.00', longContext: { thresholdPromptTokens: 200_000, input: '2.50', cachedInput: '0.625', output: '15.00' } }),
      google('2025-11-07', { input: '1.25', cachedInput: '0.125', output: '10.00', longContext: { thresholdPromptTokens: 200_000, input: '2.50', cachedInput: '0.25', output: '15.00' } }),
    ],
  },
  {
    provider: 'googleai', model: 'gemini-2.5-flash', reviewed: 'input 0.3, output 2.5, cachedInput 0.03, inputAudio 1, cachedInputAudio 0.1',
    why: `${HISTORY}: cache reads were 25% of input until Google cut them to 10% in November 2025 (upstream recorded it on 2025-11-07)`,
    rows: [
      google('2025-06-17', { input: '0.30', cachedInput: '0.075', output: '2.50', inputAudio: '1.00', cachedInputAudio: '0.25' }),
      google('2025-11-07', { input: '0.30', cachedInput: '0.03', output: '2.50', inputAudio: '1.00', cachedInputAudio: '0.10' }),
    ],
  },
  {
    provider: 'googleai', model: 'gemini-2.5-flash-lite', reviewed: 'input 0.1, output 0.4, cachedInput 0.01, inputAudio 0.3, cachedInputAudio 0.03',
    why: `${HISTORY}: cache reads were 25% of input until Google cut them to 10% in November 2025 (upstream recorded it on 2025-11-07)`,
    rows: [
      google('2025-07-22', { input: '0.10', cachedInput: '0.025', output: '0.40', inputAudio: '0.50', cachedInputAudio: '0.125' }),
      google('2025-11-07', { input: '0.10', cachedInput: '0.01', output: '0.40', inputAudio: '0.30', cachedInputAudio: '0.03' }),
    ],
  },
  since('googleai', 'gemini-2.0-flash', '2025-02-05'),
  since('googleai', 'gemini-2.0-flash-lite', '2025-02-25'),
  {
    provider: 'googleai', model: 'gemini-1.5-pro', reviewed: 'input 1.25, output 5; above 128000: input 2.5, output 10',
    why: `${HISTORY} (cut on 2024-10-01); upstream also lacks its cache-read rate`,
    rows: [
      google('2024-05-14', { input: '3.50', cachedInput: '0.875', output: '10.50', longContext: { thresholdPromptTokens: 128_000, input: '7.00', cachedInput: '1.75', output: '21.00' } }),
      google('2024-10-01', { input: '1.25', cachedInput: '0.3125', output: '5.00', longContext: { thresholdPromptTokens: 128_000, input: '2.50', cachedInput: '0.625', output: '10.00' } }),
    ],
  },
  {
    provider: 'googleai', model: 'gemini-1.5-flash', why: `${HISTORY} (cut on 2024-08-12)`, reviewed: 'input 0.075, output 0.3, cachedInput 0.01875; above 128000: input 0.15, output 0.6, cachedInput 0.0375',
    rows: [
      google('2024-05-14', { input: '0.35', cachedInput: '0.0875', output: '1.05', longContext: { thresholdPromptTokens: 128_000, input: '0.70', cachedInput: '0.175', output: '2.10' } }),
      google('2024-08-12', { input: '0.075', cachedInput: '0.01875', output: '0.30', longContext: { thresholdPromptTokens: 128_000, input: '0.15', cachedInput: '0.0375', output: '0.60' } }),
    ],
  },
  {
    provider: 'googleai', model: 'gemini-1.5-flash-8b', reviewed: 'absent',
    why: 'upstream error: its `contains: gemini-1.5-flash` rule prices gemini-1.5-flash-8b as gemini-1.5-flash (2x); this is the 8B price',
    rows: [google('2024-10-03', { input: '0.0375', cachedInput: '0.01', output: '0.15', longContext: { thresholdPromptTokens: 128_000, input: '0.075', cachedInput: '0.02', output: '0.30' } })],
  },
  since('googleai', 'gemini-embedding-001', '2025-07-14'),
  {
    provider: 'googleai', model: 'google_search_grounding', why: `${ABSENT}: Grounding with Google Search as a TOOL charge, $35 per 1,000 grounded prompts`, reviewed: 'absent',
    rows: [google('2024-10-31', { input: '0', output: '0', perCall: '0.035' })],
  },

  // ---- Meta Llama (provider "metaai", as the Django models this service replaces call it) ----
  // Meta sells no metered API of its own at list prices: these are Together AI's serverless list prices
  // for the same open weights, under the model names the Django models used.
  ...(
    [
      ['llama-4-maverick-17b-128e-instruct', '2025-04-05', '0.27', '0.85'],
      ['llama-4-scout-17b-16e-instruct', '2025-04-05', '0.18', '0.59'],
      ['llama-3.3-70b-instruct', '2024-12-06', '0.88', '0.88'],
      ['llama-3.2-3b-instruct', '2024-09-25', '0.06', '0.06'],
      ['llama-3.2-11b-vision-instruct', '2024-09-25', '0.18', '0.18'],
      ['llama-3.2-90b-vision-instruct', '2024-09-25', '1.20', '1.20'],
      ['llama-3.1-8b-instruct', '2024-07-23', '0.18', '0.18'],
      ['llama-3.1-70b-instruct', '2024-07-23', '0.88', '0.88'],
      ['llama-3.1-405b-instruct', '2024-07-23', '3.50', '3.50'],
      ['llama-3-70b-instruct', '2024-04-18', '0.88', '0.88'],
      ['llama-3-8b-instruct', '2024-04-18', '0.20', '0.20'],
    ] as const
  ).map(([model, day, input, output]): CuratedModel => ({
    provider: 'metaai', model, why: `${ABSENT}: upstream has no Meta provider; the Django models this service replaces price Llama as "metaai"`, reviewed: 'absent',
    rows: [meta(day, { input, output })],
  })),

  // ---- Mistral AI ----
  since('mistral', 'mistral-large', '2024-11-18'),
  since('mistral', 'mistral-small-latest', '2025-03-17'),
  since('mistral', 'codestral', '2025-01-13'),
  since('mistral', 'devstral-small', '2025-05-21'),
  since('mistral', 'pixtral-large', '2024-11-18'),
  since('mistral', 'mistral-nemo', '2024-07-18', { aliases: ['open-mistral-nemo'] }),
  since('mistral', 'mistral-saba', '2025-02-17', { aliases: ['mistral-saba-latest'] }),
  since('mistral', 'mistral-medium-latest', '2025-05-07', { why: `${SINCE} (Medium 3; upstream dates the move to Medium 3.5 on 2026-06-16)` }),
  since('mistral', 'ministral-8b-latest', '2024-10-16', { why: `${SINCE} (Ministral 8B; upstream dates the move to Ministral 3 8B on 2025-12-02)` }),
  since('mistral', 'magistral-medium', '2025-06-10', { aliases: ['magistral-medium-latest'] }),
  since('mistral', 'magistral-small', '2025-06-10', { aliases: ['magistral-small-latest'] }),
  since('mistral', 'ministral-3b', '2024-10-16', { aliases: ['ministral-3b-latest'] }),
  since('mistral', 'pixtral-12b', '2024-09-17', { aliases: ['pixtral-12b-2409'] }),
  since('mistral', 'mistral-embed', '2023-12-11'),
  { provider: 'mistral', model: 'devstral-medium-latest', why: ABSENT, reviewed: 'absent', rows: [mistral('2025-07-10', { input: '0.40', output: '2.00' })] },
  { provider: 'mistral', model: 'codestral-embed', why: ABSENT, reviewed: 'absent', rows: [mistral('2025-05-28', { input: '0.15', output: '0' })] },

  // ---- DeepSeek ----
  ...(['deepseek-chat', 'deepseek-reasoner'] as const).map((model): CuratedModel => ({
    provider: 'deepseek', model, retired: '2026-07-25',
    reviewed: model === 'deepseek-chat'
      ? 'input 0.135, output 0.55, cachedInput 0.035; 00:30:00-16:30:00: input 0.27, output 1.1, cachedInput 0.07'
      : 'input 0.135, output 0.55, cachedInput 0.035; 00:30:00-16:30:00: input 0.55, output 2.19, cachedInput 0.14',
    why: `${HISTORY}: V3 / R1 prices, the V3.1 change (2025-09-05) and the V3.2 cut (2025-09-29); DeepSeek then served both names with V4-Flash (its price as upstream first listed it, checked 2026-05-12) and retired them after 2026-07-24. Upstream still lists 2025 off-peak windows for them`,
    rows: [
      deepseek(model === 'deepseek-chat' ? '2025-02-09' : '2025-01-20', model === 'deepseek-chat' ? { input: '0.27', cachedInput: '0.07', output: '1.10' } : { input: '0.55', cachedInput: '0.14', output: '2.19' }),
      deepseek('2025-09-05', { input: '0.56', cachedInput: '0.07', output: '1.68' }),
      deepseek('2025-09-29', { input: '0.28', cachedInput: '0.028', output: '0.42' }),
      deepseek('2026-05-12', { input: '0.14', cachedInput: '0.0028', output: '0.28' }),
    ],
  })),
  since('deepseek', 'deepseek-v4-flash', '2026-05-12', { why: `${SINCE} (the V4-Flash price as upstream first listed it, checked 2026-05-12)` }),
  since('deepseek', 'deepseek-v4-pro', '2026-06-02', { why: `${SINCE} (the V4-Pro permanent price as upstream first listed it, checked 2026-06-02)` }),

  // ---- xAI: above 128k prompt tokens the higher tier applies to Grok 4 models (upstream misses it) ----
  {
    provider: 'xai', model: 'grok-4', upstreamModel: 'grok-4-0709', reviewed: 'input 3, output 15, cachedInput 0.75',
    why: 'long context upstream misses: above 128k prompt tokens Grok 4 bills $6 / $30',
    rows: [xai('2025-07-09', { input: '3.00', cachedInput: '0.75', output: '15.00', longContext: { thresholdPromptTokens: 128_000, input: '6.00', cachedInput: '0.75', output: '30.00' } })],
  },
  ...(['grok-4-fast-reasoning', 'grok-4-fast-non-reasoning'] as const).map((model): CuratedModel => ({
    provider: 'xai', model, reviewed: 'input 0.2, output 0.5, cachedInput 0.05', why: 'long context upstream misses: above 128k prompt tokens Grok 4 Fast bills $0.40 / $1.00',
    rows: [xai('2025-09-19', { input: '0.20', cachedInput: '0.05', output: '0.50', longContext: { thresholdPromptTokens: 128_000, input: '0.40', cachedInput: '0.05', output: '1.00' } })],
  })),
  since('xai', 'grok-code-fast-1', '2025-08-28'),
  since('xai', 'grok-3', '2025-04-09'),
  since('xai', 'grok-3-mini', '2025-04-09'),
  since('xai', 'grok-2-1212', '2024-12-12'),
  since('xai', 'grok-2-vision-1212', '2024-12-12'),

  // ---- Cohere ----
  {
    provider: 'cohere', model: 'command-r-plus', why: `${HISTORY} (cut on 2024-08-30)`, reviewed: 'input 2.5, output 10',
    rows: [cohere('2024-04-04', { input: '3.00', output: '15.00' }), cohere('2024-08-30', { input: '2.50', output: '10.00' })],
  },
  {
    provider: 'cohere', model: 'command-r', why: `${HISTORY} (cut on 2024-08-30)`, reviewed: 'input 0.15, output 0.6',
    rows: [cohere('2024-03-11', { input: '0.50', output: '1.50' }), cohere('2024-08-30', { input: '0.15', output: '0.60' })],
  },
  {
    provider: 'cohere', model: 'command-r-plus-08-2024', why: `${SNAPSHOT} (upstream prices it as command-r-plus, $3 / $15 before 2024-08-30)`, reviewed: 'input 2.5, output 10',
    rows: [cohere('2024-08-30', { input: '2.50', output: '10.00' })],
  },
  {
    provider: 'cohere', model: 'command-r-08-2024', why: `${SNAPSHOT} (upstream prices it as command-r, $0.50 / $1.50 before 2024-08-30)`, reviewed: 'input 0.15, output 0.6',
    rows: [cohere('2024-08-30', { input: '0.15', output: '0.60' })],
  },
  since('cohere', 'command-a', '2025-03-13'),
  since('cohere', 'command-r7b', '2024-12-13'),
  since('cohere', 'embed-v4.0', '2025-04-15'),
  { provider: 'cohere', model: 'embed-english-v3.0', why: ABSENT, reviewed: 'absent', rows: [cohere('2023-11-02', { input: '0.10', output: '0' })] },
  { provider: 'cohere', model: 'embed-multilingual-v3.0', why: ABSENT, reviewed: 'absent', rows: [cohere('2023-11-02', { input: '0.10', output: '0' })] },
];

/**
 * Provider ids of our own and more ids for upstream providers. A charge under
 * an alias is priced as the provider (and stored under the id it was sent with).
 */
export const CURATED_PROVIDERS: readonly CuratedProvider[] = [
  { id: 'googleai', aliases: ['google', 'gemini', 'vertex', 'vertex_ai', 'google-vertex'], why: 'the Django models this service replaces call Google "googleai"; upstream\'s "google" prices the Gemini API and Vertex AI alike' },
  { id: 'metaai', name: 'Meta Llama', aliases: ['meta'], why: 'the Django models this service replaces price Llama models as "metaai"', pricingUrls: ['https://www.together.ai/pricing'] },
  { id: 'xai', aliases: ['grok'], why: 'our id for xAI (upstream: "x-ai")' },
  { id: 'aws', aliases: ['bedrock', 'aws-bedrock', 'amazon-bedrock'], why: 'AWS Bedrock, as SDKs and gateways name it' },
  { id: 'azure', aliases: ['azure-openai', 'azure_openai', 'azure-ai'], why: 'Azure OpenAI / AI Foundry, as SDKs and gateways name it' },
  { id: 'together', aliases: ['together_ai', 'together-ai', 'togetherai'], why: 'Together AI, as SDKs and gateways name it' },
  { id: 'fireworks', aliases: ['fireworks_ai', 'fireworks-ai'], why: 'Fireworks AI, as SDKs and gateways name it' },
  { id: 'mistral', aliases: ['mistralai'], why: 'Mistral AI, as its SDK names it' },
  { id: 'moonshotai', aliases: ['moonshot'], why: 'Moonshot AI (Kimi), as SDKs name it' },
];

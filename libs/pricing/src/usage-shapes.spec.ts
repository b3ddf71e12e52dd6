import { extractUsage, findProvider } from '@pydantic/genai-prices';
import { TokenCounts, tokenCounts } from './tokens';
import { MappedUsage, mapUsage, UsageFormat } from './usage-shapes';

/**
 * Provider usage objects as they are: each documented shape mapped to our
 * token classes, checked against an independent implementation (the
 * pinned @pydantic/genai-prices' extractUsage, the price database the
 * catalogue is built from), and hostile objects refused naming the field.
 */

interface Shape {
  name: string;
  format: UsageFormat;
  usage: Record<string, unknown>;
  expected: Partial<TokenCounts>;
  toolCalls?: Record<string, number>;
  /** genai-prices' provider id and API flavor, and how it wraps the usage (its extractor's root). */
  upstream: { provider: string; flavor?: string; wrap: (usage: object) => object };
  /** Classes genai-prices does not read from this shape, with why. */
  upstreamLacks?: { classes: Array<keyof TokenCounts>; why: string };
}

const inUsage = (model: string) => (usage: object) => ({ model, usage });

/** Documented usage objects, one or more per format, with audio, image, cache, reasoning and tool classes. */
export const SHAPES: Shape[] = [
  {
    name: 'OpenAI Chat Completions, reasoning and cached tokens',
    format: 'openai_chat',
    usage: {
      prompt_tokens: 12000, completion_tokens: 3000, total_tokens: 15000,
      prompt_tokens_details: { cached_tokens: 8000, audio_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 2000, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    },
    expected: { promptTokens: 12000, cachedPromptTokens: 8000, completionTokens: 3000, reasoningTokens: 2000 },
    upstream: { provider: 'openai', flavor: 'chat', wrap: inUsage('o4-mini') },
  },
  {
    name: 'OpenAI Chat Completions, audio in and out (gpt-4o-audio-preview)',
    format: 'openai_chat',
    usage: {
      prompt_tokens: 1500, completion_tokens: 900, total_tokens: 2400,
      prompt_tokens_details: { cached_tokens: 0, audio_tokens: 1200 },
      completion_tokens_details: { reasoning_tokens: 0, audio_tokens: 700 },
    },
    expected: { promptTokens: 1500, audioPromptTokens: 1200, completionTokens: 900, audioCompletionTokens: 700 },
    upstream: { provider: 'openai', flavor: 'chat', wrap: inUsage('gpt-4o-audio-preview') },
  },
  {
    name: 'OpenAI Responses API',
    format: 'openai_responses',
    usage: { input_tokens: 5000, input_tokens_details: { cached_tokens: 4096 }, output_tokens: 1500, output_tokens_details: { reasoning_tokens: 1024 }, total_tokens: 6500 },
    expected: { promptTokens: 5000, cachedPromptTokens: 4096, completionTokens: 1500, reasoningTokens: 1024 },
    upstream: { provider: 'openai', flavor: 'responses', wrap: inUsage('gpt-5') },
  },
  {
    name: 'OpenAI Images API (gpt-image-1.5): image tokens in and out',
    format: 'openai_responses',
    usage: {
      input_tokens: 350, input_tokens_details: { text_tokens: 50, image_tokens: 300 },
      output_tokens: 4200, output_tokens_details: { text_tokens: 200, image_tokens: 4000 }, total_tokens: 4550,
    },
    expected: { promptTokens: 350, imagePromptTokens: 300, completionTokens: 4200, imageCompletionTokens: 4000 },
    upstream: { provider: 'openai', flavor: 'images', wrap: inUsage('gpt-image-1.5') },
  },
  {
    name: 'OpenAI Realtime, audio and image input with cache reads by modality',
    format: 'openai_realtime',
    usage: {
      total_tokens: 9000, input_tokens: 8000, output_tokens: 1000,
      input_token_details: {
        text_tokens: 2000, audio_tokens: 5000, image_tokens: 1000, cached_tokens: 3000,
        cached_tokens_details: { text_tokens: 1000, audio_tokens: 1800, image_tokens: 200 },
      },
      output_token_details: { text_tokens: 250, audio_tokens: 750 },
    },
    expected: {
      promptTokens: 8000, cachedPromptTokens: 3000, audioPromptTokens: 5000, cachedAudioPromptTokens: 1800, imagePromptTokens: 1000, cachedImagePromptTokens: 200,
      completionTokens: 1000, audioCompletionTokens: 750,
    },
    upstream: { provider: 'openai', flavor: 'realtime', wrap: (usage) => ({ response: { model: 'gpt-realtime', usage } }) },
  },
  {
    name: 'Anthropic Messages, cache reads, 5-minute and 1-hour writes, web searches',
    format: 'anthropic_messages',
    usage: {
      input_tokens: 2000, cache_read_input_tokens: 10000, cache_creation_input_tokens: 5000,
      cache_creation: { ephemeral_5m_input_tokens: 3000, ephemeral_1h_input_tokens: 2000 }, output_tokens: 800,
      server_tool_use: { web_search_requests: 3 }, service_tier: 'standard',
    },
    expected: { promptTokens: 17000, cachedPromptTokens: 10000, cacheWriteTokens: 5000, cacheWrite1hTokens: 2000, completionTokens: 800 },
    toolCalls: { web_search: 3 },
    upstream: { provider: 'anthropic', wrap: inUsage('claude-sonnet-4-5') },
  },
  {
    name: 'Gemini usageMetadata, thinking, cache and audio / image modalities',
    format: 'gemini',
    usage: {
      promptTokenCount: 12000, cachedContentTokenCount: 4000, candidatesTokenCount: 1500, thoughtsTokenCount: 2500, totalTokenCount: 16000,
      promptTokensDetails: [{ modality: 'TEXT', tokenCount: 6000 }, { modality: 'AUDIO', tokenCount: 5000 }, { modality: 'IMAGE', tokenCount: 1000 }],
      cacheTokensDetails: [{ modality: 'TEXT', tokenCount: 2000 }, { modality: 'AUDIO', tokenCount: 2000 }],
      candidatesTokensDetails: [{ modality: 'TEXT', tokenCount: 1500 }],
    },
    expected: {
      promptTokens: 12000, cachedPromptTokens: 4000, audioPromptTokens: 5000, cachedAudioPromptTokens: 2000, imagePromptTokens: 1000,
      completionTokens: 4000, reasoningTokens: 2500,
    },
    upstream: { provider: 'google', wrap: (usage) => ({ modelVersion: 'gemini-2.5-flash', usageMetadata: usage }) },
  },
  {
    name: 'Gemini image output (gemini-2.5-flash-image) and tool-use prompt tokens',
    format: 'gemini',
    usage: {
      promptTokenCount: 300, toolUsePromptTokenCount: 200, candidatesTokenCount: 1390, totalTokenCount: 1890,
      promptTokensDetails: [{ modality: 'TEXT', tokenCount: 300 }],
      candidatesTokensDetails: [{ modality: 'IMAGE', tokenCount: 1290 }, { modality: 'TEXT', tokenCount: 100 }],
    },
    expected: { promptTokens: 500, completionTokens: 1390, imageCompletionTokens: 1290 },
    upstream: { provider: 'google', wrap: (usage) => ({ modelVersion: 'gemini-2.5-flash-image', usageMetadata: usage }) },
  },
  {
    name: 'AWS Bedrock Converse, cache reads and writes',
    format: 'bedrock_converse',
    usage: { inputTokens: 1000, outputTokens: 300, totalTokens: 4300, cacheReadInputTokens: 2500, cacheWriteInputTokens: 500 },
    expected: { promptTokens: 4000, cachedPromptTokens: 2500, cacheWriteTokens: 500, completionTokens: 300 },
    upstream: { provider: 'aws', wrap: inUsage('anthropic.claude-sonnet-4-5-20250929-v1:0') },
  },
  {
    name: 'AWS Bedrock Converse, 1-hour cache writes in cacheDetails',
    format: 'bedrock_converse',
    usage: { inputTokens: 100, outputTokens: 10, cacheWriteInputTokens: 900, cacheDetails: [{ ttl: '5m', inputTokens: 300 }, { ttl: '1h', inputTokens: 600 }] },
    expected: { promptTokens: 1000, cacheWriteTokens: 900, cacheWrite1hTokens: 600, completionTokens: 10 },
    upstream: { provider: 'aws', wrap: inUsage('anthropic.claude-sonnet-4-5-20250929-v1:0') },
    upstreamLacks: { classes: ['cacheWrite1hTokens'], why: 'genai-prices does not read cacheDetails' },
  },
  {
    name: 'DeepSeek, cache hits and reasoning',
    format: 'deepseek',
    usage: {
      prompt_tokens: 10000, completion_tokens: 1000, total_tokens: 11000, prompt_cache_hit_tokens: 6000, prompt_cache_miss_tokens: 4000,
      prompt_tokens_details: { cached_tokens: 6000 }, completion_tokens_details: { reasoning_tokens: 400 },
    },
    expected: { promptTokens: 10000, cachedPromptTokens: 6000, completionTokens: 1000, reasoningTokens: 400 },
    upstream: { provider: 'deepseek', flavor: 'chat', wrap: inUsage('deepseek-v4-flash') },
  },
  {
    name: 'Cohere v2 Chat, billed units',
    format: 'cohere',
    usage: { billed_units: { input_tokens: 700, output_tokens: 150 }, tokens: { input_tokens: 900, output_tokens: 150 } },
    expected: { promptTokens: 700, completionTokens: 150 },
    upstream: { provider: 'cohere', wrap: inUsage('command-a-03-2025') },
  },
  {
    name: 'Mistral (OpenAI-compatible)',
    format: 'openai_compatible',
    usage: { prompt_tokens: 3000, completion_tokens: 700, total_tokens: 3700, prompt_tokens_details: { cached_tokens: 1000 } },
    expected: { promptTokens: 3000, cachedPromptTokens: 1000, completionTokens: 700 },
    upstream: { provider: 'mistral', wrap: inUsage('mistral-medium-latest') },
  },
  {
    name: 'Groq (OpenAI-compatible, fractional timings ignored)',
    format: 'openai_compatible',
    usage: { queue_time: 0.0513, prompt_tokens: 210, prompt_time: 0.0122, completion_tokens: 95, completion_time: 0.0791, total_tokens: 305, total_time: 0.0913 },
    expected: { promptTokens: 210, completionTokens: 95 },
    upstream: { provider: 'groq', wrap: inUsage('llama-3.3-70b-versatile') },
  },
  {
    name: 'xAI, reasoning outside completion_tokens (told by total_tokens)',
    format: 'openai_compatible',
    usage: {
      prompt_tokens: 32, completion_tokens: 9, total_tokens: 135,
      prompt_tokens_details: { text_tokens: 32, audio_tokens: 0, image_tokens: 0, cached_tokens: 6 },
      completion_tokens_details: { reasoning_tokens: 94, audio_tokens: 0, accepted_prediction_tokens: 0, rejected_prediction_tokens: 0 },
    },
    expected: { promptTokens: 32, cachedPromptTokens: 6, completionTokens: 103, reasoningTokens: 94 },
    upstream: { provider: 'x-ai', flavor: 'chat', wrap: inUsage('grok-4') },
  },
  {
    name: 'xAI, image input',
    format: 'xai',
    usage: {
      prompt_tokens: 1290, completion_tokens: 40, total_tokens: 1450,
      prompt_tokens_details: { text_tokens: 34, audio_tokens: 0, image_tokens: 1256, cached_tokens: 0 },
      completion_tokens_details: { reasoning_tokens: 120 },
    },
    expected: { promptTokens: 1290, imagePromptTokens: 1256, completionTokens: 160, reasoningTokens: 120 },
    upstream: { provider: 'x-ai', flavor: 'chat', wrap: inUsage('grok-4') },
    upstreamLacks: { classes: ['imagePromptTokens'], why: 'genai-prices does not read xAI image_tokens (xAI bills them as text input, so the cost is the same)' },
  },
];

/** genai-prices' usage keys for our classes (its unit registry's names). */
const UPSTREAM_KEY: Record<keyof TokenCounts, string> = {
  promptTokens: 'input_tokens',
  completionTokens: 'output_tokens',
  reasoningTokens: 'output_reasoning_tokens',
  cachedPromptTokens: 'cache_read_tokens',
  cacheWriteTokens: 'cache_write_tokens',
  cacheWrite1hTokens: 'cache_write_1h_tokens',
  audioPromptTokens: 'input_audio_tokens',
  cachedAudioPromptTokens: 'cache_audio_read_tokens',
  imagePromptTokens: 'input_image_tokens',
  cachedImagePromptTokens: 'cache_image_read_tokens',
  audioCompletionTokens: 'output_audio_tokens',
  imageCompletionTokens: 'output_image_tokens',
};

const ok = (format: UsageFormat, usage: unknown): MappedUsage => {
  const { mapped, problems } = mapUsage(format, usage);
  if (!mapped) throw new Error(JSON.stringify(problems));
  return mapped;
};
const fields = (format: UsageFormat, usage: unknown) => mapUsage(format, usage).problems.map((p) => p.field);

describe('provider usage objects, mapped to our token classes', () => {
  it.each(SHAPES.map((s) => [s.name, s] as const))('%s', (_name, shape) => {
    const mapped = ok(shape.format, shape.usage);
    expect(mapped.tokens).toEqual(tokenCounts(shape.expected));
    expect(mapped.toolCalls).toEqual(shape.toolCalls ?? {});
  });

  it('reads Anthropic service tiers and refuses unknown ones', () => {
    expect(ok('anthropic_messages', { input_tokens: 1, output_tokens: 1, service_tier: 'batch' }).serviceTier).toBe('batch');
    expect(fields('anthropic_messages', { input_tokens: 1, output_tokens: 1, service_tier: 'turbo' })).toEqual(['usage.service_tier']);
  });

  it('takes 5-minute plus 1-hour writes as the writes when Anthropic leaves out cache_creation_input_tokens', () => {
    expect(ok('anthropic_messages', { input_tokens: 10, output_tokens: 1, cache_creation: { ephemeral_5m_input_tokens: 3, ephemeral_1h_input_tokens: 4 } }).tokens)
      .toEqual(tokenCounts({ promptTokens: 17, cacheWriteTokens: 7, cacheWrite1hTokens: 4, completionTokens: 1 }));
  });

  it('treats null details (as OpenAI and Anthropic send them) as absent', () => {
    expect(ok('openai_chat', { prompt_tokens: 5, completion_tokens: 1, prompt_tokens_details: null, completion_tokens_details: null }).tokens).toEqual(tokenCounts({ promptTokens: 5, completionTokens: 1 }));
    expect(ok('anthropic_messages', { input_tokens: 5, output_tokens: 1, cache_read_input_tokens: null, cache_creation: null, server_tool_use: null }).tokens)
      .toEqual(tokenCounts({ promptTokens: 5, completionTokens: 1 }));
  });
});

describe('conformance with an independent implementation (genai-prices extractUsage)', () => {
  it.each(SHAPES.map((s) => [s.name, s] as const))('%s', (_name, shape) => {
    const provider = findProvider({ providerId: shape.upstream.provider });
    if (!provider) throw new Error(`genai-prices has no provider ${shape.upstream.provider}`);
    const { usage: theirs } = extractUsage(provider, shape.upstream.wrap(shape.usage), shape.upstream.flavor);
    const ours = ok(shape.format, shape.usage);
    const lacks = new Set(shape.upstreamLacks?.classes ?? []);
    for (const k of Object.keys(UPSTREAM_KEY) as Array<keyof TokenCounts>) {
      if (lacks.has(k)) {
        expect([k, theirs[UPSTREAM_KEY[k]] ?? 0]).toEqual([k, 0]);
        continue;
      }
      expect([k, ours.tokens[k]]).toEqual([k, theirs[UPSTREAM_KEY[k]] ?? 0]);
    }
    expect(ours.toolCalls.web_search ?? 0).toBe(theirs.web_searches ?? 0);
  });
});

describe('hostile usage objects are refused naming the field', () => {
  const base = { prompt_tokens: 10, completion_tokens: 5 };
  it.each([
    ['a string count', { ...base, prompt_tokens: '10' }, 'usage.prompt_tokens'],
    ['a negative count', { ...base, completion_tokens: -1 }, 'usage.completion_tokens'],
    ['a fractional count', { ...base, prompt_tokens_details: { cached_tokens: 2.5 } }, 'usage.prompt_tokens_details.cached_tokens'],
    ['a huge count', { ...base, prompt_tokens: 1e13 }, 'usage.prompt_tokens'],
    ['a boolean count', { ...base, completion_tokens_details: { reasoning_tokens: true } }, 'usage.completion_tokens_details.reasoning_tokens'],
    ['details that are not an object', { ...base, prompt_tokens_details: [1, 2] }, 'usage.prompt_tokens_details'],
    ['a missing required count', { completion_tokens: 5 }, 'usage.prompt_tokens'],
    ['counts that do not nest', { ...base, prompt_tokens_details: { cached_tokens: 11 } }, 'usage'],
  ])('%s', (_name, usage, field) => {
    expect(fields('openai_chat', usage)).toEqual([field]);
  });

  it('refuses non-objects, deep nesting and huge objects', () => {
    for (const usage of [null, 'usage', 42, [1]]) expect(fields('openai_chat', usage)).toEqual(['usage']);
    let deep: Record<string, unknown> = { prompt_tokens: 1 };
    for (let i = 0; i < 50; i++) deep = { prompt_tokens: 1, x: deep };
    expect(mapUsage('openai_chat', deep).problems[0]).toMatchObject({ field: 'usage', description: expect.stringMatching(/levels deep/) });
    expect(mapUsage('openai_chat', { ...base, padding: 'x'.repeat(20_000) }).problems[0]).toMatchObject({ field: 'usage', description: expect.stringMatching(/bytes/) });
  });

  it('refuses bad Gemini modality lists and Bedrock cache details entry by entry', () => {
    expect(fields('gemini', { promptTokenCount: 10, promptTokensDetails: [{ modality: 'AUDIO', tokenCount: -3 }, 'x', { tokenCount: 1 }] }).sort())
      .toEqual(['usage.promptTokensDetails[0].tokenCount', 'usage.promptTokensDetails[1]', 'usage.promptTokensDetails[2].modality']);
    expect(fields('gemini', { promptTokenCount: 10, cacheTokensDetails: { AUDIO: 3 } })).toEqual(['usage.cacheTokensDetails']);
    expect(fields('bedrock_converse', { inputTokens: 1, cacheDetails: [{ ttl: '1h', inputTokens: 'many' }] })).toEqual(['usage.cacheDetails[0].inputTokens']);
    expect(fields('cohere', { tokens: { input_tokens: 1 } })).toEqual(['usage.billed_units']);
  });

  it('refuses a sum past the bound even when each field is within it', () => {
    expect(mapUsage('anthropic_messages', { input_tokens: 9e11, cache_read_input_tokens: 9e11, output_tokens: 1 }).problems[0]).toMatchObject({ field: 'usage', description: expect.stringMatching(/more than/) });
  });
});

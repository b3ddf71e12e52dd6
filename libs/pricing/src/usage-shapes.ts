import { TokenCounts, zeroTokens } from './tokens';

/**
 * Each provider's documented usage object, mapped to our canonical token
 * classes (./tokens.ts). These are the mappings the README's "Token
 * accounting" table documents; conformance tests price each shape to the
 * digit. Missing fields count as 0.
 */

const n = (v: number | undefined | null): number => v ?? 0;

/** OpenAI Chat Completions `usage` (also Mistral, xAI and other OpenAI-compatible APIs): cached inside prompt, reasoning inside completion. */
export interface OpenAIChatUsage {
  prompt_tokens: number;
  completion_tokens: number;
  total_tokens?: number;
  prompt_tokens_details?: { cached_tokens?: number; audio_tokens?: number } | null;
  completion_tokens_details?: { reasoning_tokens?: number; audio_tokens?: number } | null;
}

export function fromOpenAIChatUsage(u: OpenAIChatUsage): TokenCounts {
  return {
    ...zeroTokens(),
    promptTokens: u.prompt_tokens,
    completionTokens: u.completion_tokens,
    reasoningTokens: n(u.completion_tokens_details?.reasoning_tokens),
    cachedPromptTokens: n(u.prompt_tokens_details?.cached_tokens),
    cacheWriteTokens: 0,
    cacheWrite1hTokens: 0,
  };
}

/** OpenAI Responses API `usage`: the same nesting under other names. */
export interface OpenAIResponsesUsage {
  input_tokens: number;
  output_tokens: number;
  total_tokens?: number;
  input_tokens_details?: { cached_tokens?: number } | null;
  output_tokens_details?: { reasoning_tokens?: number } | null;
}

export function fromOpenAIResponsesUsage(u: OpenAIResponsesUsage): TokenCounts {
  return fromOpenAIChatUsage({
    prompt_tokens: u.input_tokens,
    completion_tokens: u.output_tokens,
    prompt_tokens_details: { cached_tokens: n(u.input_tokens_details?.cached_tokens) },
    completion_tokens_details: { reasoning_tokens: n(u.output_tokens_details?.reasoning_tokens) },
  });
}

/**
 * Anthropic Messages `usage`: its counts are disjoint. input_tokens excludes
 * cache reads and cache writes, so prompt = input + cache read + cache
 * creation. `cache_creation` splits the writes by cache lifetime (5 minutes,
 * 1 hour); without it every write is a 5-minute write. Extended thinking is
 * inside output_tokens and billed as output. Web searches
 * (`server_tool_use.web_search_requests`) are per-call: record them as a tool
 * charge with call_count.
 */
export interface AnthropicUsage {
  input_tokens: number;
  output_tokens: number;
  cache_read_input_tokens?: number | null;
  cache_creation_input_tokens?: number | null;
  cache_creation?: { ephemeral_5m_input_tokens?: number; ephemeral_1h_input_tokens?: number } | null;
  server_tool_use?: { web_search_requests?: number } | null;
}

export function fromAnthropicUsage(u: AnthropicUsage): TokenCounts {
  const read = n(u.cache_read_input_tokens);
  const write = n(u.cache_creation_input_tokens);
  return {
    ...zeroTokens(),
    promptTokens: u.input_tokens + read + write,
    completionTokens: u.output_tokens,
    reasoningTokens: 0,
    cachedPromptTokens: read,
    cacheWriteTokens: write,
    cacheWrite1hTokens: n(u.cache_creation?.ephemeral_1h_input_tokens),
  };
}

/**
 * Gemini `usageMetadata`: promptTokenCount includes cachedContentTokenCount;
 * candidatesTokenCount excludes thoughtsTokenCount (thinking), which is billed
 * as output; toolUsePromptTokenCount (tool results fed back) is billed as input.
 */
export interface GeminiUsageMetadata {
  promptTokenCount: number;
  candidatesTokenCount?: number;
  cachedContentTokenCount?: number;
  thoughtsTokenCount?: number;
  toolUsePromptTokenCount?: number;
  totalTokenCount?: number;
}

export function fromGeminiUsage(u: GeminiUsageMetadata): TokenCounts {
  const thoughts = n(u.thoughtsTokenCount);
  return {
    ...zeroTokens(),
    promptTokens: u.promptTokenCount + n(u.toolUsePromptTokenCount),
    completionTokens: n(u.candidatesTokenCount) + thoughts,
    reasoningTokens: thoughts,
    cachedPromptTokens: n(u.cachedContentTokenCount),
    cacheWriteTokens: 0,
    cacheWrite1hTokens: 0,
  };
}

/** DeepSeek `usage`: OpenAI-shaped, with the cache hits as prompt_cache_hit_tokens (part of prompt_tokens). */
export interface DeepSeekUsage extends OpenAIChatUsage {
  prompt_cache_hit_tokens?: number;
  prompt_cache_miss_tokens?: number;
}

export function fromDeepSeekUsage(u: DeepSeekUsage): TokenCounts {
  return { ...fromOpenAIChatUsage(u), cachedPromptTokens: n(u.prompt_cache_hit_tokens ?? u.prompt_tokens_details?.cached_tokens) };
}

/** Cohere v2 Chat `usage`: billed units are what is charged. */
export interface CohereUsage {
  billed_units: { input_tokens?: number; output_tokens?: number };
}

export function fromCohereUsage(u: CohereUsage): TokenCounts {
  return {
    ...zeroTokens(),
    promptTokens: n(u.billed_units.input_tokens),
    completionTokens: n(u.billed_units.output_tokens),
    reasoningTokens: 0,
    cachedPromptTokens: 0,
    cacheWriteTokens: 0,
    cacheWrite1hTokens: 0,
  };
}

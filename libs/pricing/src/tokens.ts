/**
 * Canonical token classes of one LLM call. They nest as OpenAI reports them:
 * cachedPromptTokens and cacheWriteTokens are part of promptTokens;
 * cacheWrite1hTokens (writes with a 1-hour cache lifetime) are part of
 * cacheWriteTokens; reasoningTokens are part of completionTokens. All are
 * non-negative safe integers (validation bounds them far below 2^53).
 * See README "Token accounting" and ./usage-shapes.ts for each provider.
 */
export interface TokenCounts {
  promptTokens: number;
  completionTokens: number;
  reasoningTokens: number;
  cachedPromptTokens: number;
  cacheWriteTokens: number;
  cacheWrite1hTokens: number;
}

/** prompt + completion: reasoning and cache tokens are already inside them. */
export function totalTokens(t: TokenCounts): number {
  return t.promptTokens + t.completionTokens;
}

/** Why a token mix does not nest, or undefined when it does. */
export function nestingProblem(t: TokenCounts): { field: string; description: string } | undefined {
  if (t.reasoningTokens > t.completionTokens) {
    return { field: 'reasoning_tokens', description: 'must be at most completion_tokens (reasoning tokens are part of the completion)' };
  }
  if (t.cachedPromptTokens + t.cacheWriteTokens > t.promptTokens) {
    return { field: 'cached_prompt_tokens', description: 'cached_prompt_tokens + cache_write_tokens must be at most prompt_tokens (they are part of the prompt)' };
  }
  if (t.cacheWrite1hTokens > t.cacheWriteTokens) {
    return { field: 'cache_write_1h_tokens', description: 'must be at most cache_write_tokens (1-hour cache writes are part of the cache writes)' };
  }
  return undefined;
}

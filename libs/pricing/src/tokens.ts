/**
 * Canonical token classes of one LLM call. They nest as OpenAI reports them:
 * cachedPromptTokens and cacheWriteTokens are part of promptTokens;
 * reasoningTokens are part of completionTokens. All are non-negative safe
 * integers (validation bounds them far below 2^53).
 */
export interface TokenCounts {
  promptTokens: number;
  completionTokens: number;
  reasoningTokens: number;
  cachedPromptTokens: number;
  cacheWriteTokens: number;
}

/** prompt + completion: reasoning and cache tokens are already inside them. */
export function totalTokens(t: TokenCounts): number {
  return t.promptTokens + t.completionTokens;
}

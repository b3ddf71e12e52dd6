/**
 * Canonical token classes of one LLM call. They nest as OpenAI reports them:
 *
 * - promptTokens holds every input token. Inside it: cachedPromptTokens (cache
 *   reads) and cacheWriteTokens (cache writes, of which cacheWrite1hTokens were
 *   written with a 1-hour lifetime); and, by modality, audioPromptTokens and
 *   imagePromptTokens (the rest is text). The cache reads of audio and image
 *   input, cachedAudioPromptTokens and cachedImagePromptTokens, are inside both
 *   their modality and cachedPromptTokens.
 * - completionTokens holds every output token. Inside it: reasoningTokens,
 *   audioCompletionTokens and imageCompletionTokens (disjoint; the rest is
 *   plain text output).
 *
 * All are non-negative safe integers (validation bounds them far below 2^53).
 * See README "Token accounting" and ./usage-shapes.ts for each provider.
 */
export interface TokenCounts {
  promptTokens: number;
  completionTokens: number;
  reasoningTokens: number;
  cachedPromptTokens: number;
  cacheWriteTokens: number;
  cacheWrite1hTokens: number;
  /** Audio input tokens, part of promptTokens. */
  audioPromptTokens: number;
  /** Audio input tokens read from the cache, part of audioPromptTokens and of cachedPromptTokens. */
  cachedAudioPromptTokens: number;
  /** Image input tokens, part of promptTokens. */
  imagePromptTokens: number;
  /** Image input tokens read from the cache, part of imagePromptTokens and of cachedPromptTokens. */
  cachedImagePromptTokens: number;
  /** Audio output tokens, part of completionTokens. */
  audioCompletionTokens: number;
  /** Image output tokens, part of completionTokens. */
  imageCompletionTokens: number;
}

/** Every token class, in wire order; their snake_case names are the wire fields (metering.v1.TokenCounts). */
export const TOKEN_CLASSES = [
  'promptTokens',
  'completionTokens',
  'reasoningTokens',
  'cachedPromptTokens',
  'cacheWriteTokens',
  'cacheWrite1hTokens',
  'audioPromptTokens',
  'cachedAudioPromptTokens',
  'imagePromptTokens',
  'cachedImagePromptTokens',
  'audioCompletionTokens',
  'imageCompletionTokens',
] as const satisfies ReadonlyArray<keyof TokenCounts>;

const TOKEN_FIELDS = Object.fromEntries(TOKEN_CLASSES.map((k) => [k, k.replace(/([A-Z]|\d+h)/g, (m) => `_${m.toLowerCase()}`)])) as Record<keyof TokenCounts, string>;

/**
 * The snake_case wire name (and column) of a token class ("cacheWrite1hTokens" ->
 * "cache_write_1h_tokens"). Computed once: every charge maps each class, on the write path.
 */
export function tokenField(key: keyof TokenCounts): string {
  return TOKEN_FIELDS[key];
}

/** A token mix with every class 0. */
export function zeroTokens(): TokenCounts {
  return Object.fromEntries(TOKEN_CLASSES.map((k) => [k, 0])) as unknown as TokenCounts;
}

/** A token mix from some classes, the others 0. */
export function tokenCounts(t: Partial<TokenCounts>): TokenCounts {
  return { ...zeroTokens(), ...t };
}

/** prompt + completion: reasoning, cache, audio and image tokens are already inside them. */
export function totalTokens(t: TokenCounts): number {
  return t.promptTokens + t.completionTokens;
}

/**
 * The disjoint parts of a prompt and of a completion, each billed at one
 * rate. Undefined when the classes do not nest (a part would be negative).
 */
export interface TokenParts {
  textInput: number;
  cachedTextInput: number;
  cacheWrite5m: number;
  cacheWrite1h: number;
  audioInput: number;
  cachedAudioInput: number;
  imageInput: number;
  cachedImageInput: number;
  textOutput: number;
  reasoning: number;
  audioOutput: number;
  imageOutput: number;
}

/** Splits a token mix into its disjoint billed parts (plain integers; the counts are bounded far below 2^53). */
export function tokenParts(t: TokenCounts): TokenParts {
  const cachedText = t.cachedPromptTokens - t.cachedAudioPromptTokens - t.cachedImagePromptTokens;
  const audioInput = t.audioPromptTokens - t.cachedAudioPromptTokens;
  const imageInput = t.imagePromptTokens - t.cachedImagePromptTokens;
  return {
    textInput: t.promptTokens - t.cachedPromptTokens - t.cacheWriteTokens - audioInput - imageInput,
    cachedTextInput: cachedText,
    cacheWrite5m: t.cacheWriteTokens - t.cacheWrite1hTokens,
    cacheWrite1h: t.cacheWrite1hTokens,
    audioInput,
    cachedAudioInput: t.cachedAudioPromptTokens,
    imageInput,
    cachedImageInput: t.cachedImagePromptTokens,
    textOutput: t.completionTokens - t.reasoningTokens - t.audioCompletionTokens - t.imageCompletionTokens,
    reasoning: t.reasoningTokens,
    audioOutput: t.audioCompletionTokens,
    imageOutput: t.imageCompletionTokens,
  };
}

/** Why a token mix does not nest, or undefined when it does. Fields are the wire names. */
export function nestingProblem(t: TokenCounts): { field: string; description: string } | undefined {
  if (t.cachedAudioPromptTokens > t.audioPromptTokens) {
    return { field: 'cached_audio_prompt_tokens', description: 'must be at most audio_prompt_tokens (cached audio input is part of the audio input)' };
  }
  if (t.cachedImagePromptTokens > t.imagePromptTokens) {
    return { field: 'cached_image_prompt_tokens', description: 'must be at most image_prompt_tokens (cached image input is part of the image input)' };
  }
  if (t.cachedAudioPromptTokens + t.cachedImagePromptTokens > t.cachedPromptTokens) {
    return {
      field: 'cached_prompt_tokens',
      description: 'must be at least cached_audio_prompt_tokens + cached_image_prompt_tokens (cached audio and image input are cache reads too)',
    };
  }
  if (t.reasoningTokens + t.audioCompletionTokens + t.imageCompletionTokens > t.completionTokens) {
    return t.audioCompletionTokens + t.imageCompletionTokens > 0
      ? { field: 'completion_tokens', description: 'must be at least reasoning_tokens + audio_completion_tokens + image_completion_tokens (they are part of the completion)' }
      : { field: 'reasoning_tokens', description: 'must be at most completion_tokens (reasoning tokens are part of the completion)' };
  }
  if (t.cachedPromptTokens + t.cacheWriteTokens > t.promptTokens) {
    return { field: 'cached_prompt_tokens', description: 'cached_prompt_tokens + cache_write_tokens must be at most prompt_tokens (they are part of the prompt)' };
  }
  if (t.cacheWrite1hTokens > t.cacheWriteTokens) {
    return { field: 'cache_write_1h_tokens', description: 'must be at most cache_write_tokens (1-hour cache writes are part of the cache writes)' };
  }
  const parts = tokenParts(t);
  if (parts.textInput < 0) {
    return {
      field: 'prompt_tokens',
      description: 'must be at least cached_prompt_tokens + cache_write_tokens + the uncached audio and image prompt tokens (they are all part of the prompt)',
    };
  }
  return undefined;
}

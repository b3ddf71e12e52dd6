import type { ServiceTier } from './rates';
import { nestingProblem, TokenCounts, tokenCounts } from './tokens';

/**
 * Each provider's documented usage object, mapped to our canonical token
 * classes (./tokens.ts), tool calls and service tier. These are the mappings
 * RecordCharge, EstimateCost and reservation estimates apply to a usage object
 * sent as it came from the provider, and that the README's "Token accounting"
 * table documents; conformance tests check them against an independent
 * implementation and price each shape to the digit.
 *
 * The objects are untrusted: every field read must be an integer from 0 to
 * the bound (or null / absent, which counts as 0), every object on the way
 * an object; anything else is a problem naming the field
 * ("usage.prompt_tokens_details.cached_tokens"). Fields not read are ignored
 * (providers add fields; Groq's timings are fractional seconds).
 */

export const USAGE_FORMATS = [
  'openai_chat',
  'openai_responses',
  'anthropic_messages',
  'gemini',
  'bedrock_converse',
  'deepseek',
  'cohere',
  'openai_compatible',
  'xai',
  'openai_realtime',
] as const;
export type UsageFormat = (typeof USAGE_FORMATS)[number];

/** What a usage object bills. */
export interface MappedUsage {
  tokens: TokenCounts;
  /** Tool calls by tool name (Anthropic's web searches). */
  toolCalls: Record<string, number>;
  /** The service tier when the object says it (Anthropic's usage.service_tier). */
  serviceTier?: ServiceTier | 'standard';
}

export interface UsageProblem {
  field: string;
  description: string;
}

/** Bounds of a usage object: as JSON, and levels of nesting. */
export const MAX_USAGE_BYTES = 16 * 1024;
export const MAX_USAGE_DEPTH = 8;
/** Largest count a usage field may hold (the per-charge token bound). */
export const MAX_USAGE_COUNT = 1_000_000_000_000;

type Path = readonly string[];

/** Reads counts out of an untrusted object, collecting problems with the field named. */
class Reader {
  readonly problems: UsageProblem[] = [];
  constructor(private readonly root: Record<string, unknown>, private readonly max: number) {}

  private name(path: Path): string {
    return ['usage', ...path].join('.');
  }

  /** The object at a path; undefined when absent or null, or (with a problem) when not an object. */
  object(path: Path): Record<string, unknown> | undefined {
    let node: unknown = this.root;
    for (let i = 0; i < path.length; i++) {
      node = (node as Record<string, unknown>)[path[i]];
      if (node === undefined || node === null) return undefined;
      if (typeof node !== 'object' || Array.isArray(node)) {
        this.problems.push({ field: this.name(path.slice(0, i + 1)), description: `must be an object, got ${kind(node)}` });
        return undefined;
      }
    }
    return node as Record<string, unknown>;
  }

  private check(value: unknown, field: string, required: boolean): number {
    if (value === undefined || value === null) {
      if (required) this.problems.push({ field, description: 'is required' });
      return 0;
    }
    if (typeof value !== 'number' || !Number.isFinite(value)) {
      this.problems.push({ field, description: `must be an integer count, got ${kind(value)}` });
    } else if (!Number.isInteger(value)) {
      this.problems.push({ field, description: `must be a whole number of tokens, got ${value}` });
    } else if (value < 0 || value > this.max) {
      this.problems.push({ field, description: `must be between 0 and ${this.max}, got ${value}` });
    } else {
      return value;
    }
    return 0;
  }

  /** The count at a path: 0 when absent or null. */
  int(path: Path, required = false): number {
    const parent = this.object(path.slice(0, -1));
    return this.check(parent?.[path[path.length - 1]], this.name(path), required && parent !== undefined);
  }

  /** Whether a field is present (not absent, not null). */
  has(path: Path): boolean {
    const parent = this.object(path.slice(0, -1));
    const value = parent?.[path[path.length - 1]];
    return value !== undefined && value !== null;
  }

  /** A string field, or undefined. */
  text(path: Path): string | undefined {
    const parent = this.object(path.slice(0, -1));
    const value = parent?.[path[path.length - 1]];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') {
      this.problems.push({ field: this.name(path), description: `must be a string, got ${kind(value)}` });
      return undefined;
    }
    return value;
  }

  /** The objects of a list at a path, each with its field name; [] when absent or null. */
  entries(path: Path): Array<{ entry: Record<string, unknown>; at: string }> {
    const parent = this.object(path.slice(0, -1));
    const list = parent?.[path[path.length - 1]];
    if (list === undefined || list === null) return [];
    if (!Array.isArray(list)) {
      this.problems.push({ field: this.name(path), description: `must be a list, got ${kind(list)}` });
      return [];
    }
    return list.flatMap((entry: unknown, n) => {
      const at = `${this.name(path)}[${n}]`;
      if (entry !== null && typeof entry === 'object' && !Array.isArray(entry)) return [{ entry: entry as Record<string, unknown>, at }];
      this.problems.push({ field: at, description: `must be an object, got ${kind(entry)}` });
      return [];
    });
  }

  /** A count in a list entry (see entries). */
  countIn(entry: Record<string, unknown>, key: string, at: string): number {
    return this.check(entry[key], `${at}.${key}`, false);
  }

  /**
   * The sum of `tokenCount` over the entries of a Gemini modality list
   * ([{ modality: 'AUDIO', tokenCount: 10 }]) whose modality is one of `modalities`.
   */
  byModality(path: Path, modalities: readonly string[]): number {
    let sum = 0;
    for (const { entry, at } of this.entries(path)) {
      const count = this.countIn(entry, 'tokenCount', at);
      if (typeof entry.modality !== 'string') this.problems.push({ field: `${at}.modality`, description: `must be a string, got ${kind(entry.modality)}` });
      else if (modalities.includes(entry.modality)) sum += count;
    }
    return sum;
  }
}

function kind(value: unknown): string {
  if (value === null) return 'null';
  if (Array.isArray(value)) return 'a list';
  if (typeof value === 'number') return String(value);
  if (typeof value === 'string') return `a string ("${value.slice(0, 20)}")`;
  return `a ${typeof value}`;
}

/** Nesting depth of a JSON value (a scalar is 0), stopping once past `limit`. */
function depthOf(value: unknown, limit: number): number {
  if (value === null || typeof value !== 'object') return 0;
  if (limit < 0) return 1;
  let deepest = 0;
  for (const child of Object.values(value as Record<string, unknown>)) {
    deepest = Math.max(deepest, depthOf(child, limit - 1));
    if (deepest > limit) break;
  }
  return deepest + 1;
}

const chatLike = (r: Reader) => ({
  promptTokens: r.int(['prompt_tokens'], true),
  completionTokens: r.int(['completion_tokens']),
  reasoningTokens: r.int(['completion_tokens_details', 'reasoning_tokens']),
  cachedPromptTokens: r.int(['prompt_tokens_details', 'cached_tokens']),
  cacheWriteTokens: r.int(['prompt_tokens_details', 'cache_write_tokens']),
  audioPromptTokens: r.int(['prompt_tokens_details', 'audio_tokens']),
  imagePromptTokens: r.int(['prompt_tokens_details', 'image_tokens']),
  audioCompletionTokens: r.int(['completion_tokens_details', 'audio_tokens']),
  imageCompletionTokens: r.int(['completion_tokens_details', 'image_tokens']),
});

/** xAI reports reasoning tokens outside completion_tokens (total_tokens = prompt + completion + reasoning). */
function reasoningOutside(r: Reader, t: ReturnType<typeof chatLike>, always: boolean): ReturnType<typeof chatLike> {
  const total = r.int(['total_tokens']);
  const outside = always || (t.reasoningTokens > 0 && r.has(['total_tokens']) && total === t.promptTokens + t.completionTokens + t.reasoningTokens);
  return outside ? { ...t, completionTokens: t.completionTokens + t.reasoningTokens } : t;
}

const GEMINI_IMAGE = ['IMAGE', 'DOCUMENT'];

const MAPPINGS: Record<UsageFormat, (r: Reader) => Omit<MappedUsage, 'tokens'> & { tokens: Partial<TokenCounts> }> = {
  // Cached and cache-write tokens inside prompt_tokens, reasoning and audio output inside completion_tokens.
  openai_chat: (r) => ({ tokens: chatLike(r), toolCalls: {} }),
  openai_compatible: (r) => ({ tokens: reasoningOutside(r, chatLike(r), false), toolCalls: {} }),
  xai: (r) => ({ tokens: reasoningOutside(r, chatLike(r), true), toolCalls: {} }),
  // The same nesting under other names; the Images API reports image tokens in the details.
  openai_responses: (r) => ({
    tokens: {
      promptTokens: r.int(['input_tokens'], true),
      completionTokens: r.int(['output_tokens']),
      reasoningTokens: r.int(['output_tokens_details', 'reasoning_tokens']),
      cachedPromptTokens: r.int(['input_tokens_details', 'cached_tokens']),
      cacheWriteTokens: r.int(['input_tokens_details', 'cache_write_tokens']),
      audioPromptTokens: r.int(['input_tokens_details', 'audio_tokens']),
      imagePromptTokens: r.int(['input_tokens_details', 'image_tokens']),
      audioCompletionTokens: r.int(['output_tokens_details', 'audio_tokens']),
      imageCompletionTokens: r.int(['output_tokens_details', 'image_tokens']),
    },
    toolCalls: {},
  }),
  // Realtime: modalities of the input, and of its cache reads, broken down.
  openai_realtime: (r) => ({
    tokens: {
      promptTokens: r.int(['input_tokens'], true),
      completionTokens: r.int(['output_tokens']),
      cachedPromptTokens: r.int(['input_token_details', 'cached_tokens']),
      audioPromptTokens: r.int(['input_token_details', 'audio_tokens']),
      imagePromptTokens: r.int(['input_token_details', 'image_tokens']),
      cachedAudioPromptTokens: r.int(['input_token_details', 'cached_tokens_details', 'audio_tokens']),
      cachedImagePromptTokens: r.int(['input_token_details', 'cached_tokens_details', 'image_tokens']),
      audioCompletionTokens: r.int(['output_token_details', 'audio_tokens']),
    },
    toolCalls: {},
  }),
  // Disjoint counts: input_tokens excludes cache reads and writes. cache_creation splits the writes
  // by lifetime (without it every write is a 5-minute write). Thinking is inside output_tokens.
  anthropic_messages: (r) => {
    const read = r.int(['cache_read_input_tokens']);
    const split = r.object(['cache_creation']) !== undefined;
    const oneHour = r.int(['cache_creation', 'ephemeral_1h_input_tokens']);
    const write = r.has(['cache_creation_input_tokens']) || !split ? r.int(['cache_creation_input_tokens']) : r.int(['cache_creation', 'ephemeral_5m_input_tokens']) + oneHour;
    const searches = r.int(['server_tool_use', 'web_search_requests']);
    const tier = r.text(['service_tier']);
    const serviceTier = tier === undefined ? undefined : ANTHROPIC_TIERS[tier];
    if (tier !== undefined && !serviceTier) r.problems.push({ field: 'usage.service_tier', description: `unknown service tier "${tier.slice(0, 20)}" (known: ${Object.keys(ANTHROPIC_TIERS).join(', ')})` });
    return {
      tokens: {
        promptTokens: r.int(['input_tokens'], true) + read + write,
        completionTokens: r.int(['output_tokens']),
        reasoningTokens: r.int(['output_tokens_details', 'thinking_tokens']),
        cachedPromptTokens: read,
        cacheWriteTokens: write,
        cacheWrite1hTokens: oneHour,
      },
      toolCalls: (searches ? { web_search: searches } : {}) as Record<string, number>,
      serviceTier,
    };
  },
  // promptTokenCount includes cachedContentTokenCount; candidatesTokenCount excludes thoughtsTokenCount
  // (billed as output); tool results fed back (toolUsePromptTokenCount) are input. Modalities come as lists.
  gemini: (r) => {
    const thoughts = r.int(['thoughtsTokenCount']);
    return {
      tokens: {
        promptTokens: r.int(['promptTokenCount']) + r.int(['toolUsePromptTokenCount']),
        completionTokens: r.int(['candidatesTokenCount']) + thoughts,
        reasoningTokens: thoughts,
        cachedPromptTokens: r.int(['cachedContentTokenCount']),
        audioPromptTokens: r.byModality(['promptTokensDetails'], ['AUDIO']) + r.byModality(['toolUsePromptTokensDetails'], ['AUDIO']),
        imagePromptTokens: r.byModality(['promptTokensDetails'], GEMINI_IMAGE) + r.byModality(['toolUsePromptTokensDetails'], GEMINI_IMAGE),
        cachedAudioPromptTokens: r.byModality(['cacheTokensDetails'], ['AUDIO']),
        cachedImagePromptTokens: r.byModality(['cacheTokensDetails'], GEMINI_IMAGE),
        audioCompletionTokens: r.byModality(['candidatesTokensDetails'], ['AUDIO']),
        imageCompletionTokens: r.byModality(['candidatesTokensDetails'], GEMINI_IMAGE),
      },
      toolCalls: {},
    };
  },
  // Disjoint like Anthropic: inputTokens excludes cache reads and writes; cacheDetails splits writes by TTL.
  bedrock_converse: (r) => {
    const read = r.int(['cacheReadInputTokens']);
    const write = r.int(['cacheWriteInputTokens']);
    // cacheDetails: [{ ttl: '5m' | '1h', inputTokens }]
    const oneHour = r.entries(['cacheDetails']).reduce((sum, { entry, at }) => {
      const tokens = r.countIn(entry, 'inputTokens', at);
      return entry.ttl === '1h' ? sum + tokens : sum;
    }, 0);
    return {
      tokens: {
        promptTokens: r.int(['inputTokens'], true) + read + write,
        completionTokens: r.int(['outputTokens']),
        cachedPromptTokens: read,
        cacheWriteTokens: write,
        cacheWrite1hTokens: oneHour,
      },
      toolCalls: {},
    };
  },
  // OpenAI-shaped, with the cache hits as prompt_cache_hit_tokens (part of prompt_tokens).
  deepseek: (r) => {
    const t = chatLike(r);
    return { tokens: { ...t, cachedPromptTokens: r.has(['prompt_cache_hit_tokens']) ? r.int(['prompt_cache_hit_tokens']) : t.cachedPromptTokens }, toolCalls: {} };
  },
  // Cohere v2 Chat: billed_units are what is charged.
  cohere: (r) => {
    if (r.object(['billed_units']) === undefined && !r.problems.length) r.problems.push({ field: 'usage.billed_units', description: 'is required (Cohere bills billed_units)' });
    return { tokens: { promptTokens: r.int(['billed_units', 'input_tokens']), completionTokens: r.int(['billed_units', 'output_tokens']) }, toolCalls: {} };
  },
};

const ANTHROPIC_TIERS: Record<string, MappedUsage['serviceTier']> = { standard: 'standard', batch: 'batch', priority: 'priority' };

/**
 * Maps a provider's usage object to what it bills. Problems name the field
 * ("usage.prompt_tokens"); with any problem there is no mapping.
 */
export function mapUsage(format: UsageFormat, usage: unknown, maxCount = MAX_USAGE_COUNT): { mapped?: MappedUsage; problems: UsageProblem[] } {
  if (usage === null || typeof usage !== 'object' || Array.isArray(usage)) {
    return { problems: [{ field: 'usage', description: `must be a JSON object (the provider's usage), got ${kind(usage)}` }] };
  }
  if (depthOf(usage, MAX_USAGE_DEPTH) > MAX_USAGE_DEPTH) return { problems: [{ field: 'usage', description: `must be at most ${MAX_USAGE_DEPTH} levels deep` }] };
  if (Buffer.byteLength(JSON.stringify(usage), 'utf8') > MAX_USAGE_BYTES) return { problems: [{ field: 'usage', description: `must be at most ${MAX_USAGE_BYTES} bytes as JSON` }] };
  const reader = new Reader(usage as Record<string, unknown>, maxCount);
  const { tokens: partial, ...rest } = MAPPINGS[format](reader);
  // A field read for two classes (a Gemini list for audio and for image) is named once.
  if (reader.problems.length) return { problems: [...new Map(reader.problems.map((p) => [p.field, p])).values()] };
  const tokens = tokenCounts(partial);
  for (const [k, value] of Object.entries(tokens)) {
    if (value > maxCount) return { problems: [{ field: 'usage', description: `adds up to more than ${maxCount} tokens (${k})` }] };
  }
  const nesting = nestingProblem(tokens);
  if (nesting) return { problems: [{ field: 'usage', description: `is inconsistent: as token classes, ${nesting.field} ${nesting.description}` }] };
  return { mapped: { tokens, ...rest }, problems: [] };
}

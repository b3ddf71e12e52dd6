import { MAX_USAGE_COUNT } from './usage-shapes';

/**
 * OpenTelemetry GenAI spans as charges: which attributes of a span (the GenAI semantic
 * conventions, and the names OpenLLMetry and OpenLIT use for what the conventions named later)
 * give the provider, the model and each token class. The OTLP receiver
 * (apps/metering/src/services/otlp.service.ts) applies it to every span it receives; the README's
 * "OpenTelemetry" section documents the same table.
 *
 * Attribute values are untrusted: a count must be a whole number from 0 to MAX_USAGE_COUNT (an
 * OTLP intValue arrives as a number or, in OTLP/JSON, a decimal string); anything else is a
 * problem naming the attribute.
 */

/** A span's attributes, flattened: key -> string, number, boolean, or an array of them. */
export type SpanAttributes = Record<string, unknown>;

/** The first attribute present of each list, in order: the conventions' current name first. */
export const GENAI_ATTRIBUTES = {
  provider: ['gen_ai.provider.name', 'gen_ai.system'],
  model: ['gen_ai.response.model', 'gen_ai.request.model'],
  input: ['gen_ai.usage.input_tokens', 'gen_ai.usage.prompt_tokens'],
  output: ['gen_ai.usage.output_tokens', 'gen_ai.usage.completion_tokens'],
  cacheRead: ['gen_ai.usage.cache_read.input_tokens', 'gen_ai.usage.cache_read_input_tokens', 'gen_ai.usage.cached_tokens'],
  cacheWrite: ['gen_ai.usage.cache_creation.input_tokens', 'gen_ai.usage.cache_creation_input_tokens'],
  reasoning: ['gen_ai.usage.reasoning.output_tokens', 'gen_ai.usage.reasoning_tokens', 'gen_ai.usage.completion_tokens_details.reasoning_tokens'],
} as const;

/**
 * gen_ai.provider.name / gen_ai.system values (the conventions' well-known ones and the
 * instrumentations' spellings) -> our provider ids. Any other value is sent lowercased as it is
 * (a provider id or alias the catalogue knows is priced; an unknown one is recorded unpriced).
 */
export const GENAI_PROVIDERS: Record<string, string> = {
  openai: 'openai',
  anthropic: 'anthropic',
  'aws.bedrock': 'aws',
  'az.ai.openai': 'azure',
  'azure.ai.openai': 'azure',
  'az.ai.inference': 'azure',
  'azure.ai.inference': 'azure',
  'gcp.gemini': 'googleai',
  'gcp.vertex_ai': 'googleai',
  'gcp.gen_ai': 'googleai',
  gemini: 'googleai',
  vertex_ai: 'googleai',
  mistral_ai: 'mistral',
  x_ai: 'xai',
  cohere: 'cohere',
  deepseek: 'deepseek',
  groq: 'groq',
  perplexity: 'perplexity',
};

export interface GenAiUsage {
  provider: string;
  model: string;
  /** Token counts in the canonical nesting (./tokens.ts): prompt holds the cache reads and writes, completion the reasoning. */
  promptTokens: number;
  completionTokens: number;
  cachedPromptTokens: number;
  cacheWriteTokens: number;
  reasoningTokens: number;
  /** The attribute each value came from, for the charge's metadata. */
  from: Record<string, string>;
}

/** What a span is to metering: not a GenAI call (no provider or no usage), a call, or a problem naming the attribute. */
export type GenAiSpan = { kind: 'not_genai' } | { kind: 'usage'; usage: GenAiUsage } | { kind: 'problem'; attribute: string; message: string };

class Problem extends Error {
  constructor(
    readonly attribute: string,
    message: string,
  ) {
    super(message);
  }
}

function first(attributes: SpanAttributes, names: readonly string[]): [string, unknown] | undefined {
  for (const name of names) if (attributes[name] !== undefined && attributes[name] !== null) return [name, attributes[name]];
  return undefined;
}

function count(found: [string, unknown] | undefined): number {
  if (!found) return 0;
  const [name, value] = found;
  const n = typeof value === 'number' ? value : typeof value === 'string' && /^\d{1,16}$/.test(value) ? Number(value) : NaN;
  if (!Number.isSafeInteger(n) || n < 0 || n > MAX_USAGE_COUNT) throw new Problem(name, `${name} must be a whole number of tokens from 0 to ${MAX_USAGE_COUNT}, got ${JSON.stringify(value)}`);
  return n;
}

function text(found: [string, unknown] | undefined, max: number): string {
  if (!found) return '';
  const [name, value] = found;
  if (typeof value !== 'string' || value.length > max) throw new Problem(name, `${name} must be a string of at most ${max} characters`);
  return value;
}

/** Maps one span's attributes (the span's own over its resource's). */
export function genAiUsageOf(attributes: SpanAttributes): GenAiSpan {
  try {
    const provider = first(attributes, GENAI_ATTRIBUTES.provider);
    const input = first(attributes, GENAI_ATTRIBUTES.input);
    const output = first(attributes, GENAI_ATTRIBUTES.output);
    // A span of a GenAI library that did not record usage (an embedding's parent, a tool call) is no charge.
    if (!provider || (!input && !output)) return { kind: 'not_genai' };
    const system = text(provider, 128).trim().toLowerCase();
    const model = first(attributes, GENAI_ATTRIBUTES.model);
    if (!model) throw new Problem(GENAI_ATTRIBUTES.model[1], `a span with usage needs ${GENAI_ATTRIBUTES.model.join(' or ')}`);
    const found = { cacheRead: first(attributes, GENAI_ATTRIBUTES.cacheRead), cacheWrite: first(attributes, GENAI_ATTRIBUTES.cacheWrite), reasoning: first(attributes, GENAI_ATTRIBUTES.reasoning) };
    let promptTokens = count(input);
    const completionTokens = count(output);
    const cachedPromptTokens = count(found.cacheRead);
    const cacheWriteTokens = count(found.cacheWrite);
    const reasoningTokens = count(found.reasoning);
    // The conventions count cache reads and writes inside input_tokens; Anthropic's instrumentations
    // report its input_tokens, which leaves them out. When they do not fit inside, they were left out.
    if (cachedPromptTokens + cacheWriteTokens > promptTokens) promptTokens += cachedPromptTokens + cacheWriteTokens;
    if (found.reasoning && reasoningTokens > completionTokens) throw new Problem(found.reasoning[0], `${found.reasoning[0]} (${reasoningTokens}) exceeds the output tokens (${completionTokens})`);
    const from: Record<string, string> = { provider: provider[0], model: model[0] };
    if (input) from.input = input[0];
    if (output) from.output = output[0];
    for (const [k, v] of Object.entries(found)) if (v) from[k] = v[0];
    return {
      kind: 'usage',
      usage: { provider: GENAI_PROVIDERS[system] ?? system, model: text(model, 256), promptTokens, completionTokens, cachedPromptTokens, cacheWriteTokens, reasoningTokens, from },
    };
  } catch (err) {
    if (err instanceof Problem) return { kind: 'problem', attribute: err.attribute, message: err.message };
    throw err;
  }
}

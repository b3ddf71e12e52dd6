import { mapUsage, MAX_TOOLS, nestingProblem, ServiceTier, TOKEN_CLASSES, TokenCounts, tokenField, TOOL_NAME, UsageFormat } from '@metering/pricing';
import { canonicalJson } from './json';
import { checkEnum, checkInt, Violations } from './validation';

/** Per-charge token counts are bounded: far above any real call, far below 2^53 even summed over years. */
export const MAX_TOKENS = 1_000_000_000_000;
/** Per-call priced calls in one charge, and calls of one tool. */
export const MAX_CALLS = 1_000_000;

export type ServiceTierName = ServiceTier | 'standard';

/** Enum numbers of the contract (proto/metering/v1/charge.proto) to domain names. */
export const SERVICE_TIER_BY_NUMBER: Record<number, ServiceTierName> = { 1: 'standard', 2: 'batch', 3: 'flex', 4: 'priority' };
export const USAGE_FORMAT_BY_NUMBER: Record<number, UsageFormat> = {
  1: 'openai_chat',
  2: 'openai_responses',
  3: 'anthropic_messages',
  4: 'gemini',
  5: 'bedrock_converse',
  6: 'deepseek',
  7: 'cohere',
  8: 'openai_compatible',
  9: 'xai',
  10: 'openai_realtime',
};

/** The token classes of a request (RecordCharge, EstimateCost), as int64 strings off the wire ('' or absent is 0). */
export type TokenCountsInput = { [K in keyof TokenCounts]?: string };

/** What a request says was used, as it comes off the wire: explicit counts, a provider usage object, or both. */
export interface BilledUsageInput extends TokenCountsInput {
  serviceTier?: number;
  toolCalls?: Record<string, string>;
  /** The provider's usage object (a google.protobuf.Struct as JSON). */
  usage?: unknown;
  usageFormat?: number;
}

/** What a call used, validated: the token classes, tool calls (zero counts left out) and service tier. */
export interface BilledCounts {
  tokens: TokenCounts;
  toolCalls: Record<string, number>;
  serviceTier: ServiceTierName;
}

function explicitTokens(v: Violations, raw: TokenCountsInput): TokenCounts {
  return Object.fromEntries(TOKEN_CLASSES.map((k) => [k, checkInt(v, tokenField(k), raw[k], 0, MAX_TOKENS)])) as unknown as TokenCounts;
}

function checkToolCalls(v: Violations, raw: Record<string, string> | undefined): Record<string, number> {
  const entries = Object.entries(raw ?? {});
  if (entries.length > MAX_TOOLS) {
    v.add('tool_calls', `at most ${MAX_TOOLS} tools, got ${entries.length}`);
    return {};
  }
  const calls: Record<string, number> = {};
  for (const [name, count] of entries.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
    if (!TOOL_NAME.test(name)) {
      v.add('tool_calls', `tool names are lower case letters, digits and '_' (at most 64), got "${name.slice(0, 40)}"`);
      continue;
    }
    const n = checkInt(v, `tool_calls[${name}]`, count, 0, MAX_CALLS);
    if (n > 0) calls[name] = n;
  }
  return calls;
}

/**
 * The usage a request bills: its explicit token classes, tool calls and
 * service tier, or the provider usage object mapped by libs/pricing's
 * mappings; with both, every class, tool and tier sent explicitly (a 0 or an
 * unset one counts as not sent) must agree with the usage object, or each
 * disagreeing field is named. Bad fields are added to `v`.
 */
export function checkBilledUsage(v: Violations, raw: BilledUsageInput): BilledCounts {
  const explicit = explicitTokens(v, raw);
  const toolCalls = checkToolCalls(v, raw.toolCalls);
  const tier = checkEnum(v, 'service_tier', raw.serviceTier ?? 0, SERVICE_TIER_BY_NUMBER);
  const hasUsage = raw.usage !== undefined && raw.usage !== null;
  if (!hasUsage) {
    if (raw.usageFormat) v.add('usage', 'is required with usage_format');
    const problem = nestingProblem(explicit);
    if (problem) v.add(problem.field, problem.description);
    return { tokens: explicit, toolCalls, serviceTier: tier ?? 'standard' };
  }
  const format = raw.usageFormat ? checkEnum(v, 'usage_format', raw.usageFormat, USAGE_FORMAT_BY_NUMBER) : undefined;
  if (!raw.usageFormat) v.add('usage_format', `is required with usage (${Object.keys(USAGE_FORMAT_BY_NUMBER).length} formats, e.g. USAGE_FORMAT_OPENAI_CHAT)`);
  if (!format) return { tokens: explicit, toolCalls, serviceTier: tier ?? 'standard' };
  const { mapped, problems } = mapUsage(format, raw.usage, MAX_TOKENS);
  for (const p of problems) v.add(p.field, p.description);
  if (!mapped) return { tokens: explicit, toolCalls, serviceTier: tier ?? 'standard' };
  const says = `the usage object (${format}) says`;
  for (const k of TOKEN_CLASSES) {
    if (explicit[k] !== 0 && explicit[k] !== mapped.tokens[k]) v.add(tokenField(k), `is ${explicit[k]} but ${says} ${mapped.tokens[k]}`);
  }
  for (const [tool, n] of Object.entries(mapped.toolCalls)) {
    if (toolCalls[tool] !== undefined && toolCalls[tool] !== n) v.add(`tool_calls[${tool}]`, `is ${toolCalls[tool]} but ${says} ${n}`);
  }
  if (tier && mapped.serviceTier && tier !== mapped.serviceTier) v.add('service_tier', `is ${tier} but ${says} ${mapped.serviceTier}`);
  const merged = Object.fromEntries(Object.entries({ ...toolCalls, ...mapped.toolCalls }).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)));
  return { tokens: mapped.tokens, toolCalls: merged, serviceTier: tier ?? mapped.serviceTier ?? 'standard' };
}

/**
 * What two validated usages bill, field by field (proto name, a, b), for the
 * idempotency comparison: the same classes, tool calls and tier bill the same
 * whether they came as counts or as a usage object.
 */
export function billedFields(a: BilledCounts, b: BilledCounts): Array<[string, unknown, unknown]> {
  return [
    ...TOKEN_CLASSES.map((k): [string, unknown, unknown] => [tokenField(k), a.tokens[k], b.tokens[k]]),
    ['tool_calls', canonicalJson(a.toolCalls), canonicalJson(b.toolCalls)],
    ['service_tier', a.serviceTier, b.serviceTier],
  ];
}

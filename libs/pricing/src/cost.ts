import { Dec } from './money';
import { PriceVersion } from './price-table';
import { inWindow, Rates, ServiceTier } from './rates';
import { TokenCounts, tokenParts } from './tokens';

/**
 * Money code: every amount here is a Dec (decimal.js, 100 significant
 * digits). Plain JS arithmetic operators are banned in this file by lint
 * (eslint.config.mjs, "money code"), so a float can never creep in.
 */

/** Costs of one charge, exact, in USD. */
export interface Cost {
  /** What the provider charges: prompt + completion + calls, before markup. */
  providerCost: Dec;
  /** Billed prompt cost: provider prompt cost x markup. */
  promptCost: Dec;
  /** Billed completion cost: provider completion cost x markup. */
  completionCost: Dec;
  /**
   * Billed per-call cost x markup: the calls of a tool or plugin charge at its
   * per-call price, the tool calls inside a completion at the model's tool
   * prices, and the model's per-request fee.
   */
  callCost: Dec;
  /** Billed total: promptCost + completionCost + callCost. */
  totalCost: Dec;
}

/** What a charge used besides its tokens. */
export interface BilledUsage {
  /** Calls of a per-call priced tool or plugin charge (billed at perCall). */
  callCount?: number;
  /** Requests billed the per-request fee (1 for a completion charge). */
  requests?: number;
  /** Tool calls inside the completion, by tool name, billed at the model's tool prices. */
  toolCalls?: Readonly<Record<string, number>>;
  /** The service tier; standard when absent. */
  serviceTier?: ServiceTier | 'standard';
  /** When the usage happened (for time-of-day prices); the base rates when absent. */
  at?: Date;
}

const PER_MILLION = new Dec(1_000_000);

/**
 * Which rates apply: a time-of-day window the usage falls in, else the
 * long-context tier once the prompt passes its threshold (it prices the whole
 * request), else the base rates.
 */
export function ratesFor(price: PriceVersion, tokens: TokenCounts, at?: Date): Rates {
  const window = at && price.timeOfDay?.find((w) => inWindow(w, at));
  if (window) return window.rates;
  const lc = price.longContext;
  return lc && new Dec(tokens.promptTokens).greaterThan(lc.thresholdPromptTokens) ? lc.rates : price.rates;
}

/**
 * Why a price cannot price this usage (fail closed: the charge is then
 * unpriced), or undefined when it can: a service tier the price has no factor
 * for, or a tool call the model has no price for.
 */
export function unpricedReason(price: PriceVersion, usage: BilledUsage): string | undefined {
  const tier = usage.serviceTier ?? 'standard';
  if (tier !== 'standard' && !price.serviceTiers[tier]) return `${price.version} has no ${tier} service tier price`;
  for (const [tool, calls] of Object.entries(usage.toolCalls ?? {})) {
    if (!new Dec(calls).isZero() && !price.rates.toolCalls.has(tool)) return `${price.version} has no price for ${tool} tool calls`;
  }
  return undefined;
}

/**
 * The cost of a token mix (and calls, tool calls and requests) at a price and
 * markup, exact to the last digit. Expects counts already validated to nest
 * (see nestingProblem) and a usage the price can price (see unpricedReason).
 */
export function computeCost(price: PriceVersion, tokens: TokenCounts, markup: Dec, usage: BilledUsage = {}): Cost {
  const reason = unpricedReason(price, usage);
  if (reason) throw new RangeError(reason);
  const r = ratesFor(price, tokens, usage.at);
  const p = tokenParts(tokens);
  if (Object.values(p).some((v) => new Dec(v).isNegative())) {
    throw new RangeError('token classes do not nest: cached + cache-write + audio + image <= prompt, 1-hour writes <= cache writes, reasoning + audio + image <= completion');
  }
  const at = (rate: Dec, count: number) => rate.times(count);
  const tier = usage.serviceTier && usage.serviceTier !== 'standard' ? (price.serviceTiers[usage.serviceTier] ?? new Dec(1)) : new Dec(1);
  const providerPrompt = at(r.input, p.textInput)
    .plus(at(r.cachedInput, p.cachedTextInput))
    .plus(at(r.cacheWrite, p.cacheWrite5m))
    .plus(at(r.cacheWrite1h, p.cacheWrite1h))
    .plus(at(r.inputAudio, p.audioInput))
    .plus(at(r.cachedInputAudio, p.cachedAudioInput))
    .plus(at(r.inputImage, p.imageInput))
    .plus(at(r.cachedInputImage, p.cachedImageInput))
    .times(tier)
    .dividedBy(PER_MILLION);
  const providerCompletion = at(r.output, p.textOutput)
    .plus(at(r.reasoning, p.reasoning))
    .plus(at(r.outputAudio, p.audioOutput))
    .plus(at(r.outputImage, p.imageOutput))
    .times(tier)
    .dividedBy(PER_MILLION);
  const toolCalls = Object.entries(usage.toolCalls ?? {}).reduce((sum, [tool, calls]) => sum.plus(at(r.toolCalls.get(tool) ?? new Dec(0), calls)), new Dec(0));
  const providerCalls = at(r.perCall, usage.callCount ?? 0).plus(at(r.perRequest, usage.requests ?? 0)).plus(toolCalls);
  const promptCost = providerPrompt.times(markup);
  const completionCost = providerCompletion.times(markup);
  const callCost = providerCalls.times(markup);
  return {
    providerCost: providerPrompt.plus(providerCompletion).plus(providerCalls),
    promptCost,
    completionCost,
    callCost,
    totalCost: promptCost.plus(completionCost).plus(callCost),
  };
}

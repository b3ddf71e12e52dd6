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
const ZERO = new Dec(0);

/** The sum of rate x count over the terms, multiplying only the terms with a count. */
const sumOf = (terms: ReadonlyArray<readonly [Dec, number]>): Dec => terms.reduce((sum, [rate, count]) => (count === 0 ? sum : sum.plus(rate.times(count))), ZERO);

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
  if (Object.values(p).some((v) => v < 0)) {
    throw new RangeError('token classes do not nest: cached + cache-write + audio + image <= prompt, 1-hour writes <= cache writes, reasoning + audio + image <= completion');
  }
  // Tier 1 (standard) leaves a sum as it is; a class with no tokens adds nothing (most mixes use
  // two or three of the twelve classes): neither is multiplied.
  const tier = usage.serviceTier && usage.serviceTier !== 'standard' ? price.serviceTiers[usage.serviceTier] : undefined;
  const perMillion = (sum: Dec) => (tier ? sum.times(tier) : sum).dividedBy(PER_MILLION);
  const providerPrompt = perMillion(
    sumOf([
      [r.input, p.textInput],
      [r.cachedInput, p.cachedTextInput],
      [r.cacheWrite, p.cacheWrite5m],
      [r.cacheWrite1h, p.cacheWrite1h],
      [r.inputAudio, p.audioInput],
      [r.cachedInputAudio, p.cachedAudioInput],
      [r.inputImage, p.imageInput],
      [r.cachedInputImage, p.cachedImageInput],
    ]),
  );
  const providerCompletion = perMillion(
    sumOf([
      [r.output, p.textOutput],
      [r.reasoning, p.reasoning],
      [r.outputAudio, p.audioOutput],
      [r.outputImage, p.imageOutput],
    ]),
  );
  const toolCalls = Object.entries(usage.toolCalls ?? {}).map(([tool, calls]): [Dec, number] => [r.toolCalls.get(tool) ?? ZERO, calls]);
  const providerCalls = sumOf([[r.perCall, usage.callCount ?? 0], [r.perRequest, usage.requests ?? 0], ...toolCalls]);
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

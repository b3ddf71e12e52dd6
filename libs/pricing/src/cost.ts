import { Dec } from './money';
import { PriceVersion } from './price-table';
import { Rates } from './rates';
import { TokenCounts } from './tokens';

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
  /** Billed per-call cost (tool and plugin calls): calls x per-call price x markup. */
  callCost: Dec;
  /** Billed total: promptCost + completionCost + callCost. */
  totalCost: Dec;
}

const PER_MILLION = new Dec(1_000_000);

/** Which rates apply: the long-context tier prices the whole request once its prompt passes the threshold. */
export function ratesFor(price: PriceVersion, tokens: TokenCounts): Rates {
  const lc = price.longContext;
  return lc && new Dec(tokens.promptTokens).greaterThan(lc.thresholdPromptTokens) ? lc.rates : price.rates;
}

/**
 * The cost of a token mix (and a number of calls) at a price and markup,
 * exact to the last digit. Expects counts already validated to nest
 * (see nestingProblem): cached + cache-write <= prompt, 1-hour writes <=
 * cache writes, reasoning <= completion.
 */
export function computeCost(price: PriceVersion, tokens: TokenCounts, markup: Dec, calls = 0): Cost {
  const r = ratesFor(price, tokens);
  const prompt = new Dec(tokens.promptTokens);
  const cached = new Dec(tokens.cachedPromptTokens);
  const writes = new Dec(tokens.cacheWriteTokens);
  const writes1h = new Dec(tokens.cacheWrite1hTokens);
  const completion = new Dec(tokens.completionTokens);
  const reasoning = new Dec(tokens.reasoningTokens);
  const uncachedPrompt = prompt.minus(cached).minus(writes);
  const writes5m = writes.minus(writes1h);
  const plainCompletion = completion.minus(reasoning);
  if (uncachedPrompt.isNegative() || writes5m.isNegative() || plainCompletion.isNegative()) {
    throw new RangeError('token classes do not nest: cached + cache-write <= prompt, 1-hour writes <= cache writes, reasoning <= completion');
  }
  const providerPrompt = r.input
    .times(uncachedPrompt)
    .plus(r.cachedInput.times(cached))
    .plus(r.cacheWrite.times(writes5m))
    .plus(r.cacheWrite1h.times(writes1h))
    .dividedBy(PER_MILLION);
  const providerCompletion = r.output.times(plainCompletion).plus(r.reasoning.times(reasoning)).dividedBy(PER_MILLION);
  const providerCalls = r.perCall.times(calls);
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

import { Dec } from './money';
import { PriceVersion, Rates } from './price-table';
import { TokenCounts } from './tokens';

/** Costs of one charge, exact, in USD. */
export interface Cost {
  /** What the provider charges: prompt + completion before markup. */
  providerCost: Dec;
  /** Billed prompt cost: provider prompt cost x markup. */
  promptCost: Dec;
  /** Billed completion cost: provider completion cost x markup. */
  completionCost: Dec;
  /** Billed total: promptCost + completionCost. */
  totalCost: Dec;
}

const PER_MILLION = new Dec(1_000_000);

/** Which rates apply: the long-context tier prices the whole request once its prompt passes the threshold. */
export function ratesFor(price: PriceVersion, tokens: TokenCounts): Rates {
  const lc = price.longContext;
  return lc && tokens.promptTokens > lc.thresholdPromptTokens ? lc.rates : price.rates;
}

/**
 * The cost of a token mix at a price and markup, exact to the last digit
 * (decimal.js with 100 significant digits; never a JS float). Expects counts
 * already validated: cached + cache-write <= prompt, reasoning <= completion.
 */
export function computeCost(price: PriceVersion, tokens: TokenCounts, markup: Dec): Cost {
  const r = ratesFor(price, tokens);
  const uncachedPrompt = tokens.promptTokens - tokens.cachedPromptTokens - tokens.cacheWriteTokens;
  const plainCompletion = tokens.completionTokens - tokens.reasoningTokens;
  if (uncachedPrompt < 0 || plainCompletion < 0) {
    throw new RangeError('token classes do not nest: cached + cache-write must be <= prompt, reasoning <= completion');
  }
  const providerPrompt = r.input
    .times(uncachedPrompt)
    .plus(r.cachedInput.times(tokens.cachedPromptTokens))
    .plus(r.cacheWrite.times(tokens.cacheWriteTokens))
    .dividedBy(PER_MILLION);
  const providerCompletion = r.output.times(plainCompletion).plus(r.reasoning.times(tokens.reasoningTokens)).dividedBy(PER_MILLION);
  const promptCost = providerPrompt.times(markup);
  const completionCost = providerCompletion.times(markup);
  return {
    providerCost: providerPrompt.plus(providerCompletion),
    promptCost,
    completionCost,
    totalCost: promptCost.plus(completionCost),
  };
}

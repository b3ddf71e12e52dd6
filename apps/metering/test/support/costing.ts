import { computeCost, Dec, PriceTable, TOKEN_CLASSES, TokenCounts } from '@metering/pricing';

/** A token mix of gpt-4o (every class 0 unless given). */
const mix = (over: Partial<TokenCounts>): TokenCounts => ({ ...(Object.fromEntries(TOKEN_CLASSES.map((k) => [k, 0])) as unknown as TokenCounts), ...over });

/** What gpt-4o costs for a token mix at the catalogue's price in effect now (no markup): what the server charges for it. */
export function gpt4oCost(tokens: Partial<TokenCounts>, at = new Date()): Dec {
  const price = new PriceTable().priceAt('openai', 'gpt-4o', at);
  if (!price) throw new Error('the catalogue has no price for openai/gpt-4o');
  return computeCost(price, mix(tokens), new Dec(1)).totalCost;
}

/**
 * The gpt-4o completion tokens that cost exactly `usd` at the catalogue's price, and that cost,
 * both from the pricing data (so a test's estimate prices to a round amount without a hand-written
 * token count). Throws when no whole number of tokens costs exactly that.
 */
export function completionTokensCosting(usd: string, at = new Date()): { tokens: number; cost: Dec } {
  const tokens = new Dec(usd).times(1_000_000).dividedBy(gpt4oCost({ completionTokens: 1_000_000 }, at));
  if (!tokens.isInteger()) throw new Error(`no whole number of gpt-4o completion tokens costs ${usd}`);
  return { tokens: tokens.toNumber(), cost: gpt4oCost({ completionTokens: tokens.toNumber() }, at) };
}

import { Dec, parseDecimal } from './money';

/**
 * The rates of one price, as exact decimal strings in USD: per 1M tokens for
 * the token classes, per call for `perCall`. The same shape for catalogue rows
 * and for operator prices set at run time.
 */
export interface PriceRates {
  input: string;
  output: string;
  cachedInput?: string;
  cacheWrite?: string;
  cacheWrite1h?: string;
  reasoning?: string;
  perCall?: string;
  longContext?: {
    thresholdPromptTokens: number;
    input: string;
    output: string;
    cachedInput?: string;
    cacheWrite?: string;
    cacheWrite1h?: string;
  };
}

/** Rates parsed to exact decimals, every class filled in. */
export interface Rates {
  input: Dec;
  output: Dec;
  cachedInput: Dec;
  cacheWrite: Dec;
  cacheWrite1h: Dec;
  reasoning: Dec;
  perCall: Dec;
}

export interface ParsedRates {
  rates: Rates;
  longContext?: { thresholdPromptTokens: number; rates: Rates };
}

/** A problem with one rate; `field` is the snake_case name used on the wire (metering.v1.PriceRates). */
export interface RateProblem {
  field: string;
  description: string;
}

/** USD per 1M tokens (or per call): far above any real model, so a typo in the exponent is caught. */
export const MAX_RATE = new Dec(100_000);
/** Largest long-context threshold, in prompt tokens. */
export const MAX_THRESHOLD_TOKENS = 1_000_000_000_000;

const FIELD: Record<string, string> = {
  input: 'input_per_million',
  output: 'output_per_million',
  cachedInput: 'cached_input_per_million',
  cacheWrite: 'cache_write_per_million',
  cacheWrite1h: 'cache_write_1h_per_million',
  reasoning: 'reasoning_per_million',
  perCall: 'per_call',
};

type RateKey = keyof typeof FIELD;

/**
 * Parses rates, collecting every problem. Missing classes fall back: cached
 * and cache-write tokens cost what input costs, 1-hour cache writes what
 * cache writes cost, reasoning what output costs; a missing per-call price is
 * 0 (the model bills by tokens only). A long-context tier bills reasoning at
 * its own output rate (or at the base's separate reasoning rate, if any) and
 * inherits the per-call price.
 */
export function checkRates(spec: PriceRates): { parsed?: ParsedRates; problems: RateProblem[] } {
  const problems: RateProblem[] = [];
  const one = (value: string | undefined, key: RateKey, prefix: string, fallback: Dec | undefined): Dec => {
    const field = prefix + FIELD[key];
    if (value === undefined || value === '') {
      if (fallback === undefined) problems.push({ field, description: 'is required' });
      return fallback ?? new Dec(0);
    }
    const parsed = parseDecimal(value, 40);
    if (parsed === undefined || parsed.isNegative() || parsed.greaterThan(MAX_RATE)) {
      problems.push({ field, description: `must be a plain decimal string between 0 and ${MAX_RATE.toFixed()}, got "${value.slice(0, 40)}"` });
      return new Dec(0);
    }
    return parsed;
  };
  const tier = (r: Omit<PriceRates, 'longContext'>, prefix: string, base?: Rates): Rates => {
    const input = one(r.input, 'input', prefix, undefined);
    const output = one(r.output, 'output', prefix, undefined);
    const cacheWrite = one(r.cacheWrite, 'cacheWrite', prefix, input);
    return {
      input,
      output,
      cachedInput: one(r.cachedInput, 'cachedInput', prefix, input),
      cacheWrite,
      cacheWrite1h: one(r.cacheWrite1h, 'cacheWrite1h', prefix, cacheWrite),
      // In a long-context tier, reasoning costs the tier's output rate unless the base prices reasoning apart.
      reasoning: base ? (spec.reasoning ? base.reasoning : output) : one(r.reasoning, 'reasoning', prefix, output),
      perCall: base ? base.perCall : one(r.perCall, 'perCall', prefix, new Dec(0)),
    };
  };
  const rates = tier(spec, '');
  const parsed: ParsedRates = { rates };
  if (spec.longContext) {
    const { thresholdPromptTokens } = spec.longContext;
    if (!Number.isSafeInteger(thresholdPromptTokens) || thresholdPromptTokens <= 0 || thresholdPromptTokens > MAX_THRESHOLD_TOKENS) {
      problems.push({ field: 'long_context.threshold_prompt_tokens', description: `must be an integer between 1 and ${MAX_THRESHOLD_TOKENS}` });
    }
    parsed.longContext = { thresholdPromptTokens, rates: tier(spec.longContext, 'long_context.', rates) };
  }
  return problems.length ? { problems } : { parsed, problems };
}

/** Parses rates; throws naming every bad field (for catalogue rows, which must all be valid). */
export function parseRates(spec: PriceRates, where: string): ParsedRates {
  const { parsed, problems } = checkRates(spec);
  if (!parsed) throw new Error(`price ${where}: ${problems.map((p) => `${p.field} ${p.description}`).join('; ')}`);
  return parsed;
}

import { Dec, parseDecimal } from './money';

/**
 * The token-class rates of a price, as exact decimal strings in USD per 1M
 * tokens. `input` and `output` are required; a missing class falls back (see
 * checkRates): cached input and cache writes to input, 1-hour cache writes to
 * cache writes, reasoning to output, audio and image input to input, their
 * cache reads to cachedInput, audio and image output to output.
 */
export type TokenRates = {
  /** Text prompt tokens that are neither cache reads nor cache writes. */
  input: string;
  /** Text completion tokens (and reasoning tokens unless priced apart). */
  output: string;
  /** Prompt tokens read from the provider's cache (text; audio and image too unless priced apart). */
  cachedInput?: string;
  /** Prompt tokens written to the cache (5-minute lifetime where it matters). */
  cacheWrite?: string;
  /** Prompt tokens written to the cache with a 1-hour lifetime. */
  cacheWrite1h?: string;
  /** Reasoning tokens, where billed apart from other output. */
  reasoning?: string;
  /** Audio prompt tokens not read from the cache. */
  inputAudio?: string;
  /** Audio prompt tokens read from the cache. */
  cachedInputAudio?: string;
  /** Audio completion tokens. */
  outputAudio?: string;
  /** Image prompt tokens not read from the cache. */
  inputImage?: string;
  /** Image prompt tokens read from the cache. */
  cachedInputImage?: string;
  /** Image completion tokens. */
  outputImage?: string;
};

/** Service tiers priced apart from the standard tier (OpenAI's batch / flex / priority, Anthropic's and Google's batch). */
export const SERVICE_TIERS = ['batch', 'flex', 'priority'] as const;
export type ServiceTier = (typeof SERVICE_TIERS)[number];

/**
 * A time-of-day window (UTC, e.g. DeepSeek's peak hours) with its own token
 * rates. `startTime` and `endTime` are "HH:MM" or "HH:MM:SS"; the window
 * includes its start and excludes its end, and wraps past midnight when the end
 * is earlier than the start.
 */
export type TimeOfDayRates = TokenRates & {
  startTime: string;
  endTime: string;
};

/** A long-context tier: every token of a request whose prompt exceeds the threshold is billed at these rates. */
export type LongContextRates = TokenRates & {
  thresholdPromptTokens: number;
};

/**
 * The rates of one price, as exact decimal strings in USD. The same shape for
 * catalogue rows and for operator prices set at run time.
 */
export interface PriceRates extends TokenRates {
  /** One call of a per-call priced tool or plugin charge (charge type TOOL or PLUGIN, e.g. a "web_search" model), USD per call. */
  perCall?: string;
  /** A fee per request (per completion charge), USD per request; upstream's requests_kcount / 1000. */
  perRequest?: string;
  /**
   * Provider tools used inside a completion and billed per call at a price of
   * this model (e.g. { web_search: '0.01', file_search: '0.0025' }), USD per
   * call. Keys are tool names: lower case letters, digits and '_'.
   */
  toolCalls?: Readonly<Record<string, string>>;
  longContext?: LongContextRates;
  /** Windows of the day with other token rates (UTC); outside every window the base rates apply. */
  timeOfDay?: TimeOfDayRates[];
  /**
   * Factors on the token rates for the service tiers, as decimal strings
   * (e.g. { batch: '0.5', priority: '1.75' }); the standard tier is 1. A charge
   * in a tier the price has no factor for is unpriced.
   */
  serviceTiers?: Readonly<Partial<Record<ServiceTier, string>>>;
}

/** Token rates parsed to exact decimals, every class filled in. */
export interface TokenRateSet {
  input: Dec;
  output: Dec;
  cachedInput: Dec;
  cacheWrite: Dec;
  cacheWrite1h: Dec;
  reasoning: Dec;
  inputAudio: Dec;
  cachedInputAudio: Dec;
  outputAudio: Dec;
  inputImage: Dec;
  cachedInputImage: Dec;
  outputImage: Dec;
}

/** Rates parsed to exact decimals, every class filled in. */
export interface Rates extends TokenRateSet {
  perCall: Dec;
  perRequest: Dec;
  /** USD per call of each tool this model prices. */
  toolCalls: ReadonlyMap<string, Dec>;
}

export interface ParsedRates {
  rates: Rates;
  longContext?: { thresholdPromptTokens: number; rates: Rates };
  /** Seconds after UTC midnight: start inclusive, end exclusive; end < start wraps past midnight. */
  timeOfDay?: Array<{ startSecond: number; endSecond: number; rates: Rates }>;
  serviceTiers: Partial<Record<ServiceTier, Dec>>;
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
/** Largest service-tier factor. */
export const MAX_TIER_FACTOR = new Dec(100);
/** At most this many time-of-day windows and priced tools per price. */
export const MAX_WINDOWS = 24;
export const MAX_TOOLS = 32;
/** A tool name: what a charge's tool_calls and a price's tool_calls are keyed by. */
export const TOOL_NAME = /^[a-z][a-z0-9_]{0,63}$/;

/** The token-rate classes, in wire order. */
export const TOKEN_RATE_KEYS = [
  'input', 'output', 'cachedInput', 'cacheWrite', 'cacheWrite1h', 'reasoning',
  'inputAudio', 'cachedInputAudio', 'outputAudio', 'inputImage', 'cachedInputImage', 'outputImage',
] as const satisfies ReadonlyArray<keyof TokenRates>;

/** The snake_case wire name of each rate (metering.v1.PriceRates). */
export const RATE_FIELD: Record<keyof TokenRates | 'perCall' | 'perRequest', string> = {
  input: 'input_per_million',
  output: 'output_per_million',
  cachedInput: 'cached_input_per_million',
  cacheWrite: 'cache_write_per_million',
  cacheWrite1h: 'cache_write_1h_per_million',
  reasoning: 'reasoning_per_million',
  inputAudio: 'input_audio_per_million',
  cachedInputAudio: 'cached_input_audio_per_million',
  outputAudio: 'output_audio_per_million',
  inputImage: 'input_image_per_million',
  cachedInputImage: 'cached_input_image_per_million',
  outputImage: 'output_image_per_million',
  perCall: 'per_call',
  perRequest: 'per_request',
};

const TIME = /^([01]\d|2[0-3]):([0-5]\d)(?::([0-5]\d))?$/;

/** Seconds after midnight of "HH:MM[:SS]", or undefined. */
function secondOfDay(text: string): number | undefined {
  const m = TIME.exec(text);
  return m ? Number(m[1]) * 3600 + Number(m[2]) * 60 + Number(m[3] ?? 0) : undefined;
}

/**
 * Parses rates, collecting every problem. Missing classes fall back: cached
 * and cache-write tokens cost what input costs, 1-hour cache writes what
 * cache writes cost, reasoning what output costs; audio and image input what
 * input costs, their cache reads what cached input costs, audio and image
 * output what output costs; a missing per-call or per-request price is 0.
 * A long-context tier or time-of-day window bills reasoning at its own output
 * rate (or at the base's separate reasoning rate, if any) and inherits the
 * per-call, per-request and tool prices.
 */
export function checkRates(spec: PriceRates): { parsed?: ParsedRates; problems: RateProblem[] } {
  const problems: RateProblem[] = [];
  const decimal = (value: string | undefined, field: string, fallback: Dec | undefined, max = MAX_RATE): Dec => {
    if (value === undefined || value === '') {
      if (fallback === undefined) problems.push({ field, description: 'is required' });
      return fallback ?? new Dec(0);
    }
    const parsed = typeof value === 'string' ? parseDecimal(value, 40) : undefined;
    if (parsed === undefined || parsed.isNegative() || parsed.greaterThan(max)) {
      problems.push({ field, description: `must be a plain decimal string between 0 and ${max.toFixed()}, got "${String(value).slice(0, 40)}"` });
      return new Dec(0);
    }
    return parsed;
  };
  const tier = (r: TokenRates, prefix: string, base?: Rates): Rates => {
    const one = (key: keyof TokenRates, fallback: Dec | undefined) => decimal(r[key], prefix + RATE_FIELD[key], fallback);
    const input = one('input', undefined);
    const output = one('output', undefined);
    const cachedInput = one('cachedInput', input);
    const cacheWrite = one('cacheWrite', input);
    return {
      input,
      output,
      cachedInput,
      cacheWrite,
      cacheWrite1h: one('cacheWrite1h', cacheWrite),
      // In a long-context tier or window, reasoning costs its output rate unless the base prices reasoning apart.
      reasoning: base ? (spec.reasoning ? base.reasoning : output) : one('reasoning', output),
      inputAudio: one('inputAudio', input),
      cachedInputAudio: one('cachedInputAudio', cachedInput),
      outputAudio: one('outputAudio', output),
      inputImage: one('inputImage', input),
      cachedInputImage: one('cachedInputImage', cachedInput),
      outputImage: one('outputImage', output),
      perCall: base ? base.perCall : decimal(spec.perCall, RATE_FIELD.perCall, new Dec(0)),
      perRequest: base ? base.perRequest : decimal(spec.perRequest, RATE_FIELD.perRequest, new Dec(0)),
      toolCalls: base ? base.toolCalls : toolPrices(),
    };
  };
  const toolPrices = (): Map<string, Dec> => {
    const prices = new Map<string, Dec>();
    const entries = Object.entries(spec.toolCalls ?? {});
    if (entries.length > MAX_TOOLS) problems.push({ field: 'tool_calls', description: `at most ${MAX_TOOLS} tools, got ${entries.length}` });
    for (const [name, value] of entries.slice(0, MAX_TOOLS)) {
      if (!TOOL_NAME.test(name)) {
        problems.push({ field: 'tool_calls', description: `tool names are lower case letters, digits and '_' (at most 64), got "${name.slice(0, 40)}"` });
        continue;
      }
      prices.set(name, decimal(value, `tool_calls[${name}]`, undefined));
    }
    return prices;
  };
  const rates = tier(spec, '');
  const parsed: ParsedRates = { rates, serviceTiers: {} };
  if (spec.longContext) {
    const { thresholdPromptTokens } = spec.longContext;
    if (!Number.isSafeInteger(thresholdPromptTokens) || thresholdPromptTokens <= 0 || thresholdPromptTokens > MAX_THRESHOLD_TOKENS) {
      problems.push({ field: 'long_context.threshold_prompt_tokens', description: `must be an integer between 1 and ${MAX_THRESHOLD_TOKENS}` });
    }
    parsed.longContext = { thresholdPromptTokens, rates: tier(spec.longContext, 'long_context.', rates) };
  }
  if (spec.timeOfDay?.length) {
    if (spec.timeOfDay.length > MAX_WINDOWS) problems.push({ field: 'time_of_day', description: `at most ${MAX_WINDOWS} windows, got ${spec.timeOfDay.length}` });
    parsed.timeOfDay = spec.timeOfDay.slice(0, MAX_WINDOWS).map((w, n) => {
      const prefix = `time_of_day[${n}].`;
      const startSecond = secondOfDay(w.startTime);
      const endSecond = secondOfDay(w.endTime);
      if (startSecond === undefined) problems.push({ field: `${prefix}start_time`, description: `must be HH:MM or HH:MM:SS (UTC), got "${String(w.startTime).slice(0, 20)}"` });
      if (endSecond === undefined) problems.push({ field: `${prefix}end_time`, description: `must be HH:MM or HH:MM:SS (UTC), got "${String(w.endTime).slice(0, 20)}"` });
      if (startSecond !== undefined && startSecond === endSecond) problems.push({ field: `${prefix}end_time`, description: 'must differ from start_time' });
      return { startSecond: startSecond ?? 0, endSecond: endSecond ?? 0, rates: tier(w, prefix, rates) };
    });
    const overlap = problems.some((p) => p.field.startsWith('time_of_day')) ? undefined : overlappingWindow(parsed.timeOfDay);
    if (overlap !== undefined) problems.push({ field: `time_of_day[${overlap}]`, description: 'overlaps an earlier window' });
  }
  for (const [name, factor] of Object.entries(spec.serviceTiers ?? {})) {
    if (!(SERVICE_TIERS as readonly string[]).includes(name)) {
      problems.push({ field: 'service_tiers', description: `unknown service tier "${name.slice(0, 20)}" (known: ${SERVICE_TIERS.join(', ')})` });
      continue;
    }
    const value = decimal(factor, `service_tiers.${name}`, undefined, MAX_TIER_FACTOR);
    if (value.isZero() && factor) problems.push({ field: `service_tiers.${name}`, description: 'must be above 0' });
    parsed.serviceTiers[name as ServiceTier] = value;
  }
  return problems.length ? { problems } : { parsed, problems };
}

/** The index of the first window overlapping an earlier one, or undefined. */
function overlappingWindow(windows: ReadonlyArray<{ startSecond: number; endSecond: number }>): number | undefined {
  const DAY = 86_400;
  const spans = (w: { startSecond: number; endSecond: number }): Array<[number, number]> =>
    w.endSecond > w.startSecond ? [[w.startSecond, w.endSecond]] : [[w.startSecond, DAY], [0, w.endSecond]];
  for (let i = 1; i < windows.length; i++) {
    for (let j = 0; j < i; j++) {
      if (spans(windows[i]).some(([a, b]) => spans(windows[j]).some(([c, d]) => a < d && c < b))) return i;
    }
  }
  return undefined;
}

/** Whether a moment's time of day (UTC) falls in a window. */
export function inWindow(w: { startSecond: number; endSecond: number }, at: Date): boolean {
  const s = at.getUTCHours() * 3600 + at.getUTCMinutes() * 60 + at.getUTCSeconds();
  return w.endSecond > w.startSecond ? s >= w.startSecond && s < w.endSecond : s >= w.startSecond || s < w.endSecond;
}

/** Parses rates; throws naming every bad field (for catalogue rows, which must all be valid). */
export function parseRates(spec: PriceRates, where: string): ParsedRates {
  const { parsed, problems } = checkRates(spec);
  if (!parsed) throw new Error(`price ${where}: ${problems.map((p) => `${p.field} ${p.description}`).join('; ')}`);
  return parsed;
}

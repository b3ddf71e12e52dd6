import { PRICE_CATALOG, PriceRow } from './catalog';
import { Dec, parseDecimal } from './money';

/** Rates per 1M tokens of one price version, parsed to exact decimals. */
export interface Rates {
  input: Dec;
  output: Dec;
  cachedInput: Dec;
  cacheWrite: Dec;
  reasoning: Dec;
}

/** One version of a model's price, ready for cost math. */
export interface PriceVersion {
  /** "provider/model@effective_from", stamped on every charge priced with it. */
  version: string;
  row: PriceRow;
  rates: Rates;
  longContext?: { thresholdPromptTokens: number; rates: Rates };
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;
const MAX_RATE = new Dec(100_000); // USD per 1M tokens; far above any real model

function rate(value: string | undefined, fallback: Dec | undefined, what: string): Dec {
  if (value === undefined) {
    if (fallback === undefined) throw new Error(`price row: ${what} is required`);
    return fallback;
  }
  const parsed = parseDecimal(value);
  if (parsed === undefined || parsed.isNegative() || parsed.greaterThan(MAX_RATE)) {
    throw new Error(`price row: ${what} "${value}" is not a decimal between 0 and ${MAX_RATE.toFixed()}`);
  }
  return parsed;
}

function ratesOf(r: { input: string; output: string; cachedInput?: string; cacheWrite?: string; reasoning?: string }, where: string): Rates {
  const input = rate(r.input, undefined, `${where} input`);
  const output = rate(r.output, undefined, `${where} output`);
  return {
    input,
    output,
    // Without a cache price, cached and cache-write tokens cost what input costs;
    // without a reasoning price, reasoning tokens cost what output costs.
    cachedInput: rate(r.cachedInput, input, `${where} cachedInput`),
    cacheWrite: rate(r.cacheWrite, input, `${where} cacheWrite`),
    reasoning: rate(r.reasoning, output, `${where} reasoning`),
  };
}

/** Parses and checks one catalogue row; throws on any malformed value. */
export function parsePriceRow(row: PriceRow): PriceVersion {
  const where = `${row.provider}/${row.model}@${row.effectiveFrom}`;
  if (!DATE.test(row.effectiveFrom) || Number.isNaN(Date.parse(`${row.effectiveFrom}T00:00:00Z`))) {
    throw new Error(`price row ${where}: effectiveFrom must be YYYY-MM-DD`);
  }
  if (!row.source.trim()) throw new Error(`price row ${where}: source is required`);
  const version: PriceVersion = { version: where, row, rates: ratesOf(row, where) };
  if (row.longContext) {
    const { thresholdPromptTokens } = row.longContext;
    if (!Number.isSafeInteger(thresholdPromptTokens) || thresholdPromptTokens <= 0) {
      throw new Error(`price row ${where}: longContext.thresholdPromptTokens must be a positive integer`);
    }
    version.longContext = { thresholdPromptTokens, rates: ratesOf({ reasoning: row.reasoning, ...row.longContext }, `${where} longContext`) };
  }
  return version;
}

/** Price versions by provider and model, each list sorted by effective date. */
export class PriceTable {
  private readonly byModel = new Map<string, PriceVersion[]>();

  constructor(rows: readonly PriceRow[] = PRICE_CATALOG) {
    for (const row of rows) {
      const parsed = parsePriceRow(row);
      const key = `${row.provider}/${row.model}`;
      const versions = this.byModel.get(key) ?? [];
      if (versions.some((v) => v.row.effectiveFrom === row.effectiveFrom)) {
        throw new Error(`price table: ${parsed.version} is listed twice`);
      }
      versions.push(parsed);
      versions.sort((a, b) => a.row.effectiveFrom.localeCompare(b.row.effectiveFrom));
      this.byModel.set(key, versions);
    }
  }

  /** The price in effect for the provider and model at a moment, or undefined when there is none. */
  priceAt(provider: string, model: string, at: Date): PriceVersion | undefined {
    const versions = this.byModel.get(`${provider}/${model}`);
    if (!versions) return undefined;
    const day = at.toISOString().slice(0, 10);
    let found: PriceVersion | undefined;
    for (const v of versions) {
      if (v.row.effectiveFrom <= day) found = v;
      else break;
    }
    return found;
  }

  /** Every version, in provider, model, date order. */
  versions(): PriceVersion[] {
    return [...this.byModel.keys()].sort().flatMap((k) => this.byModel.get(k) ?? []);
  }
}

import { PRICE_CATALOG, PriceRow } from './catalog';
import { ParsedRates, parseRates, PriceRates, Rates } from './rates';

/**
 * Where a price comes from, in precedence order (highest first): a price an
 * operator set for one account, a price an operator set for every account,
 * the built-in catalogue.
 */
export type PriceOrigin = 'account' | 'operator' | 'catalog';

/** One version of a model's price, ready for cost math. */
export interface PriceVersion extends ParsedRates {
  /**
   * Stamped on every charge priced with it: "provider/model@YYYY-MM-DD" for
   * the catalogue, "operator:provider/model@<ISO time>" and
   * "account:<account>:provider/model@<ISO time>" for operator prices.
   */
  version: string;
  provider: string;
  model: string;
  origin: PriceOrigin;
  /** The account of an account price; '' otherwise. */
  accountId: string;
  /** From when the price applies. */
  effectiveTime: Date;
  source: string;
  /** The rates as given (decimal strings). */
  spec: PriceRates;
}

const DATE = /^\d{4}-\d{2}-\d{2}$/;

/** Parses and checks one catalogue row; throws on any malformed value. */
export function parsePriceRow(row: PriceRow): PriceVersion {
  const where = `${row.provider}/${row.model}@${row.effectiveFrom}`;
  const effectiveTime = new Date(`${row.effectiveFrom}T00:00:00Z`);
  if (!DATE.test(row.effectiveFrom) || Number.isNaN(effectiveTime.getTime()) || effectiveTime.toISOString().slice(0, 10) !== row.effectiveFrom) {
    throw new Error(`price row ${where}: effectiveFrom must be a real day, YYYY-MM-DD`);
  }
  if (!row.source.trim()) throw new Error(`price row ${where}: source is required`);
  const { provider, model, effectiveFrom: _day, source, aliases: _aliases, ...spec } = row;
  return { version: where, provider, model, origin: 'catalog', accountId: '', effectiveTime, source, spec, ...parseRates(spec, where) };
}

/** The version in effect at `at` among versions sorted by effective time, or undefined. */
export function inEffect<T extends { effectiveTime: Date }>(sorted: readonly T[], at: Date): T | undefined {
  let found: T | undefined;
  for (const v of sorted) {
    if (v.effectiveTime.getTime() <= at.getTime()) found = v;
    else break;
  }
  return found;
}

/**
 * The price that applies, by precedence: an account price in effect, else an
 * operator price in effect, else the catalogue's. A layer without a version
 * in effect at the usage time does not hide the next one.
 */
export function choosePrice(layers: { account?: PriceVersion; operator?: PriceVersion; catalog?: PriceVersion }): PriceVersion | undefined {
  return layers.account ?? layers.operator ?? layers.catalog;
}

/** The built-in catalogue: price versions by provider and model, each list sorted by effective date. */
export class PriceTable {
  private readonly byModel = new Map<string, PriceVersion[]>();
  private readonly byAlias = new Map<string, PriceVersion[]>();

  constructor(rows: readonly PriceRow[] = PRICE_CATALOG) {
    for (const row of rows) {
      const parsed = parsePriceRow(row);
      const add = (map: Map<string, PriceVersion[]>, name: string) => {
        const key = `${row.provider}/${name}`;
        const versions = map.get(key) ?? [];
        if (versions.some((v) => v.effectiveTime.getTime() === parsed.effectiveTime.getTime())) {
          throw new Error(`price table: ${row.provider}/${name}@${row.effectiveFrom} is listed twice`);
        }
        versions.push(parsed);
        versions.sort((a, b) => a.effectiveTime.getTime() - b.effectiveTime.getTime());
        map.set(key, versions);
      };
      add(this.byModel, row.model);
      for (const alias of row.aliases ?? []) add(this.byAlias, alias);
    }
    for (const key of this.byAlias.keys()) {
      if (this.byModel.has(key)) throw new Error(`price table: alias ${key} is also a model of its own`);
    }
  }

  /** The price in effect for the provider and model at a moment, or undefined when there is none. */
  priceAt(provider: string, model: string, at: Date): PriceVersion | undefined {
    const key = `${provider}/${model}`;
    return inEffect(this.byModel.get(key) ?? this.byAlias.get(key) ?? [], at);
  }

  /** Every version of one model, oldest first. */
  history(provider: string, model: string): PriceVersion[] {
    return [...(this.byModel.get(`${provider}/${model}`) ?? [])];
  }

  /** Every version, in provider, model, date order. */
  versions(): PriceVersion[] {
    return [...this.byModel.keys()].sort().flatMap((k) => this.byModel.get(k) ?? []);
  }

  /** The version of every model in effect at `at` (models not yet priced then are left out), in provider, model order. */
  current(at: Date): PriceVersion[] {
    return [...this.byModel.keys()].sort().flatMap((k) => inEffect(this.byModel.get(k) ?? [], at) ?? []);
  }
}

export type { Rates };

import { CATALOGUE_PROVIDERS, PRICE_CATALOG, PriceRow } from './catalog';
import type { CatalogueProvider } from './catalogue-file';
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
   * Stamped on every charge priced with it: for the catalogue
   * "genai-prices@<version>:provider/model@YYYY-MM-DD" (from the upstream
   * database) or "provider/model@YYYY-MM-DD" (our curated rows);
   * "operator:provider/model@<ISO time>" and
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
  /** From when the catalogue no longer prices the model (retired); absent while it is priced. */
  retiredTime?: Date;
  /** Other ids priced as this model (catalogue rows). */
  aliases?: readonly string[];
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
  const { provider, model, effectiveFrom: _day, source, aliases, version, retired, ...spec } = row;
  const retiredTime = retired === undefined ? undefined : new Date(`${retired}T00:00:00Z`);
  if (retiredTime && (!DATE.test(retired ?? '') || Number.isNaN(retiredTime.getTime()))) throw new Error(`price row ${where}: retired must be a real day, YYYY-MM-DD`);
  return {
    version: version ?? where, provider, model, origin: 'catalog', accountId: '', effectiveTime, source, spec, ...parseRates(spec, where),
    ...(retiredTime ? { retiredTime } : {}),
    ...(aliases?.length ? { aliases } : {}),
  };
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

/** The catalogue version in effect at `at`, unless the model was retired by then. */
export function catalogInEffect(sorted: readonly PriceVersion[], at: Date): PriceVersion | undefined {
  const found = inEffect(sorted, at);
  return found?.retiredTime && found.retiredTime.getTime() <= at.getTime() ? undefined : found;
}

/**
 * The price that applies, by precedence: an account price in effect, else an
 * operator price in effect, else the catalogue's. A layer without a version
 * in effect at the usage time does not hide the next one.
 */
export function choosePrice(layers: { account?: PriceVersion; operator?: PriceVersion; catalog?: PriceVersion }): PriceVersion | undefined {
  return layers.account ?? layers.operator ?? layers.catalog;
}

/**
 * The built-in catalogue: price versions by provider and model, each list
 * sorted by effective date. A price is found by exact lookups only (fail
 * closed): the provider id or one of its declared aliases, then the model id
 * or one of its declared aliases (both lower-cased, as providers treat ids),
 * then the same model id at the providers this one declares it serves at their
 * prices (e.g. Azure serves OpenAI's models). No prefix, substring or pattern
 * is ever tried: a near miss has no price.
 */
export class PriceTable {
  /** "provider/model" (lower case) -> versions, for models and their aliases. */
  private readonly byKey = new Map<string, PriceVersion[]>();
  private readonly models = new Map<string, PriceVersion[]>();
  /** Provider id or alias -> our provider id. */
  private readonly providerIds = new Map<string, string>();
  private readonly fallbacks = new Map<string, readonly string[]>();

  constructor(rows: readonly PriceRow[] = PRICE_CATALOG, providers: readonly CatalogueProvider[] = CATALOGUE_PROVIDERS) {
    for (const p of providers) {
      for (const id of [p.id, ...p.aliases]) {
        const known = this.providerIds.get(id);
        if (known && known !== p.id) throw new Error(`price table: provider id ${id} means both ${known} and ${p.id}`);
        this.providerIds.set(id, p.id);
      }
      if (p.fallbacks.length) this.fallbacks.set(p.id, p.fallbacks);
    }
    const aliasKeys = new Set<string>();
    for (const row of rows) {
      const parsed = parsePriceRow(row);
      const add = (name: string, alias: boolean) => {
        const key = `${row.provider}/${name.toLowerCase()}`;
        const versions = this.byKey.get(key) ?? [];
        if (versions.some((v) => v.effectiveTime.getTime() === parsed.effectiveTime.getTime())) {
          throw new Error(`price table: ${row.provider}/${name}@${row.effectiveFrom} is listed twice`);
        }
        if (alias) aliasKeys.add(key);
        else if (aliasKeys.has(key)) throw new Error(`price table: alias ${key} is also a model of its own`);
        versions.push(parsed);
        versions.sort((a, b) => a.effectiveTime.getTime() - b.effectiveTime.getTime());
        this.byKey.set(key, versions);
        if (!alias) this.models.set(`${row.provider}/${row.model}`, versions);
      };
      add(row.model, false);
      for (const alias of row.aliases ?? []) add(alias, true);
    }
    for (const key of aliasKeys) {
      const versions = this.byKey.get(key) ?? [];
      if (new Set(versions.map((v) => `${v.provider}/${v.model}`)).size > 1) throw new Error(`price table: alias ${key} names two models`);
    }
  }

  /** Our provider id for an id or alias ("google" -> "googleai"); the id itself when unknown. */
  providerId(provider: string): string {
    return this.providerIds.get(provider) ?? provider;
  }

  /** Every version a provider and model (or alias) answer to, oldest first: a few map lookups. */
  private lookup(provider: string, model: string): readonly PriceVersion[] | undefined {
    const id = this.providerId(provider);
    const name = model.toLowerCase();
    const own = this.byKey.get(`${id}/${name}`);
    if (own) return own;
    for (const other of this.fallbacks.get(id) ?? []) {
      const served = this.byKey.get(`${other}/${name}`);
      if (served) return served;
    }
    return undefined;
  }

  /** The price in effect for the provider and model at a moment, or undefined when there is none. */
  priceAt(provider: string, model: string, at: Date): PriceVersion | undefined {
    return catalogInEffect(this.lookup(provider, model) ?? [], at);
  }

  /** Every version of one model (or alias), oldest first. */
  history(provider: string, model: string): PriceVersion[] {
    return [...(this.lookup(provider, model) ?? [])];
  }

  /** Every version, in provider, model, date order. */
  versions(): PriceVersion[] {
    return [...this.models.keys()].sort().flatMap((k) => this.models.get(k) ?? []);
  }

  /** The version of every model in effect at `at` (models not yet priced then, or retired, are left out), in provider, model order. */
  current(at: Date): PriceVersion[] {
    return [...this.models.keys()].sort().flatMap((k) => catalogInEffect(this.models.get(k) ?? [], at) ?? []);
  }
}

export type { Rates };

import type { PriceRates } from './rates';

/**
 * The shape of the generated catalogue (./generated/catalogue.json), written
 * by tools/prices from the pinned upstream price database and our curated
 * layer (./curated.ts), and committed. Never edit it by hand: run
 * `npm run prices:generate` (CI fails when it is not what the pinned version
 * generates).
 */
export interface CatalogueFile {
  /** The upstream package and version it was last generated from, e.g. "genai-prices@0.1.8". */
  upstream: string;
  providers: CatalogueProvider[];
  models: CatalogueModel[];
}

/** One provider id and how it is reached. */
export interface CatalogueProvider {
  /** Our id, as sent on charges ("googleai"). */
  id: string;
  name: string;
  /** Upstream's id, when the provider comes from upstream. */
  upstreamId?: string;
  /** Other provider ids that mean this one ("google", "vertex"): a charge under an alias is priced as this provider. */
  aliases: string[];
  /** Providers whose models this one serves at their prices, tried in order when the model is not its own (e.g. Azure serves OpenAI's). */
  fallbacks: string[];
  pricingUrls: string[];
}

/** One model and every version of its price. */
export interface CatalogueModel {
  provider: string;
  model: string;
  /** `upstream`: from the upstream database; `curated`: from ./curated.ts (our own rows replace upstream's). */
  origin: 'upstream' | 'curated';
  /** Other explicit ids priced as this model (dated snapshots, regional ids, `provider/model` forms), lower case. */
  aliases?: string[];
  /** The day upstream stopped listing the model: it stays priced for usage before that day only. */
  retired?: string;
  rows: CatalogueRow[];
}

/** One version of a model's price; never rewritten once committed (a change is a new row). */
export interface CatalogueRow {
  /** First UTC day (YYYY-MM-DD) on which it applies. */
  effectiveFrom: string;
  /** Stamped on charges priced with it, e.g. "genai-prices@0.1.8:openai/gpt-5.4@2026-03-05". */
  version: string;
  source: string;
  rates: PriceRates;
}

/**
 * One entry of our curated layer (./curated.ts): what we know better than
 * upstream, each entry saying why.
 */
export interface CuratedModel {
  provider: string;
  model: string;
  /** Why this entry exists (required). */
  why: string;
  /**
   * The upstream model this entry is about, when its id differs from `model`
   * (e.g. our "grok-4" is upstream's "grok-4-0709"); with `rows`, our rows
   * replace that model's.
   */
  upstreamModel?: string;
  /** Explicit ids also priced as this model. */
  aliases?: string[];
  /** The day the provider retired the model: priced for usage before it only. */
  retired?: string;
  /** The first day of upstream's undated price, when we know it (upstream gives none): used when the model is first imported. */
  since?: string;
  /**
   * Rates we add to upstream's (e.g. a 1-hour cache-write rate, a long-context
   * tier, per-model tool prices it lacks): merged into every upstream price of
   * the model; a change here becomes a new row from the day of the regeneration.
   */
  extend?: Partial<PriceRates>;
  /** Our own rows; they replace upstream's rows for the model. */
  rows?: Array<PriceRates & { effectiveFrom: string; source: string }>;
  /**
   * Upstream's price of the model as it was when this entry was reviewed, in
   * the generator's text form ("absent" when upstream did not list it);
   * required with `rows` or `extend`. When upstream changes, the build fails
   * until someone reviews the entry again.
   */
  reviewed?: string;
}

/** A provider id of our own, or more ids for an upstream provider. */
export interface CuratedProvider {
  id: string;
  name?: string;
  aliases: string[];
  pricingUrls?: string[];
  why: string;
}

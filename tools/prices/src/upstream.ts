import type { MatchLogic, ModelInfo, ModelPrice, Provider, TieredPrices } from '@pydantic/genai-prices';
import { Dec, formatDecimal, LongContextRates, PriceRates, TimeOfDayRates, TokenRates } from '@metering/pricing';

/**
 * Reading the upstream price database (@pydantic/genai-prices) into exact
 * decimal rates and explicit model ids. Upstream stores prices as JS numbers
 * and matches model names with rules (equals / starts_with / contains /
 * regex); we keep neither: every number becomes a decimal string (a number
 * that is not a short decimal, e.g. 0.08333333333333334, is refused), and
 * every rule is expanded into the explicit ids upstream itself writes down
 * for that provider, each checked to resolve to the same model under
 * upstream's own first-match order. A rule that names no id is dropped.
 */

/** Our provider id for an upstream provider id, where they differ (the ids the Django models this service replaces used). */
export const PROVIDER_ID: Readonly<Record<string, string>> = { google: 'googleai', 'x-ai': 'xai' };

export const ourProvider = (upstreamId: string): string => PROVIDER_ID[upstreamId] ?? upstreamId;

/** One dated piece of a model's upstream price: `from` is upstream's start date, or null for the undated base price. */
export interface UpstreamPiece {
  from: string | null;
  rates: PriceRates;
}

/** One upstream model, read. */
export interface UpstreamModel {
  /** Upstream's provider id and model id (named in price versions). */
  upstreamProvider: string;
  upstreamModel: string;
  /** Our provider id. */
  provider: string;
  /** Explicit ids that upstream's rule gives this model, besides its own id (sorted). */
  aliases: string[];
  /** The price pieces, base first, then by start date. */
  pieces: UpstreamPiece[];
  /** Upstream price keys we cannot bill yet (they are left out of the rates). */
  unsupported: string[];
  deprecated: boolean;
  sourceUrls: string[];
}

/** Why an upstream model is not priced. */
export interface Skipped {
  provider: string;
  model: string;
  reason: string;
}

export interface UpstreamRead {
  providers: UpstreamProvider[];
  models: UpstreamModel[];
  skipped: Skipped[];
  /** Numbers that are float artefacts, not prices: "provider/model key=value". */
  artefacts: string[];
  /** Rules (or parts of rules) that named no explicit id and were dropped. */
  droppedRules: number;
}

export interface UpstreamProvider {
  upstreamId: string;
  id: string;
  name: string;
  pricingUrls: string[];
  /** Our ids of the providers whose models this one serves at their prices (upstream's fallback_model_providers). */
  fallbacks: string[];
}

/** Upstream per-1M-token price keys -> our token rate fields. */
const TOKEN_KEYS: Readonly<Record<string, keyof TokenRates>> = {
  input_mtok: 'input',
  output_mtok: 'output',
  cache_read_mtok: 'cachedInput',
  cache_write_mtok: 'cacheWrite',
  cache_write_1h_mtok: 'cacheWrite1h',
  output_reasoning_mtok: 'reasoning',
  input_audio_mtok: 'inputAudio',
  cache_audio_read_mtok: 'cachedInputAudio',
  output_audio_mtok: 'outputAudio',
  input_image_mtok: 'inputImage',
  cache_image_read_mtok: 'cachedInputImage',
  output_image_mtok: 'outputImage',
};
/** Upstream per-1,000 keys of tools used inside a completion -> our tool names (tool_calls). */
const TOOL_KEYS: Readonly<Record<string, string>> = { web_searches_kcount: 'web_search', storage_searches_kcount: 'file_search' };
const THOUSAND = new Dec(1000);

/** At most this many significant digits: a real price has few; 0.08333333333333334 has 16. */
const MAX_SIGNIFICANT_DIGITS = 10;

/** The exact decimal a price number stands for, or undefined when it is a float artefact (or not a finite, non-negative number). */
export function exactDecimal(value: number): string | undefined {
  if (typeof value !== 'number' || !Number.isFinite(value) || value < 0) return undefined;
  const shortest = String(value);
  const d = new Dec(shortest);
  if (d.precision(true) > MAX_SIGNIFICANT_DIGITS) return undefined;
  return formatDecimal(d);
}

type Leaf = { equals: string } | { starts_with: string } | { ends_with: string } | { contains: string } | { regex: string };

/** Every literal string a rule names (the ids upstream writes down). */
function literals(m: MatchLogic): string[] {
  if ('or' in m) return m.or.flatMap(literals);
  if ('and' in m) return m.and.flatMap(literals);
  if ('regex' in m) return [];
  const leaf = m as Exclude<Leaf, { regex: string }>;
  return [Object.values(leaf)[0] as string];
}

/** Upstream's own matching (case-insensitive, as upstream does). */
export function matches(m: MatchLogic, id: string): boolean {
  const t = id.toLowerCase();
  if ('or' in m) return m.or.some((s) => matches(s, id));
  if ('and' in m) return m.and.every((s) => matches(s, id));
  if ('equals' in m) return t === m.equals.toLowerCase();
  if ('starts_with' in m) return t.startsWith(m.starts_with.toLowerCase());
  if ('ends_with' in m) return t.endsWith(m.ends_with.toLowerCase());
  if ('contains' in m) return t.includes(m.contains.toLowerCase());
  if ('regex' in m) return new RegExp(m.regex).test(id);
  return false;
}

/** How many leaves of a rule are not plain equality (reported as dropped when they name nothing extra). */
function patternLeaves(m: MatchLogic): number {
  if ('or' in m) return m.or.reduce((n, s) => n + patternLeaves(s), 0);
  if ('and' in m) return 1;
  return 'equals' in m ? 0 : 1;
}

/** A literal that can be a model id: no trailing separator (rule fragments such as "claude-opus-4@" are not ids). */
const ID_LIKE = /^[A-Za-z0-9][A-Za-z0-9._:/@+-]*[A-Za-z0-9]$|^[A-Za-z0-9]$/;

/** Region prefixes of AWS Bedrock inference profiles, as upstream's rules spell them ("us.", "eu.", "global." ...). */
function bedrockPrefixes(p: Provider): string[] {
  const found = new Set<string>();
  for (const m of p.models) for (const l of literals(m.match)) {
    const hit = /^([a-z]{2,4}(?:-[a-z]{2,4})?)\.(anthropic|amazon|meta|mistral|openai|deepseek|qwen|writer|cohere|google|nvidia)\./.exec(l);
    if (hit) found.add(hit[1]);
  }
  found.delete('regional');
  return [...found].sort();
}

/** The candidate explicit ids of one provider: model ids and rule literals (and, for Bedrock, the regional profile forms). */
function candidates(p: Provider): string[] {
  const out = new Set<string>();
  const prefixes = p.id === 'aws' ? bedrockPrefixes(p) : [];
  for (const m of p.models) {
    const base = m.id.replace(/^(regional|global)\./, '');
    const names = [m.id, base, ...literals(m.match)];
    for (const name of names) {
      out.add(name);
      if (prefixes.length) {
        const bare = name.replace(new RegExp(`^(?:${['regional', ...prefixes].join('|')})\\.`), '');
        out.add(bare);
        for (const prefix of prefixes) out.add(`${prefix}.${bare}`);
      }
    }
  }
  return [...out].filter((c) => ID_LIKE.test(c));
}

/** The explicit ids each model of a provider answers to: a candidate goes to the model with that exact id, else to the first model whose rule matches it. */
export function expandIds(p: Provider): Map<ModelInfo, string[]> {
  const byId = new Map<string, ModelInfo>();
  for (const m of p.models) if (!byId.has(m.id.toLowerCase())) byId.set(m.id.toLowerCase(), m);
  const out = new Map<ModelInfo, string[]>(p.models.map((m) => [m, []]));
  const seen = new Set<string>();
  for (const c of candidates(p)) {
    const key = c.toLowerCase();
    if (seen.has(key)) continue;
    seen.add(key);
    const owner = byId.get(key) ?? p.models.find((m) => matches(m.match, c));
    if (owner && owner.id.toLowerCase() !== key) out.get(owner)?.push(key);
  }
  for (const ids of out.values()) ids.sort();
  return out;
}

const isTiered = (v: unknown): v is TieredPrices => typeof v === 'object' && v !== null && 'base' in v && 'tiers' in v;

/** One upstream price (a ModelPrice) as our rates, or why it cannot be. */
function ratesOf(price: ModelPrice, where: string, artefacts: string[]): { rates?: PriceRates; unsupported: string[]; problem?: string } {
  const base: Partial<Record<keyof TokenRates, string>> = {};
  const tier: Partial<Record<keyof TokenRates, string>> = {};
  const tools: Record<string, string> = {};
  let perRequest: string | undefined;
  const starts = new Set<number>();
  const unsupported: string[] = [];
  let bad = false;
  const exact = (key: string, n: number): string => {
    const d = exactDecimal(n);
    if (d === undefined) {
      artefacts.push(`${where} ${key}=${n}`);
      bad = true;
      return '0';
    }
    return d;
  };
  const perOne = (key: string, n: number) => formatDecimal(new Dec(exact(key, n)).dividedBy(THOUSAND));
  for (const [key, value] of Object.entries(price)) {
    if (value === undefined) continue;
    const field = TOKEN_KEYS[key];
    if (field && isTiered(value)) {
      if (value.tiers.length !== 1 || field === 'reasoning') return { unsupported, problem: `${key} has ${value.tiers.length} price tiers (one long-context tier is supported)` };
      base[field] = exact(`${key}.base`, value.base);
      tier[field] = exact(`${key}.tier`, value.tiers[0].price);
      starts.add(value.tiers[0].start);
    } else if (isTiered(value)) {
      return { unsupported, problem: `${key} has price tiers` };
    } else if (field) {
      base[field] = exact(key, value);
    } else if (TOOL_KEYS[key]) {
      tools[TOOL_KEYS[key]] = perOne(key, value);
    } else if (key === 'requests_kcount') {
      perRequest = perOne(key, value);
    } else {
      unsupported.push(key);
    }
  }
  if (bad) return { unsupported, problem: 'a price is a float artefact, not a decimal' };
  if (base.input === undefined && base.output === undefined) {
    const only = [...unsupported, ...Object.keys(price).filter((k) => !unsupported.includes(k))];
    return { unsupported, problem: only.length ? `no token price (only ${only.join(', ')})` : 'no price (upstream lists none)' };
  }
  if (base.input === undefined) return { unsupported, problem: 'an output price without an input price' };
  if (starts.size > 1) return { unsupported, problem: `long-context tiers start at different sizes (${[...starts].join(', ')})` };
  const rates: PriceRates = { input: base.input, output: base.output ?? '0' };
  for (const f of Object.values(TOKEN_KEYS)) if (f !== 'input' && f !== 'output' && base[f] !== undefined) rates[f] = base[f];
  if (perRequest !== undefined) rates.perRequest = perRequest;
  if (Object.keys(tools).length) rates.toolCalls = tools;
  if (starts.size === 1) {
    // A class without tiers costs the same in the tier: written out, since a tier falls back to its own input rate.
    const inTier = (f: keyof TokenRates) => tier[f] ?? base[f];
    const lc: LongContextRates = { thresholdPromptTokens: [...starts][0], input: inTier('input') ?? '0', output: inTier('output') ?? '0' };
    for (const f of Object.values(TOKEN_KEYS)) {
      const v = inTier(f);
      if (f !== 'input' && f !== 'output' && f !== 'reasoning' && v !== undefined) lc[f] = v;
    }
    rates.longContext = lc;
  }
  return { rates, unsupported };
}

/** "01:00:00Z" -> "01:00:00" (our windows are UTC). */
const utcTime = (t: string) => t.replace(/Z$/, '');

/** Reads every upstream provider and model. */
export function readUpstream(data: readonly Provider[]): UpstreamRead {
  const models: UpstreamModel[] = [];
  const skipped: Skipped[] = [];
  const artefacts: string[] = [];
  let droppedRules = 0;
  const providers: UpstreamProvider[] = data.map((p) => ({
    upstreamId: p.id,
    id: ourProvider(p.id),
    name: p.name,
    pricingUrls: [...(p.pricing_urls ?? [])],
    fallbacks: (p.fallback_model_providers ?? []).map(ourProvider),
  }));
  for (const p of data) {
    const provider = ourProvider(p.id);
    const ids = expandIds(p);
    for (const m of p.models) {
      const where = `${p.id}/${m.id}`;
      const aliases = ids.get(m) ?? [];
      if (aliases.length === 0 && !('equals' in m.match && m.match.equals.toLowerCase() === m.id.toLowerCase())) droppedRules += patternLeaves(m.match);
      const conditional = Array.isArray(m.prices) ? m.prices : [{ prices: m.prices }];
      const pieces: UpstreamPiece[] = [];
      const windows: TimeOfDayRates[] = [];
      const unsupported = new Set<string>();
      let problem: string | undefined;
      for (const c of conditional) {
        const read = ratesOf(c.prices, where, artefacts);
        read.unsupported.forEach((k) => unsupported.add(k));
        if (!read.rates) {
          problem = read.problem;
          break;
        }
        const constraint = c.constraint;
        if (constraint?.type === 'time_of_date') {
          const { input, output, longContext, perRequest, toolCalls, ...rest } = read.rates;
          if (longContext || perRequest || toolCalls) {
            problem = 'a time-of-day price with a long-context tier, request fee or tool price';
            break;
          }
          windows.push({ startTime: utcTime(constraint.start_time), endTime: utcTime(constraint.end_time), input, output, ...rest });
        } else {
          pieces.push({ from: constraint?.type === 'start_date' ? constraint.start_date.slice(0, 10) : null, rates: read.rates });
        }
      }
      // Upstream applies its time-of-day windows whatever the date: every dated price carries them.
      if (windows.length) for (const piece of pieces) piece.rates = { ...piece.rates, timeOfDay: windows };
      if (problem) {
        skipped.push({ provider, model: m.id, reason: problem });
        continue;
      }
      pieces.sort((a, b) => (a.from ?? '').localeCompare(b.from ?? ''));
      models.push({
        upstreamProvider: p.id,
        upstreamModel: m.id,
        provider,
        aliases,
        pieces,
        unsupported: [...unsupported].sort(),
        deprecated: m.deprecated === true,
        sourceUrls: [...(p.pricing_urls ?? [])],
      });
    }
  }
  return { providers, models, skipped, artefacts, droppedRules };
}

import type { CatalogueFile, CatalogueModel, CatalogueProvider, CatalogueRow, CuratedModel, CuratedProvider, PriceRates } from '@metering/pricing';
import { checkRates, curatedServiceTiers, Dec, formatDecimal } from '@metering/pricing';
import type { UpstreamModel, UpstreamRead } from './upstream';

/**
 * Generation: the committed catalogue (the ledger), the upstream data and our
 * curated layer in, the new catalogue and a report out. Rows are never
 * rewritten: a price upstream changed becomes a new row (from upstream's start
 * date when it gives one, else from the day of the regeneration); a model
 * upstream dropped keeps its rows and is marked retired. Only rows dated after
 * the regeneration day (scheduled, never yet in effect) follow upstream as it
 * is now.
 */

export interface GenerateInput {
  /** The committed catalogue; undefined for the first import. */
  previous?: CatalogueFile;
  upstream: UpstreamRead;
  /** The upstream package version, e.g. "0.1.8". */
  upstreamVersion: string;
  curated: readonly CuratedModel[];
  curatedProviders: readonly CuratedProvider[];
  /** The day of the regeneration, YYYY-MM-DD. */
  day: string;
}

export interface PriceChange {
  model: string;
  effectiveFrom: string;
  before: string;
  after: string;
}

export interface Disagreement {
  model: string;
  ours: string;
  upstream: string;
  why: string;
}

export interface Report {
  upstream: string;
  models: number;
  providers: number;
  newModels: string[];
  changed: PriceChange[];
  retired: string[];
  /** Where our curated rows and upstream differ today (reviewed). */
  disagreements: Disagreement[];
  /** Curated entries whose recorded upstream price is not upstream's price now: they fail the build until reviewed. */
  unreviewed: string[];
  /** Other problems that fail the build (a curated entry naming nothing, an alias claimed twice). */
  errors: string[];
  /** Upstream dated prices of the past that differ from our committed rows (ours kept). */
  conflicts: string[];
  skipped: string[];
  artefacts: string[];
  droppedRules: number;
  unsupportedKeys: Record<string, number>;
}

const ORDER = [
  'input', 'output', 'cachedInput', 'cacheWrite', 'cacheWrite1h', 'reasoning', 'inputAudio', 'cachedInputAudio', 'outputAudio',
  'inputImage', 'cachedInputImage', 'outputImage', 'perCall', 'perRequest', 'toolCalls', 'serviceTiers',
];

const plain = (v: unknown) => (typeof v === 'string' && /^\d+(\.\d+)?$/.test(v) ? formatDecimal(new Dec(v)) : String(v));

/** Token rates and the scalar / keyed parts, in a fixed order. */
function describeFlat(r: object): string {
  const entries = Object.entries(r).filter(([k, v]) => v !== undefined && ORDER.includes(k));
  entries.sort(([a], [b]) => ORDER.indexOf(a) - ORDER.indexOf(b));
  return entries
    .map(([k, v]) => (typeof v === 'object' ? `${k} {${Object.entries(v as object).sort(([a], [b]) => a.localeCompare(b)).map(([a, b]) => `${a} ${plain(b)}`).join(', ')}}` : `${k} ${plain(v)}`))
    .join(', ');
}

/** Rates in a short, stable text form: "input 2.5, output 10, cachedInput 1.25; above 200000: input 5, output 15; 01:00:00-04:00:00: ...". */
export function describeRates(r: PriceRates): string {
  const lc = r.longContext ? [`above ${r.longContext.thresholdPromptTokens}: ${describeFlat(r.longContext)}`] : [];
  const windows = (r.timeOfDay ?? []).map((w) => `${w.startTime}-${w.endTime}: ${describeFlat(w)}`);
  return [describeFlat(r), ...lc, ...windows].join('; ');
}

/** Upstream's price of a model in the text form curated entries record as `reviewed`. */
export function describeUpstream(u: UpstreamModel | undefined): string {
  if (!u) return 'absent';
  return u.pieces.map((p) => (p.from ? `from ${p.from}: ` : '') + describeRates(p.rates)).join(' | ');
}

const sameRates = (a: PriceRates, b: PriceRates) => describeRates(a) === describeRates(b);

/** Rates with our curated service-tier factors (libs/pricing/src/service-tiers.ts) when they have none: written into the rows, so a change is a new row. */
function withServiceTiers(provider: string, model: string, rates: PriceRates): PriceRates {
  const tiers = rates.serviceTiers ?? curatedServiceTiers(provider, model);
  return tiers ? { ...rates, serviceTiers: tiers } : rates;
}
const key = (provider: string, model: string) => `${provider}/${model}`;

/** The row in effect on a day among rows sorted by date. */
function inEffectOn<T extends { effectiveFrom: string }>(rows: readonly T[], day: string): T | undefined {
  let found: T | undefined;
  for (const r of rows) if (r.effectiveFrom <= day) found = r;
  return found;
}

const byDate = (a: { effectiveFrom: string }, b: { effectiveFrom: string }) => a.effectiveFrom.localeCompare(b.effectiveFrom);

export function generate(input: GenerateInput): { file: CatalogueFile; report: Report } {
  const { previous, upstream, upstreamVersion, curated, curatedProviders, day } = input;
  const tag = `genai-prices@${upstreamVersion}`;
  const report: Report = {
    upstream: tag, models: 0, providers: 0, newModels: [], changed: [], retired: [], disagreements: [], unreviewed: [], errors: [], conflicts: [],
    skipped: upstream.skipped.map((s) => `${s.provider}/${s.model}: ${s.reason}`),
    artefacts: upstream.artefacts, droppedRules: upstream.droppedRules, unsupportedKeys: {},
  };
  const upstreamByKey = new Map(upstream.models.map((u) => [key(u.provider, u.upstreamModel), u]));
  const upstreamByAlias = new Map(upstream.models.flatMap((u) => u.aliases.map((a) => [key(u.provider, a), u] as const)));
  /** The upstream model a curated entry is about: named, or by its id, or the one upstream prices this id as. */
  const counterpart = (c: CuratedModel) =>
    upstreamByKey.get(key(c.provider, c.upstreamModel ?? c.model)) ?? (c.upstreamModel ? undefined : upstreamByAlias.get(key(c.provider, c.model.toLowerCase())));
  const curatedByKey = new Map<string, CuratedModel>();
  for (const c of curated) {
    const k = key(c.provider, c.upstreamModel ?? c.model);
    if (curatedByKey.has(k)) report.errors.push(`curated: ${k} is listed twice`);
    if (!c.why.trim()) report.errors.push(`curated: ${k} does not say why`);
    curatedByKey.set(k, c);
  }
  const previousByKey = new Map((previous?.models ?? []).map((m) => [key(m.provider, m.model), m]));
  const models: CatalogueModel[] = [];

  const upstreamRow = (u: UpstreamModel, effectiveFrom: string, rates: PriceRates): CatalogueRow => ({
    effectiveFrom,
    version: `${tag}:${u.upstreamProvider}/${u.upstreamModel}@${effectiveFrom}`,
    source: `${tag}${u.sourceUrls.length ? ` (${u.sourceUrls.join(', ')})` : ''}`,
    rates,
  });

  for (let u of upstream.models) {
    const k = key(u.provider, u.upstreamModel);
    for (const f of u.unsupported) report.unsupportedKeys[f] = (report.unsupportedKeys[f] ?? 0) + 1;
    const c = curatedByKey.get(k);
    if (c?.rows) continue; // our rows replace upstream's; added below
    if (c?.extend) {
      if (c.reviewed !== describeUpstream(u)) report.unreviewed.push(`${k}: extended, reviewed against "${c.reviewed ?? '(nothing)'}", upstream now "${describeUpstream(u)}"`);
      u = { ...u, pieces: u.pieces.map((p) => ({ ...p, rates: { ...p.rates, ...c.extend, toolCalls: c.extend?.toolCalls ? { ...p.rates.toolCalls, ...c.extend.toolCalls } : p.rates.toolCalls } })) };
    }
    u = { ...u, pieces: u.pieces.map((p) => ({ ...p, rates: withServiceTiers(u.provider, u.upstreamModel, p.rates) })) };
    const prev = previousByKey.get(k);
    const prevRows = prev?.origin === 'upstream' ? [...prev.rows].sort(byDate) : [];
    const dated = u.pieces.filter((p) => p.from !== null) as Array<{ from: string; rates: PriceRates }>;
    const base = u.pieces.find((p) => p.from === null);
    // Kept: every committed row in effect on or before the day; replaced: rows scheduled after it.
    const rows: CatalogueRow[] = prevRows.filter((r) => r.effectiveFrom <= day);
    const before = (r: CatalogueRow | undefined) => (r ? describeRates(r.rates) : 'none');
    if (base && prevRows.length === 0) {
      // A model seen for the first time: its undated price applies from our recorded start (curated `since`) or from today,
      // unless an upstream dated price already replaced it by then.
      const from = c?.since ?? day;
      if (!dated.some((p) => p.from <= from)) rows.push(upstreamRow(u, from, base.rates));
    }
    for (const p of dated) {
      const have = rows.find((r) => r.effectiveFrom === p.from);
      if (!have) {
        const lastBefore = inEffectOn(rows, p.from);
        rows.push(upstreamRow(u, p.from, p.rates));
        rows.sort(byDate);
        if (prevRows.length && p.from <= day) report.changed.push({ model: k, effectiveFrom: p.from, before: before(lastBefore), after: describeRates(p.rates) });
      } else if (!sameRates(have.rates, p.rates)) {
        report.conflicts.push(`${k}@${p.from}: upstream now says ${describeRates(p.rates)}, our committed row ${describeRates(have.rates)} is kept`);
      }
    }
    if (base && prevRows.length) {
      // Upstream's price on the day; a change becomes a row dated today.
      const upstreamNow = dated.filter((p) => p.from <= day).pop()?.rates ?? base.rates;
      const ours = inEffectOn(rows.sort(byDate), day);
      if (!ours || !sameRates(ours.rates, upstreamNow)) {
        const i = rows.findIndex((r) => r.effectiveFrom === day);
        if (i >= 0) rows.splice(i, 1);
        rows.push(upstreamRow(u, day, upstreamNow));
        report.changed.push({ model: k, effectiveFrom: day, before: before(ours), after: describeRates(upstreamNow) });
      }
    }
    rows.sort(byDate);
    if (rows.length === 0) {
      report.skipped.push(`${k}: every upstream price starts after ${day} or is superseded`);
      continue;
    }
    if (!prev) report.newModels.push(k);
    if (prev?.retired) report.changed.push({ model: k, effectiveFrom: day, before: `retired on ${prev.retired}`, after: 'listed again' });
    models.push({ provider: u.provider, model: u.upstreamModel, origin: 'upstream', aliases: [...new Set([...u.aliases, ...(c?.aliases ?? [])])], rows });
  }

  // Retired: upstream models of the committed catalogue that upstream no longer lists keep their rows.
  const emitted = new Set(models.map((m) => key(m.provider, m.model)));
  for (const prev of previous?.models ?? []) {
    const k = key(prev.provider, prev.model);
    if (prev.origin !== 'upstream' || emitted.has(k) || (upstreamByKey.has(k) && curatedByKey.get(k)?.rows)) continue;
    const rows = prev.rows.filter((r) => r.effectiveFrom <= day);
    if (rows.length === 0) continue;
    if (!prev.retired) report.retired.push(k);
    models.push({ ...prev, rows, retired: prev.retired ?? day });
  }

  // Our curated rows, checked against upstream: a recorded review that is not upstream's price now fails.
  for (const c of curated) {
    const k = key(c.provider, c.model);
    const u = counterpart(c);
    const upstreamText = describeUpstream(u);
    if (!c.rows) {
      if (!upstreamByKey.has(key(c.provider, c.upstreamModel ?? c.model))) report.errors.push(`curated: ${k} has no rows and upstream does not list it`);
      continue;
    }
    if (c.reviewed !== upstreamText) report.unreviewed.push(`${k}: reviewed against "${c.reviewed ?? '(nothing)'}", upstream now "${upstreamText}"`);
    const rows: CatalogueRow[] = c.rows.map(({ effectiveFrom, source, ...given }) => {
      const rates = withServiceTiers(c.provider, c.model, given);
      const { problems } = checkRates(rates);
      if (problems.length) report.errors.push(`curated: ${k}@${effectiveFrom}: ${problems.map((p) => `${p.field} ${p.description}`).join('; ')}`);
      return { effectiveFrom, version: `${c.provider}/${c.model}@${effectiveFrom}`, source, rates };
    });
    rows.sort(byDate);
    const ours = inEffectOn(rows, day);
    if (u && ours) {
      // Compared with our service-tier factors on both sides: those are ours either way.
      const raw = u.pieces.filter((p) => p.from === null || p.from <= day).pop()?.rates;
      const upstreamNow = raw && withServiceTiers(c.provider, c.model, raw);
      if (!upstreamNow || !sameRates(ours.rates, upstreamNow)) {
        report.disagreements.push({ model: k, ours: describeRates(ours.rates), upstream: upstreamNow ? describeRates(upstreamNow) : 'none', why: c.why });
      }
    }
    const replaced = upstreamByKey.get(key(c.provider, c.upstreamModel ?? c.model));
    const aliases = [...(replaced?.aliases ?? []), ...(c.upstreamModel ? [c.upstreamModel] : []), ...(c.aliases ?? [])];
    models.push({ provider: c.provider, model: c.model, origin: 'curated', aliases: [...new Set(aliases)], ...(c.retired ? { retired: c.retired } : {}), rows });
  }

  const providers = providerList(upstream, curatedProviders, models, report);
  finishAliases(models, upstream, report);
  models.sort((a, b) => key(a.provider, a.model).localeCompare(key(b.provider, b.model)));
  report.models = models.filter((m) => !m.retired).length;
  report.providers = new Set(models.filter((m) => !m.retired).map((m) => m.provider)).size;
  report.newModels.sort();
  return { file: { upstream: tag, providers, models }, report };
}

/** Upstream's providers and our own, with the declared provider aliases. */
function providerList(upstream: UpstreamRead, ours: readonly CuratedProvider[], models: CatalogueModel[], report: Report): CatalogueProvider[] {
  const list = new Map<string, CatalogueProvider>();
  for (const p of upstream.providers) {
    list.set(p.id, { id: p.id, name: p.name, upstreamId: p.upstreamId, aliases: p.upstreamId !== p.id ? [p.upstreamId] : [], fallbacks: p.fallbacks, pricingUrls: p.pricingUrls });
  }
  for (const p of ours) {
    const existing = list.get(p.id);
    if (existing) existing.aliases = [...new Set([...existing.aliases, ...p.aliases])].sort();
    else list.set(p.id, { id: p.id, name: p.name ?? p.id, aliases: [...p.aliases].sort(), fallbacks: [], pricingUrls: p.pricingUrls ?? [] });
  }
  const used = new Set(models.map((m) => m.provider));
  for (const m of used) if (!list.has(m)) report.errors.push(`provider ${m} has models but is not declared (add it to CURATED_PROVIDERS)`);
  const seen = new Map<string, string>();
  for (const p of list.values()) {
    for (const a of [p.id, ...p.aliases]) {
      if (seen.has(a)) report.errors.push(`provider id ${a} means both ${seen.get(a)} and ${p.id}`);
      seen.set(a, p.id);
    }
  }
  return [...list.values()].sort((a, b) => a.id.localeCompare(b.id));
}

/**
 * Aliases: lower case, each naming one model of its provider; the
 * `provider/model` forms (with our id and upstream's) are added. An alias that
 * is another model's own id, or that two models claim, is dropped and reported.
 */
function finishAliases(models: CatalogueModel[], upstream: UpstreamRead, report: Report) {
  const upstreamId = new Map(upstream.providers.map((p) => [p.id, p.upstreamId]));
  const ids = new Map<string, CatalogueModel>();
  for (const m of models) {
    const k = key(m.provider, m.model.toLowerCase());
    if (ids.has(k)) report.errors.push(`two models are ${k} (ids differ only in case)`);
    ids.set(k, m);
  }
  const claims = new Map<string, CatalogueModel[]>();
  for (const m of models) {
    const forms = [`${m.provider}/${m.model}`, `${upstreamId.get(m.provider) ?? m.provider}/${m.model}`].map((f) => f.toLowerCase());
    const all = new Set([...(m.aliases ?? []).map((a) => a.toLowerCase()), ...forms]);
    for (const a of all) {
      const k = key(m.provider, a);
      if (ids.has(k)) continue;
      claims.set(k, [...(claims.get(k) ?? []), m]);
    }
  }
  const kept = new Map<CatalogueModel, string[]>();
  for (const [k, owners] of claims) {
    const live = owners.filter((o) => !o.retired);
    const winners = live.length ? live : owners;
    if (winners.length > 1) {
      report.errors.push(`alias ${k} is claimed by ${winners.map((o) => o.model).join(' and ')}`);
      continue;
    }
    const alias = k.slice(winners[0].provider.length + 1);
    kept.set(winners[0], [...(kept.get(winners[0]) ?? []), alias]);
  }
  for (const m of models) {
    const aliases = (kept.get(m) ?? []).sort();
    if (aliases.length) m.aliases = aliases;
    else delete m.aliases;
  }
}

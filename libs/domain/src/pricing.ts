import { checkRates, PriceRates, RATE_FIELD, TOKEN_RATE_KEYS, TokenRates } from '@metering/pricing';
import { BilledCounts, BilledUsageInput, checkBilledUsage, MAX_CALLS } from './billed-usage';
import { ChargeType, CHARGE_TYPE_BY_NUMBER } from './charge';
import { decodePageToken, encodePageToken } from './page-token';
import { checkDateRange } from './usage';
import { checkActor, checkEnum, checkId, checkInt, checkModel, checkProvider, checkText, checkTimestamp, TimestampInput, Violations } from './validation';

/** Token rates as they come off the wire (camelCase of metering.v1.PriceRates' fields), '' when not given. */
export interface TokenRatesInput {
  inputPerMillion?: string;
  outputPerMillion?: string;
  cachedInputPerMillion?: string;
  cacheWritePerMillion?: string;
  cacheWrite1hPerMillion?: string;
  reasoningPerMillion?: string;
  inputAudioPerMillion?: string;
  cachedInputAudioPerMillion?: string;
  outputAudioPerMillion?: string;
  inputImagePerMillion?: string;
  cachedInputImagePerMillion?: string;
  outputImagePerMillion?: string;
}

/** Rates as they come off the wire (metering.v1.PriceRates): decimal strings, '' when not given. */
export interface PriceRatesInput extends TokenRatesInput {
  perCall?: string;
  perRequest?: string;
  toolCalls?: Record<string, string>;
  longContext?: TokenRatesInput & { thresholdPromptTokens: string };
  timeOfDay?: Array<TokenRatesInput & { startTime: string; endTime: string }>;
  serviceTiers?: { batch?: string; flex?: string; priority?: string };
}

/** An operator price version, validated. */
export interface OperatorPrice {
  /** '' for every account. */
  accountId: string;
  provider: string;
  model: string;
  effectiveTime: Date;
  spec: PriceRates;
  source: string;
  updatedBy: string;
  updateTime?: Date;
}

/** The camelCase wire name of a snake_case field ("cache_write_1h_per_million" -> "cacheWrite1hPerMillion"). */
export const wireName = (snake: string) => snake.replace(/_([a-z0-9])/g, (_m, c: string) => c.toUpperCase());

/** A wire string as an optional rate: '' (or not a string, left for checkRates to name) is absent. */
const opt = (s: unknown) => (s === '' || s === undefined || s === null ? undefined : (s as string));

function tokenRatesOf(r: TokenRatesInput): TokenRates {
  const rates: Record<string, string | undefined> = {};
  for (const key of TOKEN_RATE_KEYS) rates[key] = opt((r as unknown as Record<string, unknown>)[wireName(RATE_FIELD[key])]);
  return { ...rates, input: rates.input ?? '', output: rates.output ?? '' } as TokenRates;
}

/** Drops absent keys, so that the stored spec (and the audit trail) has only what was set. */
function compact<T extends object>(o: T): T {
  return Object.fromEntries(Object.entries(o).filter(([, x]) => x !== undefined)) as T;
}

/** Wire rates to the pricing lib's shape: empty strings become absent classes. */
export function specOf(r: PriceRatesInput): PriceRates {
  const spec: PriceRates = { ...tokenRatesOf(r), perCall: opt(r.perCall), perRequest: opt(r.perRequest) };
  if (r.toolCalls && Object.keys(r.toolCalls).length) spec.toolCalls = { ...r.toolCalls };
  if (r.longContext) {
    const lc = r.longContext;
    const threshold = /^\d{1,13}$/.test(String(lc.thresholdPromptTokens)) ? Number(lc.thresholdPromptTokens) : -1;
    spec.longContext = compact({ ...tokenRatesOf(lc), thresholdPromptTokens: threshold });
  }
  if (r.timeOfDay?.length) spec.timeOfDay = r.timeOfDay.map((w) => compact({ ...tokenRatesOf(w), startTime: String(w.startTime), endTime: String(w.endTime) }));
  const tiers = compact({ batch: opt(r.serviceTiers?.batch), flex: opt(r.serviceTiers?.flex), priority: opt(r.serviceTiers?.priority) });
  if (Object.keys(tiers).length) spec.serviceTiers = tiers;
  return compact(spec);
}

export interface SetPriceInput {
  accountId: string;
  provider: string;
  model: string;
  effectiveTime?: TimestampInput;
  rates?: PriceRatesInput;
  source: string;
  actor: string;
}

/** SetPrice: every bad rate is named (rates.input_per_million, rates.long_context.threshold_prompt_tokens, ...). */
export function validateSetPrice(raw: SetPriceInput, now: Date): OperatorPrice {
  const v = new Violations();
  const price = {
    accountId: checkId(v, 'account_id', raw.accountId ?? '', false),
    provider: checkProvider(v, 'provider', raw.provider),
    model: checkModel(v, 'model', raw.model),
    effectiveTime: checkTimestamp(v, 'effective_time', raw.effectiveTime, now),
    source: checkText(v, 'source', raw.source, 255, { required: true }),
    updatedBy: checkActor(v, raw.actor),
    spec: { input: '0', output: '0' } as PriceRates,
  };
  if (!raw.rates) v.add('rates', 'is required (input_per_million and output_per_million at least)');
  else {
    price.spec = specOf(raw.rates);
    for (const p of checkRates(price.spec).problems) v.add(`rates.${p.field}`, p.description);
  }
  v.done();
  return price;
}

/** The key of one operator price version. */
export interface PriceKey {
  accountId: string;
  provider: string;
  model: string;
  effectiveTime: Date;
}

export function validateDeletePrice(raw: { accountId: string; provider: string; model: string; effectiveTime?: TimestampInput; actor: string }): { key: PriceKey; actor: string } {
  const v = new Violations();
  if (raw.effectiveTime === undefined) v.add('effective_time', 'is required (the effective_time of the version to remove)');
  const key = {
    accountId: checkId(v, 'account_id', raw.accountId ?? '', false),
    provider: checkProvider(v, 'provider', raw.provider),
    model: checkModel(v, 'model', raw.model),
    effectiveTime: checkTimestamp(v, 'effective_time', raw.effectiveTime, new Date(0)),
  };
  const actor = checkActor(v, raw.actor);
  v.done();
  return { key, actor };
}

/** Which price to look up: a model, for an account (or the defaults), at a moment. */
export interface PriceQuery {
  accountId: string;
  provider: string;
  model: string;
  at: Date;
}

export function validateGetPrice(raw: { provider: string; model: string; accountId: string; at?: TimestampInput }, now: Date): PriceQuery {
  const v = new Violations();
  const q = {
    provider: checkProvider(v, 'provider', raw.provider),
    model: checkModel(v, 'model', raw.model),
    accountId: checkId(v, 'account_id', raw.accountId ?? '', false),
    at: checkTimestamp(v, 'at', raw.at, now),
  };
  v.done();
  return q;
}

export interface ModelListQuery {
  provider?: string;
  accountId: string;
  at: Date;
  includeHistory: boolean;
  /** Only models whose id or an alias contains this (lower case). */
  name?: string;
  /** Prices per page; 0: the whole list. */
  pageSize: number;
  /** The sort key of the last price of the previous page. */
  after?: string;
}

export interface ModelListInput {
  provider: string;
  accountId: string;
  at?: TimestampInput;
  includeHistory: boolean;
  pageSize?: number;
  pageToken?: string;
  name?: string;
}

/** What a ListModels page token is bound to: the filters (and the moment, when one was given). */
function modelListFingerprint(raw: ModelListInput, q: Omit<ModelListQuery, 'after' | 'pageSize'>): string {
  return JSON.stringify([q.provider ?? '', q.accountId, q.includeHistory, q.name ?? '', raw.at ? q.at.toISOString() : '']);
}

/** The token of the page after the price with sort key `lastKey`. */
export function encodeModelPageToken(raw: ModelListInput, q: ModelListQuery, lastKey: string): string {
  return encodePageToken(modelListFingerprint(raw, q), lastKey);
}

export function validateListModels(raw: ModelListInput, now: Date): ModelListQuery {
  const v = new Violations();
  const name = (raw.name ?? '').trim().toLowerCase();
  if (name.length > 255) v.add('name', 'must be at most 255 characters');
  const q: ModelListQuery = {
    provider: checkProvider(v, 'provider', raw.provider, false) || undefined,
    accountId: checkId(v, 'account_id', raw.accountId ?? '', false),
    at: checkTimestamp(v, 'at', raw.at, now),
    includeHistory: raw.includeHistory === true,
    name: name || undefined,
    pageSize: raw.pageSize ? checkInt(v, 'page_size', raw.pageSize, 1, 1000) : 0,
  };
  if (raw.pageToken) {
    q.after = decodePageToken(v, raw.pageToken, modelListFingerprint(raw, q), (k) => (typeof k === 'string' ? k : undefined));
    if (!q.pageSize) v.add('page_size', 'is required with page_token');
  }
  v.done();
  return q;
}

export interface EstimateCostInput extends BilledUsageInput {
  accountId: string;
  provider: string;
  model: string;
  chargeType: number;
  callCount: string;
  at?: TimestampInput;
}

export interface CostEstimateQuery extends BilledCounts {
  accountId: string;
  provider: string;
  model: string;
  chargeType: ChargeType;
  callCount: number;
  at: Date;
}

export function validateEstimateCost(raw: EstimateCostInput, now: Date): CostEstimateQuery {
  const v = new Violations();
  const q = {
    accountId: checkId(v, 'account_id', raw.accountId ?? '', false),
    provider: checkProvider(v, 'provider', raw.provider),
    model: checkModel(v, 'model', raw.model),
    chargeType: checkEnum(v, 'charge_type', raw.chargeType, CHARGE_TYPE_BY_NUMBER) ?? 'completion',
    ...checkBilledUsage(v, raw),
    callCount: checkInt(v, 'call_count', raw.callCount, 0, MAX_CALLS),
    at: checkTimestamp(v, 'at', raw.at, now),
  };
  v.done();
  return q;
}

export type RerateMode = 'unpriced_only' | 'all';
const RERATE_MODE_BY_NUMBER: Record<number, RerateMode> = { 1: 'unpriced_only', 2: 'all' };

export interface RerateQuery {
  accountId: string;
  startDate: string;
  endDate: string;
  mode: RerateMode;
  provider?: string;
  model?: string;
  dryRun: boolean;
}

export function validateRerate(raw: { accountId: string; startDate: string; endDate: string; mode: number; provider: string; model: string; dryRun: boolean }): RerateQuery {
  const v = new Violations();
  const accountId = checkId(v, 'account_id', raw.accountId);
  checkDateRange(v, raw.startDate, raw.endDate);
  const q = {
    accountId,
    startDate: raw.startDate,
    endDate: raw.endDate,
    mode: checkEnum(v, 'mode', raw.mode, RERATE_MODE_BY_NUMBER) ?? 'unpriced_only',
    provider: checkProvider(v, 'provider', raw.provider, false) || undefined,
    model: checkModel(v, 'model', raw.model, false) || undefined,
    dryRun: raw.dryRun === true,
  };
  v.done();
  return q;
}

export interface ChangeListQuery {
  accountId: string;
  pageSize: number;
  /** List changes with a smaller id than this (from the page token). */
  beforeId?: bigint;
}

export function encodeChangePageToken(q: ChangeListQuery, lastId: bigint): string {
  return encodePageToken(q.accountId, lastId.toString());
}

export function validateListPricingChanges(raw: { accountId: string; pageSize: number; pageToken: string }): ChangeListQuery {
  const v = new Violations();
  const accountId = checkId(v, 'account_id', raw.accountId ?? '', false);
  const pageSize = raw.pageSize === 0 ? 100 : checkInt(v, 'page_size', raw.pageSize, 1, 1000);
  const lastId = decodePageToken(v, raw.pageToken ?? '', accountId, (k) => (typeof k === 'string' && /^\d{1,19}$/.test(k) ? k : undefined));
  const beforeId = lastId === undefined ? undefined : BigInt(lastId);
  v.done();
  return { accountId, pageSize, beforeId };
}

import { ChargeType, CHARGE_TYPE_BY_NUMBER } from './charge';
import { DomainError } from './errors';
import { combineSums, type DimensionDelta } from './ledger';
import { decodePageToken, encodePageToken } from './page-token';
import { Tags, tagKeyProblem, tagValueProblem } from './tags';
import { DEFAULT_TIME_ZONE } from './time';
import { checkDateRange, DEFAULT_PAGE_SIZE, MAX_PAGE_SIZE } from './usage';
import { checkEnum, checkId, checkInt, checkModel, checkProvider, Violations } from './validation';

/**
 * Dimensions (issue 20): an account declares which tag keys its usage is
 * rolled up by, besides user, provider, model, charge type and the API key.
 * A charge of an account with declared dimensions is also summed in
 * dimension_usage, keyed by its local day and hour and those values; a
 * charge records which values it was summed under (`ChargeRecord.dimensions`),
 * so re-rating moves that same row, whatever is declared by then.
 */

/** At most this many declared tag keys per account. */
export const MAX_DIMENSIONS = 5;

/**
 * Distinct values per declared dimension per account per local day: the
 * default, and the range an account may set (SetDimensions'
 * max_values_per_day). A charge whose declared tag would add a value past
 * the day's limit is refused (DimensionValuesExhaustedError).
 */
export const DEFAULT_MAX_VALUES_PER_DAY = 1000;
export const MAX_MAX_VALUES_PER_DAY = 10_000;

/** An account's declared dimensions. */
export interface DimensionSettings {
  accountId: string;
  /** Tag keys, sorted, distinct. */
  tagKeys: string[];
  /** Distinct values each declared tag key may take per local day (1 to MAX_MAX_VALUES_PER_DAY); absent: DEFAULT_MAX_VALUES_PER_DAY. */
  maxValuesPerDay?: number;
  updateTime?: Date;
}

export function validateSetDimensions(raw: { accountId: string; tagKeys: string[]; maxValuesPerDay?: number }): DimensionSettings {
  const v = new Violations();
  const accountId = checkId(v, 'account_id', raw.accountId);
  const keys = raw.tagKeys ?? [];
  const maxValuesPerDay = raw.maxValuesPerDay === undefined || raw.maxValuesPerDay === 0 ? DEFAULT_MAX_VALUES_PER_DAY : checkInt(v, 'max_values_per_day', raw.maxValuesPerDay, 1, MAX_MAX_VALUES_PER_DAY);
  if (keys.length > MAX_DIMENSIONS) v.add('tag_keys', `at most ${MAX_DIMENSIONS} tag keys, got ${keys.length}`);
  else {
    keys.forEach((k, n) => {
      const problem = tagKeyProblem(k);
      if (problem) v.add(`tag_keys[${n}]`, problem);
      else if (keys.indexOf(k) !== n) v.add(`tag_keys[${n}]`, `repeats "${k}"`);
    });
  }
  v.done();
  return { accountId, tagKeys: [...keys].sort(), maxValuesPerDay };
}

/** A change to one row of the day-level dimension rollup (dimension_usage_daily): a dimension row without its hour. */
export type DimensionDayDelta = Omit<DimensionDelta, 'hour'>;

const DAY_SEP = '\u0000';
const dimensionDayId = (d: DimensionDayDelta) =>
  [d.accountId, d.usageDate, d.userId, d.provider, d.model, d.chargeType, d.apiKeyId, JSON.stringify(Object.entries(d.dims).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))].join(DAY_SEP);

/**
 * The day-level rollup's changes of a write: its hourly dimension entries
 * summed over the hours of each day, in key order (their lock order). Day,
 * month and whole-range queries read these rows, a day's worth of hours
 * fewer, so their cost follows the number of distinct keys, not of charges.
 */
export function dimensionDaysOf(hourly: readonly DimensionDelta[]): DimensionDayDelta[] {
  const days = new Map<string, DimensionDayDelta>();
  for (const { hour: _hour, ...d } of hourly) {
    const id = dimensionDayId(d);
    const before = days.get(id);
    days.set(id, before ? { ...before, sums: combineSums(before.sums, d.sums, 1n) } : d);
  }
  return [...days.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, d]) => d);
}

// ---- Cardinality: distinct values per declared dimension per local day ----

/** One (account, local day, declared tag key) and the values a write asks to add to its set, in charge order, distinct, at most `limit`. */
export interface DimensionValuesWanted {
  accountId: string;
  usageDate: string;
  tagKey: string;
  limit: number;
  values: string[];
}

/** A value the store did not admit: its dimension already had `limit` distinct values that day. */
export interface DimensionValueRefusal {
  accountId: string;
  usageDate: string;
  tagKey: string;
  limit: number;
  value: string;
}

const SEP = '\u0000';
/** The identity of one admitted value (for a process's set of values known to be admitted). */
export const dimensionValueId = (accountId: string, usageDate: string, tagKey: string, value: string): string => [accountId, usageDate, tagKey, value].join(SEP);

/**
 * The values a batch of charges asks to admit: each declared tag value of
 * each charge that `known` does not know as admitted already, grouped by
 * (account, day, key) in key order (the order their rows are locked in).
 * More than `limit` values of one group can never all be admitted, and the
 * first `limit` of them always contain as many new values as there is room
 * for, so each group is cut at its limit.
 */
export function dimensionValuesWanted(
  charges: ReadonlyArray<{ accountId: string; usageDate: string; dimensions?: Tags | null }>,
  limitOf: (accountId: string) => number,
  known: (id: string) => boolean,
): DimensionValuesWanted[] {
  const groups = new Map<string, DimensionValuesWanted>();
  for (const c of charges) {
    for (const [tagKey, value] of Object.entries(c.dimensions ?? {})) {
      if (known(dimensionValueId(c.accountId, c.usageDate, tagKey, value))) continue;
      const id = [c.accountId, c.usageDate, tagKey].join(SEP);
      let g = groups.get(id);
      if (!g) groups.set(id, (g = { accountId: c.accountId, usageDate: c.usageDate, tagKey, limit: limitOf(c.accountId), values: [] }));
      if (g.values.length < g.limit && !g.values.includes(value)) g.values.push(value);
    }
  }
  return [...groups.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, g]) => g);
}

/**
 * A charge refused because one of its declared tags would add a value past
 * the day's limit of distinct values of that dimension. Nothing was written
 * for it; google.rpc.QuotaFailure names the dimension.
 */
export class DimensionValuesExhaustedError extends DomainError {
  readonly violations: Array<{ subject: string; description: string }>;

  constructor(r: DimensionValueRefusal) {
    const field = `tags["${r.tagKey}"]`;
    const description = `the declared dimension "${r.tagKey}" already has ${r.limit} distinct values on ${r.usageDate} (max_values_per_day ${r.limit}); a new value is refused until the next local day`;
    super('RESOURCE_EXHAUSTED', 'DIMENSION_VALUES_EXHAUSTED', `${field}: ${description}; nothing was written`, {
      field,
      tag_key: r.tagKey,
      usage_date: r.usageDate,
      max_values_per_day: String(r.limit),
    });
    this.violations = [{ subject: `account:${r.accountId}/day:${r.usageDate}/${field}`, description }];
  }
}

/** The refusal that applies to a charge (the first of its declared tags refused), if any. */
export function refusalOf(c: { accountId: string; usageDate: string; dimensions?: Tags | null }, refusals: readonly DimensionValueRefusal[]): DimensionValueRefusal | undefined {
  if (!c.dimensions || refusals.length === 0) return undefined;
  return refusals.find((r) => r.accountId === c.accountId && r.usageDate === c.usageDate && c.dimensions?.[r.tagKey] === r.value);
}

/** The values a charge with these tags is summed under, for the declared keys (absent tags are left out). */
export function dimensionValues(tags: Tags, declared: readonly string[]): Tags {
  const out: Tags = {};
  for (const k of declared) if (tags[k] !== undefined) out[k] = tags[k];
  return out;
}

const hourFormatters = new Map<string, Intl.DateTimeFormat>();

/** The local hour (0 to 23) of a moment in a time zone. */
export function localHour(at: Date, timeZone: string): number {
  if (timeZone === DEFAULT_TIME_ZONE) return at.getUTCHours();
  let f = hourFormatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, hour: '2-digit', hourCycle: 'h23' });
    hourFormatters.set(timeZone, f);
  }
  return Number(f.formatToParts(at).find((p) => p.type === 'hour')?.value ?? 0);
}

/**
 * The local hour a charge counts in, within its usage day: the hour of its
 * usage time, or, when the charge counts on another day than its usage time's
 * (it settled a reservation made on an earlier day), that day's first hour.
 */
export function rollupHour(usageTime: Date, usageDate: string, localDayOfUsage: string, timeZone: string): number {
  return localDayOfUsage === usageDate ? localHour(usageTime, timeZone) : 0;
}

// ---- QueryUsage ----

export type UsageGroupField = 'user' | 'provider' | 'model' | 'charge_type' | 'api_key';
export const USAGE_GROUP_BY_NUMBER: Record<number, UsageGroupField> = { 1: 'user', 2: 'provider', 3: 'model', 4: 'charge_type', 5: 'api_key' };
export type UsageGranularity = 'hour' | 'day' | 'month' | 'range';
export const USAGE_GRANULARITY_BY_NUMBER: Record<number, UsageGranularity> = { 1: 'hour', 2: 'day', 3: 'month' };

export interface UsageQueryInput {
  accountId: string;
  startDate: string;
  endDate: string;
  groupBy: number[];
  groupByTags: string[];
  granularity: number;
  userId: string;
  provider: string;
  model: string;
  chargeType: number;
  apiKeyId: string;
  tagFilters: Record<string, string>;
  pageSize: number;
  pageToken: string;
}

export interface UsageQuery {
  accountId: string;
  startDate: string;
  endDate: string;
  /** In the order of USAGE_GROUP_BY_NUMBER, distinct. */
  groupBy: UsageGroupField[];
  /** Sorted, distinct, declared. */
  groupByTags: string[];
  granularity: UsageGranularity;
  userId?: string;
  provider?: string;
  model?: string;
  chargeType?: ChargeType;
  apiKeyId?: string;
  tagFilters: Tags;
  pageSize: number;
  /** The key of the last group of the previous page: period then grouped values, as strings. */
  after?: string[];
}

/**
 * The rollup that answers a query. daily_usage holds every charge by local day, user, provider,
 * model and charge type, so a query that groups and filters by nothing else, per day, month or
 * the whole range, reads it ('daily'). A query by hour, API key or declared tags reads the
 * dimension rollups, hourly or summed per day, which hold the charges of an account from the
 * declaration of its dimensions on.
 */
export type UsageRollup = 'daily' | 'dimension_hour' | 'dimension_day';

export function usageRollupOf(q: UsageQuery): UsageRollup {
  if (q.granularity === 'hour') return 'dimension_hour';
  const byKeyOrTags = q.groupBy.includes('api_key') || q.apiKeyId !== undefined || q.groupByTags.length > 0 || Object.keys(q.tagFilters).length > 0;
  return byKeyOrTags ? 'dimension_day' : 'daily';
}

/**
 * A query the dimension rollups answer (usageRollupOf), for an account that never declared
 * dimensions: nothing was summed there, so an answer would be empty, not its usage.
 */
export class DimensionsNotDeclaredError extends DomainError {
  constructor(accountId: string, field: 'granularity' | 'group_by' | 'api_key_id') {
    const what = field === 'granularity' ? 'per hour' : 'by API key';
    super(
      'FAILED_PRECONDITION',
      'DIMENSIONS_NOT_DECLARED',
      `${field}: account ${accountId} has no declared dimensions, and usage ${what} is summed only for accounts that declared them (SetDimensions, even with no tag keys), from then on; without them QueryUsage groups and filters by user, provider, model and charge type, per day, month or the whole range`,
      { field, account_id: accountId },
    );
  }
}

/** The field of a query that needs the dimension rollups (for DimensionsNotDeclaredError). */
export const dimensionFieldOf = (q: UsageQuery): 'granularity' | 'group_by' | 'api_key_id' =>
  q.granularity === 'hour' ? 'granularity' : q.groupBy.includes('api_key') ? 'group_by' : 'api_key_id';

/** One group of a QueryUsage answer: the period and the grouped values (absent when not grouped). */
export interface UsageGroupKey {
  period: string;
  userId?: string;
  provider?: string;
  model?: string;
  chargeType?: ChargeType;
  apiKeyId?: string;
  tags: Tags;
}

const API_KEY_ID = /^k_[0-9a-f]{12}$/;

/** The fields a page token is bound to. */
function fingerprint(q: Omit<UsageQuery, 'after' | 'pageSize'>): unknown {
  return [q.accountId, q.startDate, q.endDate, q.groupBy, q.groupByTags, q.granularity, q.userId ?? '', q.provider ?? '', q.model ?? '', q.chargeType ?? '', q.apiKeyId ?? '', q.tagFilters];
}

/** How many values a group's key has: the period, each grouped field, each grouped tag. */
export const groupKeyLength = (q: Pick<UsageQuery, 'groupBy' | 'groupByTags'>) => 1 + q.groupBy.length + q.groupByTags.length;

/** A group's key as strings, in the order the store sorts groups. */
export function groupKeyOf(q: Pick<UsageQuery, 'groupBy' | 'groupByTags'>, g: UsageGroupKey): string[] {
  const field: Record<UsageGroupField, string | undefined> = { user: g.userId, provider: g.provider, model: g.model, charge_type: g.chargeType, api_key: g.apiKeyId };
  return [g.period, ...q.groupBy.map((f) => field[f] ?? ''), ...q.groupByTags.map((t) => g.tags[t] ?? '')];
}

export function encodeUsageQueryPageToken(q: UsageQuery, last: UsageGroupKey): string {
  return encodePageToken(fingerprint(q), groupKeyOf(q, last));
}

/**
 * Validates a QueryUsage request against the account's declared tag keys
 * (`declared`: undefined when it never declared dimensions); throws
 * ValidationError naming every bad field.
 */
export function validateUsageQuery(raw: UsageQueryInput, declared: readonly string[] | undefined): UsageQuery {
  const v = new Violations();
  const accountId = checkId(v, 'account_id', raw.accountId);
  checkDateRange(v, raw.startDate, raw.endDate);
  const groupBy: UsageGroupField[] = [];
  (raw.groupBy ?? []).forEach((n, i) => {
    const f = checkEnum(v, `group_by[${i}]`, n, USAGE_GROUP_BY_NUMBER);
    if (n === 0) v.add(`group_by[${i}]`, 'must not be UNSPECIFIED');
    else if (f && groupBy.includes(f)) v.add(`group_by[${i}]`, 'repeats a field');
    else if (f) groupBy.push(f);
  });
  groupBy.sort((a, b) => Object.values(USAGE_GROUP_BY_NUMBER).indexOf(a) - Object.values(USAGE_GROUP_BY_NUMBER).indexOf(b));
  const notDeclared = (k: string) =>
    declared === undefined ? 'the account has no declared dimensions (SetDimensions)' : declared.includes(k) ? undefined : `"${k}" is not a declared dimension of the account (declared: ${declared.join(', ') || 'none'})`;
  const tagKeys = raw.groupByTags ?? [];
  if (tagKeys.length > MAX_DIMENSIONS) v.add('group_by_tags', `at most ${MAX_DIMENSIONS} tag keys`);
  else {
    tagKeys.forEach((k, i) => {
      const problem = tagKeyProblem(k) ?? notDeclared(k);
      if (problem) v.add(`group_by_tags[${i}]`, problem);
      else if (tagKeys.indexOf(k) !== i) v.add(`group_by_tags[${i}]`, `repeats "${k}"`);
    });
  }
  const filters = Object.entries(raw.tagFilters ?? {});
  const tagFilters: Tags = {};
  if (filters.length > MAX_DIMENSIONS) v.add('tag_filters', `at most ${MAX_DIMENSIONS} tags`);
  else {
    for (const [k, value] of filters.sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0))) {
      const keyProblem = tagKeyProblem(k);
      if (keyProblem) {
        v.add('tag_filters', keyProblem);
        continue;
      }
      const problem = notDeclared(k) ?? tagValueProblem(value);
      if (problem) v.add(`tag_filters[${k}]`, problem);
      else tagFilters[k] = value;
    }
  }
  if (raw.apiKeyId && !API_KEY_ID.test(raw.apiKeyId)) v.add('api_key_id', 'must be a key id such as "k_3f9a1c0d2b7e"');
  const q: Omit<UsageQuery, 'after' | 'pageSize'> = {
    accountId,
    startDate: raw.startDate,
    endDate: raw.endDate,
    groupBy,
    groupByTags: [...new Set(tagKeys)].sort(),
    granularity: raw.granularity === 0 ? 'range' : checkEnum(v, 'granularity', raw.granularity, USAGE_GRANULARITY_BY_NUMBER) ?? 'range',
    userId: checkId(v, 'user_id', raw.userId ?? '', false) || undefined,
    provider: checkProvider(v, 'provider', raw.provider ?? '', false) || undefined,
    model: checkModel(v, 'model', raw.model ?? '', false) || undefined,
    chargeType: checkEnum(v, 'charge_type', raw.chargeType ?? 0, CHARGE_TYPE_BY_NUMBER),
    apiKeyId: raw.apiKeyId || undefined,
    tagFilters,
  };
  const pageSize = raw.pageSize === 0 ? DEFAULT_PAGE_SIZE : checkInt(v, 'page_size', raw.pageSize, 1, MAX_PAGE_SIZE);
  const length = groupKeyLength(q);
  const after = decodePageToken(v, raw.pageToken ?? '', fingerprint(q), (k) => (Array.isArray(k) && k.length === length && k.every((x) => typeof x === 'string') ? (k as string[]) : undefined));
  v.done();
  return { ...q, pageSize, after };
}

import { ChargeType, CHARGE_TYPE_BY_NUMBER } from './charge';
import { decodePageToken, encodePageToken, stringTuple } from './page-token';
import { checkTimeZone } from './time';
import { checkEnum, checkId, checkInt, checkModel, checkProvider, Violations } from './validation';

/** The longest date range one GetDailyUsage may read, in days (inclusive). */
export const MAX_USAGE_RANGE_DAYS = 366;
export const DEFAULT_PAGE_SIZE = 100;
export const MAX_PAGE_SIZE = 1000;

/** The key of one daily rollup row (the Django models' DailyBillingRecord, with model and charge type added). */
export interface RollupKey {
  usageDate: string;
  userId: string;
  provider: string;
  model: string;
  chargeType: ChargeType;
}

export interface DailyUsageRequestInput {
  accountId: string;
  startDate: string;
  endDate: string;
  userId: string;
  provider: string;
  model: string;
  chargeType: number;
  pageSize: number;
  pageToken: string;
  /** Days in this IANA zone instead of the account's (empty: the account's). */
  timeZone?: string;
}

export interface DailyUsageQuery {
  accountId: string;
  startDate: string;
  endDate: string;
  userId?: string;
  provider?: string;
  model?: string;
  chargeType?: ChargeType;
  /** Days in this zone, summed from the charges; undefined: the account's days (the rollups). */
  timeZone?: string;
  pageSize: number;
  /** Resume after this key (from the page token). */
  after?: RollupKey;
}

const DAY = /^(\d{4})-(\d{2})-(\d{2})$/;

/** Parses a strict YYYY-MM-DD calendar date; undefined for "2025-02-30", "2025-1-1" and the like. */
export function parseDay(text: string): Date | undefined {
  const m = DAY.exec(text);
  if (!m) return undefined;
  const d = new Date(Date.UTC(Number(m[1]), Number(m[2]) - 1, Number(m[3])));
  return d.toISOString().slice(0, 10) === text && Number(m[1]) >= 1970 && Number(m[1]) <= 9999 ? d : undefined;
}

function checkDay(v: Violations, field: string, text: string): Date | undefined {
  if (text === '') {
    v.add(field, 'is required (YYYY-MM-DD)');
    return undefined;
  }
  const d = parseDay(text);
  if (!d) v.add(field, 'must be a calendar date YYYY-MM-DD');
  return d;
}

/** An inclusive range of calendar days (start_date, end_date) of at most MAX_USAGE_RANGE_DAYS. */
export function checkDateRange(v: Violations, startDate: string, endDate: string): void {
  const start = checkDay(v, 'start_date', startDate);
  const end = checkDay(v, 'end_date', endDate);
  if (start && end) {
    const days = (end.getTime() - start.getTime()) / 86_400_000 + 1;
    if (days < 1) v.add('end_date', 'must not be before start_date');
    else if (days > MAX_USAGE_RANGE_DAYS) v.add('end_date', `must be at most ${MAX_USAGE_RANGE_DAYS} days after start_date (inclusive)`);
  }
}

/** The filters a page token is bound to: a token is only valid for the same query. */
function filterFingerprint(q: Omit<DailyUsageQuery, 'after' | 'pageSize'>): string {
  return [q.accountId, q.startDate, q.endDate, q.userId ?? '', q.provider ?? '', q.model ?? '', q.chargeType ?? '', q.timeZone ?? ''].join('\u0001');
}

export function encodeUsagePageToken(q: DailyUsageQuery, last: RollupKey): string {
  return encodePageToken(filterFingerprint(q), [last.usageDate, last.userId, last.provider, last.model, last.chargeType]);
}

function rollupKey(key: unknown): RollupKey | undefined {
  const k = stringTuple(key, 5);
  if (!k || !parseDay(k[0]) || !Object.values(CHARGE_TYPE_BY_NUMBER).includes(k[4] as ChargeType)) return undefined;
  return { usageDate: k[0], userId: k[1], provider: k[2], model: k[3], chargeType: k[4] as ChargeType };
}

/** Validates a GetDailyUsage request; throws ValidationError naming every bad field. */
export function validateDailyUsageQuery(raw: DailyUsageRequestInput): DailyUsageQuery {
  const v = new Violations();
  const accountId = checkId(v, 'account_id', raw.accountId);
  checkDateRange(v, raw.startDate, raw.endDate);
  const filters = {
    accountId,
    startDate: raw.startDate,
    endDate: raw.endDate,
    userId: checkId(v, 'user_id', raw.userId, false) || undefined,
    provider: checkProvider(v, 'provider', raw.provider, false) || undefined,
    model: checkModel(v, 'model', raw.model, false) || undefined,
    chargeType: checkEnum(v, 'charge_type', raw.chargeType, CHARGE_TYPE_BY_NUMBER),
    timeZone: raw.timeZone ? checkTimeZone(v, 'time_zone', raw.timeZone) : undefined,
  };
  const pageSize = raw.pageSize === 0 ? DEFAULT_PAGE_SIZE : checkInt(v, 'page_size', raw.pageSize, 1, MAX_PAGE_SIZE);
  const after = decodePageToken(v, raw.pageToken, filterFingerprint(filters), rollupKey);
  v.done();
  return { ...filters, pageSize, after };
}

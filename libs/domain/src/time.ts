import type { Dec } from '@metering/pricing';
import { decodePageToken, encodePageToken } from './page-token';
import { checkId, checkInt, MAX_ID_LENGTH, Violations } from './validation';

/**
 * Account-local calendar days. An account's days and months follow its IANA
 * time zone (UTC unless set): the usage_date of its charges, its rollups and
 * its limit periods. Dates are 'YYYY-MM-DD' strings throughout.
 */

export const DEFAULT_TIME_ZONE = 'UTC';

const formatters = new Map<string, Intl.DateTimeFormat>();

function formatter(timeZone: string): Intl.DateTimeFormat {
  let f = formatters.get(timeZone);
  if (!f) {
    f = new Intl.DateTimeFormat('en-US', { timeZone, year: 'numeric', month: '2-digit', day: '2-digit', hourCycle: 'h23' });
    formatters.set(timeZone, f);
  }
  return f;
}

/** The last UTC day localDay made, with its bounds (hot paths ask for the same day many times a second). */
let utcDay = { start: 0, end: 0, day: '' };

/** The calendar day of a moment in a time zone, YYYY-MM-DD. */
export function localDay(at: Date, timeZone: string): string {
  if (timeZone === DEFAULT_TIME_ZONE) {
    const t = at.getTime();
    if (t >= utcDay.start && t < utcDay.end) return utcDay.day;
    const day = at.toISOString().slice(0, 10);
    const start = Date.parse(`${day}T00:00:00Z`);
    utcDay = { start, end: start + 86_400_000, day };
    return day;
  }
  const parts = Object.fromEntries(formatter(timeZone).formatToParts(at).map((p) => [p.type, p.value]));
  return `${parts.year}-${parts.month}-${parts.day}`;
}

/** The first day of the month of a day. */
export function monthStart(day: string): string {
  return `${day.slice(0, 8)}01`;
}

/** The day before and after a day (every zone's current day is within one day of UTC's). */
export function neighbourDays(day: string): string[] {
  const t = Date.parse(`${day}T00:00:00Z`);
  return [t - 86_400_000, t, t + 86_400_000].map((ms) => new Date(ms).toISOString().slice(0, 10));
}

const ZONE_NAME = /^[A-Za-z][A-Za-z0-9_+-]*(\/[A-Za-z0-9_+-]+)*$/;

/** An IANA time zone name the runtime knows (e.g. "Europe/Berlin", "UTC"); fixed offsets like "+02:00" are not zones. */
export function checkTimeZone(v: Violations, field: string, value: string): string {
  if (value === '') {
    v.add(field, 'is required (an IANA time zone such as "America/New_York", or "UTC")');
    return DEFAULT_TIME_ZONE;
  }
  if (value.length > 64 || !ZONE_NAME.test(value)) {
    v.add(field, 'must be an IANA time zone name such as "America/New_York"');
    return DEFAULT_TIME_ZONE;
  }
  try {
    formatter(value);
    return value;
  } catch {
    v.add(field, `unknown time zone "${value}"`);
    return DEFAULT_TIME_ZONE;
  }
}

export interface Account {
  accountId: string;
  timeZone: string;
  updateTime?: Date;
}

export function validateSetAccount(raw: { accountId: string; timeZone: string }): Account {
  const v = new Violations();
  const account = { accountId: checkId(v, 'account_id', raw.accountId), timeZone: checkTimeZone(v, 'time_zone', raw.timeZone) };
  v.done();
  return account;
}

export function validateAccountId(raw: { accountId: string }): string {
  const v = new Violations();
  const accountId = checkId(v, 'account_id', raw.accountId);
  v.done();
  return accountId;
}

/** An account in the operator's list: its settings and its month to date (account-wide counters). */
export interface AccountSummary {
  account: Account;
  monthStart: string;
  monthMessageCount: bigint;
  monthUnpricedMessageCount: bigint;
  monthCost: Dec;
}

export interface ListAccountsQuery {
  accountIdPrefix: string;
  pageSize: number;
  /** List accounts after this id (from the page token). */
  after?: string;
}

export function encodeAccountPageToken(q: ListAccountsQuery, lastAccountId: string): string {
  return encodePageToken(q.accountIdPrefix, lastAccountId);
}

export function validateListAccounts(raw: { accountIdPrefix: string; pageSize: number; pageToken: string }): ListAccountsQuery {
  const v = new Violations();
  const accountIdPrefix = checkId(v, 'account_id_prefix', raw.accountIdPrefix, false);
  const pageSize = raw.pageSize === 0 ? 100 : checkInt(v, 'page_size', raw.pageSize, 1, 1000);
  const after = decodePageToken(v, raw.pageToken, accountIdPrefix, (k) => (typeof k === 'string' && k.length <= MAX_ID_LENGTH ? k : undefined));
  v.done();
  return { accountIdPrefix, pageSize, after };
}

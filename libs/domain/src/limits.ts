import { CURRENCY_CODE, Dec, formatDecimal, parseDecimal } from '@metering/pricing';
import { BilledCounts, BilledUsageInput, checkBilledUsage, MAX_CALLS } from './billed-usage';
import { CHARGE_TYPE_BY_NUMBER, ChargeType } from './charge';
import { monthStart } from './time';
import { checkTags, tagKeyProblem, Tags, tagValueProblem } from './tags';
import { decodePageToken, encodePageToken, stringTuple } from './page-token';
import { checkEnum, checkId, checkInt, checkModel, checkProvider, checkText, MAX_KEY_LENGTH, Violations } from './validation';

export type LimitMeasure = 'messages' | 'tokens' | 'cost';
export type LimitScope = 'account' | 'user' | 'api_key' | 'tag';
/** A calendar period of the account's time zone: what usage_counters count by. */
export type LimitPeriod = 'day' | 'month';
/** A limit's period: a calendar one, or a rolling window of whole hours (issue 20; Limit.windowHours). */
export type LimitSpan = LimitPeriod | 'rolling';
export type LimitEnforcement = 'hard' | 'soft';

/** Enum numbers of the contract (proto/metering/v1/limits.proto) to domain names. */
export const LIMIT_PERIOD_BY_NUMBER: Record<number, LimitPeriod> = { 1: 'day', 2: 'month' };
/** A limit's period (LimitPeriod of the contract, ROLLING = 3 included). */
export const LIMIT_SPAN_BY_NUMBER: Record<number, LimitSpan> = { 1: 'day', 2: 'month', 3: 'rolling' };
/** The longest rolling window: 31 days. */
export const MAX_WINDOW_HOURS = 744;
const HOUR_MS = 3_600_000;

/** The start of the UTC hour that contains a moment (rolling windows count whole hours). */
export const hourStartOf = (at: Date): Date => new Date(Math.floor(at.getTime() / HOUR_MS) * HOUR_MS);

/** The first hour of a rolling window of `windowHours` hours that ends with the hour of `now` (included). */
export const windowStartOf = (now: Date, windowHours: number): Date => new Date(hourStartOf(now).getTime() - (windowHours - 1) * HOUR_MS);

/**
 * The first usage hour kept for an account that starts keeping hours at `now` (its first rolling
 * limit): the first hour the longest window can read from then on, and one hour before it, for
 * servers whose clocks are a little apart. Hours are kept only for such accounts (the store's
 * hour_tracking): a window never reads an hour before this one.
 */
export const hoursKeptFrom = (now: Date): Date => windowStartOf(now, MAX_WINDOW_HOURS + 1);

/** One hour of a scope's usage (hourly_counters): what rolling windows sum. */
export interface HourUsage {
  hourStart: Date;
  used: UsageCounter;
  reserved: UsageCounter;
}
export const LIMIT_MEASURE_BY_NUMBER: Record<number, LimitMeasure> = { 1: 'messages', 2: 'tokens', 3: 'cost' };
export const LIMIT_ENFORCEMENT_BY_NUMBER: Record<number, LimitEnforcement> = { 1: 'hard', 2: 'soft' };

export const MAX_MESSAGE_LIMIT = 1_000_000_000_000;
export const MAX_TOKEN_LIMIT = 1_000_000_000_000_000;
export const MAX_COST_LIMIT = new Dec('1000000000000');

/** The daily limits of one scope; an absent measure has no limit. */
export interface DailyLimits {
  accountId: string;
  /** '' for the account-wide limits. */
  userId: string;
  messages?: bigint;
  tokens?: bigint;
  cost?: Dec;
  updateTime?: Date;
}

/**
 * The scopes besides the account and its users (issue 20): an API key, or a
 * tag value of a declared dimension. Stored in one column (limits.scope,
 * usage_counters.scope) next to user_id, which is '' for them:
 * '' for the account and its users, `api_key:<key id>`, `tag:<key>=<value>`
 * (a tag key has no '=', so the value is everything after the first '=').
 */
export const apiKeyScope = (apiKeyId: string): string => `api_key:${apiKeyId}`;
export const tagScope = (key: string, value: string): string => `tag:${key}=${value}`;

/** What a scope column names: an API key, a tag, or neither (the account or a user). */
export function parseScope(scope: string | undefined): { apiKeyId?: string; tagKey?: string; tagValue?: string } {
  if (!scope) return {};
  if (scope.startsWith('api_key:')) return { apiKeyId: scope.slice('api_key:'.length) };
  const eq = scope.indexOf('=');
  return { tagKey: scope.slice('tag:'.length, eq), tagValue: scope.slice(eq + 1) };
}

/** The scope kind of a limit or counter. */
export const scopeKind = (userId: string, scope: string | undefined): LimitScope =>
  scope ? (scope.startsWith('api_key:') ? 'api_key' : 'tag') : userId === '' ? 'account' : 'user';

/**
 * The counter scopes (besides the account's and the user's) that usage with
 * this API key and these declared tag values moves: the key's (when there is
 * one) and each declared tag value's, in order.
 */
export function extraScopesOf(apiKeyId: string | undefined, dimensions: Tags | null | undefined): string[] {
  const out = apiKeyId ? [apiKeyScope(apiKeyId)] : [];
  for (const [k, v] of Object.entries(dimensions ?? {})) out.push(tagScope(k, v));
  return out;
}

/** One limit of a scope (user_id '' = the whole account; scope: an API key or a tag value, see apiKeyScope). */
export interface Limit {
  accountId: string;
  userId: string;
  /** '' (or absent) for the account and its users; apiKeyScope / tagScope otherwise (user_id is then ''). */
  scope?: string;
  period: LimitSpan;
  /** With period 'rolling': the window, 1 to MAX_WINDOW_HOURS whole hours (the current hour included). */
  windowHours?: number;
  measure: LimitMeasure;
  /** An integer for messages and tokens, USD for cost. */
  amount: Dec;
  enforcement: LimitEnforcement;
  updateTime?: Date;
}

export type LimitKey = Pick<Limit, 'accountId' | 'userId' | 'scope' | 'period' | 'measure' | 'enforcement'>;

/** Counters of one scope and period. */
export interface UsageCounter {
  messageCount: bigint;
  totalTokens: bigint;
  totalCost: Dec;
}

export const ZERO_USAGE: UsageCounter = { messageCount: 0n, totalTokens: 0n, totalCost: new Dec(0) };

/** A scope's counters of one period: what recorded charges used, and what open reservations hold. */
export interface PeriodUsage {
  /** YYYY-MM-DD; for a rolling window, its first hour (RFC 3339). */
  periodStart: string;
  used: UsageCounter;
  reserved: UsageCounter;
  /** A rolling window's hours with usage, oldest first (to tell when enough ages out). */
  hours?: HourUsage[];
}

/** A rolling window's usage from a scope's hourly rows: the sums of the hours from windowStartOf(now) on. */
export function windowUsage(rows: HourUsage[], now: Date, windowHours: number): PeriodUsage {
  const from = windowStartOf(now, windowHours).getTime();
  const hours = rows.filter((h) => h.hourStart.getTime() >= from && h.hourStart.getTime() <= now.getTime()).sort((a, b) => a.hourStart.getTime() - b.hourStart.getTime());
  const sum = (pick: (h: HourUsage) => UsageCounter): UsageCounter =>
    hours.reduce((a, h) => ({ messageCount: a.messageCount + pick(h).messageCount, totalTokens: a.totalTokens + pick(h).totalTokens, totalCost: a.totalCost.plus(pick(h).totalCost) }), ZERO_USAGE);
  return { periodStart: new Date(from).toISOString(), used: sum((h) => h.used), reserved: sum((h) => h.reserved), hours };
}

/** The first day of the period that contains a (local) day. */
export function periodStartOf(period: LimitPeriod, day: string): string;
/** A rolling window has no calendar start: its usage comes from hourly counters (windowUsage). */
export function periodStartOf(period: LimitSpan, day: string): string;
export function periodStartOf(period: LimitSpan, day: string): string {
  return period === 'month' ? monthStart(day) : day;
}

export interface MoneyInput {
  amount: string;
  currencyCode: string;
}

function checkMoney(v: Violations, field: string, money: MoneyInput | undefined, max: Dec): Dec | undefined {
  if (money === undefined) return undefined;
  if (money.currencyCode !== CURRENCY_CODE) v.add(`${field}.currency_code`, `must be "${CURRENCY_CODE}"`);
  const amount = parseDecimal(money.amount, 40);
  if (amount === undefined) {
    v.add(`${field}.amount`, 'must be a plain decimal string such as "12.50"');
    return undefined;
  }
  if (amount.isNegative() || amount.greaterThan(max)) {
    v.add(`${field}.amount`, `must be between 0 and ${formatDecimal(max)}`);
    return undefined;
  }
  return amount;
}

export interface SetLimitsRequestInput {
  accountId: string;
  userId: string;
  dailyMessageLimit?: string;
  dailyTokenLimit?: string;
  dailyCostLimit?: MoneyInput;
}

/** Validates new limits for a scope (replacing the old ones: an absent limit is removed). */
export function validateSetLimits(raw: SetLimitsRequestInput): DailyLimits {
  const v = new Violations();
  const limits: DailyLimits = {
    accountId: checkId(v, 'account_id', raw.accountId),
    userId: checkId(v, 'user_id', raw.userId, false),
  };
  if (raw.dailyMessageLimit !== undefined) limits.messages = BigInt(checkInt(v, 'daily_message_limit', raw.dailyMessageLimit, 0, MAX_MESSAGE_LIMIT));
  if (raw.dailyTokenLimit !== undefined) limits.tokens = BigInt(checkInt(v, 'daily_token_limit', raw.dailyTokenLimit, 0, MAX_TOKEN_LIMIT));
  const cost = checkMoney(v, 'daily_cost_limit', raw.dailyCostLimit, MAX_COST_LIMIT);
  if (cost !== undefined) limits.cost = cost;
  v.done();
  return limits;
}

export interface ScopeInput {
  accountId: string;
  userId: string;
  /** An API key's scope (issue 20). */
  apiKeyId?: string;
  /** A tag value's scope (issue 20): both or neither. */
  tagKey?: string;
  tagValue?: string;
}

/**
 * The scope of a limit off the wire: the account, one user, one API key or
 * one tag value (at most one of user_id, api_key_id and tag_key; tag_key and
 * tag_value go together). Returns the user id and the scope column.
 */
function checkScope(v: Violations, raw: ScopeInput): { userId: string; scope: string } {
  const userId = checkId(v, 'user_id', raw.userId ?? '', false);
  const apiKeyId = checkId(v, 'api_key_id', raw.apiKeyId ?? '', false);
  const tagKey = raw.tagKey ?? '';
  const tagValue = raw.tagValue ?? '';
  const given = [userId && 'user_id', apiKeyId && 'api_key_id', (tagKey || tagValue) && 'tag_key'].filter(Boolean);
  if (given.length > 1) v.add(given[1] as string, `give at most one of user_id, api_key_id and tag_key/tag_value (got ${given.join(' and ')})`);
  if (apiKeyId) return { userId: '', scope: apiKeyScope(apiKeyId) };
  if (tagKey || tagValue) {
    const keyProblem = tagKeyProblem(tagKey);
    if (keyProblem) v.add('tag_key', tagKey === '' ? 'is required with tag_value' : keyProblem);
    const valueProblem = tagValueProblem(tagValue);
    if (valueProblem) v.add('tag_value', tagValue === '' ? 'is required with tag_key' : valueProblem);
    return { userId: '', scope: tagScope(tagKey, tagValue) };
  }
  return { userId, scope: '' };
}

/** Validates the scope of GetLimits: an account, and optionally one of its users, one API key or one tag value. */
export function validateScope(raw: ScopeInput): ScopeInput & { scope: string } {
  const v = new Violations();
  const accountId = checkId(v, 'account_id', raw.accountId);
  const { userId, scope } = checkScope(v, raw);
  v.done();
  return { accountId, userId, scope };
}

const MAX_OF: Record<LimitMeasure, Dec> = { messages: new Dec(MAX_MESSAGE_LIMIT), tokens: new Dec(MAX_TOKEN_LIMIT), cost: MAX_COST_LIMIT };

function requiredEnum<T extends string>(v: Violations, field: string, value: number, names: Record<number, T>): T | undefined {
  if (value === 0) v.add(field, `is required (${Object.values(names).join(', ')})`);
  return checkEnum(v, field, value, names);
}

function checkLimitKey(v: Violations, raw: LimitKeyInput): Omit<LimitKey, 'measure'> & { measure?: LimitMeasure } {
  const { userId, scope } = checkScope(v, raw);
  return {
    accountId: checkId(v, 'account_id', raw.accountId),
    userId,
    ...(scope ? { scope } : {}),
    period: requiredEnum(v, 'period', raw.period, LIMIT_SPAN_BY_NUMBER) ?? 'day',
    measure: requiredEnum(v, 'measure', raw.measure, LIMIT_MEASURE_BY_NUMBER),
    enforcement: checkEnum(v, 'enforcement', raw.enforcement, LIMIT_ENFORCEMENT_BY_NUMBER) ?? 'hard',
  };
}

export interface LimitKeyInput {
  accountId: string;
  userId: string;
  /** An API key's limit (issue 20). */
  apiKeyId?: string;
  /** A tag value's limit (issue 20; the key must be a declared dimension): both or neither. */
  tagKey?: string;
  tagValue?: string;
  period: number;
  /** With period ROLLING (3): the window in whole hours, 1 to 744. */
  windowHours?: number;
  measure: number;
  enforcement: number;
}

/** Validates PutLimit: the amount is an integer for messages and tokens, a decimal for cost. */
export function validatePutLimit(raw: LimitKeyInput & { amount: string }): Limit {
  const v = new Violations();
  const { measure = 'cost', ...key } = checkLimitKey(v, raw);
  let amount = new Dec(0);
  const parsed = parseDecimal(raw.amount ?? '', 40);
  if (parsed === undefined) v.add('amount', measure === 'cost' ? 'must be a plain decimal string such as "12.50"' : 'must be an integer');
  else if (measure !== 'cost' && !parsed.isInteger()) v.add('amount', `must be an integer for ${measure}`);
  else if (parsed.isNegative() || parsed.greaterThan(MAX_OF[measure])) v.add('amount', `must be between 0 and ${formatDecimal(MAX_OF[measure])}`);
  else amount = parsed;
  const windowHours = raw.windowHours ?? 0;
  if (key.period === 'rolling') {
    if (!Number.isInteger(windowHours) || windowHours < 1 || windowHours > MAX_WINDOW_HOURS) v.add('window_hours', `is required with LIMIT_PERIOD_ROLLING: whole hours, 1 to ${MAX_WINDOW_HOURS}`);
  } else if (windowHours !== 0) v.add('window_hours', 'is only used with LIMIT_PERIOD_ROLLING');
  v.done();
  return { ...key, measure, amount, ...(key.period === 'rolling' ? { windowHours } : {}) };
}

export function validateLimitKey(raw: LimitKeyInput): LimitKey {
  const v = new Violations();
  const { measure = 'messages', ...key } = checkLimitKey(v, raw);
  v.done();
  return { ...key, measure };
}

/** Where a page of ListLimits starts: after this (user, scope, period, measure, enforcement). */
export type LimitCursor = Pick<Limit, 'userId' | 'scope' | 'period' | 'measure' | 'enforcement'>;

export interface ListLimitsQuery {
  accountId: string;
  /** Only the limits that apply to this user (its own and the account's). */
  userId?: string;
  pageSize: number;
  after?: LimitCursor;
}

const limitListFilters = (q: Pick<ListLimitsQuery, 'accountId' | 'userId'>) => [q.accountId, q.userId ?? ''];

export function encodeLimitPageToken(q: ListLimitsQuery, last: LimitCursor): string {
  return encodePageToken(limitListFilters(q), [last.userId, last.period, last.measure, last.enforcement, last.scope ?? '']);
}

function limitCursor(key: unknown): LimitCursor | undefined {
  // Tokens made before scopes (four strings) continue in the scope ''.
  const k = stringTuple(key, 5) ?? (stringTuple(key, 4) ? [...(key as string[]), ''] : undefined);
  if (!k || !['day', 'month', 'rolling'].includes(k[1]) || !['messages', 'tokens', 'cost'].includes(k[2]) || !['hard', 'soft'].includes(k[3])) return undefined;
  return { userId: k[0], period: k[1] as LimitSpan, measure: k[2] as LimitMeasure, enforcement: k[3] as LimitEnforcement, scope: k[4] };
}

export function validateListLimits(raw: { accountId: string; userId: string; pageSize: number; pageToken: string }): ListLimitsQuery {
  const v = new Violations();
  const filters = { accountId: checkId(v, 'account_id', raw.accountId), userId: checkId(v, 'user_id', raw.userId, false) || undefined };
  const pageSize = raw.pageSize === 0 ? 100 : checkInt(v, 'page_size', raw.pageSize, 1, 1000);
  const after = decodePageToken(v, raw.pageToken, limitListFilters(filters), limitCursor);
  v.done();
  return { ...filters, pageSize, after };
}

export interface EstimateInput extends BilledUsageInput {
  provider: string;
  model: string;
  chargeType: number;
  callCount: string;
}

export interface CheckLimitsRequestInput {
  accountId: string;
  userId: string;
  additionalTokens: string;
  additionalCost?: MoneyInput;
  reserve?: boolean;
  idempotencyKey?: string;
  estimate?: EstimateInput;
  holdSeconds?: number;
  denyAsError?: boolean;
  /** The call's tags (map<string, string>). */
  tags?: Record<string, string>;
}

/** A token mix (with tool calls and service tier) for the server to price. */
export interface UsageEstimate extends BilledCounts {
  provider: string;
  model: string;
  chargeType: ChargeType;
  callCount: number;
}

export interface LimitCheck {
  accountId: string;
  userId: string;
  additionalTokens: bigint;
  additionalCost: Dec;
  estimate?: UsageEstimate;
  /** Set when the check reserves. */
  reserve?: { idempotencyKey: string; holdSeconds: number };
  denyAsError: boolean;
  /** The call's tags, keys in order. */
  tags: Tags;
  /** The API key that made the check; '' for the operator or with authentication off. */
  apiKeyId: string;
}

export const DEFAULT_HOLD_SECONDS = 600;
export const MAX_HOLD_SECONDS = 86_400;

function checkEstimate(v: Violations, raw: EstimateInput): UsageEstimate {
  const sub = new Violations();
  const estimate: UsageEstimate = {
    provider: checkProvider(sub, 'provider', raw.provider ?? ''),
    model: checkModel(sub, 'model', raw.model ?? ''),
    chargeType: checkEnum(sub, 'charge_type', raw.chargeType ?? 0, CHARGE_TYPE_BY_NUMBER) ?? 'completion',
    ...checkBilledUsage(sub, raw),
    callCount: checkInt(sub, 'call_count', raw.callCount, 0, MAX_CALLS),
  };
  for (const x of sub.list) v.add(`estimate.${x.field}`, x.description);
  return estimate;
}

export function validateCheckLimits(raw: CheckLimitsRequestInput, apiKeyId = ''): LimitCheck {
  const v = new Violations();
  const check: LimitCheck = {
    accountId: checkId(v, 'account_id', raw.accountId),
    userId: checkId(v, 'user_id', raw.userId),
    additionalTokens: BigInt(checkInt(v, 'additional_tokens', raw.additionalTokens, 0, MAX_TOKEN_LIMIT)),
    additionalCost: checkMoney(v, 'additional_cost', raw.additionalCost, MAX_COST_LIMIT) ?? new Dec(0),
    denyAsError: raw.denyAsError === true,
    tags: checkTags(v, 'tags', raw.tags),
    apiKeyId,
  };
  if (raw.estimate) {
    if (raw.additionalCost) v.add('estimate', 'give either estimate or additional_cost, not both');
    check.estimate = checkEstimate(v, raw.estimate);
  }
  const key = checkText(v, 'idempotency_key', raw.idempotencyKey ?? '', MAX_KEY_LENGTH, { required: raw.reserve === true });
  const holdSeconds = raw.holdSeconds ? checkInt(v, 'hold_seconds', raw.holdSeconds, 1, MAX_HOLD_SECONDS) : DEFAULT_HOLD_SECONDS;
  if (raw.reserve) check.reserve = { idempotencyKey: key, holdSeconds };
  else if (key !== '') v.add('idempotency_key', 'is only used with reserve');
  else if (raw.holdSeconds) v.add('hold_seconds', 'is only used with reserve');
  v.done();
  return check;
}

export type LimitReason =
  | 'no_limits_set'
  | 'within_limits'
  | 'soft_limit_exceeded'
  | 'message_limit_reached'
  | 'token_limit_exceeded'
  | 'cost_limit_exceeded'
  /** The account's credits cannot cover the call (policy deny; libs/domain/src/credits.ts). */
  | 'balance_insufficient';

export interface LimitStatus {
  scope: LimitScope;
  /** A rolling window's length (hours). */
  windowHours?: number;
  /** A rolling limit the call would exceed: when enough usage will have aged out of the window for it to fit (undefined: never, the call alone is too much). */
  allowedAt?: Date;
  /** Which API key or tag value, for those scopes (issue 20). */
  apiKeyId?: string;
  tagKey?: string;
  tagValue?: string;
  measure: LimitMeasure;
  period: LimitSpan;
  enforcement: LimitEnforcement;
  periodStart: string;
  limit: string;
  used: string;
  reserved: string;
  remaining: string;
  exceeded: boolean;
}

export interface LimitDecision {
  allowed: boolean;
  reason: LimitReason;
  message: string;
  limits: LimitStatus[];
}

const REASON_OF: Record<LimitMeasure, LimitReason> = {
  messages: 'message_limit_reached',
  tokens: 'token_limit_exceeded',
  cost: 'cost_limit_exceeded',
};

const LABEL_OF: Record<LimitMeasure, string> = { messages: 'message', tokens: 'token', cost: 'cost' };

/** What one call adds: one message, its tokens, its cost. */
export interface CallAmounts {
  tokens: bigint;
  cost: Dec;
}

/** A call that adds no tokens and no cost (the state of a limit as it stands). */
export const NO_CALL: CallAmounts = { tokens: 0n, cost: new Dec(0) };

/** A limit's state from recorded usage alone (no open holds, no call). */
export function recordedStatus(limit: Limit, periodStart: string, used: UsageCounter): LimitStatus {
  return limitStatus(limit, { periodStart, used, reserved: ZERO_USAGE });
}

const amountOf = (measure: LimitMeasure, u: UsageCounter): Dec =>
  measure === 'messages' ? new Dec(u.messageCount.toString()) : measure === 'tokens' ? new Dec(u.totalTokens.toString()) : u.totalCost;

/**
 * The state of one limit for a call: used and reserved in the current period,
 * what remains, and whether the call would exceed it. The Django models' rules, with
 * reservations counted as spent: a message limit is reached when used +
 * reserved >= the limit; a token limit is exceeded when used + reserved + the
 * call's tokens > the limit; a cost limit when used + reserved >= the limit or
 * used + reserved + the call's cost > the limit.
 */
export function limitStatus(limit: Limit, usage: PeriodUsage, call: CallAmounts = NO_CALL): LimitStatus {
  const used = amountOf(limit.measure, usage.used);
  const spent = used.plus(amountOf(limit.measure, usage.reserved));
  const max = limit.amount;
  const exceeds = (s: Dec) =>
    limit.measure === 'messages'
      ? s.greaterThanOrEqualTo(max)
      : limit.measure === 'tokens'
        ? s.plus(call.tokens.toString()).greaterThan(max)
        : s.greaterThanOrEqualTo(max) || s.plus(call.cost).greaterThan(max);
  const exceeded = exceeds(spent);
  return {
    scope: scopeKind(limit.userId, limit.scope),
    ...parseScope(limit.scope),
    ...(limit.period === 'rolling' ? { windowHours: limit.windowHours } : {}),
    ...(limit.period === 'rolling' && exceeded ? agesOut(limit, usage, spent, exceeds) : {}),
    measure: limit.measure,
    period: limit.period,
    enforcement: limit.enforcement,
    periodStart: usage.periodStart,
    limit: formatDecimal(max),
    used: formatDecimal(used),
    reserved: formatDecimal(spent.minus(used)),
    remaining: formatDecimal(Dec.max(max.minus(spent), 0)),
    exceeded,
  };
}

/**
 * When a rolling limit that a call would exceed lets it through with nothing
 * else changing: the oldest hours leave the window one by one (an hour
 * leaves it windowHours after it began), and the first moment the rest fits.
 */
function agesOut(limit: Limit, usage: PeriodUsage, spent: Dec, exceeds: (s: Dec) => boolean): { allowedAt?: Date } {
  let rest = spent;
  for (const h of usage.hours ?? []) {
    rest = rest.minus(amountOf(limit.measure, h.used)).minus(amountOf(limit.measure, h.reserved));
    if (!exceeds(rest)) return { allowedAt: new Date(h.hourStart.getTime() + (limit.windowHours ?? 1) * HOUR_MS) };
  }
  return {};
}

const ORDER = { messages: 0, tokens: 1, cost: 2, user: 0, api_key: 1, tag: 2, account: 3, day: 0, month: 1, rolling: 2, hard: 0, soft: 1 } as const;

/**
 * The Django models' check_user_limits, generalised: every limit of the user and of
 * its account (day and month, hard and soft) against the counters of their
 * current periods, reservations counted as spent. With no limits: allowed
 * ("No limits set"). Limits are checked in the Django models' order (messages, then
 * tokens, then cost; the user's before the account's; then day before month);
 * the first hard limit exceeded denies and gives the reason. When no hard
 * limit denies but a soft one is exceeded, the call is allowed with reason
 * soft_limit_exceeded. Every limit that applies is reported.
 */
export function evaluateLimits(input: {
  userId: string;
  limits: Limit[];
  /** The usage of a limit's scope (user, other scope) in its current period, or window (the limit says which). */
  usage: (userId: string, period: LimitSpan, scope: string, limit: Limit) => PeriodUsage;
  call: CallAmounts;
  /** The call's other scopes (extraScopesOf: its API key, its declared tag values): their limits apply too. */
  scopes?: string[];
}): LimitDecision {
  const rank = (s: LimitStatus) => ORDER[s.measure] * 64 + ORDER[s.scope] * 8 + ORDER[s.period] * 2 + ORDER[s.enforcement];
  const scopeName = (s: LimitStatus) => s.apiKeyId ?? (s.tagKey !== undefined ? `${s.tagKey}=${s.tagValue}` : '');
  const statuses = input.limits
    .filter((l) => (l.scope ? (input.scopes ?? []).includes(l.scope) : l.userId === '' || l.userId === input.userId))
    .map((l) => limitStatus(l, input.usage(l.userId, l.period, l.scope ?? '', l), input.call))
    .sort((a, b) => rank(a) - rank(b) || (scopeName(a) < scopeName(b) ? -1 : scopeName(a) > scopeName(b) ? 1 : 0));
  if (statuses.length === 0) return { allowed: true, reason: 'no_limits_set', message: 'No limits set', limits: [] };
  const denied = statuses.find((s) => s.exceeded && s.enforcement === 'hard');
  const warned = statuses.find((s) => s.exceeded);
  if (!warned) return { allowed: true, reason: 'within_limits', message: 'Within limits', limits: statuses };
  const hit = denied ?? warned;
  const owner = { user: '', account: 'Account ', api_key: `API key ${hit.apiKeyId} `, tag: `Tag ${hit.tagKey}=${hit.tagValue} ` }[hit.scope];
  const who = `${owner}${hit.period === 'day' ? 'daily' : hit.period === 'month' ? 'monthly' : `${hit.windowHours}-hour`}`;
  const shown = hit.measure === 'cost' ? `${hit.limit} ${CURRENCY_CODE}` : hit.limit;
  const text = `${who.charAt(0).toUpperCase()}${who.slice(1)} ${LABEL_OF[hit.measure]} limit`;
  if (!denied) return { allowed: true, reason: 'soft_limit_exceeded', message: `${text} exceeded (soft, ${shown})`, limits: statuses };
  return { allowed: false, reason: REASON_OF[hit.measure], message: `${text} reached (${shown})`, limits: statuses };
}

/** The Django models' daily limits of a scope as limit rows (hard, per day). */
export function limitsOfDaily(d: DailyLimits): Limit[] {
  const key = { accountId: d.accountId, userId: d.userId, period: 'day', enforcement: 'hard' } as const;
  const amounts: Array<[LimitMeasure, bigint | Dec | undefined]> = [
    ['messages', d.messages],
    ['tokens', d.tokens],
    ['cost', d.cost],
  ];
  return amounts.flatMap(([measure, amount]) => (amount === undefined ? [] : [{ ...key, measure, amount: new Dec(amount.toString()) }]));
}

/** The hard day limits among a scope's limits, as the Django models' daily limits. */
export function dailyOfLimits(accountId: string, userId: string, limits: Limit[]): DailyLimits {
  const d: DailyLimits = { accountId, userId };
  for (const l of limits) {
    if (l.userId !== userId || l.period !== 'day' || l.enforcement !== 'hard') continue;
    if (l.measure === 'cost') d.cost = l.amount;
    else d[l.measure] = BigInt(l.amount.toFixed());
    if (!d.updateTime || (l.updateTime && l.updateTime > d.updateTime)) d.updateTime = l.updateTime;
  }
  return d;
}

/** What a change moved of one user's recorded usage on one day: a new charge (1 message, its tokens and cost), or a re-rated one (only the cost's difference). */
export interface UsageChange {
  accountId: string;
  userId: string;
  usageDate: string;
  used: UsageCounter;
  /** The API key and tag scopes the usage also counts on (extraScopesOf); none when absent. */
  scopes?: string[];
}

/**
 * The soft limits that changes just took past their amount: for each soft
 * limit whose period counter moved (rows as they are after the changes, and
 * the changes), recorded usage before the changes did not exceed it and after
 * them does. Reservations are not counted: this is about usage recorded.
 */
export function softLimitCrossings(
  limits: Limit[],
  counters: Array<{ accountId: string; userId: string; scope?: string; period: LimitPeriod; periodStart: string; used: UsageCounter }>,
  changes: UsageChange[],
): Array<{ userId: string; limit: Limit; periodStart: string; used: UsageCounter }> {
  const out = [];
  // Calendar soft limits of every scope: the account, a user, an API key, a tag value (rolling
  // windows report theirs in CheckLimits only: their usage ages out by the hour, not by a write).
  for (const limit of limits.filter((l) => l.enforcement === 'soft' && l.period !== 'rolling')) {
    const scope = limit.scope ?? '';
    const counts = (c: UsageChange) => (scope ? (c.scopes ?? []).includes(scope) : limit.userId === '' || c.userId === limit.userId);
    for (const row of counters.filter((r) => r.accountId === limit.accountId && r.userId === limit.userId && (r.scope ?? '') === scope && r.period === limit.period)) {
      const mine = changes.filter((c) => c.accountId === limit.accountId && counts(c) && periodStartOf(limit.period as LimitPeriod, c.usageDate) === row.periodStart);
      if (mine.length === 0) continue;
      const before: UsageCounter = {
        messageCount: mine.reduce((n, c) => n - c.used.messageCount, row.used.messageCount),
        totalTokens: mine.reduce((n, c) => n - c.used.totalTokens, row.used.totalTokens),
        totalCost: mine.reduce((sum, c) => sum.minus(c.used.totalCost), row.used.totalCost),
      };
      if (!recordedStatus(limit, row.periodStart, before).exceeded && recordedStatus(limit, row.periodStart, row.used).exceeded) {
        out.push({ userId: mine[mine.length - 1].userId, limit, periodStart: row.periodStart, used: row.used });
      }
    }
  }
  return out;
}

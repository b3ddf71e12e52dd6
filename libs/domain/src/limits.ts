import { CURRENCY_CODE, Dec, formatDecimal, parseDecimal } from '@metering/pricing';
import { checkId, checkInt, Violations } from './validation';

export type LimitMeasure = 'messages' | 'tokens' | 'cost';
export type LimitScope = 'account' | 'user';

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

/** Today's counters of one scope. */
export interface UsageCounter {
  messageCount: bigint;
  totalTokens: bigint;
  totalCost: Dec;
}

export const ZERO_USAGE: UsageCounter = { messageCount: 0n, totalTokens: 0n, totalCost: new Dec(0) };

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
}

/** Validates the scope of GetLimits: an account, and optionally one of its users. */
export function validateScope(raw: ScopeInput): ScopeInput {
  const v = new Violations();
  const scope = { accountId: checkId(v, 'account_id', raw.accountId), userId: checkId(v, 'user_id', raw.userId, false) };
  v.done();
  return scope;
}

export interface CheckLimitsRequestInput {
  accountId: string;
  userId: string;
  additionalTokens: string;
  additionalCost?: MoneyInput;
}

export interface LimitCheck {
  accountId: string;
  userId: string;
  additionalTokens: bigint;
  additionalCost: Dec;
}

export function validateCheckLimits(raw: CheckLimitsRequestInput): LimitCheck {
  const v = new Violations();
  const check: LimitCheck = {
    accountId: checkId(v, 'account_id', raw.accountId),
    userId: checkId(v, 'user_id', raw.userId),
    additionalTokens: BigInt(checkInt(v, 'additional_tokens', raw.additionalTokens, 0, MAX_TOKEN_LIMIT)),
    additionalCost: checkMoney(v, 'additional_cost', raw.additionalCost, MAX_COST_LIMIT) ?? new Dec(0),
  };
  v.done();
  return check;
}

export type LimitReason = 'no_limits_set' | 'within_limits' | 'message_limit_reached' | 'token_limit_exceeded' | 'cost_limit_exceeded';

export interface LimitStatus {
  scope: LimitScope;
  measure: LimitMeasure;
  limit: string;
  used: string;
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

/**
 * The seeds' check_user_limits, for a user and its account. With no limits:
 * allowed ("No limits set"). A message limit is reached when today's count >=
 * the limit; a token limit is exceeded when today's tokens + the additional
 * tokens > the limit; a cost limit when today's cost >= the limit or today's
 * cost + the additional cost > the limit. Measures are checked in the seeds'
 * order (messages, then tokens, then cost), the user's limit before the
 * account's; the first that denies gives the reason, and every limit that
 * applies is reported.
 */
export function evaluateLimits(input: {
  user: DailyLimits | undefined;
  account: DailyLimits | undefined;
  userUsage: UsageCounter;
  accountUsage: UsageCounter;
  additionalTokens: bigint;
  additionalCost: Dec;
}): LimitDecision {
  const statuses: LimitStatus[] = [];
  let denied: { measure: LimitMeasure; scope: LimitScope; limit: string } | undefined;
  for (const measure of ['messages', 'tokens', 'cost'] as const) {
    for (const [scope, limits, usage] of [
      ['user', input.user, input.userUsage],
      ['account', input.account, input.accountUsage],
    ] as const) {
      const limit = limits?.[measure];
      if (limit === undefined) continue;
      let used: string, remaining: string, exceeded: boolean;
      if (measure === 'cost') {
        const max = limit as Dec;
        exceeded = usage.totalCost.greaterThanOrEqualTo(max) || usage.totalCost.plus(input.additionalCost).greaterThan(max);
        used = formatDecimal(usage.totalCost);
        remaining = formatDecimal(Dec.max(max.minus(usage.totalCost), 0));
      } else {
        const max = limit as bigint;
        const count = measure === 'messages' ? usage.messageCount : usage.totalTokens;
        exceeded = measure === 'messages' ? count >= max : count + input.additionalTokens > max;
        used = count.toString();
        remaining = (max > count ? max - count : 0n).toString();
      }
      const limitText = measure === 'cost' ? formatDecimal(limit as Dec) : String(limit);
      statuses.push({ scope, measure, limit: limitText, used, remaining, exceeded });
      if (exceeded && !denied) denied = { measure, scope, limit: limitText };
    }
  }
  if (statuses.length === 0) return { allowed: true, reason: 'no_limits_set', message: 'No limits set', limits: [] };
  if (!denied) return { allowed: true, reason: 'within_limits', message: 'Within limits', limits: statuses };
  const who = denied.scope === 'user' ? 'Daily' : 'Account daily';
  const shown = denied.measure === 'cost' ? `${denied.limit} ${CURRENCY_CODE}` : denied.limit;
  return {
    allowed: false,
    reason: REASON_OF[denied.measure],
    message: `${who} ${LABEL_OF[denied.measure]} limit reached (${shown})`,
    limits: statuses,
  };
}

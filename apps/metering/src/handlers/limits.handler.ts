import {
  CheckLimitsReason,
  CheckLimitsRequest,
  CheckLimitsResponse,
  DailyLimits as PbDailyLimits,
  DeleteLimitRequest,
  DeleteLimitResponse,
  GetLimitsRequest,
  GetLimitsResponse,
  Limit as PbLimit,
  LimitEnforcement,
  LimitMeasure,
  LimitPeriod,
  LimitScope,
  LimitStatus as PbLimitStatus,
  ListLimitsRequest,
  ListLimitsResponse,
  PutLimitRequest,
  PutLimitResponse,
  SetLimitsRequest,
  SetLimitsResponse,
  UsageSnapshot,
} from '@metering/contracts';
import { DailyLimits, Limit, LimitReason, LimitStatus, parseScope, UsageCounter } from '@metering/domain';
import type { Caller } from '../grpc/auth';
import { LimitsService } from '../services/limits.service';
import { toProtoMoney, toProtoReservation, toProtoTimestamp } from './convert';

/** CheckLimits and limit management: wire -> service -> wire (the generated requests have the shape of the domain inputs). */

const REASON: Record<LimitReason, CheckLimitsReason> = {
  no_limits_set: CheckLimitsReason.CHECK_LIMITS_REASON_NO_LIMITS_SET,
  within_limits: CheckLimitsReason.CHECK_LIMITS_REASON_WITHIN_LIMITS,
  soft_limit_exceeded: CheckLimitsReason.CHECK_LIMITS_REASON_SOFT_LIMIT_EXCEEDED,
  message_limit_reached: CheckLimitsReason.CHECK_LIMITS_REASON_MESSAGE_LIMIT_REACHED,
  token_limit_exceeded: CheckLimitsReason.CHECK_LIMITS_REASON_TOKEN_LIMIT_EXCEEDED,
  cost_limit_exceeded: CheckLimitsReason.CHECK_LIMITS_REASON_COST_LIMIT_EXCEEDED,
  balance_insufficient: CheckLimitsReason.CHECK_LIMITS_REASON_BALANCE_INSUFFICIENT,
};
const MEASURE = { messages: LimitMeasure.LIMIT_MEASURE_MESSAGES, tokens: LimitMeasure.LIMIT_MEASURE_TOKENS, cost: LimitMeasure.LIMIT_MEASURE_COST };
const SCOPE = { user: LimitScope.LIMIT_SCOPE_USER, account: LimitScope.LIMIT_SCOPE_ACCOUNT, api_key: LimitScope.LIMIT_SCOPE_API_KEY, tag: LimitScope.LIMIT_SCOPE_TAG };
const PERIOD = { day: LimitPeriod.LIMIT_PERIOD_DAY, month: LimitPeriod.LIMIT_PERIOD_MONTH, rolling: LimitPeriod.LIMIT_PERIOD_ROLLING };
const ENFORCEMENT = { hard: LimitEnforcement.LIMIT_ENFORCEMENT_HARD, soft: LimitEnforcement.LIMIT_ENFORCEMENT_SOFT };

function toProtoDailyLimits(l: DailyLimits): PbDailyLimits {
  return {
    accountId: l.accountId,
    userId: l.userId,
    dailyMessageLimit: l.messages?.toString(),
    dailyTokenLimit: l.tokens?.toString(),
    dailyCostLimit: l.cost ? toProtoMoney(l.cost) : undefined,
    updateTime: l.updateTime ? toProtoTimestamp(l.updateTime) : undefined,
  };
}

const toProtoLimit = (l: Limit): PbLimit => {
  const { apiKeyId = '', tagKey = '', tagValue = '' } = parseScope(l.scope);
  return {
    accountId: l.accountId,
    userId: l.userId,
    apiKeyId,
    tagKey,
    tagValue,
    period: PERIOD[l.period],
    windowHours: l.windowHours ?? 0,
    measure: MEASURE[l.measure],
    amount: l.amount.toFixed(),
    enforcement: ENFORCEMENT[l.enforcement],
    updateTime: l.updateTime ? toProtoTimestamp(l.updateTime) : undefined,
  };
};

export const toProtoLimitStatus = (s: LimitStatus): PbLimitStatus => ({
  ...s,
  apiKeyId: s.apiKeyId ?? '',
  tagKey: s.tagKey ?? '',
  tagValue: s.tagValue ?? '',
  windowHours: s.windowHours ?? 0,
  allowedAt: s.allowedAt ? toProtoTimestamp(s.allowedAt) : undefined,
  scope: SCOPE[s.scope],
  measure: MEASURE[s.measure],
  period: PERIOD[s.period],
  enforcement: ENFORCEMENT[s.enforcement],
});

const toSnapshot = (u: UsageCounter): UsageSnapshot => ({
  messageCount: u.messageCount.toString(),
  totalTokens: u.totalTokens.toString(),
  totalCost: toProtoMoney(u.totalCost),
});

export const setLimitsHandler =
  (service: LimitsService) =>
  async (req: SetLimitsRequest): Promise<SetLimitsResponse> => ({ limits: toProtoDailyLimits(await service.setLimits(req)) });

export const getLimitsHandler =
  (service: LimitsService) =>
  async (req: GetLimitsRequest): Promise<GetLimitsResponse> => ({ limits: toProtoDailyLimits(await service.getLimits(req)) });

export const putLimitHandler =
  (service: LimitsService) =>
  async (req: PutLimitRequest): Promise<PutLimitResponse> => ({ limit: toProtoLimit(await service.putLimit(req)) });

export const deleteLimitHandler =
  (service: LimitsService) =>
  async (req: DeleteLimitRequest): Promise<DeleteLimitResponse> => ({ deleted: await service.deleteLimit(req) });

export const listLimitsHandler =
  (service: LimitsService) =>
  async (req: ListLimitsRequest): Promise<ListLimitsResponse> => {
    const page = await service.listLimits(req);
    return {
      limits: page.limits.map((u) => ({ ...u, limit: toProtoLimit(u.limit) })),
      nextPageToken: page.nextPageToken,
      timeZone: page.timeZone,
    };
  };

export const checkLimitsHandler =
  (service: LimitsService) =>
  async (req: CheckLimitsRequest, who?: Caller): Promise<CheckLimitsResponse> => {
    const r = await service.checkLimits(req, who?.keyId ?? '');
    return {
      allowed: r.allowed,
      reason: REASON[r.reason],
      message: r.message,
      date: r.date,
      timeZone: r.timeZone,
      userUsage: toSnapshot(r.userUsage),
      accountUsage: toSnapshot(r.accountUsage),
      limits: r.limits.map(toProtoLimitStatus),
      reservation: r.reservation ? toProtoReservation(r.reservation) : undefined,
      replayed: r.replayed,
      creditAvailable: r.credit ? toProtoMoney(r.credit.available) : undefined,
      allowedAt: r.allowedAt ? toProtoTimestamp(r.allowedAt) : undefined,
    };
  };

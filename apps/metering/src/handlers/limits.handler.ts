import {
  CheckLimitsReason,
  CheckLimitsRequest,
  CheckLimitsResponse,
  DailyLimits as PbDailyLimits,
  GetLimitsRequest,
  GetLimitsResponse,
  LimitMeasure,
  LimitScope,
  SetLimitsRequest,
  SetLimitsResponse,
  UsageSnapshot,
} from '@metering/contracts';
import { DailyLimits, LimitReason, UsageCounter } from '@metering/domain';
import { LimitsService } from '../services/limits.service';
import { toProtoMoney, toProtoTimestamp } from './convert';

/** SetLimits, GetLimits, CheckLimits: wire -> service -> wire (the generated requests have the shape of the domain inputs). */

const REASON: Record<LimitReason, CheckLimitsReason> = {
  no_limits_set: CheckLimitsReason.CHECK_LIMITS_REASON_NO_LIMITS_SET,
  within_limits: CheckLimitsReason.CHECK_LIMITS_REASON_WITHIN_LIMITS,
  message_limit_reached: CheckLimitsReason.CHECK_LIMITS_REASON_MESSAGE_LIMIT_REACHED,
  token_limit_exceeded: CheckLimitsReason.CHECK_LIMITS_REASON_TOKEN_LIMIT_EXCEEDED,
  cost_limit_exceeded: CheckLimitsReason.CHECK_LIMITS_REASON_COST_LIMIT_EXCEEDED,
};
const MEASURE = { messages: LimitMeasure.LIMIT_MEASURE_MESSAGES, tokens: LimitMeasure.LIMIT_MEASURE_TOKENS, cost: LimitMeasure.LIMIT_MEASURE_COST };
const SCOPE = { user: LimitScope.LIMIT_SCOPE_USER, account: LimitScope.LIMIT_SCOPE_ACCOUNT };

function toProtoLimits(l: DailyLimits): PbDailyLimits {
  return {
    accountId: l.accountId,
    userId: l.userId,
    dailyMessageLimit: l.messages?.toString(),
    dailyTokenLimit: l.tokens?.toString(),
    dailyCostLimit: l.cost ? toProtoMoney(l.cost) : undefined,
    updateTime: l.updateTime ? toProtoTimestamp(l.updateTime) : undefined,
  };
}

const toSnapshot = (u: UsageCounter): UsageSnapshot => ({
  messageCount: u.messageCount.toString(),
  totalTokens: u.totalTokens.toString(),
  totalCost: toProtoMoney(u.totalCost),
});

export const setLimitsHandler =
  (service: LimitsService) =>
  async (req: SetLimitsRequest): Promise<SetLimitsResponse> => ({
    limits: toProtoLimits(
      await service.setLimits(req),
    ),
  });

export const getLimitsHandler =
  (service: LimitsService) =>
  async (req: GetLimitsRequest): Promise<GetLimitsResponse> => ({
    limits: toProtoLimits(await service.getLimits(req)),
  });

export const checkLimitsHandler =
  (service: LimitsService) =>
  async (req: CheckLimitsRequest): Promise<CheckLimitsResponse> => {
    const r = await service.checkLimits(req);
    return {
      allowed: r.allowed,
      reason: REASON[r.reason],
      message: r.message,
      date: r.date,
      userUsage: toSnapshot(r.userUsage),
      accountUsage: toSnapshot(r.accountUsage),
      limits: r.limits.map((s) => ({ ...s, scope: SCOPE[s.scope], measure: MEASURE[s.measure] })),
    };
  };

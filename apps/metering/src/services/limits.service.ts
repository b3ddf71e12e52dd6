import {
  CheckLimitsRequestInput,
  DailyLimits,
  evaluateLimits,
  LimitDecision,
  ScopeInput,
  SetLimitsRequestInput,
  UsageCounter,
  utcDay,
  validateCheckLimits,
  validateScope,
  validateSetLimits,
} from '@metering/domain';
import { Db, inTransaction, read } from '../store/db';
import { readDailyLimits, readLimitCheckState, replaceDailyLimits } from '../store/limits.repo';

export interface LimitCheckResult extends LimitDecision {
  date: string;
  userUsage: UsageCounter;
  accountUsage: UsageCounter;
}

/** SetLimits, GetLimits and CheckLimits. Checks read the maintained day counters by primary key. */
export class LimitsService {
  constructor(
    private readonly db: Db,
    private readonly clock: () => Date = () => new Date(),
  ) {}

  async setLimits(raw: SetLimitsRequestInput): Promise<DailyLimits> {
    const limits = validateSetLimits(raw);
    return inTransaction(this.db, async (tx) => {
      await replaceDailyLimits(tx, limits);
      return (await readDailyLimits(tx, limits.accountId, [limits.userId])).get(limits.userId) ?? { accountId: limits.accountId, userId: limits.userId };
    });
  }

  async getLimits(raw: ScopeInput): Promise<DailyLimits> {
    const scope = validateScope(raw);
    const found = await read(() => readDailyLimits(this.db, scope.accountId, [scope.userId]));
    return found.get(scope.userId) ?? { accountId: scope.accountId, userId: scope.userId };
  }

  async checkLimits(raw: CheckLimitsRequestInput): Promise<LimitCheckResult> {
    const check = validateCheckLimits(raw);
    const date = utcDay(this.clock());
    const { limits, ...counters } = await read(() => readLimitCheckState(this.db, check.accountId, check.userId, date));
    const decision = evaluateLimits({
      user: limits.get(check.userId),
      account: limits.get(''),
      userUsage: counters.user,
      accountUsage: counters.account,
      additionalTokens: check.additionalTokens,
      additionalCost: check.additionalCost,
    });
    return { ...decision, date, userUsage: counters.user, accountUsage: counters.account };
  }
}

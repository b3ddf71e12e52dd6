import { Dec } from '@metering/pricing';
import type { DailyLimits, LimitMeasure } from '@metering/domain';
import type { Db, Tx } from './db';

/** SQL of the limits table: one row per scope, period and measure. No business rules. */

interface LimitRow {
  account_id: string;
  user_id: string;
  measure: LimitMeasure;
  amount: string;
  updated_at: Date;
}

/** Replaces the daily limits of one scope: measures absent from `limits` are removed. */
export async function replaceDailyLimits(tx: Tx, limits: DailyLimits): Promise<void> {
  const scope = { account_id: limits.accountId, user_id: limits.userId, period: 'day' };
  await tx('limits').where(scope).delete();
  const rows = (
    [
      ['messages', limits.messages],
      ['tokens', limits.tokens],
      ['cost', limits.cost],
    ] as const
  )
    .filter(([, amount]) => amount !== undefined)
    .map(([measure, amount]) => ({ ...scope, measure, amount: amount instanceof Dec ? amount.toFixed() : String(amount) }));
  if (rows.length) await tx('limits').insert(rows);
}

/** The daily limits of the given scopes of an account ('' = account-wide); scopes without limits are absent. */
export async function readDailyLimits(db: Db | Tx, accountId: string, userIds: string[]): Promise<Map<string, DailyLimits>> {
  const rows: LimitRow[] = await db('limits')
    .select('account_id', 'user_id', 'measure', 'amount', 'updated_at')
    .where({ account_id: accountId, period: 'day' })
    .whereIn('user_id', userIds);
  const byScope = new Map<string, DailyLimits>();
  for (const r of rows) {
    const limits = byScope.get(r.user_id) ?? { accountId: r.account_id, userId: r.user_id };
    if (r.measure === 'cost') limits.cost = new Dec(r.amount);
    else limits[r.measure] = BigInt(r.amount);
    if (!limits.updateTime || r.updated_at > limits.updateTime) limits.updateTime = r.updated_at;
    byScope.set(r.user_id, limits);
  }
  return byScope;
}

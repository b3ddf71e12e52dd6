import { Dec } from '@metering/pricing';
import type { DailyLimits, LimitMeasure, UsageCounter } from '@metering/domain';
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
  return limitsByScope(rows);
}

function limitsByScope(rows: LimitRow[]): Map<string, DailyLimits> {
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

/**
 * What CheckLimits reads, in one round trip of primary-key reads: the daily
 * limits of the user and of its account, and their counters of the day.
 * A constant SQL text: nothing is built per call.
 */
const CHECK_STATE_SQL = `
  SELECT 'limit' AS kind, user_id, measure, amount::text AS amount, updated_at, NULL::text AS message_count, NULL::text AS total_tokens
    FROM limits WHERE account_id = ? AND period = 'day' AND user_id IN ('', ?)
  UNION ALL
  SELECT 'counter', user_id, NULL, total_cost::text, updated_at, message_count::text, total_tokens::text
    FROM usage_counters WHERE account_id = ? AND period = 'day' AND period_start = ? AND user_id IN ('', ?)`;

export async function readLimitCheckState(
  db: Db,
  accountId: string,
  userId: string,
  day: string,
): Promise<{ limits: Map<string, DailyLimits>; user: UsageCounter; account: UsageCounter }> {
  const { rows } = await db.raw(CHECK_STATE_SQL, [accountId, userId, accountId, day, userId]);
  type Row = { kind: 'limit' | 'counter'; user_id: string; measure: LimitMeasure; amount: string; updated_at: Date; message_count: string; total_tokens: string };
  const all = rows as Row[];
  const limits = limitsByScope(all.filter((r) => r.kind === 'limit').map((r) => ({ ...r, account_id: accountId })));
  const counter = (id: string): UsageCounter => {
    const r = all.find((x) => x.kind === 'counter' && x.user_id === id);
    return { messageCount: BigInt(r?.message_count ?? 0), totalTokens: BigInt(r?.total_tokens ?? 0), totalCost: new Dec(r?.amount ?? 0) };
  };
  return { limits, user: counter(userId), account: counter('') };
}

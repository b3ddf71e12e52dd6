import { Dec } from '@metering/pricing';
import type { ChargeRecord, DailyUsageQuery, RollupKey, UsageCounter } from '@metering/domain';
import type { Db, Tx } from './db';

/** SQL of the rollups: daily_usage (reports) and usage_counters (limit checks). No business rules. */

/** Sums over a set of charges, exact (bigint tokens, decimal money). */
export interface UsageSums {
  messageCount: bigint;
  unpricedMessageCount: bigint;
  promptTokens: bigint;
  completionTokens: bigint;
  reasoningTokens: bigint;
  cachedPromptTokens: bigint;
  cacheWriteTokens: bigint;
  totalTokens: bigint;
  providerCost: Dec;
  promptCost: Dec;
  completionCost: Dec;
  totalCost: Dec;
}

export interface DailyUsageRow extends RollupKey {
  sums: UsageSums;
}

const SUM_COLUMNS = [
  'message_count', 'unpriced_message_count', 'prompt_tokens', 'completion_tokens', 'reasoning_tokens',
  'cached_prompt_tokens', 'cache_write_tokens', 'total_tokens', 'provider_cost', 'prompt_cost', 'completion_cost', 'total_cost',
] as const;
type SumRow = Record<(typeof SUM_COLUMNS)[number], string | null>;

function fromSumRow(r: SumRow): UsageSums {
  const int = (v: string | null) => BigInt(v ?? 0);
  const dec = (v: string | null) => new Dec(v ?? 0);
  return {
    messageCount: int(r.message_count),
    unpricedMessageCount: int(r.unpriced_message_count),
    promptTokens: int(r.prompt_tokens),
    completionTokens: int(r.completion_tokens),
    reasoningTokens: int(r.reasoning_tokens),
    cachedPromptTokens: int(r.cached_prompt_tokens),
    cacheWriteTokens: int(r.cache_write_tokens),
    totalTokens: int(r.total_tokens),
    providerCost: dec(r.provider_cost),
    promptCost: dec(r.prompt_cost),
    completionCost: dec(r.completion_cost),
    totalCost: dec(r.total_cost),
  };
}

/**
 * Adds one charge to its daily rollup row and to the day counters of its user
 * and its account, in the caller's transaction. Rows are touched in a fixed
 * order (rollup, then counters by primary key: account '' before any user) so
 * concurrent writers cannot deadlock.
 */
export async function addChargeToRollups(tx: Tx, c: ChargeRecord): Promise<void> {
  const unpriced = c.pricingStatus === 'unpriced' ? 1 : 0;
  const cost = c.costs ?? { providerCost: '0', promptCost: '0', completionCost: '0', totalCost: '0' };
  await tx.raw(
    `INSERT INTO daily_usage AS d (account_id, usage_date, user_id, provider, model, charge_type,
       message_count, unpriced_message_count, prompt_tokens, completion_tokens, reasoning_tokens,
       cached_prompt_tokens, cache_write_tokens, total_tokens, provider_cost, prompt_cost, completion_cost, total_cost)
     VALUES (?, ?, ?, ?, ?, ?, 1, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?, ?)
     ON CONFLICT (account_id, usage_date, user_id, provider, model, charge_type) DO UPDATE SET
       message_count = d.message_count + 1,
       unpriced_message_count = d.unpriced_message_count + excluded.unpriced_message_count,
       prompt_tokens = d.prompt_tokens + excluded.prompt_tokens,
       completion_tokens = d.completion_tokens + excluded.completion_tokens,
       reasoning_tokens = d.reasoning_tokens + excluded.reasoning_tokens,
       cached_prompt_tokens = d.cached_prompt_tokens + excluded.cached_prompt_tokens,
       cache_write_tokens = d.cache_write_tokens + excluded.cache_write_tokens,
       total_tokens = d.total_tokens + excluded.total_tokens,
       provider_cost = d.provider_cost + excluded.provider_cost,
       prompt_cost = d.prompt_cost + excluded.prompt_cost,
       completion_cost = d.completion_cost + excluded.completion_cost,
       total_cost = d.total_cost + excluded.total_cost,
       updated_at = now()`,
    [
      c.accountId, c.usageDate, c.userId, c.provider, c.model, c.chargeType, unpriced,
      c.tokens.promptTokens, c.tokens.completionTokens, c.tokens.reasoningTokens, c.tokens.cachedPromptTokens,
      c.tokens.cacheWriteTokens, c.totalTokens, cost.providerCost, cost.promptCost, cost.completionCost, cost.totalCost,
    ],
  );
  for (const scope of ['', c.userId]) {
    await tx.raw(
      `INSERT INTO usage_counters AS u (account_id, period, period_start, user_id, message_count, unpriced_message_count, total_tokens, total_cost)
       VALUES (?, 'day', ?, ?, 1, ?, ?, ?)
       ON CONFLICT (account_id, period, period_start, user_id) DO UPDATE SET
         message_count = u.message_count + 1,
         unpriced_message_count = u.unpriced_message_count + excluded.unpriced_message_count,
         total_tokens = u.total_tokens + excluded.total_tokens,
         total_cost = u.total_cost + excluded.total_cost,
         updated_at = now()`,
      [c.accountId, c.usageDate, scope, unpriced, c.totalTokens, cost.totalCost],
    );
  }
}

function filtered(db: Db, q: DailyUsageQuery) {
  const query = db('daily_usage').where('account_id', q.accountId).whereBetween('usage_date', [q.startDate, q.endDate]);
  if (q.userId !== undefined) query.where('user_id', q.userId);
  if (q.provider !== undefined) query.where('provider', q.provider);
  if (q.model !== undefined) query.where('model', q.model);
  if (q.chargeType !== undefined) query.where('charge_type', q.chargeType);
  return query;
}

const KEY_COLUMNS = ['usage_date', 'user_id', 'provider', 'model', 'charge_type'] as const;

/** One page of rollup rows in key order, after q.after; fetches one extra row to tell whether more follow. */
export async function listDailyUsage(db: Db, q: DailyUsageQuery): Promise<DailyUsageRow[]> {
  const query = filtered(db, q).select([...KEY_COLUMNS, ...SUM_COLUMNS]);
  if (q.after) {
    const a = q.after;
    query.whereRaw('(usage_date, user_id, provider, model, charge_type) > (?, ?, ?, ?, ?)', [a.usageDate, a.userId, a.provider, a.model, a.chargeType]);
  }
  const rows = await query.orderBy([...KEY_COLUMNS]).limit(q.pageSize + 1);
  return rows.map((r: SumRow & { usage_date: string; user_id: string; provider: string; model: string; charge_type: RollupKey['chargeType'] }) => ({
    usageDate: r.usage_date,
    userId: r.user_id,
    provider: r.provider,
    model: r.model,
    chargeType: r.charge_type,
    sums: fromSumRow(r),
  }));
}

/** Sums of every rollup row the query matches (all pages). */
export async function sumDailyUsage(db: Db, q: DailyUsageQuery): Promise<UsageSums> {
  const row = await filtered(db, q)
    .select(SUM_COLUMNS.map((c) => db.raw('sum(??)::text as ??', [c, c])))
    .first();
  return fromSumRow(row as SumRow);
}

/** Today's counters of a user and of its account: one primary-key range read. */
export async function readDayCounters(db: Db, accountId: string, userId: string, day: string): Promise<{ user: UsageCounter; account: UsageCounter }> {
  const rows: Array<{ user_id: string; message_count: string; total_tokens: string; total_cost: string }> = await db('usage_counters')
    .select('user_id', 'message_count', 'total_tokens', 'total_cost')
    .where({ account_id: accountId, period: 'day', period_start: day })
    .whereIn('user_id', ['', userId]);
  const counter = (id: string): UsageCounter => {
    const r = rows.find((x) => x.user_id === id);
    return { messageCount: BigInt(r?.message_count ?? 0), totalTokens: BigInt(r?.total_tokens ?? 0), totalCost: new Dec(r?.total_cost ?? 0) };
  };
  return { user: counter(userId), account: counter('') };
}

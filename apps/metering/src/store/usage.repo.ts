import { Dec } from '@metering/pricing';
import { DailyUsageQuery, RollupKey, RollupSums, ROLLUP_INT_SUMS, ROLLUP_MONEY_SUMS } from '@metering/domain';
import type { Db } from './db';

/** SQL that reads the daily rollups (daily_usage); ledger.repo.ts writes them. No business rules. */

export interface DailyUsageRow extends RollupKey {
  sums: RollupSums;
}

/** The daily_usage column of each rollup sum. */
export const ROLLUP_COLUMNS: Record<keyof RollupSums, string> = {
  messageCount: 'message_count',
  unpricedMessageCount: 'unpriced_message_count',
  promptTokens: 'prompt_tokens',
  completionTokens: 'completion_tokens',
  reasoningTokens: 'reasoning_tokens',
  cachedPromptTokens: 'cached_prompt_tokens',
  cacheWriteTokens: 'cache_write_tokens',
  cacheWrite1hTokens: 'cache_write_1h_tokens',
  audioPromptTokens: 'audio_prompt_tokens',
  cachedAudioPromptTokens: 'cached_audio_prompt_tokens',
  imagePromptTokens: 'image_prompt_tokens',
  cachedImagePromptTokens: 'cached_image_prompt_tokens',
  audioCompletionTokens: 'audio_completion_tokens',
  imageCompletionTokens: 'image_completion_tokens',
  totalTokens: 'total_tokens',
  callCount: 'call_count',
  providerCost: 'provider_cost',
  promptCost: 'prompt_cost',
  completionCost: 'completion_cost',
  callCost: 'call_cost',
  totalCost: 'total_cost',
};
const SUM_COLUMNS = Object.values(ROLLUP_COLUMNS);
type SumRow = Record<string, string | null>;

function fromSumRow(r: SumRow): RollupSums {
  const sums = {} as RollupSums;
  for (const k of ROLLUP_INT_SUMS) sums[k] = BigInt(r[ROLLUP_COLUMNS[k]] ?? 0);
  for (const k of ROLLUP_MONEY_SUMS) sums[k] = new Dec(r[ROLLUP_COLUMNS[k]] ?? 0);
  return sums;
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
export async function sumDailyUsage(db: Db, q: DailyUsageQuery): Promise<RollupSums> {
  const row = await filtered(db, q)
    .select(SUM_COLUMNS.map((c) => db.raw('sum(??)::text as ??', [c, c])))
    .first();
  return fromSumRow(row as SumRow);
}

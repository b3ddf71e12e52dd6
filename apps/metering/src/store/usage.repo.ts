import { Dec } from '@metering/pricing';
import { DailyUsageQuery, RollupKey, RollupSums, ROLLUP_INT_SUMS, ROLLUP_MONEY_SUMS } from '@metering/domain';
import type { Knex } from 'knex';
import type { Db } from './db';

/** SQL that reads the daily rollups (daily_usage; ledger.repo.ts writes them), or the same sums from the charges in another time zone. No business rules. */

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

/**
 * daily_usage as it would be in another time zone: the account's charges summed per day of their
 * usage_time in `q.timeZone`. Candidates come from two index scans (see migration
 * 20261201130000_charges_settled_late): by usage_date with two days' margin (a charge's
 * usage_date is never more than a day after its UTC date), and the few charges that settled an
 * earlier reservation, by time. A constant SQL text with positional parameters.
 */
const CHARGE_SUMS = Object.entries(ROLLUP_COLUMNS)
  .filter(([k]) => k !== 'messageCount' && k !== 'unpricedMessageCount')
  .map(([k, c]) => ((ROLLUP_MONEY_SUMS as readonly string[]).includes(k) ? `coalesce(sum(${c}), 0) AS ${c}` : `sum(${c}) AS ${c}`))
  .join(', ');
const DAILY_USAGE_IN_ZONE = `(
  SELECT account_id, (usage_time AT TIME ZONE ?)::date AS usage_date, user_id, provider, model, charge_type,
         count(*) AS message_count, count(*) FILTER (WHERE pricing_status = 'unpriced') AS unpriced_message_count, ${CHARGE_SUMS}
    FROM (SELECT * FROM charges WHERE account_id = ? AND usage_date BETWEEN ?::date - 2 AND ?::date + 2
          UNION ALL
          SELECT * FROM charges WHERE account_id = ? AND usage_date < ?::date - 2 AND usage_date < (usage_time AT TIME ZONE 'UTC')::date - 1
             AND usage_time >= (?::timestamp AT TIME ZONE ?)) c
   WHERE usage_time >= (?::timestamp AT TIME ZONE ?) AND usage_time < ((?::date + 1)::timestamp AT TIME ZONE ?)
   GROUP BY 1, 2, 3, 4, 5, 6) AS daily_usage`;

function source(db: Db, q: DailyUsageQuery): Knex.QueryBuilder {
  if (q.timeZone === undefined) return db('daily_usage');
  const [a, s, e, tz] = [q.accountId, q.startDate, q.endDate, q.timeZone];
  return db.from(db.raw(DAILY_USAGE_IN_ZONE, [tz, a, s, e, a, s, s, tz, s, tz, e, tz]));
}

function filtered(db: Db, q: DailyUsageQuery) {
  const query = source(db, q).where('account_id', q.accountId).whereBetween('usage_date', [q.startDate, q.endDate]);
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

import { Dec } from '@metering/pricing';
import type { ChargeRecord, DailyUsageQuery, RollupKey } from '@metering/domain';
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
  cacheWrite1hTokens: bigint;
  totalTokens: bigint;
  callCount: bigint;
  providerCost: Dec;
  promptCost: Dec;
  completionCost: Dec;
  callCost: Dec;
  totalCost: Dec;
}

export interface DailyUsageRow extends RollupKey {
  sums: UsageSums;
}

const INT_COLUMNS = {
  messageCount: 'message_count',
  unpricedMessageCount: 'unpriced_message_count',
  promptTokens: 'prompt_tokens',
  completionTokens: 'completion_tokens',
  reasoningTokens: 'reasoning_tokens',
  cachedPromptTokens: 'cached_prompt_tokens',
  cacheWriteTokens: 'cache_write_tokens',
  cacheWrite1hTokens: 'cache_write_1h_tokens',
  totalTokens: 'total_tokens',
  callCount: 'call_count',
} as const;
const MONEY_COLUMNS = {
  providerCost: 'provider_cost',
  promptCost: 'prompt_cost',
  completionCost: 'completion_cost',
  callCost: 'call_cost',
  totalCost: 'total_cost',
} as const;
type IntKey = keyof typeof INT_COLUMNS;
type MoneyKey = keyof typeof MONEY_COLUMNS;
const INT_KEYS = Object.keys(INT_COLUMNS) as IntKey[];
const MONEY_KEYS = Object.keys(MONEY_COLUMNS) as MoneyKey[];
const SUM_COLUMNS = [...Object.values(INT_COLUMNS), ...Object.values(MONEY_COLUMNS)];
type SumRow = Record<string, string | null>;

function fromSumRow(r: SumRow): UsageSums {
  const sums = {} as UsageSums;
  for (const k of INT_KEYS) sums[k] = BigInt(r[INT_COLUMNS[k]] ?? 0);
  for (const k of MONEY_KEYS) sums[k] = new Dec(r[MONEY_COLUMNS[k]] ?? 0);
  return sums;
}

export const ZERO_SUMS: UsageSums = fromSumRow({});

/** One change to the rollups: the sums to add (negative parts subtract) under one rollup key of an account. */
export interface RollupDelta extends RollupKey {
  accountId: string;
  sums: UsageSums;
}

/** What one charge adds to its rollups. */
export function deltaOfCharge(c: ChargeRecord): RollupDelta {
  const t = c.tokens;
  const cost = c.costs;
  return {
    accountId: c.accountId,
    usageDate: c.usageDate,
    userId: c.userId,
    provider: c.provider,
    model: c.model,
    chargeType: c.chargeType,
    sums: {
      messageCount: 1n,
      unpricedMessageCount: c.pricingStatus === 'unpriced' ? 1n : 0n,
      promptTokens: BigInt(t.promptTokens),
      completionTokens: BigInt(t.completionTokens),
      reasoningTokens: BigInt(t.reasoningTokens),
      cachedPromptTokens: BigInt(t.cachedPromptTokens),
      cacheWriteTokens: BigInt(t.cacheWriteTokens),
      cacheWrite1hTokens: BigInt(t.cacheWrite1hTokens),
      totalTokens: BigInt(c.totalTokens),
      callCount: BigInt(c.callCount),
      providerCost: new Dec(cost?.providerCost ?? 0),
      promptCost: new Dec(cost?.promptCost ?? 0),
      completionCost: new Dec(cost?.completionCost ?? 0),
      callCost: new Dec(cost?.callCost ?? 0),
      totalCost: new Dec(cost?.totalCost ?? 0),
    },
  };
}

/** a - b, part by part (for re-rating: the new pricing of a charge minus the old). */
export function subtractSums(a: UsageSums, b: UsageSums): UsageSums {
  const out = {} as UsageSums;
  for (const k of INT_KEYS) out[k] = a[k] - b[k];
  for (const k of MONEY_KEYS) out[k] = a[k].minus(b[k]);
  return out;
}

function addSums(a: UsageSums, b: UsageSums): UsageSums {
  const out = {} as UsageSums;
  for (const k of INT_KEYS) out[k] = a[k] + b[k];
  for (const k of MONEY_KEYS) out[k] = a[k].plus(b[k]);
  return out;
}

/** Adds up deltas with the same key, and returns them in key order (the lock order of their rows). */
function aggregate<K>(items: Array<{ key: K; id: string; sums: UsageSums }>): Array<{ key: K; sums: UsageSums }> {
  const byId = new Map<string, { key: K; sums: UsageSums }>();
  for (const item of items) {
    const seen = byId.get(item.id);
    byId.set(item.id, seen ? { key: seen.key, sums: addSums(seen.sums, item.sums) } : { key: item.key, sums: item.sums });
  }
  return [...byId.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
}

const SEP = '\u0000';

/**
 * Applies rollup deltas in the caller's transaction: the daily_usage rows
 * (reports) and the day counters of each user and of its account (limit
 * checks, user_id '' = the account). Deltas are pre-aggregated per row and
 * applied in a fixed key order, daily_usage before usage_counters, so
 * concurrent writers cannot deadlock.
 */
export async function applyRollupDeltas(tx: Tx, deltas: RollupDelta[]): Promise<void> {
  if (deltas.length === 0) return;
  const daily = aggregate(deltas.map((d) => ({ key: d, id: [d.accountId, d.usageDate, d.userId, d.provider, d.model, d.chargeType].join(SEP), sums: d.sums })));
  const dailyRows = daily.map(({ key: d, sums }) => ({
    account_id: d.accountId, usage_date: d.usageDate, user_id: d.userId, provider: d.provider, model: d.model, charge_type: d.chargeType,
    ...Object.fromEntries(INT_KEYS.map((k) => [INT_COLUMNS[k], sums[k].toString()])),
    ...Object.fromEntries(MONEY_KEYS.map((k) => [MONEY_COLUMNS[k], sums[k].toFixed()])),
  }));
  await tx('daily_usage')
    .insert(dailyRows)
    .onConflict(['account_id', 'usage_date', 'user_id', 'provider', 'model', 'charge_type'])
    .merge(Object.fromEntries([...SUM_COLUMNS.map((c) => [c, tx.raw('?? + excluded.??', [`daily_usage.${c}`, c])]), ['updated_at', tx.fn.now()]]));

  const counters = aggregate(
    deltas.flatMap((d) =>
      ['', d.userId].map((userId) => ({ key: { accountId: d.accountId, periodStart: d.usageDate, userId }, id: [d.accountId, 'day', d.usageDate, userId].join(SEP), sums: d.sums })),
    ),
  );
  await tx('usage_counters')
    .insert(
      counters.map(({ key, sums }) => ({
        account_id: key.accountId, period: 'day', period_start: key.periodStart, user_id: key.userId,
        message_count: sums.messageCount.toString(), unpriced_message_count: sums.unpricedMessageCount.toString(),
        total_tokens: sums.totalTokens.toString(), total_cost: sums.totalCost.toFixed(),
      })),
    )
    .onConflict(['account_id', 'period', 'period_start', 'user_id'])
    .merge(
      Object.fromEntries([
        ...['message_count', 'unpriced_message_count', 'total_tokens', 'total_cost'].map((c) => [c, tx.raw('?? + excluded.??', [`usage_counters.${c}`, c])]),
        ['updated_at', tx.fn.now()],
      ]),
    );
}

/** Adds one charge to its daily rollup row and to the day counters of its user and its account. */
export async function addChargeToRollups(tx: Tx, c: ChargeRecord): Promise<void> {
  await applyRollupDeltas(tx, [deltaOfCharge(c)]);
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

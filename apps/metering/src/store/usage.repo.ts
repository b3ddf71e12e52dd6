import { Dec, TOKEN_CLASSES, TokenCounts } from '@metering/pricing';
import { ChargeRecord, DailyUsageQuery, LimitPeriod, periodStartOf, RollupKey, UsageChange, UsageCounter } from '@metering/domain';
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
  audioPromptTokens: bigint;
  cachedAudioPromptTokens: bigint;
  imagePromptTokens: bigint;
  cachedImagePromptTokens: bigint;
  audioCompletionTokens: bigint;
  imageCompletionTokens: bigint;
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
  audioPromptTokens: 'audio_prompt_tokens',
  cachedAudioPromptTokens: 'cached_audio_prompt_tokens',
  imagePromptTokens: 'image_prompt_tokens',
  cachedImagePromptTokens: 'cached_image_prompt_tokens',
  audioCompletionTokens: 'audio_completion_tokens',
  imageCompletionTokens: 'image_completion_tokens',
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
      ...(Object.fromEntries(TOKEN_CLASSES.map((k) => [k, BigInt(t[k])])) as Record<keyof TokenCounts, bigint>),
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

/** What a rollup delta moves of the usage that limits count. */
export function usageChangeOf(d: RollupDelta): UsageChange {
  return { accountId: d.accountId, userId: d.userId, usageDate: d.usageDate, used: { messageCount: d.sums.messageCount, totalTokens: d.sums.totalTokens, totalCost: d.sums.totalCost } };
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

/** Adds up items with the same id, and returns them in id order (the lock order of their rows). */
function aggregate<K, S>(items: Array<{ key: K; id: string; sums: S }>, add: (a: S, b: S) => S): Array<{ key: K; sums: S }> {
  const byId = new Map<string, { key: K; sums: S }>();
  for (const item of items) {
    const seen = byId.get(item.id);
    byId.set(item.id, seen ? { key: seen.key, sums: add(seen.sums, item.sums) } : { key: item.key, sums: item.sums });
  }
  return [...byId.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, v]) => v);
}

const SEP = '\u0000';

/** A change to the amounts open reservations hold on the day and month counters of a user and of its account. */
export interface HoldDelta {
  accountId: string;
  userId: string;
  /** The local day whose day and month counters hold the amounts. */
  periodDay: string;
  messages: bigint;
  tokens: bigint;
  cost: Dec;
}

/** A usage counter row: a scope (user_id '' = the account) and period of an account. */
export interface CounterKey {
  accountId: string;
  period: LimitPeriod;
  periodStart: string;
  userId: string;
}

const COUNTER_COLUMNS = ['message_count', 'unpriced_message_count', 'total_tokens', 'total_cost', 'reserved_messages', 'reserved_tokens', 'reserved_cost'] as const;
type CounterColumn = (typeof COUNTER_COLUMNS)[number];
type CounterSums = Record<CounterColumn, Dec>;
const ZERO_COUNTER = Object.fromEntries(COUNTER_COLUMNS.map((c) => [c, new Dec(0)])) as CounterSums;
const addCounters = (a: CounterSums, b: CounterSums) => Object.fromEntries(COUNTER_COLUMNS.map((c) => [c, a[c].plus(b[c])])) as CounterSums;

/** The four counters a user's usage on a local day moves: day and month, of the user and of its account. */
function countersOf(accountId: string, userId: string, day: string, sums: CounterSums) {
  return (['day', 'month'] as const).flatMap((period) =>
    ['', userId].map((u) => {
      const key: CounterKey = { accountId, period, periodStart: periodStartOf(period, day), userId: u };
      return { key, id: [accountId, period, key.periodStart, u].join(SEP), sums };
    }),
  );
}

export interface CounterRow extends CounterKey {
  used: UsageCounter;
  reserved: UsageCounter;
}

/**
 * Adds to usage counters, creating missing rows, in one statement in a fixed
 * key order (so concurrent writers lock rows in the same order and cannot
 * deadlock), and returns the rows as they now are.
 */
async function upsertCounters(tx: Tx, items: ReturnType<typeof countersOf>): Promise<CounterRow[]> {
  const rows = aggregate(items, addCounters);
  if (rows.length === 0) return [];
  const stored: Array<Record<string, string>> = await tx('usage_counters')
    .insert(
      rows.map(({ key, sums }) => ({
        account_id: key.accountId, period: key.period, period_start: key.periodStart, user_id: key.userId,
        ...Object.fromEntries(COUNTER_COLUMNS.map((c) => [c, sums[c].toFixed()])),
      })),
    )
    .onConflict(['account_id', 'period', 'period_start', 'user_id'])
    .merge(Object.fromEntries([...COUNTER_COLUMNS.map((c) => [c, tx.raw('?? + excluded.??', [`usage_counters.${c}`, c])]), ['updated_at', tx.fn.now()]]))
    .returning(['account_id', 'period', 'period_start', 'user_id', ...COUNTER_COLUMNS]);
  return stored.map(toCounterRow);
}

export function toCounterRow(r: Record<string, string>): CounterRow {
  return {
    accountId: r.account_id, period: r.period as LimitPeriod, periodStart: r.period_start, userId: r.user_id,
    used: { messageCount: BigInt(r.message_count ?? 0), totalTokens: BigInt(r.total_tokens ?? 0), totalCost: new Dec(r.total_cost ?? 0) },
    reserved: { messageCount: BigInt(r.reserved_messages ?? 0), totalTokens: BigInt(r.reserved_tokens ?? 0), totalCost: new Dec(r.reserved_cost ?? 0) },
  };
}

/**
 * Applies rollup deltas in the caller's transaction: the daily_usage rows
 * (reports), and the day and month counters of each user and of its account
 * (limit checks, user_id '' = the account), together with changes to the
 * amounts reservations hold. Deltas are pre-aggregated per row and applied in
 * a fixed key order, daily_usage before usage_counters, so concurrent writers
 * cannot deadlock. Returns the counter rows as they now are (zero holds lock
 * and read counters: what a reservation does before deciding).
 */
export async function applyRollupDeltas(tx: Tx, deltas: RollupDelta[], holds: HoldDelta[] = []): Promise<CounterRow[]> {
  if (deltas.length > 0) {
    const daily = aggregate(
      deltas.map((d) => ({ key: d, id: [d.accountId, d.usageDate, d.userId, d.provider, d.model, d.chargeType].join(SEP), sums: d.sums })),
      addSums,
    );
    const dailyRows = daily.map(({ key: d, sums }) => ({
      account_id: d.accountId, usage_date: d.usageDate, user_id: d.userId, provider: d.provider, model: d.model, charge_type: d.chargeType,
      ...Object.fromEntries(INT_KEYS.map((k) => [INT_COLUMNS[k], sums[k].toString()])),
      ...Object.fromEntries(MONEY_KEYS.map((k) => [MONEY_COLUMNS[k], sums[k].toFixed()])),
    }));
    await tx('daily_usage')
      .insert(dailyRows)
      .onConflict(['account_id', 'usage_date', 'user_id', 'provider', 'model', 'charge_type'])
      .merge(Object.fromEntries([...SUM_COLUMNS.map((c) => [c, tx.raw('?? + excluded.??', [`daily_usage.${c}`, c])]), ['updated_at', tx.fn.now()]]));
  }
  return upsertCounters(tx, [
    ...deltas.flatMap((d) =>
      countersOf(d.accountId, d.userId, d.usageDate, {
        ...ZERO_COUNTER,
        message_count: new Dec(d.sums.messageCount.toString()),
        unpriced_message_count: new Dec(d.sums.unpricedMessageCount.toString()),
        total_tokens: new Dec(d.sums.totalTokens.toString()),
        total_cost: d.sums.totalCost,
      }),
    ),
    ...holds.flatMap((h) =>
      countersOf(h.accountId, h.userId, h.periodDay, {
        ...ZERO_COUNTER,
        reserved_messages: new Dec(h.messages.toString()),
        reserved_tokens: new Dec(h.tokens.toString()),
        reserved_cost: h.cost,
      }),
    ),
  ]);
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

import { counterId, CounterDelta, CounterKey, CounterState, LedgerEntries, LedgerEvent, LimitPeriod, ROLLUP_INT_SUMS, ROLLUP_MONEY_SUMS, ZERO_USAGE } from '@metering/domain';
import { Dec } from '@metering/pricing';
import type { Tx } from './db';
import { appendEvents } from './events.repo';
import { finishReservations } from './reservations.repo';
import { ROLLUP_COLUMNS } from './usage.repo';

/**
 * Applies the usage ledger's entries (libs/domain/src/ledger.ts) in the
 * caller's transaction, in the one order every write path uses, so that
 * concurrent writers lock rows in the same order and cannot deadlock:
 *
 *   reservations (already locked by the caller, in id order) -> daily_usage
 *   (key order) -> usage_counters (key order) -> the outbox (last: its
 *   per-account sequence row is held until commit).
 *
 * Charges are inserted by the caller before (their idempotency keys decide
 * what is new). Every statement filters on or writes one account's rows by
 * account_id (a batch of several accounts writes each account's rows), and
 * timestamps are parameters, not the database's clock. No business rules.
 */

const COUNTER_COLUMNS = ['message_count', 'unpriced_message_count', 'total_tokens', 'total_cost', 'reserved_messages', 'reserved_tokens', 'reserved_cost'] as const;
const COUNTER_KEY = ['account_id', 'period', 'period_start', 'user_id'];

export function toCounterState(r: Record<string, string>): CounterState {
  return {
    accountId: r.account_id, period: r.period as LimitPeriod, periodStart: r.period_start, userId: r.user_id,
    used: { messageCount: BigInt(r.message_count ?? 0), totalTokens: BigInt(r.total_tokens ?? 0), totalCost: new Dec(r.total_cost ?? 0) },
    reserved: { messageCount: BigInt(r.reserved_messages ?? 0), totalTokens: BigInt(r.reserved_tokens ?? 0), totalCost: new Dec(r.reserved_cost ?? 0) },
  };
}

const counterRow = (d: CounterDelta, now: Date) => ({
  account_id: d.key.accountId, period: d.key.period, period_start: d.key.periodStart, user_id: d.key.userId,
  message_count: d.used.messageCount.toString(), unpriced_message_count: d.unpricedMessages.toString(), total_tokens: d.used.totalTokens.toString(), total_cost: d.used.totalCost.toFixed(),
  reserved_messages: d.reserved.messageCount.toString(), reserved_tokens: d.reserved.totalTokens.toString(), reserved_cost: d.reserved.totalCost.toFixed(),
  updated_at: now,
});

/** Adds deltas to usage counters (creating missing rows) in one statement, in the given (key) order; returns the rows as they now are. */
async function upsertCounters(tx: Tx, deltas: CounterDelta[], now: Date): Promise<CounterState[]> {
  if (deltas.length === 0) return [];
  const stored: Array<Record<string, string>> = await tx('usage_counters')
    .insert(deltas.map((d) => counterRow(d, now)))
    .onConflict(COUNTER_KEY)
    .merge(Object.fromEntries([...COUNTER_COLUMNS.map((c) => [c, tx.raw('?? + excluded.??', [`usage_counters.${c}`, c])]), ['updated_at', tx.raw('excluded.updated_at')]]))
    .returning([...COUNTER_KEY, ...COUNTER_COLUMNS]);
  return stored.map(toCounterState);
}

/**
 * Locks usage counters (creating missing ones at zero) in key order and
 * returns them: what a decision against limits reads before it writes, so
 * that concurrent reservations and charges of the same counters queue here.
 * An upsert rather than SELECT FOR UPDATE, which cannot lock a row that does
 * not exist yet.
 */
export async function lockCounters(tx: Tx, keys: CounterKey[], now: Date): Promise<CounterState[]> {
  const sorted = [...new Map(keys.map((k) => [counterId(k), k])).entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, k]) => k);
  return upsertCounters(tx, sorted.map((key) => ({ key, used: ZERO_USAGE, unpricedMessages: 0n, reserved: ZERO_USAGE })), now);
}

async function upsertRollups(tx: Tx, entries: LedgerEntries, now: Date): Promise<void> {
  if (entries.rollups.length === 0) return;
  const rows = entries.rollups.map((d) => ({
    account_id: d.accountId, usage_date: d.usageDate, user_id: d.userId, provider: d.provider, model: d.model, charge_type: d.chargeType,
    ...Object.fromEntries(ROLLUP_INT_SUMS.map((k) => [ROLLUP_COLUMNS[k], d.sums[k].toString()])),
    ...Object.fromEntries(ROLLUP_MONEY_SUMS.map((k) => [ROLLUP_COLUMNS[k], d.sums[k].toFixed()])),
    updated_at: now,
  }));
  const sums = Object.values(ROLLUP_COLUMNS);
  await tx('daily_usage')
    .insert(rows)
    .onConflict(['account_id', 'usage_date', 'user_id', 'provider', 'model', 'charge_type'])
    .merge(Object.fromEntries([...sums.map((c) => [c, tx.raw('?? + excluded.??', [`daily_usage.${c}`, c])]), ['updated_at', tx.raw('excluded.updated_at')]]));
}

/**
 * Applies entries: reservations leave the held state, rollups and counters
 * move, and the events (the entries' own, then those `eventsAfter` derives
 * from the counters as now stored, e.g. soft limits crossed) go to the outbox.
 * Returns the counters the entries moved, as they now are.
 */
export async function applyEntries(tx: Tx, entries: LedgerEntries, now: Date, eventsAfter: (counters: CounterState[]) => LedgerEvent[] = () => []): Promise<CounterState[]> {
  await finishReservations(tx, entries.reservations);
  await upsertRollups(tx, entries, now);
  const counters = await upsertCounters(tx, entries.counters, now);
  await appendEvents(tx, [...entries.events, ...eventsAfter(counters)]);
  return counters;
}

import { Dec, TOKEN_CLASSES, type TokenCounts } from '@metering/pricing';
import type { Alert, WebhookEndpoint } from './alerts';
import type { ChargeRecord } from './charge';
import type { BalanceEntryDraft, CreditEntries, CreditHold, GrantDelta, Grant, OverageDelta } from './credits';
import type { SoftLimitCrossing } from './events';
import { extraScopesOf, hourStartOf, type HourUsage, Limit, LimitPeriod, periodStartOf, softLimitCrossings, UsageChange, UsageCounter, ZERO_USAGE } from './limits';
import type { Reservation, ReservationRef, ReservationStatus } from './reservation';
import type { RollupKey } from './usage';

/**
 * The usage ledger: what every kind of change does to usage, decided in one
 * place, with no I/O. A service reads what a decision needs, describes what
 * happened as changes, and hands the entries this module makes of them to the
 * store, which applies them in its one safe order (apps/metering/src/store/
 * ledger.repo.ts; docs/architecture.md explains the write path).
 *
 * The kinds of change, and what each makes:
 *
 * | change         | rollups (daily_usage) | counters: used       | counters: reserved | reservation      | event               |
 * |----------------|-----------------------|----------------------|--------------------|------------------|---------------------|
 * | charge_recorded| + the charge          | + the charge         |                    |                  | charge_recorded     |
 * | charge_rerated | + (after - before)    | + (after - before)   |                    |                  | charge_rerated      |
 * | hold_placed    |                       |                      | + the hold         | (inserted first) |                     |
 * | hold_settled   |                       |                      | - the hold if held | settled          |                     |
 * | hold_released  |                       |                      | - the hold         | released         |                     |
 * | hold_expired   |                       |                      | - the hold         | expired          | reservation_expired |
 *
 * Credits (libs/domain/src/credits.ts decides them; each makes a balance entry):
 *
 * | change               | grant                 | balance entry  | other                       | event         |
 * |----------------------|-----------------------|----------------|-----------------------------|---------------|
 * | grant_created        | (inserted first)      | grant +        |                             | grant_created |
 * | credit_burned        | spent +               | burn -         |                             |               |
 * | credit_refunded      | spent -               | refund +       |                             |               |
 * | credit_overage       |                       | overage (0)    | credit_overage + (month)    |               |
 * | credit_held          | held +                | hold -         |                             |               |
 * | credit_hold_released | held -                | hold_released +|                             |               |
 * | credit_holds_placed  |                       |                | reservation's credit_holds  |               |
 * | grant_expired        | expired +             | expiry -       |                             | grant_expired |
 * | grant_voided         | voided + (void time)  | void -         |                             |               |
 *
 * A charge of an account with declared dimensions (libs/domain/src/dimensions.ts) also makes a
 * dimension rollup entry (dimension_usage): recorded and re-rated charges move the row whose
 * day, hour and tag values the charge records, summed per key and in key order like daily_usage.
 *
 * Counter entries are made for the counters a user's usage on a local
 * day moves: day and month, of the user and of its account (user_id ''), and
 * of the API key and declared tag values of the charge or hold (issue 20;
 * counterKeysOf, scopesOfCharge, scopesOfReservation).
 * A soft limit that the applied counters show crossed adds a
 * soft_limit_exceeded event (`softLimitEvents`, after the counters are known).
 *
 * A release makes no event on purpose: it is the caller's own synchronous
 * request, answered with the reservation, while an expiry happens without a
 * caller and the charge stream is the only way to learn of it. A hold placed
 * makes no event either (CheckLimits answers it); its reservation row is
 * inserted before the decision, because its idempotency key decides replays.
 *
 * A new kind of change (a refund, a credit burn) is one more case here and its
 * tests: the store applies whatever entries it is given.
 */

// ---- The amounts ----

/**
 * Everything a daily rollup row sums (the Django models' DailyBillingRecord and TokenUsage),
 * exact: bigint counts and tokens, decimal money. The family of amounts:
 * - RollupSums: one daily_usage row (reports);
 * - UsageCounter: what limits measure (messages, total tokens, billed cost);
 * - CounterDelta: a change to one usage_counters row (used, unpriced, reserved);
 * - CounterState / PeriodUsage: a counter as stored, and a scope's period as limits see it;
 * - UsageChange: what one change moved of one user's used amounts on one day (soft limits).
 */
export type RollupSums = { messageCount: bigint; unpricedMessageCount: bigint } & { [K in keyof TokenCounts]: bigint } & {
  totalTokens: bigint;
  callCount: bigint;
  providerCost: Dec;
  promptCost: Dec;
  completionCost: Dec;
  callCost: Dec;
  totalCost: Dec;
};

/** The integer sums: counts, every token class (libs/pricing TOKEN_CLASSES), total tokens, per-call calls. */
export const ROLLUP_INT_SUMS = ['messageCount', 'unpricedMessageCount', ...TOKEN_CLASSES, 'totalTokens', 'callCount'] as const;
export const ROLLUP_MONEY_SUMS = ['providerCost', 'promptCost', 'completionCost', 'callCost', 'totalCost'] as const;

export function combineSums(a: RollupSums, b: RollupSums, sign: 1n | -1n): RollupSums {
  const out = {} as RollupSums;
  for (const k of ROLLUP_INT_SUMS) out[k] = a[k] + sign * b[k];
  for (const k of ROLLUP_MONEY_SUMS) out[k] = sign === 1n ? a[k].plus(b[k]) : a[k].minus(b[k]);
  return out;
}

/** The sums to add (negative parts subtract) under one rollup key of an account. */
export interface RollupDelta extends RollupKey {
  accountId: string;
  sums: RollupSums;
}

/** The sums to add under one dimension rollup key (dimension_usage): a local day and hour, the rollup key, the API key and the declared tags' values. */
export interface DimensionDelta extends RollupKey {
  accountId: string;
  hour: number;
  apiKeyId: string;
  dims: Record<string, string>;
  sums: RollupSums;
}

/** A usage counter: a scope (user_id '' = the account; scope: an API key or a tag value, libs/domain/src/limits.ts apiKeyScope) and period of an account. */
export interface CounterKey {
  accountId: string;
  period: LimitPeriod;
  periodStart: string;
  userId: string;
  /** '' or absent for the account and its users; the key order is (account, period, start, user, scope). */
  scope?: string;
}

/** A change to one usage counter: the used amounts (of recorded charges) and the amounts open reservations hold. */
export interface CounterDelta {
  key: CounterKey;
  used: UsageCounter;
  unpricedMessages: bigint;
  reserved: UsageCounter;
}

/**
 * A usage hour (hourly_counters, issue 20): one scope's usage and holds in one UTC hour, what
 * rolling windows sum. The scopes are those of the counters (user '' = the account; scope: an
 * API key or a tag value). Key order (the lock order): account, hour, user, scope.
 */
export interface HourKey {
  accountId: string;
  /** The hour's start, RFC 3339 (UTC). */
  hourStart: string;
  userId: string;
  scope: string;
}

/** A change to one usage hour: used amounts (charges in that hour) and held ones (holds placed in it). */
export interface HourDelta {
  key: HourKey;
  used: UsageCounter;
  reserved: UsageCounter;
}

/** The usage hours of a user's usage (or hold) at a moment: the account's, the user's and each other scope's. */
export function hourKeysOf(accountId: string, userId: string, at: Date, scopes: readonly string[] = []): HourKey[] {
  const hourStart = hourStartOf(at).toISOString();
  return [{ accountId, hourStart, userId: '', scope: '' }, { accountId, hourStart, userId, scope: '' }, ...scopes.map((scope) => ({ accountId, hourStart, userId: '', scope }))];
}

/** A usage counter as stored. */
export interface CounterState extends CounterKey {
  used: UsageCounter;
  reserved: UsageCounter;
}

/** Zero, shared (a Dec never changes). */
const NO_DEC = new Dec(0);

const addUsage = (a: UsageCounter, b: UsageCounter): UsageCounter => ({
  messageCount: a.messageCount + b.messageCount,
  totalTokens: a.totalTokens + b.totalTokens,
  totalCost: a.totalCost.plus(b.totalCost),
});
const negate = (a: UsageCounter): UsageCounter => ({ messageCount: -a.messageCount, totalTokens: -a.totalTokens, totalCost: a.totalCost.negated() });

// ---- The changes ----

export type LedgerChange =
  | { kind: 'charge_recorded'; charge: ChargeRecord }
  | { kind: 'charge_rerated'; before: ChargeRecord; after: ChargeRecord }
  | { kind: 'hold_placed'; reservation: Reservation }
  /** The reservation as locked before the charge (held, or already expired: then its hold is gone). */
  | { kind: 'hold_settled'; reservation: Reservation; charge: ChargeRecord; at: Date }
  | { kind: 'hold_released'; reservation: Reservation; at: Date }
  | { kind: 'hold_expired'; reservation: Reservation; at: Date }
  // Credits (libs/domain/src/credits.ts, CreditBook, decides them).
  | { kind: 'grant_created'; grant: Grant }
  /** `grant` as it is after the expiry. */
  | { kind: 'grant_expired'; grant: Grant; amount: Dec; at: Date }
  /** `first`: the void itself (sets the void time); otherwise a hold on a voided grant that ended. */
  | { kind: 'grant_voided'; grant: Grant; amount: Dec; at: Date; first?: boolean; reason?: string; actor?: string }
  | { kind: 'credit_burned' | 'credit_refunded'; accountId: string; grantId: string; chargeId: string; amount: Dec; at: Date }
  /** What no grant covered of a charge (negative: refunded by re-rating), on the month of its local day. */
  | { kind: 'credit_overage'; accountId: string; chargeId: string; periodStart: string; amount: Dec; at: Date }
  | { kind: 'credit_held'; accountId: string; grantId: string; reservationId: string; amount: Dec; at: Date }
  | { kind: 'credit_hold_released'; accountId: string; grantId: string; reservationId: string; amount: Dec; at: Date; chargeId?: string }
  | { kind: 'credit_holds_placed'; accountId: string; reservationId: string; holds: CreditHold[] };

/** The available balance when it fell to the low threshold or to zero. */
export interface BalanceNotice {
  accountId: string;
  available: Dec;
  threshold?: Dec;
}

/** An event for the account's charge stream, as the outbox stores it. */
export type LedgerEvent =
  | { kind: 'charge_recorded' | 'charge_rerated'; charge: ChargeRecord }
  | { kind: 'reservation_expired'; reservation: Reservation }
  | { kind: 'soft_limit_exceeded'; softLimit: SoftLimitCrossing }
  | { kind: 'grant_created' | 'grant_expired'; grant: Grant }
  | { kind: 'balance_low' | 'balance_exhausted'; balance: BalanceNotice }
  /** An alert rule's threshold crossed (libs/domain/src/alerts.ts alertEvents): also queues its webhook deliveries. */
  | { kind: 'alert_triggered' | 'alert_resolved'; alert: Alert }
  | { kind: 'webhook_endpoint_disabled'; endpoint: WebhookEndpoint };

/** A reservation leaving the held state. */
export interface ReservationEntry {
  ref: ReservationRef;
  status: Exclude<ReservationStatus, 'held'>;
  at: Date;
  chargeId?: string;
}

/** What a set of changes does, aggregated per row and in each table's key order (the order rows are locked in). */
export interface LedgerEntries {
  rollups: RollupDelta[];
  /** Dimension rollups (accounts with declared dimensions only), in key order. */
  dimensions: DimensionDelta[];
  counters: CounterDelta[];
  /** Usage hours (hourly_counters, for rolling windows), in key order; written after the counters. */
  hours: HourDelta[];
  reservations: ReservationEntry[];
  events: LedgerEvent[];
  /** What each change moved of used amounts, in order (to tell which soft limits it crossed). */
  usage: UsageChange[];
  /** Credits: grants (key order), overage (key order), reservations' holds, balance entries (in the order of the changes). */
  credits: CreditEntries;
}

/** What one charge adds to its rollup. */
export function rollupOfCharge(c: ChargeRecord): RollupDelta {
  const sums = { messageCount: 1n, unpricedMessageCount: c.pricingStatus === 'unpriced' ? 1n : 0n } as RollupSums;
  for (const k of TOKEN_CLASSES) sums[k] = BigInt(c.tokens[k]);
  sums.totalTokens = BigInt(c.totalTokens);
  sums.callCount = BigInt(c.callCount);
  // An unpriced charge adds no cost.
  for (const k of ROLLUP_MONEY_SUMS) {
    const cost = c.costs?.[k];
    sums[k] = cost === undefined ? NO_DEC : new Dec(cost);
  }
  return { accountId: c.accountId, usageDate: c.usageDate, userId: c.userId, provider: c.provider, model: c.model, chargeType: c.chargeType, sums };
}

/**
 * The counters a user's usage on a local day moves: day and month, of the
 * account ('') and of the user, and of each other scope it belongs to
 * (`scopes`: its API key's and its declared tag values', extraScopesOf).
 */
export function counterKeysOf(accountId: string, userId: string, day: string, scopes: readonly string[] = []): CounterKey[] {
  return (['day', 'month'] as const).flatMap((period) => {
    const periodStart = periodStartOf(period, day);
    const keys: CounterKey[] = ['', userId].map((u) => ({ accountId, period, periodStart, userId: u }));
    for (const scope of scopes) keys.push({ accountId, period, periodStart, userId: '', scope });
    return keys;
  });
}

/** The other scopes a charge's usage moves: its API key's and the declared tag values it was summed under. */
export const scopesOfCharge = (c: Pick<ChargeRecord, 'apiKeyId' | 'dimensions'>): string[] => extraScopesOf(c.apiKeyId, c.dimensions);

/** The other scopes a reservation holds on: its API key's and the declared tag values it recorded when placed. */
export const scopesOfReservation = (r: Pick<Reservation, 'apiKeyId' | 'dimensions'>): string[] => extraScopesOf(r.apiKeyId, r.dimensions);

/** What a reservation holds on its counters: 1 message, its tokens and its cost. */
export const heldOf = (r: Reservation): UsageCounter => ({ messageCount: r.heldMessages, totalTokens: r.heldTokens, totalCost: r.heldCost });

/** A held reservation past its expiry reads as expired (the sweeper frees it within its interval). */
export function asSeen(r: Reservation, now: Date): Reservation {
  return r.status === 'held' && r.expireTime <= now ? { ...r, status: 'expired' } : r;
}

interface Made {
  rollups: RollupDelta[];
  dimensions: DimensionDelta[];
  counters: CounterDelta[];
  hours: HourDelta[];
  reservations: ReservationEntry[];
  events: LedgerEvent[];
  usage: UsageChange[];
  credits: CreditEntries;
}

function grantEntry(made: Made, accountId: string, grantId: string, d: Partial<Omit<GrantDelta, 'accountId' | 'grantId'>>): void {
  made.credits.grants.push({ accountId, grantId, spent: d.spent ?? NO_DEC, held: d.held ?? NO_DEC, expired: d.expired ?? NO_DEC, voided: d.voided ?? NO_DEC, ...(d.voidTime ? { voidTime: d.voidTime, voidReason: d.voidReason, voidActor: d.voidActor } : {}) });
}

const balanceEntry = (made: Made, e: BalanceEntryDraft) => made.credits.balance.push(e);

function usageEntries(made: Made, rollup: RollupDelta, scopes: string[], at: Date | undefined): void {
  const used = { messageCount: rollup.sums.messageCount, totalTokens: rollup.sums.totalTokens, totalCost: rollup.sums.totalCost };
  // The hour of the usage (every charge the services record has its usage time; a bare record without one moves no hour).
  if (at) for (const key of hourKeysOf(rollup.accountId, rollup.userId, at, scopes)) made.hours.push({ key, used, reserved: ZERO_USAGE });
  made.rollups.push(rollup);
  made.usage.push({ accountId: rollup.accountId, userId: rollup.userId, usageDate: rollup.usageDate, used, ...(scopes.length > 0 ? { scopes } : {}) });
  for (const key of counterKeysOf(rollup.accountId, rollup.userId, rollup.usageDate, scopes)) {
    made.counters.push({ key, used, unpricedMessages: rollup.sums.unpricedMessageCount, reserved: ZERO_USAGE });
  }
}

/** A charge's dimension rollup entry, when it was summed under dimensions (its account had declared them). */
function dimensionEntry(made: Made, c: ChargeRecord, sums: RollupSums): void {
  if (c.dimensions === null || c.dimensions === undefined) return;
  made.dimensions.push({
    accountId: c.accountId, usageDate: c.usageDate, hour: c.rollupHour ?? 0, userId: c.userId, provider: c.provider, model: c.model, chargeType: c.chargeType,
    apiKeyId: c.apiKeyId, dims: c.dimensions, sums,
  });
}

function holdEntries(made: Made, r: Reservation, sign: 1 | -1): void {
  const held = sign === 1 ? heldOf(r) : negate(heldOf(r));
  for (const key of counterKeysOf(r.accountId, r.userId, r.periodDay, scopesOfReservation(r))) made.counters.push({ key, used: ZERO_USAGE, unpricedMessages: 0n, reserved: held });
  // A hold counts in the hour it was placed.
  for (const key of hourKeysOf(r.accountId, r.userId, r.createTime, scopesOfReservation(r))) made.hours.push({ key, used: ZERO_USAGE, reserved: held });
}

const finished = (r: Reservation, status: ReservationEntry['status'], at: Date, chargeId?: string): ReservationEntry => ({
  ref: { accountId: r.accountId, reservationId: r.reservationId },
  status,
  at,
  ...(chargeId ? { chargeId } : {}),
});

/** The entries of one change. */
function make(made: Made, change: LedgerChange): void {
  switch (change.kind) {
    case 'charge_recorded': {
      const rollup = rollupOfCharge(change.charge);
      usageEntries(made, rollup, scopesOfCharge(change.charge), change.charge.usageTime);
      dimensionEntry(made, change.charge, rollup.sums);
      made.events.push({ kind: 'charge_recorded', charge: change.charge });
      return;
    }
    case 'charge_rerated': {
      const after = rollupOfCharge(change.after);
      const moved = combineSums(after.sums, rollupOfCharge(change.before).sums, -1n);
      // The scopes the charge was first counted in (its API key, the declared values it records), like its dimension row.
      usageEntries(made, { ...after, sums: moved }, scopesOfCharge(change.before), change.before.usageTime);
      // Re-rating moves the dimension row the charge was first summed under (its own record of it).
      dimensionEntry(made, change.before, moved);
      made.events.push({ kind: 'charge_rerated', charge: change.after });
      return;
    }
    case 'hold_placed':
      holdEntries(made, change.reservation, 1);
      return;
    case 'hold_settled':
      // An expired reservation's hold was already removed by its expiry: the usage alone counts.
      if (change.reservation.status === 'held') holdEntries(made, change.reservation, -1);
      made.reservations.push(finished(change.reservation, 'settled', change.at, change.charge.chargeId));
      return;
    case 'hold_released':
      holdEntries(made, change.reservation, -1);
      made.reservations.push(finished(change.reservation, 'released', change.at));
      return;
    case 'hold_expired':
      holdEntries(made, change.reservation, -1);
      made.reservations.push(finished(change.reservation, 'expired', change.at));
      made.events.push({ kind: 'reservation_expired', reservation: { ...change.reservation, status: 'expired', finishTime: change.at } });
      return;
    case 'grant_created': {
      const g = change.grant;
      balanceEntry(made, { accountId: g.accountId, kind: 'grant', grantId: g.grantId, amount: g.amount, at: g.createTime });
      made.events.push({ kind: 'grant_created', grant: g });
      return;
    }
    case 'grant_expired': {
      const g = change.grant;
      grantEntry(made, g.accountId, g.grantId, { expired: change.amount });
      balanceEntry(made, { accountId: g.accountId, kind: 'expiry', grantId: g.grantId, amount: change.amount, at: change.at });
      made.events.push({ kind: 'grant_expired', grant: g });
      return;
    }
    case 'grant_voided': {
      const g = change.grant;
      grantEntry(made, g.accountId, g.grantId, { voided: change.amount, ...(change.first ? { voidTime: change.at, voidReason: change.reason ?? '', voidActor: change.actor ?? '' } : {}) });
      balanceEntry(made, { accountId: g.accountId, kind: 'void', grantId: g.grantId, amount: change.amount, at: change.at });
      return;
    }
    case 'credit_burned':
    case 'credit_refunded': {
      const sign = change.kind === 'credit_burned' ? change.amount : change.amount.negated();
      grantEntry(made, change.accountId, change.grantId, { spent: sign });
      balanceEntry(made, { accountId: change.accountId, kind: change.kind === 'credit_burned' ? 'burn' : 'refund', grantId: change.grantId, amount: change.amount, at: change.at, chargeId: change.chargeId });
      return;
    }
    case 'credit_overage':
      made.credits.overage.push({ accountId: change.accountId, periodStart: change.periodStart, amount: change.amount });
      balanceEntry(made, { accountId: change.accountId, kind: 'overage', grantId: '', amount: change.amount, at: change.at, chargeId: change.chargeId });
      return;
    case 'credit_held':
      grantEntry(made, change.accountId, change.grantId, { held: change.amount });
      balanceEntry(made, { accountId: change.accountId, kind: 'hold', grantId: change.grantId, amount: change.amount, at: change.at, reservationId: change.reservationId });
      return;
    case 'credit_hold_released':
      grantEntry(made, change.accountId, change.grantId, { held: change.amount.negated() });
      balanceEntry(made, {
        accountId: change.accountId, kind: 'hold_released', grantId: change.grantId, amount: change.amount, at: change.at, reservationId: change.reservationId,
        ...(change.chargeId ? { chargeId: change.chargeId } : {}),
      });
      return;
    case 'credit_holds_placed':
      made.credits.holds.push({ accountId: change.accountId, reservationId: change.reservationId, holds: change.holds });
      return;
  }
}

const SEP = '\u0000';
const rollupId = (d: RollupDelta) => [d.accountId, d.usageDate, d.userId, d.provider, d.model, d.chargeType].join(SEP);
const dimensionId = (d: DimensionDelta) =>
  [d.accountId, d.usageDate, String(d.hour).padStart(2, '0'), d.userId, d.provider, d.model, d.chargeType, d.apiKeyId, JSON.stringify(Object.entries(d.dims).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)))].join(SEP);
export const hourId = (k: HourKey) => [k.accountId, k.hourStart, k.userId, k.scope].join(SEP);
export const counterId = (k: CounterKey) => [k.accountId, k.period, k.periodStart, k.userId, k.scope ?? ''].join(SEP);
const reservationId = (e: ReservationEntry) => [e.ref.accountId, e.ref.reservationId].join(SEP);
const byId = <T>(id: (t: T) => string) => (a: T, b: T) => (id(a) < id(b) ? -1 : id(a) > id(b) ? 1 : 0);

/** Adds up items with the same id, keeping the first one's key, and returns them in id order (their lock order). */
function aggregate<T>(items: T[], id: (t: T) => string, add: (a: T, b: T) => T): T[] {
  const seen = new Map<string, T>();
  for (const item of items) {
    const key = id(item);
    const before = seen.get(key);
    seen.set(key, before ? add(before, item) : item);
  }
  // Each id made once (a comparator making them would make two per comparison).
  return [...seen.entries()].sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0)).map(([, item]) => item);
}

const addCounterDeltas = (a: CounterDelta, b: CounterDelta): CounterDelta => ({
  key: a.key,
  used: addUsage(a.used, b.used),
  unpricedMessages: a.unpricedMessages + b.unpricedMessages,
  reserved: addUsage(a.reserved, b.reserved),
});

const addGrantDeltas = (a: GrantDelta, b: GrantDelta): GrantDelta => ({
  ...a,
  ...b,
  spent: a.spent.plus(b.spent),
  held: a.held.plus(b.held),
  expired: a.expired.plus(b.expired),
  voided: a.voided.plus(b.voided),
  ...(a.voidTime ? { voidTime: a.voidTime, voidReason: a.voidReason, voidActor: a.voidActor } : {}),
});
const addOverage = (a: OverageDelta, b: OverageDelta): OverageDelta => ({ ...a, amount: a.amount.plus(b.amount) });

/** The entries of a set of changes: rollups and counters summed per row, every table in key order, events in the order of the changes. */
export function entriesOf(changes: LedgerChange[]): LedgerEntries {
  const made: Made = { rollups: [], dimensions: [], counters: [], hours: [], reservations: [], events: [], usage: [], credits: { grants: [], overage: [], holds: [], balance: [] } };
  for (const change of changes) make(made, change);
  return {
    rollups: aggregate(made.rollups, rollupId, (a, b) => ({ ...a, sums: combineSums(a.sums, b.sums, 1n) })),
    dimensions: aggregate(made.dimensions, dimensionId, (a, b) => ({ ...a, sums: combineSums(a.sums, b.sums, 1n) })),
    counters: aggregate(made.counters, (d) => counterId(d.key), addCounterDeltas),
    hours: aggregate(made.hours, (d) => hourId(d.key), (a, b) => ({ key: a.key, used: addUsage(a.used, b.used), reserved: addUsage(a.reserved, b.reserved) })),
    reservations: [...made.reservations].sort(byId(reservationId)),
    events: made.events,
    usage: made.usage,
    credits: {
      grants: aggregate(made.credits.grants, (d) => [d.accountId, d.grantId].join(SEP), addGrantDeltas),
      overage: aggregate(made.credits.overage, (d) => [d.accountId, d.periodStart].join(SEP), addOverage),
      holds: made.credits.holds,
      balance: made.credits.balance,
    },
  };
}

/** Whether entries touch credits at all (accounts without grants never do). */
export const touchesCredits = (e: LedgerEntries): boolean => e.credits.grants.length + e.credits.overage.length + e.credits.holds.length + e.credits.balance.length > 0;

/** Counters as they will be once the deltas are applied (to decide before writing, on rows read under lock). */
export function withDeltas(rows: CounterState[], deltas: CounterDelta[]): CounterState[] {
  const change = new Map(deltas.map((d) => [counterId(d.key), d]));
  return rows.map((r) => {
    const d = change.get(counterId(r));
    return d ? { ...r, used: addUsage(r.used, d.used), reserved: addUsage(r.reserved, d.reserved) } : r;
  });
}

/** One hour of a scope's usage as read (hourly_counters, with its user and scope). */
export type ScopedHour = HourUsage & { userId: string; scope: string };

/** Hours as they will be after some deltas (rows the deltas create start at zero): withDeltas for hourly_counters. */
export function hoursWithDeltas(rows: ScopedHour[], deltas: HourDelta[]): ScopedHour[] {
  const idOf = (h: { hourStart: string; userId: string; scope: string }) => hourId({ accountId: '', ...h });
  const byId = new Map(rows.map((r) => [idOf({ ...r, hourStart: r.hourStart.toISOString() }), r]));
  for (const d of deltas) {
    const id = idOf(d.key);
    const r = byId.get(id) ?? { hourStart: new Date(d.key.hourStart), userId: d.key.userId, scope: d.key.scope, used: ZERO_USAGE, reserved: ZERO_USAGE };
    byId.set(id, { ...r, used: addUsage(r.used, d.used), reserved: addUsage(r.reserved, d.reserved) });
  }
  return [...byId.values()];
}

/** The soft_limit_exceeded events of applied entries: each soft limit the counters (as now stored) show newly crossed. */
export function softLimitEvents(softLimits: Limit[], counters: CounterState[], entries: LedgerEntries): LedgerEvent[] {
  if (softLimits.length === 0 || entries.usage.length === 0) return [];
  return softLimitCrossings(softLimits, counters, entries.usage).map((softLimit) => ({ kind: 'soft_limit_exceeded' as const, softLimit }));
}

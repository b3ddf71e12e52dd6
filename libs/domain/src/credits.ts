import { CURRENCY_CODE, Dec, formatDecimal, parseDecimal } from '@metering/pricing';
import { type AlertRule, balanceAlerts, type StandingBelow } from './alerts';
import { DomainError } from './errors';
import type { LedgerChange, LedgerEntries } from './ledger';
import { monthStart } from './time';
import { decodePageToken, encodePageToken } from './page-token';
import { checkActor, checkEnum, checkId, checkInt, checkText, checkTimestamp, MAX_KEY_LENGTH, TimestampInput, Violations } from './validation';

/**
 * Prepaid credits, the pure rules: grants, the burn order, how a charge, a
 * hold, an expiry, a void and a re-rating move them, the balance, and the
 * events of a balance that runs low. No I/O: CreditsService, ChargesService,
 * LimitsService and ReservationsService read the account's grants under lock,
 * let a CreditBook decide, and hand the changes it made to the ledger
 * (libs/domain/src/ledger.ts) and its entries to the store.
 *
 * Amounts of a grant (all exact USD):
 *   remaining = amount - spent - expired - voided
 *   available = remaining - held, while the grant is in effect
 *               (effective_time <= now < expire_time, not voided), else 0
 * The account's balance (the running balance of its balance history) is the
 * sum over its grants of remaining - held:
 *   balance = granted - burned + refunded - expired - voided - held
 * which every balance entry moves by its amount (an overage entry moves nothing).
 *
 * Burn order (the same for burns and holds): lowest priority number first,
 * then earliest expiry (a grant without expiry last), then the oldest (create
 * time), then grant id. A charge that more than one grant covers burns
 * several; what no grant covers is overage, tracked per month (of the
 * charge's local day) for invoicing.
 */

export type GrantKind = 'paid' | 'promotional';
export type CreditPolicy = 'deny' | 'allow_overage';
export type GrantStatus = 'scheduled' | 'active' | 'exhausted' | 'expired' | 'voided';
export type BalanceEntryKind = 'grant' | 'burn' | 'hold' | 'hold_released' | 'expiry' | 'void' | 'refund' | 'overage';

export const GRANT_KIND_BY_NUMBER: Record<number, GrantKind> = { 1: 'paid', 2: 'promotional' };
export const CREDIT_POLICY_BY_NUMBER: Record<number, CreditPolicy> = { 1: 'deny', 2: 'allow_overage' };
/** An account's policy until SetCreditPolicy says otherwise: prepaid means the balance stops calls. */
export const DEFAULT_CREDIT_POLICY: CreditPolicy = 'deny';
export const MAX_GRANT_AMOUNT = new Dec('1000000000000');
export const MAX_PRIORITY = 1000;
export const MAX_BALANCE_PAGE = 1000;
export const DEFAULT_BALANCE_PAGE = 100;

/** A grant as stored, with what has been spent, held, expired and voided of it. */
export interface Grant {
  accountId: string;
  grantId: string;
  idempotencyKey: string;
  /** '' = any user of the account; otherwise only this user's charges burn it. */
  userId: string;
  kind: GrantKind;
  amount: Dec;
  /** Lower burns first (0 to MAX_PRIORITY). */
  priority: number;
  effectiveTime: Date;
  expireTime?: Date;
  reason: string;
  actor: string;
  createTime: Date;
  spent: Dec;
  held: Dec;
  expired: Dec;
  voided: Dec;
  voidTime?: Date;
  voidReason?: string;
  voidActor?: string;
  /** Fingerprint of the request that created it (idempotency). */
  requestHash: string;
}

/** An account's credit settings and the head of its balance history. */
export interface CreditAccount {
  accountId: string;
  policy: CreditPolicy;
  /** BALANCE_LOW is sent when the available balance falls to or below it. */
  lowThreshold?: Dec;
  /** The running balance after the last entry. */
  balance: Dec;
  /** The last entry's sequence (0: none yet). */
  lastEntry: bigint;
  /** What stands of its BALANCE alert rules (libs/domain/src/alerts.ts balanceAlerts). */
  standingBelow?: StandingBelow;
  /** Its BALANCE alert rules, read with the lock (not stored on the row). */
  balanceRules?: AlertRule[];
}

/** What a reservation holds of one grant. */
export interface CreditHold {
  grantId: string;
  amount: Dec;
}

/** One entry of an account's balance history before the store numbers it. */
export interface BalanceEntryDraft {
  accountId: string;
  kind: BalanceEntryKind;
  grantId: string;
  /** The entry's amount, >= 0 except for an overage refunded by re-rating (negative). */
  amount: Dec;
  at: Date;
  chargeId?: string;
  reservationId?: string;
}

/** A balance entry as stored: numbered 1, 2, ... per account, with the balance after it. */
export interface BalanceEntry extends BalanceEntryDraft {
  sequence: bigint;
  balanceAfter: Dec;
}

/** What the entries change of one grant (summed). */
export interface GrantDelta {
  accountId: string;
  grantId: string;
  spent: Dec;
  held: Dec;
  expired: Dec;
  voided: Dec;
  voidTime?: Date;
  voidReason?: string;
  voidActor?: string;
}

/** Overage of one account and month. */
export interface OverageDelta {
  accountId: string;
  periodStart: string;
  amount: Dec;
}

/** The credit holds of a reservation, written when it is placed. */
export interface ReservationHolds {
  accountId: string;
  reservationId: string;
  holds: CreditHold[];
}

/** What a set of changes does to credits: the ledger's credit part (entriesOf). */
export interface CreditEntries {
  grants: GrantDelta[];
  overage: OverageDelta[];
  holds: ReservationHolds[];
  balance: BalanceEntryDraft[];
}

const ZERO = new Dec(0);

// ---- Amounts and state ----

export const remainingOf = (g: Grant): Dec => g.amount.minus(g.spent).minus(g.expired).minus(g.voided);
export const hasExpiredAt = (g: Grant, now: Date): boolean => g.expireTime !== undefined && g.expireTime.getTime() <= now.getTime();
export const inEffect = (g: Grant, now: Date): boolean => g.effectiveTime.getTime() <= now.getTime() && !hasExpiredAt(g, now) && g.voidTime === undefined;
export const appliesTo = (g: Grant, userId: string | undefined): boolean => userId === undefined || g.userId === '' || g.userId === userId;
/** What a charge of `userId` could burn of it now. */
export const availableOf = (g: Grant, now: Date): Dec => (inEffect(g, now) ? Dec.max(remainingOf(g).minus(g.held), 0) : ZERO);

export function grantStatus(g: Grant, now: Date): GrantStatus {
  if (g.voidTime) return 'voided';
  if (hasExpiredAt(g, now)) return 'expired';
  if (g.effectiveTime.getTime() > now.getTime()) return 'scheduled';
  return remainingOf(g).isZero() ? 'exhausted' : 'active';
}

/** A grant as seen at `now`: one past its expiry whose expiry entry is not written yet reads as expired (lazy expiry). */
export function grantAsSeen(g: Grant, now: Date): Grant {
  const due = dueExpiry(g, now);
  return due.isZero() ? g : { ...g, expired: g.expired.plus(due) };
}

/** What an expiry at `now` releases: the unheld remainder of a grant past its expiry (the held part expires when its hold ends). */
export function dueExpiry(g: Grant, now: Date): Dec {
  return hasExpiredAt(g, now) && g.voidTime === undefined ? Dec.max(remainingOf(g).minus(g.held), 0) : ZERO;
}

/** The burn order: priority (lower first), earliest expiry (none last), oldest, grant id. */
export function burnOrder(a: Grant, b: Grant): number {
  if (a.priority !== b.priority) return a.priority - b.priority;
  const ea = a.expireTime?.getTime() ?? Infinity;
  const eb = b.expireTime?.getTime() ?? Infinity;
  if (ea !== eb) return ea < eb ? -1 : 1;
  if (a.createTime.getTime() !== b.createTime.getTime()) return a.createTime.getTime() - b.createTime.getTime();
  return a.grantId < b.grantId ? -1 : a.grantId > b.grantId ? 1 : 0;
}

/** How an amount splits over grants in burn order: what each covers, and what none covers. */
export function allocate(grants: Grant[], amount: Dec, now: Date, userId: string): { parts: CreditHold[]; uncovered: Dec } {
  let left = amount;
  const parts: CreditHold[] = [];
  for (const g of grants.filter((x) => appliesTo(x, userId)).sort(burnOrder)) {
    if (left.lessThanOrEqualTo(0)) break;
    const take = Dec.min(availableOf(g, now), left);
    if (take.greaterThan(0)) {
      parts.push({ grantId: g.grantId, amount: take });
      left = left.minus(take);
    }
  }
  return { parts, uncovered: Dec.max(left, 0) };
}

/** The balance of an account (or what one user may spend of it) at `now`. */
export interface CreditBalance {
  accountId: string;
  userId: string;
  /** remaining of the grants in effect - their holds. */
  available: Dec;
  /** remaining of the grants in effect (holds included). */
  remaining: Dec;
  held: Dec;
  /** remaining of grants not yet in effect. */
  upcoming: Dec;
  /** Grants in effect that will expire, earliest first, with what they would release now. */
  upcomingExpiries: Array<{ grantId: string; expireTime: Date; amount: Dec }>;
}

export function balanceOf(accountId: string, grants: Grant[], now: Date, userId = ''): CreditBalance {
  const seen = grants.map((g) => grantAsSeen(g, now)).filter((g) => appliesTo(g, userId || undefined));
  const effective = seen.filter((g) => inEffect(g, now));
  const sum = (xs: Dec[]) => xs.reduce((a, b) => a.plus(b), ZERO);
  return {
    accountId,
    userId,
    available: sum(effective.map((g) => availableOf(g, now))),
    remaining: sum(effective.map(remainingOf)),
    held: sum(effective.map((g) => g.held)),
    upcoming: sum(seen.filter((g) => grantStatus(g, now) === 'scheduled').map(remainingOf)),
    upcomingExpiries: effective
      .filter((g) => g.expireTime !== undefined && remainingOf(g).greaterThan(0))
      .sort((a, b) => (a.expireTime as Date).getTime() - (b.expireTime as Date).getTime() || burnOrder(a, b))
      .map((g) => ({ grantId: g.grantId, expireTime: g.expireTime as Date, amount: remainingOf(g) })),
  };
}

/** The balance a history entry moves (an overage entry records what no grant covered and moves nothing). */
export const balanceDelta = (e: BalanceEntryDraft): Dec =>
  e.kind === 'grant' || e.kind === 'hold_released' || e.kind === 'refund' ? e.amount : e.kind === 'overage' ? ZERO : e.amount.negated();

/**
 * Numbers an account's new balance entries after its last one, with the
 * running balance, and returns the account heads as they will be stored.
 */
export function numberEntries(accounts: Map<string, CreditAccount>, drafts: BalanceEntryDraft[]): { entries: BalanceEntry[]; accounts: CreditAccount[] } {
  const heads = new Map([...accounts].map(([k, a]) => [k, { ...a }]));
  const entries = drafts.map((d): BalanceEntry => {
    const head = heads.get(d.accountId);
    if (!head) throw new Error(`credit account ${d.accountId} is not locked`);
    head.lastEntry += 1n;
    head.balance = head.balance.plus(balanceDelta(d));
    return { ...d, sequence: head.lastEntry, balanceAfter: head.balance };
  });
  const touched = new Set(drafts.map((d) => d.accountId));
  return { entries, accounts: [...heads.values()].filter((a) => touched.has(a.accountId)).sort((a, b) => (a.accountId < b.accountId ? -1 : 1)) };
}

/** The credit writes of a transaction: the ledger's credit entries, numbered, with the account heads after them. */
export interface CreditWrites {
  accounts: CreditAccount[];
  entries: BalanceEntry[];
  credits: CreditEntries;
}

// ---- Decisions ----

/** A reservation's credit part, as the book needs it. */
interface HeldReservation {
  accountId: string;
  reservationId: string;
  userId: string;
  creditHolds?: CreditHold[];
}

/**
 * One account's grants, locked, and the changes made to them in order: every
 * method moves the grants in memory (so the next decision sees the last one)
 * and records the ledger changes that say what it did.
 */
export class CreditBook {
  readonly changes: LedgerChange[] = [];
  /** The user of the last charge or hold that moved the balance ('' when none did). */
  lastUserId = '';
  private readonly grants: Map<string, Grant>;

  constructor(
    readonly account: CreditAccount,
    grants: Grant[],
  ) {
    this.grants = new Map(grants.map((g) => [g.grantId, { ...g }]));
  }

  get all(): Grant[] {
    return [...this.grants.values()];
  }

  grant(grantId: string): Grant | undefined {
    return this.grants.get(grantId);
  }

  available(now: Date, userId?: string): Dec {
    return this.all.filter((g) => appliesTo(g, userId)).reduce((a, g) => a.plus(availableOf(g, now)), ZERO);
  }

  private move(grantId: string, d: Partial<Pick<Grant, 'spent' | 'held' | 'expired' | 'voided'>>): Grant {
    const g = this.grants.get(grantId);
    if (!g) throw new Error(`grant ${grantId} is not locked`);
    if (d.spent) g.spent = g.spent.plus(d.spent);
    if (d.held) g.held = g.held.plus(d.held);
    if (d.expired) g.expired = g.expired.plus(d.expired);
    if (d.voided) g.voided = g.voided.plus(d.voided);
    return g;
  }

  /** A new grant (inserted by the caller). */
  created(grant: Grant): void {
    this.grants.set(grant.grantId, { ...grant });
    this.changes.push({ kind: 'grant_created', grant });
  }

  /** Releases the unheld remainder of every grant past its expiry. */
  expireDue(now: Date): void {
    for (const g of this.all.sort(burnOrder)) {
      const amount = dueExpiry(g, now);
      if (amount.isZero()) continue;
      this.move(g.grantId, { expired: amount });
      this.changes.push({ kind: 'grant_expired', grant: { ...g }, amount, at: now });
    }
  }

  /** Frees a part of a grant that was held or burned: still in effect, it is available again; expired or voided, it expires or is voided at once. */
  private afterFreed(g: Grant, amount: Dec, now: Date): void {
    if (amount.isZero()) return;
    if (g.voidTime) {
      this.move(g.grantId, { voided: amount });
      this.changes.push({ kind: 'grant_voided', grant: { ...g }, amount, at: now });
    } else if (hasExpiredAt(g, now)) {
      this.move(g.grantId, { expired: amount });
      this.changes.push({ kind: 'grant_expired', grant: { ...g }, amount, at: now });
    }
  }

  /** A reservation's credit holds end (settled, released, expired). */
  releaseHolds(r: HeldReservation, now: Date, chargeId?: string): void {
    for (const h of r.creditHolds ?? []) {
      const g = this.move(h.grantId, { held: h.amount.negated() });
      this.changes.push({ kind: 'credit_hold_released', accountId: r.accountId, grantId: h.grantId, reservationId: r.reservationId, amount: h.amount, at: now, chargeId });
      this.afterFreed(g, h.amount, now);
    }
  }

  /** Holds up to `amount` for a reservation in burn order; returns the holds (less than asked when the balance is short). */
  hold(r: { accountId: string; reservationId: string; userId: string }, amount: Dec, now: Date): CreditHold[] {
    const { parts } = allocate(this.all, amount, now, r.userId);
    if (parts.length) this.lastUserId = r.userId;
    for (const p of parts) {
      this.move(p.grantId, { held: p.amount });
      this.changes.push({ kind: 'credit_held', accountId: r.accountId, grantId: p.grantId, reservationId: r.reservationId, amount: p.amount, at: now });
    }
    if (parts.length) this.changes.push({ kind: 'credit_holds_placed', accountId: r.accountId, reservationId: r.reservationId, holds: parts });
    return parts;
  }

  /** Burns a charge's cost in burn order; what no grant covers is overage of the charge's month. */
  burn(c: { accountId: string; chargeId: string; userId: string; usageDate: string }, amount: Dec, now: Date): void {
    if (amount.lessThanOrEqualTo(0)) return;
    this.lastUserId = c.userId;
    const { parts, uncovered } = allocate(this.all, amount, now, c.userId);
    for (const p of parts) {
      this.move(p.grantId, { spent: p.amount });
      this.changes.push({ kind: 'credit_burned', accountId: c.accountId, grantId: p.grantId, chargeId: c.chargeId, amount: p.amount, at: now });
    }
    if (uncovered.greaterThan(0)) this.changes.push({ kind: 'credit_overage', accountId: c.accountId, chargeId: c.chargeId, periodStart: monthStart(c.usageDate), amount: uncovered, at: now });
  }

  /**
   * A charge re-rated from `before` to `after` (billed cost): a higher cost
   * burns the difference (in burn order, overage when uncovered); a lower
   * one refunds it: first the charge's own overage, then what it burned, the
   * grant burned last first. A refund to a grant that has expired or was
   * voided since expires or is voided at once (never spendable again).
   */
  rerate(
    c: { accountId: string; chargeId: string; userId: string; usageDate: string },
    before: Dec,
    after: Dec,
    burned: { byGrant: Map<string, Dec>; overage: Dec },
    now: Date,
  ): void {
    const diff = after.minus(before);
    if (diff.greaterThan(0)) return this.burn(c, diff, now);
    let left = diff.negated();
    if (left.isZero()) return;
    this.lastUserId = c.userId;
    const fromOverage = Dec.min(left, Dec.max(burned.overage, 0));
    if (fromOverage.greaterThan(0)) {
      this.changes.push({ kind: 'credit_overage', accountId: c.accountId, chargeId: c.chargeId, periodStart: monthStart(c.usageDate), amount: fromOverage.negated(), at: now });
      left = left.minus(fromOverage);
    }
    const burnedGrants = [...burned.byGrant.entries()].map(([id, amount]) => ({ g: this.grants.get(id), amount })).filter((x): x is { g: Grant; amount: Dec } => x.g !== undefined && x.amount.greaterThan(0));
    for (const { g, amount } of burnedGrants.sort((a, b) => burnOrder(b.g, a.g))) {
      if (left.lessThanOrEqualTo(0)) break;
      const back = Dec.min(amount, left);
      this.move(g.grantId, { spent: back.negated() });
      this.changes.push({ kind: 'credit_refunded', accountId: c.accountId, grantId: g.grantId, chargeId: c.chargeId, amount: back, at: now });
      this.afterFreed(g, back, now);
      left = left.minus(back);
    }
  }

  /** Voids a grant's unspent, unheld part (its holds are voided when they end). At most once. */
  void(grantId: string, now: Date, reason: string, actor: string): Grant {
    const g = this.grants.get(grantId);
    if (!g) throw new GrantNotFoundError(grantId);
    if (g.voidTime) throw new GrantVoidedError(grantId);
    const amount = Dec.max(remainingOf(g).minus(g.held), 0);
    g.voidTime = now;
    g.voidReason = reason;
    g.voidActor = actor;
    this.move(grantId, { voided: amount });
    this.changes.push({ kind: 'grant_voided', grant: { ...g }, amount, at: now, reason, actor, first: true });
    return { ...g };
  }
}

/** The BALANCE_LOW / BALANCE_EXHAUSTED event a change of the available balance makes: when it falls to or below the threshold, or to zero. */
export function balanceCrossing(account: CreditAccount, before: Dec, after: Dec): 'balance_low' | 'balance_exhausted' | undefined {
  if (before.greaterThan(0) && after.lessThanOrEqualTo(0)) return 'balance_exhausted';
  const t = account.lowThreshold;
  if (t !== undefined && before.greaterThan(t) && after.lessThanOrEqualTo(t)) return 'balance_low';
  return undefined;
}

/**
 * The credit writes of books whose changes are in `entries` (entriesOf of
 * them), and the balance events their changes make, added to the entries'
 * events (after the others): BALANCE_LOW or BALANCE_EXHAUSTED per account
 * whose available balance crossed down since `before`, then the alerts of
 * its BALANCE rules (balanceAlerts: against what stands on its credit row,
 * which the heads written then carry; an account whose standing changed
 * without a balance entry gets its head written too).
 */
export function creditWritesOf(books: CreditBook[], before: Map<string, Dec>, entries: LedgerEntries, now: Date): CreditWrites {
  const standing = new Map<string, StandingBelow>();
  for (const b of books) {
    const after = b.available(now);
    const kind = balanceCrossing(b.account, before.get(b.account.accountId) ?? ZERO, after);
    if (kind) entries.events.push({ kind, balance: { accountId: b.account.accountId, available: after, ...(b.account.lowThreshold ? { threshold: b.account.lowThreshold } : {}) } });
    const rules = b.account.balanceRules ?? [];
    if (rules.length === 0 && Object.keys(b.account.standingBelow ?? {}).length === 0) continue;
    const told = balanceAlerts(b.account.accountId, rules, b.account.standingBelow ?? {}, after, b.lastUserId);
    for (const alert of told.alerts) entries.events.push({ kind: alert.direction === 'triggered' ? 'alert_triggered' : 'alert_resolved', alert });
    if (told.changed) standing.set(b.account.accountId, told.standing);
  }
  const locked = new Map(books.map((b) => [b.account.accountId, b.account]));
  const { entries: numbered, accounts } = numberEntries(locked, entries.credits.balance);
  const heads = new Map(accounts.map((a) => [a.accountId, a]));
  for (const [accountId, below] of standing) heads.set(accountId, { ...(heads.get(accountId) ?? (locked.get(accountId) as CreditAccount)), standingBelow: below });
  return { accounts: [...heads.values()].sort((a, b) => (a.accountId < b.accountId ? -1 : 1)), entries: numbered, credits: entries.credits };
}

/** Whether a call may go ahead on the balance: under `deny`, only while the available balance covers its expected cost (and is above zero). */
export function creditAllows(policy: CreditPolicy, available: Dec, cost: Dec): boolean {
  return policy === 'allow_overage' || (available.greaterThan(0) && available.greaterThanOrEqualTo(cost));
}

// ---- Errors ----

export class GrantNotFoundError extends DomainError {
  constructor(grantId: string) {
    super('NOT_FOUND', 'GRANT_NOT_FOUND', `grant ${grantId} does not exist in this account`, { grant_id: grantId });
  }
}

/** A grant can be voided at most once. Nothing was written. */
export class GrantVoidedError extends DomainError {
  constructor(grantId: string) {
    super('FAILED_PRECONDITION', 'GRANT_VOIDED', `grant ${grantId} was already voided`, { grant_id: grantId });
  }
}

/** CheckLimits with deny_as_error, when the balance cannot cover the call (policy deny). */
export class BalanceInsufficientError extends DomainError {
  constructor(message: string, available: Dec, cost: Dec) {
    super('RESOURCE_EXHAUSTED', 'BALANCE_INSUFFICIENT', message, { available: formatDecimal(available), estimate: formatDecimal(cost) });
  }
}

export const balanceMessage = (available: Dec, cost: Dec) =>
  `Balance insufficient: ${formatDecimal(available)} ${CURRENCY_CODE} available, the call is estimated at ${formatDecimal(cost)} ${CURRENCY_CODE}`;

// ---- Validation ----

const UUID = /^[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/i;

function checkGrantId(v: Violations, value: string): string {
  if (value === '') v.add('grant_id', 'is required');
  else if (!UUID.test(value)) v.add('grant_id', 'must be a grant id (a UUID) returned by CreateGrant');
  return value.toLowerCase();
}

interface MoneyInput {
  amount: string;
  currencyCode: string;
}

function checkAmount(v: Violations, field: string, money: MoneyInput | undefined, opts: { required: boolean; positive: boolean }): Dec | undefined {
  if (money === undefined) {
    if (opts.required) v.add(field, 'is required');
    return undefined;
  }
  if (money.currencyCode !== CURRENCY_CODE) v.add(`${field}.currency_code`, `must be "${CURRENCY_CODE}"`);
  const amount = parseDecimal(money.amount ?? '', 40);
  if (amount === undefined) {
    v.add(`${field}.amount`, 'must be a plain decimal string such as "10.00"');
    return undefined;
  }
  if ((opts.positive ? amount.lessThanOrEqualTo(0) : amount.isNegative()) || amount.greaterThan(MAX_GRANT_AMOUNT)) {
    v.add(`${field}.amount`, `must be ${opts.positive ? 'above' : 'at least'} 0 and at most ${formatDecimal(MAX_GRANT_AMOUNT)}`);
    return undefined;
  }
  return amount;
}

export interface CreateGrantInput {
  accountId: string;
  idempotencyKey: string;
  userId: string;
  kind: number;
  amount?: MoneyInput;
  priority: number;
  effectiveTime?: TimestampInput;
  expireTime?: TimestampInput;
  reason: string;
  actor: string;
}

export type NewGrant = Pick<Grant, 'accountId' | 'idempotencyKey' | 'userId' | 'kind' | 'amount' | 'priority' | 'effectiveTime' | 'expireTime' | 'reason' | 'actor'>;

/** Validates CreateGrant; an absent effective_time is now. */
export function validateCreateGrant(raw: CreateGrantInput, now: Date): NewGrant {
  const v = new Violations();
  const out: NewGrant = {
    accountId: checkId(v, 'account_id', raw.accountId),
    idempotencyKey: checkText(v, 'idempotency_key', raw.idempotencyKey ?? '', MAX_KEY_LENGTH, { required: true }),
    userId: checkId(v, 'user_id', raw.userId ?? '', false),
    kind: checkEnum(v, 'kind', raw.kind ?? 0, GRANT_KIND_BY_NUMBER) ?? 'paid',
    amount: checkAmount(v, 'amount', raw.amount, { required: true, positive: true }) ?? ZERO,
    priority: checkInt(v, 'priority', raw.priority, 0, MAX_PRIORITY),
    effectiveTime: checkTimestamp(v, 'effective_time', raw.effectiveTime, now),
    reason: checkText(v, 'reason', raw.reason ?? '', 1024),
    actor: checkActor(v, raw.actor),
  };
  if (raw.expireTime !== undefined) {
    out.expireTime = checkTimestamp(v, 'expire_time', raw.expireTime, now);
    if (out.expireTime.getTime() <= out.effectiveTime.getTime()) v.add('expire_time', 'must be after effective_time');
  }
  v.done();
  return out;
}

/** The content of a grant request that its idempotency key stands for. */
export const grantContent = (g: NewGrant) => ({
  u: g.userId,
  k: g.kind,
  a: g.amount.toFixed(),
  p: g.priority,
  e: g.effectiveTime.getTime(),
  x: g.expireTime?.getTime() ?? null,
  r: g.reason,
  w: g.actor,
});

export function validateVoidGrant(raw: { accountId: string; grantId: string; reason: string; actor: string }) {
  const v = new Violations();
  const out = { accountId: checkId(v, 'account_id', raw.accountId), grantId: checkGrantId(v, raw.grantId ?? ''), reason: checkText(v, 'reason', raw.reason ?? '', 1024), actor: checkActor(v, raw.actor) };
  v.done();
  return out;
}

export function validateSetCreditPolicy(raw: { accountId: string; policy: number; lowBalanceThreshold?: MoneyInput }) {
  const v = new Violations();
  const out = {
    accountId: checkId(v, 'account_id', raw.accountId),
    policy: checkEnum(v, 'policy', raw.policy ?? 0, CREDIT_POLICY_BY_NUMBER),
    lowThreshold: checkAmount(v, 'low_balance_threshold', raw.lowBalanceThreshold, { required: false, positive: false }),
  };
  if (out.policy === undefined && (raw.policy ?? 0) === 0) v.add('policy', 'give DENY or ALLOW_OVERAGE');
  v.done();
  return out as { accountId: string; policy: CreditPolicy; lowThreshold?: Dec };
}

export function validateGetBalance(raw: { accountId: string; userId: string }) {
  const v = new Violations();
  const out = { accountId: checkId(v, 'account_id', raw.accountId), userId: checkId(v, 'user_id', raw.userId ?? '', false) };
  v.done();
  return out;
}

/** A page of a list: its size and where it starts (an opaque token of the previous page). */
export interface PageQuery {
  accountId: string;
  pageSize: number;
  after?: string;
}

export const encodeCreditPageToken = (what: 'grants' | 'entries', accountId: string, after: string) => encodePageToken([what, accountId], after);

const CREDIT_CURSOR = {
  entries: /^\d{1,18}$/,
  grants: /^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z\|[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}$/,
};

export function validateCreditPage(what: 'grants' | 'entries', raw: { accountId: string; pageSize: number; pageToken: string }): PageQuery {
  const v = new Violations();
  const q: PageQuery = { accountId: checkId(v, 'account_id', raw.accountId), pageSize: checkInt(v, 'page_size', raw.pageSize, 0, MAX_BALANCE_PAGE) || DEFAULT_BALANCE_PAGE };
  q.after = decodePageToken(v, raw.pageToken, [what, q.accountId], (k) => (typeof k === 'string' && CREDIT_CURSOR[what].test(k) ? k : undefined));
  v.done();
  return q;
}

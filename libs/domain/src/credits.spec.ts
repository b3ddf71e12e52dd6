import { Dec } from '@metering/pricing';
import {
  allocate,
  availableOf,
  balanceCrossing,
  balanceOf,
  burnOrder,
  CreditAccount,
  creditAllows,
  CreditBook,
  creditWritesOf,
  dueExpiry,
  Grant,
  grantAsSeen,
  grantStatus,
  GrantVoidedError,
  numberEntries,
  remainingOf,
  validateCreateGrant,
  validateCreditPage,
  encodeCreditPageToken,
  validateSetCreditPolicy,
} from './credits';
import { ValidationError } from './errors';
import { entriesOf } from './ledger';

/** Prepaid credits, the pure rules: burn order, splits, holds, expiry, voids, re-rating, the balance and its history. */

const NOW = new Date('2026-12-01T12:00:00Z');
const HOUR = 3600_000;
const at = (h: number) => new Date(NOW.getTime() + h * HOUR);
const d = (x: string) => new Dec(x);
let seq = 0;
const grant = (over: Partial<Grant> = {}): Grant => ({
  accountId: 'acme', grantId: `g-${++seq}`, idempotencyKey: `k-${seq}`, userId: '', kind: 'paid', amount: d('1'), priority: 0,
  effectiveTime: at(-10), reason: '', actor: '', createTime: at(-10), spent: d('0'), held: d('0'), expired: d('0'), voided: d('0'), requestHash: 'h', ...over,
});
const account = (over: Partial<CreditAccount> = {}): CreditAccount => ({ accountId: 'acme', policy: 'deny', balance: d('0'), lastEntry: 0n, ...over });
const charge = (chargeId: string, userId = 'u1') => ({ accountId: 'acme', chargeId, userId, usageDate: '2026-12-01' });
const parts = (p: Array<{ grantId: string; amount: Dec }>) => p.map((x) => [x.grantId, x.amount.toFixed()]);

describe('the burn order', () => {
  it('is priority (lower first), then the earliest expiry (none last), then the oldest, then the id', () => {
    const noExpiryOld = grant({ grantId: 'a', createTime: at(-5) });
    const noExpiryNew = grant({ grantId: 'b', createTime: at(-4) });
    const expiresLate = grant({ grantId: 'c', expireTime: at(48) });
    const expiresSoon = grant({ grantId: 'd', expireTime: at(24) });
    const lowPriority = grant({ grantId: 'e', priority: 5, expireTime: at(1) });
    const sameAsOld = grant({ grantId: 'f', createTime: at(-5) });
    const order = [lowPriority, noExpiryNew, sameAsOld, expiresLate, noExpiryOld, expiresSoon].sort(burnOrder).map((g) => g.grantId);
    expect(order).toEqual(['d', 'c', 'a', 'f', 'b', 'e']);
  });

  it('splits a charge over several grants in that order, and says what none covers', () => {
    const first = grant({ amount: d('0.3'), expireTime: at(1) });
    const second = grant({ amount: d('0.5'), expireTime: at(2) });
    const third = grant({ amount: d('10') });
    expect(parts(allocate([third, second, first], d('0.7'), NOW, 'u1').parts)).toEqual([[first.grantId, '0.3'], [second.grantId, '0.4']]);
    const short = allocate([first, second], d('1.25'), NOW, 'u1');
    expect(parts(short.parts)).toEqual([[first.grantId, '0.3'], [second.grantId, '0.5']]);
    expect(short.uncovered.toFixed()).toBe('0.45');
  });

  it('burns only grants in effect, of the charge\'s user or of the whole account, and never what reservations hold', () => {
    const scheduled = grant({ effectiveTime: at(1) });
    const expired = grant({ expireTime: at(-1) });
    const voided = grant({ voidTime: at(-1) });
    const bobs = grant({ userId: 'bob' });
    const held = grant({ amount: d('1'), held: d('0.75') });
    for (const g of [scheduled, expired, voided]) expect(availableOf(g, NOW).toFixed()).toBe('0');
    expect(availableOf(held, NOW).toFixed()).toBe('0.25');
    expect(parts(allocate([scheduled, expired, voided, bobs, held], d('5'), NOW, 'alice').parts)).toEqual([[held.grantId, '0.25']]);
    expect(parts(allocate([bobs], d('5'), NOW, 'bob').parts)).toEqual([[bobs.grantId, '1']]);
  });
});

describe('a credit book', () => {
  it('burns a charge, records the overage of its month, and makes a balance entry for each burn', () => {
    const g1 = grant({ amount: d('0.4'), expireTime: at(1) });
    const g2 = grant({ amount: d('0.4') });
    const book = new CreditBook(account(), [g1, g2]);
    book.burn(charge('c1'), d('1'), NOW);
    const e = entriesOf(book.changes);
    expect(e.credits.balance.map((b) => [b.kind, b.grantId, b.amount.toFixed(), b.chargeId])).toEqual([
      ['burn', g1.grantId, '0.4', 'c1'],
      ['burn', g2.grantId, '0.4', 'c1'],
      ['overage', '', '0.2', 'c1'],
    ]);
    expect(e.credits.overage.map((o) => [o.periodStart, o.amount.toFixed()])).toEqual([['2026-12-01', '0.2']]);
    expect(book.available(NOW).toFixed()).toBe('0');
  });

  it('holds in burn order, and a settled hold lets the charge burn it (and more or less than held)', () => {
    const g = grant({ amount: d('1') });
    const book = new CreditBook(account(), [g]);
    const r = { accountId: 'acme', reservationId: 'r1', userId: 'u1' };
    const holds = book.hold(r, d('0.6'), NOW);
    expect(parts(holds)).toEqual([[g.grantId, '0.6']]);
    expect(book.available(NOW).toFixed()).toBe('0.4');
    book.releaseHolds({ ...r, creditHolds: holds }, NOW, 'c1');
    book.burn(charge('c1'), d('0.9'), NOW);
    expect(book.grant(g.grantId)).toMatchObject({ held: d('0'), spent: d('0.9') });
    const e = entriesOf(book.changes);
    expect(e.credits.holds).toEqual([{ accountId: 'acme', reservationId: 'r1', holds }]);
    expect(e.credits.grants.map((x) => [x.spent.toFixed(), x.held.toFixed()])).toEqual([['0.9', '0']]);
  });

  it('expires a grant past its expiry: the unheld remainder at once, the held part when its hold ends', () => {
    const g = grant({ amount: d('1'), spent: d('0.1'), expireTime: at(-1) });
    expect(dueExpiry(g, NOW).toFixed()).toBe('0.9');
    const heldGrant = { ...g, held: d('0.3') };
    expect(dueExpiry(heldGrant, NOW).toFixed()).toBe('0.6');
    expect(grantAsSeen(heldGrant, NOW).expired.toFixed()).toBe('0.6');
    expect(grantStatus(heldGrant, NOW)).toBe('expired');
    const book = new CreditBook(account(), [heldGrant]);
    book.expireDue(NOW);
    book.expireDue(NOW); // twice: nothing more
    book.releaseHolds({ accountId: 'acme', reservationId: 'r', userId: 'u1', creditHolds: [{ grantId: g.grantId, amount: d('0.3') }] }, NOW);
    expect(book.changes.map((c) => c.kind)).toEqual(['grant_expired', 'credit_hold_released', 'grant_expired']);
    expect(book.grant(g.grantId)).toMatchObject({ held: d('0'), expired: d('0.9') });
    expect(remainingOf(book.grant(g.grantId) as Grant).toFixed()).toBe('0');
  });

  it('voids the unspent part at most once; a hold on a voided grant is voided when it ends', () => {
    const g = grant({ amount: d('1'), spent: d('0.25'), held: d('0.25') });
    const book = new CreditBook(account(), [g]);
    expect(book.void(g.grantId, NOW, 'refund', 'ops').voided.toFixed()).toBe('0.5');
    expect(() => book.void(g.grantId, NOW, '', '')).toThrow(GrantVoidedError);
    book.releaseHolds({ accountId: 'acme', reservationId: 'r', userId: 'u1', creditHolds: [{ grantId: g.grantId, amount: d('0.25') }] }, NOW);
    expect(book.grant(g.grantId)).toMatchObject({ voided: d('0.75'), held: d('0') });
    const e = entriesOf(book.changes);
    expect(e.credits.grants).toEqual([expect.objectContaining({ voided: d('0.75'), voidTime: NOW, voidReason: 'refund', voidActor: 'ops' })]);
  });

  it('re-rating burns the difference of a dearer cost, and refunds a cheaper one: its overage first, then the grant burned last', () => {
    const g1 = grant({ amount: d('0.5'), expireTime: at(1) });
    const g2 = grant({ amount: d('0.5') });
    const book = new CreditBook(account(), [g1, g2]);
    book.rerate(charge('c'), d('0.2'), d('0.5'), { byGrant: new Map(), overage: d('0') }, NOW);
    expect(parts(book.changes.flatMap((c) => (c.kind === 'credit_burned' ? [c] : [])))).toEqual([[g1.grantId, '0.3']]);
    const refunds = new CreditBook(account(), [{ ...g1, spent: d('0.5') }, { ...g2, spent: d('0.3') }]);
    refunds.rerate(charge('c'), d('1'), d('0.3'), { byGrant: new Map([[g1.grantId, d('0.5')], [g2.grantId, d('0.3')]]), overage: d('0.2') }, NOW);
    expect(refunds.changes.map((c) => [c.kind, 'grantId' in c ? c.grantId : '', 'amount' in c ? c.amount.toFixed() : ''])).toEqual([
      ['credit_overage', '', '-0.2'],
      ['credit_refunded', g2.grantId, '0.3'],
      ['credit_refunded', g1.grantId, '0.2'],
    ]);
    // A refund to a grant that expired since is expired at once.
    const late = new CreditBook(account(), [{ ...g1, spent: d('0.5'), expireTime: at(-1) }]);
    late.rerate(charge('c'), d('0.5'), d('0.1'), { byGrant: new Map([[g1.grantId, d('0.5')]]), overage: d('0') }, NOW);
    expect(late.changes.map((c) => c.kind)).toEqual(['credit_refunded', 'grant_expired']);
    expect(late.available(NOW).toFixed()).toBe('0');
  });
});

describe('the balance and its history', () => {
  it('numbers entries after the last one with the running balance: grants - burns + refunds - expired - voided - holds', () => {
    const g = grant({ amount: d('2') });
    const book = new CreditBook(account({ balance: d('3'), lastEntry: 7n }), [g]);
    const created = grant({ amount: d('1'), createTime: NOW });
    book.created(created);
    book.burn(charge('c1'), d('0.5'), NOW);
    book.hold({ accountId: 'acme', reservationId: 'r', userId: 'u1' }, d('0.25'), NOW);
    const e = entriesOf(book.changes);
    const { entries, accounts } = numberEntries(new Map([['acme', book.account]]), e.credits.balance);
    expect(entries.map((x) => [x.sequence, x.kind, x.balanceAfter.toFixed()])).toEqual([
      [8n, 'grant', '4'],
      [9n, 'burn', '3.5'],
      [10n, 'hold', '3.25'],
    ]);
    expect(accounts).toEqual([{ ...book.account, balance: d('3.25'), lastEntry: 10n }]);
  });

  it('reads the available balance, what is held and upcoming, and the expiries to come', () => {
    const soon = grant({ amount: d('1'), held: d('0.2'), expireTime: at(2) });
    const later = grant({ amount: d('2'), spent: d('0.5'), expireTime: at(5) });
    const upcoming = grant({ amount: d('4'), effectiveTime: at(3) });
    const gone = grant({ amount: d('8'), expireTime: at(-1) });
    const b = balanceOf('acme', [later, upcoming, soon, gone], NOW);
    expect([b.available, b.remaining, b.held, b.upcoming].map((x) => x.toFixed())).toEqual(['2.3', '2.5', '0.2', '4']);
    expect(b.upcomingExpiries.map((x) => [x.grantId, x.amount.toFixed()])).toEqual([[soon.grantId, '1'], [later.grantId, '1.5']]);
  });

  it('signals BALANCE_LOW when the available balance falls to the threshold and BALANCE_EXHAUSTED when it reaches zero, once per crossing', () => {
    const a = account({ lowThreshold: d('1') });
    expect(balanceCrossing(a, d('2'), d('1'))).toBe('balance_low');
    expect(balanceCrossing(a, d('1'), d('0.5'))).toBeUndefined();
    expect(balanceCrossing(a, d('0.5'), d('0'))).toBe('balance_exhausted');
    expect(balanceCrossing(a, d('2'), d('0'))).toBe('balance_exhausted');
    expect(balanceCrossing(account(), d('2'), d('0.1'))).toBeUndefined();
    const g = grant({ amount: d('1.5') });
    const book = new CreditBook(a, [g]);
    book.burn(charge('c'), d('0.75'), NOW);
    const e = entriesOf(book.changes);
    creditWritesOf([book], new Map([['acme', d('1.5')]]), e, NOW);
    expect(e.events).toEqual([{ kind: 'balance_low', balance: { accountId: 'acme', available: d('0.75'), threshold: d('1') } }]);
  });

  it('denies under deny when the balance cannot cover the cost (or is zero), never under allow_overage', () => {
    expect(creditAllows('deny', d('1'), d('1'))).toBe(true);
    expect(creditAllows('deny', d('0.99'), d('1'))).toBe(false);
    expect(creditAllows('deny', d('0'), d('0'))).toBe(false);
    expect(creditAllows('allow_overage', d('0'), d('5'))).toBe(true);
  });
});

describe('validation', () => {
  const fields = (fn: () => unknown) => {
    try {
      fn();
    } catch (e) {
      if (e instanceof ValidationError) return e.violations.map((v) => v.field);
      throw e;
    }
    return [];
  };

  it('names every bad field of CreateGrant', () => {
    const ok = { accountId: 'acme', idempotencyKey: 'k', userId: '', kind: 2, amount: { amount: '10.00', currencyCode: 'USD' }, priority: 3, reason: 'trial', actor: 'ops' };
    expect(validateCreateGrant(ok, NOW)).toMatchObject({ kind: 'promotional', amount: d('10'), effectiveTime: NOW, priority: 3 });
    expect(fields(() => validateCreateGrant({ ...ok, accountId: '', idempotencyKey: '', amount: { amount: 'NaN', currencyCode: 'USD' }, priority: -1, kind: 7 }, NOW))).toEqual([
      'account_id', 'idempotency_key', 'kind', 'amount.amount', 'priority',
    ]);
    expect(fields(() => validateCreateGrant({ ...ok, amount: undefined }, NOW))).toEqual(['amount']);
    expect(fields(() => validateCreateGrant({ ...ok, amount: { amount: '0', currencyCode: 'USD' } }, NOW))).toEqual(['amount.amount']);
    expect(fields(() => validateCreateGrant({ ...ok, expireTime: { seconds: String(NOW.getTime() / 1000), nanos: 0 } }, NOW))).toEqual(['expire_time']);
    expect(fields(() => validateSetCreditPolicy({ accountId: 'acme', policy: 0 }))).toEqual(['policy']);
    expect(fields(() => validateSetCreditPolicy({ accountId: 'acme', policy: 1, lowBalanceThreshold: { amount: '-1', currencyCode: 'USD' } }))).toEqual(['low_balance_threshold.amount']);
    expect(fields(() => validateCreditPage('entries', { accountId: 'acme', pageSize: 1, pageToken: 'x' }))).toEqual(['page_token']);
    // A token of the right shape but a made-up cursor is refused too (it would reach the database's casts).
    const forged = (what: 'grants' | 'entries', after: string) => encodeCreditPageToken(what, 'acme', after);
    expect(fields(() => validateCreditPage('grants', { accountId: 'acme', pageSize: 1, pageToken: forged('grants', 'not-a-time|x') }))).toEqual(['page_token']);
    expect(fields(() => validateCreditPage('entries', { accountId: 'acme', pageSize: 1, pageToken: forged('entries', '9'.repeat(19)) }))).toEqual(['page_token']);
    expect(fields(() => validateCreditPage('entries', { accountId: 'other', pageSize: 1, pageToken: forged('entries', '5') }))).toEqual(['page_token']);
    expect(validateCreditPage('entries', { accountId: 'acme', pageSize: 0, pageToken: forged('entries', '5') })).toEqual({ accountId: 'acme', pageSize: 100, after: '5' });
  });
});

describe('balance alert rules in the credit writes', () => {
  const rule = (amounts: string[]) => ({ accountId: 'acme', ruleId: 'b1', description: '', kind: 'balance' as const, balance: { amounts: amounts.map(d) } });
  const alerts = (e: ReturnType<typeof entriesOf>) => e.events.flatMap((x) => ('alert' in x ? [[x.kind, x.alert.threshold.toFixed(), x.alert.available?.toFixed(), x.alert.changedByUserId]] : []));

  it('fires when burns take the available balance below an amount, carrying what stands on the account head it writes', () => {
    const book = new CreditBook(account({ balance: d('10'), balanceRules: [rule(['2', '5'])] }), [grant({ amount: d('10') })]);
    book.burn(charge('c1', 'u7'), d('6'), NOW);
    book.burn(charge('c2', 'u8'), d('2.5'), NOW);
    const e = entriesOf(book.changes);
    const w = creditWritesOf([book], new Map([['acme', d('10')]]), e, NOW);
    expect(alerts(e)).toEqual([['alert_triggered', '2', '1.5', 'u8'], ['alert_triggered', '5', '1.5', 'u8']]);
    expect(w.accounts.map((a) => [a.balance.toFixed(), a.standingBelow])).toEqual([['1.5', { b1: ['2', '5'] }]]);
  });

  it('counts holds as the available balance does, and writes the head when only the standing changed', () => {
    const g = grant({ amount: d('10') });
    const book = new CreditBook(account({ balance: d('10'), balanceRules: [rule(['5'])] }), [g]);
    book.hold({ accountId: 'acme', reservationId: 'r1', userId: 'u1' }, d('6'), NOW);
    const e = entriesOf(book.changes);
    creditWritesOf([book], new Map([['acme', d('10')]]), e, NOW);
    expect(alerts(e)).toEqual([['alert_triggered', '5', '4', 'u1']]);
    // Released: back at 10, resolved once; the standing the head carries is empty.
    const held = { ...g, held: d('6') };
    const later = new CreditBook(account({ balance: d('4'), balanceRules: [rule(['5'])], standingBelow: { b1: ['5'] } }), [held]);
    later.releaseHolds({ accountId: 'acme', reservationId: 'r1', userId: 'u1', creditHolds: [{ grantId: g.grantId, amount: d('6') }] }, NOW);
    const e2 = entriesOf(later.changes);
    const w2 = creditWritesOf([later], new Map([['acme', d('4')]]), e2, NOW);
    expect(alerts(e2)).toEqual([['alert_resolved', '5', '10', '']]);
    expect(w2.accounts.map((a) => a.standingBelow)).toEqual([{}]);
    // A rule made while the balance was below: no balance entry, but the head is written with what now stands.
    const quiet = new CreditBook(account({ balance: d('4'), balanceRules: [rule(['5'])] }), [held]);
    const e3 = entriesOf(quiet.changes);
    const w3 = creditWritesOf([quiet], new Map([['acme', d('4')]]), e3, NOW);
    expect(alerts(e3)).toEqual([['alert_triggered', '5', '4', '']]);
    expect(w3.entries).toEqual([]);
    expect(w3.accounts.map((a) => [a.balance.toFixed(), a.lastEntry, a.standingBelow])).toEqual([['4', 0n, { b1: ['5'] }]]);
  });

  it('writes no head and no alert for an account without balance rules', () => {
    const book = new CreditBook(account({ balance: d('1') }), [grant({ amount: d('1') })]);
    const e = entriesOf(book.changes);
    expect(creditWritesOf([book], new Map([['acme', d('1')]]), e, NOW).accounts).toEqual([]);
    expect(e.events).toEqual([]);
  });
});

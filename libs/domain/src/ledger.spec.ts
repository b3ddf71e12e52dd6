import { Dec, tokenCounts } from '@metering/pricing';
import type { ChargeRecord } from './charge';
import { CounterDelta, CounterState, entriesOf, LedgerEntries, softLimitEvents, withDeltas } from './ledger';
import type { Limit } from './limits';
import { chargeDay, chargeKey, contestedClaims, Reservation, ReservationStateError, reservationKey, settlementClaims } from './reservation';

/** The usage ledger: for each kind of change, the entries it makes (pure; the store applies them). */

const AT = new Date('2026-12-01T10:00:00Z');
const charge = (over: Partial<ChargeRecord> = {}): ChargeRecord => ({
  chargeId: 'c-1', accountId: 'acme', userId: 'u1', idempotencyKey: 'k1', sessionKey: '', provider: 'openai', model: 'gpt-4o', chargeType: 'completion', requestType: 'chat',
  tokens: tokenCounts({ promptTokens: 100, completionTokens: 200 }), totalTokens: 300, callCount: 0, toolCalls: {}, serviceTier: 'standard',
  reference: '', endpoint: '', responseTimeMs: null, wasCached: false, hadError: false, errorMessage: '', metadata: {}, usageTime: AT, usageTimeSupplied: false, usageDate: '2026-12-01', tags: {}, apiKeyId: '',
  reservationId: null, recordTime: AT, pricingStatus: 'priced', priceVersion: 'openai/gpt-4o@x', markup: '1', priceOrigin: 'catalog', rateTime: AT, currencyCode: 'USD',
  costs: { providerCost: '0.00225', promptCost: '0.00025', completionCost: '0.002', callCost: '0', totalCost: '0.00225' },
  ...over,
});
const reservation = (over: Partial<Reservation> = {}): Reservation => ({
  accountId: 'acme', reservationId: 'r-1', idempotencyKey: 'rk', userId: 'u1', status: 'held', heldMessages: 1n, heldTokens: 500n, heldCost: new Dec('0.6'),
  periodDay: '2026-11-30', requestHash: 'h', createTime: AT, expireTime: new Date(AT.getTime() + 600_000), ...over,
});
/** Counter deltas as [period, start, user, used messages/tokens/cost, reserved messages/tokens/cost] for reading. */
const counters = (e: LedgerEntries) =>
  e.counters.map((d: CounterDelta) => [d.key.period, d.key.periodStart, d.key.userId, `${d.used.messageCount}/${d.used.totalTokens}/${d.used.totalCost.toFixed()}`, `${d.reserved.messageCount}/${d.reserved.totalTokens}/${d.reserved.totalCost.toFixed()}`]);

describe('the ledger', () => {
  it('a recorded charge: its rollup, the day and month counters of the user and the account, and a charge_recorded event', () => {
    const c = charge();
    const e = entriesOf([{ kind: 'charge_recorded', charge: c }]);
    expect(e.rollups).toHaveLength(1);
    expect(e.rollups[0]).toMatchObject({ accountId: 'acme', usageDate: '2026-12-01', userId: 'u1', provider: 'openai', model: 'gpt-4o', chargeType: 'completion' });
    expect([e.rollups[0].sums.messageCount, e.rollups[0].sums.totalTokens, e.rollups[0].sums.totalCost.toFixed(), e.rollups[0].sums.unpricedMessageCount]).toEqual([1n, 300n, '0.00225', 0n]);
    expect(counters(e)).toEqual([
      ['day', '2026-12-01', '', '1/300/0.00225', '0/0/0'],
      ['day', '2026-12-01', 'u1', '1/300/0.00225', '0/0/0'],
      ['month', '2026-12-01', '', '1/300/0.00225', '0/0/0'],
      ['month', '2026-12-01', 'u1', '1/300/0.00225', '0/0/0'],
    ]);
    expect(e.events).toEqual([{ kind: 'charge_recorded', charge: c }]);
    expect(e.reservations).toEqual([]);
  });

  it('an unpriced charge counts its message and tokens, no cost, and one unpriced message', () => {
    const e = entriesOf([{ kind: 'charge_recorded', charge: charge({ pricingStatus: 'unpriced', costs: null }) }]);
    expect(e.counters[0]).toMatchObject({ unpricedMessages: 1n, used: { messageCount: 1n, totalTokens: 300n } });
    expect(e.counters[0].used.totalCost.isZero()).toBe(true);
  });

  it('a re-rated charge moves rollups and counters by the difference only (no message, no tokens) and makes a charge_rerated event', () => {
    const before = charge({ pricingStatus: 'unpriced', costs: null });
    const after = charge();
    const e = entriesOf([{ kind: 'charge_rerated', before, after }]);
    expect([e.rollups[0].sums.messageCount, e.rollups[0].sums.totalTokens, e.rollups[0].sums.unpricedMessageCount, e.rollups[0].sums.totalCost.toFixed()]).toEqual([0n, 0n, -1n, '0.00225']);
    expect(counters(e)[0]).toEqual(['day', '2026-12-01', '', '0/0/0.00225', '0/0/0']);
    expect(e.events).toEqual([{ kind: 'charge_rerated', charge: after }]);
  });

  it('a hold placed adds to the reserved amounts of its period day\'s counters; released and expired take them off and finish the reservation', () => {
    const r = reservation();
    expect(counters(entriesOf([{ kind: 'hold_placed', reservation: r }]))).toEqual([
      ['day', '2026-11-30', '', '0/0/0', '1/500/0.6'],
      ['day', '2026-11-30', 'u1', '0/0/0', '1/500/0.6'],
      ['month', '2026-11-01', '', '0/0/0', '1/500/0.6'],
      ['month', '2026-11-01', 'u1', '0/0/0', '1/500/0.6'],
    ]);
    const released = entriesOf([{ kind: 'hold_released', reservation: r, at: AT }]);
    expect(counters(released)[0]).toEqual(['day', '2026-11-30', '', '0/0/0', '-1/-500/-0.6']);
    expect(released.reservations).toEqual([{ ref: { accountId: 'acme', reservationId: 'r-1' }, status: 'released', at: AT }]);
    // A release is the caller's own request, answered with the reservation: no event. An expiry has no caller: an event.
    expect(released.events).toEqual([]);
    const expired = entriesOf([{ kind: 'hold_expired', reservation: r, at: AT }]);
    expect(counters(expired)[0]).toEqual(['day', '2026-11-30', '', '0/0/0', '-1/-500/-0.6']);
    expect(expired.reservations[0].status).toBe('expired');
    expect(expired.events).toEqual([{ kind: 'reservation_expired', reservation: { ...r, status: 'expired', finishTime: AT } }]);
  });

  it('a settlement replaces the hold with the usage on the reservation\'s period; an expired reservation\'s hold is already gone', () => {
    const r = reservation({ periodDay: '2026-12-01' });
    const c = charge({ reservationId: 'r-1' });
    const e = entriesOf([
      { kind: 'charge_recorded', charge: c },
      { kind: 'hold_settled', reservation: r, charge: c, at: AT },
    ]);
    expect(counters(e)[0]).toEqual(['day', '2026-12-01', '', '1/300/0.00225', '-1/-500/-0.6']);
    expect(e.reservations).toEqual([{ ref: { accountId: 'acme', reservationId: 'r-1' }, status: 'settled', at: AT, chargeId: 'c-1' }]);
    expect(e.events.map((x) => x.kind)).toEqual(['charge_recorded']);
    const late = entriesOf([{ kind: 'hold_settled', reservation: { ...r, status: 'expired' }, charge: c, at: AT }]);
    expect(late.counters).toEqual([]);
    expect(late.reservations[0].status).toBe('settled');
  });

  it('sums changes per row and returns every table in key order (the lock order), events in the order of the changes', () => {
    const e = entriesOf([
      { kind: 'charge_recorded', charge: charge({ chargeId: 'b', userId: 'u2' }) },
      { kind: 'charge_recorded', charge: charge({ chargeId: 'a' }) },
      { kind: 'charge_recorded', charge: charge({ chargeId: 'c', usageDate: '2026-11-30' }) },
    ]);
    expect(e.rollups.map((r) => [r.usageDate, r.userId, r.sums.messageCount])).toEqual([['2026-11-30', 'u1', 1n], ['2026-12-01', 'u1', 1n], ['2026-12-01', 'u2', 1n]]);
    expect(counters(e).map((c) => c.slice(0, 4))).toEqual([
      ['day', '2026-11-30', '', '1/300/0.00225'],
      ['day', '2026-11-30', 'u1', '1/300/0.00225'],
      ['day', '2026-12-01', '', '2/600/0.0045'],
      ['day', '2026-12-01', 'u1', '1/300/0.00225'],
      ['day', '2026-12-01', 'u2', '1/300/0.00225'],
      ['month', '2026-11-01', '', '1/300/0.00225'],
      ['month', '2026-11-01', 'u1', '1/300/0.00225'],
      ['month', '2026-12-01', '', '2/600/0.0045'],
      ['month', '2026-12-01', 'u1', '1/300/0.00225'],
      ['month', '2026-12-01', 'u2', '1/300/0.00225'],
    ]);
    expect(e.events.map((x) => (x.kind === 'charge_recorded' ? x.charge.chargeId : ''))).toEqual(['b', 'a', 'c']);
  });

  it('decides on counters read under lock as they will be after the deltas, and names the soft limits the applied counters show crossed', () => {
    const row: CounterState = { accountId: 'acme', period: 'day', periodStart: '2026-11-30', userId: '', used: { messageCount: 4n, totalTokens: 0n, totalCost: new Dec(0) }, reserved: { messageCount: 1n, totalTokens: 500n, totalCost: new Dec('0.6') } };
    const freed = entriesOf([{ kind: 'hold_expired', reservation: reservation(), at: AT }]).counters;
    expect(withDeltas([row], freed)[0].reserved).toEqual({ messageCount: 0n, totalTokens: 0n, totalCost: new Dec(0) });
    const soft: Limit = { accountId: 'acme', userId: '', period: 'day', measure: 'messages', amount: new Dec(4), enforcement: 'soft' };
    const e = entriesOf([{ kind: 'charge_recorded', charge: charge({ usageDate: '2026-11-30' }) }]);
    const after: CounterState = { ...row, used: { ...row.used, messageCount: 4n } }; // 3 before the charge: the limit of 4 is reached now
    expect(softLimitEvents([soft], [after], e)).toEqual([{ kind: 'soft_limit_exceeded', softLimit: { userId: 'u1', limit: soft, periodStart: '2026-11-30', used: after.used } }]);
    expect(softLimitEvents([], [after], e)).toEqual([]);
  });
});

describe('settlement rules', () => {
  const naming = (key: string, reservationId = 'r-1', userId = 'u1') => ({ accountId: 'acme', userId, idempotencyKey: key, reservationId });

  it('the first charge naming a held (or expired) reservation claims it; later ones, foreign users and finished reservations are refused', () => {
    const reservations = new Map([[reservationKey('acme', 'r-1'), reservation()], [reservationKey('acme', 'r-2'), reservation({ reservationId: 'r-2', status: 'released' })]]);
    const { refused, claimed, contested } = settlementClaims([naming('k1'), naming('k2'), naming('k3', 'r-1', 'u2'), naming('k4', 'r-2'), naming('k5', 'r-9')], reservations, new Set());
    expect(claimed).toEqual(new Map([[reservationKey('acme', 'r-1'), chargeKey(naming('k1'))]]));
    expect([...refused.entries()].map(([k, e]) => [k.split('\u0000')[1], e.reason])).toEqual([
      ['k2', 'RESERVATION_SETTLED'],
      ['k3', 'RESERVATION_USER_MISMATCH'],
      ['k4', 'RESERVATION_RELEASED'],
      ['k5', 'RESERVATION_NOT_FOUND'],
    ]);
    expect(refused.get(chargeKey(naming('k2')))).toBeInstanceOf(ReservationStateError);
    expect(contested).toEqual(new Set([reservationKey('acme', 'r-1')]));
  });

  it('a key already used claims nothing, so the next charge naming the reservation settles it', () => {
    const reservations = new Map([[reservationKey('acme', 'r-1'), reservation()]]);
    expect(contestedClaims([naming('k1'), naming('k2'), naming('k3', 'r-2')]).map((c) => c.idempotencyKey)).toEqual(['k1', 'k2']);
    const { refused, claimed } = settlementClaims([naming('k1'), naming('k2')], reservations, new Set([chargeKey(naming('k1'))]));
    expect(claimed.get(reservationKey('acme', 'r-1'))).toBe(chargeKey(naming('k2')));
    expect(refused.size).toBe(0);
  });

  it('a settling charge counts on its reservation\'s day unless it gives its own usage_time', () => {
    const r = reservation({ periodDay: '2026-11-30' });
    expect(chargeDay({ usageTime: AT, usageTimeSupplied: false }, r, 'UTC')).toBe('2026-11-30');
    expect(chargeDay({ usageTime: AT, usageTimeSupplied: true }, r, 'UTC')).toBe('2026-12-01');
    expect(chargeDay({ usageTime: AT, usageTimeSupplied: false }, undefined, 'UTC')).toBe('2026-12-01');
  });
});

describe('the ledger: credits', () => {
  const grant = { accountId: 'acme', grantId: 'g-1', idempotencyKey: 'gk', userId: '', kind: 'paid' as const, amount: new Dec('5'), priority: 0, effectiveTime: AT, reason: '', actor: '', createTime: AT, spent: new Dec(0), held: new Dec(0), expired: new Dec(0), voided: new Dec(0), requestHash: 'h' };

  it('each credit change makes its balance entry and moves its grant; deltas of one grant are summed, entries keep the order of the changes', () => {
    const e = entriesOf([
      { kind: 'grant_created', grant },
      { kind: 'credit_held', accountId: 'acme', grantId: 'g-1', reservationId: 'r-1', amount: new Dec('0.6'), at: AT },
      { kind: 'credit_holds_placed', accountId: 'acme', reservationId: 'r-1', holds: [{ grantId: 'g-1', amount: new Dec('0.6') }] },
      { kind: 'credit_hold_released', accountId: 'acme', grantId: 'g-1', reservationId: 'r-1', amount: new Dec('0.6'), at: AT, chargeId: 'c-1' },
      { kind: 'credit_burned', accountId: 'acme', grantId: 'g-1', chargeId: 'c-1', amount: new Dec('0.7'), at: AT },
      { kind: 'credit_overage', accountId: 'acme', chargeId: 'c-1', periodStart: '2026-12-01', amount: new Dec('0.1'), at: AT },
      { kind: 'credit_refunded', accountId: 'acme', grantId: 'g-1', chargeId: 'c-1', amount: new Dec('0.2'), at: AT },
      { kind: 'grant_expired', grant: { ...grant, expired: new Dec('4.5'), spent: new Dec('0.5') }, amount: new Dec('4.5'), at: AT },
    ]);
    expect(e.credits.balance.map((b) => [b.kind, b.amount.toFixed()])).toEqual([
      ['grant', '5'], ['hold', '0.6'], ['hold_released', '0.6'], ['burn', '0.7'], ['overage', '0.1'], ['refund', '0.2'], ['expiry', '4.5'],
    ]);
    expect(e.credits.grants).toEqual([{ accountId: 'acme', grantId: 'g-1', spent: new Dec('0.5'), held: new Dec(0), expired: new Dec('4.5'), voided: new Dec(0) }]);
    expect(e.credits.overage).toEqual([{ accountId: 'acme', periodStart: '2026-12-01', amount: new Dec('0.1') }]);
    expect(e.credits.holds).toEqual([{ accountId: 'acme', reservationId: 'r-1', holds: [{ grantId: 'g-1', amount: new Dec('0.6') }] }]);
    expect(e.events.map((x) => x.kind)).toEqual(['grant_created', 'grant_expired']);
    // Credits touch no usage: no rollup, no counter.
    expect([e.rollups, e.counters]).toEqual([[], []]);
  });
});

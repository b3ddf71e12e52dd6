import { ChargeRecord, DomainError, parseAllowList, ValidationError } from '@metering/domain';
import { Dec, PriceTable } from '@metering/pricing';
import { AlertsService } from '../../src/services/alerts.service';
import { ChargesService } from '../../src/services/charges.service';
import { CreditsService } from '../../src/services/credits.service';
import { LimitsService } from '../../src/services/limits.service';
import { PricingService } from '../../src/services/pricing.service';
import { RerateService } from '../../src/services/rerate.service';
import { ReservationsService } from '../../src/services/reservations.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { expectBalanceIdentity, expectRollupsMatchCharges } from '../support/consistency';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { queuedBehind } from '../support/lock-waits';
import { chargeRequest, checkRequest } from '../support/requests';

/**
 * Issue 16 on the services, on the embedded database and on Postgres:
 * grants burned in the documented order, holds, settling for more or less
 * than held, expiry while held, a void racing a charge, re-rating, the two
 * policies, the balance history and its events. After every operation the
 * balance identity holds (test/support/consistency.ts, expectBalanceIdentity).
 */
requirePostgresInCi();

const USD = (amount: string) => ({ amount, currencyCode: 'USD' });
const ts = (d: Date) => ({ seconds: String(Math.floor(d.getTime() / 1000)), nanos: (d.getTime() % 1000) * 1_000_000 });
const HOUR = 3600_000;
const MODEL = { provider: 'selfhosted', model: 'credit-llm' };
/** Prompt tokens that cost `usd` at $1 per million input tokens (the price set below). */
const tokensFor = (usd: string) => new Dec(usd).times(1_000_000).toFixed(0);
const costOf = (c: ChargeRecord) => new Dec(c.costs?.totalCost ?? 0);
const sum = (xs: Dec[]) => xs.reduce((a, b) => a.plus(b), new Dec(0));

describe.each(databaseTargets())('credits on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  let now = new Date();
  const clock = () => now;
  let pricing: PricingService;
  let charges: ChargesService;
  let limits: LimitsService;
  let reservations: ReservationsService;
  let credits: CreditsService;
  let rerate: RerateService;

  beforeAll(async () => {
    tdb = await target.create();
    // 1,000 concurrent reservations of one account queue on its rows, and for one of the pool's
    // connections: on a loaded 2-core machine (more so on a Citus cluster on it) the last waits
    // well over the default 10 s (docs/scaling.md, section 4), so the pool waits as long as it takes.
    db = openDatabase({ ...tdb.config, acquireTimeoutMs: 120_000 });
    await migrate(db);
    pricing = new PricingService(db, new PriceTable(), clock);
    charges = new ChargesService(db, pricing, clock);
    limits = new LimitsService(db, pricing, clock);
    reservations = new ReservationsService(db, clock);
    credits = new CreditsService(db, clock);
    rerate = new RerateService(db, pricing, clock);
    await setPrice('1');
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  beforeEach(() => {
    now = new Date();
  });

  const setPrice = (inputPerMillion: string) =>
    pricing.setPrice({
      accountId: '', ...MODEL, effectiveTime: ts(new Date('2026-01-01T00:00:00Z')), source: 'test', actor: 'ops@example.com',
      rates: { inputPerMillion, outputPerMillion: '0', cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '', reasoningPerMillion: '', perCall: '', longContext: undefined },
    });
  const grant = (accountId: string, key: string, amount: string, over: Partial<Parameters<CreditsService['createGrant']>[0]> = {}) =>
    credits.createGrant({ accountId, idempotencyKey: key, userId: '', kind: 0, amount: USD(amount), priority: 0, reason: 'test', actor: 'ops@example.com', ...over });
  const charge = async (accountId: string, key: string, usd: string, over: Parameters<typeof chargeRequest>[0] = {}) =>
    (await charges.recordCharge(chargeRequest({ accountId, idempotencyKey: key, ...MODEL, promptTokens: tokensFor(usd), completionTokens: '0', ...over }))).charge;
  const reserve = (accountId: string, key: string, usd: string, userId = 'u1') =>
    limits.checkLimits(checkRequest({ accountId, userId, reserve: true, idempotencyKey: key, additionalCost: USD(usd) }));
  const balance = async (accountId: string, userId = '') => credits.getBalance({ accountId, userId });
  const entries = async (accountId: string) => (await credits.listBalanceEntries({ accountId, pageSize: 1000, pageToken: '' })).entries;
  const grantRow = async (accountId: string, grantId: string) => (await credits.listGrants({ accountId, pageSize: 1000, pageToken: '' })).grants.find((g) => g.grantId === grantId);
  const failure = async (p: Promise<unknown>): Promise<DomainError> => {
    try {
      await p;
    } catch (e) {
      if (e instanceof DomainError) return e;
      throw e;
    }
    throw new Error('expected a domain error');
  };

  it('burns grants in the documented order (priority, earliest expiry, oldest), one charge over several grants, with a balance entry per burn', async () => {
    const a = 'order';
    const oldest = await grant(a, 'no-expiry-old', '1.00');
    now = new Date(now.getTime() + 1000);
    const newest = await grant(a, 'no-expiry-new', '0.50');
    const soon = await grant(a, 'expires-soon', '1.00', { expireTime: ts(new Date(now.getTime() + 24 * HOUR)) });
    const later = await grant(a, 'expires-later', '1.00', { expireTime: ts(new Date(now.getTime() + 48 * HOUR)) });
    const last = await grant(a, 'low-priority', '1.00', { priority: 7, expireTime: ts(new Date(now.getTime() + HOUR)) });
    await expectBalanceIdentity(db, a);
    // Same priority: the earliest expiry first, then the other expiring one, then the oldest without expiry;
    // the priority-7 grant last although it expires first.
    const c1 = await charge(a, 'c1', '1.20');
    const c2 = await charge(a, 'c2', '1.10');
    await expectBalanceIdentity(db, a);
    const burns = (await entries(a)).filter((e) => e.kind === 'burn').map((e) => ({ grant: e.grantId, charge: e.chargeId, amount: e.amount.toFixed() }));
    const c1a = Dec.min(soon.grant.amount, costOf(c1));
    const c1b = costOf(c1).minus(c1a);
    const c2a = later.grant.amount.minus(c1b);
    const c2b = costOf(c2).minus(c2a);
    expect(burns).toEqual([
      { grant: soon.grant.grantId, charge: c1.chargeId, amount: c1a.toFixed() },
      { grant: later.grant.grantId, charge: c1.chargeId, amount: c1b.toFixed() },
      { grant: later.grant.grantId, charge: c2.chargeId, amount: c2a.toFixed() },
      { grant: oldest.grant.grantId, charge: c2.chargeId, amount: c2b.toFixed() },
    ]);
    for (const untouched of [newest, last]) expect((await grantRow(a, untouched.grant.grantId))?.spent.toFixed()).toBe('0');
    const total = sum([oldest, newest, soon, later, last].map((g) => g.grant.amount));
    expect((await balance(a)).available.toFixed()).toBe(total.minus(costOf(c1)).minus(costOf(c2)).toFixed());
    // A lower priority number burns before an earlier expiry.
    const b = 'priority';
    const low = await grant(b, 'low', '1', { priority: 5, expireTime: ts(new Date(now.getTime() + HOUR)) });
    const high = await grant(b, 'high', '1', { priority: 1 });
    const c = await charge(b, 'c', '0.25');
    expect((await grantRow(b, high.grant.grantId))?.spent.toFixed()).toBe(costOf(c).toFixed());
    expect((await grantRow(b, low.grant.grantId))?.spent.toFixed()).toBe('0');
    await expectBalanceIdentity(db, b);
    await expectRollupsMatchCharges(db, a);
  });

  it('creates grants idempotently: the same key and content replays, different content is ALREADY_EXISTS naming the fields; hostile input is INVALID_ARGUMENT by field, nothing written', async () => {
    const a = 'idem';
    const first = await grant(a, 'g1', '10');
    const again = await grant(a, 'g1', '10');
    expect(again).toMatchObject({ replayed: true, grant: { grantId: first.grant.grantId } });
    const conflict = await failure(grant(a, 'g1', '11', { priority: 3 }));
    expect(conflict).toMatchObject({ code: 'ALREADY_EXISTS', reason: 'IDEMPOTENCY_KEY_REUSED', metadata: { fields: 'amount,priority' } });
    const bad = await failure(grant(a, '', '-1', { userId: 'bad user', priority: 5000, kind: 9, expireTime: ts(new Date(now.getTime() - HOUR)), amount: { amount: '1e3', currencyCode: 'EUR' } }));
    expect(bad).toBeInstanceOf(ValidationError);
    expect((bad as ValidationError).violations.map((v) => v.field).sort()).toEqual(['amount.amount', 'amount.currency_code', 'expire_time', 'idempotency_key', 'kind', 'priority', 'user_id']);
    expect((await failure(grant(a, 'zero', '0'))) as ValidationError).toMatchObject({ violations: [{ field: 'amount.amount' }] });
    expect((await failure(credits.voidGrant({ accountId: a, grantId: 'nope', reason: '', actor: '' }))) as ValidationError).toMatchObject({ violations: [{ field: 'grant_id' }] });
    expect((await failure(credits.setCreditPolicy({ accountId: a, policy: 0 }))) as ValidationError).toMatchObject({ violations: [{ field: 'policy' }] });
    expect((await failure(credits.listBalanceEntries({ accountId: a, pageSize: 1, pageToken: 'forged' }))) as ValidationError).toMatchObject({ violations: [{ field: 'page_token' }] });
    expect(await db('credit_grants').where({ account_id: a }).count<{ n: string }[]>('* as n')).toEqual([{ n: '1' }]);
    await expectBalanceIdentity(db, a);
  });

  it('holds against the balance, settles for more or less than held, releases, and denies under deny (BALANCE_INSUFFICIENT)', async () => {
    const a = 'holds';
    const g = await grant(a, 'g', '1.00');
    const r1 = await reserve(a, 'r1', '0.30');
    expect(r1.allowed).toBe(true);
    expect(r1.reservation?.creditHolds).toEqual([{ grantId: g.grant.grantId, amount: new Dec('0.30') }]);
    expect((await balance(a)).available.toFixed()).toBe(g.grant.amount.minus('0.30').toFixed());
    await expectBalanceIdentity(db, a);
    const r2 = await reserve(a, 'r2', '0.30');
    const r3 = await reserve(a, 'r3', '0.30');
    await expectBalanceIdentity(db, a);
    // 0.10 left: a call estimated at 0.30 is denied, with the reason of its own.
    const denied = await reserve(a, 'r4', '0.30');
    expect(denied).toMatchObject({ allowed: false, reason: 'balance_insufficient' });
    expect(denied.reservation).toBeUndefined();
    expect(await failure(limits.checkLimits(checkRequest({ accountId: a, additionalCost: USD('0.30'), denyAsError: true })))).toMatchObject({ code: 'RESOURCE_EXHAUSTED', reason: 'BALANCE_INSUFFICIENT' });
    expect((await limits.checkLimits(checkRequest({ accountId: a, additionalCost: USD('0.05') }))).allowed).toBe(true);
    // Settle r1 for more than held (0.45), r2 for less (0.10), release r3.
    const more = await charge(a, 'more', '0.45', { reservationId: r1.reservation!.reservationId });
    await expectBalanceIdentity(db, a);
    const less = await charge(a, 'less', '0.10', { reservationId: r2.reservation!.reservationId });
    await expectBalanceIdentity(db, a);
    await reservations.release({ accountId: a, reservationId: r3.reservation!.reservationId });
    await expectBalanceIdentity(db, a);
    const after = await balance(a);
    expect(after).toMatchObject({ held: new Dec(0) });
    // Settling r1 for 0.45 could burn its own 0.30 and the 0.10 nobody held, not r2's and r3's holds: the rest is overage.
    const coverable = g.grant.amount.minus(new Dec('0.30').times(2));
    expect(after.overage.toFixed()).toBe(costOf(more).minus(coverable).toFixed());
    expect(after.available.toFixed()).toBe(g.grant.amount.minus(coverable).minus(costOf(less)).toFixed());
    const kinds = (await entries(a)).map((e) => e.kind);
    expect(kinds).toEqual(['grant', 'hold', 'hold', 'hold', 'hold_released', 'burn', 'overage', 'hold_released', 'burn', 'hold_released']);
    await expectRollupsMatchCharges(db, a);
  });

  it('admits exactly as many concurrent reservations as the balance covers', async () => {
    const a = 'race';
    const g = await grant(a, 'g', '5.00');
    const results = await Promise.all(Array.from({ length: 200 }, (_, n) => reserve(a, `r${n}`, '0.10', `u${n % 7}`)));
    const admitted = results.filter((r) => r.allowed);
    expect(admitted).toHaveLength(g.grant.amount.dividedBy('0.10').toNumber());
    expect(results.filter((r) => !r.allowed).every((r) => r.reason === 'balance_insufficient')).toBe(true);
    expect((await balance(a)).available.toFixed()).toBe('0');
    await expectBalanceIdentity(db, a);
  });

  it('expires a grant while a reservation holds part of it: the unheld remainder at expiry, the held part when the hold ends, never burned by the late charge', async () => {
    const a = 'expiry';
    const expiring = await grant(a, 'trial', '1.00', { kind: 2, expireTime: ts(new Date(now.getTime() + HOUR)) });
    const paid = await grant(a, 'paid', '2.00', { kind: 1 });
    const r = await reserve(a, 'r', '0.60');
    expect(r.reservation?.creditHolds).toEqual([{ grantId: expiring.grant.grantId, amount: new Dec('0.60') }]);
    now = new Date(now.getTime() + 2 * HOUR);
    // Read before the sweeper: the grant reads as expired (lazy expiry).
    const seen = await grantRow(a, expiring.grant.grantId);
    expect(seen).toMatchObject({ expired: expiring.grant.amount.minus('0.60') });
    expect((await balance(a)).available.toFixed()).toBe(paid.grant.amount.toFixed());
    // (Grants of other accounts of this file may be due too.)
    expect(await credits.expireAllDue()).toBeGreaterThanOrEqual(1);
    expect(await credits.expireAllDue()).toBe(0);
    await expectBalanceIdentity(db, a);
    // The call's charge arrives after the expiry: it burns the paid grant, and the trial's held part expires.
    const late = await charge(a, 'late', '0.50', { reservationId: r.reservation!.reservationId });
    await expectBalanceIdentity(db, a);
    expect(await grantRow(a, expiring.grant.grantId)).toMatchObject({ spent: new Dec(0), held: new Dec(0), expired: expiring.grant.amount });
    expect((await grantRow(a, paid.grant.grantId))?.spent.toFixed()).toBe(costOf(late).toFixed());
    const events = await db('charge_events').where({ account_id: a }).whereIn('kind', ['grant_created', 'grant_expired']).orderBy('sequence').pluck('kind');
    expect(events).toEqual(['grant_created', 'grant_created', 'grant_expired', 'grant_expired']);
    // A reservation that expires unsettled frees its hold on a grant that expired meanwhile.
    const b = 'expiry-2';
    const g2 = await grant(b, 'g', '1.00', { expireTime: ts(new Date(now.getTime() + HOUR)) });
    await limits.checkLimits(checkRequest({ accountId: b, reserve: true, idempotencyKey: 'r', additionalCost: USD('0.40'), holdSeconds: 2 * 3600 }));
    now = new Date(now.getTime() + 3 * HOUR);
    await credits.expireAllDue();
    expect(await reservations.expireAllDue()).toBeGreaterThanOrEqual(1);
    expect(await db('reservations').where({ account_id: b }).pluck('status')).toEqual(['expired']);
    expect(await grantRow(b, g2.grant.grantId)).toMatchObject({ held: new Dec(0), expired: g2.grant.amount });
    await expectBalanceIdentity(db, b);
  });

  it('voids a grant at most once, racing charges: every cent is either spent or voided', async () => {
    for (const round of [1, 2, 3]) {
      const a = `void-${round}`;
      const g = await grant(a, 'g', '1.00');
      await credits.setCreditPolicy({ accountId: a, policy: 2 });
      const results = await Promise.allSettled([
        ...Array.from({ length: 10 }, (_, n) => charge(a, `c${n}`, '0.07')),
        credits.voidGrant({ accountId: a, grantId: g.grant.grantId, reason: 'refund', actor: 'support@example.com' }),
        ...Array.from({ length: 10 }, (_, n) => charge(a, `d${n}`, '0.07')),
      ]);
      expect(results.every((r) => r.status === 'fulfilled')).toBe(true);
      const row = await grantRow(a, g.grant.grantId);
      expect(row?.spent.plus(row.voided).toFixed()).toBe(g.grant.amount.toFixed());
      expect(row?.voidTime).toBeDefined();
      expect(await failure(credits.voidGrant({ accountId: a, grantId: g.grant.grantId, reason: '', actor: '' }))).toMatchObject({ code: 'FAILED_PRECONDITION', reason: 'GRANT_VOIDED' });
      // What the void left uncovered is overage (allow_overage).
      const b = await balance(a);
      const all = await db('charges').where({ account_id: a }).pluck('total_cost');
      expect(b.overage.toFixed()).toBe(sum(all.map((c: string) => new Dec(c))).minus(row!.spent).toFixed());
      await expectBalanceIdentity(db, a);
    }
  });

  it('re-rating burns the difference of a dearer price and refunds that of a cheaper one (overage first)', async () => {
    const a = 'rerate';
    await grant(a, 'g', '1.00');
    await credits.setCreditPolicy({ accountId: a, policy: 2 });
    const unpriced = { provider: 'selfhosted', model: 'not-yet-priced' };
    const c1 = (await charges.recordCharge(chargeRequest({ accountId: a, idempotencyKey: 'u1', ...unpriced, promptTokens: '300000', completionTokens: '0' }))).charge;
    expect(c1.pricingStatus).toBe('unpriced');
    await expectBalanceIdentity(db, a);
    const day = c1.usageDate;
    const price = (input: string) =>
      pricing.setPrice({
        accountId: '', ...unpriced, effectiveTime: ts(new Date('2026-01-01T00:00:00Z')), source: 'test', actor: 'ops@example.com',
        rates: { inputPerMillion: input, outputPerMillion: '0', cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '', reasoningPerMillion: '', perCall: '', longContext: undefined },
      });
    await price('4'); // 300k tokens at $4/M = $1.20: 1.00 burned, 0.20 overage
    const range = { accountId: a, startDate: day, endDate: day, mode: 0, provider: '', model: '', dryRun: false };
    expect(await rerate.rerate(range)).toMatchObject({ changed: 1 });
    await expectBalanceIdentity(db, a);
    const priced = await db('charges').where({ account_id: a, charge_id: c1.chargeId }).first();
    const b1 = await balance(a);
    expect(b1.available.toFixed()).toBe('0');
    expect(b1.overage.toFixed()).toBe(new Dec(priced.total_cost).minus('1.00').toFixed());
    await price('2'); // now $0.60: 0.60 back, the overage first, then the grant
    expect(await rerate.rerate({ ...range, mode: 2 })).toMatchObject({ changed: 1 });
    await expectBalanceIdentity(db, a);
    const repriced = await db('charges').where({ account_id: a, charge_id: c1.chargeId }).first();
    const b2 = await balance(a);
    expect(b2.overage.toFixed()).toBe('0');
    expect(b2.available.toFixed()).toBe(new Dec('1.00').minus(repriced.total_cost).toFixed());
    expect((await entries(a)).map((e) => e.kind)).toEqual(['grant', 'burn', 'overage', 'overage', 'refund']);
    await expectRollupsMatchCharges(db, a);
    // A charge priced before its account had credits never burned: re-rating it moves no credits.
    const b = 'rerate-before';
    const early = (await charges.recordCharge(chargeRequest({ accountId: b, idempotencyKey: 'early', ...unpriced, promptTokens: '100000', completionTokens: '0' }))).charge;
    expect(early.pricingStatus).toBe('priced');
    await grant(b, 'g', '1.00');
    await price('3');
    expect(await rerate.rerate({ ...range, accountId: b, mode: 2 })).toMatchObject({ changed: 1 });
    expect((await entries(b)).map((e) => e.kind)).toEqual(['grant']);
    await expectBalanceIdentity(db, b);
  });

  it('under allow_overage records and prices every charge and tracks the overage of the month; balance events fire once per crossing', async () => {
    const a = 'overage';
    await credits.setCreditPolicy({ accountId: a, policy: 2, lowBalanceThreshold: USD('0.50') });
    await grant(a, 'g', '1.00');
    const c1 = await charge(a, 'c1', '0.40'); // 0.60 left: above the threshold
    const c2 = await charge(a, 'c2', '0.40'); // 0.20 left: BALANCE_LOW
    const c3 = await charge(a, 'c3', '0.40'); // 0 left, 0.20 overage: BALANCE_EXHAUSTED
    const c4 = await charge(a, 'c4', '0.40'); // overage
    expect((await limits.checkLimits(checkRequest({ accountId: a, additionalCost: USD('1') }))).allowed).toBe(true);
    const b = await balance(a);
    expect(b.available.toFixed()).toBe('0');
    expect(b.overage.toFixed()).toBe(sum([c1, c2, c3, c4].map(costOf)).minus('1.00').toFixed());
    const kinds = await db('charge_events').where({ account_id: a }).whereNotIn('kind', ['charge_recorded']).orderBy('sequence').pluck('kind');
    expect(kinds).toEqual(['grant_created', 'balance_low', 'balance_exhausted']);
    // Under deny the same account denies.
    await credits.setCreditPolicy({ accountId: a, policy: 1 });
    expect(await limits.checkLimits(checkRequest({ accountId: a }))).toMatchObject({ allowed: false, reason: 'balance_insufficient' });
    await expectBalanceIdentity(db, a);
  });

  it('restricts a grant to one user, and pages the balance history with the running balance', async () => {
    const a = 'users';
    const mine = await grant(a, 'mine', '1.00', { userId: 'alice' });
    await grant(a, 'shared', '0.50');
    await charge(a, 'bob', '0.30', { userId: 'bob' });
    expect((await grantRow(a, mine.grant.grantId))?.spent.toFixed()).toBe('0');
    expect((await balance(a, 'bob')).available.toFixed()).toBe('0.2');
    expect((await balance(a, 'alice')).available.toFixed()).toBe('1.2');
    const all = await entries(a);
    const pages = [];
    let token = '';
    do {
      const page = await credits.listBalanceEntries({ accountId: a, pageSize: 1, pageToken: token });
      pages.push(...page.entries);
      token = page.nextPageToken;
    } while (token);
    expect(pages).toEqual(all);
    expect(all.map((e) => e.sequence)).toEqual(all.map((_, n) => BigInt(n + 1)));
    const grantPages = [];
    token = '';
    do {
      const page = await credits.listGrants({ accountId: a, pageSize: 1, pageToken: token });
      grantPages.push(...page.grants.map((g) => g.grantId));
      token = page.nextPageToken;
    } while (token);
    expect(grantPages).toEqual((await credits.listGrants({ accountId: a, pageSize: 100, pageToken: '' })).grants.map((g) => g.grantId));
    expect(grantPages).toHaveLength(2);
    expect(all[all.length - 1].balanceAfter.toFixed()).toBe((await balance(a)).ledgerBalance.toFixed());
    await expectBalanceIdentity(db, a);
  });

  it('balance alert rules: each amount fires once when the available balance falls below it and resolves once when it is back, whatever moves it (charges, a hold and its release, a grant, a re-rating refund, a void), with its deliveries queued', async () => {
    const a = 'balance-alerts';
    const alerts = new AlertsService(db, parseAllowList('127.0.0.1'), clock);
    const own = { provider: 'selfhosted', model: 'balance-llm' };
    const price = (input: string) =>
      pricing.setPrice({
        accountId: '', ...own, effectiveTime: ts(new Date('2026-01-01T00:00:00Z')), source: 'test', actor: 'ops@example.com',
        rates: { inputPerMillion: input, outputPerMillion: '0', cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '', reasoningPerMillion: '', perCall: '', longContext: undefined },
      });
    await price('1');
    const spend = (key: string, usd: string) => charge(a, key, usd, own);
    const g1 = (await grant(a, 'g1', '10')).grant;
    await alerts.createEndpoint({ accountId: a, endpointId: '', url: 'http://127.0.0.1:9/hook', description: '', enabled: true, eventTypes: [], format: 0 });
    await alerts.createRule({ accountId: a, ruleId: '', description: 'low credits', kind: 3, balance: { amounts: [USD('8'), USD('5')] } });
    const told = async () =>
      (await db('charge_events').where({ account_id: a }).whereIn('kind', ['alert_triggered', 'alert_resolved']).orderBy('sequence')).map(
        (r: { kind: string; payload: Record<string, string> }) => `${r.kind === 'alert_triggered' ? 'T' : 'R'}${r.payload.threshold}@${r.payload.available}`,
      );
    const available = async () => (await balance(a)).available.toFixed();

    await spend('c1', '1'); // 9
    await spend('c2', '1.5'); // 7.5: below 8
    await spend('c3', '3'); // 4.5: below 5
    await spend('c4', '0.5'); // 4
    expect(await available()).toBe('4');
    expect(await told()).toEqual(['T8@7.5', 'T5@4.5']);
    await grant(a, 'g2', '2'); // 6: back above 5
    expect(await told()).toEqual(['T8@7.5', 'T5@4.5', 'R5@6']);
    // A hold counts as GetBalance's available counts it: held is not available.
    const held = await reserve(a, 'r1', '2');
    expect(await available()).toBe('4');
    await reservations.release({ accountId: a, reservationId: held.reservation?.reservationId ?? '' });
    expect(await told()).toEqual(['T8@7.5', 'T5@4.5', 'R5@6', 'T5@4', 'R5@6']);
    // Re-rated at half the price: half of the 6 USD spent comes back (9).
    await price('0.5');
    const day = (await db('charges').where({ account_id: a }).first()).usage_date;
    const dayText = typeof day === 'string' ? day.slice(0, 10) : new Date(day).toISOString().slice(0, 10);
    expect(await rerate.rerate({ accountId: a, startDate: dayText, endDate: dayText, mode: 2, provider: '', model: '', dryRun: false })).toMatchObject({ changed: 4 });
    expect(await available()).toBe('9');
    // Voiding the 2 USD grant takes it to 7: below 8 again.
    const g2 = (await credits.listGrants({ accountId: a, pageSize: 10, pageToken: '' })).grants.find((g) => g.grantId !== g1.grantId);
    await credits.voidGrant({ accountId: a, grantId: g2?.grantId ?? '', reason: 'test', actor: 'ops@example.com' });
    expect(await available()).toBe('7');
    expect(await told()).toEqual(['T8@7.5', 'T5@4.5', 'R5@6', 'T5@4', 'R5@6', 'R8@9', 'T8@7']);
    // Each queued once to the endpoint, with the body it signs.
    const queued = await db('webhook_deliveries').where({ account_id: a }).orderBy('created_at');
    expect(queued.map((d: { event_type: string }) => d.event_type).sort()).toEqual([...Array(4).fill('alert.triggered'), ...Array(3).fill('alert.resolved')].sort());
    expect(JSON.parse(queued[0].payload).data).toMatchObject({ kind: 'balance', description: 'low credits', threshold: '8', available: '7.5', changed_by_user_id: 'u1' });
    // Never a standing row of a period (the period-end sweep cannot resolve them); what stands is on the credit row.
    expect(await db('alert_states').where({ account_id: a })).toEqual([]);
    expect(Object.values((await db('credit_accounts').where({ account_id: a }).first()).balance_alerts)).toEqual([['8']]);
    expect(await alerts.resolveEndedPeriods()).toBe(0);
    await expectBalanceIdentity(db, a);
  });

  it('a charge that waited for the credit lock of a CreateGrant sees the new grant (the lock read runs again when the grants read do not add up to the balance)', async () => {
    if (target.name !== 'postgres') return; // one connection on the embedded database: nothing waits
    const a = 'lock-wait';
    await grant(a, 'g0', '0.001');
    await credits.setCreditPolicy({ accountId: a, policy: 2 });
    // A third transaction holds the new grant's idempotency key, so that CreateGrant stops after locking the credit row...
    const holder = await db.transaction();
    await holder.raw(
      `INSERT INTO credit_grants (account_id, grant_id, idempotency_key, user_id, kind, amount, priority, effective_time, reason, actor, request_hash, create_time)
       VALUES (?, gen_random_uuid(), 'g1', '', 'paid', 1, 0, now(), '', '', 'x', now())`,
      [a],
    );
    // ...and a charge waits for that lock, its statement's snapshot taken before the grant exists.
    const [, c] = await queuedBehind(db, holder, () => grant(a, 'g1', '5'), () => charge(a, 'c1', '0.5'));
    const burns = (await entries(a)).filter((e) => e.chargeId === c.chargeId);
    // Without the second read it burns the 0.001 it saw and records the rest as overage.
    expect(burns.map((e) => e.kind)).not.toContain('overage');
    expect(sum(burns.map((e) => e.amount)).toFixed()).toBe(costOf(c).toFixed());
    expect((await balance(a)).overage.toFixed()).toBe('0');
    await expectBalanceIdentity(db, a);
  });

  it('leaves accounts without grants as they were: no credit rows, no balance', async () => {
    const a = 'no-credits';
    await charge(a, 'c', '0.10');
    await reserve(a, 'r', '0.10');
    expect(await balance(a)).toMatchObject({ hasCredits: false, available: new Dec(0) });
    for (const t of ['credit_accounts', 'credit_grants', 'credit_entries']) expect(await db(t).where({ account_id: a }).first()).toBeUndefined();
    expect((await db('reservations').where({ account_id: a }).first()).credit_holds).toEqual([]);
  });
});

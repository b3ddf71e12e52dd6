import { RecordChargeRequest } from '@metering/contracts';
import { CheckLimitsRequestInput, DomainError, QuotaExceededError } from '@metering/domain';
import { PriceTable } from '@metering/pricing';
import { AccountsService } from '../../src/services/accounts.service';
import { ChargesService } from '../../src/services/charges.service';
import { LimitsService } from '../../src/services/limits.service';
import { PricingService } from '../../src/services/pricing.service';
import { ReservationsService } from '../../src/services/reservations.service';
import { UsageService } from '../../src/services/usage.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { expectRollupsMatchCharges } from '../support/consistency';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { chargeRequest, checkRequest } from '../support/requests';

/**
 * Issue 4 on the services, on the embedded database and on Postgres: limits
 * by scope, period and enforcement; account time zones; reservations
 * (reserve, settle, release, expire), also under 1,000 concurrent calls.
 */
requirePostgresInCi();

const PERIOD = { day: 1, month: 2 } as const;
const MEASURE = { messages: 1, tokens: 2, cost: 3 } as const;
const ENFORCEMENT = { hard: 1, soft: 2 } as const;

describe.each(databaseTargets())('budgets on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  let now = new Date();
  const clock = () => now;
  let charges: ChargesService;
  let limits: LimitsService;
  let reservations: ReservationsService;
  let accounts: AccountsService;
  let usage: UsageService;

  beforeAll(async () => {
    tdb = await target.create();
    // 1,000 concurrent reservations of one account queue on its rows, and for one of the pool's
    // connections: on a loaded 2-core machine (more so on a Citus cluster on it) the last waits
    // well over the default 10 s (docs/scaling.md, section 4), so the pool waits as long as it takes.
    db = openDatabase({ ...tdb.config, acquireTimeoutMs: 120_000 });
    await migrate(db);
    const pricing = new PricingService(db, new PriceTable(), clock);
    charges = new ChargesService(db, pricing, clock);
    limits = new LimitsService(db, pricing, clock);
    reservations = new ReservationsService(db, clock);
    accounts = new AccountsService(db, clock);
    usage = new UsageService(db);
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  beforeEach(() => {
    now = new Date();
  });

  const put = (accountId: string, userId: string, period: keyof typeof PERIOD, measure: keyof typeof MEASURE, amount: string, enforcement: keyof typeof ENFORCEMENT = 'hard') =>
    limits.putLimit({ accountId, userId, period: PERIOD[period], measure: MEASURE[measure], enforcement: ENFORCEMENT[enforcement], amount });
  const reserve = (accountId: string, key: string, over: Partial<CheckLimitsRequestInput> = {}) =>
    limits.checkLimits({ ...checkRequest({ accountId, reserve: true, idempotencyKey: key }), ...over });
  const charge = (accountId: string, key: string, over: Partial<RecordChargeRequest> = {}) => charges.recordCharge(chargeRequest({ accountId, idempotencyKey: key, ...over }));
  const failure = async (p: Promise<unknown>): Promise<DomainError> => {
    try {
      await p;
    } catch (e) {
      if (e instanceof DomainError) return e;
      throw e;
    }
    throw new Error('expected a domain error');
  };
  const counter = async (accountId: string, userId: string, period: 'day' | 'month') =>
    db('usage_counters').where({ account_id: accountId, user_id: userId, period }).orderBy('period_start', 'desc').first();

  it('manages limits of every scope, period and enforcement, and lists them with usage and what remains', async () => {
    const a = 'lim';
    await put(a, '', 'month', 'cost', '100');
    await put(a, 'u1', 'day', 'tokens', '1000');
    await put(a, 'u1', 'day', 'tokens', '800', 'soft');
    await put(a, 'u2', 'day', 'messages', '5');
    await charge(a, 'c1');
    const all = await limits.listLimits({ accountId: a, userId: '', pageSize: 0, pageToken: '' });
    expect(all.timeZone).toBe('UTC');
    expect(all.limits.map((l) => [l.limit.userId, l.limit.period, l.limit.measure, l.limit.enforcement, l.used, l.remaining])).toEqual([
      ['', 'month', 'cost', 'hard', '0.00225', '99.99775'],
      ['u1', 'day', 'tokens', 'hard', '300', '700'],
      ['u1', 'day', 'tokens', 'soft', '300', '500'],
      ['u2', 'day', 'messages', 'hard', '0', '5'],
    ]);
    const forU1 = await limits.listLimits({ accountId: a, userId: 'u1', pageSize: 2, pageToken: '' });
    expect(forU1.limits.map((l) => l.limit.userId)).toEqual(['', 'u1']);
    const next = await limits.listLimits({ accountId: a, userId: 'u1', pageSize: 2, pageToken: forU1.nextPageToken });
    expect(next.limits.map((l) => l.limit.enforcement)).toEqual(['soft']);
    expect(next.nextPageToken).toBe('');
    expect((await failure(limits.listLimits({ accountId: 'other', userId: 'u1', pageSize: 2, pageToken: forU1.nextPageToken }))).message).toContain('page_token');
    // SetLimits and GetLimits see only the hard day limits (the Django models' daily limits).
    expect(await limits.getLimits({ accountId: a, userId: 'u1' })).toMatchObject({ tokens: 1000n });
    expect(await limits.deleteLimit({ accountId: a, userId: 'u1', period: PERIOD.day, measure: MEASURE.tokens, enforcement: ENFORCEMENT.soft })).toBe(true);
    expect(await limits.deleteLimit({ accountId: a, userId: 'u1', period: PERIOD.day, measure: MEASURE.tokens, enforcement: ENFORCEMENT.soft })).toBe(false);
    const bad = await failure(put(a, 'u1', 'day', 'tokens', '1.5'));
    expect(bad.code).toBe('INVALID_ARGUMENT');
  });

  it('allows past a soft limit and says so, and denies at a month limit', async () => {
    const a = 'soft';
    await put(a, '', 'day', 'messages', '1', 'soft');
    await put(a, 'u1', 'month', 'messages', '2');
    await charge(a, 's1');
    expect(await limits.checkLimits(checkRequest({ accountId: a }))).toMatchObject({ allowed: true, reason: 'soft_limit_exceeded', message: 'Account daily message limit exceeded (soft, 1)' });
    await charge(a, 's2');
    const d = await limits.checkLimits(checkRequest({ accountId: a }));
    expect(d).toMatchObject({ allowed: false, reason: 'message_limit_reached', message: 'Monthly message limit reached (2)' });
    expect(d.limits.find((l) => l.period === 'month')).toMatchObject({ periodStart: `${d.date.slice(0, 8)}01`, used: '2', exceeded: true });
    const err = await failure(limits.checkLimits(checkRequest({ accountId: a, denyAsError: true })));
    expect(err).toBeInstanceOf(QuotaExceededError);
    expect(err.code).toBe('RESOURCE_EXHAUSTED');
    expect((err as QuotaExceededError).violations).toEqual([{ subject: 'account:soft/user:u1/month/messages', description: expect.stringContaining('limit 2, used 2') }]);
  });

  it('reserves, counts the hold as spent, and settles it with the actual charge in the same transaction', async () => {
    const a = 'res';
    await put(a, '', 'day', 'cost', '1');
    const r = await reserve(a, 'r1', { additionalCost: { amount: '0.6', currencyCode: 'USD' }, additionalTokens: '500' });
    expect(r).toMatchObject({ allowed: true, replayed: false, reservation: { status: 'held', heldMessages: 1n, heldTokens: 500n, userId: 'u1' } });
    expect(r.reservation!.heldCost.toFixed()).toBe('0.6');
    expect(r.reservation!.expireTime.getTime() - now.getTime()).toBe(600_000);
    // The hold counts for every other check.
    const other = await limits.checkLimits(checkRequest({ accountId: a, additionalCost: { amount: '0.5', currencyCode: 'USD' } }));
    expect(other).toMatchObject({ allowed: false, reason: 'cost_limit_exceeded' });
    expect(other.limits[0]).toMatchObject({ used: '0', reserved: '0.6', remaining: '0.4' });
    // Same key, same request: the same reservation.
    const again = await reserve(a, 'r1', { additionalCost: { amount: '0.6', currencyCode: 'USD' }, additionalTokens: '500' });
    expect(again).toMatchObject({ allowed: true, replayed: true, reservation: { reservationId: r.reservation!.reservationId } });
    expect((await failure(reserve(a, 'r1', { additionalTokens: '1' }))).code).toBe('ALREADY_EXISTS');
    // Settle: the hold is replaced by the actual usage (0.00225).
    const settled = await charge(a, 'c1', { reservationId: r.reservation!.reservationId });
    expect(settled.reservation).toMatchObject({ status: 'settled', chargeId: settled.charge.chargeId });
    expect(settled.charge.reservationId).toBe(r.reservation!.reservationId);
    const day = await counter(a, '', 'day');
    expect([day.reserved_messages, day.reserved_tokens, Number(day.reserved_cost), day.message_count, Number(day.total_cost)]).toEqual(['0', '0', 0, '1', 0.00225]);
    // The retry of the same charge is a replay; another charge with the reservation is refused and writes nothing.
    expect(await charge(a, 'c1', { reservationId: r.reservation!.reservationId })).toMatchObject({ replayed: true, reservation: { status: 'settled' } });
    const twice = await failure(charge(a, 'c2', { reservationId: r.reservation!.reservationId }));
    expect([twice.code, twice.reason]).toEqual(['FAILED_PRECONDITION', 'RESERVATION_SETTLED']);
    expect(await db('charges').where({ account_id: a, idempotency_key: 'c2' }).first()).toBeUndefined();
    expect((await failure(reservations.release({ accountId: a, reservationId: r.reservation!.reservationId }))).reason).toBe('RESERVATION_SETTLED');
    await expectRollupsMatchCharges(db, a);
  });

  it('releases a hold at most once, refuses unknown and foreign reservations, and expires holds by itself', async () => {
    const a = 'rel';
    const r = (await reserve(a, 'r1', { additionalTokens: '100' })).reservation!;
    const released = await reservations.release({ accountId: a, reservationId: r.reservationId });
    expect(released).toMatchObject({ status: 'released' });
    expect((await failure(reservations.release({ accountId: a, reservationId: r.reservationId }))).reason).toBe('RESERVATION_RELEASED');
    expect((await failure(charge(a, 'c1', { reservationId: r.reservationId }))).reason).toBe('RESERVATION_RELEASED');
    expect((await failure(reservations.release({ accountId: 'someone-else', reservationId: r.reservationId }))).code).toBe('NOT_FOUND');
    expect((await failure(charge(a, 'c2', { reservationId: '00000000-0000-4000-8000-000000000000' }))).reason).toBe('RESERVATION_NOT_FOUND');
    expect((await failure(charge(a, 'c3', { reservationId: 'not-a-uuid' }))).code).toBe('INVALID_ARGUMENT');
    const mine = (await reserve(a, 'r2')).reservation!;
    expect((await failure(charge(a, 'c4', { userId: 'u2', reservationId: mine.reservationId }))).reason).toBe('RESERVATION_USER_MISMATCH');
    // Expiry: 1 second later the sweeper frees it (no caller involved) ...
    const short = (await reserve(a, 'r3', { additionalTokens: '70', holdSeconds: 1 })).reservation!;
    expect((await counter(a, 'u1', 'day')).reserved_tokens).toBe('70');
    now = new Date(now.getTime() + 1500);
    expect((await reservations.get({ accountId: a, reservationId: short.reservationId })).status).toBe('expired');
    expect(await reservations.expireAllDue()).toBe(1); // r3; r2 holds for 600 s
    expect((await counter(a, 'u1', 'day')).reserved_tokens).toBe('0');
    expect((await counter(a, 'u1', 'day')).reserved_messages).toBe('1');
    now = new Date(now.getTime() + 600_000);
    expect(await reservations.expireAllDue()).toBe(1);
    expect((await counter(a, 'u1', 'day')).reserved_tokens).toBe('0');
    expect((await counter(a, 'u1', 'day')).reserved_messages).toBe('0');
    // ... and a late charge for an expired reservation is still recorded (the usage happened) and settles it once.
    const late = await charge(a, 'c5', { reservationId: short.reservationId });
    expect(late.reservation).toMatchObject({ status: 'settled' });
    expect((await failure(charge(a, 'c6', { reservationId: short.reservationId }))).reason).toBe('RESERVATION_SETTLED');
    await expectRollupsMatchCharges(db, a);
  });

  it('lists open reservations soonest to expire first, page by page, without settled, released or expired ones', async () => {
    const a = 'open';
    const hold = async (key: string, holdSeconds: number, userId = 'u1') => (await reserve(a, key, { holdSeconds, userId })).reservation!.reservationId;
    const [late, soon, other, settled, released, expiring] = [await hold('late', 300), await hold('soon', 60), await hold('other', 120, 'u2'), await hold('settled', 90), await hold('released', 90), await hold('expiring', 1)];
    await charge(a, 'c1', { reservationId: settled });
    await reservations.release({ accountId: a, reservationId: released });
    now = new Date(now.getTime() + 1500); // `expiring` is past its expiry, not yet swept
    const ids = async (q: { userId?: string; pageSize?: number }) => {
      const seen: string[] = [];
      let pageToken = '';
      do {
        const page = await reservations.list({ accountId: a, userId: q.userId ?? '', pageSize: q.pageSize ?? 0, pageToken });
        expect(page.reservations.every((r) => r.status === 'held')).toBe(true);
        seen.push(...page.reservations.map((r) => r.reservationId));
        pageToken = page.nextPageToken;
      } while (pageToken);
      return seen;
    };
    expect(await ids({})).toEqual([soon, other, late]);
    expect(await ids({ pageSize: 1 })).toEqual([soon, other, late]);
    expect(await ids({ userId: 'u1' })).toEqual([soon, late]);
    expect(await ids({ userId: 'nobody' })).toEqual([]);
    const first = await reservations.list({ accountId: a, userId: '', pageSize: 1, pageToken: '' });
    expect((await failure(reservations.list({ accountId: a, userId: 'u1', pageSize: 1, pageToken: first.nextPageToken }))).message).toContain('page_token');
    expect(expiring).toBeDefined();
  });

  it('lists every account the service knows to the operator, by id and prefix, with its month to date in its own time zone', async () => {
    await accounts.setAccount({ accountId: 'list-tokyo', timeZone: 'Asia/Tokyo' });
    await charge('list-tokyo', 'c1');
    await charge('list-tokyo', 'c2', { provider: 'selfhosted', model: 'unknown-model' });
    await put('list-limit-only', '', 'day', 'messages', '5');
    await charge('list-charged', 'c1');
    const all = [];
    let pageToken = '';
    do {
      const page = await accounts.list({ accountIdPrefix: 'list-', pageSize: 2, pageToken });
      all.push(...page.accounts);
      pageToken = page.nextPageToken;
    } while (pageToken);
    expect(all.map((x) => [x.account.accountId, x.account.timeZone])).toEqual([
      ['list-charged', 'UTC'],
      ['list-limit-only', 'UTC'],
      ['list-tokyo', 'Asia/Tokyo'],
    ]);
    const tokyo = all[2];
    // The month to date is what GetDailyUsage sums for the account's current month.
    const [y, m] = tokyo.monthStart.split('-').map(Number);
    const monthEnd = new Date(Date.UTC(y, m, 0)).toISOString().slice(0, 10);
    const month = await usage.getDailyUsage({ accountId: 'list-tokyo', startDate: tokyo.monthStart, endDate: monthEnd, userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '' });
    expect([tokyo.monthMessageCount, tokyo.monthUnpricedMessageCount, tokyo.monthCost.toFixed()]).toEqual([2n, 1n, month.totals.totalCost.toFixed()]);
    expect(tokyo.monthCost.gt(0)).toBe(true);
    expect(all[1]).toMatchObject({ monthMessageCount: 0n });
    expect(all[1].monthCost.toFixed()).toBe('0');
    const bad = await failure(accounts.list({ accountIdPrefix: 'x', pageSize: 2, pageToken: (await accounts.list({ accountIdPrefix: 'list-', pageSize: 1, pageToken: '' })).nextPageToken }));
    expect(bad.message).toContain('page_token');
  });

  it('reads daily usage in another time zone from the charges: the same sums, on the days of their usage_time there', async () => {
    const a = 'tz-view';
    await accounts.setAccount({ accountId: a, timeZone: 'Asia/Tokyo' });
    const at = (iso: string) => ({ seconds: String(Date.parse(iso) / 1000), nanos: 0 });
    // 2026-06-10T16:00Z is June 11th in Tokyo and still June 10th in New York.
    for (const [key, iso, over] of [
      ['early', '2026-06-09T10:00:00Z', {}],
      ['late-evening', '2026-06-10T16:00:00Z', { provider: 'anthropic', model: 'claude-3-5-haiku-20241022' }],
      ['unpriced', '2026-06-11T02:00:00Z', { provider: 'selfhosted', model: 'nothing' }],
      ['next', '2026-06-12T23:30:00Z', {}],
    ] as const) {
      await charge(a, key, { usageTime: at(iso), ...over });
    }
    // A charge that settles a reservation two days after it was made counts on the reservation's day in the account's days.
    now = new Date('2026-06-08T12:00:00Z');
    const r = (await reserve(a, 'hold', { holdSeconds: 60 })).reservation!;
    now = new Date('2026-06-10T20:00:00Z');
    expect((await charge(a, 'settled-late', { reservationId: r.reservationId })).charge.usageDate).toBe('2026-06-08');
    const read = (timeZone: string, startDate = '2026-06-01', endDate = '2026-06-30') =>
      usage.getDailyUsage({ accountId: a, startDate, endDate, userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '', timeZone });
    const own = await read('');
    // In the account's own zone, the sums from the charges are the rollups, except that the late settlement counts on its own time.
    const sameZone = await read('Asia/Tokyo');
    expect(sameZone.totals).toEqual(own.totals);
    const days = (page: Awaited<ReturnType<typeof read>>) => page.rows.map((row) => `${row.usageDate} ${row.provider} ${row.sums.messageCount}`);
    expect(days(own)).toContain('2026-06-08 openai 1');
    expect(days(sameZone)).not.toContain('2026-06-08 openai 1');
    expect(days(sameZone)).toContain('2026-06-11 openai 1'); // 20:00Z on June 10th is June 11th in Tokyo
    const newYork = await read('America/New_York');
    expect(newYork.totals).toEqual(own.totals);
    expect(days(newYork)).toEqual(['2026-06-09 openai 1', '2026-06-10 anthropic 1', '2026-06-10 openai 1', '2026-06-10 selfhosted 1', '2026-06-12 openai 1']);
    // The range is in the chosen zone's days; a day outside it is not summed.
    const oneDay = await read('America/New_York', '2026-06-10', '2026-06-10');
    expect(oneDay.totals.messageCount).toBe(3n);
    expect(oneDay.totals.unpricedMessageCount).toBe(1n);
    // The late settlement is found by its time even when its usage_date is days before the range.
    expect(days(await read('Asia/Tokyo', '2026-06-11', '2026-06-11'))).toEqual(['2026-06-11 anthropic 1', '2026-06-11 openai 1', '2026-06-11 selfhosted 1']);
    // Pages of a zone's reading carry the zone: a token is refused with another.
    const first = await usage.getDailyUsage({ accountId: a, startDate: '2026-06-01', endDate: '2026-06-30', userId: '', provider: '', model: '', chargeType: 0, pageSize: 2, pageToken: '', timeZone: 'America/New_York' });
    expect((await failure(usage.getDailyUsage({ accountId: a, startDate: '2026-06-01', endDate: '2026-06-30', userId: '', provider: '', model: '', chargeType: 0, pageSize: 2, pageToken: first.nextPageToken, timeZone: '' }))).message).toContain('page_token');
    expect((await failure(read('Mars/Olympus'))).message).toContain('time_zone');
    await expectRollupsMatchCharges(db, a);
  });

  it('frees expired holds of the account before deciding a reservation, without waiting for the sweeper', async () => {
    const a = 'lazy';
    await put(a, '', 'day', 'messages', '1');
    expect((await reserve(a, 'r1', { holdSeconds: 5 })).allowed).toBe(true);
    expect((await reserve(a, 'r2')).allowed).toBe(false);
    now = new Date(now.getTime() + 6000);
    expect((await reserve(a, 'r3')).allowed).toBe(true);
    expect(await db('reservations').where({ account_id: a }).orderBy('idempotency_key').pluck('status')).toEqual(['expired', 'held']);
    await expectRollupsMatchCharges(db, a);
  });

  it('prices an estimate (model and token mix) as RecordCharge would, and holds its cost and tokens', async () => {
    const a = 'est';
    const estimate = { provider: 'openai', model: 'gpt-4o', chargeType: 0, promptTokens: '1000', completionTokens: '2000', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0' };
    const r = await reserve(a, 'r1', { estimate });
    expect(r.reservation).toMatchObject({ heldTokens: 3000n });
    expect(r.reservation!.heldCost.toFixed()).toBe('0.0225');
    const unpriced = await failure(reserve(a, 'r2', { estimate: { ...estimate, provider: 'selfhosted', model: 'nothing' } }));
    expect([unpriced.code, unpriced.reason]).toEqual(['FAILED_PRECONDITION', 'MODEL_UNPRICED']);
  });

  it('puts charges, rollups, counters and limit periods on the account\'s local days', async () => {
    const a = 'tz';
    expect(await accounts.getAccount({ accountId: a })).toMatchObject({ timeZone: 'UTC', updateTime: undefined });
    expect((await accounts.setAccount({ accountId: a, timeZone: 'America/New_York' })).timeZone).toBe('America/New_York');
    expect((await failure(accounts.setAccount({ accountId: a, timeZone: 'Mars/Olympus' }))).code).toBe('INVALID_ARGUMENT');
    // 03:30 UTC on March 1st is still February 28th in New York.
    now = new Date('2026-03-01T03:30:00Z');
    const c = await charge(a, 'c1', { usageTime: { seconds: String(now.getTime() / 1000), nanos: 0 } });
    expect(c.charge.usageDate).toBe('2026-02-28');
    const page = await usage.getDailyUsage({ accountId: a, startDate: '2026-02-28', endDate: '2026-02-28', userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '' });
    expect(page.rows.map((r) => r.usageDate)).toEqual(['2026-02-28']);
    expect(await db('usage_counters').where({ account_id: a, user_id: '' }).orderBy('period').select('period', 'period_start')).toEqual([
      { period: 'day', period_start: '2026-02-28' },
      { period: 'month', period_start: '2026-02-01' },
    ]);
    await put(a, '', 'month', 'messages', '1');
    const check = await limits.checkLimits(checkRequest({ accountId: a }));
    expect(check).toMatchObject({ date: '2026-02-28', timeZone: 'America/New_York', allowed: false });
    expect(check.limits[0].periodStart).toBe('2026-02-01');
    // At 05:00 UTC it is March 1st in New York: a new day and a new month.
    now = new Date('2026-03-01T05:00:00Z');
    expect(await limits.checkLimits(checkRequest({ accountId: a }))).toMatchObject({ date: '2026-03-01', allowed: true });
    await expectRollupsMatchCharges(db, a);
  });

  // Two reservations either side of local midnight (New York), each allowed on its own day or
  // month, settled after midnight at exactly their estimate (one message): each charge counts on
  // its reservation's period, so neither period goes past its limit.
  it.each([
    { period: 'day' as const, before: '2026-12-02T04:59:45Z', after: '2026-12-02T05:00:03Z', days: ['2026-12-01', '2026-12-02'], starts: ['2026-12-01', '2026-12-02'] },
    { period: 'month' as const, before: '2027-01-01T04:59:45Z', after: '2027-01-01T05:00:03Z', days: ['2026-12-31', '2027-01-01'], starts: ['2026-12-01', '2027-01-01'] },
  ])('counts a settling charge on its reservation\'s $period across local midnight, unless its usage_time says otherwise', async ({ period, before, after, days, starts }) => {
    const a = `midnight-${period}`;
    await accounts.setAccount({ accountId: a, timeZone: 'America/New_York' });
    await put(a, 'u1', period, 'messages', '1');
    now = new Date(before);
    const r1 = await reserve(a, 'r1');
    now = new Date(after);
    const r2 = await reserve(a, 'r2');
    expect([r1.allowed, r1.date, r2.allowed, r2.date]).toEqual([true, days[0], true, days[1]]);
    now = new Date(new Date(after).getTime() + 7000);
    const c1 = await charge(a, 'c1', { reservationId: r1.reservation!.reservationId });
    const c2 = await charge(a, 'c2', { reservationId: r2.reservation!.reservationId });
    expect([c1.charge.usageDate, c2.charge.usageDate]).toEqual(days);
    expect(c1.charge.usageTime).toEqual(now);
    const rows = await db('usage_counters').where({ account_id: a, user_id: 'u1', period }).orderBy('period_start').select('period_start', 'message_count', 'reserved_messages');
    expect(rows).toEqual(starts.map((s) => ({ period_start: s, message_count: '1', reserved_messages: '0' })));
    const check = await limits.checkLimits(checkRequest({ accountId: a }));
    expect(check.limits.find((l) => l.period === period)).toMatchObject({ periodStart: starts[1], used: '1', reserved: '0' });
    // A usage_time given by the caller decides: the charge counts on the day it names.
    now = new Date(before);
    const r3 = await reserve(a, 'r3', { userId: 'u2' });
    now = new Date(after);
    const c3 = await charge(a, 'c3', { userId: 'u2', reservationId: r3.reservation!.reservationId, usageTime: { seconds: String(now.getTime() / 1000), nanos: 0 } });
    expect([r3.reservation!.periodDay, c3.charge.usageDate]).toEqual(days);
    await expectRollupsMatchCharges(db, a);
  });

  // The embedded database has one connection (transactions run one at a time): one measure there
  // proves the counting; Postgres, with real concurrency, runs all three.
  describe.each(
    [
      { measure: 'cost' as const, amount: '5.00', hold: { additionalCost: { amount: '0.10', currencyCode: 'USD' } } },
      { measure: 'tokens' as const, amount: '5000', hold: { additionalTokens: '100' } },
      { measure: 'messages' as const, amount: '50', hold: {} },
    ].filter((c) => target.name === 'postgres' || c.measure === 'cost'),
  )('1,000 concurrent reservations against a $measure limit', ({ measure, amount, hold }) => {
    it('admit exactly 50, and settling and releasing them leaves counters equal to the charges', async () => {
      const a = `race-${measure}`;
      await put(a, '', 'day', measure, amount);
      const results = await Promise.all(Array.from({ length: 1000 }, (_, n) => reserve(a, `r${n}`, { userId: `u${n % 7}`, ...hold })));
      const admitted = results.filter((r) => r.allowed);
      expect(admitted).toHaveLength(50);
      expect(results.filter((r) => !r.allowed).every((r) => r.reason === `${measure === 'messages' ? 'message_limit_reached' : measure === 'tokens' ? 'token_limit_exceeded' : 'cost_limit_exceeded'}`)).toBe(true);
      expect(await db('reservations').where({ account_id: a, status: 'held' }).pluck('reservation_id')).toHaveLength(50);
      await expectRollupsMatchCharges(db, a);
      // Settle half with their actual charges, release the rest, concurrently.
      await Promise.all(
        admitted.map((r, n) =>
          n % 2 === 0
            ? charge(a, `c${n}`, { userId: r.reservation!.userId, reservationId: r.reservation!.reservationId })
            : reservations.release({ accountId: a, reservationId: r.reservation!.reservationId }),
        ),
      );
      const day = await counter(a, '', 'day');
      expect([day.message_count, day.reserved_messages, day.reserved_tokens, Number(day.reserved_cost)]).toEqual(['25', '0', '0', 0]);
      await expectRollupsMatchCharges(db, a);
    });
  });
});

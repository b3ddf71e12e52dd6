import fc from 'fast-check';
import { Dec } from '@metering/pricing';
import { diffChargeContent, RecordChargeRequestInput, validateRecordCharge } from './charge';
import { ValidationError } from './errors';
import { evaluateLimits, Limit, periodStartOf, softLimitCrossings, UsageCounter, validateCheckLimits, validatePutLimit, validateSetLimits, ZERO_USAGE } from './limits';
import { checkTimeZone, localDay, monthStart, neighbourDays } from './time';
import { Violations } from './validation';
import { encodeUsagePageToken, parseDay, validateDailyUsageQuery } from './usage';

const NOW = new Date('2026-11-23T12:00:00Z');
const request = (over: Partial<RecordChargeRequestInput> = {}): RecordChargeRequestInput => ({
  accountId: 'acme', userId: 'u1', idempotencyKey: 'k1', sessionKey: '', provider: 'openai', model: 'gpt-4o',
  chargeType: 0, requestType: 0, promptTokens: '100', completionTokens: '200', reasoningTokens: '0', cachedPromptTokens: '0',
  cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0', reference: '', endpoint: '', responseTimeMs: undefined, wasCached: false, hadError: false,
  errorMessage: '', metadata: undefined, usageTime: undefined, ...over,
});
const violations = (f: () => unknown): string[] => {
  try {
    f();
  } catch (e) {
    if (e instanceof ValidationError) return e.violations.map((v) => v.field);
    throw e;
  }
  return [];
};

describe('validateRecordCharge', () => {
  it('accepts a minimal charge with the Django models\' defaults', () => {
    const c = validateRecordCharge(request(), NOW);
    expect(c.chargeType).toBe('completion');
    expect(c.requestType).toBe('chat');
    expect(c.usageTime).toEqual(NOW);
    expect(c.usageTimeSupplied).toBe(false);
  });

  it('names every bad field at once', () => {
    const fields = violations(() =>
      validateRecordCharge(
        request({
          accountId: '', userId: 'a b', idempotencyKey: 'x'.repeat(256), provider: 'OpenAI', model: '',
          chargeType: 99, requestType: -1, promptTokens: '-1', completionTokens: '9223372036854775807',
          responseTimeMs: '86400001', metadata: { nested: { a: { b: { c: { d: { e: { f: { g: {} } } } } } } } },
          usageTime: { seconds: '99999999999', nanos: 0 }, errorMessage: 'bad\u0000',
        }),
        NOW,
      ),
    );
    expect(fields.sort()).toEqual(
      ['account_id', 'user_id', 'idempotency_key', 'provider', 'model', 'charge_type', 'request_type', 'prompt_tokens',
        'completion_tokens', 'response_time_ms', 'metadata', 'usage_time', 'error_message'].sort(),
    );
  });

  it('requires the token classes to nest', () => {
    expect(violations(() => validateRecordCharge(request({ reasoningTokens: '201' }), NOW))).toEqual(['reasoning_tokens']);
    expect(violations(() => validateRecordCharge(request({ cachedPromptTokens: '60', cacheWriteTokens: '41' }), NOW))).toEqual(['cached_prompt_tokens']);
  });

  it('never throws anything but ValidationError, for any string in any field', () => {
    fc.assert(
      fc.property(fc.string(), fc.string(), fc.string(), fc.integer(), (s, t, u, n) => {
        try {
          validateRecordCharge(request({ accountId: s, model: t, promptTokens: u, chargeType: n, metadata: { [s]: t } }), NOW);
        } catch (e) {
          return e instanceof ValidationError && e.violations.length > 0;
        }
        return true;
      }),
    );
  });
});

describe('diffChargeContent', () => {
  it('is empty for the same content and names the fields that differ', () => {
    const a = validateRecordCharge(request({ metadata: { x: 1, y: 2 } }), NOW);
    const b = validateRecordCharge(request({ metadata: { y: 2, x: 1 } }), new Date(NOW.getTime() + 5000));
    expect(diffChargeContent(a, b)).toEqual([]);
    const c = validateRecordCharge(request({ model: 'gpt-4o-mini', promptTokens: '101', metadata: { x: 1, y: 2 }, usageTime: { seconds: '1700000000', nanos: 0 } }), NOW);
    expect(diffChargeContent(a, c)).toEqual(['model', 'prompt_tokens', 'usage_time']);
  });
});

describe('evaluateLimits (the Django models\' check_user_limits, with periods, soft limits and holds)', () => {
  const counter = (m: number, t: number, c = '0'): UsageCounter => ({ messageCount: BigInt(m), totalTokens: BigInt(t), totalCost: new Dec(c) });
  const day = '2026-03-31';
  type Counters = Partial<Record<string, { used?: UsageCounter; reserved?: UsageCounter }>>;
  const run = (limits: Limit[], counters: Counters = {}, call = { tokens: 0n, cost: new Dec(0) }) =>
    evaluateLimits({
      userId: 'u',
      limits,
      call,
      usage: (userId, period) => ({ periodStart: periodStartOf(period, day), used: ZERO_USAGE, reserved: ZERO_USAGE, ...counters[`${userId}/${period}`] }),
    });
  const limit = (userId: string, measure: Limit['measure'], amount: string, period: Limit['period'] = 'day', enforcement: Limit['enforcement'] = 'hard'): Limit => ({
    accountId: 'a', userId, measure, amount: new Dec(amount), period, enforcement,
  });

  it('allows when no limits are set', () => {
    expect(run([])).toMatchObject({ allowed: true, reason: 'no_limits_set', message: 'No limits set' });
  });

  it('denies when the day\'s message count reaches the limit', () => {
    expect(run([limit('u', 'messages', '3')], { 'u/day': { used: counter(2, 0) } }).allowed).toBe(true);
    expect(run([limit('u', 'messages', '3')], { 'u/day': { used: counter(3, 0) } })).toMatchObject({ allowed: false, reason: 'message_limit_reached', message: 'Daily message limit reached (3)' });
  });

  it('denies when the tokens plus the call\'s tokens exceed the limit, and reports the state', () => {
    const tokens = [limit('u', 'tokens', '1000')];
    expect(run(tokens, { 'u/day': { used: counter(1, 900) } }, { tokens: 100n, cost: new Dec(0) }).allowed).toBe(true);
    const d = run(tokens, { 'u/day': { used: counter(1, 900) } }, { tokens: 101n, cost: new Dec(0) });
    expect(d).toMatchObject({ allowed: false, reason: 'token_limit_exceeded' });
    expect(d.limits).toEqual([
      { scope: 'user', measure: 'tokens', period: 'day', enforcement: 'hard', periodStart: day, limit: '1000', used: '900', reserved: '0', remaining: '100', exceeded: true },
    ]);
  });

  it('applies the account limit too, and the cost limit exactly', () => {
    const cost = [limit('', 'cost', '0.01')];
    expect(run(cost, { '/day': { used: counter(5, 5, '0.00999999') } }).allowed).toBe(true);
    const d = run(cost, { '/day': { used: counter(5, 5, '0.00999999') } }, { tokens: 0n, cost: new Dec('0.00000002') });
    expect(d).toMatchObject({ allowed: false, reason: 'cost_limit_exceeded', message: 'Account daily cost limit reached (0.01 USD)' });
    expect(d.limits[0].remaining).toBe('0.00000001');
  });

  it('counts reservations as spent: 50 holds of 0.10 fill a 5.00 limit exactly', () => {
    const cost = [limit('', 'cost', '5')];
    const call = { tokens: 0n, cost: new Dec('0.10') };
    expect(run(cost, { '/day': { reserved: counter(49, 0, '4.90') } }, call).allowed).toBe(true);
    const d = run(cost, { '/day': { reserved: counter(50, 0, '5.00') } }, call);
    expect(d.allowed).toBe(false);
    expect(d.limits[0]).toMatchObject({ used: '0', reserved: '5', remaining: '0' });
  });

  it('checks month limits against the month counters, and names them', () => {
    const d = run([limit('u', 'messages', '100'), limit('u', 'messages', '1000', 'month')], { 'u/day': { used: counter(5, 0) }, 'u/month': { used: counter(1000, 0) } });
    expect(d).toMatchObject({ allowed: false, reason: 'message_limit_reached', message: 'Monthly message limit reached (1000)' });
    expect(d.limits.map((l) => [l.period, l.periodStart, l.exceeded])).toEqual([
      ['day', day, false],
      ['month', '2026-03-01', true],
    ]);
  });

  it('allows past a soft limit and says so; a hard limit still denies', () => {
    const soft = limit('', 'tokens', '100', 'day', 'soft');
    expect(run([soft], { '/day': { used: counter(1, 100) } }, { tokens: 1n, cost: new Dec(0) })).toMatchObject({
      allowed: true, reason: 'soft_limit_exceeded', message: 'Account daily token limit exceeded (soft, 100)',
    });
    const both = run([soft, limit('', 'tokens', '150')], { '/day': { used: counter(1, 150) } }, { tokens: 1n, cost: new Dec(0) });
    expect(both).toMatchObject({ allowed: false, reason: 'token_limit_exceeded' });
    expect(both.limits.map((l) => l.enforcement)).toEqual(['hard', 'soft']);
  });

  it('checks messages before tokens, and the user before the account, as the Django models do', () => {
    const d = run([limit('', 'messages', '1'), limit('u', 'tokens', '1'), limit('u', 'messages', '1')], { 'u/day': { used: counter(1, 5) }, '/day': { used: counter(1, 5) } });
    expect(d.message).toBe('Daily message limit reached (1)');
    expect(d.limits.map((l) => `${l.measure}/${l.scope}`)).toEqual(['messages/user', 'messages/account', 'tokens/user']);
  });

  it('finds the soft limits a batch of charges took past their amount, once', () => {
    const soft = [limit('', 'cost', '0.01', 'day', 'soft'), limit('u', 'messages', '5', 'month', 'soft'), limit('', 'tokens', '1', 'day', 'hard')];
    const charge = (userId: string, cost: string) => ({ accountId: 'a', userId, usageDate: day, used: counter(1, 10, cost) });
    const counters = [
      { accountId: 'a', userId: '', period: 'day' as const, periodStart: day, used: counter(3, 30, '0.012') },
      { accountId: 'a', userId: 'u', period: 'month' as const, periodStart: '2026-03-01', used: counter(4, 40, '0.02') },
    ];
    // The account's cost went from 0.008 to 0.012 (crossed 0.01); u's month went from 3 to 4 messages (not 5 yet).
    expect(softLimitCrossings(soft, counters, [charge('u', '0.002'), charge('v', '0.002')])).toEqual([
      { userId: 'v', limit: soft[0], periodStart: day, used: counters[0].used },
    ]);
    // Already past before these charges: nothing new.
    expect(softLimitCrossings(soft, [{ ...counters[0], used: counter(3, 30, '0.02') }], [charge('u', '0.002')])).toEqual([]);
    // A re-rating moves only the cost: 0.009 -> 0.012 crosses 0.01; the messages were counted before.
    const rerated = { accountId: 'a', userId: 'u', usageDate: day, used: counter(0, 0, '0.003') };
    expect(softLimitCrossings(soft, counters, [rerated])).toEqual([{ userId: 'u', limit: soft[0], periodStart: day, used: counters[0].used }]);
    expect(softLimitCrossings(soft, [counters[1]], [rerated])).toEqual([]);
  });

  it('finds the soft limits of an API key or a tag value that charges counting on that scope took past their amount', () => {
    const byKey = { ...limit('', 'messages', '2', 'day', 'soft'), scope: 'api_key:k1' };
    const byTag = { ...limit('', 'messages', '1', 'day', 'soft'), scope: 'tag:feature=summarize' };
    const rows = [
      { accountId: 'a', userId: '', scope: 'api_key:k1', period: 'day' as const, periodStart: day, used: counter(2, 20) },
      { accountId: 'a', userId: '', scope: 'tag:feature=summarize', period: 'day' as const, periodStart: day, used: counter(1, 10) },
    ];
    const on = (userId: string, scopes: string[]) => ({ accountId: 'a', userId, usageDate: day, used: counter(1, 10), scopes });
    // A charge of key k1 tagged feature=summarize takes both past.
    expect(softLimitCrossings([byKey, byTag], rows, [on('u', ['api_key:k1', 'tag:feature=summarize'])])).toEqual([
      { userId: 'u', limit: byKey, periodStart: day, used: rows[0].used },
      { userId: 'u', limit: byTag, periodStart: day, used: rows[1].used },
    ]);
    // A charge that does not count on a scope crosses nothing there (its row moved for another reason).
    expect(softLimitCrossings([byKey, byTag], rows, [on('u', ['api_key:k2'])])).toEqual([]);
  });

  it('ignores limits of other users', () => {
    expect(run([limit('someone-else', 'messages', '0')]).reason).toBe('no_limits_set');
  });

  it('validates limits', () => {
    expect(violations(() => validateSetLimits({ accountId: 'a', userId: '', dailyMessageLimit: '-1', dailyTokenLimit: 'x', dailyCostLimit: { amount: '1e3', currencyCode: 'EUR' } })).sort()).toEqual(
      ['daily_cost_limit.amount', 'daily_cost_limit.currency_code', 'daily_message_limit', 'daily_token_limit'],
    );
    const put = { accountId: 'a', userId: 'u', period: 2, measure: 2, enforcement: 2, amount: '10' };
    expect(validatePutLimit(put)).toMatchObject({ period: 'month', measure: 'tokens', enforcement: 'soft' });
    expect(validatePutLimit({ ...put, enforcement: 0 }).enforcement).toBe('hard');
    expect(violations(() => validatePutLimit({ ...put, period: 0, measure: 9, amount: '1.5' })).sort()).toEqual(['measure', 'period']);
    expect(violations(() => validatePutLimit({ ...put, amount: '1.5' }))).toEqual(['amount']);
    expect(validatePutLimit({ ...put, measure: 3, amount: '1.5' }).amount.toFixed()).toBe('1.5');
    expect(violations(() => validatePutLimit({ ...put, measure: 3, amount: 'NaN' }))).toEqual(['amount']);
  });

  it('validates reserving checks', () => {
    const raw = { accountId: 'a', userId: 'u', additionalTokens: '0' };
    expect(violations(() => validateCheckLimits({ ...raw, reserve: true }))).toEqual(['idempotency_key']);
    expect(violations(() => validateCheckLimits({ ...raw, idempotencyKey: 'k' }))).toEqual(['idempotency_key']);
    expect(violations(() => validateCheckLimits({ ...raw, reserve: true, idempotencyKey: 'k', holdSeconds: 86_401 }))).toEqual(['hold_seconds']);
    const estimate = { provider: 'openai', model: 'gpt-4o', chargeType: 0, promptTokens: '10', completionTokens: '-1', reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0' };
    expect(violations(() => validateCheckLimits({ ...raw, estimate, additionalCost: { amount: '1', currencyCode: 'USD' } })).sort()).toEqual(['estimate', 'estimate.completion_tokens']);
    expect(validateCheckLimits({ ...raw, reserve: true, idempotencyKey: 'k' }).reserve).toEqual({ idempotencyKey: 'k', holdSeconds: 600 });
  });
});

describe('account time zones', () => {
  it('puts a moment on the local calendar day of the zone', () => {
    const at = new Date('2026-03-01T03:30:00Z');
    expect(localDay(at, 'UTC')).toBe('2026-03-01');
    expect(localDay(at, 'America/New_York')).toBe('2026-02-28');
    expect(localDay(at, 'Asia/Tokyo')).toBe('2026-03-01');
    expect(localDay(new Date('2026-02-28T15:30:00Z'), 'Asia/Tokyo')).toBe('2026-03-01');
    expect(localDay(new Date('2026-01-01T10:00:00Z'), 'Pacific/Kiritimati')).toBe('2026-01-02');
    expect(monthStart('2026-02-28')).toBe('2026-02-01');
  });

  it('follows daylight saving time', () => {
    // Berlin is UTC+1 in winter, UTC+2 from 2026-03-29.
    expect(localDay(new Date('2026-03-28T23:30:00Z'), 'Europe/Berlin')).toBe('2026-03-29');
    expect(localDay(new Date('2026-03-29T21:59:00Z'), 'Europe/Berlin')).toBe('2026-03-29');
    expect(localDay(new Date('2026-03-29T22:00:00Z'), 'Europe/Berlin')).toBe('2026-03-30');
  });

  it('accepts IANA zone names only', () => {
    const zone = (value: string) => {
      const v = new Violations();
      const out = checkTimeZone(v, 'time_zone', value);
      return v.list.length ? 'bad' : out;
    };
    expect(zone('Europe/Berlin')).toBe('Europe/Berlin');
    expect(zone('UTC')).toBe('UTC');
    for (const bad of ['', '+02:00', 'Mars/Olympus', 'UTC; DROP TABLE', 'x'.repeat(65)]) expect(zone(bad)).toBe('bad');
  });

  it('lists the days around a day (every zone\'s today is among them)', () => {
    expect(neighbourDays('2026-03-01')).toEqual(['2026-02-28', '2026-03-01', '2026-03-02']);
    expect(neighbourDays('2026-12-31')).toEqual(['2026-12-30', '2026-12-31', '2027-01-01']);
  });

  it('gives the UTC day of any moment, across midnight and back (it keeps the last day it made)', () => {
    const at = ['2026-12-06T23:59:59.999Z', '2026-12-07T00:00:00.000Z', '2026-12-06T00:00:00.000Z', '2026-12-07T12:00:00Z', '2024-02-29T23:00:00Z', '2026-12-07T23:59:59.999Z', '2026-12-08T00:00:00.001Z'];
    expect(at.map((t) => localDay(new Date(t), 'UTC'))).toEqual(['2026-12-06', '2026-12-07', '2026-12-06', '2026-12-07', '2024-02-29', '2026-12-07', '2026-12-08']);
    expect(() => localDay(new Date(NaN), 'UTC')).toThrow(RangeError);
  });
});

describe('GetDailyUsage queries', () => {
  const raw = { accountId: 'acme', startDate: '2026-01-01', endDate: '2026-01-31', userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '' };

  it('parses strict calendar dates only', () => {
    expect(parseDay('2024-02-29')).toBeDefined();
    for (const bad of ['2025-02-29', '2025-1-01', '2025-13-01', '20250101', '']) expect(parseDay(bad)).toBeUndefined();
  });

  it('bounds the range and the page size', () => {
    expect(violations(() => validateDailyUsageQuery({ ...raw, startDate: '2026-02-01' }))).toEqual(['end_date']);
    expect(violations(() => validateDailyUsageQuery({ ...raw, startDate: '2025-01-01', endDate: '2026-01-02' }))).toEqual(['end_date']);
    expect(violations(() => validateDailyUsageQuery({ ...raw, pageSize: 1001 }))).toEqual(['page_size']);
    expect(validateDailyUsageQuery({ ...raw, startDate: '2025-01-01', endDate: '2026-01-01' }).pageSize).toBe(100);
  });

  it('accepts its own page token and rejects it for another query', () => {
    const q = validateDailyUsageQuery(raw);
    const token = encodeUsagePageToken(q, { usageDate: '2026-01-02', userId: 'u', provider: 'openai', model: 'gpt-4o', chargeType: 'tool' });
    expect(validateDailyUsageQuery({ ...raw, pageToken: token }).after?.chargeType).toBe('tool');
    expect(violations(() => validateDailyUsageQuery({ ...raw, userId: 'other', pageToken: token }))).toEqual(['page_token']);
    expect(violations(() => validateDailyUsageQuery({ ...raw, pageToken: 'garbage!' }))).toEqual(['page_token']);
  });
});

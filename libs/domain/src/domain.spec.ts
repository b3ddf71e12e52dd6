import fc from 'fast-check';
import { Dec } from '@metering/pricing';
import { diffChargeContent, RecordChargeRequestInput, validateRecordCharge } from './charge';
import { ValidationError } from './errors';
import { evaluateLimits, UsageCounter, validateSetLimits, ZERO_USAGE } from './limits';
import { encodePageToken, parseDay, validateDailyUsageQuery } from './usage';

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
  it('accepts a minimal charge with the seeds\' defaults', () => {
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

describe('evaluateLimits (the seeds\' check_user_limits)', () => {
  const usage = (m: number, t: number, c = '0'): UsageCounter => ({ messageCount: BigInt(m), totalTokens: BigInt(t), totalCost: new Dec(c) });
  const base = { user: undefined, account: undefined, userUsage: ZERO_USAGE, accountUsage: ZERO_USAGE, additionalTokens: 0n, additionalCost: new Dec(0) };

  it('allows when no limits are set', () => {
    expect(evaluateLimits(base)).toMatchObject({ allowed: true, reason: 'no_limits_set', message: 'No limits set' });
  });

  it('denies when today\'s message count reaches the limit', () => {
    const user = { accountId: 'a', userId: 'u', messages: 3n };
    expect(evaluateLimits({ ...base, user, userUsage: usage(2, 0) }).allowed).toBe(true);
    expect(evaluateLimits({ ...base, user, userUsage: usage(3, 0) })).toMatchObject({ allowed: false, reason: 'message_limit_reached', message: 'Daily message limit reached (3)' });
  });

  it('denies when today\'s tokens plus the additional tokens exceed the limit', () => {
    const user = { accountId: 'a', userId: 'u', tokens: 1000n };
    expect(evaluateLimits({ ...base, user, userUsage: usage(1, 900), additionalTokens: 100n }).allowed).toBe(true);
    const d = evaluateLimits({ ...base, user, userUsage: usage(1, 900), additionalTokens: 101n });
    expect(d).toMatchObject({ allowed: false, reason: 'token_limit_exceeded' });
    expect(d.limits).toEqual([{ scope: 'user', measure: 'tokens', limit: '1000', used: '900', remaining: '100', exceeded: true }]);
  });

  it('applies the account limit too, and the cost limit exactly', () => {
    const account = { accountId: 'a', userId: '', cost: new Dec('0.01') };
    expect(evaluateLimits({ ...base, account, accountUsage: usage(5, 5, '0.00999999') }).allowed).toBe(true);
    const d = evaluateLimits({ ...base, account, accountUsage: usage(5, 5, '0.00999999'), additionalCost: new Dec('0.00000002') });
    expect(d).toMatchObject({ allowed: false, reason: 'cost_limit_exceeded', message: 'Account daily cost limit reached (0.01 USD)' });
    expect(d.limits[0].remaining).toBe('0.00000001');
  });

  it('checks messages before tokens, as the seeds do', () => {
    const user = { accountId: 'a', userId: 'u', messages: 1n, tokens: 1n };
    expect(evaluateLimits({ ...base, user, userUsage: usage(1, 5) }).reason).toBe('message_limit_reached');
  });

  it('validates limits', () => {
    expect(violations(() => validateSetLimits({ accountId: 'a', userId: '', dailyMessageLimit: '-1', dailyTokenLimit: 'x', dailyCostLimit: { amount: '1e3', currencyCode: 'EUR' } })).sort()).toEqual(
      ['daily_cost_limit.amount', 'daily_cost_limit.currency_code', 'daily_message_limit', 'daily_token_limit'],
    );
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
    const token = encodePageToken(q, { usageDate: '2026-01-02', userId: 'u', provider: 'openai', model: 'gpt-4o', chargeType: 'tool' });
    expect(validateDailyUsageQuery({ ...raw, pageToken: token }).after?.chargeType).toBe('tool');
    expect(violations(() => validateDailyUsageQuery({ ...raw, userId: 'other', pageToken: token }))).toEqual(['page_token']);
    expect(violations(() => validateDailyUsageQuery({ ...raw, pageToken: 'garbage!' }))).toEqual(['page_token']);
  });
});

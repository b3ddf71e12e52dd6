import fc from 'fast-check';
import { RecordChargeRequestInput } from './charge';
import { ValidationError } from './errors';
import { KeptCostInput, validateImportedCharge, validateKeptCost } from './import';

const NOW = new Date('2026-11-23T12:00:00Z');
const charge = (over: Partial<RecordChargeRequestInput> = {}): RecordChargeRequestInput => ({
  accountId: 'acme', userId: 'u1', idempotencyKey: 'django:tokenusage:1', sessionKey: '', provider: 'openai', model: 'gpt-4o',
  chargeType: 0, requestType: 0, promptTokens: '100', completionTokens: '200', reasoningTokens: '0', cachedPromptTokens: '0',
  cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0', reference: '', endpoint: '', responseTimeMs: undefined, wasCached: false, hadError: false,
  errorMessage: '', metadata: undefined, usageTime: { seconds: String(NOW.getTime() / 1000 - 86_400), nanos: 0 }, ...over,
});
const usd = (amount: string) => ({ amount, currencyCode: 'USD' });
const kept = (over: Partial<KeptCostInput> = {}): KeptCostInput => ({ promptCost: usd('0.000250'), completionCost: usd('0.002000'), markup: '', source: '', ...over });
const fields = (f: () => unknown): string[] => {
  try {
    f();
  } catch (e) {
    if (e instanceof ValidationError) return e.violations.map((v) => v.field);
    throw e;
  }
  return [];
};

describe('validateKeptCost (the cost an imported charge keeps)', () => {
  it('keeps the amounts exactly: total = prompt + completion + calls, provider cost = total at markup 1, origin imported', () => {
    expect(validateKeptCost(kept({ callCost: usd('0.01') }))).toEqual({
      pricingStatus: 'priced', priceVersion: 'imported', markup: '1', priceOrigin: 'imported',
      costs: { providerCost: '0.01225', promptCost: '0.00025', completionCost: '0.002', callCost: '0.01', totalCost: '0.01225' },
    });
    expect(validateKeptCost(kept({ source: 'django:chatbot_tokenusage' })).priceVersion).toBe('django:chatbot_tokenusage');
  });

  it('adds any amounts of up to 18 decimals without rounding', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: 10n ** 18n }), fc.bigInt({ min: 0n, max: 10n ** 18n }), (a, b) => {
        const text = (n: bigint) => `${n / 10n ** 9n}.${(n % 10n ** 9n).toString().padStart(9, '0')}`;
        const got = validateKeptCost(kept({ promptCost: usd(text(a)), completionCost: usd(text(b)) }));
        const sum = a + b;
        return got.costs.totalCost === text(sum).replace(/\.?0+$/, '') || (sum === 0n && got.costs.totalCost === '0');
      }),
    );
  });

  it('names every bad field: missing or negative amounts, other currencies, a total that does not add up, a markup without a provider cost', () => {
    expect(fields(() => validateKeptCost({ markup: '', source: '' }))).toEqual(['kept_cost.prompt_cost', 'kept_cost.completion_cost']);
    expect(fields(() => validateKeptCost(kept({ promptCost: usd('-1'), completionCost: { amount: '1', currencyCode: 'EUR' } })))).toEqual(['kept_cost.prompt_cost.amount', 'kept_cost.completion_cost.currency_code']);
    expect(fields(() => validateKeptCost(kept({ totalCost: usd('0.00225') })))).toEqual([]);
    expect(fields(() => validateKeptCost(kept({ totalCost: usd('0.0023') })))).toEqual(['kept_cost.total_cost']);
    expect(fields(() => validateKeptCost(kept({ markup: '1.5' })))).toEqual(['kept_cost.provider_cost']);
    expect(fields(() => validateKeptCost(kept({ markup: '0' })))).toEqual(['kept_cost.markup']);
    expect(fields(() => validateKeptCost(kept({ promptCost: usd(`0.${'1'.repeat(19)}`) })))).toEqual(['kept_cost.prompt_cost.amount']);
    expect(fields(() => validateKeptCost(kept({ promptCost: usd('1000000001') })))).toEqual(['kept_cost.prompt_cost.amount']);
    expect(validateKeptCost(kept({ markup: '1.5', providerCost: usd('0.0015') })).costs.providerCost).toBe('0.0015');
  });
});

describe('validateImportedCharge', () => {
  it('takes the charge as RecordCharge does, with its kept cost or none', () => {
    const { input, kept: cost } = validateImportedCharge({ charge: charge(), keptCost: kept() }, NOW);
    expect([input.idempotencyKey, input.usageTimeSupplied, cost?.priceOrigin]).toEqual(['django:tokenusage:1', true, 'imported']);
    expect(validateImportedCharge({ charge: charge() }, NOW).kept).toBeNull();
  });

  it('needs a usage time and no reservation, and names the charge\'s fields under charge.', () => {
    expect(fields(() => validateImportedCharge({}, NOW))).toEqual(['charge']);
    expect(fields(() => validateImportedCharge({ charge: charge({ usageTime: undefined }) }, NOW))).toEqual(['charge.usage_time']);
    expect(fields(() => validateImportedCharge({ charge: charge({ reservationId: '00000000-0000-4000-8000-000000000000' }) }, NOW))).toEqual(['charge.reservation_id']);
    expect(fields(() => validateImportedCharge({ charge: charge({ userId: 'a+b', promptTokens: '-1' }), keptCost: kept({ promptCost: undefined }) }, NOW)))
      .toEqual(['charge.prompt_tokens', 'charge.user_id', 'kept_cost.prompt_cost']);
  });
});

import { Dec, tokenCounts } from '@metering/pricing';
import type { ChargeRecord } from './charge';
import { DEFAULT_MAX_VALUES_PER_DAY, dimensionDaysOf, dimensionValueId, dimensionValues, dimensionValuesWanted, localHour, refusalOf, rollupHour, validateSetDimensions } from './dimensions';
import { ValidationError } from './errors';
import { entriesOf } from './ledger';

/** Dimensions (issue 20): what a charge is summed under, and the ledger's dimension_usage entries. */

const AT = new Date('2026-12-01T10:00:00Z');
const charge = (over: Partial<ChargeRecord> = {}): ChargeRecord => ({
  chargeId: 'c-1', accountId: 'acme', userId: 'u1', idempotencyKey: 'k1', sessionKey: '', provider: 'openai', model: 'gpt-4o', chargeType: 'completion', requestType: 'chat',
  tokens: tokenCounts({ promptTokens: 100, completionTokens: 200 }), totalTokens: 300, callCount: 0, toolCalls: {}, serviceTier: 'standard',
  reference: '', endpoint: '', responseTimeMs: null, wasCached: false, hadError: false, errorMessage: '', metadata: {}, usageTime: AT, usageTimeSupplied: false, usageDate: '2026-12-01', tags: {}, apiKeyId: '',
  reservationId: null, recordTime: AT, pricingStatus: 'priced', priceVersion: 'openai/gpt-4o@x', markup: '1', priceOrigin: 'catalog', rateTime: AT, currencyCode: 'USD',
  costs: { providerCost: '0.00225', promptCost: '0.00025', completionCost: '0.002', callCost: '0', totalCost: '0.00225' },
  ...over,
});

describe('dimensions', () => {
  it('keeps only the declared keys a charge has, and the local hour of its usage day', () => {
    expect(dimensionValues({ feature: 'a', env: 'prod', ticket: 'T-1' }, ['env', 'feature', 'team'])).toEqual({ env: 'prod', feature: 'a' });
    expect(localHour(new Date('2026-11-30T20:30:00Z'), 'Asia/Tokyo')).toBe(5);
    expect(localHour(new Date('2026-11-30T20:30:00Z'), 'UTC')).toBe(20);
    expect(localHour(new Date('2026-11-30T20:30:00Z'), 'Asia/Kolkata')).toBe(2);
    // A charge counted on its reservation's earlier day: that day's first hour.
    expect(rollupHour(new Date('2026-12-02T00:00:03Z'), '2026-12-01', '2026-12-02', 'UTC')).toBe(0);
    expect(rollupHour(new Date('2026-12-01T23:59:59Z'), '2026-12-01', '2026-12-01', 'UTC')).toBe(23);
  });

  it('declares keys sorted, refusing more than 5, bad and repeated ones by index', () => {
    expect(validateSetDimensions({ accountId: 'acme', tagKeys: ['team', 'env'] }).tagKeys).toEqual(['env', 'team']);
    const fields = (keys: string[]) => {
      try {
        validateSetDimensions({ accountId: 'acme', tagKeys: keys });
        return [];
      } catch (e) {
        return (e as ValidationError).violations.map((v) => v.field);
      }
    };
    expect(fields(['a', 'b', 'c', 'd', 'e', 'f'])).toEqual(['tag_keys']);
    expect(fields(['env', 'Env', 'env'])).toEqual(['tag_keys[1]', 'tag_keys[2]']);
  });

  it('makes dimension entries only for charges summed under dimensions, per key in key order; re-rating moves the recorded row', () => {
    const plain = entriesOf([{ kind: 'charge_recorded', charge: charge() }]);
    expect(plain.dimensions).toEqual([]);
    const a = charge({ chargeId: 'a', dimensions: { feature: 'x' }, rollupHour: 10, apiKeyId: 'k_000000000001' });
    const b = charge({ chargeId: 'b', dimensions: { feature: 'x' }, rollupHour: 10, apiKeyId: 'k_000000000001' });
    const c = charge({ chargeId: 'c', dimensions: {}, rollupHour: 9 });
    const e = entriesOf([a, b, c].map((x) => ({ kind: 'charge_recorded' as const, charge: x })));
    expect(e.dimensions.map((d) => [d.hour, d.apiKeyId, d.dims, d.sums.messageCount, d.sums.totalCost.toFixed()])).toEqual([
      [9, '', {}, 1n, '0.00225'],
      [10, 'k_000000000001', { feature: 'x' }, 2n, '0.0045'],
    ]);
    // Re-rated after the account changed its dimensions: the charge's own record decides the row.
    const after = { ...a, costs: { ...a.costs!, totalCost: '0.003' } };
    const r = entriesOf([{ kind: 'charge_rerated', before: a, after }]);
    expect(r.dimensions).toHaveLength(1);
    expect(r.dimensions[0]).toMatchObject({ hour: 10, dims: { feature: 'x' } });
    expect(r.dimensions[0].sums.messageCount).toBe(0n);
    expect(r.dimensions[0].sums.totalCost.equals(new Dec('0.00075'))).toBe(true);
  });

  it('takes max_values_per_day from 1 to 10,000 (0 or absent: the default), naming the field otherwise', () => {
    expect(validateSetDimensions({ accountId: 'acme', tagKeys: [] }).maxValuesPerDay).toBe(DEFAULT_MAX_VALUES_PER_DAY);
    expect(validateSetDimensions({ accountId: 'acme', tagKeys: [], maxValuesPerDay: 0 }).maxValuesPerDay).toBe(DEFAULT_MAX_VALUES_PER_DAY);
    expect(validateSetDimensions({ accountId: 'acme', tagKeys: [], maxValuesPerDay: 10_000 }).maxValuesPerDay).toBe(10_000);
    for (const bad of [-1, 10_001, 1.5, Number.NaN, 2 ** 31]) {
      expect(() => validateSetDimensions({ accountId: 'acme', tagKeys: [], maxValuesPerDay: bad })).toThrow(/max_values_per_day/);
    }
  });

  it('asks to admit the unknown values of a batch per (account, day, key) in key order, distinct, cut at the limit', () => {
    const known = new Set([dimensionValueId('acme', '2026-12-01', 'feature', 'seen')]);
    const wanted = dimensionValuesWanted(
      [
        { accountId: 'acme', usageDate: '2026-12-01', dimensions: { feature: 'b', env: 'prod' } },
        { accountId: 'acme', usageDate: '2026-12-01', dimensions: { feature: 'seen' } },
        { accountId: 'acme', usageDate: '2026-12-01', dimensions: { feature: 'a' } },
        { accountId: 'acme', usageDate: '2026-12-01', dimensions: { feature: 'b' } },
        { accountId: 'acme', usageDate: '2026-12-01', dimensions: { feature: 'c' } },
        { accountId: 'acme', usageDate: '2026-11-30', dimensions: { feature: 'a' } },
        { accountId: 'other', usageDate: '2026-12-01', dimensions: null },
      ],
      () => 2,
      (id) => known.has(id),
    );
    expect(wanted.map((w) => [w.usageDate, w.tagKey, w.values])).toEqual([
      ['2026-11-30', 'feature', ['a']],
      ['2026-12-01', 'env', ['prod']],
      ['2026-12-01', 'feature', ['b', 'a']],
    ]);
    const refusal = { accountId: 'acme', usageDate: '2026-12-01', tagKey: 'feature', limit: 2, value: 'c' };
    expect(refusalOf({ accountId: 'acme', usageDate: '2026-12-01', dimensions: { feature: 'c' } }, [refusal])).toBe(refusal);
    expect(refusalOf({ accountId: 'acme', usageDate: '2026-12-02', dimensions: { feature: 'c' } }, [refusal])).toBeUndefined();
  });

  it('sums the hourly dimension entries per day for the day-level rollup, in key order', () => {
    const at = (hour: number, feature: string) => charge({ chargeId: `${hour}${feature}`, dimensions: { feature }, rollupHour: hour });
    const e = entriesOf([at(1, 'x'), at(5, 'x'), at(5, 'y'), at(23, 'x')].map((x) => ({ kind: 'charge_recorded' as const, charge: x })));
    expect(e.dimensions).toHaveLength(4);
    const days = dimensionDaysOf(e.dimensions);
    expect(days.map((d) => [d.dims, d.sums.messageCount, d.sums.totalCost.toFixed(), 'hour' in d])).toEqual([
      [{ feature: 'x' }, 3n, '0.00675', false],
      [{ feature: 'y' }, 1n, '0.00225', false],
    ]);
  });
});

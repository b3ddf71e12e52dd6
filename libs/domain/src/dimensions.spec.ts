import { Dec, tokenCounts } from '@metering/pricing';
import type { ChargeRecord } from './charge';
import { dimensionValues, localHour, rollupHour, validateSetDimensions } from './dimensions';
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
});

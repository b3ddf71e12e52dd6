import { RecordChargeRequest } from '@metering/contracts';
import { CheckLimitsRequestInput, DomainError, QuotaExceededError, ValidationError } from '@metering/domain';
import { Dec, PriceTable } from '@metering/pricing';
import { ChargesService } from '../../src/services/charges.service';
import { DimensionsService } from '../../src/services/dimensions.service';
import { LimitsService } from '../../src/services/limits.service';
import { PricingService } from '../../src/services/pricing.service';
import { ReservationsService } from '../../src/services/reservations.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { readEvents } from '../../src/store/events.repo';
import { expectRollupsMatchCharges } from '../support/consistency';
import { completionTokensCosting, gpt4oCost } from '../support/costing';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { chargeRequest, checkRequest } from '../support/requests';

/**
 * Issue 20, budgets on new scopes, on the embedded database and on Postgres:
 * limits of one API key and of one tag value (of a declared dimension) are
 * checked, reserved against, settled and released with the account's and the
 * user's, name their scope in reasons and QuotaFailure, and their counters
 * equal the sums of the charges and open holds of their scope. Hostile scope
 * input is INVALID_ARGUMENT naming the field, and writes nothing.
 */
requirePostgresInCi();

const PERIOD = { day: 1, month: 2 } as const;
const MEASURE = { messages: 1, tokens: 2, cost: 3 } as const;

describe.each(databaseTargets())('budgets per API key and per tag on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  let charges: ChargesService;
  let limits: LimitsService;
  let reservations: ReservationsService;
  let dimensions: DimensionsService;

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
    await migrate(db);
    const pricing = new PricingService(db, new PriceTable());
    charges = new ChargesService(db, pricing);
    limits = new LimitsService(db, pricing);
    reservations = new ReservationsService(db);
    dimensions = new DimensionsService(db);
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  const put = (accountId: string, scope: { apiKeyId?: string; tagKey?: string; tagValue?: string; userId?: string }, period: keyof typeof PERIOD, measure: keyof typeof MEASURE, amount: string) =>
    limits.putLimit({ accountId, userId: '', ...scope, period: PERIOD[period], measure: MEASURE[measure], enforcement: 1, amount });
  const charge = (accountId: string, key: string, over: Partial<RecordChargeRequest> = {}, apiKeyId = '') =>
    charges.recordCharge(chargeRequest({ accountId, idempotencyKey: key, ...over }), apiKeyId);
  const check = (accountId: string, over: Partial<CheckLimitsRequestInput> = {}, apiKeyId = '') => limits.checkLimits({ ...checkRequest({ accountId }), ...over }, apiKeyId);
  const failure = async (p: Promise<unknown>): Promise<DomainError> => {
    try {
      await p;
    } catch (e) {
      if (e instanceof DomainError) return e;
      throw e;
    }
    throw new Error('expected a domain error');
  };
  const fields = (e: DomainError) => (e as ValidationError).violations.map((v) => v.field);
  const scopeCounter = async (accountId: string, scope: string) =>
    db('usage_counters').where({ account_id: accountId, user_id: '', scope, period: 'day' }).orderBy('period_start', 'desc').first();
  /** What one default charge (gpt-4o, 100 + 200 tokens) costs, from the pricing data. */
  const oneCharge = () => gpt4oCost({ promptTokens: 100, completionTokens: 200 });

  it('limits the calls of one API key: its charges count, other keys and the operator do not', async () => {
    const a = 'bykey';
    await put(a, { apiKeyId: 'key-a' }, 'day', 'messages', '2');
    await charge(a, 'c1', {}, 'key-a');
    await charge(a, 'c2', {}, 'key-b');
    expect(await check(a, {}, 'key-a')).toMatchObject({ allowed: true, reason: 'within_limits', limits: [{ scope: 'api_key', apiKeyId: 'key-a', used: '1', remaining: '1' }] });
    await charge(a, 'c3', { userId: 'u2' }, 'key-a');
    const denied = await check(a, {}, 'key-a');
    expect(denied).toMatchObject({ allowed: false, reason: 'message_limit_reached', message: 'API key key-a daily message limit reached (2)' });
    expect(denied.limits).toEqual([expect.objectContaining({ scope: 'api_key', apiKeyId: 'key-a', period: 'day', used: '2', exceeded: true })]);
    // Another key, and the operator (no key), have no limit here.
    expect(await check(a, {}, 'key-b')).toMatchObject({ allowed: true, reason: 'no_limits_set' });
    expect(await check(a)).toMatchObject({ allowed: true, reason: 'no_limits_set' });
    const err = await failure(check(a, { denyAsError: true }, 'key-a'));
    expect(err).toBeInstanceOf(QuotaExceededError);
    expect((err as QuotaExceededError).violations).toEqual([{ subject: `account:${a}/api_key:key-a/day/messages`, description: expect.stringContaining('limit 2, used 2') }]);
    // A reservation with the key holds on its counter; releasing frees it.
    await put(a, { apiKeyId: 'key-b' }, 'day', 'messages', '2');
    const r = await limits.checkLimits({ ...checkRequest({ accountId: a, reserve: true, idempotencyKey: 'r1' }) }, 'key-b');
    expect(r).toMatchObject({ allowed: true, reservation: { apiKeyId: 'key-b' } });
    expect((await scopeCounter(a, 'api_key:key-b')).reserved_messages).toBe('1');
    expect(await limits.checkLimits({ ...checkRequest({ accountId: a, reserve: true, idempotencyKey: 'r2' }) }, 'key-b')).toMatchObject({ allowed: false, limits: [{ apiKeyId: 'key-b', used: '1', reserved: '1' }] });
    await expectRollupsMatchCharges(db, a);
    await reservations.release({ accountId: a, reservationId: r.reservation!.reservationId });
    expect((await scopeCounter(a, 'api_key:key-b')).reserved_messages).toBe('0');
    await expectRollupsMatchCharges(db, a);
  });

  it('limits the calls of one tag value of a declared dimension, and needs the key declared', async () => {
    const a = 'bytag';
    const undeclared = await failure(put(a, { tagKey: 'feature', tagValue: 'summarize' }, 'day', 'cost', '1'));
    expect([undeclared.code, fields(undeclared)]).toEqual(['INVALID_ARGUMENT', ['tag_key']]);
    expect(await db('limits').where({ account_id: a })).toEqual([]);
    await dimensions.setDimensions({ accountId: a, tagKeys: ['feature', 'env'] });
    const budget = oneCharge().times(2).toFixed();
    await put(a, { tagKey: 'feature', tagValue: 'summarize' }, 'day', 'cost', budget);
    await charge(a, 'c1', { tags: { feature: 'summarize', env: 'prod', note: 'kept, not counted' } });
    await charge(a, 'c2', { tags: { feature: 'chat' } });
    const tagged = { tags: { feature: 'summarize' } };
    expect(await check(a, tagged)).toMatchObject({ allowed: true, limits: [{ scope: 'tag', tagKey: 'feature', tagValue: 'summarize', used: oneCharge().toFixed() }] });
    await charge(a, 'c3', { userId: 'u2', tags: { feature: 'summarize' } });
    const denied = await check(a, tagged);
    expect(denied).toMatchObject({ allowed: false, reason: 'cost_limit_exceeded', message: `Tag feature=summarize daily cost limit reached (${budget} USD)` });
    expect(((await failure(check(a, { ...tagged, denyAsError: true }))) as QuotaExceededError).violations.map((v) => v.subject)).toEqual([`account:${a}/tag:feature=summarize/day/cost`]);
    // Other values, and calls without the tag, are not limited by it.
    expect(await check(a, { tags: { feature: 'chat' } })).toMatchObject({ allowed: true, reason: 'no_limits_set' });
    expect(await check(a)).toMatchObject({ allowed: true, reason: 'no_limits_set' });
    // Every declared tag value is counted (the oracle compares them all with the charges), undeclared ones are not.
    expect(await db('usage_counters').where({ account_id: a, period: 'day' }).whereNot('scope', '').orderBy('scope').pluck('scope')).toEqual(['tag:env=prod', 'tag:feature=chat', 'tag:feature=summarize']);
    await expectRollupsMatchCharges(db, a);
    // Listed with their usage; read and removed by their scope.
    const listed = await limits.listLimits({ accountId: a, userId: '', pageSize: 0, pageToken: '' });
    expect(listed.limits).toEqual([expect.objectContaining({ limit: expect.objectContaining({ scope: 'tag:feature=summarize', amount: new Dec(budget) }), used: oneCharge().times(2).toFixed(), exceeded: true })]);
    expect((await limits.getLimits({ accountId: a, userId: '', tagKey: 'feature', tagValue: 'summarize' })).cost?.toFixed()).toBe(budget);
    expect(await limits.deleteLimit({ accountId: a, userId: '', tagKey: 'feature', tagValue: 'summarize', period: PERIOD.day, measure: MEASURE.cost, enforcement: 1 })).toBe(true);
    expect(await check(a, tagged)).toMatchObject({ allowed: true, reason: 'no_limits_set' });
  });

  it('puts a soft limit of an API key or a tag value on the charge stream when a charge crosses it, once', async () => {
    const a = 'softscopes';
    await dimensions.setDimensions({ accountId: a, tagKeys: ['feature'] });
    const soft = { userId: '', period: PERIOD.day, measure: MEASURE.messages, enforcement: 2 };
    await limits.putLimit({ accountId: a, ...soft, apiKeyId: 'key-s', amount: '2' });
    await limits.putLimit({ accountId: a, ...soft, tagKey: 'feature', tagValue: 'summarize', amount: '1' });
    await charge(a, 's1', { tags: { feature: 'summarize' } }, 'key-s'); // the tag's 1 message: reached
    await charge(a, 's2', { tags: { feature: 'chat' } }, 'key-s'); // the key's 2 messages: reached
    await charge(a, 's3', { tags: { feature: 'summarize' } }, 'key-s'); // both already past: nothing new
    await charge(a, 's4', { tags: { feature: 'summarize' } }, 'key-other'); // another key: not the key's limit
    const crossed = (await readEvents(db, a, 0n, 100)).filter((e) => e.kind === 'soft_limit_exceeded').map((e) => e.softLimit!);
    expect(crossed.map((c) => [c.limit.scope, c.limit.amount.toFixed(), c.used.messageCount])).toEqual([
      ['tag:feature=summarize', '1', 1n],
      ['api_key:key-s', '2', 2n],
    ]);
    // CheckLimits reports them as it did (allowed, soft limit exceeded).
    expect(await check(a, { tags: { feature: 'summarize' } }, 'key-s')).toMatchObject({ allowed: true, reason: 'soft_limit_exceeded' });
    await expectRollupsMatchCharges(db, a);
  });

  it('holds on every scope of a reservation at once, and settling or expiring frees the same holds', async () => {
    const a = 'allscopes';
    await dimensions.setDimensions({ accountId: a, tagKeys: ['feature'] });
    await put(a, {}, 'day', 'messages', '10');
    await put(a, { userId: 'u1' }, 'day', 'messages', '10');
    await put(a, { apiKeyId: 'key-a' }, 'month', 'messages', '10');
    await put(a, { tagKey: 'feature', tagValue: 'summarize' }, 'day', 'messages', '1');
    const reserve = (key: string, over: Partial<CheckLimitsRequestInput> = {}) =>
      limits.checkLimits({ ...checkRequest({ accountId: a, reserve: true, idempotencyKey: key, tags: { feature: 'summarize', other: 'x' } }), ...over }, 'key-a');
    const r = await reserve('r1');
    expect(r.allowed).toBe(true);
    expect(r.reservation).toMatchObject({ tags: { feature: 'summarize', other: 'x' }, apiKeyId: 'key-a', dimensions: { feature: 'summarize' } });
    expect(r.limits.map((l) => [l.scope, l.apiKeyId ?? l.tagValue ?? '', l.period])).toEqual([
      ['user', '', 'day'],
      ['api_key', 'key-a', 'month'],
      ['tag', 'summarize', 'day'],
      ['account', '', 'day'],
    ]);
    // The tag value's limit (1 message) is held: the next tagged call is refused, others pass.
    const second = await reserve('r2');
    expect(second).toMatchObject({ allowed: false, reason: 'message_limit_reached', message: 'Tag feature=summarize daily message limit reached (1)' });
    expect(await reserve('r3', { tags: { feature: 'chat' } })).toMatchObject({ allowed: true });
    await expectRollupsMatchCharges(db, a);
    // Settled by a charge with other tags: the hold leaves the reservation's scopes, the usage lands on the charge's.
    await charge(a, 'c1', { reservationId: r.reservation!.reservationId, tags: { feature: 'translate' } }, 'key-a');
    expect((await scopeCounter(a, 'tag:feature=summarize')).reserved_messages).toBe('0');
    expect((await scopeCounter(a, 'tag:feature=translate')).message_count).toBe('1');
    await expectRollupsMatchCharges(db, a);
    // Expiry frees a hold's scopes too.
    await reserve('r4', { holdSeconds: 1 });
    expect((await scopeCounter(a, 'tag:feature=summarize')).reserved_messages).toBe('1');
    await new Promise((resolve) => setTimeout(resolve, 1100));
    expect(await reservations.expireAllDue()).toBeGreaterThanOrEqual(1);
    expect((await scopeCounter(a, 'tag:feature=summarize')).reserved_messages).toBe('0');
    await expectRollupsMatchCharges(db, a);
  });

  it('answers hostile scope input with INVALID_ARGUMENT naming the field, and writes nothing', async () => {
    const a = 'hostile-scope';
    await dimensions.setDimensions({ accountId: a, tagKeys: ['feature'] });
    const cases: Array<[Record<string, string>, string[]]> = [
      [{ userId: 'u1', apiKeyId: 'key-a' }, ['api_key_id']],
      [{ apiKeyId: 'key-a', tagKey: 'feature', tagValue: 'x' }, ['tag_key']],
      [{ apiKeyId: 'k'.repeat(129) }, ['api_key_id']],
      [{ apiKeyId: 'key a\u0000' }, ['api_key_id']],
      [{ tagKey: 'Feature', tagValue: 'x' }, ['tag_key']],
      [{ tagKey: 'feature=x', tagValue: 'x' }, ['tag_key']],
      [{ tagKey: 'feature', tagValue: '' }, ['tag_value']],
      [{ tagKey: '', tagValue: 'summarize' }, ['tag_key']],
      [{ tagKey: 'feature', tagValue: 'a\u0000b' }, ['tag_value']],
      [{ tagKey: 'feature', tagValue: 'x'.repeat(129) }, ['tag_value']],
      [{ tagKey: 'feature', tagValue: ' padded' }, ['tag_value']],
    ];
    for (const [scope, named] of cases) {
      const e = await failure(put(a, scope, 'day', 'cost', '1'));
      expect([e.code, fields(e)]).toEqual(['INVALID_ARGUMENT', named]);
      const d = await failure(limits.deleteLimit({ accountId: a, userId: '', ...scope, period: PERIOD.day, measure: MEASURE.cost, enforcement: 1 }));
      expect([d.code, fields(d)]).toEqual(['INVALID_ARGUMENT', named]);
      const g = await failure(limits.getLimits({ accountId: a, userId: '', ...scope }));
      expect([g.code, fields(g)]).toEqual(['INVALID_ARGUMENT', named]);
    }
    expect(await db('limits').where({ account_id: a })).toEqual([]);
  });

  it('admits exactly 50 of 1,000 concurrent reservations against a $5 tag budget, each estimated at $0.10 from the pricing data', async () => {
    const a = 'tag-budget';
    const { tokens, cost } = completionTokensCosting('0.10');
    const budget = new Dec('5');
    await dimensions.setDimensions({ accountId: a, tagKeys: ['feature'] });
    await put(a, { tagKey: 'feature', tagValue: 'summarize' }, 'day', 'cost', budget.toFixed());
    const estimate = { provider: 'openai', model: 'gpt-4o', chargeType: 0, promptTokens: '0', completionTokens: String(tokens), reasoningTokens: '0', cachedPromptTokens: '0', cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0' };
    const results = await Promise.all(
      Array.from({ length: 1000 }, (_, n) =>
        limits.checkLimits({ ...checkRequest({ accountId: a, userId: `u${n % 7}`, reserve: true, idempotencyKey: `r${n}`, tags: { feature: 'summarize' } }), estimate }, `key-${n % 3}`),
      ),
    );
    const admitted = results.filter((r) => r.allowed);
    expect(admitted).toHaveLength(budget.dividedToIntegerBy(cost).toNumber());
    expect(admitted.length).toBe(50);
    expect(admitted.every((r) => r.reservation!.heldCost.equals(cost))).toBe(true);
    expect(results.filter((r) => !r.allowed).every((r) => r.reason === 'cost_limit_exceeded')).toBe(true);
    const tag = await scopeCounter(a, 'tag:feature=summarize');
    expect(new Dec(tag.reserved_cost).equals(budget)).toBe(true);
    await expectRollupsMatchCharges(db, a);
  }, 300_000);
});

import { PriceTable } from '@metering/pricing';
import { ChargesService } from '../../src/services/charges.service';
import { LimitsService } from '../../src/services/limits.service';
import { PricingService } from '../../src/services/pricing.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { chargeRequest, checkRequest } from '../support/requests';
import { statementsSentBy } from '../support/statements';

/**
 * Concurrent plain CheckLimits calls of one account share a read
 * (services/check-state-reads.ts): each must still get exactly the answer a
 * check of its own gives, and a check must see what was committed before it
 * was called. Counted in statements, never timed.
 */
requirePostgresInCi();

describe.each(databaseTargets())('batched CheckLimits reads on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  let charges: ChargesService;
  let limits: LimitsService;
  const now = new Date();
  const clock = () => now;

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
    await migrate(db);
    const pricing = new PricingService(db, new PriceTable(), clock);
    charges = new ChargesService(db, pricing, clock);
    limits = new LimitsService(db, pricing, clock);
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  /** How many statements `fn` sends. */
  const statements = async (fn: () => Promise<unknown>): Promise<number> => (await statementsSentBy(db, fn)).length;

  it('answers each of many concurrent checks as a check of its own, in fewer statements than checks', async () => {
    const a = 'batch';
    // Users u0..u9: a user day limit of 500 tokens for the even ones, an account month limit of 5000 tokens;
    // u0..u4 have used 300 tokens each (one charge of 100 + 200), so u4 is over its 500 when it asks for 400 more.
    for (let n = 0; n < 10; n += 2) await limits.putLimit({ accountId: a, userId: `u${n}`, period: 1, measure: 2, enforcement: 1, amount: '500' });
    await limits.putLimit({ accountId: a, userId: '', period: 2, measure: 2, enforcement: 2, amount: '5000' });
    for (let n = 0; n < 5; n++) await charges.recordCharge(chargeRequest({ accountId: a, userId: `u${n}`, idempotencyKey: `c${n}` }));
    const requests = Array.from({ length: 40 }, (_, n) => checkRequest({ accountId: a, userId: `u${n % 10}`, additionalTokens: String(100 * (n % 5)) }));

    const alone = [];
    for (const r of requests) alone.push(await limits.checkLimits({ ...r }));
    let together: Awaited<ReturnType<LimitsService['checkLimits']>>[] = [];
    const sent = await statements(async () => {
      together = await Promise.all(requests.map((r) => limits.checkLimits({ ...r })));
    });

    expect(together).toEqual(alone);
    // Both outcomes are among them (the batch is not answered as one user).
    expect(new Set(together.map((r) => r.allowed))).toEqual(new Set([true, false]));
    expect(sent).toBeGreaterThanOrEqual(1);
    expect(sent).toBeLessThan(requests.length);
  });

  it('lets a check see a charge acknowledged before it was called, while other checks of the account are being read', async () => {
    const a = 'batch-fresh';
    await limits.putLimit({ accountId: a, userId: 'late', period: 1, measure: 2, enforcement: 1, amount: '400' });
    const before = await limits.checkLimits(checkRequest({ accountId: a, userId: 'late', additionalTokens: '200' }));
    expect(before.allowed).toBe(true);
    // Checks of other users keep the account's reads busy while the charge commits and the late check is called.
    const busy = Array.from({ length: 20 }, (_, n) => limits.checkLimits(checkRequest({ accountId: a, userId: `o${n}` })));
    await charges.recordCharge(chargeRequest({ accountId: a, userId: 'late', idempotencyKey: 'late-1' }));
    const after = limits.checkLimits(checkRequest({ accountId: a, userId: 'late', additionalTokens: '200' }));
    await Promise.all(busy);
    expect((await after).allowed).toBe(false);
    expect((await after).userUsage.totalTokens).toBe(300n);
  });
});

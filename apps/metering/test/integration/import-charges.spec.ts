import { DomainError } from '@metering/domain';
import { Dec, PriceTable } from '@metering/pricing';
import { ChargesService } from '../../src/services/charges.service';
import { CreditsService } from '../../src/services/credits.service';
import { LimitsService } from '../../src/services/limits.service';
import { PricingService } from '../../src/services/pricing.service';
import { RerateService } from '../../src/services/rerate.service';
import { UsageService } from '../../src/services/usage.service';
import { closeDatabase, Db, migrate, openDatabase } from '../../src/store/db';
import { expectBalanceIdentity, expectRollupsMatchCharges } from '../support/consistency';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { chargeRequest } from '../support/requests';

/**
 * ImportCharges on the services, on the embedded database and on Postgres: a charge with a kept
 * cost (the Django models' TokenUsage costs) is stored with that cost and moves the rollups, the
 * limits' counters and the credits exactly as a priced charge of the same cost does (a twin
 * account records one priced by an operator price equal to it); re-rating leaves it alone; a
 * replay keeps the first pricing.
 */
requirePostgresInCi();

const USD = (amount: string) => ({ amount, currencyCode: 'USD' });
const ts = (d: Date) => ({ seconds: String(Math.floor(d.getTime() / 1000)), nanos: 0 });
const MODEL = { provider: 'selfhosted', model: 'import-llm' };

describe.each(databaseTargets())('ImportCharges on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  const now = new Date();
  const clock = () => now;
  let pricing: PricingService;
  let charges: ChargesService;
  let limits: LimitsService;
  let credits: CreditsService;
  let rerate: RerateService;
  let usage: UsageService;
  const usageTime = ts(new Date(now.getTime() - 3_600_000));
  const today = new Date(Number(usageTime.seconds) * 1000).toISOString().slice(0, 10);

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
    await migrate(db);
    pricing = new PricingService(db, new PriceTable(), clock);
    charges = new ChargesService(db, pricing, clock);
    limits = new LimitsService(db, pricing, clock);
    credits = new CreditsService(db, clock);
    rerate = new RerateService(db, pricing, clock);
    usage = new UsageService(db);
    // An operator price under which the twin's charge costs what the kept one does: 100 prompt tokens at
    // $1000/M = 0.1, 200 completion tokens at $1000/M = 0.2.
    await pricing.setPrice({
      accountId: '', ...MODEL, effectiveTime: ts(new Date('2026-01-01T00:00:00Z')), source: 'test', actor: 'ops@example.com',
      rates: { inputPerMillion: '1000', outputPerMillion: '1000', cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '', reasoningPerMillion: '', perCall: '', longContext: undefined },
    });
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  const prepare = async (accountId: string) => {
    await limits.putLimit({ accountId, userId: '', period: 2, measure: 3, enforcement: 1, amount: '10' });
    await credits.createGrant({ accountId, idempotencyKey: 'g', userId: '', kind: 0, amount: USD('1'), priority: 0, reason: 'test', actor: 'ops@example.com' });
  };
  const state = async (accountId: string) => {
    const day = await usage.getDailyUsage({ accountId, startDate: today, endDate: today, userId: '', provider: '', model: '', chargeType: 0, pageSize: 100, pageToken: '' });
    const { limits: listed } = await limits.listLimits({ accountId, userId: '', pageSize: 100, pageToken: '' });
    const balance = await credits.getBalance({ accountId, userId: '' });
    return {
      messages: day.totals.messageCount, totalCost: day.totals.totalCost.toFixed(), promptCost: day.totals.promptCost.toFixed(), providerCost: day.totals.providerCost.toFixed(),
      monthCostUsed: listed.map((l) => l.used), available: balance.available.toFixed(),
    };
  };
  const charge = (accountId: string, key: string) => chargeRequest({ accountId, idempotencyKey: key, ...MODEL, promptTokens: '100', completionTokens: '200', usageTime });

  it('moves rollups, counters and credits exactly as a priced charge of the same cost, stored with origin imported', async () => {
    await prepare('kept');
    await prepare('twin');
    const [imported] = await charges.importCharges([{ charge: charge('kept', 'django:tokenusage:1'), keptCost: { promptCost: USD('0.100000'), completionCost: USD('0.200000'), totalCost: USD('0.300000'), markup: '', source: 'django:chatbot_tokenusage' } }]);
    if (imported instanceof DomainError) throw imported;
    const { charge: priced } = await charges.recordCharge(charge('twin', 'c1'));
    expect(priced.costs?.totalCost).toBe('0.3');
    expect(imported.charge).toMatchObject({ pricingStatus: 'priced', priceOrigin: 'imported', priceVersion: 'django:chatbot_tokenusage', markup: '1', costs: { promptCost: '0.1', completionCost: '0.2', callCost: '0', totalCost: '0.3', providerCost: '0.3' } });
    expect(await state('kept')).toEqual(await state('twin'));
    expect(await state('kept')).toMatchObject({ messages: 1n, totalCost: '0.3', available: new Dec(1).minus('0.3').toFixed() });
    for (const a of ['kept', 'twin']) {
      await expectRollupsMatchCharges(db, a);
      await expectBalanceIdentity(db, a);
    }
  });

  it('is left alone by re-rating, and a replay keeps the first pricing', async () => {
    // Prices change: re-rating everything re-prices the twin's charge, not the kept one.
    await pricing.setPrice({
      accountId: '', ...MODEL, effectiveTime: ts(new Date('2026-01-02T00:00:00Z')), source: 'test', actor: 'ops@example.com',
      rates: { inputPerMillion: '2000', outputPerMillion: '2000', cachedInputPerMillion: '', cacheWritePerMillion: '', cacheWrite1hPerMillion: '', reasoningPerMillion: '', perCall: '', longContext: undefined },
    });
    const before = await state('kept');
    const keptRun = await rerate.rerate({ accountId: 'kept', startDate: today, endDate: today, mode: 2, provider: '', model: '', dryRun: false });
    const twinRun = await rerate.rerate({ accountId: 'twin', startDate: today, endDate: today, mode: 2, provider: '', model: '', dryRun: false });
    expect([keptRun.examined, keptRun.changed]).toEqual([0, 0]);
    expect([twinRun.examined, twinRun.changed]).toEqual([1, 1]);
    expect(await state('kept')).toEqual(before);
    // The same key with another kept cost, or with none: a replay of the stored charge.
    const [again] = await charges.importCharges([{ charge: charge('kept', 'django:tokenusage:1'), keptCost: { promptCost: USD('9'), completionCost: USD('9'), markup: '', source: '' } }]);
    const [unkept] = await charges.importCharges([{ charge: charge('kept', 'django:tokenusage:1') }]);
    for (const r of [again, unkept]) {
      if (r instanceof DomainError) throw r;
      expect([r.replayed, r.charge.priceOrigin, r.charge.costs?.totalCost]).toEqual([true, 'imported', '0.3']);
    }
    expect(await state('kept')).toEqual(before);
    await expectRollupsMatchCharges(db, 'kept');
    await expectBalanceIdentity(db, 'kept');
  });
});

import { ChargeEvent, ChargeRecord, EventsPrunedError, IdempotencyConflictError, RecordChargeRequestInput, ValidationError } from '@metering/domain';
import { Dec, formatDecimal, PriceTable } from '@metering/pricing';
import { ChargesService } from '../../src/services/charges.service';
import { EventNotifier, EventsService, pruneEvents } from '../../src/services/events.service';
import { LimitsService } from '../../src/services/limits.service';
import { MarkupsService } from '../../src/services/markups.service';
import { PricingService } from '../../src/services/pricing.service';
import { UsageService } from '../../src/services/usage.service';
import { closeDatabase, Db, listen, migrate, openDatabase, rollbackAll } from '../../src/store/db';
import { appendEvents, NewEvent, readEvents } from '../../src/store/events.repo';
import { expectRollupsMatchCharges } from '../support/consistency';
import { databaseTargets, describeEachOf, onCitus, requirePostgresInCi, TestDatabase } from '../support/databases';

/**
 * The services and the Knex store against real databases: the embedded one
 * (PGlite) and Postgres (when configured; required in CI).
 */
const NOW = new Date('2026-11-23T12:00:00Z');
const clock = () => NOW;

const charge = (over: Partial<RecordChargeRequestInput> = {}): RecordChargeRequestInput => ({
  accountId: 'acme', userId: 'u1', idempotencyKey: 'k1', sessionKey: 's1', provider: 'openai', model: 'gpt-4o',
  chargeType: 0, requestType: 0, promptTokens: '100', completionTokens: '200', reasoningTokens: '0', cachedPromptTokens: '0',
  cacheWriteTokens: '0', cacheWrite1hTokens: '0', callCount: '0', reference: 'invoice-123', endpoint: '/v1/chat/completions', responseTimeMs: '840', wasCached: false,
  hadError: false, errorMessage: '', metadata: { team: 'search' }, usageTime: undefined, ...over,
});

requirePostgresInCi();

describeEachOf(databaseTargets().filter((t) => t.name === 'postgres'), 'postgres')('migrations on a new $name database', (target) => {
  it('migrate from several processes at once (replicas starting together): each one finishes, the schema once', async () => {
    const tdb = await target.create();
    const dbs = Array.from({ length: 4 }, () => openDatabase(tdb.config));
    try {
      await Promise.all(dbs.map((d) => migrate(d)));
      const done = await dbs[0]('knex_migrations').select('name');
      expect(done.map((r: { name: string }) => r.name)).toEqual([...new Set(done.map((r: { name: string }) => r.name))]);
      expect(await dbs[0].schema.hasTable('charges')).toBe(true);
    } finally {
      await Promise.all(dbs.map((d) => closeDatabase(d)));
      await tdb.drop();
    }
  });
});

describe.each(databaseTargets())('metering store on $name', (target) => {
  let tdb: TestDatabase;
  let db: Db;
  let charges: ChargesService;
  let usage: UsageService;
  let limits: LimitsService;
  let markups: MarkupsService;
  const count = async (table: string) => Number((await db(table).count<{ n: string }[]>('* as n'))[0].n);
  let keyNo = 0;
  const key = () => `key-${++keyNo}`;
  const events = (accountId: string, afterSequence: string) => new EventsService(db, new EventNotifier(), 20).open({ accountId, afterSequence, userId: '', provider: '', model: '' });

  beforeAll(async () => {
    tdb = await target.create();
    db = openDatabase(tdb.config);
    await migrate(db);
    charges = new ChargesService(db, new PricingService(db, new PriceTable(), clock), clock);
    usage = new UsageService(db);
    limits = new LimitsService(db, new PricingService(db, new PriceTable(), clock), clock);
    markups = new MarkupsService(db);
  });

  afterAll(async () => {
    if (db) await closeDatabase(db);
    await tdb?.drop();
  });

  // Not on Citus: a distributed database is not migrated down (docs/scaling.md; the step dropped the epoch triggers the down migrations drop).
  (onCitus() ? it.skip : it)('migrates down and up again', async () => {
    await rollbackAll(db);
    expect(await db.schema.hasTable('charges')).toBe(false);
    await migrate(db);
    expect(await db.schema.hasTable('charges')).toBe(true);
  });

  it('prices gpt-4o exactly and stores NUMERIC, not float', async () => {
    const { charge: c, replayed } = await charges.recordCharge(charge({ idempotencyKey: key() }));
    expect(replayed).toBe(false);
    expect(c.costs?.totalCost).toBe('0.00225');
    expect(c.priceVersion).toBe('openai/gpt-4o@2024-10-02');
    const row = await db('charges').where({ charge_id: c.chargeId }).first();
    expect(row.total_cost).toBe('0.00225');
    expect(row.usage_date).toBe('2026-11-23');
  });

  it('keeps one gpt-4o-mini prompt token as 0.00000015 (the Django models stored 0)', async () => {
    const { charge: c } = await charges.recordCharge(charge({ idempotencyKey: key(), model: 'gpt-4o-mini', promptTokens: '1', completionTokens: '0' }));
    expect(c.costs?.totalCost).toBe('0.00000015');
    expect((await db('charges').where({ charge_id: c.chargeId }).first()).total_cost).toBe('0.00000015');
  });

  it('records a model with no price as unpriced, with no cost, and counts it toward token and message limits', async () => {
    await limits.setLimits({ accountId: 'unpriced', userId: 'u1', dailyMessageLimit: '1', dailyTokenLimit: undefined, dailyCostLimit: undefined });
    const { charge: c } = await charges.recordCharge(charge({ accountId: 'unpriced', idempotencyKey: key(), provider: 'selfhosted', model: 'llama-3-70b' }));
    expect(c.pricingStatus).toBe('unpriced');
    expect(c.costs).toBeNull();
    const check = await limits.checkLimits({ accountId: 'unpriced', userId: 'u1', additionalTokens: '0', additionalCost: undefined });
    expect(check).toMatchObject({ allowed: false, reason: 'message_limit_reached' });
    expect(check.userUsage.totalTokens).toBe(300n);
    const page = await usage.getDailyUsage({ accountId: 'unpriced', startDate: '2026-11-23', endDate: '2026-11-23', userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '' });
    expect(page.totals.unpricedMessageCount).toBe(1n);
    expect(page.totals.totalCost.toFixed()).toBe('0');
  });

  it('returns the original charge for a retry and writes nothing new', async () => {
    const k = key();
    const first = await charges.recordCharge(charge({ idempotencyKey: k }));
    const before = await count('charges');
    const again = await charges.recordCharge(charge({ idempotencyKey: k, metadata: { team: 'search' } }));
    expect(again.replayed).toBe(true);
    expect(again.charge).toEqual(first.charge);
    expect(await count('charges')).toBe(before);
  });

  it('rejects a reused key with different content, naming the fields, and writes nothing', async () => {
    const k = key();
    await charges.recordCharge(charge({ idempotencyKey: k }));
    const before = await count('charges');
    const err = await charges.recordCharge(charge({ idempotencyKey: k, completionTokens: '201', model: 'gpt-4o-mini' })).catch((e) => e);
    expect(err).toBeInstanceOf(IdempotencyConflictError);
    expect((err as IdempotencyConflictError).fields).toEqual(['model', 'completion_tokens']);
    expect(await count('charges')).toBe(before);
  });

  it('turns 64 concurrent identical calls into exactly one charge and 64 identical answers', async () => {
    const k = key();
    const results = await Promise.all(Array.from({ length: 64 }, () => charges.recordCharge(charge({ accountId: 'race', idempotencyKey: k }))));
    expect(results.filter((r) => !r.replayed)).toHaveLength(1);
    for (const r of results) expect(r.charge).toEqual(results[0].charge);
    expect(await db('charges').where({ account_id: 'race' }).count<{ n: string }[]>('* as n')).toEqual([{ n: '1' }]);
    const rollup = await db('daily_usage').where({ account_id: 'race' }).first();
    expect(rollup.message_count).toBe('1');
  });

  it('writes nothing for invalid input', async () => {
    const before = await count('charges');
    const err = await charges.recordCharge(charge({ idempotencyKey: '', promptTokens: '-1', model: ' x' })).catch((e) => e);
    expect(err).toBeInstanceOf(ValidationError);
    expect((err as ValidationError).violations.map((v) => v.field).sort()).toEqual(['idempotency_key', 'model', 'prompt_tokens']);
    expect(await count('charges')).toBe(before);
  });

  // Its fault is injected by a trigger on daily_usage, which Citus does not support on a distributed table.
  (onCitus() ? it.skip : it)('changes the charge and its rollups in one transaction: a failing rollup leaves no charge', async () => {
    await db.raw(`CREATE FUNCTION fail_rollup() RETURNS trigger LANGUAGE plpgsql AS $$ BEGIN RAISE EXCEPTION 'rollup failed'; END $$`);
    await db.raw(`CREATE TRIGGER fail_rollup BEFORE INSERT ON daily_usage FOR EACH ROW WHEN (NEW.model = 'doomed') EXECUTE FUNCTION fail_rollup()`);
    try {
      const before = await count('charges');
      await expect(charges.recordCharge(charge({ idempotencyKey: key(), model: 'doomed' }))).rejects.toThrow(/rollup failed/);
      expect(await count('charges')).toBe(before);
    } finally {
      await db.raw('DROP TRIGGER fail_rollup ON daily_usage');
      await db.raw('DROP FUNCTION fail_rollup()');
    }
  });

  it('applies the markup of the charge type, provider and model', async () => {
    await markups.setMarkup({ accountId: '', chargeType: 1, provider: 'openai', model: 'gpt-4o', factor: '1.25' });
    const { charge: c } = await charges.recordCharge(charge({ accountId: 'marked', idempotencyKey: key() }));
    expect(c.markup).toBe('1.25');
    expect(c.costs).toEqual({ providerCost: '0.00225', promptCost: '0.0003125', completionCost: '0.0025', callCost: '0', totalCost: '0.0028125' });
    const tool = await charges.recordCharge(charge({ accountId: 'marked', idempotencyKey: key(), chargeType: 3 }));
    expect(tool.charge.markup).toBe('1');
    expect(await markups.listMarkups({ provider: 'openai', accountId: '' })).toHaveLength(1);
    expect(await markups.deleteMarkup({ accountId: '', chargeType: 1, provider: 'openai', model: 'gpt-4o' })).toBe(true);
    expect(await markups.deleteMarkup({ accountId: '', chargeType: 1, provider: 'openai', model: 'gpt-4o' })).toBe(false);
    await expect(markups.setMarkup({ accountId: '', chargeType: 1, provider: 'openai', model: 'gpt-4o', factor: '0' })).rejects.toBeInstanceOf(ValidationError);
  });

  it('prices a backdated charge at the old price and rolls it up on its own UTC day', async () => {
    const { charge: c } = await charges.recordCharge(
      charge({ accountId: 'history', idempotencyKey: key(), promptTokens: '1000000', completionTokens: '1000000', usageTime: { seconds: String(Date.UTC(2024, 5, 1, 23, 59, 59) / 1000), nanos: 0 } }),
    );
    expect(c.priceVersion).toBe('openai/gpt-4o@2024-05-13');
    expect(c.costs?.totalCost).toBe('20');
    expect(c.usageDate).toBe('2024-06-01');
  });

  it('pages through daily usage in key order and its rows and totals equal the sum of the charges', async () => {
    const days = ['2026-10-01', '2026-10-02', '2026-10-03'];
    for (const [i, day] of days.entries()) {
      for (const user of ['u1', 'u2']) {
        for (const model of ['gpt-4o', 'claude-sonnet-4-5', 'unknown-model']) {
          await charges.recordCharge(
            charge({ accountId: 'report', userId: user, idempotencyKey: key(), model, provider: model.startsWith('claude') ? 'anthropic' : 'openai',
              promptTokens: String(1000 + i), completionTokens: String(7 * (i + 1)), cachedPromptTokens: '10',
              usageTime: { seconds: String(Date.parse(`${day}T10:00:00Z`) / 1000), nanos: 0 } }),
          );
        }
      }
    }
    const base = { accountId: 'report', startDate: '2026-10-01', endDate: '2026-10-31', userId: '', provider: '', model: '', chargeType: 0, pageSize: 4 };
    const rows = [];
    let pageToken = '';
    let pages = 0;
    do {
      const page = await usage.getDailyUsage({ ...base, pageToken });
      rows.push(...page.rows);
      pageToken = page.nextPageToken;
      pages++;
    } while (pageToken);
    expect(pages).toBe(5);
    expect(rows).toHaveLength(18);
    const keys = rows.map((r) => [r.usageDate, r.userId, r.provider, r.model, r.chargeType].join('|'));
    expect([...keys].sort()).toEqual(keys);
    const expected = await db('charges')
      .where({ account_id: 'report' })
      .select('usage_date', 'user_id', 'provider', 'model', 'charge_type')
      .count('* as n')
      .sum({ tokens: 'total_tokens' })
      .select(db.raw('coalesce(sum(total_cost), 0)::text as cost'))
      .groupBy('usage_date', 'user_id', 'provider', 'model', 'charge_type')
      .orderBy(['usage_date', 'user_id', 'provider', 'model', 'charge_type']);
    expect(rows.map((r) => [r.usageDate, r.userId, r.provider, r.model, r.chargeType, r.sums.messageCount.toString(), r.sums.totalTokens.toString(), r.sums.totalCost.toFixed()])).toEqual(
      expected.map((e: Record<string, string | number>) => [e.usage_date, e.user_id, e.provider, e.model, e.charge_type, String(e.n), String(e.tokens), formatDecimal(new Dec(e.cost))]),
    );
    const first = await usage.getDailyUsage({ ...base, userId: 'u2', model: 'gpt-4o', pageToken: '' });
    expect(first.rows.map((r) => r.usageDate)).toEqual(days);
    const all = await db('charges').where({ account_id: 'report', user_id: 'u2', model: 'gpt-4o' }).select(db.raw('sum(total_cost)::text as c, sum(total_tokens)::text as t')).first();
    expect(first.totals.totalCost.equals(new Dec(all.c))).toBe(true);
    expect(first.totals.totalTokens.toString()).toBe(all.t);
  });

  it('checks user and account limits against today\'s counters with the Django models\' rules', async () => {
    const acct = 'limited';
    const check = (userId: string, additionalTokens = '0') => limits.checkLimits({ accountId: acct, userId, additionalTokens, additionalCost: undefined });
    expect(await check('u1')).toMatchObject({ allowed: true, reason: 'no_limits_set' });
    await limits.setLimits({ accountId: acct, userId: 'u1', dailyMessageLimit: '3', dailyTokenLimit: '1000', dailyCostLimit: undefined });
    await limits.setLimits({ accountId: acct, userId: '', dailyMessageLimit: undefined, dailyTokenLimit: undefined, dailyCostLimit: { amount: '0.004', currencyCode: 'USD' } });
    expect(await check('u1', '1000')).toMatchObject({ allowed: true, reason: 'within_limits' });
    await charges.recordCharge(charge({ accountId: acct, userId: 'u1', idempotencyKey: key() }));
    expect(await check('u1', '701')).toMatchObject({ allowed: false, reason: 'token_limit_exceeded' });
    expect(await check('u1', '700')).toMatchObject({ allowed: true });
    await charges.recordCharge(charge({ accountId: acct, userId: 'u2', idempotencyKey: key() }));
    // the account has spent 0.0045 >= 0.004: every user of it is denied
    const denied = await check('u3');
    expect(denied).toMatchObject({ allowed: false, reason: 'cost_limit_exceeded' });
    expect(denied.accountUsage.totalCost.toFixed()).toBe('0.0045');
    expect(denied.limits).toEqual([
      { scope: 'account', measure: 'cost', period: 'day', enforcement: 'hard', periodStart: denied.date, limit: '0.004', used: '0.0045', reserved: '0', remaining: '0', exceeded: true },
    ]);
    expect((await limits.getLimits({ accountId: acct, userId: 'u1' })).messages).toBe(3n);
    const cleared = await limits.setLimits({ accountId: acct, userId: 'u1', dailyMessageLimit: undefined, dailyTokenLimit: undefined, dailyCostLimit: undefined });
    expect(cleared).toEqual({ accountId: acct, userId: 'u1' });
  });

  it('keeps every rollup and counter equal to the sum of its charges', async () => {
    const accounts = (await db('charges').distinct('account_id')).map((r: { account_id: string }) => r.account_id);
    expect(accounts.length).toBeGreaterThan(3);
    for (const account of accounts) await expectRollupsMatchCharges(db, account);
    expect(await count('daily_usage')).toBeGreaterThan(10);
  });

  it('prunes the outbox, never the charges, and a feed refuses (not skips) events pruned under it', async () => {
    const events = new EventsService(db, new EventNotifier(), 20);
    const watch = (afterSequence: string) => events.open({ accountId: 'pruned', afterSequence, userId: '', provider: '', model: '' });
    for (let n = 0; n < 3; n++) await charges.recordCharge(charge({ accountId: 'pruned', idempotencyKey: key() }));
    const feed = await watch('0');
    const chargesBefore = await count('charges');
    expect(await pruneEvents(db, 0)).toBeGreaterThanOrEqual(3); // every event is older than 0 s
    expect(await count('charge_events')).toBe(0);
    expect(await count('charges')).toBe(chargesBefore);
    await charges.recordCharge(charge({ accountId: 'pruned', idempotencyKey: key() }));
    // The open feed finds 4 after its cursor 0: 1-3 are gone.
    const abort = new AbortController();
    const next = feed.events(abort.signal)[Symbol.asyncIterator]().next();
    await expect(next).rejects.toBeInstanceOf(EventsPrunedError);
    await expect(next).rejects.toMatchObject({ code: 'OUT_OF_RANGE', reason: 'EVENTS_PRUNED', metadata: { oldest_sequence: '4', resume_after_sequence: '3' } });
    // A new stream from before the oldest kept event is refused at once; from 3 (accepting the gap), it goes on.
    await expect(watch('1')).rejects.toMatchObject({ reason: 'EVENTS_PRUNED', metadata: { oldest_sequence: '4', resume_after_sequence: '3' } });
    const resumed = (await watch('3')).events(abort.signal)[Symbol.asyncIterator]();
    expect((await resumed.next()).value).toMatchObject({ sequence: 4n, kind: 'charge_recorded' });
    abort.abort();
    // A cursor past the last event (4) would skip what comes next: refused too.
    await expect(watch('5')).rejects.toMatchObject({ code: 'OUT_OF_RANGE', reason: 'CURSOR_AHEAD', metadata: { field: 'after_sequence', last_sequence: '4' } });
    expect((await watch('4')).start).toBe(4n);
  });

  it('wakes a waiting subscriber by NOTIFY from the first subscribe to the last unsubscribe, with one LISTEN for all', async () => {
    const channel = 'metering_test_wakes';
    let started = 0;
    let stopped = 0;
    const notifier = new EventNotifier(async (wake) => {
      started++;
      const stop = await listen(db, channel, wake);
      return async () => {
        stopped++;
        await stop();
      };
    });
    const abort = new AbortController();
    /** How long a wait of at most 1.5 s lasts when the account is notified right after it starts. */
    const wokenAfter = async () => {
      const t = Date.now();
      const woke = notifier.wait('acme', 1500, abort.signal);
      await db.raw('SELECT pg_notify(?, ?)', [channel, 'acme']);
      await woke;
      return Date.now() - t;
    };
    try {
      expect(await wokenAfter()).toBeGreaterThanOrEqual(1400); // nobody subscribed: not listening, only the timeout ends it
      await Promise.all([notifier.subscribe(), notifier.subscribe()]);
      expect(await wokenAfter()).toBeLessThan(1000);
      await notifier.unsubscribe();
      expect(await wokenAfter()).toBeLessThan(1000); // one subscriber is left
      await notifier.unsubscribe();
      expect(await wokenAfter()).toBeGreaterThanOrEqual(1400);
      await notifier.subscribe(); // listens again
      expect(await wokenAfter()).toBeLessThan(1000);
    } finally {
      await notifier.close();
    }
    expect(await wokenAfter()).toBeGreaterThanOrEqual(1400);
    expect({ started, stopped }).toEqual({ started: 2, stopped: 2 });
  });

  // PGlite has one connection: two of its transactions cannot interleave, so created_at follows commit order there.
  (target.name === 'postgres' ? it : it.skip)('never prunes an event above a kept one when created_at runs against the sequence', async () => {
    const account = 'inverted';
    const sequences = async () => (await db('charge_events').where('account_id', account).orderBy('sequence').select(db.raw('sequence::text AS s'))).map((r: { s: string }) => Number(r.s));
    await charges.recordCharge(charge({ accountId: account, idempotencyKey: key() })); // sequence 1
    const [first] = await readEvents(db, account, 0n, 1);
    const rerated: NewEvent = { kind: 'charge_rerated', charge: first.charge as ChargeRecord };
    // A writer's event is stamped with its transaction's start (now()), and numbered when it commits:
    // tx1 starts first but commits after tx2, so sequence 3 is older than sequence 2.
    const tx1 = await db.transaction();
    const { rows } = await tx1.raw<{ rows: { t1: string }[] }>("SELECT to_char(now() AT TIME ZONE 'UTC', 'YYYY-MM-DD\"T\"HH24:MI:SS.US\"Z\"') AS t1");
    await new Promise((r) => setTimeout(r, 1000));
    await db.transaction((tx2) => appendEvents(tx2, [rerated])); // sequence 2, created 1 s after tx1 began
    await appendEvents(tx1, [rerated]); // sequence 3, created when tx1 began
    await tx1.commit();
    await charges.recordCharge(charge({ accountId: account, idempotencyKey: key() })); // sequence 4
    expect(await sequences()).toEqual([1, 2, 3, 4]);

    // Retention whose cutoff falls half a second after tx1 began: 1 and 3 are older, 2 and 4 newer.
    const [{ age }] = (await db.raw<{ rows: { age: number }[] }>('SELECT extract(epoch FROM now() - ?::timestamptz)::float8 AS age', [rows[0].t1])).rows;
    await pruneEvents(db, age - 0.5);
    // Only the prefix below the oldest kept event (2) goes; 3 waits for 2.
    expect(await sequences()).toEqual([2, 3, 4]);
    const abort = new AbortController();
    const feed = (await events(account, '1')).events(abort.signal)[Symbol.asyncIterator]();
    const got: bigint[] = [];
    for (let n = 0; n < 3; n++) got.push(((await feed.next()).value as ChargeEvent).sequence);
    abort.abort();
    expect(got).toEqual([2n, 3n, 4n]);
  });

  it('a feed refuses a gap in the middle of a batch (not only at its start)', async () => {
    const account = 'holed';
    for (let n = 0; n < 3; n++) await charges.recordCharge(charge({ accountId: account, idempotencyKey: key() }));
    // A hole below kept events, as an older server's sweep (by created_at alone) could leave.
    await db('charge_events').where({ account_id: account, sequence: 2 }).delete();
    const abort = new AbortController();
    const feed = (await events(account, '0')).events(abort.signal)[Symbol.asyncIterator]();
    expect(((await feed.next()).value as ChargeEvent).sequence).toBe(1n);
    await expect(feed.next()).rejects.toMatchObject({ code: 'OUT_OF_RANGE', reason: 'EVENTS_PRUNED', metadata: { oldest_sequence: '3', resume_after_sequence: '2' } });
    abort.abort();
  });
});

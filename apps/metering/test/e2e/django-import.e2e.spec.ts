import { ChargeType, EstimateCostRequest, GetDailyUsageRequest, ListChargesRequest, PriceOrigin, PricingStatus, RerateMode } from '@metering/contracts';
import Decimal from 'decimal.js';
import { execFile, execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { randomBytes } from 'node:crypto';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { Client } from 'pg';
import { describeEachOf, PG_URL_VAR, requirePostgresInCi, TestDatabase, embeddedTarget } from '../support/databases';
import { call } from '../support/grpc';
import { readmeBlock } from '../support/readme';
import { chargeRequest } from '../support/requests';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 18, the migration from the Django models this service replaces: `metering import django`
 * against a Postgres database whose tables Django's own migrations created (the test project in
 * test/fixtures/django-models, run with Debian's python3-django), filled with generated rows:
 * several accounts and users, days across America/New_York's midnight, reasoning tokens, cached
 * responses, errors, every charge type and request type, and rows that cannot be mapped. Each mode
 * (keeping TokenUsage's costs, pricing everything again) imports into its own server; what the
 * service holds is compared with sums computed in SQL from the source here, and costs with
 * EstimateCost; a second run imports nothing; the report names every row not imported.
 */
const CLI = join(ROOT, 'dist', 'tools', 'cli', 'metering.js');
const DJANGO = join(ROOT, 'apps', 'metering', 'test', 'fixtures', 'django-models');
const PYTHON = '/usr/bin/python3';
const run = promisify(execFile);

const djangoInstalled = (() => {
  try {
    execFileSync(PYTHON, ['-c', 'import django, psycopg2'], { stdio: 'ignore' });
    return true;
  } catch {
    return false;
  }
})();

requirePostgresInCi();
if (process.env.CI && !djangoInstalled) {
  it('has python3-django and python3-psycopg2 (Debian packages; .ci/run installs them)', () => {
    throw new Error('python3-django and python3-psycopg2 are needed to build the Django tables: apt-get install python3-django python3-psycopg2');
  });
}

const pgUrl = process.env[PG_URL_VAR];
const targets = pgUrl && djangoInstalled ? embeddedTarget() : [];

const ZONE = 'America/New_York';
const DAY = 86_400_000;

describeEachOf(targets, 'metering import django (needs Postgres and python3-django)')('metering import django into $name', (target) => {
  const sourceName = `django_import_${process.pid}_${randomBytes(4).toString('hex')}`;
  const sourceUrl = (() => {
    const u = new URL(pgUrl as string);
    u.pathname = `/${sourceName}`;
    return u.toString();
  })();
  let admin: Client;
  let src: Client;
  let tdb: TestDatabase;
  let other: TestDatabase;
  let keep: ServerProcess;
  let reprice: ServerProcess;
  /** Ids of rows that cannot be mapped, by table, with a word of the reason the report must give. */
  const unmappable: Record<string, Array<[number, string]>> = { account_charge: [], chatbot_tokenusage: [], account_llmprices: [] };
  /** Rows only the keep-costs mode cannot map (their stored costs do not add up). */
  const unmappableKept: Array<[number, string]> = [];
  let firstDay = '';
  let lastDay = '';

  const cli = async (server: ServerProcess, ...args: string[]) => {
    try {
      const { stdout, stderr } = await run(process.execPath, [CLI, 'import', 'django', '--database-url', sourceUrl, ...args], { env: { PATH: process.env.PATH, METERING_ADDRESS: server.address }, maxBuffer: 64 << 20 });
      return { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      return { code: err.code, stdout: err.stdout, stderr: err.stderr };
    }
  };

  beforeAll(async () => {
    buildServer();
    execFileSync(process.execPath, [join(ROOT, 'tools', 'cli', 'run.mjs'), 'help'], { stdio: 'ignore' });
    admin = new Client({ connectionString: pgUrl });
    await admin.connect();
    await admin.query(`CREATE DATABASE ${sourceName}`);
    // The tables exactly as Django creates them: its own migrations.
    execFileSync(PYTHON, ['manage.py', 'migrate', '--noinput'], { cwd: DJANGO, env: { PATH: process.env.PATH, DJANGO_DATABASE_URL: sourceUrl, PYTHONDONTWRITEBYTECODE: '1' }, stdio: 'pipe' });
    src = new Client({ connectionString: sourceUrl });
    await src.connect();
    await fill();
    // One server per mode, started one after the other (each migrates its new embedded database).
    tdb = await target.create();
    other = await target.create();
    // A new embedded database migrates slowly on a loaded machine: a generous start deadline.
    keep = await startServer(tdb.config, {}, 180_000);
    reprice = await startServer(other.config, {}, 180_000);
    // ACME bills in New York's days: its charges near UTC midnight count on the day before.
    for (const s of [keep, reprice]) await call(s.client.setAccount, s.client, { accountId: 'ACME-1001', timeZone: ZONE });
  }, 600_000);

  afterAll(async () => {
    await keep?.stop();
    await reprice?.stop();
    await tdb?.drop();
    await other?.drop();
    await src?.end();
    await admin?.query(`DROP DATABASE IF EXISTS ${sourceName} WITH (FORCE)`);
    await admin?.end();
  });

  /** Generated rows: deterministic, relative to today (the service takes no usage more than an hour ahead). */
  async function fill() {
    const q = (text: string, values: unknown[] = []) => src.query(text, values);
    const now = "now() - interval '1 minute'";
    const users: Record<string, number> = {};
    for (const name of ['alice', 'bob', 'carol', 'dave', 'erin', 'frank', 'grace']) {
      const { rows } = await q(
        `INSERT INTO auth_user (password, is_superuser, username, first_name, last_name, email, is_staff, is_active, date_joined) VALUES ('!', false, $1, '', '', $2, false, true, now()) RETURNING id`,
        [name, name === 'carol' ? 'carol+work@example.com' : `${name}@example.com`],
      );
      users[name] = rows[0].id;
    }
    const accounts: Record<string, number> = {};
    for (const number of ['ACME-1001', 'GLOBEX-2002', 'INITECH-3003']) {
      accounts[number] = (await q(`INSERT INTO account_account (created_at, updated_at, account_number) VALUES (${now}, ${now}, $1) RETURNING id`, [number])).rows[0].id;
    }
    const profiles: Record<string, number> = {};
    for (const [user, account] of [['alice', 'ACME-1001'], ['bob', 'ACME-1001'], ['carol', 'GLOBEX-2002'], ['erin', 'ACME-1001'], ['erin', 'GLOBEX-2002'], ['frank', 'INITECH-3003'], ['grace', 'INITECH-3003']]) {
      profiles[`${user}@${account}`] = (await q(`INSERT INTO account_userprofile (created_at, updated_at, user_id, account_id) VALUES (${now}, ${now}, $1, $2) RETURNING id`, [users[user], accounts[account]])).rows[0].id;
    }
    // LLMPrices: two markups, and two rows that are no markup (a charge type the service lacks, a zero factor).
    for (const [type, provider, model, price, bad] of [
      ['completion', 'openai', 'gpt-4o', '1.500000', ''], ['tool', 'openai', 'gpt-4o-mini', '2.250000', ''],
      ['embedding', 'openai', 'text-embedding-3-small', '1.100000', 'charge_type'], ['completion', 'metaai', 'llama-3', '0.000000', 'price'],
    ]) {
      const { rows } = await q(`INSERT INTO account_llmprices (created_at, updated_at, charge_type, provider, model, price) VALUES (${now}, ${now}, $1, $2, $3, $4) RETURNING id`, [type, provider, model, price]);
      if (bad) unmappable.account_llmprices.push([Number(rows[0].id), bad]);
    }
    // Charge: 9 days x 3 profiles x a few calls, at times that straddle New York's midnight (04:00-06:00 UTC).
    const base = new Date(Math.floor(Date.now() / DAY) * DAY - 10 * DAY);
    firstDay = new Date(base.getTime() - DAY).toISOString().slice(0, 10);
    lastDay = new Date(Date.now() + DAY).toISOString().slice(0, 10);
    const kinds: Array<[string, string, string]> = [['openai', 'gpt-4o', 'completion'], ['openai', 'gpt-4o-mini', 'tool'], ['googleai', 'gemini-1.5-pro', 'plugin'], ['openai', 'gpt-4o', 'completion']];
    let n = 0;
    for (let d = 0; d < 9; d++) {
      for (const profile of ['alice@ACME-1001', 'bob@ACME-1001', 'carol@GLOBEX-2002']) {
        for (let k = 0; k < 3; k++, n++) {
          const at = new Date(base.getTime() + d * DAY + (4 * 60 + 7 * n + 23 * k) * 60_000 + (n % 1000) * 1000 + 0.123456);
          const [provider, model, type] = kinds[n % kinds.length];
          const prompt = 100 + ((n * 37) % 900);
          const completion = 50 + ((n * 53) % 400);
          await q(
            `INSERT INTO account_charge (created_at, updated_at, user_profile_id, session_key, provider, charge_type, prompt_tokens, completion_tokens, total_tokens, model, reference)
             VALUES ($1::timestamptz + interval '123 microseconds', now(), $2, $3, $4, $5, $6, $7, $8, $9, $10)`,
            [at.toISOString(), profiles[profile], n % 2 ? `session-${n % 5}` : null, provider, type, prompt, completion, prompt + completion, model, `invoice-${n}`],
          );
        }
      }
    }
    const day = (offset: number, hour: number) => new Date(base.getTime() + offset * DAY + hour * 3_600_000).toISOString();
    const badCharge = async (why: string, over: { profile?: number | null; type?: string; prompt?: number; total?: number; provider?: string }) => {
      const prompt = over.prompt ?? 10;
      const { rows } = await q(
        `INSERT INTO account_charge (created_at, updated_at, user_profile_id, session_key, provider, charge_type, prompt_tokens, completion_tokens, total_tokens, model, reference)
         VALUES ($1, now(), $2, NULL, $3, $4, $5, 5, $6, 'gpt-4o', 'bad') RETURNING id`,
        [day(3, 12), over.profile === undefined ? profiles['alice@ACME-1001'] : over.profile, over.provider ?? 'openai', over.type ?? 'completion', prompt, over.total ?? prompt + 5],
      );
      unmappable.account_charge.push([Number(rows[0].id), why]);
    };
    await badCharge('user_profile_id is null', { profile: null });
    await badCharge('charge_type "bogus"', { type: 'bogus' });
    await badCharge('prompt_tokens is negative', { prompt: -3, total: 2 });
    await badCharge('total_tokens 999', { total: 999 });
    await badCharge('refused by the service', { provider: 'Open AI' });
    // TokenUsage: INITECH's users (frank, grace) with stored costs, reasoning tokens, cached answers, errors.
    const types = ['chat', 'summarization', 'embedding', 'tool_call', 'vision'];
    for (let i = 0; i < 40; i++) {
      const user = i % 3 ? 'frank' : 'grace';
      const prompt = 200 + ((i * 71) % 3000);
      const completion = (i * 29) % 700;
      // Some rows store no reasoning count at all (NULL), as rows written before the field did.
      const reasoning = i % 4 === 0 && i % 5 !== 0 ? 64 + i : 0;
      const promptCost = new Decimal(prompt).mul('2.5').div(1_000_000).toDecimalPlaces(6);
      const completionCost = new Decimal(completion + reasoning).mul(10).div(1_000_000).toDecimalPlaces(6);
      await q(
        `INSERT INTO chatbot_tokenusage (created_at, updated_at, user_id, chat_session_id, model_name, prompt_tokens, completion_tokens, total_tokens, reasoning_tokens,
           prompt_cost, completion_cost, total_cost, request_type, endpoint, response_time_ms, was_cached, had_error, error_message, metadata)
         VALUES ($1, now(), $2, NULL, $3, $4, $5, $6, $7, $8, $9, $10, $11, $12, $13, $14, $15, $16, $17)`,
        [
          day(i % 9, 2 + (i % 5)), users[user], i % 2 ? 'gpt-4o' : 'gpt-4o-mini', prompt, completion, prompt + completion + reasoning, i % 5 === 0 ? null : reasoning,
          promptCost.toFixed(6), completionCost.toFixed(6), promptCost.plus(completionCost).toFixed(6), types[i % types.length], '/v1/chat/completions',
          i % 6 ? 300 + i : null, i % 7 === 0, i % 11 === 0, i % 11 === 0 ? 'upstream timeout' : null, JSON.stringify({ turn: i, tags: ['django'] }),
        ],
      );
    }
    const badUsage = async (why: string, over: { user?: string; total?: number; totalCost?: string; metadata?: string; requestType?: string }, keptOnly = false) => {
      const { rows } = await q(
        `INSERT INTO chatbot_tokenusage (created_at, updated_at, user_id, model_name, prompt_tokens, completion_tokens, total_tokens, reasoning_tokens,
           prompt_cost, completion_cost, total_cost, request_type, was_cached, had_error, metadata)
         VALUES ($1, now(), $2, 'gpt-4o', 10, 5, $3, 0, 0.000025, 0.000050, $4, $5, false, false, $6) RETURNING id`,
        [day(2, 15), users[over.user ?? 'frank'], over.total ?? 15, over.totalCost ?? '0.000075', over.requestType ?? 'chat', over.metadata ?? '{}'],
      );
      (keptOnly ? unmappableKept : unmappable.chatbot_tokenusage).push([Number(rows[0].id), why]);
    };
    await badUsage('has no account', { user: 'dave' });
    await badUsage('profiles in 2 accounts', { user: 'erin' });
    await badUsage('total_tokens 16', { total: 16 });
    await badUsage('request_type "audio"', { requestType: 'audio' });
    await badUsage('metadata is not a JSON object', { metadata: '[1, 2]' });
    await badUsage('total_cost 0.000080', { totalCost: '0.000080' }, true);
    // DailyBillingRecord as Django keeps it: per account, user, provider and UTC day, from the charges it could bill.
    await q(
      `INSERT INTO account_dailybillingrecord (created_at, updated_at, account_id, user_id, provider, date, charge_type, prompt_tokens, completion_tokens, total_tokens)
       SELECT now(), now(), p.account_id, p.user_id, c.provider, (c.created_at AT TIME ZONE 'UTC')::date, min(c.charge_type), sum(c.prompt_tokens), sum(c.completion_tokens), sum(c.total_tokens)
         FROM account_charge c JOIN account_userprofile p ON p.id = c.user_profile_id
        WHERE c.id <> ALL($1::bigint[])
        GROUP BY p.account_id, p.user_id, c.provider, (c.created_at AT TIME ZONE 'UTC')::date`,
      [unmappable.account_charge.map(([id]) => id)],
    );
  }

  /** The source's sums per account, user and the account's local day, computed in SQL from the rows the import can map. */
  async function sourceSums(keptCosts: boolean) {
    const skipCharges = unmappable.account_charge.map(([id]) => id);
    const skipUsage = [...unmappable.chatbot_tokenusage, ...(keptCosts ? unmappableKept : [])].map(([id]) => id);
    const { rows } = await src.query(
      `WITH rows AS (
         SELECT a.account_number AS account, p.user_id::text AS user_id, c.created_at, 1 AS messages, c.prompt_tokens AS prompt, c.completion_tokens AS completion, c.total_tokens AS total, NULL::numeric AS cost
           FROM account_charge c JOIN account_userprofile p ON p.id = c.user_profile_id JOIN account_account a ON a.id = p.account_id
          WHERE c.id <> ALL($1::bigint[])
         UNION ALL
         SELECT a.account_number, t.user_id::text, t.created_at, 1, t.prompt_tokens, t.completion_tokens + coalesce(t.reasoning_tokens, 0), t.total_tokens, t.total_cost
           FROM chatbot_tokenusage t JOIN account_userprofile p ON p.user_id = t.user_id JOIN account_account a ON a.id = p.account_id
          WHERE t.id <> ALL($2::bigint[])
       )
       SELECT account, user_id, (created_at AT TIME ZONE CASE account WHEN 'ACME-1001' THEN $3 ELSE 'UTC' END)::date::text AS date,
              count(*)::int AS messages, sum(prompt)::text AS prompt, sum(completion)::text AS completion, sum(total)::text AS total, sum(cost)::text AS cost
         FROM rows GROUP BY 1, 2, 3 ORDER BY 1, 2, 3`,
      [skipCharges, skipUsage, ZONE],
    );
    return rows as Array<{ account: string; user_id: string; date: string; messages: number; prompt: string; completion: string; total: string; cost: string | null }>;
  }

  /** The service's rollups per account, user and day, read through GetDailyUsage. */
  async function serviceSums(server: ServerProcess, accounts: string[]) {
    const sums = new Map<string, { messages: number; prompt: string; completion: string; total: string; cost: Decimal; unpriced: number }>();
    for (const accountId of accounts) {
      let pageToken = '';
      do {
        const page = await call(server.client.getDailyUsage, server.client, GetDailyUsageRequest.fromPartial({ accountId, startDate: firstDay, endDate: lastDay, pageSize: 1000, pageToken }), undefined, 60_000);
        for (const u of page.usage) {
          const key = `${accountId} ${u.userId} ${u.date}`;
          const s = sums.get(key) ?? { messages: 0, prompt: '0', completion: '0', total: '0', cost: new Decimal(0), unpriced: 0 };
          s.messages += Number(u.sums?.messageCount);
          s.unpriced += Number(u.sums?.unpricedMessageCount);
          s.prompt = String(Number(s.prompt) + Number(u.sums?.tokens?.promptTokens));
          s.completion = String(Number(s.completion) + Number(u.sums?.tokens?.completionTokens));
          s.total = String(Number(s.total) + Number(u.sums?.tokens?.totalTokens));
          s.cost = s.cost.plus(u.sums?.totalCost?.amount || 0);
          sums.set(key, s);
        }
        pageToken = page.nextPageToken;
      } while (pageToken);
    }
    return sums;
  }

  const ACCOUNTS = ['ACME-1001', 'GLOBEX-2002', 'INITECH-3003'];

  it('keeps the stored costs: every mappable row imported once, the rollups equal the source per day, the rest reported by id', async () => {
    const first = await cli(keep, '--keep-costs', '--json');
    expect(first.stderr).toBe('');
    expect(first.code).toBe(0);
    const report = JSON.parse(first.stdout);
    const notImported = (table: string) => report.notImported.filter((r: { table: string }) => r.table === table).map((r: { id: string; reason: string }) => [Number(r.id), r.reason]);
    // Every row that cannot be mapped is named with its reason; none other.
    for (const [table, rows] of Object.entries({ ...unmappable, chatbot_tokenusage: [...unmappable.chatbot_tokenusage, ...unmappableKept] })) {
      const got = notImported(table);
      expect(got.map(([id]: [number]) => id).sort()).toEqual(rows.map(([id]) => id).sort());
      for (const [id, why] of rows) expect(got.find(([g]: [number]) => g === id)[1]).toContain(why);
    }
    const sums = await sourceSums(true);
    const charges = report.tables.find((t: { table: string }) => t.table === 'account_charge');
    const usage = report.tables.find((t: { table: string }) => t.table === 'chatbot_tokenusage');
    expect(charges).toMatchObject({ read: 9 * 3 * 3 + 5, imported: 9 * 3 * 3, alreadyImported: 0, notImported: 5 });
    expect(usage).toMatchObject({ read: 46, imported: 40, alreadyImported: 0, notImported: 6 });
    expect(report.markups).toEqual({ read: 4, set: 2, unchanged: 0, notImported: 2 });
    expect(report.differences).toEqual([]);
    expect(report.checked.dailyBillingRecords).toBeGreaterThan(20);

    // The rollups, read through the API, equal the source's sums computed in SQL, day by day (ACME's days in New York).
    const service = await serviceSums(keep, ACCOUNTS);
    expect([...service.keys()].sort()).toEqual(sums.map((s) => `${s.account} ${s.user_id} ${s.date}`).sort());
    for (const s of sums) {
      const got = service.get(`${s.account} ${s.user_id} ${s.date}`);
      expect({ key: `${s.account} ${s.user_id} ${s.date}`, messages: got?.messages, prompt: got?.prompt, completion: got?.completion, total: got?.total })
        .toEqual({ key: `${s.account} ${s.user_id} ${s.date}`, messages: s.messages, prompt: s.prompt, completion: s.completion, total: s.total });
      // INITECH has only TokenUsage rows: its billed cost is exactly the stored one.
      if (s.account === 'INITECH-3003') expect(got?.cost.toFixed()).toBe(new Decimal(s.cost as string).toFixed());
    }
    // A New York day differs from the UTC day for charges between 04:00 and 05:00 UTC: some do.
    const { rows: straddling } = await src.query(`SELECT count(*)::int AS n FROM account_charge WHERE (created_at AT TIME ZONE $1)::date <> (created_at AT TIME ZONE 'UTC')::date`, [ZONE]);
    expect(straddling[0].n).toBeGreaterThan(0);

    // The kept charges are priced with origin IMPORTED and their stored cost; re-rating everything leaves them.
    const listed = await call(keep.client.listCharges, keep.client, ListChargesRequest.fromPartial({ accountId: 'INITECH-3003', startDate: firstDay, endDate: lastDay, pageSize: 1000 }), undefined, 60_000);
    expect(listed.charges).toHaveLength(40);
    const { rows: stored } = await src.query(`SELECT id::text, total_cost::text, reasoning_tokens FROM chatbot_tokenusage`);
    for (const c of listed.charges) {
      expect(c.priceOrigin).toBe(PriceOrigin.PRICE_ORIGIN_IMPORTED);
      expect(c.pricingStatus).toBe(PricingStatus.PRICING_STATUS_PRICED);
      const row = stored.find((r) => `django:tokenusage:${r.id}` === c.idempotencyKey);
      expect(new Decimal(c.totalCost?.amount as string).equals(row.total_cost)).toBe(true);
      expect(c.tokens?.reasoningTokens).toBe(String(row.reasoning_tokens ?? 0));
    }
    const rerated = await call(keep.client.rerateCharges, keep.client, { accountId: 'INITECH-3003', startDate: firstDay, endDate: lastDay, mode: RerateMode.RERATE_MODE_ALL, provider: '', model: '', dryRun: false }, undefined, 60_000);
    expect(rerated.chargesChanged).toBe('0');
    expect((await serviceSums(keep, ['INITECH-3003'])).size).toBe(sums.filter((s) => s.account === 'INITECH-3003').length);

    // A second run imports nothing: every row is already imported, the rollups are unchanged.
    const again = await cli(keep, '--keep-costs', '--json');
    expect(again.code).toBe(0);
    const second = JSON.parse(again.stdout);
    expect(second.tables.find((t: { table: string }) => t.table === 'account_charge')).toMatchObject({ imported: 0, alreadyImported: 9 * 3 * 3, notImported: 5, pricedOtherwise: 0 });
    expect(second.tables.find((t: { table: string }) => t.table === 'chatbot_tokenusage')).toMatchObject({ imported: 0, alreadyImported: 40, notImported: 6, pricedOtherwise: 0 });
    expect(second.markups).toEqual({ read: 4, set: 0, unchanged: 2, notImported: 2 });
    expect(await serviceSums(keep, ACCOUNTS)).toEqual(service);

    // The README's example, as written (its database from DJANGO_DATABASE_URL, the server from METERING_ADDRESS): a dry run, then twice nothing new.
    const script = readmeBlock('## Migrating from the Django models', 'sh');
    const readme = await run('bash', ['-euo', 'pipefail', '-c', script], { cwd: ROOT, env: { ...process.env, DJANGO_DATABASE_URL: sourceUrl, METERING_ADDRESS: keep.address }, maxBuffer: 64 << 20 });
    expect(readme.stdout.match(/^chatbot_tokenusage: 46 read, 0 imported, 40 already imported, 6 not imported$/gm)).toHaveLength(2);
    expect(readme.stdout.match(/^every day is equal$/gm)).toHaveLength(2);
    expect(readme.stdout).toMatch(/^chatbot_tokenusage: 46 read, 41 would import, 0 already imported, 5 not imported$/m);
    expect(await serviceSums(keep, ACCOUNTS)).toEqual(service);
  }, 300_000);

  it('prices every row again with the imported markups, and says which days differ when the source or the service does', async () => {
    const first = await cli(reprice);
    expect(first.code).toBe(0);
    expect(first.stdout).toMatch(/^account_charge: 86 read, 81 imported, 0 already imported, 5 not imported$/m);
    expect(first.stdout).toMatch(/^chatbot_tokenusage: 46 read, 41 imported, 0 already imported, 5 not imported$/m);
    expect(first.stdout).toContain('every day is equal');
    for (const [id, why] of [...unmappable.account_charge, ...unmappable.chatbot_tokenusage]) expect(first.stdout).toMatch(new RegExp(`\\s${id}\\s+.*${why.replace(/[.*+?^${}()|[\]\\]/g, '\\$&')}`));

    // Counts and tokens equal the source's; every cost is what EstimateCost prices the same usage at (markups included).
    const sums = await sourceSums(false);
    const service = await serviceSums(reprice, ACCOUNTS);
    for (const s of sums) expect(service.get(`${s.account} ${s.user_id} ${s.date}`)).toMatchObject({ messages: s.messages, prompt: s.prompt, completion: s.completion, total: s.total });
    const listed = await call(reprice.client.listCharges, reprice.client, ListChargesRequest.fromPartial({ accountId: 'ACME-1001', startDate: firstDay, endDate: lastDay, pageSize: 1000 }), undefined, 60_000);
    let markedUp = 0;
    for (const c of listed.charges) {
      const estimate = await call(reprice.client.estimateCost, reprice.client, EstimateCostRequest.fromPartial({
        accountId: c.accountId, provider: c.provider, model: c.model, chargeType: c.chargeType, promptTokens: c.tokens?.promptTokens, completionTokens: c.tokens?.completionTokens, at: c.usageTime,
      }));
      expect([c.idempotencyKey, c.pricingStatus, c.totalCost?.amount, c.markup]).toEqual([c.idempotencyKey, estimate.pricingStatus, estimate.totalCost?.amount, estimate.markup]);
      if (c.chargeType === ChargeType.CHARGE_TYPE_COMPLETION && c.model === 'gpt-4o') {
        expect(c.markup).toBe('1.5');
        markedUp++;
      }
    }
    expect(markedUp).toBeGreaterThan(0);

    // The source changes behind the import: a DailyBillingRecord no longer agrees, and the service got a charge the source lacks.
    const { rows: [record] } = await src.query(
      `UPDATE account_dailybillingrecord SET prompt_tokens = prompt_tokens + 7, total_tokens = total_tokens + 7
        WHERE id = (SELECT min(id) FROM account_dailybillingrecord) RETURNING user_id::text, date::text, total_tokens`,
    );
    const extraDay = new Date(Date.parse(`${firstDay}T12:00:00Z`) + 5 * DAY);
    await call(reprice.client.recordCharge, reprice.client, chargeRequest({ accountId: 'GLOBEX-2002', userId: 'stranger', idempotencyKey: 'not-from-django', usageTime: { seconds: String(extraDay.getTime() / 1000), nanos: 0 } }));
    const again = await cli(reprice);
    expect(again.code).toBe(1);
    expect(again.stdout).toMatch(/^account_charge: 86 read, 0 imported, 81 already imported, 5 not imported$/m);
    expect(again.stdout).toMatch(/^chatbot_tokenusage: 46 read, 0 imported, 41 already imported, 5 not imported$/m);
    const rows = again.stdout.split('\n');
    expect(rows.filter((l) => /^daily_billing_records\s/.test(l)).map((l) => l.split(/\s+/).slice(2, 5))).toEqual([
      [record.user_id, record.date, 'prompt'], [record.user_id, record.date, 'total'],
    ]);
    const extra = extraDay.toISOString().slice(0, 10);
    expect(rows.filter((l) => /^charges\s/.test(l)).map((l) => l.split(/\s+/).slice(1, 7))).toEqual([
      ['GLOBEX-2002', 'stranger', extra, 'messages', '0', '1'], ['GLOBEX-2002', 'stranger', extra, 'prompt', '0', '100'],
      ['GLOBEX-2002', 'stranger', extra, 'completion', '0', '200'], ['GLOBEX-2002', 'stranger', extra, 'total', '0', '300'],
    ]);
    expect(again.stderr).toContain('totals differ on 2 days');

    // Keeping costs after re-pricing keeps what is stored (the keys were used) and says so.
    const kept = JSON.parse((await cli(reprice, '--keep-costs', '--json', '--no-check')).stdout);
    expect(kept.tables.find((t: { table: string }) => t.table === 'chatbot_tokenusage')).toMatchObject({ imported: 0, alreadyImported: 40, pricedOtherwise: 40 });
  }, 300_000);

  it('maps and reports without writing anything in a dry run, maps the tables exported as CSV the same, and refuses a database without the tables', async () => {
    const dry = await cli(reprice, '--dry-run', '--json', '--account', 'SANDBOX');
    expect(dry.code).toBe(0);
    const report = JSON.parse(dry.stdout);
    expect(report.dryRun).toBe(true);
    // One account for every row: TokenUsage of users in no account or in two is now mappable.
    expect(report.tables.find((t: { table: string }) => t.table === 'chatbot_tokenusage')).toMatchObject({ read: 46, imported: 43, notImported: 3 });
    expect((await call(reprice.client.getDailyUsage, reprice.client, GetDailyUsageRequest.fromPartial({ accountId: 'SANDBOX', startDate: firstDay, endDate: lastDay }))).usage).toEqual([]);
    // The same tables exported as CSV (psql's \\copy ... CSV HEADER) map to the same charges: every one is a replay
    // (same key, same content), none a conflict, and the same rows are reported.
    const dir = mkdtempSync(join(tmpdir(), 'django-csv-'));
    try {
      for (const table of ['account_charge', 'chatbot_tokenusage', 'account_llmprices', 'account_dailybillingrecord', 'account_userprofile', 'account_account', 'auth_user']) {
        execFileSync('psql', [sourceUrl, '-qc', `\\copy ${table} TO '${join(dir, `${table}.csv`)}' WITH (FORMAT csv, HEADER true)`], { stdio: 'pipe' });
      }
      const fromCsv = await run(process.execPath, [CLI, 'import', 'django', '--csv-dir', dir, '--json', '--no-check'], { env: { PATH: process.env.PATH, METERING_ADDRESS: reprice.address }, maxBuffer: 64 << 20 });
      const csvReport = JSON.parse(fromCsv.stdout);
      expect(csvReport.tables).toEqual([
        { table: 'account_charge', read: 86, imported: 0, alreadyImported: 81, pricedOtherwise: 0, notImported: 5 },
        { table: 'chatbot_tokenusage', read: 46, imported: 0, alreadyImported: 41, pricedOtherwise: 0, notImported: 5 },
      ]);
      expect(csvReport.markups).toEqual({ read: 4, set: 0, unchanged: 2, notImported: 2 });
      expect(csvReport.notImported.map((n: { table: string; id: string }) => `${n.table} ${n.id}`).sort())
        .toEqual([...unmappable.account_llmprices.map(([id]) => `account_llmprices ${id}`), ...unmappable.account_charge.map(([id]) => `account_charge ${id}`), ...unmappable.chatbot_tokenusage.map(([id]) => `chatbot_tokenusage ${id}`)].sort());
      const both = await cli(reprice, '--csv-dir', dir);
      expect([both.code, both.stderr]).toEqual([2, expect.stringContaining('one of them')]);
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
    const missing = await cli(reprice, '--charge-table', 'nope', '--token-usage-table', 'nope2', '--llm-prices-table', 'nope3');
    expect(missing.code).toBe(1);
    expect(missing.stderr).toContain('none of nope, nope2, nope3 exists');
  }, 120_000);
});

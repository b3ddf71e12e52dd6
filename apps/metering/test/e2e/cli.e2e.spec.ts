import { execFile, execFileSync, spawn } from 'node:child_process';
import { createServer } from 'node:http';
import { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { TestDatabase, embeddedTarget } from '../support/databases';
import { LimitEnforcement, LimitMeasure, LimitPeriod } from '@metering/contracts';
import { chargeRequest, checkRequest } from '../support/requests';
import { Dec } from '@metering/pricing';
import { call } from '../support/grpc';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * Issues 5 and 19: the admin CLI (`npm run metering`, `npx metering`), run as a process against
 * the real server: help on every command, exit codes, JSON in the protobuf mapping, CSV, unpriced
 * costs shown as such, spend per day, paged prices, and every kind of event in `tail`.
 */
const CLI = join(ROOT, 'dist', 'tools', 'cli', 'metering.js');
const run = promisify(execFile);

beforeAll(() => {
  buildServer();
  execFileSync(process.execPath, [join(ROOT, 'tools', 'cli', 'run.mjs'), 'help'], { stdio: 'ignore' });
});

describe.each(embeddedTarget())('metering CLI on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let env: NodeJS.ProcessEnv;
  const today = new Date().toISOString().slice(0, 10);
  const cli = async (...args: string[]) => {
    try {
      const { stdout, stderr } = await run(process.execPath, [CLI, ...args], { env });
      return { code: 0, stdout, stderr };
    } catch (e) {
      const err = e as { code: number; stdout: string; stderr: string };
      return { code: err.code, stdout: err.stdout, stderr: err.stderr };
    }
  };

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config, { METERING_WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', METERING_WEBHOOK_POLL_MS: '50' });
    env = { PATH: process.env.PATH, METERING_ADDRESS: server.address };
    for (const [n, user] of ['u1', 'u1', 'u2'].entries()) await call(server.client.recordCharge, server.client, chargeRequest({ idempotencyKey: `c${n}`, userId: user }));
    await call(server.client.recordCharge, server.client, chargeRequest({ idempotencyKey: 'custom', provider: 'selfhosted', model: 'llama-local' }));
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it('reports usage as a table and as JSON', async () => {
    const table = await cli('usage', '--account', 'acme', '--from', today, '--to', today);
    expect(table.code).toBe(0);
    const lines = table.stdout.trim().split('\n');
    expect(lines[0]).toMatch(/^date\s+user\s+provider\s+model\s+type\s+messages\s+tokens\s+cost USD$/);
    expect(lines.find((l) => l.includes('u1') && l.includes('gpt-4o'))).toMatch(/\s2\s+600\s+0\.0045$/);
    expect(lines.find((l) => l.includes('llama-local'))).toMatch(/\s1\s+300\s+unpriced$/);
    expect(lines.at(-1)).toBe('total: 4 messages, 1200 tokens, 0.00675 USD (1 unpriced)');
    // The protobuf JSON mapping: enum names, int64 as strings, and zeros kept.
    const json = JSON.parse((await cli('usage', '--account', 'acme', '--from', today, '--to', today, '--json')).stdout);
    expect(json.totals.messageCount).toBe('4');
    expect(json.usage[0]).toMatchObject({ date: today, chargeType: 'CHARGE_TYPE_COMPLETION' });
    expect(json.usage.find((r: { model: string }) => r.model === 'gpt-4o').sums).toMatchObject({ unpricedMessageCount: '0', callCount: '0', tokens: { reasoningTokens: '0' } });
    expect(json.nextPageToken).toBe('');
    const csv = (await cli('usage', '--account', 'acme', '--from', today, '--to', today, '--csv')).stdout.trim().split('\n');
    expect(csv[0]).toBe('date,user_id,provider,model,charge_type,messages,unpriced_messages,prompt_tokens,completion_tokens,total_tokens,total_cost_usd');
    expect(csv).toContain(`${today},u1,openai,gpt-4o,completion,2,0,200,400,600,0.0045`);
    expect(csv).toContain(`${today},u1,selfhosted,llama-local,completion,1,1,100,200,300,`);
  });

  it('draws spend per day when the terminal is wide, and not when it is narrow', async () => {
    const wide = await run(process.execPath, [CLI, 'usage', '--account', 'acme', '--from', today, '--to', today], { env: { ...env, COLUMNS: '120' } });
    expect(wide.stdout).toContain('spend per day (USD)');
    expect(wide.stdout).toMatch(new RegExp(`${today}  █{50}  0\\.00675 USD \\(\\+1 unpriced\\)`));
    const narrow = await run(process.execPath, [CLI, 'usage', '--account', 'acme', '--from', today, '--to', today], { env: { ...env, COLUMNS: '40' } });
    expect(narrow.stdout).not.toContain('spend per day');
  });

  it('shows the credit balance and its grants, and the balance history (issue 16)', async () => {
    expect((await cli('balance', '--account', 'wallet')).stdout).toContain('wallet has no credits');
    const granted = await call(server.client.createGrant, server.client, { accountId: 'wallet', idempotencyKey: 'g1', userId: '', kind: 0, amount: { amount: '2.50', currencyCode: 'USD' }, priority: 0, effectiveTime: undefined, expireTime: undefined, reason: 'trial', actor: 'cli test' });
    const { charge } = await call(server.client.recordCharge, server.client, chargeRequest({ accountId: 'wallet', idempotencyKey: 'w1' }));
    const left = new Dec(granted.grant!.amount!.amount).minus(charge!.totalCost!.amount).toFixed();
    const shown = await cli('balance', '--account', 'wallet');
    expect(shown.code).toBe(0);
    expect(shown.stdout).toContain(`available ${left} USD`);
    expect(shown.stdout).toMatch(new RegExp(`${granted.grant!.grantId}\\s+paid\\s+active\\s+0\\s+2\\.5\\s+${left}`));
    const history = (await cli('balance', '--account', 'wallet', '--history', '--csv')).stdout.trim().split('\n');
    expect(history[0]).toBe('sequence,entry_time,kind,amount_usd,balance_after_usd,grant_id,charge_id,reservation_id');
    expect(history.slice(1).map((l) => l.split(',')[2])).toEqual(['grant', 'burn']);
    expect(history[2].split(',')[6]).toBe(charge!.chargeId);
    const json = JSON.parse((await cli('balance', '--account', 'wallet', '--json')).stdout);
    expect(json.balance.balance).toMatchObject({ hasCredits: true, policy: 'CREDIT_POLICY_DENY', available: { amount: left } });
  });

  it('sets and shows limits, markups and prices', async () => {
    expect((await cli('limits', 'set', '--account', 'acme', '--period', 'month', '--measure', 'cost', '--amount', '10')).stdout).toContain('set: (account) month cost hard limit 10');
    const shown = await cli('limits', 'show', '--account', 'acme');
    expect(shown.stdout).toMatch(/\(account\)\s+month\s+cost\s+hard\s+10\s+0\.00675\s+0\s+9\.99325/);
    expect((await cli('markups', 'set', '--provider', 'openai', '--model', 'gpt-4o', '--factor', '1.5', '--account', 'acme')).stdout).toContain('x1.5 for acme');
    expect((await cli('markups', 'show', '--account', 'acme')).stdout).toMatch(/openai\s+gpt-4o\s+completion\s+1\.5\s+acme/);
    expect((await cli('prices', 'set', '--provider', 'selfhosted', '--model', 'llama-local', '--input', '0.5', '--output', '1', '--from', '2020-01-01T00:00:00Z')).code).toBe(0);
    expect((await cli('prices', 'show', '--provider', 'selfhosted')).stdout).toMatch(/selfhosted\s+llama-local\s+0\.5\s+1\s/);
    const limits = JSON.parse((await cli('limits', 'show', '--account', 'acme', '--json')).stdout);
    expect(limits.limits[0]).toMatchObject({ exceeded: false, reserved: '0', limit: { period: 'LIMIT_PERIOD_MONTH', measure: 'LIMIT_MEASURE_COST', enforcement: 'LIMIT_ENFORCEMENT_HARD' } });
    expect((await cli('limits', 'show', '--account', 'acme', '--csv')).stdout).toMatch(/^user_id,period,measure,enforcement,amount,used,reserved,remaining,period_start,exceeded\n,month,cost,hard,10,0\.00675,0,9\.99325,\d{4}-\d{2}-\d{2},false\n$/);
    expect((await cli('markups', 'show', '--account', 'acme', '--csv')).stdout).toBe('provider,model,charge_type,factor,account_id\nopenai,gpt-4o,completion,1.5,acme\n');
  });

  it('sets, shows and deletes the limits of a tag value, an API key and a rolling window (issue 20)', async () => {
    await call(server.client.setDimensions, server.client, { accountId: 'scoped', tagKeys: ['feature'], maxValuesPerDay: 0 });
    const tagged = await cli('limits', 'set', '--account', 'scoped', '--tag', 'feature=summarize', '--period', 'day', '--measure', 'messages', '--amount', '5');
    expect(tagged.stdout).toContain('set: tag:feature=summarize day messages hard limit 5');
    const keyed = await cli('limits', 'set', '--account', 'scoped', '--key-id', 'k_cli', '--window-hours', '5', '--measure', 'cost', '--amount', '20', '--soft');
    expect(keyed.stdout).toContain('set: api_key:k_cli rolling 5h cost soft limit 20');
    const shown = (await cli('limits', 'show', '--account', 'scoped')).stdout;
    expect(shown).toMatch(/api_key:k_cli\s+rolling 5h\s+cost\s+soft\s+20\s/);
    expect(shown).toMatch(/tag:feature=summarize\s+day\s+messages\s+hard\s+5\s/);
    const csvLines = (await cli('limits', 'show', '--account', 'scoped', '--csv')).stdout.trim().split('\n');
    expect(csvLines[0]).toBe('user_id,period,measure,enforcement,amount,used,reserved,remaining,period_start,exceeded,api_key_id,tag_key,tag_value');
    expect(csvLines.slice(1).map((l) => l.split(',').slice(-3).join(','))).toEqual(expect.arrayContaining(['k_cli,,', ',feature,summarize']));
    // Exactly one of --period and --window-hours (a usage error: exit 2); a tag key that is not declared is refused naming tag_key (exit 1).
    const both = await cli('limits', 'set', '--account', 'scoped', '--tag', 'feature=chat', '--period', 'day', '--window-hours', '2', '--measure', 'messages', '--amount', '1');
    expect([both.code, both.stderr]).toEqual([2, expect.stringContaining("give exactly one of option '--period <period>' and option '--window-hours <hours>'")]);
    const undeclared = await cli('limits', 'set', '--account', 'scoped', '--tag', 'team=search', '--period', 'day', '--measure', 'messages', '--amount', '1');
    expect([undeclared.code, undeclared.stderr]).toEqual([1, expect.stringContaining('tag_key')]);
    expect((await cli('limits', 'delete', '--account', 'scoped', '--tag', 'feature=summarize', '--period', 'day', '--measure', 'messages')).stdout).toContain('deleted');
    expect((await cli('limits', 'delete', '--account', 'scoped', '--key-id', 'k_cli', '--window-hours', '5', '--measure', 'cost', '--soft')).stdout).toContain('deleted');
    expect((await cli('limits', 'show', '--account', 'scoped', '--csv')).stdout).toBe('user_id,period,measure,enforcement,amount,used,reserved,remaining,period_start,exceeded\n');
  });

  it('shows the price catalogue a page at a time', async () => {
    const all = JSON.parse((await cli('prices', 'show', '--provider', 'openai', '--all', '--json')).stdout).prices as Array<{ model: string }>;
    expect(all.length).toBeGreaterThan(3);
    const first = await cli('prices', 'list', '--provider', 'openai', '--page-size', '2', '--csv');
    expect(first.stdout.trim().split('\n').slice(1).map((l) => l.split(',')[1])).toEqual(all.slice(0, 2).map((p) => p.model));
    const token = /next page: --page-token (\S+)/.exec(first.stderr)![1];
    expect(first.stderr).toContain('more models; next page');
    const second = await cli('prices', 'show', '--provider', 'openai', '--page-size', '2', '--page-token', token, '--json');
    expect(JSON.parse(second.stdout).prices.map((p: { model: string }) => p.model)).toEqual(all.slice(2, 4).map((p) => p.model));
    // A token the server did not give: its INVALID_ARGUMENT names the field (exit 1, as for every refusal).
    const bad = await cli('prices', 'show', '--page-token', 'nonsense');
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('page_token');
  });

  it('re-rates day by day with progress, and tails the charge stream', async () => {
    const rerated = await cli('rerate', '--account', 'acme', '--from', today, '--to', today);
    expect(rerated.stderr).toContain('1/1 days, 1 charges examined, 1 changed');
    expect(rerated.stdout).toContain('changed 1 of 1 charges (1 newly priced)');
    const tail = spawn(process.execPath, [CLI, 'tail', '--account', 'acme', '--after', '0'], { env });
    let text = '';
    let status = '';
    tail.stdout.on('data', (d: Buffer) => (text += d.toString()));
    tail.stderr.on('data', (d: Buffer) => (status += d.toString()));
    const deadline = Date.now() + 15_000;
    while (Date.now() < deadline && text.split('\n').length < 6) await new Promise((r) => setTimeout(r, 50));
    tail.kill('SIGINT');
    const lines = text.trim().split('\n');
    expect(lines[0]).toMatch(/^#1 charge_recorded u1 openai\/gpt-4o 300 tokens 0\.00225 USD key=c0$/);
    expect(lines[3]).toMatch(/^#4 charge_recorded u1 selfhosted\/llama-local 300 tokens unpriced key=custom$/);
    expect(lines[4]).toMatch(/^#5 charge_rerated u1 selfhosted\/llama-local 300 tokens 0\.00025 USD key=custom$/);
    expect(status).toBe('watching acme after sequence 0\n');
  });

  it('tails every kind of event: expired reservations and soft limits crossed too', async () => {
    await call(server.client.putLimit, server.client, { accountId: 'softy', userId: '', period: LimitPeriod.LIMIT_PERIOD_DAY, measure: LimitMeasure.LIMIT_MEASURE_MESSAGES, amount: '1', enforcement: LimitEnforcement.LIMIT_ENFORCEMENT_SOFT });
    await call(server.client.recordCharge, server.client, chargeRequest({ accountId: 'softy', idempotencyKey: 's1' }));
    await call(server.client.checkLimits, server.client, checkRequest({ accountId: 'softy', userId: 'u3', reserve: true, idempotencyKey: 'hold-1', holdSeconds: 1, additionalTokens: '50' }));
    const read = async (...extra: string[]) => {
      const tail = spawn(process.execPath, [CLI, 'tail', '--account', 'softy', '--after', '0', ...extra], { env });
      let text = '';
      tail.stdout.on('data', (d: Buffer) => (text += d.toString()));
      const deadline = Date.now() + 20_000;
      while (Date.now() < deadline && text.split('\n').length < 4) await new Promise((r) => setTimeout(r, 50));
      tail.kill('SIGINT');
      return text.trim().split('\n');
    };
    const lines = await read();
    expect(lines[0]).toMatch(/^#1 charge_recorded u1 openai\/gpt-4o 300 tokens 0\.00225 USD key=s1$/);
    expect(lines[1]).toMatch(/^#2 soft_limit_exceeded account \(by user u1\): day messages soft limit 1, used 1, reserved 0, remaining 0, since \d{4}-\d{2}-\d{2}$/);
    expect(lines[2]).toMatch(/^#3 reservation_expired [0-9a-f-]{36} of u3 held 1 messages 50 tokens 0 USD key=hold-1$/);
    const json = (await read('--json')).map((l) => JSON.parse(l));
    expect(json.map((e) => e.kind)).toEqual(['CHARGE_EVENT_KIND_CHARGE_RECORDED', 'CHARGE_EVENT_KIND_SOFT_LIMIT_EXCEEDED', 'CHARGE_EVENT_KIND_RESERVATION_EXPIRED']);
    expect(json[1]).toMatchObject({ sequence: '2', userId: 'u1', limit: { exceeded: true, scope: 'LIMIT_SCOPE_ACCOUNT' } });
    expect(json[0].charge).toMatchObject({ wasCached: false, hadError: false, pricingStatus: 'PRICING_STATUS_PRICED' });
    expect(json[0].eventTime).toMatch(/^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d+)?Z$/);
  });

  it('looks up, lists and exports single charges', async () => {
    const got = await cli('charges', 'get', '--account', 'acme', '--idempotency-key', 'c1');
    expect(got.code).toBe(0);
    const chargeId = /^charge id\s+(\S+)$/m.exec(got.stdout)![1];
    expect(got.stdout).toMatch(/^model\s+openai\/gpt-4o$/m);
    const byId = JSON.parse((await cli('charges', 'get', '--account', 'acme', '--charge-id', chargeId, '--json')).stdout);
    expect(byId.charge).toMatchObject({ chargeId, idempotencyKey: 'c1', wasCached: false, pricingStatus: 'PRICING_STATUS_PRICED' });
    const neither = await cli('charges', 'get', '--account', 'acme');
    expect([neither.code, neither.stderr]).toEqual([2, expect.stringContaining("exactly one of option '--charge-id <id>'")]);
    const missing = await cli('charges', 'get', '--account', 'acme', '--idempotency-key', 'nope');
    expect([missing.code, missing.stderr]).toEqual([1, expect.stringContaining('error: NOT_FOUND')]);

    const listed = await cli('charges', 'list', '--account', 'acme', '--from', today, '--to', today, '--page-size', '3');
    expect(listed.stdout.trim().split('\n')).toHaveLength(2 + 3);
    const token = /next page: --page-token (\S+)/.exec(listed.stderr)![1];
    const rest = await cli('charges', 'list', '--account', 'acme', '--from', today, '--to', today, '--page-size', '3', '--page-token', token, '--csv');
    const csvRows = rest.stdout.trim().split('\n');
    expect(csvRows[0]).toBe('charge_id,usage_time,user_id,provider,model,charge_type,total_tokens,total_cost_usd,idempotency_key');
    // The two pages hold the four charges once each.
    const keys = [...listed.stdout.trim().split('\n').slice(2).map((l) => l.split(/\s+/).at(-1)), ...csvRows.slice(1).map((l) => l.split(',').at(-1))];
    expect(keys.sort()).toEqual(['c0', 'c1', 'c2', 'custom']);
    const openai = JSON.parse((await cli('charges', 'list', '--account', 'acme', '--from', today, '--to', today, '--provider', 'openai', '--pricing', 'priced', '--json')).stdout);
    expect(openai.charges.map((c: { idempotencyKey: string }) => c.idempotencyKey).sort()).toEqual(['c0', 'c1', 'c2']);
    expect(openai.nextPageToken).toBe('');

    const exported = await cli('charges', 'export', '--account', 'acme', '--from', today, '--to', today, '--format', 'jsonl');
    const lines = exported.stdout.trim().split('\n').map((l) => JSON.parse(l));
    expect(lines.map((c) => c.idempotencyKey).sort()).toEqual(['c0', 'c1', 'c2', 'custom']);
    const csvExport = await cli('charges', 'export', '--account', 'acme', '--from', today, '--to', today);
    expect(csvExport.stdout.split('\n')[0]).toMatch(/^charge_id,account_id,user_id,idempotency_key,/);
    expect(csvExport.stdout.trim().split('\n')).toHaveLength(5);
  });

  it('lists accounts with their month to date, and an account\'s open reservations', async () => {
    const listed = await call(server.client.listAccounts, server.client, { accountIdPrefix: 'acme', pageSize: 10, pageToken: '' });
    const table = (await cli('accounts', '--prefix', 'acme')).stdout.trim().split('\n');
    expect(table[0]).toMatch(/^account\s+time zone\s+month from\s+spend USD\s+charges\s+unpriced$/);
    expect(table[2]).toMatch(new RegExp(`^acme\\s+UTC\\s+${listed.accounts[0].monthStart}\\s+${listed.accounts[0].monthCost!.amount.replace('.', '\\.')}\\s+${listed.accounts[0].monthMessageCount}\\s+${listed.accounts[0].monthUnpricedMessageCount}$`));
    expect(JSON.parse((await cli('accounts', '--json')).stdout).accounts.map((a: { account: { accountId: string } }) => a.account.accountId)).toContain('acme');
    const held = await call(server.client.checkLimits, server.client, checkRequest({ accountId: 'acme', userId: 'u9', reserve: true, idempotencyKey: 'cli-hold', holdSeconds: 600, additionalTokens: '70' }));
    const open = (await cli('reservations', '--account', 'acme')).stdout.trim().split('\n');
    expect(open[0]).toMatch(/^reservation\s+user\s+messages\s+tokens\s+cost USD\s+day\s+expires$/);
    expect(open[2]).toMatch(new RegExp(`^${held.reservation!.reservationId}\\s+u9\\s+1\\s+70\\s+0\\s+${today}\\s+\\S+Z$`));
    expect((await cli('reservations', '--account', 'acme', '--csv')).stdout.split('\n')[0]).toBe('reservation_id,user_id,held_messages,held_tokens,held_cost,period_day,expire_time');
    await call(server.client.releaseReservation, server.client, { accountId: 'acme', reservationId: held.reservation!.reservationId });
    expect((await cli('reservations', '--account', 'acme')).stdout.trim().split('\n')).toHaveLength(2); // the header and its rule
  });

  it('creates, lists and revokes API keys', async () => {
    const created = await cli('keys', 'create', '--account', 'acme', '--name', 'billing backend', '--scopes', 'record,read');
    expect(created.stdout).toMatch(/^created (k_[0-9a-f]{12}) for acme \(record,read\)\nsecret \(shown only now\): mk\./);
    const keyId = /created (k_[0-9a-f]{12})/.exec(created.stdout)![1];
    expect((await cli('keys', 'list', '--account', 'acme')).stdout).toMatch(new RegExp(`${keyId}\\s+billing backend\\s+record,read`));
    expect((await cli('keys', 'revoke', '--account', 'acme', '--key-id', keyId)).stdout).toBe(`revoked ${keyId}\n`);
    expect((await cli('keys', 'create', '--account', 'acme', '--name', 'x', '--scopes', 'everything')).code).toBe(2);
  });

  it('explains refusals with the fields named, and bad usage with exit code 2', async () => {
    const bad = await cli('usage', '--account', 'acme', '--from', '2026-02-30', '--to', today);
    expect(bad.code).toBe(1);
    expect(bad.stderr).toContain('error: INVALID_ARGUMENT');
    expect(bad.stderr).toMatch(/start_date: /);
    const usage = await cli('limits', 'set', '--account', 'acme', '--period', 'week', '--measure', 'cost', '--amount', '1');
    expect(usage.code).toBe(2);
    expect(usage.stderr).toContain("error: option '--period <period>' argument 'week' is invalid. Allowed choices are day, month.");
    const unknown = await cli('usage', '--account', 'acme', '--from', today, '--to', today, '--bogus');
    expect(unknown.code).toBe(2);
    expect(unknown.stderr).toContain("error: unknown option '--bogus'");
    const missing = await cli('usage', '--account', 'acme', '--to', today);
    expect(missing.code).toBe(2);
    expect(missing.stderr).toContain("error: required option '--from <date>' not specified");
    const badDate = await cli('usage', '--from', '1.12.2026', '--to', today);
    expect(badDate.code).toBe(2);
    expect(badDate.stderr).toContain("error: option '--from <date>' argument '1.12.2026' is invalid");
    const wrongCommand = await cli('prices', 'lst');
    expect(wrongCommand.code).toBe(2);
    expect(wrongCommand.stderr).toContain("error: unknown command 'lst'");
    const both = await cli('usage', '--from', today, '--to', today, '--json', '--csv');
    expect(both.code).toBe(2);
    expect(both.stderr).toContain("error: option '--json' cannot be used with option '--csv'");
    const down = await cli('usage', '--account', 'acme', '--from', today, '--to', today, '--address', '127.0.0.1:1');
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('is the server running at 127.0.0.1:1?');
  });

  it('creates alert rules and webhook endpoints, shows rules, endpoints, deliveries and attempts as tables, and sends a test event', async () => {
    const bodies: string[] = [];
    const receiver = createServer((req, res) => {
      let body = '';
      req.on('data', (c: Buffer) => (body += c.toString()));
      req.on('end', () => {
        bodies.push(body);
        res.end('ok');
      });
    });
    await new Promise<void>((resolve) => receiver.listen(0, '127.0.0.1', resolve));
    try {
      const url = `http://127.0.0.1:${(receiver.address() as AddressInfo).port}/hook`;
      const created = await cli('webhooks', 'create', '--account', 'alerty', '--url', url, '--description', 'local receiver');
      expect(created.stdout).toMatch(/^created webhook endpoint [0-9a-f-]{36}\nsigning secret \(shown once\): whsec_[A-Za-z0-9+/]{32}\n$/);
      const endpointId = /endpoint ([0-9a-f-]{36})/.exec(created.stdout)![1];
      expect((await cli('alerts', 'create', '--account', 'alerty', '--kind', 'spend', '--period', 'day', '--amounts', '0.002,100', '--description', 'daily budget')).stdout).toMatch(/^created alert rule [0-9a-f-]{36}\n$/);
      await call(server.client.recordCharge, server.client, chargeRequest({ accountId: 'alerty', idempotencyKey: 'a1' }));
      const rules = (await cli('alerts', 'rules', '--account', 'alerty')).stdout;
      expect(rules).toMatch(/spend\s+day spend of the account\s+0\.002 USD,100 USD\s+daily budget/);
      expect((await cli('alerts', 'endpoints', '--account', 'alerty')).stdout).toMatch(new RegExp(`${endpointId}\\s+${url}\\s+standard\\s+yes\\s+all\\s+local receiver`));
      const tested = await cli('webhooks', 'test', '--account', 'alerty', '--endpoint', endpointId, '--wait');
      expect(tested.stdout).toMatch(/^queued test delivery msg_[0-9a-f-]{36}\nattempt 1: delivered HTTP 200 in \d+ ms\n$/);
      const deadline = Date.now() + 10_000;
      let rows: string[][] = [];
      while (Date.now() < deadline) {
        rows = (await cli('alerts', 'deliveries', '--account', 'alerty', '--csv')).stdout.trim().split('\n').slice(1).map((l) => l.split(','));
        if (rows.length === 2 && rows.every((r) => r[3] === 'delivered')) break;
        await new Promise((r) => setTimeout(r, 100));
      }
      expect(rows.map((r) => [r[2], r[3], r[4]]).sort()).toEqual([['alert.triggered', 'delivered', '1'], ['webhook.test', 'delivered', '1']]);
      expect(rows.every((r) => r[1] === endpointId)).toBe(true);
      const alertId = rows.find((r) => r[2] === 'alert.triggered')![0];
      expect((await cli('alerts', 'attempts', '--account', 'alerty', '--delivery', alertId)).stdout).toMatch(/^attempt\s+started\s+ms\s+status\s+ok\s+error\s+answer\s+next attempt\n[- ]+\n\s+1\s+\S+\s+\d+\s+200\s+yes\s+ok/);
      expect(bodies.map((b) => JSON.parse(b).type).sort()).toEqual(['alert.triggered', 'webhook.test']);
      // Nothing listens on port 1: the attempt fails, and so does the command (exit code 1, the reason printed).
      const nowhere = /endpoint ([0-9a-f-]{36})/.exec((await cli('webhooks', 'create', '--account', 'alerty', '--url', 'http://127.0.0.1:1/hook')).stdout)![1];
      const failed = await cli('webhooks', 'test', '--account', 'alerty', '--endpoint', nowhere, '--wait');
      expect([failed.code, failed.stdout.split('\n')[1], failed.stderr]).toEqual([1, 'attempt 1: failed connection refused in ' + /in (\d+) ms/.exec(failed.stdout)?.[1] + ' ms', 'error: the endpoint did not take the test event (connection refused); it is retried on the schedule\n']);
      const refused = await cli('webhooks', 'create', '--account', 'alerty', '--url', 'http://10.0.0.1/hook');
      expect([refused.code, /endpoint\.url: /.test(refused.stderr)]).toEqual([1, true]);
      expect((await cli('alerts', 'create', '--account', 'alerty', '--kind', 'spend', '--period', 'day')).code).toBe(2);
    } finally {
      await new Promise((resolve) => receiver.close(resolve));
    }
  });

  it('creates a balance alert rule (amounts only) and shows it; a balance rule with --period and a spend rule without one are usage errors', async () => {
    expect((await cli('alerts', 'create', '--account', 'prepaid', '--kind', 'balance', '--amounts', '5,1', '--description', 'credits low')).stdout).toMatch(/^created alert rule [0-9a-f-]{36}\n$/);
    expect((await cli('alerts', 'rules', '--account', 'prepaid')).stdout).toMatch(/balance\s+available credit balance falls below\s+1 USD,5 USD\s+credits low/);
    expect((await cli('alerts', 'create', '--account', 'prepaid', '--kind', 'balance', '--amounts', '5', '--period', 'day')).code).toBe(2);
    expect((await cli('alerts', 'create', '--account', 'prepaid', '--kind', 'spend', '--amounts', '5')).code).toBe(2);
  });

  it('has --help and -h on every command and subcommand (exit code 0)', async () => {
    // The commands it lists, in the order listed (each command's subcommands after it); siblings are asked at once.
    const visit = async (path: string[]): Promise<string[]> => {
      const [long, short] = await Promise.all([cli(...path, '--help'), cli(...path, '-h')]);
      expect([long.code, short.code]).toEqual([0, 0]);
      expect(short.stdout).toBe(long.stdout);
      expect(long.stdout).toMatch(new RegExp(`^Usage: metering${path.map((p) => ` ${p}`).join('')}(\\|[a-z]+)? \\[options\\]`));
      const commands = [...(long.stdout.split('Commands:')[1] ?? '').matchAll(/^ {2}([a-z]+)[ |]/gm)].map((m) => m[1]).filter((c) => c !== 'help');
      return [path.join(' '), ...(await Promise.all(commands.map((c) => visit([...path, c])))).flat()];
    };
    const seen = await visit([]);
    // The README's reference is this help, regenerated by tools/cli/reference.mjs.
    execFileSync(process.execPath, [join(ROOT, 'tools', 'cli', 'reference.mjs'), '--check'], { stdio: 'pipe' });
    expect(seen).toEqual(['', 'usage', 'charges', 'charges get', 'charges list', 'charges export', 'limits', 'limits show', 'limits set', 'limits delete', 'markups', 'markups show', 'markups set', 'prices', 'prices show', 'prices set', 'accounts', 'reservations', 'keys', 'keys list', 'keys create', 'keys revoke', 'balance', 'tail', 'rerate', 'import', 'import django',
      'alerts', 'alerts rules', 'alerts create', 'alerts delete', 'alerts endpoints', 'alerts deliveries', 'alerts attempts',
      'webhooks', 'webhooks create', 'webhooks test', 'webhooks rotate', 'webhooks redeliver', 'webhooks delete']);
    // About 80 CLI processes, each level's at once, and a bundle: a generous deadline on a loaded machine.
  }, 300_000);

  it('runs as `npx metering` (the package bin) with nothing but its output on stdout', async () => {
    const { stdout } = await run('npx', ['--no-install', 'metering', 'usage', '--account', 'acme', '--from', today, '--to', today, '--json'], { cwd: ROOT, env: { ...process.env, METERING_ADDRESS: server.address } });
    expect(JSON.parse(stdout).totals.messageCount).toBe('4');
  });
});

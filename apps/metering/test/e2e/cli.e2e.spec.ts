import { execFile, execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { databaseTargets, TestDatabase } from '../support/databases';
import { chargeRequest } from '../support/requests';
import { call } from '../support/grpc';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/** Issue 5: the admin CLI (`npm run metering`), run as a process against the real server. */
const CLI = join(ROOT, 'dist', 'tools', 'cli', 'metering.js');
const run = promisify(execFile);

beforeAll(() => {
  buildServer();
  execFileSync(process.execPath, [join(ROOT, 'tools', 'cli', 'run.mjs'), 'help'], { stdio: 'ignore' });
});

describe.each(databaseTargets().filter((t) => t.name === 'pglite'))('metering CLI on $name', (target) => {
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
    server = await startServer(tdb.config);
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
    expect(lines.at(-1)).toBe('total: 4 messages, 1200 tokens, 0.00675 USD (1 unpriced)');
    const json = JSON.parse((await cli('usage', '--account', 'acme', '--from', today, '--to', today, '--json')).stdout);
    expect(json.totals.messageCount).toBe('4');
  });

  it('sets and shows limits, markups and prices', async () => {
    expect((await cli('limits', 'set', '--account', 'acme', '--period', 'month', '--measure', 'cost', '--amount', '10')).stdout).toContain('set: (account) month cost hard limit 10');
    const shown = await cli('limits', 'show', '--account', 'acme');
    expect(shown.stdout).toMatch(/\(account\)\s+month\s+cost\s+hard\s+10\s+0\.00675\s+0\s+9\.99325/);
    expect((await cli('markups', 'set', '--provider', 'openai', '--model', 'gpt-4o', '--factor', '1.5', '--account', 'acme')).stdout).toContain('x1.5 for acme');
    expect((await cli('markups', 'show', '--account', 'acme')).stdout).toMatch(/openai\s+gpt-4o\s+completion\s+1\.5\s+acme/);
    expect((await cli('prices', 'set', '--provider', 'selfhosted', '--model', 'llama-local', '--input', '0.5', '--output', '1', '--from', '2020-01-01T00:00:00Z')).code).toBe(0);
    expect((await cli('prices', 'show', '--provider', 'selfhosted')).stdout).toMatch(/selfhosted\s+llama-local\s+0\.5\s+1\s/);
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
    expect(lines[4]).toMatch(/^#5 charge_rerated u1 selfhosted\/llama-local 300 tokens 0\.00025 USD key=custom$/);
    expect(status).toBe('watching acme after sequence 0\n');
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
    expect(usage.stderr).toContain('--period must be one of day, month');
    const down = await cli('usage', '--account', 'acme', '--from', today, '--to', today, '--address', '127.0.0.1:1');
    expect(down.code).toBe(1);
    expect(down.stderr).toContain('is the server running at 127.0.0.1:1?');
  });
});

import { execFileSync } from 'node:child_process';
import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { ListChargesRequest, ListChargesResponse } from '@metering/contracts';
import { describeEachOf, TestDatabase, embeddedTarget } from '../support/databases';
import { readmeBlock } from '../support/readme';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 18: the TypeScript client as a package a backend installs. `npm pack` of libs/client
 * (libs/client/pack.mjs) is installed into an empty project outside the repository, a
 * program using it is compiled with that project's own plain `tsc` (no paths, no skipLibCheck)
 * and run with plain `node` against the real server: the reserve -> call -> record flow, a
 * partial request through call(), and a fractional token count refused on the client with the
 * field named (it was `13 INTERNAL: Request message serialization failure`), nothing written.
 * The README's "Getting started / TypeScript" runs as written first (only its folder and the
 * server's address replaced): it packs, installs, compiles and records a charge.
 */

const program = `import { MeteringClient, MeteringRequestError, type ChargeEvent } from '@metering/client';

const metering = new MeteringClient({ address: process.argv[2], deadlineMs: 5000 });
const llm = { chat: async (_: { model: string; prompt: string }) => ({ id: 'chatcmpl-' + process.argv[3], usage: { prompt_tokens: 21, completion_tokens: 34 } }) };

async function main(): Promise<void> {
  const prompt = 'Summarise the attached contract in three sentences.';
  const out: Record<string, unknown> = {};
  try {
    await metering.checkLimits({ accountId: 'outside', userId: 'u1', reserve: true, estimate: { provider: 'openai', model: 'gpt-4o', promptTokens: String(prompt.length / 4) } });
  } catch (err) {
    out.refused = err instanceof MeteringRequestError ? { field: err.field, message: err.message } : String(err);
  }
  const check = await metering.checkLimits({ accountId: 'outside', userId: 'u1', reserve: true, estimate: { provider: 'openai', model: 'gpt-4o', promptTokens: String(Math.ceil(prompt.length / 4)), completionTokens: '800' } });
  const completion = await llm.chat({ model: 'gpt-4o', prompt });
  const recorded = await metering.recordCharge({ accountId: 'outside', userId: 'u1', provider: 'openai', model: 'gpt-4o', idempotencyKey: completion.id, promptTokens: String(completion.usage.prompt_tokens), completionTokens: String(completion.usage.completion_tokens), reservationId: check.reservation!.reservationId });
  const today = new Date().toISOString().slice(0, 10);
  const usage = await metering.call('getDailyUsage', { accountId: 'outside', startDate: today, endDate: today });
  const event: ChargeEvent | undefined = undefined;
  Object.assign(out, { allowed: check.allowed, chargeId: recorded.charge?.chargeId, settled: recorded.reservation?.chargeId, messages: usage.totals?.messageCount, noEvent: event === undefined });
  process.stdout.write(JSON.stringify(out));
  metering.close();
}
main().catch((err) => { console.error(err); process.exit(1); });
`;

beforeAll(() => buildServer());

describeEachOf(embeddedTarget(), 'pglite')('the packed TypeScript client in an outside project, on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;
  let project: string;

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config);
    project = mkdtempSync(join(tmpdir(), 'metering-outside-'));
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
    if (project) rmSync(project, { recursive: true, force: true });
  });

  it('runs the README\'s Getting started / TypeScript as written: the printed charge is the server\'s', async () => {
    const script = readmeBlock('### TypeScript (Node 20)', 'sh').replaceAll('/tmp', project).replaceAll('127.0.0.1:50051', server.address);
    const out = execFileSync('bash', ['-euo', 'pipefail', '-c', script], { cwd: ROOT, encoding: 'utf8', stdio: ['ignore', 'pipe', 'inherit'] });
    const [chargeId, amount, currency] = out.trim().split('\n').pop()!.split(' ');
    const stored = await new Promise<ListChargesResponse>((resolve, reject) =>
      server.client.listCharges(ListChargesRequest.fromPartial({ accountId: 'acme', startDate: new Date().toISOString().slice(0, 10), endDate: new Date().toISOString().slice(0, 10) }), (err, res) => (err ? reject(err) : resolve(res))),
    );
    expect(stored.charges.map((c) => [c.chargeId, c.totalCost?.amount, c.totalCost?.currencyCode])).toEqual([[chargeId, amount, currency]]);
  }, 300_000); // packs and npm-installs into a fresh project: over a minute on a loaded machine

  it('runs the README\'s Getting started / Any language over gRPC as written (buf curl, twice: a replay)', async () => {
    const script = readmeBlock('### Any language over gRPC', 'sh').replaceAll('127.0.0.1:50051', server.address);
    const first = JSON.parse(execFileSync('bash', ['-euo', 'pipefail', '-c', script], { cwd: ROOT, encoding: 'utf8' })) as { charge: { chargeId: string; totalCost: { amount: string } }; replayed?: boolean };
    const again = JSON.parse(execFileSync('bash', ['-euo', 'pipefail', '-c', script], { cwd: ROOT, encoding: 'utf8' })) as typeof first;
    expect(again.replayed).toBe(true);
    expect(again.charge.chargeId).toBe(first.charge.chargeId);
    const stored = await new Promise<ListChargesResponse>((resolve, reject) =>
      server.client.listCharges(ListChargesRequest.fromPartial({ accountId: 'acme', startDate: new Date().toISOString().slice(0, 10), endDate: new Date().toISOString().slice(0, 10) }), (err, res) => (err ? reject(err) : resolve(res))),
    );
    expect(stored.charges.find((c) => c.chargeId === first.charge.chargeId)?.totalCost?.amount).toBe(first.charge.totalCost.amount);
  });

  it('in that project: type-checks a program with plain tsc, runs it with plain node: the flow, and a fractional count refused naming the field', async () => {
    // The folder the README's steps made: the tarball installed with its dependencies, and tsc.
    const dir = join(project, 'my-backend');
    writeFileSync(join(dir, 'tsconfig.json'), JSON.stringify({ compilerOptions: { target: 'ES2022', module: 'commonjs', strict: true, types: ['node'] }, include: ['main.ts'] }));
    writeFileSync(join(dir, 'main.ts'), program);
    execFileSync(process.execPath, [join(dir, 'node_modules', 'typescript', 'bin', 'tsc'), '-p', dir], { cwd: dir, stdio: 'inherit' });
    const run = promisify(require('node:child_process').execFile) as (file: string, args: string[], options: object) => Promise<{ stdout: string }>;
    const { stdout } = await run(process.execPath, [join(dir, 'main.js'), server.address, 'one'], { cwd: dir, env: { PATH: process.env.PATH } });
    const out = JSON.parse(stdout) as { refused: { field: string; message: string }; allowed: boolean; chargeId: string; settled: string; messages: string };
    expect(out.refused.field).toBe('estimate.promptTokens');
    expect(out.refused.message).toMatch(/not a whole number/);
    expect(out.allowed).toBe(true);
    expect(out.settled).toBe(out.chargeId);
    expect(out.messages).toBe('1');
    // The server holds the one charge the program recorded, and nothing from the refused request.
    const listed = await new Promise<ListChargesResponse>((resolve, reject) =>
      server.client.listCharges(ListChargesRequest.fromPartial({ accountId: 'outside', startDate: new Date().toISOString().slice(0, 10), endDate: new Date().toISOString().slice(0, 10) }), (err, res) => (err ? reject(err) : resolve(res))),
    );
    expect(listed.charges.map((c) => c.chargeId)).toEqual([out.chargeId]);
  });
});

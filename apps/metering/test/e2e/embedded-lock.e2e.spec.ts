import { execFile } from 'node:child_process';
import { existsSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { promisify } from 'node:util';
import { MeteringServiceClient } from '@metering/contracts';
import { describeSelf, readDataDirLock } from '../../src/store/data-dir-lock';
import { databaseTargets, TestDatabase, describeEachOf } from '../support/databases';
import { call } from '../support/grpc';
import { chargeRequest } from '../support/requests';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * The embedded database is opened by one process at a time: a second server or
 * `npm run migrate` on the same METERING_DATA_DIR is refused at start, naming the
 * holder, before it opens (or migrates) anything; a lock left by a process killed
 * with SIGKILL, or naming a pid now used by another process, does not block a restart.
 */
const run = promisify(execFile);
// Each test starts servers on PGlite (the first one initializes and migrates the folder): slow on a loaded machine.
const TEST_MS = 150_000;
const MAIN = join(ROOT, 'dist', 'apps', 'metering', 'main.js');

beforeAll(() => buildServer());

describeEachOf(databaseTargets().filter((t) => t.name === 'pglite'), 'the embedded database (a Citus run leaves it out)')('one process per embedded database folder ($name)', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess | undefined;
  const today = new Date().toISOString().slice(0, 10);

  /** Runs main.js on the folder and expects it to exit 1 before listening; returns its log. */
  async function refused(args: string[]): Promise<string> {
    const env = { PATH: process.env.PATH ?? '', PORT: '0', METERING_AUTH: 'off', METERING_DATA_DIR: tdb.config.dataDir };
    // A process that is not refused serves until the timeout kills it (code null).
    const result = await run(process.execPath, [MAIN, ...args], { cwd: ROOT, env, timeout: 30_000 }).then(
      (r) => ({ code: 0, out: r.stdout + r.stderr }),
      (e: { code: number; stdout: string; stderr: string }) => ({ code: e.code, out: e.stdout + e.stderr }),
    );
    expect(result.code).toBe(1);
    expect(result.out).not.toContain('"msg":"listening"');
    return result.out;
  }

  async function record(client: MeteringServiceClient, keys: string[]): Promise<void> {
    for (const key of keys) expect((await call(client.recordCharge, client, chargeRequest({ idempotencyKey: key }))).replayed).toBe(false);
  }

  async function messageCount(client: MeteringServiceClient): Promise<string | undefined> {
    const usage = await call(client.getDailyUsage, client, { accountId: 'acme', startDate: today, endDate: today, userId: '', provider: '', model: '', chargeType: 0, pageSize: 0, pageToken: '', timeZone: '' });
    return usage.totals?.messageCount;
  }

  beforeAll(async () => {
    tdb = await target.create();
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it('refuses a second server and a migration beside a running server, naming its pid; keeps every acknowledged charge', async () => {
    server = await startServer(tdb.config);
    await record(server.client, ['a1', 'a2', 'a3']);
    const second = await refused([]);
    expect(second).toContain(`in use by process ${server.child.pid}`);
    expect(second).toContain(join(tdb.config.dataDir, 'metering.pid'));
    const migration = await refused(['--migrate-only']);
    expect(migration).toContain(`in use by process ${server.child.pid}`);
    expect(migration).not.toContain('database migrated');
    expect(readDataDirLock(tdb.config.dataDir)?.pid).toBe(server.child.pid);

    // The running server was not disturbed: it still writes, and a clean stop releases the folder.
    await record(server.client, ['a4', 'a5']);
    expect(await server.stop('SIGTERM')).toBe(0);
    expect(existsSync(join(tdb.config.dataDir, 'metering.pid'))).toBe(false);
    server = await startServer(tdb.config);
    expect(await messageCount(server.client)).toBe('5');
  }, TEST_MS);

  it('starts after the holder was killed with SIGKILL (a stale lock), with the charges it acknowledged', async () => {
    const holder = server as ServerProcess;
    await record(holder.client, ['b1', 'b2']);
    const killed = holder.child.pid;
    await holder.stop('SIGKILL');
    server = undefined;
    expect(readDataDirLock(tdb.config.dataDir)?.pid).toBe(killed);
    server = await startServer(tdb.config);
    expect(readDataDirLock(tdb.config.dataDir)?.pid).toBe(server.child.pid);
    expect(await messageCount(server.client)).toBe('7');
    await record(server.client, ['b3']);
    expect(await server.stop('SIGTERM')).toBe(0);
    server = undefined;
  }, TEST_MS);

  it('judges a lock by its holder: a live pid with another start time is a reused pid (stale), the same process is alive', async () => {
    const lockFile = join(tdb.config.dataDir, 'metering.pid');
    // This test process is alive: a lock naming it exactly (pid, boot, start time) is refused.
    const alive = { ...describeSelf(), command: 'the test runner' };
    writeFileSync(lockFile, JSON.stringify(alive) + '\n');
    expect(await refused([])).toContain(`in use by process ${process.pid} (the test runner`);

    // The same pid with another start time: the pid was reused after the holder died.
    const reused = { ...alive, startTicks: String(Number(alive.startTicks ?? 0) + 12345) };
    writeFileSync(lockFile, JSON.stringify(reused) + '\n');
    server = await startServer(tdb.config);
    expect(await messageCount(server.client)).toBe('8');
  }, TEST_MS);
});

import { execFileSync } from 'node:child_process';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { readmeBlock } from '../support/readme';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 20: the README's "Tags and dimensions" example runs as written (buf curl against the
 * real server, authentication off as with `npm start`; only the address differs), twice: the
 * second run's charge is a replay and the grouped usage does not change. The sums it reads are
 * the charge's own, as RecordCharge answered it.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

interface Answer {
  dimensions?: { tagKeys: string[] };
  charge?: { chargeId: string; usageDate: string; totalCost: { amount: string }; tags: Record<string, string> };
  replayed?: boolean;
  groups?: Array<{ period: string; model: string; tags: Record<string, string>; sums: { messageCount: string; totalCost: { amount: string } } }>;
  totals?: { messageCount: string };
}

describe.each(databaseTargets())('the README dimensions example on $name', (target) => {
  let tdb: TestDatabase;
  let server: ServerProcess;

  beforeAll(async () => {
    tdb = await target.create();
    server = await startServer(tdb.config);
  });

  afterAll(async () => {
    await server?.stop();
    await tdb?.drop();
  });

  it('declares dimensions, records a tagged charge and reads it grouped by model and feature, as written, twice', () => {
    const script = readmeBlock('## Tags and dimensions', 'sh').replaceAll('127.0.0.1:50051', server.address);
    const run = () =>
      execFileSync('bash', ['-euo', 'pipefail', '-c', script], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 })
        .trim()
        .split(/\n(?=\{)/)
        .map((doc) => JSON.parse(doc) as Answer);
    const [set, recorded, usage] = run();
    expect(set.dimensions?.tagKeys).toEqual(['env', 'feature']);
    expect(recorded.charge?.tags).toEqual({ env: 'prod', feature: 'summarize', ticket: 'T-1' });
    expect(usage.groups).toEqual([
      { period: recorded.charge?.usageDate, model: 'gpt-4o', tags: { feature: 'summarize' }, sums: expect.objectContaining({ messageCount: '1', totalCost: recorded.charge?.totalCost }) },
    ]);
    const [, replay, again] = run();
    expect(replay.replayed).toBe(true);
    expect(replay.charge?.chargeId).toBe(recorded.charge?.chargeId);
    expect(again.groups).toEqual(usage.groups);
  });
});

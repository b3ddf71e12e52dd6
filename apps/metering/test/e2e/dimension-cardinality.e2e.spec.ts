import { spawnSync } from 'node:child_process';
import { databaseTargets, requirePostgresInCi, TestDatabase } from '../support/databases';
import { readmeBlock } from '../support/readme';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 20: the README's "Distinct values per day" example runs as written (buf curl against the
 * real server, authentication off as with `npm start`; only the address differs), twice: two
 * customers are recorded (the third charge repeats one), the third customer is refused with
 * RESOURCE_EXHAUSTED naming tags["customer"] and the limit, and the second run is all replays
 * and the same refusal.
 */
beforeAll(() => buildServer());
requirePostgresInCi();

interface Answer {
  dimensions?: { tagKeys: string[]; maxValuesPerDay: number };
  charge?: { chargeId: string; idempotencyKey: string; tags: Record<string, string> };
  replayed?: boolean;
}

describe.each(databaseTargets())('the README distinct-values example on $name', (target) => {
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

  it('records two customers and refuses a third with RESOURCE_EXHAUSTED naming the field and the limit, as written, twice', () => {
    const script = readmeBlock('### Distinct values per day', 'sh').replaceAll('127.0.0.1:50051', server.address);
    const run = () => {
      const r = spawnSync('bash', ['-euo', 'pipefail', '-c', script], { cwd: ROOT, encoding: 'utf8', timeout: 120_000 });
      expect(r.status).toBe(0);
      return { answers: r.stdout.trim().split(/\n(?=\{)/).map((doc) => JSON.parse(doc) as Answer), refusal: JSON.parse(r.stderr.slice(r.stderr.indexOf('{'))) as { code: string; message: string; details: Array<{ type: string }> } };
    };
    const first = run();
    const [set, ...charges] = first.answers;
    expect(set.dimensions).toMatchObject({ tagKeys: ['customer'], maxValuesPerDay: 2 });
    expect(charges.map((c) => [c.charge?.idempotencyKey, c.charge?.tags.customer, c.replayed ?? false])).toEqual([
      ['card-1', 'c-1', false],
      ['card-2', 'c-2', false],
      ['card-3', 'c-1', false],
    ]);
    expect(first.refusal.code).toBe('resource_exhausted');
    expect(first.refusal.message).toContain('tags["customer"]');
    expect(first.refusal.message).toContain('max_values_per_day 2');
    expect(first.refusal.details.map((d) => d.type)).toEqual(['google.rpc.QuotaFailure', 'google.rpc.ErrorInfo']);
    const second = run();
    expect(second.answers.slice(1).map((c) => [c.charge?.chargeId, c.replayed])).toEqual(charges.map((c) => [c.charge?.chargeId, true]));
    expect(second.refusal.code).toBe('resource_exhausted');
  });
});

/**
 * `node tools/bench/service-cpu.mjs [check|charge] [in flight] [warm-up calls] [measured calls]`:
 * the CPU time per call of the service layer alone (services, store, knex, pg; no gRPC), in one
 * process, and of this machine's Postgres processes (/proc; 0 when Postgres runs elsewhere),
 * after a warm-up of a fixed number of calls, on a fresh Postgres database
 * (METERING_BENCH_DATABASE_URL, default postgres://postgres@127.0.0.1:5432/postgres). A fixed
 * number of warm calls makes it steadier than the bench's timed scenarios on a shared machine:
 * V8's compilation of a fresh process and the other processes' load weigh less. Not a target of
 * issue 15 (that is the whole server, measured by the bench); a way to compare two versions of
 * the hot paths. METERING_ALLOC_PROFILE=<file> also writes a sampled profile of what the measured
 * calls allocate (objects already collected included; a V8 heap profile, as Chrome DevTools reads it).
 * METERING_PROFILE_REPLAYS=0.05: that share of the charges reuses a key already recorded (with the
 * same content: a replay), as the bench's scenario with replays.
 */
/* eslint-disable @nx/enforce-module-boundaries -- this tool measures the metering app's service layer in-process, so it imports the app's own modules (the app is not a library with a public entry point). */
import { CheckLimitsRequest, RecordChargeRequest } from '@metering/contracts';
import { PriceTable } from '@metering/pricing';
import { writeFileSync } from 'node:fs';
import { Session } from 'node:inspector';
import { loadavg } from 'node:os';
import pg from 'pg';
import { postgresCpuSeconds } from './proc-cpu';
import { ChargesService } from '../../../apps/metering/src/services/charges.service';
import { LimitsService } from '../../../apps/metering/src/services/limits.service';
import { PricingService } from '../../../apps/metering/src/services/pricing.service';
import { SettingsCache } from '../../../apps/metering/src/services/settings-cache';
import { closeDatabase, migrate, openDatabase } from '../../../apps/metering/src/store/db';

async function main(): Promise<void> {
  const [method = 'check', inFlight = '64', warm = '20000', measured = '20000'] = process.argv.slice(2);
  const adminUrl = process.env.METERING_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
  const admin = new pg.Client(adminUrl);
  await admin.connect();
  const name = `metering_service_cpu_${process.pid}`;
  await admin.query(`CREATE DATABASE ${name}`);
  const url = new URL(adminUrl);
  url.pathname = `/${name}`;
  const db = openDatabase({ url: url.toString(), dataDir: '', poolMax: 10 });
  try {
    await migrate(db);
    const pricing = new PricingService(db, new PriceTable());
    const settings = new SettingsCache();
    const limits = new LimitsService(db, pricing, undefined, settings);
    const charges = new ChargesService(db, pricing, undefined, 2, undefined, settings);
    let key = 0;
    const replays = Number(process.env.METERING_PROFILE_REPLAYS ?? 0);
    // As the bench's load generator: one account, users spread over 10k.
    const one = async (): Promise<void> => {
      if (method === 'check') {
        await limits.checkLimits(CheckLimitsRequest.fromPartial({ accountId: 'cpu', userId: `u${Math.floor(Math.random() * 10_000)}`, additionalTokens: '1500' }));
      } else {
        // A replay repeats an earlier call: its key and its user (the content the key was used with).
        const replayOf = key > 0 && Math.random() < replays ? Math.floor(Math.random() * key) : undefined;
        const n = replayOf ?? key++;
        await charges.recordCharge(RecordChargeRequest.fromPartial({ accountId: 'cpu', userId: `u${n % 10_000}`, idempotencyKey: `k${n}`, provider: 'openai', model: 'gpt-4o', chargeType: 1, promptTokens: '1000', completionTokens: '200' }));
      }
    };
    const run = async (calls: number): Promise<void> => {
      let left = calls;
      await Promise.all(Array.from({ length: Number(inFlight) }, async () => {
        while (left-- > 0) await one();
      }));
    };
    await run(Number(warm));
    // METERING_ALLOC_PROFILE=<file>: a sampled profile of every allocation of the measured calls (collected ones included).
    const allocFile = process.env.METERING_ALLOC_PROFILE;
    const session = allocFile ? new Session() : undefined;
    const post = (method: string, params?: object) => new Promise<unknown>((resolve, reject) => session?.post(method, params, (err, res) => (err ? reject(err) : resolve(res))));
    if (session) {
      session.connect();
      await post('HeapProfiler.startSampling', { samplingInterval: 4096, includeObjectsCollectedByMajorGC: true, includeObjectsCollectedByMinorGC: true });
    }
    const cpu = process.cpuUsage();
    const postgresAtStart = postgresCpuSeconds();
    const started = performance.now();
    await run(Number(measured));
    const used = process.cpuUsage(cpu);
    const postgresMs = (postgresCpuSeconds() - postgresAtStart) * 1000;
    if (session && allocFile) {
      const { profile } = (await post('HeapProfiler.stopSampling')) as { profile: unknown };
      writeFileSync(allocFile, JSON.stringify(profile));
      session.disconnect();
    }
    const n = Number(measured);
    console.log(`${method}, ${inFlight} in flight, ${n} calls after ${warm}: ${((used.user + used.system) / n / 1000).toFixed(4)} ms CPU/call (user ${(used.user / n / 1000).toFixed(4)}), Postgres ${(postgresMs / n).toFixed(4)} ms CPU/call, ${Math.round(n / ((performance.now() - started) / 1000))} calls/s, load average ${loadavg()[0].toFixed(1)}`);
  } finally {
    await closeDatabase(db);
    await admin.query(`DROP DATABASE ${name}`);
    await admin.end();
  }
}

void main();

// `node tools/bench/profile.mjs [method] [in flight] [seconds]`: one workload of the benchmark's
// load generator against the bundled server on a fresh Postgres database, with a V8 CPU profile of
// the server. Prints throughput, latency and the CPU time per call of the server and of Postgres (from /proc, in the
// measured window only), then the functions with the most self time (profile-summary.mjs).
// method: recordCharge | recordCharges | checkLimits | getDailyUsage (default checkLimits, 64, 8).
// METERING_BENCH_DATABASE_URL picks the server (default postgres://postgres@127.0.0.1:5432/postgres);
// e.g. 'postgresql://postgres@/postgres?host=/var/run/postgresql' for the local Unix socket.
// A Citus coordinator works too (its admin database has the citus extension and its workers): the
// database is then created on every node with the extension and the workers added, and the
// server's migration distributes the tables by account_id (docs/scaling.md).
// METERING_PROFILE_WARMUP=<seconds> warms the server up first (unmeasured); METERING_WRITE_CONCURRENCY is passed to the
// server; METERING_PROFILE_REPLAYS=0.05 makes that share of the calls replays (as the bench's scenario);
// METERING_PROFILE_BACKGROUND=700 runs RecordCharge at 700 calls/s on another account meanwhile.
// METERING_PROFILE_HEAP=1 also samples what the server allocates in the measured window (heap-sampler.cjs) and
// prints the functions that allocate most, in KB per measured call (with METERING_PROFILE_BACKGROUND, its calls'
// allocations are counted too). The line ends with the mean charges per write (group
// commit), from the server's /metrics.
// `npm run build` first (it bundles dist/apps/metering/main.js).
import { execFileSync, fork, spawn } from 'node:child_process';
import { existsSync, mkdirSync, readdirSync, readFileSync, rmSync } from 'node:fs';
import { createServer } from 'node:net';
import { join } from 'node:path';
import pg from 'pg';
import { bundle, root } from '../scripts/build.mjs';

const [method = 'checkLimits', inFlight = '64', seconds = '8'] = process.argv.slice(2);
await bundle({ entryPoints: [join(root, 'tools/bench/src/loadgen.ts'), join(root, 'tools/bench/src/proc-cpu.ts')], outdir: join(root, 'dist/tools/bench') });
const { cpuSeconds, postgresCpuSeconds, threadCpuSeconds } = (await import(join(root, 'dist/tools/bench/proc-cpu.js'))).default;
const adminUrl = process.env.METERING_BENCH_DATABASE_URL ?? 'postgres://postgres@127.0.0.1:5432/postgres';
const dbName = `metering_profile_${process.pid}`;
// The same server, another database (a URL without a host, for a Unix socket, is no WHATWG URL).
const [base, query] = adminUrl.split('?');
const dbUrl = `${base.replace(/\/[^/]*$/, `/${dbName}`)}${query ? `?${query}` : ''}`;
const admin = new pg.Client({ connectionString: adminUrl });
await admin.connect();
const citus = (await admin.query(`SELECT 1 FROM pg_extension WHERE extname = 'citus'`)).rowCount > 0;
/** The worker nodes' URLs (Citus only): the admin URL with each worker's host and port. */
const workers = citus
  ? (await admin.query(`SELECT nodename, nodeport FROM pg_dist_node WHERE noderole = 'primary' AND groupid <> 0 ORDER BY nodeid`)).rows.map((w) => {
      const u = new URL(adminUrl);
      u.hostname = w.nodename;
      u.port = String(w.nodeport);
      return u.toString();
    })
  : [];
const onNode = async (url, ...sql) => {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    for (const s of sql) await c.query(s);
  } finally {
    await c.end();
  }
};
await admin.query(`CREATE DATABASE ${dbName}`);
if (citus) {
  for (const w of workers) await onNode(w, `CREATE DATABASE ${dbName}`);
  for (const node of [adminUrl, ...workers]) await onNode(node.replace(/\/[^/?]*(\?|$)/, `/${dbName}$1`), 'CREATE EXTENSION citus');
  const coordinator = new URL(adminUrl);
  await onNode(dbUrl, `SELECT citus_set_coordinator_host('${coordinator.hostname}', ${Number(coordinator.port || 5432)})`,
    ...workers.map((w) => `SELECT citus_add_node('${new URL(w).hostname}', ${Number(new URL(w).port)})`));
}
const dir = join(root, 'dist', 'profile', method);
rmSync(dir, { recursive: true, force: true });
mkdirSync(dir, { recursive: true });
const key = 'profile-operator-key-'.padEnd(43, 'x');
/** A free port for the server's /metrics (the mean write batch is read from it at the end). */
const metricsPort = await new Promise((resolve) => {
  const probe = createServer().listen(0, '127.0.0.1', () => {
    const { port } = probe.address();
    probe.close(() => resolve(port));
  });
});
const heapFile = process.env.METERING_PROFILE_HEAP === '1' ? join(dir, 'allocations.heapprofile') : undefined;
const heapSampler = heapFile ? ['--require', join(root, 'tools/bench/heap-sampler.cjs')] : [];
const server = spawn(process.execPath, ['--cpu-prof', `--cpu-prof-dir=${dir}`, ...heapSampler, join(root, 'dist/apps/metering/main.js')], {
  env: { PATH: process.env.PATH, ...(heapFile ? { METERING_PROFILE_HEAP: heapFile } : {}),
    // METERING_PROFILE_NODE_OPTIONS=<flags>: the server's NODE_OPTIONS (e.g. the image's, tools/deploy/Dockerfile).
    ...(process.env.METERING_PROFILE_NODE_OPTIONS ? { NODE_OPTIONS: process.env.METERING_PROFILE_NODE_OPTIONS } : {}), DATABASE_URL: dbUrl, PORT: '0', METERING_HOST: '127.0.0.1', LOG_LEVEL: 'info', METERING_AUTH: 'keys', METERING_OPERATOR_KEY: key, METERING_METRICS_PORT: String(metricsPort),
    // METERING_WRITE_CONCURRENCY passes through (write transactions at once; default 2).
    ...(process.env.METERING_WRITE_CONCURRENCY ? { METERING_WRITE_CONCURRENCY: process.env.METERING_WRITE_CONCURRENCY } : {}) },
  stdio: ['ignore', 'pipe', 'inherit'],
});
const port = await new Promise((resolve) => {
  let out = '';
  server.stdout.on('data', (d) => {
    out += d;
    const m = /"port":(\d+)/.exec(out);
    if (m) resolve(Number(m[1]));
  });
});
/** The server's CPU seconds so far; mainCpu: its main thread alone (JavaScript, the event loop), the rest being V8's compiler and GC threads and the profiler's own. */
const cpu = () => cpuSeconds(server.pid);
const mainCpu = () => threadCpuSeconds(server.pid);
// METERING_PROFILE_WARMUP=<seconds>: first run the same method at 64 in flight that long, unmeasured, so that
// V8 has compiled the hot paths (a fresh process spends much of its first seconds compiling).
const warmup = Number(process.env.METERING_PROFILE_WARMUP ?? 0);
if (warmup > 0) {
  const warm = fork(join(root, 'dist/tools/bench/loadgen.js'));
  await new Promise((resolve) => {
    warm.on('message', (m) => m.phase !== 'measuring' && resolve(m));
    warm.send({
      address: `127.0.0.1:${port}`, method, concurrency: 64, durationMs: warmup * 1000, warmupMs: 0,
      accountId: 'profile', users: 10_000, replayShare: 0, batchSize: 100, keyPrefix: `w${Date.now()}`, apiKey: key,
    });
  });
  warm.kill();
}
// METERING_PROFILE_BACKGROUND=<calls/s>: RecordCharge at that fixed rate on another account while the method is
// measured (as the bench's "CheckLimits while RecordCharge runs at half its max"); its latency is printed too.
const backgroundRate = Number(process.env.METERING_PROFILE_BACKGROUND ?? 0);
const background = backgroundRate > 0 ? fork(join(root, 'dist/tools/bench/loadgen.js')) : undefined;
const backgroundResult = background && new Promise((resolve) => {
  background.on('message', (m) => m.phase !== 'measuring' && resolve(m));
  background.send({
    address: `127.0.0.1:${port}`, method: 'recordCharge', concurrency: 64, rate: backgroundRate, durationMs: Number(seconds) * 1000, warmupMs: 1000,
    accountId: 'background', users: 10_000, replayShare: 0, batchSize: 100, keyPrefix: `b${Date.now()}`, apiKey: key,
  });
});
const loadgen = fork(join(root, 'dist/tools/bench/loadgen.js'));
let cpuAtStart = 0;
let mainAtStart = 0;
let postgresAtStart = 0;
const result = await new Promise((resolve) => {
  loadgen.on('message', (m) => (m.phase === 'measuring' ? ((cpuAtStart = cpu()), (mainAtStart = mainCpu()), (postgresAtStart = postgresCpuSeconds()), heapFile && server.kill('SIGUSR2')) : resolve(m)));
  loadgen.send({
    address: `127.0.0.1:${port}`, method, concurrency: Number(inFlight), durationMs: Number(seconds) * 1000, warmupMs: 1000,
    accountId: 'profile', users: 10_000, replayShare: Number(process.env.METERING_PROFILE_REPLAYS ?? 0), batchSize: 100, keyPrefix: `p${Date.now()}`, apiKey: key,
    // METERING_PROFILE_DIMENSIONS=feature,env,customer: the account declares these dimensions first and its charges carry them (as the bench's scenario).
    ...(process.env.METERING_PROFILE_DIMENSIONS ? { dimensions: process.env.METERING_PROFILE_DIMENSIONS.split(',') } : {}),
  });
});
const cpuMs = (cpu() - cpuAtStart) * 1000;
const postgresMs = (postgresCpuSeconds() - postgresAtStart) * 1000; // every local postgres process (the background load's too)
if (background) {
  const b = await backgroundResult;
  console.log(`background RecordCharge at ${backgroundRate}/s: ${Math.round(b.throughput)} calls/s, p50 ${b.latencyMs.p50} ms, p99 ${b.latencyMs.p99} ms, errors ${b.errors} (the server CPU below counts both)`);
  background.kill();
}
// Charges per write (group commit), over the whole run (warm-up included).
const metric = (text, name) => Number(new RegExp(`^${name} (\\S+)$`, 'm').exec(text)?.[1] ?? NaN);
const metrics = await (await fetch(`http://127.0.0.1:${metricsPort}/metrics`)).text();
const batches = metric(metrics, 'metering_write_batch_charges_count');
const mainMs = (mainCpu() - mainAtStart) * 1000;
/** The server's peak RSS so far, MB (VmHWM). */
const peakRssMb = Number(/^VmHWM:\s+(\d+) kB/m.exec(readFileSync(`/proc/${server.pid}/status`, 'utf8'))?.[1] ?? NaN) / 1024;
if (heapFile) {
  server.kill('SIGUSR2');
  for (const deadline = Date.now() + 60_000; !existsSync(heapFile); await new Promise((resolve) => setTimeout(resolve, 100))) {
    if (server.exitCode !== null || Date.now() > deadline) throw new Error(`the server wrote no allocation profile (${server.exitCode !== null ? `it exited with ${server.exitCode}` : 'after 60 s'})`);
  }
}
server.kill('SIGTERM');
await new Promise((resolve) => server.on('exit', resolve));
await admin.query(`DROP DATABASE ${dbName}${citus ? ' WITH (FORCE)' : ''}`);
await admin.end();
for (const w of workers) await onNode(w, `DROP DATABASE ${dbName} WITH (FORCE)`);
console.log(`${method}, ${inFlight} in flight, ${seconds} s on ${adminUrl.replace(/^.*@/, '')}${citus ? ` (Citus, ${workers.length} workers)` : ''}: ${Math.round(result.throughput)} calls/s, p50 ${result.latencyMs.p50} ms, p99 ${result.latencyMs.p99} ms, errors ${result.errors}, server CPU ${(cpuMs / result.calls).toFixed(3)} ms/call (main thread ${(mainMs / result.calls).toFixed(3)}, other threads ${((cpuMs - mainMs) / result.calls).toFixed(3)}), Postgres CPU ${(postgresMs / result.calls).toFixed(3)} ms/call, server peak RSS ${Math.round(peakRssMb)} MB${warmup ? `, after ${warmup} s of warm-up` : ''}${batches ? `, ${(metric(metrics, 'metering_write_batch_charges_sum') / batches).toFixed(1)} charges per write` : ''}`);
const profile = join(dir, readdirSync(dir).find((f) => f.endsWith('.cpuprofile')));
console.log(`profile: ${profile}`);
console.log(execFileSync(process.execPath, [join(root, 'tools/bench/profile-summary.mjs'), profile, '15'], { encoding: 'utf8' }));
if (heapFile) {
  console.log(`allocations: ${heapFile}`);
  console.log(execFileSync(process.execPath, [join(root, 'tools/bench/profile-summary.mjs'), heapFile, '30', String(result.calls)], { encoding: 'utf8' }));
}

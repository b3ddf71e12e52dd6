// `npm run bench [-- --smoke] [-- --duration 10 --scale 100000,10000000]`: bundles the
// server and the benchmark (esbuild), then runs dist/tools/bench/bench.js. See docs/benchmarks.md.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { build } from 'esbuild';

const root = join(import.meta.dirname, '..', '..');
await import('../scripts/build.mjs');
await build({
  entryPoints: ['bench', 'loadgen', 'noop-server'].map((n) => join(root, 'tools/bench/src', `${n}.ts`)),
  outdir: join(root, 'dist/tools/bench'),
  tsconfig: join(root, 'tsconfig.base.json'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  packages: 'external',
  logLevel: 'warning',
});
const child = spawn(process.execPath, [join(root, 'dist/tools/bench/bench.js'), ...process.argv.slice(2)], { stdio: 'inherit', cwd: root });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

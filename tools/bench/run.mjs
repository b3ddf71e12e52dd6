// `npm run bench [-- --smoke] [-- --duration 10 --scale 100000,10000000]`: bundles the
// server and the benchmark (esbuild), then runs dist/tools/bench/bench.js. See docs/benchmarks.md.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { bundle, root } from '../scripts/build.mjs';

await bundle({
  entryPoints: ['bench', 'loadgen', 'noop-server'].map((n) => join(root, 'tools/bench/src', `${n}.ts`)),
  outdir: join(root, 'dist/tools/bench'),
});
const child = spawn(process.execPath, [join(root, 'dist/tools/bench/bench.js'), ...process.argv.slice(2)], { stdio: 'inherit', cwd: root });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

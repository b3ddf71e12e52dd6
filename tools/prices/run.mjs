// `npm run prices:generate [-- --check]`: bundles the price generator (esbuild) and runs it.
// See tools/prices/src/main.ts.
import { build } from 'esbuild';
import { spawnSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const outfile = join(root, 'dist/tools/prices/main.js');
await build({
  entryPoints: [join(root, 'tools/prices/src/main.ts')],
  outfile,
  tsconfig: join(root, 'tsconfig.base.json'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  packages: 'external',
  logLevel: 'warning',
});
const run = spawnSync(process.execPath, [outfile, ...process.argv.slice(2)], { stdio: 'inherit', cwd: root, env: { ...process.env, METERING_ROOT: root } });
process.exit(run.status ?? 1);

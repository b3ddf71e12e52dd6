// Bundles the metering server into dist/apps/metering/main.js with esbuild.
// Our libs (tsconfig path aliases) are bundled in; npm packages stay external.
import { build } from 'esbuild';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
await build({
  entryPoints: [join(root, 'apps/metering/src/main.ts')],
  outfile: join(root, 'dist/apps/metering/main.js'),
  tsconfig: join(root, 'tsconfig.base.json'),
  bundle: true,
  platform: 'node',
  target: 'node20',
  format: 'cjs',
  packages: 'external',
  sourcemap: true,
  logLevel: 'warning',
});

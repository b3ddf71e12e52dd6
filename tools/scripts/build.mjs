// Bundles the metering server into dist/apps/metering/main.js with esbuild
// (run, or imported, it builds the server). Our libs (tsconfig path aliases)
// are bundled in; npm packages stay external. `bundle` serves other entry
// points too (tools/bench).
import { build } from 'esbuild';
import { join } from 'node:path';

export const root = join(import.meta.dirname, '..', '..');

/** Bundles TypeScript entry points for Node 20 (CommonJS, npm packages external). */
export async function bundle(options) {
  await build({
    tsconfig: join(root, 'tsconfig.base.json'),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    packages: 'external',
    logLevel: 'warning',
    ...options,
  });
}

await bundle({ entryPoints: [join(root, 'apps/metering/src/main.ts')], outfile: join(root, 'dist/apps/metering/main.js'), sourcemap: true });

// Bundles the metering server into dist/apps/metering/main.js with esbuild
// (run, or imported, it builds the server). Our libs (tsconfig path aliases)
// are bundled in; npm packages stay external. `bundle` serves other entry
// points too (tools/bench).
import { build } from 'esbuild';
import { mkdirSync, renameSync, writeFileSync } from 'node:fs';
import { dirname, join } from 'node:path';

export const root = join(import.meta.dirname, '..', '..');

/**
 * Bundles TypeScript entry points for Node 20 (CommonJS, npm packages external). Each output file
 * replaces the old one at once (written beside it, then renamed over it): test files running in
 * parallel each rebuild the server while others start it, and a process started during a plain
 * overwrite could read the file empty (and exit 0 without a word) or half written.
 */
export async function bundle(options) {
  const { outputFiles } = await build({
    tsconfig: join(root, 'tsconfig.base.json'),
    bundle: true,
    platform: 'node',
    target: 'node20',
    format: 'cjs',
    packages: 'external',
    logLevel: 'warning',
    ...options,
    write: false,
  });
  for (const file of outputFiles) {
    mkdirSync(dirname(file.path), { recursive: true });
    const written = `${file.path}.${process.pid}.tmp`;
    writeFileSync(written, file.contents);
    renameSync(written, file.path);
  }
}

await bundle({ entryPoints: [join(root, 'apps/metering/src/main.ts')], outfile: join(root, 'dist/apps/metering/main.js'), sourcemap: true });

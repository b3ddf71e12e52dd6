#!/usr/bin/env node
// `npx metering <command> [options]` (the package's bin; also `npm run metering -- ...`, which
// prints npm's banner first): bundles the admin CLI (esbuild, about a second) and runs
// dist/tools/cli/metering.js. `metering --help` lists the commands.
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { bundle, root } from '../scripts/build.mjs';

await bundle({ entryPoints: [join(root, 'tools/cli/src/metering.ts')], outdir: join(root, 'dist/tools/cli') });
const child = spawn(process.execPath, [join(root, 'dist/tools/cli/metering.js'), ...process.argv.slice(2)], { stdio: 'inherit' });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

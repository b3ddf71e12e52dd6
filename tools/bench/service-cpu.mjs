// `node tools/bench/service-cpu.mjs [check|charge] [in flight] [warm-up calls] [measured calls]`:
// bundles and runs tools/bench/src/service-cpu.ts (see there).
import { spawn } from 'node:child_process';
import { join } from 'node:path';
import { bundle, root } from '../scripts/build.mjs';

await bundle({ entryPoints: [join(root, 'tools/bench/src/service-cpu.ts')], outdir: join(root, 'dist/tools/bench') });
const child = spawn(process.execPath, [join(root, 'dist/tools/bench/service-cpu.js'), ...process.argv.slice(2)], { stdio: 'inherit', cwd: root });
child.on('exit', (code) => process.exit(code ?? 1));

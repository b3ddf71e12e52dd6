// `npm start`: bundle the server (about a second) and the dashboard, and run the server in this
// process's place.
// With no DATABASE_URL it runs on the embedded database in .data/pglite. It is the
// development command: unless METERING_AUTH is set, authentication is off (the
// server says so in its log). Deployments run dist/apps/metering/main.js, where
// API keys are required and the operator key must be configured.
import { execFileSync, spawn } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
await import('./build.mjs');
// The dashboard the HTTP port serves at / (Vite, a few seconds).
execFileSync(process.execPath, [join(root, 'node_modules/vite/bin/vite.js'), 'build', '--config', join(root, 'apps/dashboard/vite.config.mjs'), '--logLevel', 'warn'], { stdio: 'inherit' });
// The HTTP port (the API over Connect, and the dashboard at /) on 8080 unless set; the server logs its URL.
const env = { ...process.env, METERING_AUTH: process.env.METERING_AUTH || 'off', METERING_HTTP_PORT: process.env.METERING_HTTP_PORT ?? '8080' };
const child = spawn(process.execPath, ['--enable-source-maps', join(root, 'dist/apps/metering/main.js'), ...process.argv.slice(2)], { stdio: 'inherit', env });
for (const signal of ['SIGINT', 'SIGTERM']) process.on(signal, () => child.kill(signal));
child.on('exit', (code, signal) => process.exit(code ?? (signal ? 1 : 0)));

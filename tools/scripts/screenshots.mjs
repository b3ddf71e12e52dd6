// `npm run screenshots`: regenerates the README's dashboard screenshots (docs/screenshots) by
// running the browser suite (Chromium through playwright-core against the real server, with
// seeded data) with its screenshots pointed there. Needs /usr/bin/chromium (apt-get install chromium).
import { execFileSync } from 'node:child_process';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
execFileSync(process.execPath, [join(root, 'node_modules', 'jest', 'bin', 'jest.js'), '-c', 'apps/metering/jest.config.js', '--runInBand', 'apps/metering/test/e2e/dashboard.e2e.spec.ts'], {
  cwd: root,
  stdio: 'inherit',
  env: { ...process.env, METERING_SCREENSHOT_DIR: join(root, 'docs', 'screenshots'), NODE_OPTIONS: '--experimental-vm-modules' },
});
console.log('screenshots written to docs/screenshots');

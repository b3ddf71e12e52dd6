// `npm run prices:update [-- --version X.Y.Z] [-- --day YYYY-MM-DD]`: bumps the pinned
// @pydantic/genai-prices (to the registry's latest unless --version is given), regenerates
// libs/pricing/src/generated/catalogue.json and prints the report (new models, changed
// prices old -> new with their dates, retired models, disagreements with our curated
// layer). It fails when a curated entry needs a new review. Commit package.json,
// package-lock.json and the catalogue together. The server never fetches prices: this is
// the only way they change.
import { execFileSync, spawnSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

const root = join(import.meta.dirname, '..', '..');
const PACKAGE = '@pydantic/genai-prices';
const args = process.argv.slice(2);
const option = (name) => (args.includes(name) ? args[args.indexOf(name) + 1] : undefined);
const npm = (...a) => execFileSync('npm', a, { cwd: root, stdio: ['ignore', 'pipe', 'inherit'] }).toString().trim();
const pinned = () => JSON.parse(readFileSync(join(root, 'node_modules', PACKAGE, 'package.json'), 'utf8')).version;

const before = pinned();
const target = option('--version') ?? npm('view', PACKAGE, 'version');
if (!/^\d+\.\d+\.\d+$/.test(target)) throw new Error(`not a release version: ${target}`);
const engines = JSON.parse(npm('view', `${PACKAGE}@${target}`, 'engines', '--json') || '{}');
console.log(`${PACKAGE}: pinned ${before}, target ${target} (engines: ${JSON.stringify(engines)})`);
if (engines.node && !/>=\s*(1\d|20)(\.|\s|$)/.test(engines.node)) {
  console.error(`${PACKAGE}@${target} requires node ${engines.node}: Node 20 is the target, not updating`);
  process.exit(1);
}
if (target !== before) {
  execFileSync('npm', ['install', '--save-dev', '--save-exact', `${PACKAGE}@${target}`, '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
  execFileSync(process.execPath, [join(root, 'tools/scripts/lock-platforms.mjs')], { cwd: root, stdio: 'inherit' });
  execFileSync('npm', ['ci', '--no-audit', '--no-fund'], { cwd: root, stdio: 'inherit' });
}
const day = option('--day');
const run = spawnSync(process.execPath, [join(root, 'tools/prices/run.mjs'), ...(day ? ['--day', day] : [])], { cwd: root, stdio: 'inherit' });
console.log(`\n${PACKAGE} ${before} -> ${pinned()}: review the report above, then commit package.json, package-lock.json and libs/pricing/src/generated/catalogue.json`);
process.exit(run.status ?? 1);

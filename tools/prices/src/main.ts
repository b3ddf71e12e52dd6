import { readFileSync, writeFileSync, existsSync } from 'node:fs';
import { join } from 'node:path';
import { waitForUpdate } from '@pydantic/genai-prices';
import { CatalogueFile, CURATED, CURATED_PROVIDERS } from '@metering/pricing';
import { generate, Report } from './ledger';
import { readUpstream } from './upstream';

/**
 * `npm run prices:generate [-- --check] [-- --day YYYY-MM-DD]`: regenerates
 * libs/pricing/src/generated/catalogue.json from the pinned
 * @pydantic/genai-prices, the committed catalogue and libs/pricing/src/curated.ts,
 * and prints the report. With --check it writes nothing and fails when the
 * committed file is not what this generates, or when a curated entry is
 * unreviewed. The data is read through the package's public API
 * (waitForUpdate returns its bundled providers); its calcPrice is never used.
 */

const root = process.env.METERING_ROOT ?? process.cwd();
export const CATALOGUE_PATH = join(root, 'libs/pricing/src/generated/catalogue.json');

/** The catalogue as committed: one model per line, so a price change is a one-line diff. */
export function serialize(file: CatalogueFile): string {
  const lines = [
    '{',
    `"upstream": ${JSON.stringify(file.upstream)},`,
    '"providers": [',
    file.providers.map((p) => JSON.stringify(p)).join(',\n'),
    '],',
    '"models": [',
    file.models.map((m) => JSON.stringify(m)).join(',\n'),
    ']',
    '}',
    '',
  ];
  return lines.join('\n');
}

export function printReport(r: Report, log: (line: string) => void = console.log): void {
  const section = (title: string, items: string[]) => {
    log(`\n${title}: ${items.length}`);
    for (const i of items) log(`  ${i}`);
  };
  log(`${r.upstream}: ${r.models} priced models over ${r.providers} providers`);
  section('new models', r.newModels);
  section('changed prices', r.changed.map((c) => `${c.model} from ${c.effectiveFrom}: ${c.before} -> ${c.after}`));
  section('retired models', r.retired);
  section('disagreements with our curated layer (reviewed)', r.disagreements.map((d) => `${d.model}: ours ${d.ours}; upstream ${d.upstream} (${d.why})`));
  section('UNREVIEWED curated entries (fail)', r.unreviewed);
  section('errors (fail)', r.errors);
  section('upstream dated prices of the past that differ from our rows (ours kept)', r.conflicts);
  section('float artefacts refused', r.artefacts);
  section('upstream models not priced', r.skipped);
  log(`\nupstream match rules dropped (they name no explicit id): ${r.droppedRules}`);
  log(`upstream price keys not billed yet: ${Object.entries(r.unsupportedKeys).map(([k, n]) => `${k} (${n} models)`).join(', ') || 'none'}`);
}

export function upstreamVersion(): string {
  return JSON.parse(readFileSync(join(root, 'node_modules/@pydantic/genai-prices/package.json'), 'utf8')).version;
}

async function main() {
  const args = process.argv.slice(2);
  const check = args.includes('--check');
  const dayArg = args.indexOf('--day');
  const day = dayArg >= 0 ? args[dayArg + 1] : new Date().toISOString().slice(0, 10);
  if (!/^\d{4}-\d{2}-\d{2}$/.test(day)) throw new Error(`--day must be YYYY-MM-DD, got ${day}`);
  const committed = existsSync(CATALOGUE_PATH) ? readFileSync(CATALOGUE_PATH, 'utf8') : undefined;
  const previous = committed ? (JSON.parse(committed) as CatalogueFile) : undefined;
  const data = await waitForUpdate();
  if (!data) throw new Error('@pydantic/genai-prices returned no bundled data');
  const { file, report } = generate({ previous, upstream: readUpstream(data), upstreamVersion: upstreamVersion(), curated: CURATED, curatedProviders: CURATED_PROVIDERS, day });
  printReport(report);
  const text = serialize(file);
  const failures: string[] = [];
  if (report.unreviewed.length) failures.push(`${report.unreviewed.length} curated entries are unreviewed (update their \`reviewed\` after checking them)`);
  if (report.errors.length) failures.push(`${report.errors.length} errors`);
  if (check) {
    if (text !== committed) failures.push(`${CATALOGUE_PATH} is not what ${report.upstream} generates: run \`npm run prices:generate\` and commit`);
    else console.log(`\n${CATALOGUE_PATH} is what ${report.upstream} generates`);
  } else {
    writeFileSync(CATALOGUE_PATH, text);
    console.log(`\nwrote ${CATALOGUE_PATH}`);
  }
  if (failures.length) {
    for (const f of failures) console.error(`FAIL: ${f}`);
    process.exit(1);
  }
}

if (require.main === module) {
  main().catch((e) => {
    console.error(e);
    process.exit(1);
  });
}

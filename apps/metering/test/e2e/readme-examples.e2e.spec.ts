import { stop as stopEsbuild, build } from 'esbuild';
import { join } from 'node:path';
import { databaseTargets, TestDatabase } from '../support/databases';
import { readmeExamples, readmeFiles, where } from '../support/readme-examples';
import { BLOCK_TIMEOUT_MS, checkExample, Previous, SHIMS, writeShims } from '../support/readme-runner';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 18, docs that run: every fenced code block of every README (`git ls-files '*README*'`)
 * runs as written against the real server, started as `npm start` starts it (authentication
 * off, the HTTP port on), one server for the run (a server start is the slow part on a loaded
 * machine), each README's blocks in document order as a reader runs them against one
 * `npm start`: a section's blocks share its state (a limit set, then read), and a README's
 * sections must not trip over each other (idempotency keys). Only the documented
 * default addresses are replaced: 127.0.0.1:50051 by the server's gRPC address and
 * 127.0.0.1:8080 by its HTTP address; METERING_ADDRESS is the gRPC address too, as the CLI's
 * default is 127.0.0.1:50051 without it being written. `npx <bin>` runs the clone's
 * node_modules/.bin/<bin> directly (what npx finds first, without npm's start-up) and
 * `npx metering` the CLI bundled once (what tools/cli/run.mjs bundles and runs). Blocks run
 * in the clone, as a reader runs them, and must leave it as it was (`git status` is compared:
 * an example writes its files under /tmp). sh blocks run with `bash -e -o pipefail`, python
 * blocks with Debian's python3 and the package in clients/python importable, ts blocks are
 * type-checked with the repository's tsc (strict, @metering/client from libs/client) and run
 * with node. What a block's comments say it prints (`# -> {"allowed": true, ...}`,
 * `-> "0.00225"`) must be in its output; a block marked `<!-- example: output -->` is compared
 * the same way with what the block before it printed. The CLI reference's blocks are generated
 * from `metering <command> --help` by tools/cli/reference.mjs, whose --check the CLI suite runs;
 * here the first is compared with `metering --help`. A block this runner cannot run (json,
 * text, another language) fails unless marked (support/readme-examples.ts, support/readme-runner.ts
 * and the README's Development section).
 */

const examples = readmeFiles().flatMap((file) => readmeExamples(file));
const groups = readmeFiles().map((file) => ({ file, examples: examples.filter((e) => e.file === file) }));

let tdb: TestDatabase | undefined;
let server: ServerProcess | undefined;

beforeAll(async () => {
  buildServer();
  writeShims();
  await build({ entryPoints: [join(ROOT, 'tools/cli/src/metering.ts')], outdir: join(ROOT, 'dist/tools/cli'), tsconfig: join(ROOT, 'tsconfig.base.json'), bundle: true, platform: 'node', target: 'node20', format: 'cjs', packages: 'external', logLevel: 'warning' });
  if (!examples.some((e) => e.marker.kind === 'run' && e.lang !== 'other')) return;
  // The Postgres server when the suites have one (CI), else the embedded database as `npm start` runs it.
  const target = databaseTargets().find((t) => t.name === 'postgres') ?? databaseTargets()[0];
  tdb = await target.create();
  const serverEnv = Object.assign({}, ...examples.map((e) => e.serverEnv)) as Record<string, string>;
  // Once more if it did not start in time (startServer's 45 s): a loaded machine, not a README example, failed then.
  const start = () => startServer(tdb!.config, { METERING_HTTP_PORT: '0', ...serverEnv });
  server = await start().catch(start);
}, 300_000);

afterAll(async () => {
  await server?.stop();
  await tdb?.drop();
  await stopEsbuild();
});

it('finds the READMEs and their blocks', () => {
  expect(readmeFiles()).toContain('README.md');
  expect(examples.filter((e) => e.file === 'README.md').length).toBeGreaterThan(10);
});

for (const group of groups) {
  describe(group.file, () => {
    let previous: Previous | undefined;

    for (const example of group.examples) {
      it(
        `${where(example)}: ${example.marker.kind === 'run' ? 'runs as written' : example.marker.kind}`,
        async () => {
          const ran = await checkExample(example, {
            env: { PATH: `${SHIMS}:${process.env.PATH ?? ''}`, METERING_ADDRESS: server?.address ?? '', HOME: process.env.HOME ?? '/tmp', LANG: 'C.UTF-8', PYTHONPATH: join(ROOT, 'clients', 'python') },
            replace: (code) => (server ? code.replaceAll('127.0.0.1:50051', server.address).replaceAll('127.0.0.1:8080', (server.httpUrl ?? '').replace('http://', '')) : code),
            previous,
          }).catch((err: unknown) => {
            // A block that failed is no `previous` for an output block after it.
            if (example.marker.kind === 'run') previous = undefined;
            throw err;
          });
          if (ran) previous = ran;
        },
        BLOCK_TIMEOUT_MS + 30_000,
      );
    }
  });
}

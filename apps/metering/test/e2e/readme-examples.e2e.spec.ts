import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build, stop as stopEsbuild } from 'esbuild';
import { databaseTargets, TestDatabase } from '../support/databases';
import { expectedInComments, outputHas, readmeExamples, readmeFiles, ReadmeExample, where } from '../support/readme-examples';
import { buildServer, ROOT, ServerProcess, startServer } from '../support/server-process';

/**
 * Issue 18, docs that run: every fenced code block of every README (`git ls-files '*README*'`)
 * runs as written against the real server, started as `npm start` starts it (authentication
 * off, the HTTP port on), one server per README, its blocks in document order as a reader runs
 * them against one `npm start`: a section's blocks share its state (a limit set, then read),
 * and a README's sections must not trip over each other (idempotency keys). Only the documented
 * default addresses are replaced: 127.0.0.1:50051 by the server's gRPC address and
 * 127.0.0.1:8080 by its HTTP address; METERING_ADDRESS is the gRPC address too, as the CLI's
 * default is 127.0.0.1:50051 without it being written. `npx <bin>` runs the clone's
 * node_modules/.bin/<bin> directly (what npx finds first, without npm's start-up) and
 * `npx metering` the CLI bundled once (what tools/cli/run.mjs bundles and runs). Blocks run
 * in the clone, as a reader runs them, and must leave it as it was (`git status` is compared:
 * an example writes its files under /tmp). sh blocks run with `bash -e -o pipefail`, python blocks with Debian's python3 and the
 * package in clients/python importable, ts blocks are type-checked with the repository's tsc
 * (strict, @metering/client from libs/client) and run with node. What a block's comments say it
 * prints (`# -> {"allowed": true, ...}`, `-> "0.00225"`) must be in its output; a block marked
 * `<!-- example: output -->` is compared the same way with what the block before it printed.
 * The CLI reference's blocks are generated from `metering <command> --help` by
 * tools/cli/reference.mjs, whose --check the CLI suite runs; here the first is compared with
 * `metering --help` and the rest are checked to be in the generated section. A block this runner
 * cannot run (json, text, another language) fails unless marked (see support/readme-examples.ts
 * and the README's Development section).
 */

const examples = readmeFiles().flatMap(readmeExamples);
const groups = readmeFiles().map((file) => ({ file, examples: examples.filter((e) => e.file === file) }));

const PYTHON = '/usr/bin/python3';
const pythonReady = () => spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' }).status === 0;
const CLI = join(ROOT, 'dist', 'tools', 'cli', 'metering.js');
const BLOCK_TIMEOUT_MS = 240_000;

interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  timedOut: boolean;
  /** sh: bash's trace (`set -x` on fd 3), whose last line is the command that failed. */
  trace?: string;
}

/**
 * Runs a command in its own process group and, once it exits, ends the group: what a block left
 * running in the background (a webhook receiver) does not outlive it.
 */
function run(file: string, args: string[], options: { cwd: string; env: Record<string, string>; input?: string; timeoutMs?: number }): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { cwd: options.cwd, env: options.env, detached: true, stdio: ['pipe', 'pipe', 'pipe', 'pipe'] });
    let output = '';
    let trace = '';
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (trace += d.toString()));
    child.stdout.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr.on('data', (d: Buffer) => (output += d.toString()));
    child.stdin.end(options.input ?? '');
    let timedOut = false;
    const timer = setTimeout(() => {
      timedOut = true;
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* gone */
      }
    }, options.timeoutMs ?? BLOCK_TIMEOUT_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      try {
        process.kill(-child.pid!, 'SIGKILL');
      } catch {
        /* the group is gone already */
      }
      // Output still in the pipes arrives before 'close'; a background child holding them is dead now.
      const done = () => resolve({ code, signal, output, timedOut, trace });
      child.once('close', done);
      setTimeout(done, 2000);
    });
  });
}

const excerpt = (text: string, lines = 40) => {
  const all = text.trimEnd().split('\n');
  return (all.length > lines ? [`... (${all.length - lines} lines before)`, ...all.slice(-lines)] : all).map((l) => `  | ${l}`).join('\n');
};

function failure(example: ReadmeExample, what: string, command: string, ran?: Ran): Error {
  const how = ran ? (ran.timedOut ? `timed out after ${BLOCK_TIMEOUT_MS / 1000} s` : ran.signal ? `killed by ${ran.signal}` : `exit code ${ran.code}`) : '';
  // The last command bash started (PS4 carries its line in the block): the one that failed or hung.
  const last = [...(ran?.trace ?? '').matchAll(/^\+{1,} @(\d+)@ (.*)$/gm)].pop();
  const at = last && ran?.code !== 0 ? [`the last command run: ${example.file}:${example.line + Number(last[1])}: ${last[2]}`] : [];
  return new Error(
    [`${where(example)}: ${what}${how ? ` (${how})` : ''}`, ...at, 'block (as run: only the default addresses replaced):', excerpt(command, 30), ...(ran ? ['output (stdout and stderr):', excerpt(ran.output || '(none)')] : [])].join('\n'),
  );
}

/** What git sees in the checkout besides ignored files: a block must not change it. */
const checkout = () => execFileSync('git', ['status', '--porcelain', '--untracked-files=all'], { cwd: ROOT, encoding: 'utf8' });
/** Where ts blocks are compiled: ignored by git, inside the clone so that node_modules resolves. */
const TS_DIR = join(ROOT, 'dist', 'readme-examples');

/** A folder with `npx` first on PATH: the clone's own bins without npm's start-up, else the real npx. */
const SHIMS = join(ROOT, 'dist', 'readme-shims');
function writeShims(): void {
  const npx = execFileSync('bash', ['-c', 'command -v npx'], { encoding: 'utf8' }).trim();
  mkdirSync(SHIMS, { recursive: true });
  writeFileSync(
    join(SHIMS, 'npx'),
    [
      '#!/usr/bin/env bash',
      `if [ "$1" = metering ]; then shift; exec "${process.execPath}" "${CLI}" "$@"; fi`,
      `if [ -n "$1" ] && [ -x "${ROOT}/node_modules/.bin/$1" ]; then bin=$1; shift; exec "${ROOT}/node_modules/.bin/$bin" "$@"; fi`,
      `exec "${npx}" "$@"`,
      '',
    ].join('\n'),
    { mode: 0o755 },
  );
}

afterAll(() => stopEsbuild());

beforeAll(async () => {
  buildServer();
  writeShims();
  await build({ entryPoints: [join(ROOT, 'tools/cli/src/metering.ts')], outdir: join(ROOT, 'dist/tools/cli'), tsconfig: join(ROOT, 'tsconfig.base.json'), bundle: true, platform: 'node', target: 'node20', format: 'cjs', packages: 'external', logLevel: 'warning' });
}, 180_000);

it('finds the READMEs and their blocks', () => {
  expect(readmeFiles()).toContain('README.md');
  expect(examples.filter((e) => e.file === 'README.md').length).toBeGreaterThan(10);
});

for (const group of groups) {
  describe(group.file, () => {
    const runnable = group.examples.filter((e) => e.marker.kind === 'run' && e.lang !== 'other');
    let tdb: TestDatabase | undefined;
    let server: ServerProcess | undefined;
    const dir = ROOT;
    let previous: { example: ReadmeExample; output: string; ok: boolean } | undefined;

    if (runnable.length > 0) {
      beforeAll(async () => {
        // The Postgres server when the suites have one (CI), else the embedded database as `npm start` runs it.
        const target = databaseTargets().find((t) => t.name === 'postgres') ?? databaseTargets()[0];
        tdb = await target.create();
        const serverEnv = Object.assign({}, ...group.examples.map((e) => e.serverEnv)) as Record<string, string>;
        server = await startServer(tdb.config, { METERING_HTTP_PORT: '0', ...serverEnv });
      }, 120_000);
      afterAll(async () => {
        await server?.stop();
        await tdb?.drop();
      });
    }

    const env = (): Record<string, string> => ({ PATH: `${SHIMS}:${process.env.PATH ?? ''}`, METERING_ADDRESS: server!.address, HOME: process.env.HOME ?? '/tmp', LANG: 'C.UTF-8', PYTHONPATH: join(ROOT, 'clients', 'python') });
    const addresses = (code: string) => code.replaceAll('127.0.0.1:50051', server!.address).replaceAll('127.0.0.1:8080', server!.httpUrl!.replace('http://', ''));

    for (const example of group.examples) {
      const m = example.marker;
      const title = `${where(example)}: ${m.kind === 'run' ? 'runs as written' : m.kind}`;
      it(
        title,
        async () => {
          if (m.kind === 'invalid') throw failure(example, `unknown marker "<!-- example: ${m.text} -->" (not run, <reason> | run by <path> | output | server env K=V)`, example.code);
          if (m.kind === 'not run') {
            expect(m.reason.length).toBeGreaterThan(5);
            return;
          }
          if (m.kind === 'run by') {
            if (!existsSync(join(ROOT, m.path))) throw failure(example, `marked "run by ${m.path}", which does not exist`, example.code);
            return;
          }
          if (m.kind === 'cli help') {
            // The whole reference is what `node tools/cli/reference.mjs --check` checks, in the CLI suite.
            const cliSuite = readFileSync(join(ROOT, 'apps/metering/test/e2e/cli.e2e.spec.ts'), 'utf8');
            if (!/reference\.mjs'\), '--check'\]/.test(cliSuite)) throw failure(example, 'the CLI suite no longer runs tools/cli/reference.mjs --check', example.code);
            if (m.command.length > 0) return;
            const help = spawnSync(process.execPath, [CLI, ...m.command, '--help'], { env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8' });
            if (help.stdout.trimEnd() !== example.code.trimEnd())
              throw failure(example, `differs from \`metering ${m.command.join(' ')} --help\` (regenerate the reference: node tools/cli/reference.mjs)`, example.code, { code: help.status, signal: null, output: help.stdout, timedOut: false });
            return;
          }
          if (m.kind === 'output') {
            if (!previous?.ok) throw failure(example, 'marked output, but the block before it in its section did not run or failed', example.code);
            const wanted = expectedInComments(example.code.replace(/^/gm, '# -> '), 'sh');
            const missing = wanted.filter((w) => !outputHas(previous!.output, w));
            if (missing.length) throw failure(example, `shows ${missing.join(', ')}, which ${where(previous.example)} did not print`, example.code, { code: 0, signal: null, output: previous.output, timedOut: false });
            return;
          }
          if (example.lang === 'other')
            throw failure(example, `a \`\`\`${example.info || '(no language)'} block this runner cannot run: run it (sh, python, ts), or mark it just above the fence with <!-- example: not run, <why> -->, <!-- example: output --> or <!-- example: run by <test file> -->`, example.code);

          previous = { example, output: '', ok: false };
          const code = addresses(example.code);
          const before = checkout();
          let ran: Ran;
          if (example.lang === 'sh') {
            // Traced to fd 3 with each command's line (set on the block's first line: its line numbers stay).
            ran = await run('bash', ['-e', '-o', 'pipefail', '-c', `BASH_XTRACEFD=3; PS4='+ @\${LINENO}@ '; set -x; ${code}`], { cwd: dir, env: env() });
          } else if (example.lang === 'python') {
            if (!pythonReady()) {
              if (process.env.CI) throw failure(example, `${PYTHON} cannot import grpc and google.protobuf: install Debian's python3-grpcio and python3-protobuf (.ci/run does)`, code);
              console.warn(`${where(example)} not run: ${PYTHON} cannot import grpc (apt-get install python3-grpcio python3-protobuf)`);
              return;
            }
            ran = await run(PYTHON, ['-'], { cwd: dir, env: env(), input: code });
          } else {
            // ts: type-checked (strict, as the client's users compile) and run.
            rmSync(TS_DIR, { recursive: true, force: true });
            mkdirSync(TS_DIR, { recursive: true });
            writeFileSync(join(TS_DIR, 'example.ts'), code);
            writeFileSync(join(TS_DIR, 'tsconfig.json'), JSON.stringify({ extends: join(ROOT, 'tsconfig.base.json'), compilerOptions: { noEmit: true }, files: ['example.ts'] }));
            ran = await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(TS_DIR, 'tsconfig.json')], { cwd: dir, env: env() });
            if (ran.code === 0) {
              await build({ entryPoints: [join(TS_DIR, 'example.ts')], outfile: join(TS_DIR, 'example.js'), tsconfig: join(ROOT, 'tsconfig.base.json'), bundle: true, platform: 'node', target: 'node20', format: 'cjs', packages: 'external', logLevel: 'warning' });
              ran = await run(process.execPath, [join(TS_DIR, 'example.js')], { cwd: dir, env: env(), timeoutMs: 60_000 });
            }
          }
          if (ran.code !== 0 || ran.timedOut) throw failure(example, 'does not run as written', code, ran);
          const after = checkout();
          if (after !== before) throw failure(example, `changed the checkout (git status before:\n${before || '(clean)'}\nafter:\n${after}): write under /tmp instead`, code, ran);
          const missing = expectedInComments(example.code, example.lang).filter((w) => !outputHas(ran.output, w));
          if (missing.length) throw failure(example, `its comments say it prints ${missing.join(', ')}, which is not in its output`, code, ran);
          previous = { example, output: ran.output, ok: true };
        },
        BLOCK_TIMEOUT_MS + 30_000,
      );
    }
  });
}

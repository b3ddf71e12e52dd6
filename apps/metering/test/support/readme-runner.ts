import { execFileSync, spawn, spawnSync } from 'node:child_process';
import { existsSync, mkdirSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';
import { build } from 'esbuild';
import { expectedInComments, outputHas, ReadmeExample, where } from './readme-examples';
import { ROOT } from './server-process';

/**
 * How test/e2e/readme-examples.e2e.spec.ts checks one README block (test/unit/readme-runner.spec.ts
 * checks that each way of failing says where and how). See the README's Development section.
 */

export const PYTHON = '/usr/bin/python3';
export const CLI = join(ROOT, 'dist', 'tools', 'cli', 'metering.js');
export const BLOCK_TIMEOUT_MS = 240_000;
/** Where ts blocks are compiled: ignored by git, inside the clone so that node_modules resolves. */
const TS_DIR = join(ROOT, 'dist', 'readme-examples');
/** A folder put first on PATH with an `npx` that runs the clone's own bins without npm's start-up. */
export const SHIMS = join(ROOT, 'dist', 'readme-shims');

const pythonReady = () => spawnSync(PYTHON, ['-c', 'import grpc, google.protobuf'], { stdio: 'ignore' }).status === 0;

export interface Ran {
  code: number | null;
  signal: NodeJS.Signals | null;
  output: string;
  timedOut: boolean;
  /** sh: bash's trace (`set -x` on fd 3), whose last line is the command that failed. */
  trace?: string;
}

/** The block run before, for an `output` block. */
export interface Previous {
  example: ReadmeExample;
  output: string;
  ok: boolean;
}

export interface Context {
  /** The environment blocks run with. */
  env: Record<string, string>;
  /** The block's text as run (the default addresses replaced). */
  replace(code: string): string;
  /** The last run block of the README, if any. */
  previous?: Previous;
  /** Whether a block may not change `git status` (default true). */
  checkCheckout?: boolean;
}

/**
 * Runs a command in its own process group and, once it exits, ends the group: what a block left
 * running in the background (a webhook receiver) does not outlive it.
 */
export function run(file: string, args: string[], options: { cwd: string; env: Record<string, string>; input?: string; timeoutMs?: number }): Promise<Ran> {
  return new Promise((resolve) => {
    const child = spawn(file, args, { cwd: options.cwd, env: options.env, detached: true, stdio: [options.input === undefined ? 'ignore' : 'pipe', 'pipe', 'pipe', 'pipe'] });
    let output = '';
    let trace = '';
    (child.stdio[3] as NodeJS.ReadableStream).on('data', (d: Buffer) => (trace += d.toString()));
    child.stdout?.on('data', (d: Buffer) => (output += d.toString()));
    child.stderr?.on('data', (d: Buffer) => (output += d.toString()));
    child.stdin?.end(options.input);
    let timedOut = false;
    const killGroup = () => {
      try {
        if (child.pid) process.kill(-child.pid, 'SIGKILL');
      } catch {
        /* the group is gone already */
      }
    };
    const timer = setTimeout(() => {
      timedOut = true;
      killGroup();
    }, options.timeoutMs ?? BLOCK_TIMEOUT_MS);
    child.once('exit', (code, signal) => {
      clearTimeout(timer);
      killGroup();
      // Output still in the pipes arrives before 'close'; a background child holding them is dead now.
      const done = () => {
        clearTimeout(fallback);
        resolve({ code, signal, output, timedOut, trace });
      };
      const fallback = setTimeout(done, 2000);
      child.once('close', done);
    });
  });
}

const excerpt = (text: string, lines = 40) => {
  const all = text.trimEnd().split('\n');
  return (all.length > lines ? [`... (${all.length - lines} lines before)`, ...all.slice(-lines)] : all).map((l) => `  | ${l}`).join('\n');
};

/** The failure of a block: README, line, heading, what went wrong, the command that failed, the block as run, its output. */
export function failure(example: ReadmeExample, what: string, command: string, ran?: Ran): Error {
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

/** Writes SHIMS/npx: `npx metering` runs the CLI bundled once, `npx <bin>` node_modules/.bin/<bin>, anything else the real npx. */
export function writeShims(): void {
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

/**
 * Checks one block as its marker says; throws a failure() when it does not hold. Returns what a
 * run block printed (the `previous` of the next block), or undefined for a block not run.
 */
export async function checkExample(example: ReadmeExample, context: Context): Promise<Previous | undefined> {
  const m = example.marker;
  if (m.kind === 'invalid') throw failure(example, `unknown marker "<!-- example: ${m.text} -->" (not run, <reason> | run by <path> | output | server env K=V)`, example.code);
  if (m.kind === 'not run') {
    if (m.reason.length < 6) throw failure(example, 'marked not run without a reason', example.code);
    return undefined;
  }
  if (m.kind === 'run by') {
    if (!existsSync(join(ROOT, m.path))) throw failure(example, `marked "run by ${m.path}", which does not exist`, example.code);
    return undefined;
  }
  if (m.kind === 'cli help') {
    // The whole reference is what `node tools/cli/reference.mjs --check` checks, in the CLI suite.
    const cliSuite = readFileSync(join(ROOT, 'apps/metering/test/e2e/cli.e2e.spec.ts'), 'utf8');
    if (!/reference\.mjs'\), '--check'\]/.test(cliSuite)) throw failure(example, 'the CLI suite no longer runs tools/cli/reference.mjs --check', example.code);
    if (m.command.length > 0) return undefined;
    const help = spawnSync(process.execPath, [CLI, ...m.command, '--help'], { env: { PATH: process.env.PATH ?? '' }, encoding: 'utf8' });
    if (help.stdout.trimEnd() !== example.code.trimEnd())
      throw failure(example, `differs from \`metering ${m.command.join(' ')} --help\` (regenerate the reference: node tools/cli/reference.mjs)`, example.code, { code: help.status, signal: null, output: help.stdout, timedOut: false });
    return undefined;
  }
  const previous = context.previous;
  if (m.kind === 'output') {
    if (!previous?.ok) throw failure(example, 'marked output, but no block before it ran, or the one before it failed', example.code);
    const wanted = expectedInComments(example.code.replace(/^/gm, '# -> '), 'sh');
    const missing = wanted.filter((w) => !outputHas(previous.output, w));
    if (missing.length) throw failure(example, `shows ${missing.join(', ')}, which ${where(previous.example)} did not print`, example.code, { code: 0, signal: null, output: previous.output, timedOut: false });
    return undefined;
  }
  if (example.lang === 'other')
    throw failure(example, `a \`\`\`${example.info || '(no language)'} block this runner cannot run: run it (sh, python, ts), or mark it just above the fence with <!-- example: not run, <why> -->, <!-- example: output --> or <!-- example: run by <test file> -->`, example.code);

  const code = context.replace(example.code);
  const before = context.checkCheckout === false ? '' : checkout();
  let ran: Ran;
  if (example.lang === 'sh') {
    // Traced to fd 3 with each command's line (set on the block's first line: its line numbers stay).
    // --norc: node's pipes are sockets, and bash reads ~/.bashrc when its input is one.
    ran = await run('bash', ['--norc', '-e', '-o', 'pipefail', '-c', `BASH_XTRACEFD=3; PS4='+ @\${LINENO}@ '; set -x; ${code}`], { cwd: ROOT, env: context.env });
  } else if (example.lang === 'python') {
    if (!pythonReady()) {
      if (process.env.CI) throw failure(example, `${PYTHON} cannot import grpc and google.protobuf: install Debian's python3-grpcio and python3-protobuf (.ci/run does)`, code);
      console.warn(`${where(example)} not run: ${PYTHON} cannot import grpc (apt-get install python3-grpcio python3-protobuf)`);
      return undefined;
    }
    ran = await run(PYTHON, ['-'], { cwd: ROOT, env: context.env, input: code });
  } else {
    // ts: type-checked (strict, as the client's users compile) and run.
    rmSync(TS_DIR, { recursive: true, force: true });
    mkdirSync(TS_DIR, { recursive: true });
    writeFileSync(join(TS_DIR, 'example.ts'), code);
    writeFileSync(join(TS_DIR, 'tsconfig.json'), JSON.stringify({ extends: join(ROOT, 'tsconfig.base.json'), compilerOptions: { noEmit: true }, files: ['example.ts'] }));
    ran = await run(process.execPath, [join(ROOT, 'node_modules/typescript/bin/tsc'), '-p', join(TS_DIR, 'tsconfig.json')], { cwd: ROOT, env: context.env });
    if (ran.code === 0) {
      await build({ entryPoints: [join(TS_DIR, 'example.ts')], outfile: join(TS_DIR, 'example.js'), tsconfig: join(ROOT, 'tsconfig.base.json'), bundle: true, platform: 'node', target: 'node20', format: 'cjs', packages: 'external', logLevel: 'warning' });
      ran = await run(process.execPath, [join(TS_DIR, 'example.js')], { cwd: ROOT, env: context.env, timeoutMs: 60_000 });
    }
  }
  if (ran.code !== 0 || ran.timedOut) throw failure(example, 'does not run as written', code, ran);
  if (context.checkCheckout !== false) {
    const after = checkout();
    if (after !== before) throw failure(example, `changed the checkout (git status before:\n${before || '(clean)'}\nafter:\n${after}): write under /tmp instead`, code, ran);
  }
  const missing = expectedInComments(example.code, example.lang).filter((w) => !outputHas(ran.output, w));
  if (missing.length) throw failure(example, `its comments say it prints ${missing.join(', ')}, which is not in its output`, code, ran);
  return { example, output: ran.output, ok: true };
}

import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './server-process';

/**
 * Every fenced code block of every README in the repository, with where it is and how it is
 * checked (test/e2e/readme-examples.e2e.spec.ts runs them). A block is run unless an HTML comment
 * just before it (blank lines and other comments may sit between) says otherwise:
 *
 *   <!-- example: not run, <reason> -->       shown, never run; the reason is required
 *   <!-- example: run by <path>, <reason?> --> run as written by another test (the file must exist)
 *   <!-- example: output -->                   what the run block before it printed, compared loosely
 *   <!-- example: server env K=V ... -->       run, on a server started with these variables
 *
 * Blocks between the CLI reference's generated markers are `metering ... --help` as printed.
 */

export type Lang = 'sh' | 'python' | 'ts' | 'other';

export type Marker =
  | { kind: 'run' }
  | { kind: 'not run'; reason: string }
  | { kind: 'run by'; path: string; reason: string }
  | { kind: 'output' }
  | { kind: 'cli help'; command: string[] }
  | { kind: 'invalid'; text: string };

export interface ReadmeExample {
  /** The README's path in the repository, e.g. `README.md`. */
  file: string;
  /** Line of the opening fence (1-based). */
  line: number;
  /** The info string as written (`sh`, `json`, ``). */
  info: string;
  lang: Lang;
  /** The nearest `##` heading above it (its group: one server per group). */
  section: string;
  /** The nearest heading of any level above it. */
  heading: string;
  code: string;
  marker: Marker;
  /** Server environment asked for by `<!-- example: server env ... -->`. */
  serverEnv: Record<string, string>;
}

const LANGS: Record<string, Lang> = { sh: 'sh', bash: 'sh', shell: 'sh', python: 'python', py: 'python', ts: 'ts', typescript: 'ts' };

/** Every README tracked by git (`git ls-files '*README*'`), in path order. */
export function readmeFiles(): string[] {
  return execFileSync('git', ['ls-files', '*README*', '**/README*'], { cwd: ROOT, encoding: 'utf8' })
    .split('\n')
    .filter((f) => /(^|\/)README(\.[a-z]+)?$/i.test(f) && f.endsWith('.md'))
    .filter((f, i, all) => all.indexOf(f) === i)
    .sort();
}

function parseMarker(text: string): Marker {
  const body = text.trim();
  let m: RegExpExecArray | null;
  if ((m = /^not run,\s*(\S[\s\S]*)$/.exec(body))) return { kind: 'not run', reason: m[1].trim() };
  if ((m = /^run by\s+(\S+?)(?:,\s*([\s\S]*))?$/.exec(body))) return { kind: 'run by', path: m[1], reason: (m[2] ?? '').trim() };
  if (/^output\b/.test(body)) return { kind: 'output' };
  return { kind: 'invalid', text: body };
}

/** The examples of one README (its text read from the clone unless given). */
export function readmeExamples(file: string, text = readFileSync(join(ROOT, file), 'utf8')): ReadmeExample[] {
  const lines = text.split('\n');
  const out: ReadmeExample[] = [];
  let section = '';
  let heading = '';
  let inCliReference = false;
  for (let i = 0; i < lines.length; i++) {
    const line = lines[i];
    if (line.startsWith('<!-- cli-reference:start')) inCliReference = true;
    if (line.startsWith('<!-- cli-reference:end')) inCliReference = false;
    const h = /^(#{1,6})\s+(.*)$/.exec(line);
    if (h) {
      heading = line;
      if (h[1].length <= 2) section = line;
      continue;
    }
    const fence = /^(\s*)(`{3,})\s*([^`\s]*)\s*$/.exec(line);
    if (!fence) continue;
    const [, indent, ticks, info] = fence;
    const start = i;
    const body: string[] = [];
    for (i++; i < lines.length && !new RegExp(`^\\s*${ticks}\\s*$`).test(lines[i]); i++) body.push(lines[i].startsWith(indent) ? lines[i].slice(indent.length) : lines[i]);
    // The comments right above the fence (skipping blank lines and other comments).
    let marker: Marker = { kind: 'run' };
    const serverEnv: Record<string, string> = {};
    for (let j = start - 1; j >= 0; j--) {
      const above = lines[j].trim();
      if (above === '') continue;
      const c = /^<!--\s*([\s\S]*?)\s*-->$/.exec(above);
      if (!c) break;
      const ex = /^example:\s*([\s\S]*)$/.exec(c[1]);
      if (!ex) continue;
      const env = /^server env\s+(.*)$/.exec(ex[1]);
      if (env) {
        for (const pair of env[1].trim().split(/\s+/)) {
          const [k, ...v] = pair.split('=');
          serverEnv[k] = v.join('=');
        }
      } else if (marker.kind === 'run') {
        marker = parseMarker(ex[1]);
      }
    }
    const cmd = /^### `(metering(?: [a-z]+)*)`$/.exec(heading);
    if (inCliReference && marker.kind === 'run') marker = cmd ? { kind: 'cli help', command: cmd[1].split(' ').slice(1) } : { kind: 'invalid', text: `a block in the CLI reference under "${heading}", which names no command` };
    out.push({ file, line: start + 1, info, lang: LANGS[info] ?? 'other', section, heading, code: body.join('\n'), marker, serverEnv });
  }
  return out;
}

/** `README.md:52 (## Try it)`: where a block is, for failure messages. */
export function where(example: ReadmeExample): string {
  const under = example.heading && example.heading !== example.section ? `${example.section} > ${example.heading}` : example.section;
  return `${example.file}:${example.line} (${under || 'top'}, \`\`\`${example.info || '(no language)'} block)`;
}

/**
 * What the block's comments say it prints: `# -> {"allowed": true, "held_cost": {"amount": "0.011"}}`
 * and `-> "0.00225"`: each concrete `"key": value` pair (snake_case keys are looked for in
 * camelCase too, as buf curl prints them) and each quoted value after an arrow. "..." is anything.
 */
export function expectedInComments(code: string, lang: Lang): string[] {
  const comment = lang === 'sh' || lang === 'python' ? /#\s*(.*)$/ : /\/\/\s*(.*)$/;
  const wanted: string[] = [];
  for (const line of code.split('\n')) {
    const c = comment.exec(line);
    if (!c || !c[1].includes('->')) continue;
    const text = c[1].slice(c[1].indexOf('->') + 2);
    for (const m of text.matchAll(/"(\w+)":\s*("(?:[^"\\]|\\.)*"|true|false|-?\d+(?:\.\d+)?)/g)) {
      if (m[2] === '"..."') continue;
      wanted.push(`"${m[1]}": ${m[2]}`);
    }
    if (!/"\w+":/.test(text)) for (const m of text.matchAll(/"([^"]+)"/g)) if (m[1] !== '...') wanted.push(`"${m[1]}"`);
  }
  return wanted;
}

const camel = (key: string) => key.replace(/_([a-z0-9])/g, (_, c: string) => c.toUpperCase());

/** Whether `output` holds `wanted` (a `"key": value` pair, spacing and key case loose, or a quoted value). */
export function outputHas(output: string, wanted: string): boolean {
  const pair = /^"(\w+)": (.*)$/.exec(wanted);
  const esc = (s: string) => s.replace(/[.*+?^${}()|[\]\\]/g, '\\$&');
  if (!pair) return output.includes(wanted);
  const keys = [...new Set([pair[1], camel(pair[1])])].map(esc).join('|');
  return new RegExp(`"(?:${keys})"\\s*:\\s*${esc(pair[2])}`).test(output);
}

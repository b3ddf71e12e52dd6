import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { ROOT } from './server-process';

/** The first ```lang code block after `heading` (a line of the file, e.g. "### TypeScript (Node 20)"), as written. */
export function readmeBlock(heading: string, lang: string, file = 'README.md'): string {
  const text = readFileSync(join(ROOT, file), 'utf8');
  const at = text.split('\n').findIndex((line) => line === heading);
  if (at < 0) throw new Error(`${file} has no heading "${heading}"`);
  const rest = text.split('\n').slice(at + 1).join('\n');
  const block = new RegExp('```' + lang + '\\n([\\s\\S]*?)\\n```').exec(rest);
  if (!block) throw new Error(`${file}: no \`\`\`${lang} block after "${heading}"`);
  return block[1];
}

import { ESLint } from 'eslint';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';

/**
 * Costs never use JS floating point: the money code (cost.ts, money.ts) is
 * linted with a rule that bans number arithmetic. This proves the rule is on
 * and bites, and that the money code as committed passes it.
 */
const root = join(__dirname, '..', '..', '..');
const lint = async (code: string, file: string) => {
  const [result] = await new ESLint({ cwd: root }).lintText(code, { filePath: join(root, file) });
  return result.messages.filter((m) => m.ruleId === 'no-restricted-syntax').map((m) => m.message);
};

describe('money code lint', () => {
  it.each([
    ['const cost = 0.1 + 0.2;', 'operators'],
    ['let total = 0; total += 1;', 'operators'],
    ['let n = 0; n++;', '++'],
    ['const r = Math.round(2.5);', 'Math'],
    ['const p = parseFloat("0.1");', 'parse'],
    ['const x = 1; const y = -x;', 'negated'],
  ])('rejects %s in cost.ts', async (code, expected) => {
    const messages = await lint(code, 'libs/pricing/src/cost.ts');
    expect(messages.length).toBeGreaterThan(0);
    expect(messages.join(' ')).toContain(expected);
  });

  it('accepts Dec arithmetic, and the committed cost.ts and money.ts', async () => {
    expect(await lint("import { Dec } from './money';\nexport const c = new Dec('0.1').plus('0.2');\n", 'libs/pricing/src/cost.ts')).toEqual([]);
    for (const file of ['libs/pricing/src/cost.ts', 'libs/pricing/src/money.ts']) {
      expect(await lint(readFileSync(join(root, file), 'utf8'), file)).toEqual([]);
    }
  });

  it('leaves other code alone', async () => {
    expect(await lint('export const n = 1 + 2;', 'libs/pricing/src/tokens.ts')).toEqual([]);
  });
});

import { readmeExamples } from '../support/readme-examples';
import { checkExample, Context } from '../support/readme-runner';

/**
 * The README runner's ways of failing (test/e2e/readme-examples.e2e.spec.ts runs the real READMEs
 * with it): each says which README, line and heading, and how (the command that failed with its
 * README line, the exit code, the output), so that a new example nobody can run fails CI.
 */

const context = (previous?: Context['previous']): Context => ({ env: { PATH: process.env.PATH ?? '' }, replace: (code) => code, previous, checkCheckout: false });
const one = (text: string) => readmeExamples('DOC.md', `# Doc\n## Section\n${text}`);

describe('checkExample', () => {
  it('runs an sh block and returns what it printed', async () => {
    const [e] = one('```sh\necho \'{"allowed": true}\'   # -> "allowed": true\n```\n');
    await expect(checkExample(e, context())).resolves.toMatchObject({ output: '{"allowed": true}\n', ok: true });
  });

  it('names the README line of the command that failed, the exit code and the output', async () => {
    const [e] = one('Text.\n\n```sh\necho before\nfalse\necho after\n```\n');
    const err = await checkExample(e, context()).catch((x: Error) => x);
    expect(err).toBeInstanceOf(Error);
    const message = (err as Error).message;
    expect(message).toContain('DOC.md:5 (## Section, ```sh block): does not run as written (exit code 1)');
    expect(message).toContain('the last command run: DOC.md:7: false');
    expect(message).toContain('  | before');
    expect(message).not.toContain('  | after\n');
  });

  it('fails when a comment says the block prints what it did not', async () => {
    const [e] = one('```sh\necho \'{"totalCost": {"amount": "0.002"}}\'   # -> "amount": "0.00225"\n```\n');
    await expect(checkExample(e, context())).rejects.toThrow('DOC.md:3 (## Section, ```sh block): its comments say it prints "amount": "0.00225", which is not in its output');
  });

  it('fails on an unmarked block it cannot run, saying how to mark it', async () => {
    const [e] = one('### Sub\n```json\n{"a": 1}\n```\n');
    await expect(checkExample(e, context())).rejects.toThrow('DOC.md:4 (## Section > ### Sub, ```json block): a ```json block this runner cannot run: run it (sh, python, ts), or mark it just above the fence with <!-- example: not run, <why> -->');
  });

  it('fails on an unknown marker, and on run by a file that does not exist', async () => {
    const [bad, missing] = one('<!-- example: skip -->\n```json\n{}\n```\n<!-- example: run by test/nowhere.spec.ts -->\n```sh\nexit 1\n```\n');
    await expect(checkExample(bad, context())).rejects.toThrow('unknown marker "<!-- example: skip -->"');
    await expect(checkExample(missing, context())).rejects.toThrow('marked "run by test/nowhere.spec.ts", which does not exist');
  });

  it('takes a marked block without running it: not run with its reason, run by an existing test', async () => {
    const [notRun, runBy] = one('<!-- example: not run, it follows the stream until Ctrl-C -->\n```sh\nexit 1\n```\n<!-- example: run by apps/metering/test/e2e/http.e2e.spec.ts, with a key -->\n```sh\nexit 1\n```\n');
    await expect(checkExample(notRun, context())).resolves.toBeUndefined();
    await expect(checkExample(runBy, context())).resolves.toBeUndefined();
  });

  it('compares an output block with what the block before it printed', async () => {
    const [run, shown] = one('```sh\necho \'{"code":"invalid_argument","field":"prompt_tokens","request_id":"r-1"}\'\n```\n<!-- example: output -->\n```json\n{"code":"invalid_argument","field":"prompt_tokens","request_id":"..."}\n```\n');
    const previous = await checkExample(run, context());
    await expect(checkExample(shown, context(previous))).resolves.toBeUndefined();
    const [, wrong] = one('```sh\necho\n```\n<!-- example: output -->\n```json\n{"code":"not_found"}\n```\n');
    await expect(checkExample(wrong, context(previous))).rejects.toThrow('shows "code": "not_found", which DOC.md:3 (## Section, ```sh block) did not print');
    await expect(checkExample(shown, context(undefined))).rejects.toThrow('marked output, but no block before it ran');
  });
});

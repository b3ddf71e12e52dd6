import { expectedInComments, outputHas, readmeExamples, readmeFiles, where } from '../support/readme-examples';

/**
 * The README extractor the examples runner (test/e2e/readme-examples.e2e.spec.ts) relies on: every
 * fenced block found with its line and heading, the markers read, an unknown marker reported, and
 * what comments say a block prints.
 */

const doc = [
  '# Title', //                                                   1
  '## Try it', //                                                 2
  '```sh', //                                                     3
  'echo one   # -> "allowed": true, "held_cost": {"amount": "0.011"}, "id": "..."',
  '```',
  '<!-- example: output -->', //                                  6
  '',
  '```json',
  '{"allowed": true}',
  '```',
  '### Sub',
  '<!-- example: not run, it follows the stream until Ctrl-C -->',
  '<!-- another comment -->',
  '',
  '```text', //                                                  15
  'shown',
  '```',
  '## Other',
  '<!-- example: server env METERING_WEBHOOK_ALLOWED_HOSTS=127.0.0.1 A=b=c -->',
  '- a list item:', //                                           20
  '', //
  '  ```sh',
  '  echo indented',
  '  ```',
  '<!-- example: run by apps/metering/test/e2e/http.e2e.spec.ts, with a key -->',
  '```python', //                                                26
  'print(1)',
  '```',
  '<!-- example: maybe -->',
  '```', //                                                      30
  'plain',
  '```',
  '<!-- cli-reference:start (generated) -->',
  '### `metering limits set`',
  '```text', //                                                  35
  'Usage: metering limits set',
  '```',
  '<!-- cli-reference:end -->',
].join('\n');

describe('readmeExamples', () => {
  const examples = readmeExamples('DOC.md', doc);

  it('finds every fenced block with its line, language, section and heading', () => {
    expect(examples.map((e) => [e.line, e.info, e.lang, e.section, e.heading])).toEqual([
      [3, 'sh', 'sh', '## Try it', '## Try it'],
      [8, 'json', 'other', '## Try it', '## Try it'],
      [15, 'text', 'other', '## Try it', '### Sub'],
      [22, 'sh', 'sh', '## Other', '## Other'],
      [26, 'python', 'python', '## Other', '## Other'],
      [30, '', 'other', '## Other', '## Other'],
      [35, 'text', 'other', '## Other', '### `metering limits set`'],
    ]);
    expect(examples[3].code).toBe('echo indented');
    expect(where(examples[2])).toBe('DOC.md:15 (## Try it > ### Sub, ```text block)');
  });

  it('reads the markers above a fence, across blank lines and other comments', () => {
    expect(examples.map((e) => e.marker)).toEqual([
      { kind: 'run' },
      { kind: 'output' },
      { kind: 'not run', reason: 'it follows the stream until Ctrl-C' },
      // The server env marker is above a list item's text, not the fence: the block is plainly run.
      { kind: 'run' },
      { kind: 'run by', path: 'apps/metering/test/e2e/http.e2e.spec.ts', reason: 'with a key' },
      { kind: 'invalid', text: 'maybe' },
      { kind: 'cli help', command: ['limits', 'set'] },
    ]);
    expect(examples[3].serverEnv).toEqual({});
  });

  it('reads server env markers as variables for the server, the block still run', () => {
    const [e] = readmeExamples('DOC.md', '## S\n<!-- example: server env METERING_WEBHOOK_ALLOWED_HOSTS=127.0.0.1 A=b=c -->\n```sh\necho\n```\n');
    expect(e.marker).toEqual({ kind: 'run' });
    expect(e.serverEnv).toEqual({ METERING_WEBHOOK_ALLOWED_HOSTS: '127.0.0.1', A: 'b=c' });
  });

  it('lists the READMEs git tracks', () => {
    expect(readmeFiles()).toEqual(expect.arrayContaining(['README.md', 'libs/client/README.md', 'clients/python/README.md']));
  });
});

describe('what comments say a block prints', () => {
  it('takes concrete "key": value pairs after an arrow, skipping "..."; a quoted value when no pair', () => {
    expect(expectedInComments('x  # -> "allowed": true, "reservation": {"reservation_id": "...", "held_cost": {"amount": "0.011"}}', 'sh')).toEqual(['"allowed": true', '"amount": "0.011"']);
    expect(expectedInComments('# Record a call (gpt-4o, 100 + 200 tokens -> "0.00225" USD).', 'sh')).toEqual(['"0.00225"']);
    expect(expectedInComments('# no arrow "a": "b"', 'sh')).toEqual([]);
    expect(expectedInComments('f()  // -> "n": 3', 'ts')).toEqual(['"n": 3']);
  });

  it('finds a pair in buf curl output, snake_case as camelCase, spacing loose; a missing or different value is not found', () => {
    const output = '{\n  "heldCost": {\n    "amount": "0.011"\n  },\n  "allowed": true\n}';
    expect(outputHas(output, '"amount": "0.011"')).toBe(true);
    expect(outputHas(output, '"allowed": true')).toBe(true);
    expect(outputHas('{"currency_code":"USD"}', '"currency_code": "USD"')).toBe(true);
    expect(outputHas('{"currencyCode": "USD"}', '"currency_code": "USD"')).toBe(true);
    expect(outputHas(output, '"amount": "0.01"')).toBe(false);
    expect(outputHas(output, '"allowed": false')).toBe(false);
    expect(outputHas(output, '"0.011"')).toBe(true);
    expect(outputHas(output, '"0.0110"')).toBe(false);
  });
});

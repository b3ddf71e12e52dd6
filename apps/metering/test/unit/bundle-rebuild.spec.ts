import { spawn } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { join } from 'node:path';
import { setImmediate } from 'node:timers/promises';
import { buildServer, ROOT } from '../support/server-process';

/**
 * Every e2e test file rebuilds the server's bundle while the other jest worker's files start
 * servers from it (test/support/server-process.ts). A plain overwrite let a server start from an
 * empty file, which Node runs and exits 0 without a word ("server exited with 0 before
 * listening"). tools/scripts/build.mjs writes each file beside its target and renames it over it,
 * so a reader sees the old bundle or the new one, never a part of one. Before that change a reader
 * like this one saw another length in 1,818 of 10,040 reads during 15 builds.
 */
it('replaces the server bundle at once when it is rebuilt: a reader never sees it empty or half written', async () => {
  buildServer();
  const main = join(ROOT, 'dist', 'apps', 'metering', 'main.js');
  const whole = readFileSync(main).length;
  const build = () =>
    new Promise<void>((resolve, reject) =>
      spawn(process.execPath, [join(ROOT, 'tools', 'scripts', 'build.mjs')], { stdio: 'inherit' }).once('exit', (code) => (code === 0 ? resolve() : reject(new Error(`build.mjs exited with ${code}`)))),
    );
  let building = true;
  const builds = (async () => {
    for (let n = 0; n < 3; n++) await build();
  })().finally(() => (building = false));
  const lengths: number[] = [];
  while (building) {
    lengths.push(readFileSync(main).length);
    await setImmediate();
  }
  await builds;
  expect(lengths.length).toBeGreaterThan(100);
  expect(lengths.filter((n) => n !== whole)).toEqual([]);
});

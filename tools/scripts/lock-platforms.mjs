// Completes package-lock.json with the optional platform binaries of other
// systems (darwin, win32, ...). The package registry reachable from our
// machines serves only the linux ones, so `npm install` leaves the others out
// of the lock and `npm ci` then refuses the lock. Each added entry carries the
// version its parent asks for and the os/cpu in its name, so npm skips it on
// any machine it does not fit. Run after changing dependencies:
//   npm install && node tools/scripts/lock-platforms.mjs && npm ci
import { readFileSync, writeFileSync } from 'node:fs';
import { join } from 'node:path';

const file = join(import.meta.dirname, '..', '..', 'package-lock.json');
const lock = JSON.parse(readFileSync(file, 'utf8'));
const OS = ['darwin', 'win32', 'linux', 'freebsd', 'openbsd', 'netbsd', 'sunos', 'aix', 'android', 'openharmony', 'wasi'];
const CPU = { x64: 'x64', arm64: 'arm64', 'arm-eabi': 'arm', armv7: 'arm', arm: 'arm', ia32: 'ia32', riscv64: 'riscv64', ppc64: 'ppc64', s390x: 's390x', loong64: 'loong64', mips64el: 'mips64el', wasm32: 'wasm32', '64': 'x64' };

let added = 0;
for (const [path, pkg] of Object.entries(lock.packages)) {
  for (const [name, version] of Object.entries(pkg.optionalDependencies ?? {})) {
    const base = path === '' ? '' : `${path}/`;
    if (lock.packages[`${base}node_modules/${name}`] || lock.packages[`node_modules/${name}`]) continue;
    const parts = name.split('/').pop().split('-');
    const os = parts.find((p) => OS.includes(p));
    const cpuKey = Object.keys(CPU).find((k) => parts.join('-').includes(k) && parts.join('-').split(os ?? '').pop().includes(k));
    if (!os || !cpuKey || os === 'linux' && cpuKey === 'x64') {
      console.warn(`left out ${name}: cannot tell its platform`);
      continue;
    }
    const entry = { version: version.replace(/^[\^~=]/, ''), cpu: [CPU[cpuKey]], optional: true, os: os === 'wasi' ? undefined : [os] };
    if (name.includes('wasm32')) entry.os = undefined;
    if (/-musl/.test(name)) entry.libc = ['musl'];
    if (/-gnu/.test(name)) entry.libc = ['glibc'];
    lock.packages[`node_modules/${name}`] = JSON.parse(JSON.stringify(entry));
    added++;
  }
}
writeFileSync(file, JSON.stringify(lock, null, 2) + '\n');
console.log(`added ${added} platform entries to package-lock.json`);

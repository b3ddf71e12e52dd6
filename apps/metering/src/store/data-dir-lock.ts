import { randomBytes } from 'node:crypto';
import { closeSync, fsyncSync, linkSync, openSync, readFileSync, renameSync, unlinkSync, writeSync } from 'node:fs';
import { hostname } from 'node:os';
import { join, resolve } from 'node:path';

/**
 * One process per embedded database folder, as Postgres' postmaster.pid: PGlite
 * has no locking of its own, and two processes on one folder both acknowledge
 * writes that one of them then overwrites (and the folder can stop opening).
 *
 * The lock is `<dataDir>/metering.pid`, created whole or not at all (written to
 * a private file, fsynced, then hard-linked into place: link fails if the name
 * exists). It names its holder: pid, host, the kernel's boot id and the
 * process's start time in clock ticks since boot (Linux /proc), the command,
 * the time it was taken. A lock is stale, and is replaced, when its holder is
 * gone: the same host and no such pid, or that pid is a different process
 * (another boot, another start time: a pid reused after a crash, as pid 1 in
 * every container). A lock from another host is never judged: it is refused
 * with the file's path, to be removed by hand once that host is known not to
 * run it.
 *
 * Written here rather than with a lock library: proper-lockfile, the usual
 * one, judges staleness by the age of a directory's mtime that the holder
 * refreshes on a timer. That names no holder; a restart after a crash is
 * refused until the lock ages out; and a holder whose event loop stalls past
 * the age (PGlite's WebAssembly runs on the main thread) loses its lock to a
 * second process, the corruption this prevents. Its last release is from 2021.
 */
export class DataDirLockedError extends Error {}

interface Holder {
  pid: number;
  host: string;
  bootId?: string;
  startTicks?: string;
  command: string;
  since: string;
}

const FILE = 'metering.pid';
/** Lock files this process holds (the same folder opened twice in one process is refused too). */
const held = new Set<string>();

/** Takes the folder's lock or throws DataDirLockedError naming its holder. Returns the release function. */
export function lockDataDir(dataDir: string): () => void {
  const path = join(resolve(dataDir), FILE);
  const me = JSON.stringify(describeSelf());
  for (let attempt = 0; attempt < 5; attempt++) {
    if (tryCreate(path, me)) {
      held.add(path);
      return () => release(path, me);
    }
    const text = readOrUndefined(path);
    if (text === undefined) continue; // released meanwhile
    const holder = parse(text);
    if (!holder) throw new DataDirLockedError(`the embedded database in ${resolve(dataDir)} has an unreadable lock file ${path}; if no process uses this folder, remove the file`);
    if (!isStale(holder, path)) throw new DataDirLockedError(lockedMessage(resolve(dataDir), path, holder));
    removeStale(path, text);
  }
  throw new DataDirLockedError(`could not take the lock ${path} of the embedded database: other processes keep taking it`);
}

/** The holder recorded in a folder's lock file, if any (for tests and diagnostics). */
export function readDataDirLock(dataDir: string): Holder | undefined {
  const text = readOrUndefined(join(resolve(dataDir), FILE));
  return text === undefined ? undefined : parse(text);
}

/** This process as the lock file describes it. */
export function describeSelf(): Holder {
  return {
    pid: process.pid,
    host: hostname(),
    bootId: readOrUndefined('/proc/sys/kernel/random/boot_id')?.trim(),
    startTicks: startTicks(process.pid),
    command: process.argv.join(' '),
    since: new Date().toISOString(),
  };
}

function tryCreate(path: string, content: string): boolean {
  const tmp = `${path}.${process.pid}.${randomBytes(4).toString('hex')}`;
  const fd = openSync(tmp, 'wx', 0o644);
  try {
    writeSync(fd, content + '\n');
    fsyncSync(fd);
  } finally {
    closeSync(fd);
  }
  try {
    linkSync(tmp, path);
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  } finally {
    unlinkSync(tmp);
  }
}

function isStale(holder: Holder, path: string): boolean {
  if (holder.host !== hostname()) return false;
  // Our own pid: a lock this process took is in `held`; otherwise it is a dead process's whose pid we reuse.
  if (holder.pid === process.pid) return !held.has(path);
  try {
    process.kill(holder.pid, 0);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ESRCH') return true;
  }
  // The pid is alive (or not ours to signal): is it the same process?
  const bootId = readOrUndefined('/proc/sys/kernel/random/boot_id')?.trim();
  if (holder.bootId && bootId && holder.bootId !== bootId) return true;
  const ticks = startTicks(holder.pid);
  return Boolean(holder.startTicks && ticks && holder.startTicks !== ticks);
}

/**
 * Moves the stale file aside under a private name, atomically, so that of two
 * processes replacing the same stale lock only one removes it. If what was moved
 * is not the stale lock (another process replaced it first), it is put back.
 */
function removeStale(path: string, staleText: string): void {
  const aside = `${path}.stale.${process.pid}.${randomBytes(4).toString('hex')}`;
  try {
    renameSync(path, aside);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'ENOENT') return;
    throw err;
  }
  try {
    if (readFileSync(aside, 'utf8') !== staleText) linkSync(aside, path);
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code !== 'EEXIST') throw err;
  } finally {
    unlinkSync(aside);
  }
}

function release(path: string, me: string): void {
  held.delete(path);
  if (readOrUndefined(path) === me + '\n') unlinkSync(path);
}

function lockedMessage(dir: string, path: string, h: Holder): string {
  const where = h.host === hostname() ? '' : ` on host ${h.host} (not checked from here; remove ${path} if that host no longer runs it)`;
  return (
    `the embedded database in ${dir} is in use by process ${h.pid}${where} (${h.command}, since ${h.since}): ` +
    `one process at a time may open it. Stop that process, or give this one another METERING_DATA_DIR, ` +
    `or run several servers on Postgres (DATABASE_URL). Lock file: ${path}`
  );
}

function parse(text: string): Holder | undefined {
  try {
    const h = JSON.parse(text) as Holder;
    return Number.isInteger(h.pid) && h.pid > 0 && typeof h.host === 'string' ? h : undefined;
  } catch {
    return undefined;
  }
}

/** Field 22 of /proc/<pid>/stat: when the process started, in clock ticks since boot (Linux). */
function startTicks(pid: number): string | undefined {
  const stat = readOrUndefined(`/proc/${pid}/stat`);
  if (!stat) return undefined;
  return stat.slice(stat.lastIndexOf(')') + 2).split(' ')[19];
}

function readOrUndefined(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8');
  } catch {
    return undefined;
  }
}

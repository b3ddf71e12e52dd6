/** CPU time of processes on this machine, from /proc (Linux): the bench's and service-cpu's per-call CPU figures. */
import { readdirSync, readFileSync } from 'node:fs';

const CLOCK_TICKS = 100;

/**
 * A process's CPU clock ticks from /proc/<pid>/stat (or a thread's, with "<pid>/task/<tid>"): its own user and system time, and that of
 * the children it has reaped (`cutime`, `cstime`), with its command name; undefined when it is gone.
 */
function procTicks(pid: number | string): { comm: string; own: number; reaped: number } | undefined {
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name (which may hold spaces and parentheses): state is [0], utime [11].
    const f = stat.slice(stat.lastIndexOf(') ') + 2).split(' ');
    return { comm: stat.slice(stat.indexOf('(') + 1, stat.lastIndexOf(')')), own: Number(f[11]) + Number(f[12]), reaped: Number(f[13]) + Number(f[14]) };
  } catch {
    return undefined;
  }
}

/** CPU seconds (user + system) a process has used so far, from /proc (what process.cpuUsage reports inside it). */
export const cpuSeconds = (pid: number | undefined): number => (pid ? (procTicks(pid)?.own ?? 0) / CLOCK_TICKS : 0);

/** The same for one thread of a process (/proc/<pid>/task/<tid>/stat): its main thread when `tid` is its pid. */
export const threadCpuSeconds = (pid: number | undefined, tid = pid): number => (pid ? (procTicks(`${pid}/task/${tid}`)?.own ?? 0) / CLOCK_TICKS : 0);

/**
 * CPU seconds used so far by this machine's Postgres: every process named postgres (backends,
 * and the postmaster with the time of the backends it has reaped). 0 when Postgres runs elsewhere.
 */
export function postgresCpuSeconds(): number {
  let ticks = 0;
  for (const pid of readdirSync('/proc')) {
    const p = /^\d+$/.test(pid) ? procTicks(pid) : undefined;
    if (p?.comm === 'postgres') ticks += p.own + p.reaped;
  }
  return ticks / CLOCK_TICKS;
}


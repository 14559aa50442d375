/**
 * CPU accounting for the benchmark (Linux /proc; undefined elsewhere or when
 * the server is not on this machine): the PostgreSQL server's CPU (the
 * postmaster, its live children and the children it already reaped, so a
 * backend that closed inside the window still counts), named processes' CPU,
 * this process's CPU, and the whole machine's busy time, from which "other
 * processes" is what was neither ours nor the server's. The machine is
 * shared: that last figure is what makes a noisy window visible.
 */
import { execSync } from 'node:child_process';
import { readdirSync, readFileSync } from 'node:fs';
import type pg from 'pg';

let tick = 0;
function ticksPerSecond(): number {
  if (!tick) {
    try {
      tick = Number(execSync('getconf CLK_TCK', { encoding: 'utf8' }).trim()) || 100;
    } catch {
      tick = 100;
    }
  }
  return tick;
}

interface ProcStat {
  ppid: number;
  /** utime + stime, seconds. */
  own: number;
  /** cutime + cstime (children reaped), seconds. */
  reaped: number;
}

function procStat(pid: number): ProcStat | undefined {
  try {
    const text = readFileSync(`/proc/${pid}/stat`, 'utf8');
    // Fields after the command name, which is in parentheses and may hold spaces.
    const rest = text.slice(text.lastIndexOf(')') + 2).split(' ');
    const n = (i: number) => Number(rest[i]);
    return { ppid: n(1), own: (n(11) + n(12)) / ticksPerSecond(), reaped: (n(13) + n(14)) / ticksPerSecond() };
  } catch {
    return undefined;
  }
}

/** CPU seconds of one process (utime + stime); undefined when it is gone. */
export function processCpu(pid: number): number | undefined {
  return procStat(pid)?.own;
}

/**
 * CPU seconds of one process from /proc/<pid>/schedstat (nanoseconds), for
 * spans of a few milliseconds: /proc/<pid>/stat counts in clock ticks
 * (10 ms), which read a fresh session's ~9 ms first start as 3-4 ms.
 */
export function processCpuPrecise(pid: number): number | undefined {
  try {
    return Number(readFileSync(`/proc/${pid}/schedstat`, 'utf8').split(' ')[0]) / 1e9;
  } catch {
    return processCpu(pid);
  }
}

/** CPU seconds of the server: the postmaster, its live children and the ones it reaped. */
export function serverCpu(postmaster: number): number | undefined {
  const pm = procStat(postmaster);
  if (!pm) return undefined;
  let total = pm.own + pm.reaped;
  for (const entry of readdirSync('/proc')) {
    const pid = Number(entry);
    if (!Number.isInteger(pid) || pid === postmaster) continue;
    const s = procStat(pid);
    if (s?.ppid === postmaster) total += s.own;
  }
  return total;
}

/** Busy CPU seconds of the whole machine (all cores) since boot. */
export function machineBusy(): number | undefined {
  try {
    const cpu = readFileSync('/proc/stat', 'utf8').split('\n')[0]!.trim().split(/\s+/).slice(1).map(Number);
    // user nice system idle iowait irq softirq steal: busy = all but idle and iowait.
    const busy = (cpu[0] ?? 0) + (cpu[1] ?? 0) + (cpu[2] ?? 0) + (cpu[5] ?? 0) + (cpu[6] ?? 0) + (cpu[7] ?? 0);
    return busy / ticksPerSecond();
  } catch {
    return undefined;
  }
}

/** The postmaster's pid, found through a session's backend (undefined when the server is remote). */
export async function postmasterPid(client: pg.ClientBase): Promise<number | undefined> {
  const { rows } = await client.query<{ pid: number }>('select pg_backend_pid() as pid');
  const s = procStat(rows[0]!.pid);
  return s && s.ppid > 1 ? s.ppid : undefined;
}

export interface CpuReading {
  at: number;
  server?: number | undefined;
  machine?: number | undefined;
  /** This process (process.cpuUsage), seconds. */
  self: number;
  /** The given processes (children), seconds each. */
  procs: (number | undefined)[];
  /** Server backends given by pid, seconds each. */
  backends: (number | undefined)[];
}

export function readCpu(postmaster: number | undefined, procs: number[] = [], backends: number[] = []): CpuReading {
  const u = process.cpuUsage();
  return {
    at: performance.now(),
    server: postmaster ? serverCpu(postmaster) : undefined,
    machine: machineBusy(),
    self: (u.user + u.system) / 1e6,
    procs: procs.map(processCpu),
    backends: backends.map(processCpu),
  };
}

/** CPU spent between two readings, in seconds; `otherCores` is the mean number of cores busy with anything else. */
export interface CpuDelta {
  seconds: number;
  server?: number | undefined;
  self: number;
  procs?: number | undefined;
  backends?: number | undefined;
  otherCores?: number | undefined;
}

const sumDelta = (a: (number | undefined)[], b: (number | undefined)[]) => {
  let total = 0;
  for (let i = 0; i < a.length; i++) {
    const x = a[i];
    const y = b[i];
    if (x === undefined || y === undefined) return undefined;
    total += y - x;
  }
  return total;
};

export function cpuBetween(a: CpuReading, b: CpuReading): CpuDelta {
  const seconds = (b.at - a.at) / 1000;
  const server = a.server !== undefined && b.server !== undefined ? b.server - a.server : undefined;
  const self = b.self - a.self;
  const procs = a.procs.length ? sumDelta(a.procs, b.procs) : 0;
  const backends = a.backends.length ? sumDelta(a.backends, b.backends) : undefined;
  const machine = a.machine !== undefined && b.machine !== undefined ? b.machine - a.machine : undefined;
  const otherCores = machine !== undefined && server !== undefined && procs !== undefined
    ? Math.max(0, machine - server - self - procs) / seconds
    : undefined;
  return { seconds, server, self, procs, backends, otherCores };
}

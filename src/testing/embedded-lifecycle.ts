/**
 * The lifetime of embedded servers (src/testing/embedded-postgres.ts) beyond
 * `stop()`: process-wide hooks that stop and delete every server this
 * process started on SIGINT/SIGTERM/SIGHUP (unless the application handles
 * the signal itself) and on any exit (synchronously), and a detached
 * watchdog that does it if the process is killed outright. See
 * docs/decisions/0007-embedded-postgres-runner.md.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { readFileSync, rmSync } from 'node:fs';
import { constants } from 'node:os';

/** A server this process started and has not stopped yet. */
export interface Live {
  pid: number;
  root: string;
  dataDir: string;
  stop(): Promise<void>;
}

// Process-wide by nature: signals and 'exit' belong to the process, so one set
// of hooks serves every server it started (two servers in one process must
// not each decide the other's signal is "handled by the application").
const live = new Set<Live>();
const SIGNALS = ['SIGINT', 'SIGTERM', 'SIGHUP'] as const;
// Immediate shutdown: the data is about to be deleted, so skip the checkpoint.
export const IMMEDIATE: NodeJS.Signals = process.platform === 'win32' ? 'SIGKILL' : 'SIGQUIT';
let exiting = false;

/** True while `pid` runs (a zombie child we cannot reap from an 'exit' hook counts as gone). */
function running(pid: number): boolean {
  try {
    process.kill(pid, 0);
  } catch (error) {
    return (error as NodeJS.ErrnoException).code === 'EPERM';
  }
  try {
    const stat = readFileSync(`/proc/${pid}/stat`, 'utf8');
    return !/^[ZX]$/.test(stat.slice(stat.lastIndexOf(')') + 2, stat.lastIndexOf(')') + 3));
  } catch {
    return process.platform !== 'linux';
  }
}

const sleepSync = (ms: number): void => void Atomics.wait(new Int32Array(new SharedArrayBuffer(4)), 0, 0, ms);

/** Synchronous teardown for the 'exit' hook: no event loop runs any more. */
function destroyNow(server: Live): void {
  try {
    process.kill(server.pid, IMMEDIATE);
  } catch {
    /* already gone */
  }
  for (const deadline = Date.now() + 5000; running(server.pid) && Date.now() < deadline;) sleepSync(10);
  if (running(server.pid)) {
    try {
      process.kill(server.pid, 'SIGKILL');
    } catch {
      /* gone after all */
    }
  }
  try {
    rmSync(server.root, { recursive: true, force: true, maxRetries: 3 });
  } catch {
    /* nothing more can be done while exiting */
  }
}

function onExit(): void {
  for (const server of live) destroyNow(server);
  live.clear();
}

function onSignal(signal: NodeJS.Signals): void {
  // Node exits on these signals only when nobody listens. If the application
  // listens too, it owns the shutdown (it may still need the database to
  // drain a worker); the 'exit' hook cleans up whenever it does exit.
  if (process.listeners(signal).some((listener) => listener !== onSignal)) return;
  const code = 128 + (constants.signals[signal] ?? 0);
  if (exiting) process.exit(code); // a second signal: the 'exit' hook finishes synchronously
  exiting = true;
  void Promise.allSettled([...live].map((server) => server.stop())).finally(() => process.exit(code));
}

export function track(server: Live): void {
  if (live.size === 0) {
    process.on('exit', onExit);
    // Prepended so that a later `process.once` of the application is still
    // visible to onSignal when the signal arrives.
    for (const signal of SIGNALS) process.prependListener(signal, onSignal);
  }
  live.add(server);
}

export function untrack(server: Live): void {
  if (!live.delete(server) || live.size > 0) return;
  process.off('exit', onExit);
  for (const signal of SIGNALS) process.off(signal, onSignal);
}

/**
 * Plain JS for `node -e`: waits for its stdin (a pipe from us) to close, which
 * happens however we die, even by SIGKILL; then, if the postmaster is still
 * the one in the data directory's postmaster.pid, stops it and deletes the
 * directory. After a normal stop it finds nothing left and just exits.
 */
const WATCHDOG = `
const fs = require('fs'), path = require('path');
const [pidText, root, dataDir, signal] = process.argv.slice(1);
const pid = Number(pidText);
const alive = () => { try { process.kill(pid, 0); return true; } catch (e) { return e.code === 'EPERM'; } };
const ours = () => { try { return fs.readFileSync(path.join(dataDir, 'postmaster.pid'), 'utf8').split('\\n')[0].trim() === pidText; } catch { return false; } };
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));
let done = false;
async function cleanUp() {
  if (done) return;
  done = true;
  if (ours()) {
    try { process.kill(pid, signal); } catch {}
    for (let i = 0; i < 200 && alive() && ours(); i++) await sleep(25);
    if (alive() && ours()) { try { process.kill(pid, 'SIGKILL'); } catch {} }
  }
  try { fs.rmSync(root, { recursive: true, force: true, maxRetries: 3 }); } catch {}
  process.exit(0);
}
process.stdin.on('end', cleanUp).on('close', cleanUp).on('error', cleanUp).resume();
`;

export function startWatchdog(pid: number, root: string, dataDir: string): ChildProcess {
  const watchdog = spawn(process.execPath, ['-e', WATCHDOG, String(pid), root, dataDir, IMMEDIATE], {
    detached: true, // its own process group: a Ctrl-C to ours does not reach it
    stdio: ['pipe', 'ignore', 'ignore'],
    env: {}, // nothing of ours (NODE_OPTIONS, loaders) is needed to run plain JS
    windowsHide: true,
  });
  watchdog.on('error', () => undefined); // no watchdog: the other hooks still apply
  watchdog.stdin?.on('error', () => undefined);
  watchdog.unref();
  (watchdog.stdin as unknown as { unref?(): void } | null)?.unref?.();
  return watchdog;
}

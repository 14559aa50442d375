/**
 * A process a fault test starts itself (`node --import tsx <script>`, with
 * its stderr on the test's): started, then awaited until it prints 'ready'
 * on stdout. The Harness (harness.ts) has its own, richer worker processes.
 */
import { type ChildProcess, spawn } from 'node:child_process';
import { waitFor } from '../../helpers/wait.ts';

/** A started process and what it has printed on stdout so far. */
export type ReadyProcess = ChildProcess & { out(): string };

/**
 * Start `script` with `env` over this process's environment and wait until it
 * prints 'ready'. The child is added to `into` (the list the file's after()
 * kills) as soon as it starts; if it is not ready in `timeout` ms it is
 * SIGKILLed and the wait's error thrown.
 */
export async function spawnReady(
  script: string,
  env: Record<string, string>,
  { what, timeout, into }: { what: string; timeout: number; into?: ChildProcess[] | undefined },
): Promise<ReadyProcess> {
  const child = spawn(process.execPath, ['--import', 'tsx', script], { env: { ...process.env, ...env }, stdio: ['ignore', 'pipe', 'inherit'] });
  into?.push(child);
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  try {
    await waitFor(() => out.includes('ready'), { what, timeout });
  } catch (error) {
    killIfRunning(child);
    throw error;
  }
  return Object.assign(child, { out: () => out });
}

/** SIGKILL `child` unless it has already exited. */
export function killIfRunning(child: ChildProcess): void {
  if (child.exitCode === null && child.signalCode === null) child.kill('SIGKILL');
}

/** Wait (at most `timeout` ms) until `child` has exited; at once if it has. */
async function exited(child: ChildProcess, timeout: number): Promise<void> {
  if (child.exitCode !== null || child.signalCode !== null) return;
  await waitFor(() => child.exitCode !== null || child.signalCode !== null, { what: `process ${child.pid} to exit`, timeout, interval: 10 });
}

/**
 * Worker processes a fault test SIGKILLs one at a time, oldest first, each
 * replaced by a new one from `spawnOne` before `killOldest` returns.
 */
export function killableWorkers(spawnOne: () => Promise<ReadyProcess>) {
  const live: ReadyProcess[] = [];
  return {
    /** Start `n` processes, one after the other. */
    async start(n: number): Promise<void> {
      for (let i = 0; i < n; i++) live.push(await spawnOne());
    },
    /** SIGKILL the oldest process and start another in its place. */
    async killOldest(): Promise<void> {
      const victim = live.shift();
      if (!victim) return;
      victim.kill('SIGKILL');
      await exited(victim, 10_000);
      live.push(await spawnOne());
    },
    /** SIGTERM each process and wait until it has exited. */
    async stop(): Promise<void> {
      for (const w of live.splice(0)) {
        w.kill('SIGTERM');
        await exited(w, 30_000);
      }
    },
  };
}

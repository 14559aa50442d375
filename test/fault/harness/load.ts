/**
 * A mixed load for fault scenarios: three-step runs, runs with a durable
 * sleep, and runs waiting for two signals, each signal sent 1-5 times with
 * one id (the repeats racing each other and the next signal). Starts and
 * sends that meet a fault are tried again, as an application would.
 */
import type { Harness } from './harness.ts';
import { between, sleep } from './harness.ts';

export interface MixedLoad {
  steps: number;
  timers: number;
  signals: number;
  /** Starts per second (all kinds together). */
  rate: number;
  /** The fh-timer sleep. */
  sleepMs?: number | undefined;
  /** How long each fh-steps step body takes (default 10 ms): longer keeps more runs in flight at a fault. */
  stepMs?: number | undefined;
}

export interface LoadResult {
  started: number;
  /** Signal sends, repeats included. */
  sends: number;
  /** Sends refused as repeats (returned false). */
  repeatsDropped: number;
}

/** Try `fn` until it succeeds (for 2 minutes). */
export async function persist<T>(fn: () => Promise<T>): Promise<T> {
  for (const deadline = Date.now() + 120_000; ;) {
    try {
      return await fn();
    } catch (error) {
      if (Date.now() > deadline) throw error;
      await sleep(200);
    }
  }
}

export async function runMixedLoad(h: Harness, load: MixedLoad): Promise<LoadResult> {
  const kinds = [
    ...Array<'steps'>(load.steps).fill('steps'),
    ...Array<'timer'>(load.timers).fill('timer'),
    ...Array<'signal'>(load.signals).fill('signal'),
  ].sort(() => Math.random() - 0.5);
  const result: LoadResult = { started: 0, sends: 0, repeatsDropped: 0 };
  const pending: Promise<void>[] = [];
  const tails: Promise<void>[] = [];
  const t0 = performance.now();
  for (let i = 0; i < kinds.length; i++) {
    const wait = t0 + (i * 1000) / load.rate - performance.now();
    if (wait > 0) await sleep(wait);
    const kind = kinds[i]!;
    pending.push((async () => {
      if (kind === 'steps') await persist(() => h.client.start('fh-steps', { n: i, ms: load.stepMs ?? 10 }, { key: `steps-${i}` }));
      else if (kind === 'timer') await persist(() => h.client.start('fh-timer', { ms: load.sleepMs ?? 1000 }, { key: `timer-${i}` }));
      else {
        const run = await persist(() => h.client.start('fh-signal', { waits: 2 }, { key: `signal-${i}` }));
        await sleep(between(0, 300));
        await sendRepeated(h, run.id, 1, result, tails);
        await sendRepeated(h, run.id, 2, result, tails);
      }
      result.started++;
    })());
    if (pending.length >= 300) await Promise.all(pending.splice(0));
  }
  await Promise.all(pending);
  await Promise.all(tails);
  return result;
}

/** Send signal go {k} with id k, 1-5 times: the first awaited, the repeats concurrent with what follows. */
async function sendRepeated(h: Harness, run: string, k: number, result: LoadResult, tails: Promise<void>[]): Promise<void> {
  const send = async () => {
    result.sends++;
    if (!(await persist(() => h.client.signal(run, 'go', { k }, { id: `go-${k}` })))) result.repeatsDropped++;
  };
  await send();
  const repeats = between(0, 4);
  for (let r = 0; r < repeats; r++) tails.push(send());
}

/**
 * One worker process of the fault harness (test/fault/harness/harness.ts
 * spawns several). Every step body first appends a row to the effects ledger
 * (public.effects: run, step, attempt, pid, the server's clock), through a
 * pool of its own, so the invariant checker can count executions of bodies,
 * committed or not.
 *
 * env: DATABASE_URL, LEDGER_URL (default DATABASE_URL), WORKER_ID, CONCURRENCY (50), LEASE_MS (2000),
 *      POLL_MS (250), QUERY_TIMEOUT_MS (30000), CONNECT_TIMEOUT_MS (10000),
 *      LISTENER_CHECK_MS (10000),
 *      CLOCK_SKEW_MS (0: this process's Date is shifted by that much),
 *      CODE_VERSION (1 | 2: the code of the fh-change-* workflows),
 *      BLOCKER (1: fh-steps with `block` blocks this process's event loop),
 *      WORKER_LOG (a file prefix: the worker's warnings and errors go to <prefix>-<WORKER_ID>.log).
 * Prints "ready" once claiming; SIGTERM stops it gracefully.
 */
import { randomUUID } from 'node:crypto';
import pg from 'pg';
import { z } from 'zod';
import { createWorker } from '../../../src/worker/worker.ts';
import { defineWorkflow } from '../../../src/workflow/define.ts';
import { appendFileSync } from 'node:fs';
import { loggerFrom, silentLogger } from '../../../src/protocol/logger.ts';
import type { StepContext } from '../../../src/workflow/context.ts';
import { guardPool } from './guard.ts';

const skew = Number(process.env.CLOCK_SKEW_MS ?? 0);
if (skew) skewClock(skew);

const url = process.env.DATABASE_URL;
// Guarded: a server shutdown that ends a ledger connection while a body
// holds it must not kill this process (it did, in F3: see guard.ts).
const ledger = guardPool(new pg.Pool({ connectionString: process.env.LEDGER_URL ?? url, max: 4, application_name: 'effects-ledger', connectionTimeoutMillis: 2000 }));
const pause = (ms: number) => new Promise((r) => setTimeout(r, ms));

/** Append one execution of a step body to the ledger (retried: the insert is idempotent by its exec id); call it first in the body. */
async function record(s: StepContext, workflow: string, step: string, info: unknown = null): Promise<void> {
  const exec = randomUUID();
  // `at` is when the body began, on the server's clock: the insert's time
  // less how long it waited here (for a ledger connection, a stopped
  // process), measured once the connection is ours. The insert runs some
  // time after it was sent (the network, a busy server, a process stopped
  // before its write left), so `at` may be late by up to the round trip:
  // `at_earliest` is `at` less the whole round trip, a time the body cannot
  // have begun before. A check that a body began after some commit uses
  // it (completedStepsRerun: a late `at` read as a body begun after another
  // process completed the step, F4 on a loaded CI machine); a check that it
  // began before one uses `at`.
  const begun = performance.now();
  for (let tries = 0; ; tries++) {
    try {
      const c = await ledger.connect();
      let broken: Error | undefined;
      try {
        const sent = performance.now();
        await c.query(`insert into public.effects (exec, run_id, workflow, step, attempt, pid, worker, info, at)
          values ($1, $2, $3, $4, $5, $6, $7, $8, clock_timestamp() - make_interval(secs => $9::float8 / 1000))
          on conflict (exec) do nothing`,
        [exec, s.runId, workflow, step, s.attempt, process.pid, process.env.WORKER_ID, JSON.stringify(info), sent - begun]);
        const roundTrip = performance.now() - sent;
        await c.query('update public.effects set at_earliest = at - make_interval(secs => $2::float8 / 1000) where exec = $1', [exec, roundTrip]);
      } catch (error) {
        broken = error as Error;
        throw error;
      } finally {
        c.release(broken); // a connection that failed is dropped, not pooled
      }
      return;
    } catch (error) {
      if (tries > 600) throw error;
      await pause(100);
    }
  }
}

/** Three steps; `ms` each; `block`: step two blocks the event loop that long in a process with BLOCKER=1. */
const steps = defineWorkflow({ name: 'fh-steps', input: z.object({ n: z.number(), ms: z.number().optional(), block: z.number().optional() }) },
  async (ctx, { n, ms = 0, block = 0 }) => {
    let v = n;
    for (const name of ['one', 'two', 'three']) {
      const out = await ctx.step(name, async (s) => {
        await record(s, 'fh-steps', name);
        if (block && name === 'two' && process.env.BLOCKER === '1') for (const end = performance.now() + block; performance.now() < end;);
        if (ms) await pause(ms);
        return { v: v + 1, pid: process.pid };
      });
      v = out.v;
    }
    return { v, pid: process.pid };
  });

/** A step, a durable sleep of `ms`, a step; returns ctx.now() as the worker saw it. */
const timer = defineWorkflow({ name: 'fh-timer', input: z.object({ ms: z.number() }) }, async (ctx, { ms }) => {
  await ctx.step('before', (s) => record(s, 'fh-timer', 'before', { ms, wall: Date.now() }));
  await ctx.sleep('nap', ms);
  await ctx.step('after', (s) => record(s, 'fh-timer', 'after'));
  return { now: ctx.now().toISOString() };
});

/** Waits for `waits` signals named go and returns their payloads in order. */
const signals = defineWorkflow({ name: 'fh-signal', input: z.object({ waits: z.number() }) }, async (ctx, { waits }) => {
  const got: number[] = [];
  for (let i = 0; i < waits; i++) {
    const r = await ctx.waitForSignal<{ k: number }>('go', { name: `go-${i}` });
    if (r.timedOut) throw new Error('no timeout was asked for');
    got.push(r.payload.k);
    await ctx.step(`got-${i}`, (s) => record(s, 'fh-signal', `got-${i}`, r.payload));
  }
  return { got };
});

/** A step that always goes wrong in the way `kind` says; parked (dead letter) after 3 failed attempts. */
const poison = defineWorkflow({ name: 'fh-poison', input: z.object({ kind: z.enum(['throw', 'hang', 'crash', 'unstorable']) }), pauseAfter: 3 },
  async (ctx, { kind }) => {
    await ctx.step('poison', async (s) => {
      await record(s, 'fh-poison', 'poison', { kind });
      if (kind === 'throw') throw new Error('poison step');
      if (kind === 'hang') await new Promise(() => undefined);
      if (kind === 'crash') process.kill(process.pid, 'SIGKILL');
      return { n: 10n } as unknown as object; // a BigInt: JSON cannot store it
    }, { retry: { maxAttempts: 5, initialDelay: 50, maxDelay: 200 }, timeout: 500 });
    return 'unreachable';
  });

// Code that changes under running runs (F13): version 2 renames the first
// step of fh-change-x (a recorded call: replay must detect it) and changes
// only what fh-change-y does after its recorded calls (it must go on).
const v2 = process.env.CODE_VERSION === '2';
const changeX = defineWorkflow({ name: 'fh-change-x', input: z.object({ ms: z.number() }) }, async (ctx, { ms }) => {
  await ctx.step(v2 ? 'first-renamed' : 'first', (s) => record(s, 'fh-change-x', 'first'));
  await ctx.sleep('gap', ms);
  return await ctx.step('last', async (s) => (await record(s, 'fh-change-x', 'last'), 'x'));
});
const changeY = defineWorkflow({ name: 'fh-change-y', input: z.object({ ms: z.number() }) }, async (ctx, { ms }) => {
  await ctx.step('first', (s) => record(s, 'fh-change-y', 'first'));
  await ctx.sleep('gap', ms);
  if (v2) await ctx.step('added-in-v2', (s) => record(s, 'fh-change-y', 'added-in-v2'));
  return await ctx.step(v2 ? 'last-v2' : 'last', async (s) => (await record(s, 'fh-change-y', 'last'), v2 ? 'y2' : 'y1'));
});

const worker = createWorker({
  connectionString: url,
  id: process.env.WORKER_ID,
  workflows: [steps, timer, signals, poison, changeX, changeY],
  concurrency: Number(process.env.CONCURRENCY ?? 50),
  leaseDuration: Number(process.env.LEASE_MS ?? 2000),
  pollInterval: Number(process.env.POLL_MS ?? 250),
  queryTimeout: Number(process.env.QUERY_TIMEOUT_MS ?? 30_000),
  connectTimeout: Number(process.env.CONNECT_TIMEOUT_MS ?? 10_000),
  listenerHealthCheck: Number(process.env.LISTENER_CHECK_MS ?? 10_000),
  purge: false,
  schedules: false,
  logger: process.env.WORKER_LOG ? fileLogger(`${process.env.WORKER_LOG}-${process.env.WORKER_ID}.log`) : silentLogger,
});
await worker.start();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void worker.stop({ timeout: 2000 }).finally(() => ledger.end()).finally(() => process.exit(0));
});

/** Shift every reading of the wall clock in this process (Date.now, new Date()) by `ms`. */
function skewClock(ms: number): void {
  const Real = Date;
  const now = () => Real.now() + ms;
  class Skewed extends Real {
    constructor(...args: unknown[]) {
      if (args.length === 0) super(now());
      else super(...(args as [string]));
    }

    static override now(): number {
      return now();
    }
  }
  globalThis.Date = Skewed as DateConstructor;
}

/** Warnings and errors as JSON lines appended to `file` (WORKER_LOG), for reading after a failed scenario. */
function fileLogger(file: string) {
  return loggerFrom((level, message, fields) => {
    if (level === 'warn' || level === 'error') appendFileSync(file, `${JSON.stringify({ at: new Date().toISOString(), level, message, ...fields })}\n`);
  });
}

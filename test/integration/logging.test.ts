/**
 * Logs of a worker with a capturing logger of pino's shape: the lifecycle
 * of runs (started, completed, failed, parked) with their fields, no
 * payloads, and `ctx.log` written once per line, not again on replays.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { createWorker, defineSignal, defineWorkflow, NonRetryableError } from '../../src/index.ts';
import { childLogger, type Logger } from '../../src/protocol/logger.ts';
import { waitFor } from '../helpers/wait.ts';
import { useEngine } from '../helpers/engine.ts';

interface Line { level: string; fields: Record<string, unknown>; message: string }

/** A logger shaped like pino (object first), recording each call as Trellis made it. */
function capture(): { logger: Logger; lines: Line[] } {
  const lines: Line[] = [];
  const at = (level: string) => (fields: unknown, message?: unknown) => {
    assert.equal(typeof fields, 'object', `Trellis calls ${level}(fields, message), pino's order`);
    lines.push({ level, fields: fields as Record<string, unknown>, message: message as string });
  };
  return { lines, logger: { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error') } as unknown as Logger };
}

const SECRET_IN = 'secret-input-value';
const SECRET_OUT = 'secret-output-value';
const go = defineSignal('go', z.object({ secret: z.string() }));

const chatty = defineWorkflow({ name: 'log-chatty', input: z.object({ secret: z.string() }) }, async (ctx, input) => {
  ctx.log.info('before the first step', { n: 1 });
  await ctx.step('first', () => input.secret.length);
  ctx.log.info({ n: 2 }, 'between the steps');
  const signal = await ctx.waitForSignal(go);
  ctx.log.info('after the signal');
  await ctx.step('second', () => 2);
  return { out: SECRET_OUT, got: signal.timedOut ? null : signal.payload.secret.length };
});

const fails = defineWorkflow({ name: 'log-fails', input: z.object({}) }, async (ctx) => {
  await ctx.step('ok', () => 1);
  await ctx.step('boom', () => {
    throw new NonRetryableError('boom went the step');
  });
});

const parks = defineWorkflow({ name: 'log-parks', input: z.object({}), pauseAfter: 1 }, async (ctx) =>
  ctx.step('flaky', () => {
    throw new Error('still down');
  }, { retry: { maxAttempts: 5, initialDelay: 10 } }));

const { logger, lines } = capture();
const fx = useEngine({ workflows: [chatty, fails, parks], logger, id: 'log-worker' });

const of = (runId: string) => lines.filter((l) => l.fields.runId === runId);

describe('worker logs', () => {
  it('a run that completes: started and completed at info, with run id, workflow, version, attempt; resumed after its wait', async () => {
    const run = await fx.engine.client.start(chatty, { secret: SECRET_IN });
    await waitFor(async () => (await fx.engine.client.get(run.id))?.status === 'waiting', { what: 'the run to wait' });
    await fx.engine.client.signal(run.id, go, { secret: SECRET_IN });
    await run.result({ timeout: '20s' });
    await waitFor(() => of(run.id).some((l) => l.message === 'run completed'), { what: 'the completion line' });
    const mine = of(run.id);
    const started = mine.find((l) => l.message === 'run started');
    assert.deepEqual(started, {
      level: 'info', message: 'run started',
      fields: { worker: 'log-worker', runId: run.id, workflow: 'log-chatty', version: '1', attempt: 1, execution: 1 },
    });
    assert.ok(mine.some((l) => l.message === 'run resumed' && l.fields.attempt === 2));
    assert.equal(mine.filter((l) => l.message === 'run completed' && l.level === 'info').length, 1);
    const text = JSON.stringify(lines);
    assert.ok(!text.includes(SECRET_IN) && !text.includes(SECRET_OUT), 'no input, output or signal payload is logged');
  });

  it('ctx.log writes each line once: silent while the code replays recorded calls', () => {
    const user = lines.filter((l) => ['before the first step', 'between the steps', 'after the signal'].includes(l.message));
    assert.deepEqual(user.map((l) => [l.message, l.fields.n]), [['before the first step', 1], ['between the steps', 2], ['after the signal', undefined]]);
    assert.equal(user[0]?.fields.workflow, 'log-chatty', 'with the run\'s fields');
  });

  it('a failed run: warn with the step and the error', async () => {
    const run = await fx.engine.client.start(fails, {});
    await assert.rejects(run.result({ timeout: '20s' }));
    // result() can hear of the end (its commit) a moment before the worker logs it.
    const failed = await waitFor(() => of(run.id).find((l) => l.message === 'run failed'), { what: 'the failure line' });
    assert.equal(failed?.level, 'warn');
    assert.equal(failed?.fields.step, 'boom');
    assert.deepEqual(failed?.fields.error, { name: 'StepFailedError', message: 'step "boom" failed after 1 attempt(s): boom went the step', code: 'step_failed' });
    assert.equal(failed?.fields.attempt, 1);
  });

  it('a parked run (the dead letter): warn with the step', async () => {
    const run = await fx.engine.client.start(parks, {});
    await waitFor(() => of(run.id).find((l) => l.message === 'run parked'), { what: 'the park' });
    const parked = of(run.id).find((l) => l.message === 'run parked');
    assert.equal(parked?.level, 'warn');
    assert.equal((await fx.engine.client.get(run.id))?.status, 'paused');
  });

  it('a run whose lease is taken away: warn "lease lost" with its fields', async () => {
    let started!: () => void;
    const blocking = new Promise<void>((r) => (started = r));
    const holds = defineWorkflow({ name: 'log-lease', input: z.object({}) }, async (ctx) =>
      ctx.step('block', () => {
        started();
        return new Promise(() => {});
      }));
    const { logger: sink, lines: got } = capture();
    const w = createWorker({ pool: fx.db.pool, workflows: [holds], logger: sink, pollInterval: 200 });
    await w.start();
    try {
      const run = await fx.engine.client.start(holds, {});
      await blocking;
      // Another party takes the run away, as an expired-lease reclaim would.
      const { rows } = await fx.db.pool.query('select lease_token from trellis.runs where id = $1', [run.id]);
      await fx.db.pool.query('select trellis.run_release($1, $2)', [run.id, rows[0].lease_token]);
      const lost = await waitFor(() => got.find((l) => l.message.startsWith('run lease lost')), { what: 'the lease-lost line' });
      assert.equal(lost.level, 'warn');
      assert.equal(lost.fields.runId, run.id);
      assert.equal(lost.fields.workflow, 'log-lease');
      assert.equal(typeof lost.fields.attempt, 'number');
    } finally {
      await w.stop({ timeout: 100 });
    }
  });

  it('a logger that turns info off (isLevelEnabled, as pino has) is never called at info, and still gets every failure at warn', async () => {
    const ok = defineWorkflow({ name: 'log-quiet-ok', input: z.object({}) }, async (ctx) => ctx.step('one', () => 1));
    const bad = defineWorkflow({ name: 'log-quiet-fail', input: z.object({}) }, async (ctx) =>
      ctx.step('boom', () => {
        throw new NonRetryableError('quiet boom');
      }));
    /** pino's shape: a level on the instance, read by its isLevelEnabled method. */
    class WarnLogger {
      readonly lines: Line[] = [];
      private readonly min = 2;
      private readonly order = ['debug', 'info', 'warn', 'error'];
      isLevelEnabled(level: string): boolean {
        return this.order.indexOf(level) >= this.min;
      }
      private at(level: string, fields: unknown, message?: unknown) {
        this.lines.push({ level, fields: fields as Record<string, unknown>, message: message as string });
      }
      debug(fields: unknown, message?: unknown) { this.at('debug', fields, message); }
      info(fields: unknown, message?: unknown) { this.at('info', fields, message); }
      warn(fields: unknown, message?: unknown) { this.at('warn', fields, message); }
      error(fields: unknown, message?: unknown) { this.at('error', fields, message); }
    }
    const sink = new WarnLogger();
    const w = createWorker({ pool: fx.db.pool, workflows: [ok, bad], logger: sink as unknown as Logger, pollInterval: 200 });
    await w.start();
    let okId: string;
    let badId: string;
    try {
      const good = await fx.engine.client.start(ok, {});
      const failing = await fx.engine.client.start(bad, {});
      okId = good.id;
      badId = failing.id;
      assert.equal(await good.result({ timeout: '20s' }), 1);
      await assert.rejects(failing.result({ timeout: '20s' }));
    } finally {
      // Every execution has ended (and logged its end) once stop() returns.
      await w.stop({ timeout: '5s' });
    }
    const failed = sink.lines.filter((l) => l.fields.runId === badId);
    assert.deepEqual(failed.map((l) => [l.level, l.message]), [['warn', 'run failed']]);
    assert.equal(failed[0]?.fields.step, 'boom');
    assert.equal(failed[0]?.fields.workflow, 'log-quiet-fail');
    assert.deepEqual(sink.lines.filter((l) => l.fields.runId === okId), [], 'no line for the run that completed');
    assert.deepEqual(sink.lines.filter((l) => l.level === 'info' || l.level === 'debug'), [], 'nothing at a level the logger turned off');
  });

  it('childLogger hands a pino-shaped logger (fields, message) whichever order it was called in', () => {
    const { logger: sink, lines: got } = capture();
    const log = childLogger(sink, { service: 'billing' });
    log.info('message first', { a: 1 });
    log.warn({ b: 2 }, 'fields first');
    assert.deepEqual(got, [
      { level: 'info', fields: { service: 'billing', a: 1 }, message: 'message first' },
      { level: 'warn', fields: { service: 'billing', b: 2 }, message: 'fields first' },
    ]);
  });
});

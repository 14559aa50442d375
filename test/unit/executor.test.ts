import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { LeaseLostError } from '../../src/errors.ts';
import type { StepCheckpoint, StepRecord } from '../../src/replay/history.ts';
import { execute, type ExecuteOptions, startExecution } from '../../src/replay/executor.ts';
import { defineWorkflow, type WorkflowDefinition } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/workflow/logger.ts';

/** A sink that keeps checkpoints in order; `hold` delays every commit until released. */
function sink(options: { hold?: boolean; refuse?: boolean } = {}) {
  const written: StepCheckpoint[] = [];
  const waiting: (() => void)[] = [];
  return {
    written,
    release: () => waiting.splice(0).forEach((f) => f()),
    record: (cp: StepCheckpoint) => {
      if (options.refuse) return Promise.reject(new LeaseLostError('gone'));
      written.push(cp);
      return options.hold ? new Promise<void>((r) => waiting.push(r)) : Promise.resolve();
    },
  };
}

function options(definition: WorkflowDefinition, extra: Partial<ExecuteOptions> & { sink: ExecuteOptions['sink'] }): ExecuteOptions {
  return {
    runId: '00000000-0000-4000-8000-000000000000',
    definition,
    input: {},
    attempt: 1,
    failures: 0,
    metadata: {},
    history: null,
    signal: new AbortController().signal,
    maxPayloadBytes: 1_000_000,
    maxHistorySteps: 100,
    log: silentLogger,
    ...extra,
  };
}

function run(definition: WorkflowDefinition, extra: Partial<ExecuteOptions> & { sink: ExecuteOptions['sink'] }) {
  return execute(options(definition, extra));
}

const rec = (seq: number, name: string, output: unknown, status: StepRecord['status'] = 'completed', attempts = 1): StepRecord =>
  ({ seq, name, kind: 'step', status, output, error: null, attempts });

describe('replay executor', () => {
  it('returns recorded results without running completed steps', async () => {
    let ran = 0;
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => {
      const a = await ctx.step('a', () => (ran++, 1));
      const b = await ctx.step('b', () => (ran++, a + 1));
      return b;
    });
    const s = sink();
    const outcome = await run(wf, { sink: s, history: [rec(0, 'a', 41)] });
    assert.deepEqual(outcome, { kind: 'completed', output: '42' });
    assert.equal(ran, 1, 'only step b ran');
    assert.deepEqual(s.written.filter((c) => c.status === 'completed').map((c) => c.name), ['b']);
  });

  it('stops with non_determinism, writing nothing, when the history holds another step', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('renamed', () => 1));
    const s = sink();
    const outcome = await run(wf, { sink: s, history: [rec(0, 'original', 1)] });
    assert.equal(outcome.kind, 'failed');
    assert.equal(outcome.kind === 'failed' && outcome.error.code, 'non_determinism');
    assert.equal(s.written.length, 0);
  });

  it('stops with non_determinism when the code returns before the recorded history ends', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('a', () => 1));
    const outcome = await run(wf, { sink: sink(), history: [rec(0, 'a', 1), rec(1, 'b', 2)] });
    assert.equal(outcome.kind === 'failed' && outcome.error.code, 'non_determinism');
  });

  it('never starts a step body before the previous checkpoint has committed', async () => {
    const order: string[] = [];
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => {
      await ctx.step('a', () => order.push('a-body'));
      ctx.now(); // a recorded value, queued without waiting
      await ctx.step('b', () => order.push('b-body'));
    });
    const s = sink({ hold: true });
    const done = run(wf, { sink: s });
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, ['a-body'], 'b waits while the checkpoints of a and now() are uncommitted');
    assert.deepEqual(s.written.map((c) => `${c.name}:${c.status}`), ['a:running', 'a:completed', 'now:completed']);
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, ['a-body']);
    s.release(); // both commit
    await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, ['a-body', 'b-body']);
    s.release();
    assert.equal((await done).kind, 'completed');
  });

  it('reports the end while the last checkpoint is uncommitted, and settle() says when that checkpoint failed', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('a', () => 7));
    const s = sink({ hold: true });
    const execution = startExecution(options(wf, { sink: s }));
    const outcome = await execution.done;
    assert.deepEqual(outcome, { kind: 'completed', output: '7' }, 'the completion can join the step checkpoint in one transaction');
    assert.deepEqual(s.written.map((c) => `${c.name}:${c.status}`), ['a:running', 'a:completed']);
    s.release();
    assert.equal(await execution.settle(), undefined, 'every checkpoint committed');

    let fail!: (error: unknown) => void;
    const refused = startExecution(options(wf, {
      sink: { record: (cp) => ('status' in cp && cp.status === 'completed' ? new Promise<void>((_, reject) => (fail = reject)) : Promise.resolve()) },
    }));
    assert.equal((await refused.done).kind, 'completed');
    fail(new LeaseLostError('gone'));
    assert.equal((await refused.settle())?.kind, 'abandoned', 'the worker must not write the completion');
  });

  it('continues a retrying or interrupted step with the next attempt number', async () => {
    const seen: number[] = [];
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => {
      await ctx.step('a', ({ attempt }) => seen.push(attempt));
      await ctx.step('b', ({ attempt }) => seen.push(attempt));
    });
    await run(wf, { sink: sink(), history: [rec(0, 'a', null, 'retrying', 2), rec(1, 'b', null, 'running', 1)] });
    assert.deepEqual(seen, [3, 2]);
  });

  it('asks for a delayed release when a step attempt fails and may be retried', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) =>
      ctx.step('a', () => { throw new Error('flaky'); }, { retry: { initialDelay: 500, jitter: 0 } }));
    const s = sink();
    const outcome = await run(wf, { sink: s });
    assert.equal(outcome.kind, 'release');
    assert.equal(outcome.kind === 'release' && outcome.delayMs, 500);
    assert.deepEqual(s.written.map((c) => c.status), ['running', 'retrying']);
  });

  it('fails with history_limit past the configured number of steps', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => {
      for (let i = 0; i < 10; i++) await ctx.step('loop', () => i);
    });
    const s = sink();
    const outcome = await run(wf, { sink: s, maxHistorySteps: 3 });
    assert.equal(outcome.kind === 'failed' && outcome.error.code, 'history_limit');
    assert.equal(s.written.filter((c) => c.status === 'completed').length, 3, 'nothing written past the limit');
  });

  it('abandons the run when a checkpoint is refused or the worker aborts it', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('a', () => 1));
    assert.equal((await run(wf, { sink: sink({ refuse: true }) })).kind, 'abandoned');
    const controller = new AbortController();
    const blocked = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('a', () => new Promise(() => {})));
    const pending = run(blocked, { sink: sink(), signal: controller.signal });
    controller.abort(new Error('shutdown'));
    assert.equal((await pending).kind, 'abandoned');
  });

  it('fails a run whose input does not match the schema', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({ n: z.number() }) }, async () => 1);
    const outcome = await run(wf, { sink: sink(), input: { n: 'nope' } });
    assert.equal(outcome.kind === 'failed' && outcome.error.code, 'validation');
  });
});

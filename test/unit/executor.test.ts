import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { LeaseLostError, NonRetryableError } from '../../src/errors.ts';
import type { StepRecord } from '../../src/protocol/history.ts';
import type { Checkpoint, StepOp } from '../../src/protocol/checkpoint.ts';
import { execute, startExecution } from '../../src/replay/executor.ts';
import type { ExecuteOptions } from '../../src/replay/replay.ts';
import { RunAbort } from '../../src/replay/run-abort.ts';
import { defineWorkflow, type WorkflowDefinition } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

/** A sink that keeps checkpoints in order; `hold` delays every commit until released. */
function sink(options: { hold?: boolean | undefined; refuse?: boolean | undefined } = {}) {
  const written: StepOp[] = [];
  const waiting: (() => void)[] = [];
  return {
    written,
    release: () => waiting.splice(0).forEach((f) => f()),
    record: (cp: StepOp) => {
      if (options.refuse) return Promise.reject(new LeaseLostError('gone'));
      written.push(cp);
      return options.hold ? new Promise<void>((r) => waiting.push(r)) : Promise.resolve();
    },
  };
}

/**
 * A sink that keeps what committed as checkpoint_apply does (a completed or
 * failed call is final), for replaying from it. A checkpoint that `lose`
 * picks never commits: the process dies before its transaction does.
 */
function ledger(lose: (cp: StepOp) => boolean = () => false) {
  const rows = new Map<number, StepRecord>();
  const written: StepOp[] = [];
  return {
    written,
    history: () => [...rows.values()].sort((a, b) => a.seq - b.seq),
    record: (cp: Checkpoint) => {
      if (cp.op !== 'step') throw new Error('no child starts here');
      written.push(cp);
      if (lose(cp)) return new Promise<void>(() => {});
      const old = rows.get(cp.seq);
      if (old?.status !== 'completed' && old?.status !== 'failed') {
        rows.set(cp.seq, {
          seq: cp.seq, name: cp.name, kind: cp.kind, status: cp.status, output: cp.output === undefined ? null : JSON.parse(cp.output),
          error: cp.error ?? null, attempts: cp.attempts, delivered: cp.delivered ?? null,
        });
      }
      return Promise.resolve();
    },
  };
}

/** Let the event loop turn until `done()` holds (at most 100 turns). */
async function until(done: () => boolean): Promise<void> {
  for (let i = 0; i < 100 && !done(); i++) await new Promise((r) => setImmediate(r));
  assert.ok(done(), 'condition not reached');
}

function gate() {
  let open!: () => void;
  const promise = new Promise<void>((resolve) => (open = resolve));
  return { promise, open };
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
    abort: new RunAbort(),
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
  it('counts a new timer from no earlier than the engine\'s clock: the claim\'s now plus the time since its statement was sent', async () => {
    // The claim read trellis.now() (1_000_000) after its statement was sent,
    // 400 ms before this execution began: the engine's clock is now at most
    // 400 ms past it. A timer counted from the claim's now plus the time
    // since the reply (dbNow) could end up to 400 ms early.
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => {
      await Promise.race([ctx.sleep('nap', 1000), ctx.waitForSignal('go', { timeout: 2000 })]);
      return 'never';
    });
    const s = sink();
    const sentAt = performance.now() - 400;
    const outcome = await run(wf, { sink: s, now: new Date(1_000_000), claimSentAt: sentAt });
    const nap = s.written.find((c) => c.name === 'nap');
    const go = s.written.find((c) => c.name === 'go');
    const napUntil = (JSON.parse(nap?.output ?? '{}') as { until: number }).until;
    const goUntil = (JSON.parse(go?.output ?? '{}') as { until: number }).until;
    assert.ok(napUntil >= 1_000_000 + 400 + 1000, `the nap ends at ${napUntil}`);
    assert.ok(goUntil >= 1_000_000 + 400 + 2000, `the signal's timeout ends at ${goUntil}`);
    assert.ok(napUntil < 1_000_000 + 400 + 1000 + 5000, 'and not long after');
    // The run parks until the nap's own end, as recorded.
    assert.equal(outcome.op, 'wait');
    assert.equal(outcome.op === 'wait' ? outcome.deadline : null, new Date(napUntil).toISOString());
  });

  it('fails a run whose history is the engine\'s too_large call, as code that does not know that kind meets it: at its first call, never a crash', async () => {
    // What run_claim hands over for a history over 256 MB (sql/200_runs.sql):
    // this release's worker fails the run before replaying (markOversized);
    // an older worker's replay meets a call it did not make.
    const sentinel = { seq: 0, name: 'history too large to hand over', kind: 'too_large', status: 'failed', output: null, attempts: 0,
      error: { name: 'PayloadTooLargeError', code: 'payload_too_large', message: 'total size of jsonb array elements exceeds the maximum' },
      too_large: 'history' } as unknown as StepRecord;
    let ran = 0;
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('a', () => ++ran));
    const outcome = await run(wf, { sink: sink(), history: [sentinel], attempt: 2 });
    assert.equal(outcome.op, 'fail');
    assert.match(outcome.op === 'fail' ? outcome.error.message : '', /history too large to hand over/);
    assert.equal(ran, 0);
    const { markOversized } = await import('../../src/protocol/history.ts');
    const marked = markOversized({ id: 'r', history: [sentinel], children: null } as never);
    assert.deepEqual([marked.history, marked.oversized?.detail], [null, 'total size of jsonb array elements exceeds the maximum']);
    const plain = markOversized({ id: 'r', history: [{ ...sentinel, kind: 'step', too_large: undefined }], children: null } as never);
    assert.equal(plain.oversized, undefined);
  });

  it('returns recorded results without running completed steps', async () => {
    let ran = 0;
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => {
      const a = await ctx.step('a', () => (ran++, 1));
      const b = await ctx.step('b', () => (ran++, a + 1));
      return b;
    });
    const s = sink();
    const outcome = await run(wf, { sink: s, history: [rec(0, 'a', 41)] });
    assert.deepEqual(outcome, { op: 'complete', output: '42' });
    assert.equal(ran, 1, 'only step b ran');
    assert.deepEqual(s.written.filter((c) => c.status === 'completed').map((c) => c.name), ['b']);
  });

  it('stops with non_determinism, writing nothing, when the history holds another step', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('renamed', () => 1));
    const s = sink();
    const outcome = await run(wf, { sink: s, history: [rec(0, 'original', 1)] });
    assert.equal(outcome.op, 'fail');
    assert.equal(outcome.op === 'fail' && outcome.error.code, 'non_determinism');
    assert.equal(s.written.length, 0);
  });

  it('stops with non_determinism when the code returns before the recorded history ends', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('a', () => 1));
    const outcome = await run(wf, { sink: sink(), history: [rec(0, 'a', 1), rec(1, 'b', 2)] });
    assert.equal(outcome.op === 'fail' && outcome.error.code, 'non_determinism');
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
    await until(() => s.written.length === 3);
    assert.deepEqual(order, ['a-body'], 'b waits while the checkpoints of a and now() are uncommitted');
    assert.deepEqual(s.written.map((c) => `${c.name}:${c.status}`), ['a:running', 'a:completed', 'now:completed']);
    for (let i = 0; i < 5; i++) await new Promise((r) => setImmediate(r));
    assert.deepEqual(order, ['a-body']);
    s.release(); // both commit
    await until(() => order.length === 2);
    assert.deepEqual(order, ['a-body', 'b-body']);
    s.release();
    assert.equal((await done).op, 'complete');
  });

  it('reports the end while the last checkpoint is uncommitted, and settle() says when that checkpoint failed', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('a', () => 7));
    const s = sink({ hold: true });
    const execution = startExecution(options(wf, { sink: s }));
    const outcome = await execution.done;
    assert.deepEqual(outcome, { op: 'complete', output: '7' }, 'the completion can join the step checkpoint in one transaction');
    assert.deepEqual(s.written.map((c) => `${c.name}:${c.status}`), ['a:running', 'a:completed']);
    s.release();
    assert.equal(await execution.settle(), undefined, 'every checkpoint committed');

    let fail!: (error: unknown) => void;
    const refused = startExecution(options(wf, {
      sink: { record: (cp) => ('status' in cp && cp.status === 'completed' ? new Promise<void>((_, reject) => (fail = reject)) : Promise.resolve()) },
    }));
    assert.equal((await refused.done).op, 'complete');
    fail(new LeaseLostError('gone'));
    assert.equal((await refused.settle())?.op, 'abandoned', 'the worker must not write the completion');
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
    assert.equal(outcome.op, 'release');
    assert.equal(outcome.op === 'release' && outcome.delay_ms, 500);
    assert.deepEqual(s.written.map((c) => c.status), ['running', 'retrying']);
  });

  it('fails with history_limit past the configured number of steps', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => {
      for (let i = 0; i < 10; i++) await ctx.step('loop', () => i);
    });
    const s = sink();
    const outcome = await run(wf, { sink: s, maxHistorySteps: 3 });
    assert.equal(outcome.op === 'fail' && outcome.error.code, 'history_limit');
    assert.equal(s.written.filter((c) => c.status === 'completed').length, 3, 'nothing written past the limit');
  });

  it('ctx.signal fires at the worker abort with its reason, after the step signals', async () => {
    const reason = new Error('lease lost');
    const abort = new RunAbort();
    const seen: unknown[] = [];
    let inStep!: () => void;
    const stepRunning = new Promise<void>((r) => (inStep = r));
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => {
      assert.equal(ctx.signal.aborted, false);
      ctx.signal.addEventListener('abort', () => seen.push(ctx.signal.reason));
      await ctx.step('a', ({ signal }) => {
        signal.addEventListener('abort', () => seen.push('step signal'));
        inStep();
        return new Promise(() => {});
      });
    });
    const pending = run(wf, { sink: sink(), abort });
    await stepRunning;
    abort.abort(reason);
    const outcome = await pending;
    assert.equal(outcome.op === 'abandoned' && outcome.reason, reason);
    assert.deepEqual(seen, ['step signal', reason], 'the replay stops the step first, then the run signal fires');
    let ran = false;
    const late = defineWorkflow({ name: 'w', input: z.object({}) }, async () => {
      ran = true;
    });
    assert.equal((await run(late, { sink: sink(), abort })).op, 'abandoned');
    assert.equal(ran, false, 'an execution begun after the abort does not run');
  });

  it('abandons the run when a checkpoint is refused or the worker aborts it', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('a', () => 1));
    assert.equal((await run(wf, { sink: sink({ refuse: true }) })).op, 'abandoned');
    const controller = new RunAbort();
    const blocked = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('a', () => new Promise(() => {})));
    const pending = run(blocked, { sink: sink(), abort: controller });
    controller.abort(new Error('shutdown'));
    assert.equal((await pending).op, 'abandoned');
  });

  it('begins no step body on a lease that ran out after the check before it (a body queued behind one that blocked the event loop)', async () => {
    let bodies = 0;
    let expired = false;
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => ctx.step('a', () => ++bodies));
    const controller = new RunAbort();
    const outcome = await run(wf, {
      sink: sink(),
      abort: controller,
      // As the worker's check: false (and the run aborted) once the lease ran
      // out. The lease runs out in the very next turn, before the body's.
      leaseHeld: () => {
        queueMicrotask(() => (expired = true));
        if (!expired) return true;
        controller.abort(new LeaseLostError('lease ran out before a step began'));
        return false;
      },
    });
    assert.equal(outcome.op, 'abandoned');
    assert.equal(bodies, 0, 'the body never began');
  });

  /**
   * Two branches of two steps each, where the second branch's first step
   * finishes first: its second step takes call #2. The process dies before
   * the first branch's second step commits; the replay has every recorded
   * result at once and must hand them back in the order they were delivered,
   * or the first branch's second step asks for call #2.
   */
  async function twoByTwo(names: (i: number) => [string, string]) {
    const gates = [gate(), gate()];
    const ran: string[] = [];
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) =>
      Promise.all([0, 1].map(async (i) => {
        const [first, second] = names(i);
        const a = await ctx.step(first, async () => {
          ran.push(`${first}/${i}`);
          await (gates[i] as ReturnType<typeof gate>).promise;
          return `a${i}`;
        });
        return ctx.step(second, () => (ran.push(`${second}/${i}`), `${a}>b${i}`));
      })));
    const [a0, b0] = names(0);
    const original = ledger((cp) => cp.name === b0 && cp.seq === 3 && cp.status === 'completed');
    const done = run(wf, { sink: original });
    await until(() => ran.length === 2);
    gates[1]?.open(); // the second branch finishes its first step first
    await until(() => original.written.some((c) => c.seq === 2 && c.status === 'completed'));
    gates[0]?.open();
    assert.deepEqual(await done, { op: 'complete', output: JSON.stringify(['a0>b0', 'a1>b1']) });
    const history = original.history();
    assert.deepEqual(history.map((r) => `${r.seq}:${r.name}:${r.status}`),
      [`0:${a0}:completed`, `1:${names(1)[0]}:completed`, `2:${names(1)[1]}:completed`, `3:${b0}:running`]);

    ran.length = 0;
    const replay = ledger();
    const outcome = await run(wf, { sink: replay, history, attempt: 2 });
    assert.deepEqual(outcome, { op: 'complete', output: JSON.stringify(['a0>b0', 'a1>b1']) }, 'each branch gets its own results');
    assert.deepEqual(history.map((r) => r.delivered), [3, 1, 2, null], 'the order results reached the code');
    assert.deepEqual(ran, [`${b0}/0`], 'only the call whose checkpoint was lost runs again');
    assert.deepEqual(replay.written.filter((c) => c.status === 'completed').map((c) => [c.seq, c.delivered]), [[3, 4]],
      'a live result is numbered after the recorded ones');
  }

  it('replays Promise.all branches of sequential steps in delivery order (no false non-determinism)', async () => {
    await twoByTwo((i) => [`a-${i}`, `b-${i}`]);
  });

  it('hands each Promise.all branch its own recorded results when every branch uses the same step names', async () => {
    await twoByTwo(() => ['fetch', 'save']);
  });

  it('replays a failed step as a rejection in its turn and delivers a timer that came due after the recorded results', async () => {
    const NOW = Date.parse('2030-01-01T00:00:00Z');
    const gates = [gate(), gate()];
    const ran: string[] = [];
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => Promise.all([
      (async () => {
        try {
          await ctx.step('charge', async () => {
            await gates[0]?.promise;
            throw new NonRetryableError('card declined');
          });
          return 'charged';
        } catch {
          return ctx.step('undo', () => (ran.push('undo'), 'undone'));
        }
      })(),
      (async () => {
        await ctx.step('reserve', async () => (await gates[1]?.promise, 'reserved'));
        await ctx.sleep('nap', '1 hour');
        return ctx.step('ship', () => (ran.push('ship'), 'shipped'));
      })(),
    ]));
    const original = ledger();
    const done = run(wf, { sink: original, now: new Date(NOW) });
    gates[1]?.open();
    await until(() => original.written.some((c) => c.name === 'nap'));
    gates[0]?.open();
    const parked = await done;
    assert.equal(parked.op, 'wait');
    const history = original.history();
    assert.deepEqual(history.map((r) => `${r.seq}:${r.name}:${r.status}`), ['0:charge:failed', '1:reserve:completed', '2:nap:waiting', '3:undo:completed']);

    ran.length = 0;
    const replay = ledger();
    const outcome = await run(wf, { sink: replay, history, attempt: 2, now: new Date(NOW + 2 * 3600_000) });
    assert.deepEqual(outcome, { op: 'complete', output: JSON.stringify(['undone', 'shipped']) });
    assert.deepEqual(history.map((r) => r.delivered), [2, 1, null, 3]);
    assert.deepEqual(ran, ['ship']);
    assert.deepEqual(replay.written.filter((c) => c.status === 'completed').map((c) => `${c.seq}:${c.name}:${c.delivered}`),
      ['2:nap:4', '4:ship:5']);
  });

  it('replays races inside Promise.all branches in delivery order: a race result reaches its branch after its winner', async () => {
    const gates = [gate(), gate()];
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) =>
      Promise.all([0, 1].map(async (i) => {
        const r = await ctx.race({
          done: ctx.step(`work-${i}`, async () => (await gates[i]?.promise, `w${i}`)),
          late: ctx.sleep(`deadline-${i}`, '1 hour'),
        });
        return ctx.step(`after-${i}`, () => `${i}:${r.key}:${String(r.value)}`);
      })));
    const original = ledger((cp) => cp.name === 'after-0' && cp.status === 'completed');
    const done = run(wf, { sink: original });
    gates[1]?.open();
    await until(() => original.written.some((c) => c.name === 'after-1' && c.status === 'completed'));
    gates[0]?.open();
    assert.deepEqual(await done, { op: 'complete', output: JSON.stringify(['0:done:w0', '1:done:w1']) });
    const history = original.history();
    assert.deepEqual(history.map((r) => r.name),
      ['work-0', 'deadline-0', 'race', 'work-1', 'deadline-1', 'race', 'after-1', 'after-0']);
    assert.equal(history[7]?.status, 'running', 'the last checkpoint was lost');

    const outcome = await run(wf, { sink: ledger(), history, attempt: 2 });
    assert.deepEqual(outcome, { op: 'complete', output: JSON.stringify(['0:done:w0', '1:done:w1']) });
  });

  it('hands back a recorded result whose call follows a call the history lost (a retry deleted it) once the code makes it', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({}) }, async (ctx) => {
      try {
        return await ctx.step('risky', () => { throw new NonRetryableError('again'); });
      } catch {
        return ctx.step('compensate', () => 'ran again');
      }
    });
    const history = [{ ...rec(1, 'compensate', 'recorded'), delivered: 2 }];
    const outcome = await run(wf, { sink: sink(), history });
    assert.deepEqual(outcome, { op: 'complete', output: '"recorded"' });
  });

  it('fails a run whose input does not match the schema', async () => {
    const wf = defineWorkflow({ name: 'w', input: z.object({ n: z.number() }) }, async () => 1);
    const outcome = await run(wf, { sink: sink(), input: { n: 'nope' } });
    assert.equal(outcome.op === 'fail' && outcome.error.code, 'validation');
  });
});

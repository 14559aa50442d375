/**
 * Replaying a decided ctx.race from its history: the losers it recorded are
 * disarmed even if their 'lost' marks never committed (a crash right after the
 * race's checkpoint), so a losing signal wait cannot eat the next signal.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import type { PendingSignal, StepRecord } from '../../src/protocol/history.ts';
import type { Checkpoint } from '../../src/protocol/checkpoint.ts';
import { execute } from '../../src/replay/executor.ts';
import { RunAbort } from '../../src/replay/run-abort.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

const raced = defineWorkflow({ name: 'raced', input: z.object({}) }, async (ctx) => {
  const winner = await ctx.race({ signal: ctx.waitForSignal<string>('go'), timer: ctx.sleep('deadline', '1 day') });
  const next = await ctx.waitForSignal<string>('go');
  return { winner: winner.key, next: next.timedOut ? null : next.payload };
});

const NOW = Date.parse('2030-01-01T00:00:00Z');
const rec = (seq: number, name: string, kind: StepRecord['kind'], status: StepRecord['status'], output: unknown): StepRecord =>
  ({ seq, name, kind, status, output, error: null, attempts: 1 });

async function replay(history: StepRecord[], signals: PendingSignal[]) {
  const written: Checkpoint[] = [];
  const outcome = await execute({
    runId: '00000000-0000-4000-8000-000000000001',
    definition: raced,
    input: {},
    attempt: 2,
    failures: 0,
    metadata: {},
    history,
    signals,
    now: new Date(NOW),
    abort: new RunAbort(),
    maxPayloadBytes: 1_000_000,
    maxHistorySteps: 100,
    log: silentLogger,
    sink: { record: async (cp) => void written.push(cp) },
  });
  return { outcome, written };
}

const meantForTheSecondWait: PendingSignal = { id: 7, name: 'go', payload: 'second', signal_id: null };
const crashedAfterTheRace = (raceOutput: unknown) => [
  rec(0, 'go', 'signal', 'waiting', { signal: 'go', until: null }), // its 'lost' mark never committed
  rec(1, 'deadline', 'sleep', 'completed', { until: NOW - 1000 }),
  rec(2, 'race', 'race', 'completed', raceOutput),
];

describe('replay of a decided race', () => {
  it('disarms the losers stored with the race record, so the next wait consumes the signal', async () => {
    const { outcome, written } = await replay(crashedAfterTheRace({ key: 'timer', lost: [0] }), [meantForTheSecondWait]);
    assert.deepEqual(outcome, { op: 'complete', output: JSON.stringify({ winner: 'timer', next: 'second' }) });
    const consumed = written.filter((c) => c.op === 'step' && c.signal !== undefined);
    assert.deepEqual(consumed.map((c) => [c.seq, c.op === 'step' && c.signal]), [[3, 7]], 'only the wait after the race consumed it');
    assert.ok(!written.some((c) => c.seq === 0 && c.op === 'step' && c.status === 'completed' && c.output !== JSON.stringify({ lost: true })));
  });

  it('also disarms non-child losers of a race recorded before losers were stored', async () => {
    const { outcome } = await replay(crashedAfterTheRace({ key: 'timer' }), [meantForTheSecondWait]);
    assert.deepEqual(outcome, { op: 'complete', output: JSON.stringify({ winner: 'timer', next: 'second' }) });
  });

  it('treats a loser with a committed lost mark as disarmed', async () => {
    const history = crashedAfterTheRace({ key: 'timer', lost: [0] });
    history[0] = rec(0, 'go', 'signal', 'completed', { lost: true });
    const { outcome } = await replay(history, [meantForTheSecondWait]);
    assert.deepEqual(outcome, { op: 'complete', output: JSON.stringify({ winner: 'timer', next: 'second' }) });
  });
});

// The race's own record never committed (the run's lease expired and it was
// reclaimed, or a concurrent branch halted the execution) but its winner's did.
const winnerOnly = (winner: 'signal' | 'timer') => [
  winner === 'signal'
    ? { ...rec(0, 'go', 'signal', 'completed', { timedOut: false, payload: 'first', signalId: null }), delivered: 1 }
    : rec(0, 'go', 'signal', 'waiting', { signal: 'go', until: null }),
  winner === 'timer'
    ? { ...rec(1, 'deadline', 'sleep', 'completed', { until: NOW - 1000 }), delivered: 1 }
    : rec(1, 'deadline', 'sleep', 'waiting', { until: NOW - 1000 }), // due by now as well
];

describe('replay of a race whose record was lost after its winner\'s', () => {
  it('lets the recorded signal wait win over the timer that is due by now, and records the timer as lost', async () => {
    const { outcome, written } = await replay(winnerOnly('signal'), [meantForTheSecondWait]);
    assert.deepEqual(outcome, { op: 'complete', output: JSON.stringify({ winner: 'signal', next: 'second' }) });
    const race = written.find((c) => c.op === 'step' && c.kind === 'race');
    assert.equal(race?.op === 'step' && race.output, JSON.stringify({ key: 'signal', lost: [1] }));
    assert.ok(!written.some((c) => c.op === 'step' && c.seq === 1 && c.output !== JSON.stringify({ lost: true })), 'the losing timer is not completed');
  });

  it('lets the recorded timer win over the signal that is buffered by now, which the next wait then consumes', async () => {
    const { outcome, written } = await replay(winnerOnly('timer'), [meantForTheSecondWait]);
    assert.deepEqual(outcome, { op: 'complete', output: JSON.stringify({ winner: 'timer', next: 'second' }) });
    const consumed = written.filter((c) => c.op === 'step' && c.signal !== undefined);
    assert.deepEqual(consumed.map((c) => c.seq), [3], 'only the wait after the race consumed it');
  });
});

const earlyWait = defineWorkflow({ name: 'early-wait', input: z.object({}) }, async (ctx) => {
  const s = ctx.waitForSignal<string>('go'); // evaluated at once: not claimed by the race below
  await Promise.resolve();
  await Promise.resolve();
  const winner = await ctx.race({ t: ctx.sleep('deadline', '1 day'), s });
  return winner.key;
});

describe('a race over a wait evaluated before it', () => {
  it('lets the wait that already took its signal win over a timer that is merely due', async () => {
    const written: Checkpoint[] = [];
    const outcome = await execute({
      runId: '00000000-0000-4000-8000-000000000002', definition: earlyWait, input: {}, attempt: 2, failures: 0, metadata: {},
      history: [rec(0, 'go', 'signal', 'waiting', { signal: 'go', until: null }), rec(1, 'deadline', 'sleep', 'waiting', { until: NOW - 1 })],
      signals: [meantForTheSecondWait], now: new Date(NOW), abort: new RunAbort(), maxPayloadBytes: 1_000_000,
      maxHistorySteps: 100, log: silentLogger, sink: { record: async (cp) => void written.push(cp) },
    });
    assert.deepEqual(outcome, { op: 'complete', output: JSON.stringify('s') });
    const race = written.find((c) => c.op === 'step' && c.kind === 'race');
    assert.equal(race?.op === 'step' && race.output, JSON.stringify({ key: 's', lost: [1] }));
  });
});

const kid = defineWorkflow({ name: 'kid', input: z.object({}) }, async () => 42);
const childRace = defineWorkflow({ name: 'child-race', input: z.object({}) }, async (ctx) => {
  const first = await ctx.race({ timer: ctx.sleep('deadline', '1 hour'), kid: ctx.child(kid, {}) });
  return first.key;
});

describe('replay of a child race whose record was lost after its winner\'s', () => {
  it('lets the recorded child win over the timer that is due by now', async () => {
    const written: Checkpoint[] = [];
    const outcome = await execute({
      runId: '00000000-0000-4000-8000-000000000003', definition: childRace, input: {}, attempt: 2, failures: 0, metadata: {},
      history: [
        rec(0, 'deadline', 'sleep', 'waiting', { until: NOW - 1 }),
        { ...rec(1, 'kid', 'child', 'completed', 42), delivered: 1 },
      ],
      now: new Date(NOW), abort: new RunAbort(), maxPayloadBytes: 1_000_000,
      maxHistorySteps: 100, log: silentLogger, sink: { record: async (cp) => void written.push(cp) },
    });
    assert.deepEqual(outcome, { op: 'complete', output: JSON.stringify('kid') });
    const race = written.find((c) => c.op === 'step' && c.kind === 'race');
    assert.equal(race?.op === 'step' && race.output, JSON.stringify({ key: 'kid', lost: [0] }));
    assert.ok(!written.some((c) => c.op === 'step' && c.seq === 0 && c.output !== JSON.stringify({ lost: true })), 'the losing timer is not completed');
  });
});

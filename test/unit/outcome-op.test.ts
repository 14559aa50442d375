/** outcomeOp: the fenced op a worker writes when an execution ends. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { CancelledError, LeaseLostError } from '../../src/errors.ts';
import { encodeOps } from '../../src/protocol/checkpoint.ts';
import type { Outcome } from '../../src/replay/replay.ts';
import { outcomeOp } from '../../src/worker/outcome.ts';

const fence = { run: '00000000-0000-4000-8000-000000000001', token: '00000000-0000-4000-8000-000000000002', execution: 3 };

describe('outcomeOp', () => {
  it('an end op is the fence then the outcome, as one new object (the outcome is left as it was)', () => {
    const outcome: Outcome = { op: 'wait', deadline: null, signal: 4, seen_cancel: false };
    const op = outcomeOp(fence, outcome, false);
    assert.deepEqual(Object.keys(op ?? {}), ['run', 'token', 'execution', 'op', 'deadline', 'signal', 'seen_cancel']);
    assert.deepEqual(op, { ...fence, ...outcome });
    assert.deepEqual(Object.keys(outcome), ['op', 'deadline', 'signal', 'seen_cancel']);
    const complete = outcomeOp(fence, { op: 'complete', output: '{"a":1}' }, false);
    assert.equal(encodeOps([complete!]),
      `[{"run":"${fence.run}","token":"${fence.token}","execution":3,"op":"complete","output":{"a":1}}]`);
  });

  it('an abandoned execution: a release at shutdown, nothing after a lost lease (a database fault: the worker\'s faultGiveBack)', () => {
    assert.deepEqual(outcomeOp(fence, { op: 'abandoned', reason: new CancelledError('stopping') }, true),
      { ...fence, op: 'release', delay_ms: 0, failure: false });
    assert.equal(outcomeOp(fence, { op: 'abandoned', reason: new LeaseLostError('gone') }, false), undefined);
  });
});

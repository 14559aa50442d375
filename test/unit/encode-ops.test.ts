import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { type CheckpointOp, encodeOps } from '../../src/protocol/checkpoint.ts';

const fence = { run: '00000000-0000-4000-8000-000000000001', token: '00000000-0000-4000-8000-000000000002', execution: 1 };

describe('encodeOps', () => {
  it('splices output and input JSON text in, leaves undefined fields out, and escapes everything else', () => {
    const ops = [
      { ...fence, op: 'step', seq: 0, name: 'say "hi"\n', kind: 'step', status: 'completed', output: '{"a":[1,2,{"b":null}]}', attempts: 1, ms: 3, error: undefined },
      { ...fence, op: 'complete', output: '"done"' },
      { ...fence, op: 'continue', input: '{"n":2}', keep: false },
      { ...fence, op: 'fail', error: { name: 'Error', message: 'bad \\ "quote" \u2028', code: 'x' } },
      { ...fence, op: 'step', seq: 1, name: 'n', kind: 'step', status: 'running', attempts: 2, ms: 0 },
    ] as unknown as CheckpointOp[];
    const parsed = JSON.parse(encodeOps(ops)) as Record<string, unknown>[];
    assert.deepEqual(parsed[0], { ...fence, op: 'step', seq: 0, name: 'say "hi"\n', kind: 'step', status: 'completed', output: { a: [1, 2, { b: null }] }, attempts: 1, ms: 3 });
    assert.equal('error' in (parsed[0] as object), false, 'undefined is left out');
    assert.equal(parsed[1]?.output, 'done');
    assert.deepEqual(parsed[2]?.input, { n: 2 });
    assert.deepEqual(parsed[3]?.error, { name: 'Error', message: 'bad \\ "quote" \u2028', code: 'x' });
    assert.equal('output' in (parsed[4] as object), false);
    assert.equal(encodeOps([]), '[]');
  });
});

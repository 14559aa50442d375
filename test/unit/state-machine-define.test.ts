import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { ValidationError } from '../../src/errors.ts';
import { defineStateMachine } from '../../src/state-machine/define.ts';

const Status = z.enum(['a', 'b', 'c']);
const machine = () => defineStateMachine({ name: 'm', status: Status, object: z.object({}) });

describe('defineStateMachine', () => {
  it('refuses a definition that cannot run, with ValidationError', () => {
    assert.throws(() => machine().step('a', () => 'b', 'b').callback('a', () => 'b', 'b'), /both a step and a callback/);
    assert.throws(() => machine().callback('a', () => 'b', 'b').step('a', () => 'b', 'b'), /both a step and a callback/);
    assert.throws(() => machine().step('a', () => 'b', 'b').step('a', () => 'c', 'c'), /has a step already/);
    assert.throws(() => (machine().step as unknown as (from: string, fn: () => string) => unknown)('a', () => 'b'), /at least one allowed destination/);
    assert.throws(() => machine().step('z' as 'a', () => 'b', 'b'), /unknown status "z"/);
    assert.throws(() => machine().timeout('a', {} as never, () => 'b', 'b'), ValidationError);
    assert.throws(() => machine().timeout('a', { after: 'soon' as never }, () => 'b', 'b'), ValidationError);
    assert.throws(() => machine().pauseAfterErrors(0), ValidationError);
    assert.throws(() => machine().build(), /no steps, callbacks or timeouts/);
    assert.throws(() => defineStateMachine({ name: "bad'name", status: Status, object: z.object({}) }), ValidationError);
    assert.throws(() => defineStateMachine({ name: 'm', status: z.enum(['ok', 'not ok;']), object: z.object({}) }), ValidationError);
    assert.throws(() => defineStateMachine({ name: 'm', status: Status, object: z.object({}), initial: 'q' as 'a' }), ValidationError);
    const built = machine().step('a', () => 'b', 'b');
    built.build();
    assert.throws(() => built.build(), /built already/);
    assert.throws(() => built.step('b', () => 'c', 'c'), /built already/);
    assert.throws(() => built.onComplete(() => undefined), /built already/);
  });

  it('refuses a handler, hook or delete function that is not a function, naming it', () => {
    const notFn = 'not a function' as never;
    assert.throws(() => machine().step('a', notFn, 'b'), /the step of a must be a function, not "not a function"/);
    assert.throws(() => machine().callback('a', 42 as never, 'b'), /the callback of a must be a function, not 42/);
    assert.throws(() => machine().timeout('a', { after: '1 day' }, notFn, 'b'), /the timeout of a must be a function/);
    assert.throws(() => machine().onComplete(notFn), /onComplete must be a function/);
    assert.throws(() => machine().onCancel(notFn), /onCancel must be a function/);
    assert.throws(() => machine().onPause(notFn), /onPause must be a function/);
    assert.throws(() => machine().deleteData(5 as never), /deleteData must be a function, not 5/);
    assert.throws(() => machine().hookSink(5 as never), /hookSink's emit must be a function/);
    assert.throws(() => machine().hookSink({ emit: 'x' } as never), ValidationError);
  });

  it('compiles to a workflow declaring one signal per callback status, and starts in the first status with a handler', () => {
    const m = machine().callback('b', () => 'c', 'c').timeout('b', { after: '1 day' }, () => 'c', 'c').step('a', () => 'b', 'b').build();
    assert.equal(m.initial, 'b');
    assert.equal(m.workflow.name, 'm');
    assert.deepEqual(m.workflow.signals?.map((s) => s.name), ['callback:b']);
  });
});

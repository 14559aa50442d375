/** defineWorkflow's own checks: a bad definition is a ValidationError when the module loads, never a surprise at run time. */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { ValidationError } from '../../src/errors.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { defineSignal } from '../../src/workflow/signal.ts';

const fn = async () => null;

describe('defineWorkflow', () => {
  it('refuses a bad name, a missing input schema and a bad pauseAfter', () => {
    assert.throws(() => defineWorkflow({ name: `x'y`, input: z.object({}) }, fn), /invalid workflow name/);
    assert.throws(() => defineWorkflow({ name: 'x', input: undefined as never }, fn), /input must be a zod/);
    assert.throws(() => defineWorkflow({ name: 'x', input: z.object({}), pauseAfter: 0 }, fn), /pauseAfter must be a positive integer/);
  });

  it('throws ValidationError (a TrellisError), not a TypeError, for every bad definition', () => {
    for (const bad of [{ input: undefined }, { pauseAfter: 0 }, { signals: ['a'] }, { eventPayloads: 'yes' }, { hooks: { onComplete: 'notify' } }]) {
      assert.throws(() => defineWorkflow({ name: 'x', input: z.object({}), ...bad } as never, fn), ValidationError, JSON.stringify(bad));
    }
  });

  it('keeps the declared signals, and refuses one declared twice or one that is not a defineSignal()', () => {
    const a = defineSignal('a', z.object({ n: z.number() }));
    const b = defineSignal('b');
    const wf = defineWorkflow({ name: 'x', input: z.object({}), signals: [a, b] }, fn);
    assert.deepEqual(wf.signals?.map((s) => s.name), ['a', 'b']);
    assert.ok(Object.isFrozen(wf.signals));
    assert.equal(defineWorkflow({ name: 'y', input: z.object({}) }, fn).signals, undefined);
    assert.throws(() => defineWorkflow({ name: 'x', input: z.object({}), signals: [a, defineSignal('a')] }, fn), /signal a is declared twice/);
    assert.throws(() => defineWorkflow({ name: 'x', input: z.object({}), signals: ['a' as never] }, fn), /must be defineSignal\(\) definitions/);
  });
});

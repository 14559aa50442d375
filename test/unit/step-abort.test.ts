import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { StepAbort } from '../../src/replay/step-abort.ts';

describe('StepAbort', () => {
  it('a signal read after the abort is born aborted with the reason', () => {
    const a = new StepAbort();
    const reason = new Error('timed out');
    a.abort(reason);
    a.abort(new Error('second')); // only the first abort counts
    assert.equal(a.signal.aborted, true);
    assert.equal(a.signal.reason, reason);
  });

  it('a signal read before the abort fires once, and race rejects with the reason', async () => {
    const a = new StepAbort();
    let fired = 0;
    a.signal.addEventListener('abort', () => fired++);
    const body = new Promise<string>(() => {}); // a body that never settles by itself
    const raced = a.race(body);
    const reason = new Error('cancelled');
    a.abort(reason);
    await assert.rejects(raced, (e) => e === reason);
    assert.equal(fired, 1);
    await assert.rejects(a.race(Promise.resolve('late')), (e) => e === reason, 'racing after the abort rejects at once');
  });

  it('race resolves with the body when nothing aborts', async () => {
    const a = new StepAbort();
    assert.equal(await a.race(Promise.resolve(7)), 7);
    assert.equal(a.signal.aborted, false);
  });
});

/**
 * longTimeout waits for any duration: Node's setTimeout fires a delay over
 * 2^31 - 1 ms (24.8 days) after 1 ms, which made step timeouts of 25 days
 * and more end every attempt at once.
 */
import assert from 'node:assert/strict';
import { afterEach, beforeEach, describe, it, mock } from 'node:test';
import { longTimeout, MAX_TIMER_MS } from '../../src/protocol/timer.ts';

describe('longTimeout', () => {
  beforeEach(() => mock.timers.enable({ apis: ['setTimeout', 'Date'], now: 0 }));
  afterEach(() => mock.timers.reset());

  it('fires once after a delay longer than a timer holds, not before', () => {
    let fired = 0;
    longTimeout(() => fired++, MAX_TIMER_MS + 5000);
    mock.timers.tick(1);
    assert.equal(fired, 0, 'not after 1 ms');
    mock.timers.tick(MAX_TIMER_MS - 1);
    assert.equal(fired, 0, 'not at 2^31 - 1 ms');
    mock.timers.tick(4999);
    assert.equal(fired, 0);
    mock.timers.tick(1);
    assert.equal(fired, 1);
    mock.timers.tick(10 * MAX_TIMER_MS);
    assert.equal(fired, 1, 'once');
  });

  it('fires a short delay as setTimeout would, and a cancelled one never', () => {
    let fired = 0;
    longTimeout(() => fired++, 10);
    const cancel = longTimeout(() => (fired += 100), 3 * MAX_TIMER_MS);
    mock.timers.tick(10);
    assert.equal(fired, 1);
    mock.timers.tick(MAX_TIMER_MS + 1);
    cancel();
    mock.timers.tick(3 * MAX_TIMER_MS);
    assert.equal(fired, 1);
  });
});

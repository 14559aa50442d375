import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { RunAbort } from '../../src/replay/run-abort.ts';

describe('RunAbort', () => {
  it('without a signal read, an abort calls the listener once with the first reason', () => {
    const a = new RunAbort();
    const heard: unknown[] = [];
    a.listen((reason) => heard.push([reason, a.aborted, a.reason]));
    const reason = new Error('lease lost');
    a.abort(reason);
    a.abort(new Error('second')); // only the first abort counts
    assert.deepEqual(heard, [[reason, true, reason]]);
    assert.equal(a.signal.aborted, true, 'a signal read after the abort is born aborted');
    assert.equal(a.signal.reason, reason);
  });

  it('a signal read before the abort fires once, after the listener, and is aborted when the listener runs', () => {
    const a = new RunAbort();
    const order: string[] = [];
    a.listen(() => order.push(`listener (signal aborted: ${a.signal.aborted})`));
    a.signal.addEventListener('abort', () => order.push('signal'));
    const reason = new Error('shutdown');
    a.abort(reason);
    a.abort(new Error('again'));
    assert.deepEqual(order, ['listener (signal aborted: true)', 'signal']);
    assert.equal(a.signal.reason, reason);
  });

  it('a listener taken away (listen(undefined)) is not called', () => {
    const a = new RunAbort();
    let called = 0;
    a.listen(() => called++);
    a.listen(undefined);
    void a.signal; // with a signal too
    a.abort(new Error('late'));
    assert.equal(called, 0);
    assert.equal(a.signal.aborted, true);
  });
});

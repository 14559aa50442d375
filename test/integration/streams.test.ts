/**
 * Streams (decision 0040): `ctx.writeStream` appends entries that
 * `client.readStream` yields in order as they commit, ending at
 * `ctx.closeStream` or the run's end; a reader resumes after a cursor; a
 * replay writes nothing twice; bad keys, cursors and oversized entries are
 * refused; `trellis.run_stream` reads the same from SQL.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { createClient } from '../../src/client/client.ts';
import { ConfigurationError, NotFoundError, PayloadTooLargeError, TimeoutError, ValidationError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { defineSignal } from '../../src/workflow/signal.ts';
import { waitFor } from '../helpers/wait.ts';

const more = defineSignal('more', z.object({ n: z.number() }));

/** Writes `n` entries, waits for a signal between rounds, and closes or not. */
const writer = defineWorkflow({ name: 'st-writer', input: z.object({ rounds: z.number(), close: z.boolean() }) }, async (ctx, { rounds, close }) => {
  let written = 0;
  for (let round = 0; round < rounds; round++) {
    for (let i = 0; i < 5; i++) await ctx.writeStream('numbers', { round, i, n: written++ });
    if (round < rounds - 1) await ctx.waitForSignal(more);
  }
  if (close) {
    await ctx.closeStream('numbers');
    await ctx.sleep('after-close', '1 hour');
  }
  return written;
});

const misuse = defineWorkflow({ name: 'st-misuse', input: z.object({}) }, async (ctx) => {
  const out: string[] = [];
  for (const attempt of [() => ctx.writeStream('bad key ', 1), () => ctx.writeStream('big', 'x'.repeat(2_000_000))]) {
    try {
      await attempt();
      out.push('written');
    } catch (error) {
      out.push(error instanceof ValidationError ? 'ValidationError' : error instanceof PayloadTooLargeError ? 'PayloadTooLargeError' : String(error));
    }
  }
  await ctx.writeStream('ok', 1);
  return out;
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [writer, misuse] });
});
after(() => env.close());

const collect = async <T>(it: AsyncIterable<{ value: T; cursor: string }>, onEach?: (n: number) => Promise<void>) => {
  const got: { value: T; cursor: string }[] = [];
  for await (const e of it) {
    got.push(e);
    await onEach?.(got.length);
  }
  return got;
};

describe('streams', () => {
  it('a reader gets every entry in order as it commits, across waits, and stops at the close while the run goes on', async () => {
    const run = await env.client.start(writer, { rounds: 3, close: true });
    // The reader starts before anything is written and signals the run on after each round it saw.
    const got = await collect(env.client.readStream<{ round: number; i: number; n: number }>(run.id, 'numbers', { timeout: '20s' }), async (n) => {
      if (n % 5 === 0 && n < 15) await env.client.signal(run.id, more, { n });
    });
    assert.deepEqual(got.map((e) => e.value.n), Array.from({ length: 15 }, (_, i) => i));
    // The run goes on after the close (asleep in after-close).
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    // Resume after the 7th entry.
    const rest = await collect(env.client.readStream<{ n: number }>(run.id, 'numbers', { after: got[6]!.cursor }));
    assert.deepEqual(rest.map((e) => e.value.n), [7, 8, 9, 10, 11, 12, 13, 14]);
    // From SQL: the entries and the close.
    const { rows } = await env.pool.query(`select cursor, value->>'n' as n, closed from trellis.run_stream($1, 'numbers', $2, 3)`, [run.id, got[12]!.cursor]);
    assert.deepEqual(rows.map((r) => [r.n, r.closed]), [['13', false], ['14', false], [null, true]]);
    // The same without waiting, from TypeScript.
    const page = await env.client.streamEntries<{ n: number }>(run.id, 'numbers', { after: got[12]!.cursor, limit: 3 });
    assert.deepEqual([page.entries.map((e) => e.value.n), page.closed], [[13, 14], true]);
    const first = await env.client.streamEntries<{ n: number }>(run.id, 'numbers', { limit: 2 });
    assert.deepEqual([first.entries.map((e) => e.value.n), first.closed], [[0, 1], false]);
    await assert.rejects(env.client.streamEntries(run.id, 'numbers', { limit: 0 }), ValidationError);
    await assert.rejects(env.client.streamEntries(run.id, 'numbers', { after: 'x' }), ValidationError);
    await env.client.cancel(run.id);
  });

  it('ends with the run when it never closes; a replay writes no entry twice', async () => {
    const run = await env.client.start(writer, { rounds: 2, close: false });
    const reading = collect(env.client.readStream<{ n: number }>(run.id, 'numbers', { timeout: '20s' }));
    await env.waitFor(run, 'waiting', { timeout: '20s' });
    await env.client.signal(run.id, more, { n: 0 }); // the run replays its first round, then writes the second
    assert.equal(await run.result({ timeout: '20s' }), 10);
    const got = await reading;
    assert.deepEqual(got.map((e) => e.value.n), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9]);
    const { rows: [c] } = await env.pool.query(`select count(*)::int as n from trellis.steps where run_id = $1 and kind = 'stream'`, [run.id]);
    assert.equal(c.n, 10);
    // Without waiting: the run's end closed the stream, once a page holds its last entry.
    const whole = await env.client.streamEntries<{ n: number }>(run.id, 'numbers');
    assert.deepEqual([whole.entries.length, whole.closed], [10, true]);
    const full = await env.client.streamEntries<{ n: number }>(run.id, 'numbers', { limit: 10 });
    assert.deepEqual([full.entries.length, full.closed], [10, false], 'a full page may have more after it');
    const last = await env.client.streamEntries<{ n: number }>(run.id, 'numbers', { after: full.entries[9]!.cursor });
    assert.deepEqual([last.entries.length, last.closed], [0, true]);
    // While the run goes on, an unclosed stream is not closed.
    const open = await env.client.start(writer, { rounds: 2, close: false });
    await env.waitFor(open, 'waiting', { timeout: '20s' });
    assert.deepEqual((await env.client.streamEntries(open.id, 'numbers')).closed, false);
    await env.client.cancel(open.id);
    await env.waitFor(open, 'cancelled', { timeout: '20s' });
    assert.deepEqual((await env.client.streamEntries(open.id, 'numbers')).closed, true, 'cancelled: ended');
  });

  it('a waiting reader stops at once on return() or on its signal', async () => {
    const run = await env.client.start(writer, { rounds: 2, close: false });
    await env.waitFor(run, 'waiting', { timeout: '20s' }); // five entries written, waiting for the signal
    const iterator = env.client.readStream(run.id, 'numbers', { after: '1.4' })[Symbol.asyncIterator]();
    const pending = iterator.next(); // waits: nothing after entry 1.4 yet
    let settled = false;
    void pending.then(() => { settled = true; }, () => { settled = true; });
    let returned = false;
    const stopping = iterator.return!();
    void stopping.then(() => { returned = true; });
    await waitFor(() => returned && settled, { what: 'return() and the pending next() to end' });
    assert.deepEqual(await stopping, { done: true, value: undefined });
    assert.deepEqual(await pending, { done: true, value: undefined });
    const controller = new AbortController();
    const aborted = collect(env.client.readStream(run.id, 'numbers', { after: '1.4', signal: controller.signal }));
    controller.abort(new Error('client went away'));
    await assert.rejects(aborted, /client went away/);
    await assert.rejects(collect(env.client.readStream(run.id, 'numbers', { signal: controller.signal })), /client went away/);
    // A client closed under its waiting readers (and result() calls) ends them; a wait begun after is refused.
    const other = createClient({ pool: env.pool, logger: silentLogger });
    const outcome = (p: Promise<unknown>) => p.then(() => 'settled', (e: unknown) => e);
    const reading = outcome(collect(other.readStream(run.id, 'numbers', { after: '1.4' })));
    const waitingResult = outcome(other.result(run.id));
    await other.close();
    const [r1, r2] = await Promise.all([reading, waitingResult]);
    assert.ok(r1 instanceof ConfigurationError && /client was closed/.test(r1.message), String(r1));
    assert.ok(r2 instanceof ConfigurationError, String(r2));
    await assert.rejects(other.result(run.id), ConfigurationError);
    await env.client.cancel(run.id);
  });

  it('trellis stream prints the entries, resumes after a cursor, follows until the close; bad input exits 2, an unknown run 3', async () => {
    const run = await env.client.start(writer, { rounds: 1, close: true });
    await env.waitFor(run, 'waiting', { timeout: '20s' }); // closed, asleep in after-close
    const cli = async (...args: string[]) => {
      const io = captureIo({ DATABASE_URL: env.url });
      const code = await main(args, io);
      return { code, out: io.stdout, err: io.stderr };
    };
    const all = await cli('stream', run.id, 'numbers');
    assert.equal(all.code, 0, all.err);
    const lines = all.out.trim().split('\n');
    assert.equal(lines.length, 5);
    assert.match(lines[0]!, /^1\.0 {2}\S+ \S+ {2}\{"i":0,"n":0,"round":0\}$/);
    const rest = await cli('stream', run.id, 'numbers', '--after', lines[2]!.split(' ')[0]!, '--json');
    assert.deepEqual(rest.out.trim().split('\n').map((l) => (JSON.parse(l) as { value: { n: number } }).value.n), [3, 4]);
    const followed = await cli('stream', run.id, 'numbers', '--follow', '--limit', '3');
    assert.equal(followed.out.trim().split('\n').length, 3);
    const toClose = await cli('stream', run.id, 'numbers', '-f');
    assert.equal(toClose.code, 0, toClose.err);
    assert.equal(toClose.out.trim().split('\n').length, 5, 'follows until the close');
    for (const bad of [[run.id, 'bad key '], [run.id, 'numbers', '--after', 'x'], ['not-a-uuid', 'numbers'], [run.id]]) {
      assert.equal((await cli('stream', ...bad)).code, 2, bad.join(' '));
    }
    assert.equal((await cli('stream', randomUUID(), 'numbers')).code, 3);
    await env.client.cancel(run.id);
  });

  it('refuses bad keys, oversized entries, malformed cursors and unknown runs; times out when nothing comes', async () => {
    const m = await env.client.start(misuse, {});
    assert.deepEqual(await m.result({ timeout: '20s' }), ['ValidationError', 'PayloadTooLargeError']);
    const { rows } = await env.pool.query(`select name from trellis.steps where run_id = $1 and kind = 'stream'`, [m.id]);
    assert.deepEqual(rows.map((r) => r.name), ['ok'], 'nothing written for the refused entries');
    assert.throws(() => env.client.readStream(m.id, 'ok', { after: "1.2'; drop table trellis.runs; --" }), ValidationError);
    assert.throws(() => env.client.readStream(m.id, 'bad key '), ValidationError);
    await assert.rejects(env.pool.query(`select * from trellis.run_stream($1, 'ok', 'x.y')`, [m.id]), { code: 'TR001' });
    await assert.rejects(collect(env.client.readStream(randomUUID(), 'numbers')), NotFoundError);
    const idle = await env.client.start(writer, { rounds: 2, close: false });
    await assert.rejects(collect(env.client.readStream(idle.id, 'numbers', { after: '1.4', timeout: '300ms' })), TimeoutError);
    await env.client.cancel(idle.id);
  });
});

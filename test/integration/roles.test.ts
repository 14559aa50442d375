/**
 * worker.role end to end: of two workers in one process, one runs the
 * role's function at a time; stopping it hands the role over at once (its
 * signal fires first); a lease taken away (expired on the virtual clock and
 * acquired by another holder) aborts the signal; a write fenced with a
 * superseded token is refused; the engine's duties are rows of
 * trellis.roles; bad role names and TTLs are refused.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { LeaseLostError, ValidationError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { waitFor } from '../helpers/wait.ts';

const noop = defineWorkflow({ name: 'noop', input: z.object({}) }, async () => 'ok');

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [noop], roles: { ttl: '3s' } });
});
after(() => env.close());

const sql = async (text: string, values: unknown[] = []) => (await env.pool.query(text, values)).rows;
const extraWorker = (id: string): Worker =>
  createWorker({ pool: env.pool, id, workflows: [noop], roles: { ttl: '3s' }, schedules: false, purge: false, deadlines: false, resumes: false, logger: silentLogger });

describe('worker.role', () => {
  it('runs the function on one of two workers; stopping the holder hands the role to the other at once', async () => {
    const a = extraWorker('role-a');
    const b = extraWorker('role-b');
    const calls: { worker: string; token: string; aborted?: unknown }[] = [];
    for (const [w, id] of [[a, 'role-a'], [b, 'role-b']] as const) {
      w.role('exporter', async ({ token, signal }) => {
        const call: (typeof calls)[number] = { worker: id, token };
        calls.push(call);
        await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
        call.aborted = signal.reason;
      });
    }
    await a.start();
    await waitFor(() => calls.length === 1, { what: 'a holder running' });
    await b.start();
    await new Promise((r) => setTimeout(r, 1200)); // b tries a few times (every second) and is refused
    assert.equal(calls.length, 1, 'only one runs');
    assert.equal(calls[0]?.worker, 'role-a');
    await a.stop();
    assert.ok(calls[0]?.aborted instanceof LeaseLostError, 'the holder was told before it stopped');
    await waitFor(() => calls.length === 2, { what: 'the other worker taking over' });
    assert.equal(calls[1]?.worker, 'role-b');
    assert.equal(Number(calls[1]?.token), Number(calls[0]?.token) + 1, 'the next token');
    await assert.rejects(sql(`select trellis.role_check('exporter', $1)`, [calls[0]?.token]), (e: Error & { code?: string | undefined }) => e.code === 'TR003');
    await b.stop();
  });

  it('fires the signal when the lease is taken away, and refuses a write fenced by the old token', async () => {
    const w = extraWorker('role-c');
    let held: { token: string; signal: AbortSignal } | undefined;
    w.role('taken', ({ token, signal }) => {
      held ??= { token, signal };
    });
    await w.start();
    try {
      await waitFor(() => held, { what: 'the role held' });
      await env.advance('10 seconds'); // the lease expires on the engine's clock
      const [stolen] = await sql(`select trellis.role_acquire('taken', 'someone-else', '1 hour') as t`);
      assert.equal(Number(stolen.t), Number(held!.token) + 1);
      await waitFor(() => held!.signal.aborted, { what: 'the signal to fire' });
      assert.ok(held!.signal.reason instanceof LeaseLostError);
      await assert.rejects(
        sql(`select trellis.role_check('taken', $1)`, [held!.token]),
        (e: Error & { code?: string | undefined }) => e.code === 'TR003',
      );
    } finally {
      await w.stop();
    }
  });

  it('a fenced write refused through the user\'s own pool (pg\'s TR003) ends the lease at once, not at the next renew', async () => {
    const w = extraWorker('role-f');
    let held: { token: string; signal: AbortSignal } | undefined;
    let refused = 0;
    w.role('fenced', async ({ token, signal }) => {
      held ??= { token, signal };
      try {
        await env.pool.query(`select trellis.role_check('fenced', $1)`, [token]);
      } catch (error) {
        refused++;
        throw error; // as a duty's own write would: pg's error, code TR003
      }
    }, { every: '100ms', ttl: '1 hour' }); // renewed only every 20 minutes: only the refusal can tell the worker
    await w.start();
    try {
      await waitFor(() => held, { what: 'the role held' });
      await env.advance('2 hours'); // the lease expires on the engine's clock
      await sql(`select trellis.role_acquire('fenced', 'someone-else', '1 hour')`);
      await waitFor(() => held!.signal.aborted, { what: 'the duty\'s signal to fire after its first refused write' });
      assert.ok(held!.signal.reason instanceof LeaseLostError);
      assert.equal(refused, 1, 'no second write under the dead token');
      assert.equal(w.roleStats.fenced?.lost, 1);
    } finally {
      await w.stop();
    }
  });

  it('the engine\'s duties are roles visible in trellis.roles with their last run', async () => {
    await env.client.setRetention('1 day');
    await waitFor(async () => {
      const roles = await env.client.roles.list();
      const purge = roles.find((r) => r.name === 'trellis.purge');
      const ticker = roles.find((r) => r.name === 'trellis.schedules');
      const deadlines = roles.find((r) => r.name === 'trellis.deadlines');
      return purge?.lastOutcome === 'ok' && ticker?.lastOutcome === 'ok' && deadlines?.lastOutcome === 'ok'
        && purge.held && ticker.held && deadlines.held;
    }, { what: 'purge, ticker and deadlines held and run' });
    await env.client.setRetention(null);
  });

  for (const [what, call] of [
    ['a name with a quote and SQL', (w: Worker) => w.role("x'; drop table trellis.roles; --", () => undefined)],
    ['a name of the engine', (w: Worker) => w.role('trellis.purge', () => undefined)],
    ['a ttl under 200ms', (w: Worker) => w.role('fine', () => undefined, { ttl: 50 })],
    ['a ttl over an hour', (w: Worker) => w.role('fine', () => undefined, { ttl: '2 hours' })],
    ['a misspelt option (tll)', (w: Worker) => w.role('fine', () => undefined, { tll: '2s' } as never)],
    ['a misspelt option (evry)', (w: Worker) => w.role('fine', () => undefined, { evry: '1 minute' } as never)],
  ] as const) {
    it(`refuses ${what} with a ValidationError and adds nothing`, async () => {
      const w = extraWorker('role-bad');
      assert.throws(() => call(w), ValidationError);
      assert.deepEqual(Object.keys(w.roleStats), [], 'no role added');
    });
  }

  it('refuses a worker option roles.ttl out of range, or misspelt', () => {
    assert.throws(() => createWorker({ pool: env.pool, workflows: [noop], roles: { ttl: '2 hours' } }), ValidationError);
    assert.throws(() => createWorker({ pool: env.pool, workflows: [noop], roles: { tll: '2s' } as never }), /unknown option\(s\) tll/);
  });

  it('stop({ timeout }) is not held by a duty that ignores its signal: the lease is released and another worker takes the role', async () => {
    const a = extraWorker('role-deaf');
    const b = extraWorker('role-next');
    let letGo!: () => void;
    const held = new Promise<void>((resolve) => { letGo = resolve; });
    const runs: string[] = [];
    let deafFinished = false;
    a.role('deaf', async () => {
      runs.push('role-deaf');
      await held; // ignores its signal
      deafFinished = true;
    });
    b.role('deaf', async ({ signal }) => {
      runs.push('role-next');
      await new Promise<void>((resolve) => signal.addEventListener('abort', () => resolve(), { once: true }));
    });
    await a.start();
    await waitFor(() => runs.length === 1, { what: 'the deaf duty running' });
    await b.start();
    try {
      // Before the change this waited for the duty, for ever here.
      await a.stop({ timeout: '300ms' });
      assert.equal(deafFinished, false, 'stop returned while the duty still ran');
      await waitFor(() => runs.includes('role-next'), { what: 'the other worker taking the role over' });
    } finally {
      letGo();
      await b.stop();
    }
  });
});

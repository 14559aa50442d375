import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { IllegalTransitionError, NotFoundError, ValidationError } from '../../src/errors.ts';
import { connectMachine } from '../../src/state-machine/client.ts';
import { defineStateMachine } from '../../src/state-machine/define.ts';
import { machineDiagram } from '../../src/state-machine/diagram.ts';
import type { MachineHookEvent } from '../../src/state-machine/types.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { waitFor } from '../helpers/wait.ts';
import { backendId, lockWaitersOf } from '../helpers/lock-wait.ts';

const Status = z.enum(['created', 'checked', 'awaiting', 'approved', 'expired', 'done']);
const Application = z.object({ name: z.string().min(1), checks: z.number().int(), approvedBy: z.string().optional() });
const events: MachineHookEvent<string, unknown>[] = [];
/** The machine hook events of one run, once `count` of them were delivered (hooks are durable: a worker delivers them after the move). */
const hookEvents = (runId: string, count: number) =>
  waitFor(() => { const mine = events.filter((e) => e.runId === runId); return mine.length >= count && mine; }, { what: `${count} hook event(s) of ${runId}` });

const application = defineStateMachine({ name: 'application', status: Status, object: Application })
  .step('created', (run) => {
    run.object.checks += 1;
    return 'checked';
  }, 'checked')
  .step('checked', () => 'awaiting', 'awaiting')
  .callback('awaiting', (run, payload) => {
    const { by } = payload as { by?: string | undefined };
    if (!by) return run.skip();
    run.object.approvedBy = by;
    return 'approved';
  }, 'approved')
  .timeout('awaiting', { after: '3 days' }, () => 'expired', 'expired')
  .step('approved', () => 'done', 'done')
  .onComplete((event) => { events.push(event); })
  .build();

const Flaky = z.enum(['start', 'synced', 'end']);
let failuresLeft = 0;
let syncCalls = 0;
const flaky = defineStateMachine({ name: 'flaky', status: Flaky, object: z.object({ n: z.number() }),
  retry: { initialDelay: '1 minute', jitter: 0 } })
  .step('start', (run) => {
    syncCalls++;
    if (failuresLeft > 0) {
      failuresLeft--;
      throw new Error('remote down');
    }
    run.object.n = syncCalls;
    return 'synced';
  }, 'synced')
  .step('synced', (run) => (run.object.n < 0 ? run.cancel('negative') : 'end'), 'end')
  .pauseAfterErrors(2)
  .onPause((event) => { events.push(event); })
  .onCancel((event) => { events.push(event); })
  .build();

const Rogue = z.enum(['a', 'b', 'c']);
const rogue = defineStateMachine({ name: 'rogue', status: Rogue, object: z.object({ touched: z.boolean() }) })
  .step('a', (run) => {
    run.object.touched = true;
    return 'c' as 'b'; // a bug: c is not an allowed destination of a
  }, 'b')
  .step('b', () => 'c', 'c')
  .build();

const Counter = z.enum(['counting', 'done']);
const counter = defineStateMachine({ name: 'counter', status: Counter, object: z.object({ n: z.number() }), continueAfter: 3 })
  .step('counting', (run) => {
    run.object.n += 1;
    return run.object.n < 7 ? run.saveAndRepeat() : 'done';
  }, 'done')
  .build();

// Waits an hour in `a`, moves to `b` and continues as new there (continueAfter 1), then waits for a callback.
const sitter = defineStateMachine({ name: 'sitter', status: z.enum(['a', 'b', 'c']), object: z.object({}), continueAfter: 1 })
  .timeout('a', { after: '1 hour' }, () => 'b', 'b')
  .callback('b', () => 'c', 'c')
  .build();

let pauserCalls = 0;
const pauser = defineStateMachine({ name: 'pauser', status: z.enum(['a', 'b']), object: z.object({ seen: z.number() }) })
  .step('a', (run) => {
    pauserCalls++;
    run.object.seen = pauserCalls;
    return pauserCalls === 1 ? run.pause('needs a look') : 'b';
  }, 'b')
  .onPause((event) => { events.push(event); })
  .build();

const Gate = z.enum(['open', 'closed']);
const gate = defineStateMachine({ name: 'gate', status: Gate, object: z.object({ email: z.string() }) })
  .callback('open', () => 'closed', 'closed')
  .deleteData((object) => ({ ...object, email: 'deleted' }))
  .onCancel((event) => { events.push(event); })
  .build();

describe('state machines', () => {
  let env: TestEnv;
  before(async () => {
    env = await createTestEnv({ workflows: [application.workflow, flaky.workflow, rogue.workflow, gate.workflow, counter.workflow, pauser.workflow, sitter.workflow],
      hookDelivery: { interval: 20 } });
  });
  after(async () => env?.close());

  it('moves a run through steps and a callback, each transition a step row, status readable with SQL', async () => {
    const apps = connectMachine(env.client, application);
    const runId = await apps.trigger('app-1', { object: { name: 'Ada', checks: 0 } });
    await env.waitFor(runId, 'waiting');
    const waiting = await env.pool.query('select status, object, run_status from trellis.machine_runs where run_id = $1', [runId]);
    assert.deepEqual(waiting.rows[0], { status: 'awaiting', object: { name: 'Ada', checks: 1 }, run_status: 'waiting' });
    assert.equal(await apps.callback('app-1', 'awaiting', { by: 'lin' }, { id: 'mail-1' }), true);
    const done = await apps.await('app-1', runId, 'done', { timeout: '20s' });
    assert.deepEqual(done.object, { name: 'Ada', checks: 1, approvedBy: 'lin' });
    await env.waitFor(runId, 'completed');
    await env.assertHistory(runId, [
      { kind: 'step', name: 'created', status: 'completed', output: { from: 'created', to: 'checked', object: { name: 'Ada', checks: 1 }, outcome: 'transition' } },
      { kind: 'step', name: 'checked', status: 'completed' },
      { kind: 'sleep', name: 'awaiting timeout' },
      { kind: 'signal', name: 'callback:awaiting', status: 'completed' },
      { kind: 'race', name: 'awaiting await', status: 'completed' },
      { kind: 'step', name: 'awaiting callback', status: 'completed' },
      { kind: 'step', name: 'approved', status: 'completed' },
    ]);
    assert.deepEqual((await hookEvents(runId, 1)).map((e) => [e.event, e.status, e.foreignId, e.object]), [['complete', 'done', 'app-1', done.object]]);
  });

  it('await returns for a status the run passed through (its object then), refuses an unknown status, and says when a run ended without it', async () => {
    const apps = connectMachine(env.client, application);
    const runId = await apps.trigger('app-passed', { object: { name: 'Pat', checks: 0 } });
    await apps.callback('app-passed', 'awaiting', { by: 'kim' });
    await env.waitFor(runId, 'completed');
    const checked = await apps.await('app-passed', runId, 'checked', { timeout: '2s' });
    assert.equal(checked.status, 'checked');
    assert.deepEqual(checked.object, { name: 'Pat', checks: 1 }, 'the object as the run entered the status');
    assert.equal(checked.runStatus, 'completed');
    assert.deepEqual((await apps.await('app-passed', runId, 'created', { timeout: '2s' })).object, { name: 'Pat', checks: 0 }, 'the status it was triggered in');
    await assert.rejects(apps.await('app-passed', runId, 'expired', { timeout: '2s' }), /ended \(completed\) in status done, never reaching expired/);
    await assert.rejects(apps.await('app-passed', runId, 'zzz' as never, { timeout: '2s' }), ValidationError);
  });

  it('fires the timeout on the virtual clock when no callback comes', async () => {
    const apps = connectMachine(env.client, application);
    const runId = await apps.trigger('app-2', { object: { name: 'Bo', checks: 0 } });
    await env.waitFor(runId, 'waiting');
    await env.advance('3 days');
    await env.waitFor(runId, 'completed');
    const record = await apps.get('app-2');
    assert.equal(record.status, 'expired');
    assert.equal(record.runId, runId);
  });

  it('a skipped callback leaves the status and waits for the next one', async () => {
    const apps = connectMachine(env.client, application);
    const runId = await apps.trigger('app-3', { object: { name: 'Cy', checks: 0 } });
    await env.waitFor(runId, 'waiting');
    await apps.callback('app-3', 'awaiting', {});
    await env.waitFor(runId, 'waiting');
    const steps = await env.history(runId);
    assert.ok(steps.some((s) => s.name === 'awaiting callback' && (s.output as { outcome: string }).outcome === 'skip'));
    assert.equal((await apps.get('app-3')).status, 'awaiting');
    await apps.callback('app-3', 'awaiting', { by: 'dee' });
    assert.equal((await apps.await('app-3', runId, 'done', { timeout: '20s' })).object.approvedBy, 'dee');
  });

  it('refuses a second trigger while the first run of the foreign id is unfinished, and allows one after', async () => {
    const gates = connectMachine(env.client, gate);
    const first = await gates.trigger('g-1', { object: { email: 'a@b.c' } });
    await assert.rejects(gates.trigger('g-1', { object: { email: 'a@b.c' } }), IllegalTransitionError);
    await env.pool.query('select trellis.run_pause($1)', [first]);
    await assert.rejects(gates.trigger('g-1', { object: { email: 'a@b.c' } }), IllegalTransitionError);
    await assert.rejects(env.pool.query(`select trellis.machine_trigger('gate', 'g-1', '{"status":"open","object":{"email":"x"}}')`),
      (e: { code?: string | undefined }) => e.code === 'TR004');
    assert.equal((await env.pool.query(`select count(*)::int as n from trellis.runs where metadata->>'foreign_id' = 'g-1'`)).rows[0].n, 1);
    await env.pool.query('select trellis.run_resume($1)', [first]);
    await env.waitFor(first, 'waiting');
    // A callback from SQL, by foreign id and status.
    await env.pool.query(`select trellis.machine_callback('gate', 'g-1', 'open', '{}')`);
    await env.waitFor(first, 'completed');
    const second = await gates.trigger('g-1', { object: { email: 'a@b.c' } });
    assert.notEqual(second, first);
  });

  it('two keyed triggers at once with one key and different foreign ids: the second is IllegalTransitionError, and starts nothing', async () => {
    const gates = connectMachine(env.client, gate);
    const a = await env.pool.connect();
    const b = await env.pool.connect();
    try {
      await a.query('begin');
      await b.query('begin');
      const first = await gates.trigger('race-a', { object: { email: 'a@b.c' }, key: 'race-key', tx: a });
      const second = gates.trigger('race-b', { object: { email: 'a@b.c' }, key: 'race-key', tx: b }).then((id) => id, (e: unknown) => e);
      await waitFor(async () => (await env.pool.query(`select count(*)::int as n from pg_stat_activity where wait_event_type = 'Lock' and pid = $1`,
        [(b as unknown as { processID: number }).processID])).rows[0].n === 1, { what: 'the second trigger waiting for the first' });
      await a.query('commit');
      const outcome = await second;
      assert.ok(outcome instanceof IllegalTransitionError, `not answered with ${String(outcome)} (the first's run is ${first})`);
      await b.query('rollback');
    } finally {
      a.release();
      b.release();
    }
    assert.equal((await env.pool.query(`select count(*)::int as n from trellis.runs where metadata->>'foreign_id' = 'race-b'`)).rows[0].n, 0);
  });

  it('a callback id an earlier run of the foreign id received never reaches its next run', async () => {
    const gates = connectMachine(env.client, gate);
    const first = await gates.trigger('g-redeliver', { object: { email: 'a@b.c' } });
    await env.waitFor(first, 'waiting');
    assert.equal(await gates.callback('g-redeliver', 'open', {}, { id: 'evt-1' }), true);
    await env.waitFor(first, 'completed');
    assert.equal(await gates.callback('g-redeliver', 'open', {}, { id: 'evt-1' }), false, 'after the run finished');
    const second = await gates.trigger('g-redeliver', { object: { email: 'a@b.c' } });
    await env.waitFor(second, 'waiting');
    assert.equal(await gates.callback('g-redeliver', 'open', {}, { id: 'evt-1' }), false, 'a redelivery while the next run is open');
    assert.equal((await env.pool.query(`select trellis.machine_callback('gate', 'g-redeliver', 'open', '{}', 'evt-1') as sent`)).rows[0].sent, false);
    assert.equal((await env.pool.query('select count(*)::int as n from trellis.signals where run_id = $1', [second])).rows[0].n, 0);
    assert.equal((await env.client.get(second))?.status, 'waiting', 'the next run did not move');
    assert.equal(await gates.callback('g-redeliver', 'open', {}, { id: 'evt-2' }), true, 'a new id reaches it');
    await env.waitFor(second, 'completed');
  });

  it('a callback that meets the run as it ends is TR002 (no unfinished run), not the signal\'s TR004, from SQL and TypeScript', async () => {
    const gates = connectMachine(env.client, gate);
    for (const via of ['sql', 'ts'] as const) {
      // Due in 2999: it stays pending, so a cancel ends it at once (a run that never started).
      const { rows: [{ run }] } = await env.pool.query(`select trellis.machine_trigger('gate', $1, '{"status":"open","object":{"email":"x"}}', '{"run_at":"2999-01-01T00:00:00Z"}') as run`, [`g-race-${via}`]);
      // Another transaction ends the run and holds its row until it commits; the callback finds the run unfinished, then waits for it.
      const ender = await env.pool.connect();
      try {
        await ender.query('begin');
        assert.equal((await ender.query('select trellis.run_cancel($1) as s', [run])).rows[0].s, 'cancelled');
        const holder = await backendId(ender);
        const callback = via === 'sql'
          ? env.pool.query(`select trellis.machine_callback('gate', $1, 'open', '{}')`, [`g-race-${via}`])
          : gates.callback(`g-race-${via}`, 'open', {});
        const settled = callback.then(() => 'sent', (e: unknown) => e);
        await waitFor(async () => (await lockWaitersOf(env.pool, holder)) > 0, { what: 'the callback waiting for the ending run' });
        await ender.query('commit');
        const outcome = await settled;
        if (via === 'sql') assert.equal((outcome as { code?: string }).code, 'TR002', String(outcome));
        else assert.ok(outcome instanceof NotFoundError, String(outcome));
      } finally {
        await ender.query('rollback').catch(() => undefined); // nothing open after a failed assertion
        ender.release();
      }
      assert.equal((await env.pool.query('select count(*)::int as n from trellis.signals where run_id = $1', [run])).rows[0].n, 0, 'nothing buffered');
    }
  });

  it('refuses a trigger in a REPEATABLE READ or SERIALIZABLE transaction (its check could miss a concurrent trigger), writing nothing', async () => {
    const gates = connectMachine(env.client, gate);
    for (const level of ['repeatable read', 'serializable'] as const) {
      await assert.rejects(env.client.db.transaction().setIsolationLevel(level).execute(async (tx) => {
        await tx.selectFrom('trellis.runs').select('id').limit(1).execute();
        return gates.trigger('g-rr', { object: { email: 'a@b.c' }, tx });
      }), (e) => e instanceof ValidationError && /needs a READ COMMITTED transaction, not (REPEATABLE READ|SERIALIZABLE)/.test(e.message), level);
      const c = await env.pool.connect();
      try {
        await c.query(`begin isolation level ${level}`);
        await assert.rejects(c.query(`select trellis.machine_trigger('gate', 'g-rr', '{"status":"open","object":{"email":"x"}}', '{"key":"k-rr"}')`),
          (e: { code?: string | undefined }) => e.code === 'TR001');
      } finally {
        await c.query('rollback');
        c.release();
      }
    }
    assert.equal((await env.pool.query(`select count(*)::int as n from trellis.runs where metadata->>'foreign_id' = 'g-rr'`)).rows[0].n, 0);
    const id = await env.client.db.transaction().execute((tx) => gates.trigger('g-rr', { object: { email: 'a@b.c' }, tx }));
    assert.ok(id, 'READ COMMITTED (the default) triggers');
  });

  it('refuses a per-attempt timeout of 0 when the machine is defined', () => {
    assert.throws(() => defineStateMachine({ name: 'zero-timeout', status: Gate, object: z.object({}), timeout: 0 }),
      (e) => e instanceof ValidationError && /timeout must be longer than 0/.test(e.message));
    assert.throws(() => defineStateMachine({ name: 'bad-timeout', status: Gate, object: z.object({}), timeout: 'soon' as never }), ValidationError);
  });

  it('refuses bad input with a typed error and writes nothing', async () => {
    const gates = connectMachine(env.client, gate);
    const before = (await env.pool.query('select count(*)::int as n from trellis.runs')).rows[0].n;
    await assert.rejects(gates.trigger('g-2', { object: { email: 'x' }, initial: 'ajar' as 'open' }), ValidationError);
    await assert.rejects(gates.trigger('g-2', { object: { email: 42 } as never }), ValidationError);
    await assert.rejects(env.pool.query(`select trellis.machine_trigger('gate', 'g-2', '{"status":"ajar","object":{"email":"x"}}')`),
      (e: { code?: string | undefined }) => e.code === 'TR001');
    await assert.rejects(gates.callback('nobody', 'open', {}), NotFoundError);
    await assert.rejects(gates.callback('g-2', 'closed', {}), ValidationError);
    const runId = await gates.trigger('g-2', { object: { email: 'x' } });
    await assert.rejects(env.pool.query(`select trellis.machine_callback('gate', 'g-2', 'closed', '{}')`), (e: { code?: string | undefined }) => e.code === 'TR001');
    assert.equal((await env.pool.query('select count(*)::int as n from trellis.runs')).rows[0].n, before + 1);
    assert.equal((await env.pool.query('select count(*)::int as n from trellis.signals where run_id = $1', [runId])).rows[0].n, 0);
    assert.throws(() => defineStateMachine({ name: 'bad', status: Gate, object: z.object({}) }).step('open', () => 'shut' as 'closed', 'shut' as 'closed'), ValidationError);
  });

  it('fails a run whose step moves to a status it may not, recording nothing of the step', async () => {
    const rogues = connectMachine(env.client, rogue);
    const runId = await rogues.trigger('r-1', { object: { touched: false } });
    const done = await env.drive(runId);
    assert.equal(done.status, 'failed');
    const record = await rogues.get('r-1');
    assert.deepEqual([record.status, record.object], ['a', { touched: false }]);
    const [step] = await env.history(runId);
    assert.equal(step?.status, 'failed');
    assert.equal(step?.attempts, 1);
    assert.equal((step?.error as { name: string }).name, 'IllegalTransitionError');
  });

  it('parks a run after N failed attempts, then resumes it to completion', async () => {
    failuresLeft = 2;
    syncCalls = 0;
    const flakies = connectMachine(env.client, flaky);
    const runId = await flakies.trigger('f-1', { object: { n: 0 } });
    const parked = await env.drive(runId).catch((e: Error) => e);
    assert.ok(parked instanceof ValidationError, 'drive says the paused run cannot end by itself');
    assert.equal((await env.client.get(runId))?.status, 'paused');
    assert.equal(syncCalls, 2);
    assert.deepEqual((await hookEvents(runId, 1)).map((e) => [e.event, e.status, e.object]), [['pause', 'start', { n: 0 }]]);
    await env.client.resume(runId);
    const done = await env.drive(runId);
    assert.equal(done.status, 'completed');
    assert.equal((await flakies.get('f-1')).object.n, 3);
  });

  it('a handler can park its run; resumed, the handler runs again and nothing of the parked call was saved', async () => {
    const pausers = connectMachine(env.client, pauser);
    const runId = await pausers.trigger('p-1', { object: { seen: 0 } });
    await env.waitFor(runId, 'paused');
    const parked = await env.client.get(runId);
    assert.equal((parked?.error as { message?: string | undefined } | null)?.message, 'needs a look');
    assert.deepEqual((await pausers.get('p-1')).object, { seen: 0 });
    assert.deepEqual((await hookEvents(runId, 1)).map((e) => [e.event, e.status, e.object, e.reason]), [['pause', 'a', { seen: 0 }, 'needs a look']]);
    await env.client.resume(runId);
    await env.waitFor(runId, 'completed');
    assert.deepEqual((await pausers.get('p-1')).object, { seen: 2 });
  });

  it('a handler can cancel the run, keeping the object it saved', async () => {
    failuresLeft = 0;
    const flakies = connectMachine(env.client, flaky);
    const runId = await flakies.trigger('f-2', { object: { n: -5 }, initial: 'synced' });
    const done = await env.drive(runId);
    assert.equal(done.status, 'cancelled');
    assert.deepEqual((await hookEvents(runId, 1)).map((e) => [e.event, e.status, e.object, e.reason]), [['cancel', 'synced', { n: -5 }, 'negative']]);
  });

  it('a run cancelled from outside while it waits calls onCancel with its status and object', async () => {
    const gates = connectMachine(env.client, gate);
    const runId = await gates.trigger('g-9', { object: { email: 'x@y.z' } });
    await env.waitFor(runId, 'waiting');
    await env.client.cancel(runId, 'user left');
    await env.waitFor(runId, 'cancelled');
    assert.equal((await gates.get('g-9')).runStatus, 'cancelled');
    assert.deepEqual((await hookEvents(runId, 1)).map((e) => [e.event, e.status, e.object, e.reason]),
      [['cancel', 'open', { email: 'x@y.z' }, 'user left']]);
  });

  it('deletes a finished run\'s data with the machine\'s delete function, keeping the statuses', async () => {
    const gates = connectMachine(env.client, gate);
    const runId = await gates.trigger('g-3', { object: { email: 'secret@example.com' } });
    await assert.rejects(gates.deleteData('g-3', runId), IllegalTransitionError);
    await gates.callback('g-3', 'open', { note: 'pii' });
    await env.waitFor(runId, 'completed');
    await gates.deleteData('g-3', runId);
    const record = await gates.get('g-3', runId);
    assert.deepEqual([record.status, record.object, record.dataDeleted], ['closed', { email: 'deleted' }, true]);
    const leftovers = await env.pool.query(
      `select count(*)::int as n from trellis.steps s where s.run_id = $1 and s.output::text like '%secret%'
        union all select count(*)::int from trellis.signals where run_id = $1 and payload::text like '%pii%'
        union all select count(*)::int from trellis.runs where id = $1 and (input::text like '%secret%' or output::text like '%secret%')`, [runId]);
    assert.deepEqual(leftovers.rows.map((r) => r.n), [0, 0, 0]);
  });

  it('a long-lived run continues as new every continueAfter transitions, keeping its status and object', async () => {
    const counters = connectMachine(env.client, counter);
    const runId = await counters.trigger('c-1', { object: { n: 0 } });
    const done = await env.drive(runId);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.output, { status: 'done', object: { n: 7 }, foreignId: 'c-1' });
    assert.equal((await env.client.get(runId))?.execution, 3, 'executions of 3, 3 and 1 transitions');
    assert.deepEqual((await counters.get('c-1')).object, { n: 7 });
  });

  it('after a continue-as-new, statusSince is when the last transition completed, not when the run was triggered', async () => {
    const sitters = connectMachine(env.client, sitter);
    const runId = await sitters.trigger('s-1', { object: {} });
    await env.waitFor(runId, 'waiting');
    const triggered = (await env.client.get(runId))!.createdAt;
    await env.advance('1 hour');
    await waitFor(async () => (await env.client.get(runId))?.execution === 2 && (await env.client.get(runId))?.status === 'waiting',
      { timeout: 20_000, what: 'the run continued as new, waiting in b' });
    const record = await sitters.get('s-1');
    assert.equal(record.status, 'b');
    assert.ok(record.statusSince.getTime() >= triggered.getTime() + 3_600_000,
      `status_since ${record.statusSince.toISOString()} is an hour after the trigger ${triggered.toISOString()}`);
    await sitters.callback('s-1', 'b', {});
    await env.waitFor(runId, 'completed');
  });

  it('draws the machine as a Mermaid state diagram', () => {
    assert.equal(machineDiagram(application), [
      'stateDiagram-v2',
      '  direction LR',
      '  [*] --> created',
      '  created --> checked',
      '  checked --> awaiting',
      '  awaiting --> approved: callback',
      '  awaiting --> expired: timeout',
      '  approved --> done',
      '  expired --> [*]',
      '  done --> [*]',
      '',
    ].join('\n'));
  });
});

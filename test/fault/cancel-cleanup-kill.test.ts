/**
 * A run cancelled while it waits on a timer, whose worker process dies in
 * the clean-up its cancellation started (found by the supersede audit): the
 * next worker is claimed after the timer is due, and its replay must throw
 * CancelledError at the wait again (not complete it) and run the clean-up
 * again, so the run ends cancelled, not failed with NonDeterminismError.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { CancelledError } from '../../src/errors.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';
import { killIfRunning, type ReadyProcess, spawnReady } from './harness/ready-process.ts';

const children: ChildProcess[] = [];
// Registered before useDatabase's after(), so it runs first: no worker process outlives the database.
after(() => children.forEach(killIfRunning));
const fx = useDatabase({
  setUp: ({ db }) => db.pool.query('create table public.cleanup_log (run_id uuid, pid int)'),
});

const spawnWorker = (mode: 'block' | 'normal'): Promise<ReadyProcess> =>
  spawnReady('test/fault/cancel-process.ts', { DATABASE_URL: fx.db.url, FAULT_MODE: mode },
    { what: `cleanup worker (${mode}) ready`, timeout: 30_000, into: children });

describe('a worker process SIGKILLed in the clean-up of a run cancelled while it waited on a timer', () => {
  it('the next worker process replays the wait as cancelled and cleans up again: the run ends cancelled', async () => {
    const a = await spawnWorker('block');
    const run = await fx.client.start('fault-cleanup', {});
    await waitFor(async () => (await fx.client.get(run.id))?.status === 'waiting', { what: 'the run asleep' });
    await fx.client.cancel(run.id, 'no longer needed');
    await waitFor(async () => (await fx.db.pool.query('select 1 from public.cleanup_log where run_id = $1', [run.id])).rows.length > 0,
      { what: 'the clean-up begun on worker A' });
    a.kill('SIGKILL');
    await once(a, 'exit');
    // By the time another worker claims it (the lease is 2 s), the sleep is due.
    const b = await spawnWorker('normal');
    await assert.rejects(fx.client.result(run.id, { timeout: '30s' }), CancelledError);
    const row = await fx.client.get(run.id);
    const error = row?.error as { code?: string; message?: string } | null;
    assert.deepEqual([row?.status, error?.code, error?.message], ['cancelled', 'cancelled', 'no longer needed']);
    const history = await fx.client.history(run.id);
    assert.deepEqual(history.map((s) => [s.name, s.status]), [['s0', 'completed'], ['z', 'waiting'], ['cleanup', 'completed']]);
    const { rows } = await fx.db.pool.query('select pid from public.cleanup_log where run_id = $1', [run.id]);
    assert.deepEqual(rows.map((r) => r.pid), [a.pid, b.pid], 'cleaned up on A (killed), then on B');
    b.kill('SIGTERM');
    await once(b, 'exit');
  });
});

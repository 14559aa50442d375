/**
 * Step progress across a dead worker process (step.saveProgress, decision
 * 0042): a worker SIGKILLed in the middle of a long step; the next worker's
 * attempt starts at the newest saved progress, so no item is imported
 * twice, and the expiry does not count toward parking the run.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { after, describe, it } from 'node:test';
import { useDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';
import { killIfRunning, type ReadyProcess, spawnReady } from './harness/ready-process.ts';

const children: ChildProcess[] = [];
// Registered before useDatabase's after(), so it runs first: no worker process outlives the database.
after(() => children.forEach(killIfRunning));
const fx = useDatabase({
  setUp: ({ db }) => db.pool.query('create table public.progress_log (run_id uuid, item int, pid int, attempt int)'),
});

const spawnWorker = (mode: 'block' | 'normal', blockAt = 0): Promise<ReadyProcess> =>
  spawnReady('test/fault/progress-process.ts', { DATABASE_URL: fx.db.url, FAULT_MODE: mode, BLOCK_AT: String(blockAt) },
    { what: `progress worker (${mode}) ready`, timeout: 30_000, into: children });

describe('a worker process SIGKILLed in the middle of a long step that saves its progress', () => {
  it('the next worker process starts at the saved progress: every item imported once', async () => {
    const a = await spawnWorker('block', 7);
    const run = await fx.client.start('fault-progress', { n: 12 });
    await waitFor(async () => {
      const { rows } = await fx.db.pool.query(`select output from trellis.steps where run_id = $1 and name = 'import'`, [run.id]);
      return rows[0]?.output?.progress?.next === 7;
    }, { what: 'progress { next: 7 } committed by worker A' });
    a.kill('SIGKILL');
    await once(a, 'exit');

    const b = await spawnWorker('normal');
    const output = (await fx.client.result(run.id, { timeout: '30s' })) as { from: number; by: number };
    assert.deepEqual(output, { from: 7, by: b.pid });
    const { rows } = await fx.db.pool.query('select item, pid, attempt from public.progress_log where run_id = $1 order by item', [run.id]);
    assert.deepEqual(rows.map((r) => r.item), [0, 1, 2, 3, 4, 5, 6, 7, 8, 9, 10, 11], 'each item once');
    assert.deepEqual([...new Set(rows.map((r) => `${r.pid}/${r.attempt}`))], [`${a.pid}/1`, `${b.pid}/2`]);
    const { rows: [r] } = await fx.db.pool.query('select status, attempt, lease_expiries from trellis.runs where id = $1', [run.id]);
    assert.deepEqual(r, { status: 'completed', attempt: 2, lease_expiries: 0 });
    b.kill('SIGTERM');
    await once(b, 'exit');
  });
});

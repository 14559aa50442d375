/**
 * The worker's lease keeper against real PostgreSQL (outside audit): a
 * heartbeat that finds no lease for a run whose end this worker is
 * committing (the park or completion took the lease away) is that commit,
 * and says nothing; one that finds no lease for a run still executing stops
 * it with a warning, as before.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { loggerFrom } from '../../src/protocol/logger.ts';
import type { ClaimedRun } from '../../src/protocol/history.ts';
import { RunAbort } from '../../src/replay/run-abort.ts';
import { type Active, LeaseKeeper } from '../../src/worker/leases.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"lk","version":"1","queue":"lk"}]')`) });
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;

/** A run claimed by worker w1 and then parked (its lease gone), as this worker's entry sees it. */
async function parked(ending: boolean): Promise<Active> {
  await sql(`select trellis.run_start('lk', '{}', '{"queue": "lk"}')`);
  const [run] = await sql(`select * from trellis.run_claim('w1', array['lk'], '{lk}', '{1}', 1, '30 seconds')`);
  await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'wait', run: run.id, token: run.lease_token, deadline: null, signal: 0 }])]);
  return {
    run: run as ClaimedRun, controller: new RunAbort(), execution: undefined, done: Promise.resolve(),
    leaseUntil: performance.now() + 30_000, sentAt: performance.now(), ending,
  };
}

describe('LeaseKeeper.heartbeat', () => {
  it('finds no lease for a run whose end it is committing: no warning, nothing stopped; for a run still executing: stopped, with a warning', async () => {
    const warnings: string[] = [];
    const log = loggerFrom((level, message) => void (level === 'warn' && warnings.push(message)));
    const ending = await parked(true);
    const executing = await parked(false);
    const active = new Map([[ending.run.id, ending], [executing.run.id, executing]]);
    await new LeaseKeeper(fx.db.pool, active, 30_000, log).heartbeat();
    assert.equal(ending.controller.aborted, false);
    assert.equal(executing.controller.aborted, true);
    assert.deepEqual(warnings, ['lease lost, stopping the run on this worker']);
  });
});

/**
 * A database fault while a worker registers a child's workflow (here a
 * trigger refuses that workflow's row) is not the workflow's error: the execution gives the run back, whatever the
 * workflow code does with the rejection, and the run goes on once the
 * database is whole again. (Before, the DatabaseError reached the workflow
 * code: a run that caught it completed with the wrong result, one that did
 * not failed.)
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';

const fx = useDatabase({ client: { handoff: false } });

const label = defineWorkflow({ name: 'reg-fault-child', queue: 'reg-fault-children', input: z.object({ n: z.number() }) },
  async (ctx, { n }) => ctx.step('label', () => `label-${n}`));
const parent = defineWorkflow({ name: 'reg-fault-parent', input: z.object({ n: z.number() }) }, async (ctx, { n }) => {
  try {
    return await ctx.child(label, { n });
  } catch (error) {
    return `caught ${(error as Error).name}`;
  }
});

describe('a database fault while a child workflow is registered', () => {
  it('gives the run back instead of handing the error to the workflow code; the run completes once the database is whole', async () => {
    const worker = createWorker({ pool: fx.db.pool, workflows: [parent], logger: silentLogger, pollInterval: 50 });
    const children = createWorker({ pool: fx.db.pool, workflows: [label], logger: silentLogger, pollInterval: 50 });
    await worker.start();
    await fx.db.pool.query(`create function public.refuse_child() returns trigger language plpgsql as $$
      begin
        if new.name = 'reg-fault-child' then raise exception 'the registry is offline'; end if;
        return new;
      end $$`);
    await fx.db.pool.query(`create trigger refuse_child before insert on trellis.workflows for each row execute function public.refuse_child()`);
    let restored = false;
    const restore = async () => {
      if (restored) return;
      restored = true;
      await fx.db.pool.query('drop trigger refuse_child on trellis.workflows');
    };
    try {
      const run = await fx.client.start(parent, { n: 7 });
      await waitFor(() => worker.stats.abandoned >= 1, { what: 'the execution to give the run up' });
      const given = await fx.client.get(run.id);
      assert.ok(given && ['pending', 'running'].includes(given.status), `the run is neither ended nor failed: ${given?.status}`);
      assert.equal(given.output, null);
      assert.equal(worker.stats.completed + worker.stats.failed, 0, 'the workflow code did not end the run');
      await restore();
      await children.start();
      assert.equal(await run.result({ timeout: '30s' }), 'label-7');
      const ended = await fx.client.get(run.id);
      assert.equal(ended?.failures, 0);
    } finally {
      await restore();
      await worker.stop();
      await children.stop();
    }
  });
});

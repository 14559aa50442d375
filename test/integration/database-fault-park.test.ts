/**
 * A run whose writes fail with a database error that does not heal (here a
 * trigger an app put on trellis.steps refuses one step's result) is given
 * back after growing delays and, at the eighth give-back in a row, parked
 * (paused, with the error) for an operator. Before, it was given back every
 * second for ever, its step body running again at each claim (an audit
 * counted 16 runs of one step in 20 s). Once the cause is gone, resuming it
 * completes it.
 *
 * The fault strikes either the run's end op (the step's record rides with
 * it: the code returned before the step's checkpoint was written) or a
 * checkpoint written while the code still waits. The second took another
 * path, which gave the run back every second for ever (a later audit).
 *
 * A write the engine itself refuses as bad input (TR001, ValidationError:
 * here a trigger standing in for a check of the SQL side that the
 * TypeScript side does not make) fails the run at once, wherever it
 * strikes. Before, a refusal of a checkpoint written while the code still
 * ran crashed the execution, and the run waited for its lease to expire,
 * again and again until it was parked as a poison pill. A failure that is
 * refused in turn is given back and parked as a fault is.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { loggerFrom } from '../../src/protocol/logger.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { waitFor } from '../helpers/wait.ts';

let env: TestEnv;
/** The runs of each 'run given back after a database error' line the worker logged. */
const givenBack: string[] = [];
const body = async () => {
  await env.pool.query('insert into public.fault_park_bodies default values');
  return 1;
};
const atEnd = defineWorkflow({ name: 'fault-park', input: z.object({}) }, async (ctx) => {
  const n = await ctx.step('refused', body);
  return `done ${n}`;
});
const whileWaiting = defineWorkflow({ name: 'fault-park-waiting', input: z.object({}) }, async (ctx) => {
  const n = await ctx.step('refused', body);
  // The code waits here (the step's record is written meanwhile, and refused).
  const go = await ctx.waitForSignal<string>('go');
  return `${'payload' in go ? go.payload : 'timed out'} ${n}`;
});

const refusedRecord = (waits: boolean) => defineWorkflow({ name: waits ? 'refused-record-waiting' : 'refused-record', input: z.object({}) }, async (ctx) => {
  await ctx.step('poisoned', async () => {
    await env.pool.query('insert into public.fault_park_bodies default values');
    return 'poison';
  });
  if (waits) await ctx.waitForSignal('go');
  return 'done';
});
const refusedFailure = defineWorkflow({ name: 'refused-failure', input: z.object({}) }, async () => {
  throw new Error('the workflow fails');
});

before(async () => {
  // A 30 s lease: a run left until its lease expires does not end within the tests' waits.
  env = await createTestEnv({ workflows: [atEnd, whileWaiting, refusedRecord(false), refusedRecord(true), refusedFailure], leaseDuration: 30_000,
    logger: loggerFrom((level, message, fields) => {
      if (level === 'warn' && message === 'run given back after a database error') givenBack.push(String(fields?.runId));
    }) });
  await env.pool.query('create table public.fault_park_bodies (at timestamptz not null default clock_timestamp())');
  await env.pool.query(`create function public.fault_park_refuse() returns trigger language plpgsql as $$
    begin
      if new.name = 'refused' and new.status = 'completed' then raise exception 'an app rule refuses this step'; end if;
      return new;
    end $$`);
  await env.pool.query(`create function public.refuse_as_bad_input() returns trigger language plpgsql as $$
    begin
      raise exception using errcode = 'TR001', message = 'refused as bad input by ' || tg_table_name;
    end $$`);
  await env.pool.query(`create trigger refuse_poison before insert or update on trellis.steps for each row
    when (new.output = '"poison"'::jsonb) execute function public.refuse_as_bad_input()`);
  await env.pool.query(`create trigger refuse_failure before update on trellis.runs for each row
    when (new.workflow = 'refused-failure' and new.status = 'failed') execute function public.refuse_as_bad_input()`);
});
after(() => env.close());

/** Follow run `id`'s give-backs on the env's clock until it is parked; the delays it waited, in seconds. */
async function parkedAfter(id: string): Promise<number[]> {
  const row = async () => (await env.pool.query(
    `select status, extract(epoch from run_at - trellis.now())::float8 as wait_s from trellis.runs where id = $1`, [id])).rows[0];
  const waits: number[] = [];
  await waitFor(async () => {
    const r = await row();
    if (r.status === 'pending' && r.wait_s > 0) {
      waits.push(Math.round(r.wait_s));
      await env.advance(`${Math.ceil(r.wait_s) + 1}s`); // the give-back's delay, on the env's clock
    }
    return r.status === 'paused';
  }, { what: 'the run parked', timeout: 60_000 });
  return waits;
}

describe('a database error that does not heal', () => {
  for (const [where, workflow, finish] of [
    ['on the run\'s end op', atEnd, undefined],
    ['on a checkpoint written while the code waits', whileWaiting, 'go'],
  ] as const) {
    it(`${where}: gives the run back after growing delays, then parks it with the error; resumed once the cause is gone, it completes`, async () => {
      await env.pool.query('truncate public.fault_park_bodies');
      await env.pool.query('create trigger fault_park_refuse before insert or update on trellis.steps for each row execute function public.fault_park_refuse()');
      const run = await env.client.start(workflow, {});
      const waits = await parkedAfter(run.id);
      const parked = (await env.pool.query('select error from trellis.runs where id = $1', [run.id])).rows[0];
      assert.equal(parked.error.name, 'DatabaseError');
      assert.match(parked.error.message, /^parked after 8 attempts in a row whose writes failed with a database error: .*an app rule refuses this step/);
      // Seven give-backs before the park, each waiting longer (1 s, 2 s, 4 s … at most 60 s).
      assert.deepEqual(waits, [1, 2, 4, 8, 16, 32, 60].slice(0, waits.length));
      assert.ok(waits.length >= 6, `give-backs seen waiting: ${waits.join(', ')}`);
      const bodies = (await env.pool.query('select count(*)::int as n from public.fault_park_bodies')).rows[0].n;
      assert.equal(bodies, 8, 'the step body ran once per attempt, eight times, then never again');
      assert.equal(givenBack.filter((id) => id === run.id).length, 8, 'each give-back logged, wherever the fault struck');
      await env.pool.query('drop trigger fault_park_refuse on trellis.steps');
      await env.client.resume(run.id);
      if (finish) {
        await env.waitFor(run, 'waiting', { timeout: '20s' });
        await env.client.signal(run.id, 'go', finish);
      }
      assert.equal(await run.result({ timeout: '30s' }), finish ? 'go 1' : 'done 1');
    });
  }
});

describe('a write the engine refuses as bad input', () => {
  for (const waits of [false, true]) {
    it(`a step's record refused ${waits ? 'while the code waits' : 'with the run\'s end'}: the run fails at once with the refusal, its body run once`, async () => {
      await env.pool.query('truncate public.fault_park_bodies');
      const run = await env.client.start(refusedRecord(waits), {});
      await assert.rejects(run.result({ timeout: '15s' }), { name: 'WorkflowFailedError', message: /refused as bad input by steps/ });
      const { rows: [row] } = await env.pool.query('select status, error, lease_expiries, attempt from trellis.runs where id = $1', [run.id]);
      assert.equal(row.status, 'failed');
      assert.equal(row.error.name, 'ValidationError');
      assert.equal(row.lease_expiries, 0, 'its lease never expired');
      assert.equal(row.attempt, 1);
      assert.equal((await env.pool.query('select count(*)::int as n from public.fault_park_bodies')).rows[0].n, 1);
    });
  }

  it('a failure refused in turn: given back after growing delays and parked with the refusal, not left until its lease expires', async () => {
    const run = await env.client.start(refusedFailure, {});
    const waits = await parkedAfter(run.id);
    assert.deepEqual(waits, [1, 2, 4, 8, 16, 32, 60].slice(0, waits.length));
    assert.ok(waits.length >= 6, `give-backs seen waiting: ${waits.join(', ')}`);
    const { rows: [row] } = await env.pool.query('select error, lease_expiries from trellis.runs where id = $1', [run.id]);
    assert.equal(row.lease_expiries, 0, 'its lease never expired');
    assert.equal(row.error.name, 'ValidationError');
    assert.match(row.error.message, /^parked after 8 attempts in a row .*refused as bad input by runs/);
    await env.pool.query('drop trigger refuse_failure on trellis.runs');
    await env.client.resume(run.id);
    await assert.rejects(run.result({ timeout: '30s' }), { name: 'WorkflowFailedError', message: /the workflow fails/ });
  });
});

/**
 * A run whose writes fail with a database error that does not heal (here a
 * trigger an app put on trellis.steps refuses one step's result) is given
 * back after growing delays and, at the eighth give-back in a row, parked
 * (paused, with the error) for an operator. Before, it was given back every
 * second for ever, its step body running again at each claim (an audit
 * counted 16 runs of one step in 20 s). Once the cause is gone, resuming it
 * completes it.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { waitFor } from '../helpers/wait.ts';

let env: TestEnv;
const poisoned = defineWorkflow({ name: 'fault-park', input: z.object({}) }, async (ctx) => {
  const n = await ctx.step('refused', async () => {
    await env.pool.query('insert into public.fault_park_bodies default values');
    return 1;
  });
  return `done ${n}`;
});

before(async () => {
  env = await createTestEnv({ workflows: [poisoned] });
  await env.pool.query('create table public.fault_park_bodies (at timestamptz not null default clock_timestamp())');
  await env.pool.query(`create function public.fault_park_refuse() returns trigger language plpgsql as $$
    begin
      if new.name = 'refused' and new.status = 'completed' then raise exception 'an app rule refuses this step'; end if;
      return new;
    end $$`);
  await env.pool.query('create trigger fault_park_refuse before insert or update on trellis.steps for each row execute function public.fault_park_refuse()');
});
after(() => env.close());

describe('a database error that does not heal', () => {
  it('gives the run back after growing delays, then parks it with the error; resumed once the cause is gone, it completes', async () => {
    const run = await env.client.start(poisoned, {});
    const row = async () => (await env.pool.query(
      `select status, error, (run_at - trellis.now()) as wait, extract(epoch from run_at - trellis.now())::float8 as wait_s from trellis.runs where id = $1`, [run.id])).rows[0];
    const waits: number[] = [];
    await waitFor(async () => {
      const r = await row();
      if (r.status === 'pending' && r.wait_s > 0) {
        waits.push(Math.round(r.wait_s));
        await env.advance(`${Math.ceil(r.wait_s) + 1}s`); // the give-back's delay, on the env's clock
      }
      return r.status === 'paused';
    }, { what: 'the run parked', timeout: 60_000 });
    const parked = await row();
    assert.equal(parked.error.name, 'DatabaseError');
    assert.match(parked.error.message, /^parked after 8 attempts in a row whose writes failed with a database error: .*an app rule refuses this step/);
    // Seven give-backs before the park, each waiting longer (1 s, 2 s, 4 s … at most 60 s).
    assert.deepEqual(waits, [1, 2, 4, 8, 16, 32, 60].slice(0, waits.length));
    assert.ok(waits.length >= 6, `give-backs seen waiting: ${waits.join(', ')}`);
    const bodies = (await env.pool.query('select count(*)::int as n from public.fault_park_bodies')).rows[0].n;
    assert.equal(bodies, 8, 'the step body ran once per attempt, eight times, then never again');
    await env.pool.query('drop trigger fault_park_refuse on trellis.steps');
    await env.client.resume(run.id);
    assert.equal(await run.result({ timeout: '30s' }), 'done 1');
  });
});

/**
 * Manual ticks of a schedule (decision 0045) on the test kit's virtual clock:
 * a backfill after an outage runs exactly the ticks the catch-up policy
 * skipped (a tick that ran is found by its key, never started twice, also
 * when the backfill is repeated); a trigger starts a run now by the overlap
 * policy (the schedule's or the call's), also on a paused schedule; bad
 * input is a typed error that starts and changes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { IllegalTransitionError, NotFoundError, ValidationError } from '../../src/errors.ts';
import type { TestEnv } from '../../src/testing/env.ts';
import { scheduleTestEnv, scheduleWorkflows } from '../helpers/schedule-env.ts';
import { waitFor } from '../helpers/wait.ts';

const { job, held } = scheduleWorkflows('bf-');

let env: TestEnv;
before(async () => {
  env = await scheduleTestEnv({ job, held });
});
after(() => env.close());

const FIVE_MINUTES = 5 * 60_000;
const sql = async (text: string, values: unknown[] = []) => (await env.pool.query(text, values)).rows;
const scheduleRow = async (name: string) => (await sql(`select fired::int, skipped::int, last_run_id, last_tick_at, buffered_at from trellis.schedules where name = $1`, [name]))[0];
const runsOf = async (name: string) =>
  sql(`select id, key, status, metadata from trellis.runs where metadata->>'schedule' = $1 order by key, created_at`, [name]);
const counts = async () => (await sql(`select (select count(*) from trellis.runs)::int as runs,
                                              (select sum(fired + skipped) from trellis.schedules)::int as ticks`))[0];

/** Wait until the ticker has dealt with every due tick of schedule `name`. */
async function ticked(name: string): Promise<void> {
  await waitFor(async () => (await sql(`select next_at > trellis.now() or paused as ok from trellis.schedules where name = $1`, [name]))[0]?.ok,
    { what: `schedule ${name} ticked`, timeout: 30_000 });
}

describe('client.schedules.backfill', () => {
  it('after an outage with catchUp 0, backfilling it runs exactly the skipped ticks; again, it starts nothing', async () => {
    // The middle of a 5-minute period: the test's own real time cannot carry the virtual clock over a tick.
    const now0 = (await env.now()).getTime();
    await env.advance(Math.floor(now0 / FIVE_MINUTES) * FIVE_MINUTES + FIVE_MINUTES * 1.5 - now0);
    const start = await env.now();
    await env.client.schedules.set('bf-outage', { cron: '*/5 * * * *', workflow: job, input: { n: 1 }, overlap: 'allow' });
    const first = Math.floor(start.getTime() / FIVE_MINUTES) * FIVE_MINUTES + FIVE_MINUTES;
    const all = Array.from({ length: 12 }, (_, i) => new Date(first + i * FIVE_MINUTES).toISOString());
    await env.advance('1 hour'); // no tick in between: the catch-up runs the latest tick only
    await ticked('bf-outage');
    const [latest] = await runsOf('bf-outage');
    assert.equal(latest!.key, `schedule:bf-outage:${all[11]}`);

    const filled = await env.client.schedules.backfill('bf-outage', { from: start });
    assert.deepEqual(filled.map((t) => t.tick.toISOString()), all, 'one result per tick of the range, oldest first');
    assert.deepEqual(filled.map((t) => t.outcome), [...Array(11).fill('started'), 'existing']);
    assert.equal(filled[11]!.runId, latest!.id, 'the tick the ticker ran is found by its key');
    const runs = await runsOf('bf-outage');
    assert.deepEqual(runs.map((r) => r.key), all.map((t) => `schedule:bf-outage:${t}`), 'every tick of the outage has one run');
    const backfilled = runs[0]!;
    assert.deepEqual({ ...backfilled.metadata, tick: new Date(backfilled.metadata.tick).toISOString() }, { schedule: 'bf-outage', tick: all[0], manual: 'backfill' });
    assert.equal(await env.client.result(backfilled.id, { timeout: '20s' }), 2, 'due at once, run by the worker');
    const row = await scheduleRow('bf-outage');
    assert.equal(row.fired, 12);
    assert.equal(row.last_run_id, latest!.id, 'the last run stays the newest tick\'s');

    const again = await env.client.schedules.backfill('bf-outage', { from: start, to: new Date(all[11]!) });
    assert.deepEqual(again.map((t) => t.outcome), Array(12).fill('existing'));
    assert.deepEqual(again.map((t) => t.runId), runs.map((r) => r.id), 'each tick is its one run');
    assert.equal((await runsOf('bf-outage')).length, 12, 'nothing started twice');
    assert.deepEqual(await env.client.schedules.backfill('bf-outage', { from: new Date(first + 1), to: new Date(first + 2) }), [], 'a range with no tick');
    await env.client.schedules.delete('bf-outage');
  });

  it('judges the overlap policy once, against the last run from before: skip skips all, bufferOne buffers the latest, allow starts all', async () => {
    await env.client.schedules.set('bf-busy', { cron: '0 0 1 1 *', workflow: held, input: {} });
    const busy = await env.client.schedules.trigger('bf-busy');
    assert.equal(busy.outcome, 'started');
    const from = new Date((await env.now()).getTime() - 3 * 365 * 86_400_000);
    const skipped = await env.client.schedules.backfill('bf-busy', { from, to: new Date(busy.tick.getTime() - 1) });
    assert.ok(skipped.length >= 2, 'two or three new years in three years');
    assert.ok(skipped.every((t) => t.outcome === 'skipped' && t.runId === null), 'skip: the last run is waiting');
    const buffered = await env.client.schedules.backfill('bf-busy', { from, to: new Date(busy.tick.getTime() - 1), overlap: 'bufferOne' });
    assert.deepEqual(buffered.map((t) => t.outcome), [...Array(buffered.length - 1).fill('skipped'), 'buffered']);
    assert.equal((await scheduleRow('bf-busy')).buffered_at?.getTime(), buffered.at(-1)!.tick.getTime());
    const allowed = await env.client.schedules.backfill('bf-busy', { from, to: new Date(busy.tick.getTime() - 1), overlap: 'allow' });
    assert.deepEqual(allowed.map((t) => t.outcome), Array(allowed.length).fill('started'));
    assert.equal((await scheduleRow('bf-busy')).last_run_id, busy.runId, 'older ticks leave the last run as it was');
    // The buffered tick has its run now (the backfill above): the ticker finds it by its key once the last run ends.
    await env.signal(busy.runId!, 'go', null);
    await waitFor(async () => (await scheduleRow('bf-busy')).buffered_at === null, { what: 'the buffered tick taken' });
    assert.equal((await runsOf('bf-busy')).length, 1 + allowed.length, 'the buffered tick started no second run');
    await env.client.schedules.delete('bf-busy');
  });
});

describe('client.schedules.trigger', () => {
  it('starts a run now by the schedule\'s policy or the call\'s, on a paused schedule too', async () => {
    await env.client.schedules.set('tr-held', { cron: '0 0 1 1 *', workflow: held, input: {}, paused: true });
    const first = await env.client.schedules.trigger('tr-held');
    assert.equal(first.outcome, 'started');
    const [run] = await sql('select key, metadata, status from trellis.runs where id = $1', [first.runId]);
    assert.equal(run.key, `schedule:tr-held:${first.tick.toISOString()}`);
    assert.deepEqual({ ...run.metadata, tick: new Date(run.metadata.tick).toISOString() }, { schedule: 'tr-held', tick: first.tick.toISOString(), manual: 'trigger' });
    await env.advance(5); // another millisecond: another tick (a trigger in the same one would find this run)
    const skipped = await env.client.schedules.trigger('tr-held');
    assert.deepEqual([skipped.outcome, skipped.runId], ['skipped', null], 'the schedule\'s policy (skip): its last run is waiting');
    const row = await scheduleRow('tr-held');
    assert.equal(row.last_run_id, first.runId);
    assert.deepEqual([row.fired, row.skipped], [1, 1], 'counted as the schedule\'s ticks');
    await env.advance(5);
    const second = await env.client.schedules.trigger('tr-held', { overlap: 'allow' });
    assert.equal(second.outcome, 'started');
    await env.advance(5);
    const third = await env.client.schedules.trigger('tr-held', { overlap: 'cancelPrevious' });
    assert.equal(third.outcome, 'started');
    assert.equal((await env.waitFor(second.runId!, 'cancelled')).status, 'cancelled', 'the last run before it was cancelled');
    assert.equal((await scheduleRow('tr-held')).last_run_id, third.runId);
    await env.client.cancel(first.runId!);
    await env.client.cancel(third.runId!);
    await env.client.schedules.delete('tr-held');
  });

  it('refuses bad input with a typed error and starts and changes nothing', async () => {
    await env.client.schedules.set('bad-in', { cron: '* * * * * *', workflow: job, input: { n: 1 }, paused: true });
    const before = await counts();
    const now = await env.now();
    await assert.rejects(env.client.schedules.trigger('no-such-schedule'), NotFoundError);
    await assert.rejects(env.client.schedules.trigger("it's; drop"), ValidationError);
    await assert.rejects(env.client.schedules.trigger('bad-in', { overlap: 'sometimes' as never }), ValidationError);
    await assert.rejects(env.client.schedules.trigger('bad-in', { overlp: 'skip' } as never), /unknown option\(s\) overlp/);
    await assert.rejects(env.client.schedules.backfill('no-such-schedule', { from: new Date(now.getTime() - 60_000) }), NotFoundError);
    await assert.rejects(env.client.schedules.backfill('bad-in', {} as never), /from must be a valid Date/);
    await assert.rejects(env.client.schedules.backfill('bad-in', { from: new Date('nope') }), ValidationError);
    await assert.rejects(env.client.schedules.backfill('bad-in', { from: now, to: new Date(now.getTime() + 60_000) }), /not be later than now/);
    await assert.rejects(env.client.schedules.backfill('bad-in', { from: now, to: new Date(now.getTime() - 60_000) }), /from must not be later than to/);
    await assert.rejects(env.client.schedules.backfill('bad-in', { from: new Date(now.getTime() - 3_600_000), to: now }), /more than 1000 ticks/);
    // SQL checks for every caller.
    const refused = async (text: string, values: unknown[]) =>
      assert.rejects(env.pool.query(text, values), (e: { code?: string | undefined }) => e.code === 'TR001', text);
    await refused(`select * from trellis.schedule_backfill('bad-in', $1::timestamptz[])`, [[new Date(now.getTime() + 60_000).toISOString()]]);
    await refused(`select * from trellis.schedule_backfill('bad-in', '{}')`, []);
    await refused(`select * from trellis.schedule_backfill('bad-in', array[null]::timestamptz[])`, []);
    await refused(`select * from trellis.schedule_backfill('bad-in', array['-infinity']::timestamptz[])`, []);
    await refused(`select * from trellis.schedule_backfill('bad-in', array(select trellis.now() - g * interval '1 second' from generate_series(1, 1001) g))`, []);
    await refused(`select * from trellis.schedule_trigger('bad-in', 'sometimes')`, []);
    await assert.rejects(env.pool.query(`select * from trellis.schedule_trigger('no-such-schedule')`), (e: { code?: string | undefined }) => e.code === 'TR002');
    await env.client.schedules.set('bad-ended', { cron: '* * * * *', workflow: job, input: { n: 1 }, endsAt: new Date(now.getTime() - 60_000) });
    await assert.rejects(env.client.schedules.trigger('bad-ended'), IllegalTransitionError, 'a tick after its end is not the schedule\'s');
    assert.deepEqual(await counts(), before, 'nothing started, no tick counted');
    await env.client.schedules.delete('bad-in');
    await env.client.schedules.delete('bad-ended');
  });
});

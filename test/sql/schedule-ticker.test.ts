/**
 * The schedule ticker's protocol in SQL (sql/750_schedules.sql):
 * schedule_tick reads what is due and starts buffered ticks whose previous
 * run ended, schedule_fire starts ticks by each overlap policy. Also run
 * on a Citus cluster by `npm run test:citus`, where every fire of a
 * schedule whose policy is not allow failed ("could not create distributed
 * plan": a SQL function's parameter in a query of runs), and so did the
 * start of a buffered tick (a volatile function in an UPDATE of a
 * reference table).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });
const q = async <T = Record<string, unknown>>(text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows as T[];

/** As the ticker gets them: timestamps as Dates, sent back as ISO strings (milliseconds, as the ticker keeps them). */
interface Due { name: string; next_at: Date | null; next_from: Date | null }

/** One ticker round: read what is due, fire each with one tick, the next tick already due. */
async function round(token: string, tick: string): Promise<{ due: number; started: number }> {
  const due = await q<Due>('select name, next_at, next_from from trellis.schedule_tick($1, 10)', [token]);
  const next = (await q<{ t: string }>(`select date_trunc('milliseconds', trellis.now() - interval '1 second')::text as t`))[0]!.t;
  const fires = due.map((d) => ({ name: d.name, next_at: d.next_at, next_from: d.next_from, ticks: [tick], skipped: 0, next }));
  const [row] = await q<{ n: number }>('select trellis.schedule_fire($1, $2) as n', [token, JSON.stringify(fires)]);
  return { due: due.length, started: Number(row!.n) };
}

describe('schedule_tick and schedule_fire', () => {
  it('start ticks by each overlap policy, and a buffered tick once the run before it ended', async () => {
    const [{ t: token }] = await q<{ t: string }>(`select trellis.role_acquire('trellis.schedules', 'ticker-test', '1 minute') as t`) as [{ t: string }];
    const policies = ['skip', 'buffer_one', 'cancel_previous', 'allow'];
    for (const overlap of policies) {
      await q('select trellis.schedule_set($1, $2)', [`tick-${overlap}`, JSON.stringify({ cron: '* * * * *', workflow: 'w', overlap })]);
    }
    // The first tick starts one run of each; none has ended at the second.
    assert.deepEqual(await round(token, '2026-01-01T00:00:00Z'), { due: 4, started: 4 });
    assert.deepEqual(await round(token, '2026-01-01T00:01:00Z'), { due: 4, started: 2 });
    const counts = async () => Object.fromEntries((await q<{ name: string; fired: string; skipped: string; buffered: boolean }>(
      'select name, fired, skipped, buffered_at is not null as buffered from trellis.schedules order by name'))
      .map((r) => [r.name, `${r.fired} fired, ${r.skipped} skipped${r.buffered ? ', one buffered' : ''}`]));
    assert.deepEqual(await counts(), {
      'tick-allow': '2 fired, 0 skipped',
      'tick-buffer_one': '1 fired, 0 skipped, one buffered',
      'tick-cancel_previous': '2 fired, 0 skipped',
      'tick-skip': '1 fired, 1 skipped',
    });
    // cancel_previous cancelled its first run.
    assert.equal((await q<{ n: number }>(`select count(*)::int as n from trellis.runs where status = 'cancelled'`))[0]!.n, 1);
    // Every run ends; the next read starts the buffered tick, under its own key.
    for (const r of await q<{ id: string }>(`select id from trellis.runs where status = 'pending'`)) {
      await q(`select trellis.run_cancel($1, 'ended for the test')`, [r.id]);
    }
    await q('select count(*) from trellis.schedule_tick($1, 10)', [token]);
    assert.equal((await counts())['tick-buffer_one'], '2 fired, 0 skipped');
    const [started] = await q<{ key: string; status: string }>(
      `select key, status from trellis.runs where metadata->>'schedule' = 'tick-buffer_one' order by created_at desc limit 1`);
    assert.deepEqual(started, { key: 'schedule:tick-buffer_one:2026-01-01T00:01:00.000Z', status: 'pending' });
    await q(`select trellis.role_release('trellis.schedules', 'ticker-test', $1)`, [token]);
  });

  it('a schedule\'s time_limit becomes each tick\'s run\'s deadline, from its start (now, for a tick already past)', async () => {
    const [{ t: token }] = await q<{ t: string }>(`select trellis.role_acquire('trellis.schedules', 'ticker-limit', '1 minute') as t`) as [{ t: string }];
    const [row] = await q<{ time_limit: string }>('select time_limit::text from trellis.schedule_set($1, $2)',
      ['limited', JSON.stringify({ cron: '* * * * *', workflow: 'w', overlap: 'allow', time_limit: '45 minutes' })]);
    assert.equal(row!.time_limit, '00:45:00');
    const { started } = await round(token, '2026-02-01T00:00:00Z');
    assert.ok(started >= 1);
    const [run] = await q<{ after: number }>(
      `select extract(epoch from deadline_at - created_at)::int as after from trellis.runs where metadata->>'schedule' = 'limited'`);
    assert.equal(run!.after, 45 * 60);
    await q(`select trellis.role_release('trellis.schedules', 'ticker-limit', $1)`, [token]);
  });

  it('a tick the engine refuses for one schedule skips that tick and records why; the other schedules of the batch fire', async () => {
    const [{ t: token }] = await q<{ t: string }>(`select trellis.role_acquire('trellis.schedules', 'ticker-iso', '1 minute') as t`) as [{ t: string }];
    await q(`select trellis.workflow_register('[{"name":"iso-ok","version":"1"},{"name":"iso-bad","version":"1"}]')`);
    for (const [name, workflow, overlap] of [['iso-a', 'iso-ok', 'allow'], ['iso-b', 'iso-bad', 'allow'], ['iso-c', 'iso-bad', 'buffer_one']]) {
      await q('select trellis.schedule_set($1, $2)', [name, JSON.stringify({ cron: '* * * * *', workflow, overlap, input: { team: 'ops' } })]);
    }
    assert.equal((await round(token, '2026-03-01T00:00:00Z')).started >= 3, true);
    // A deploy registers version 2 of iso-bad with a required field the stored input lacks.
    await q(`select trellis.workflow_register($1)`, [JSON.stringify([{ name: 'iso-bad', version: '2',
      input_schema: { type: 'object', required: ['team', 'region'], properties: { team: { type: 'string' }, region: { type: 'string' } } } }])]);
    const runsBefore = (await q<{ n: number }>('select count(*)::int as n from trellis.runs'))[0]!.n;
    const fired = await round(token, '2026-03-01T00:01:00Z');
    const rows = Object.fromEntries((await q<{ name: string; fired: string; skipped: string; last_error: string | null; next_at: Date | null }>(
      `select name, fired, skipped, last_error, next_at from trellis.schedules where name like 'iso-%' order by name`))
      .map((r) => [r.name, r]));
    assert.equal(rows['iso-a']!.fired, '2', 'the schedule of a workflow that still starts fires');
    assert.equal(rows['iso-a']!.last_error, null);
    assert.equal(rows['iso-b']!.fired, '1');
    assert.equal(rows['iso-b']!.skipped, '1');
    assert.match(rows['iso-b']!.last_error!, /^tick 2026-03-01T00:01:00\.000Z not started: input of iso-bad version 2 does not match its schema/);
    assert.ok(rows['iso-b']!.next_at, 'the ticker moved on to its next tick');
    assert.equal(fired.started >= 1, true);
    assert.equal((await q<{ n: number }>('select count(*)::int as n from trellis.runs'))[0]!.n - runsBefore, fired.started);
    // A buffered tick whose start is refused is dropped with the reason, not retried for ever.
    await q(`update trellis.schedules set buffered_at = '2026-03-01T00:02:00Z', last_run_id = null where name = 'iso-c'`);
    await q('select count(*) from trellis.schedule_tick($1, 10)', [token]);
    const [c] = await q<{ buffered_at: Date | null; last_error: string | null }>(`select buffered_at, last_error from trellis.schedules where name = 'iso-c'`);
    assert.equal(c!.buffered_at, null);
    assert.match(c!.last_error!, /^tick 2026-03-01T00:02:00\.000Z not started: input of iso-bad version 2/);
    // Once the stored input fits again, the next fire starts and clears the error.
    await q('select trellis.schedule_set($1, $2)', ['iso-b', JSON.stringify({ cron: '* * * * *', workflow: 'iso-bad', overlap: 'allow', input: { team: 'ops', region: 'eu' } })]);
    await round(token, '2026-03-01T00:03:00Z');
    const [b] = await q<{ last_error: string | null; fired: string }>(`select last_error, fired from trellis.schedules where name = 'iso-b'`);
    assert.deepEqual(b, { last_error: null, fired: '2' });
    await q(`select trellis.role_release('trellis.schedules', 'ticker-iso', $1)`, [token]);
  });

  it('schedule_set again with the same cron keeps a tick already due (an app setting its schedules at every boot); another cron, or a resume, computes afresh', async () => {
    const spec = (o: Record<string, unknown> = {}) => JSON.stringify({ cron: '0 * * * *', workflow: 'w', next_at: '2999-01-01T00:00:00Z', ...o });
    const at = async (name: string) => (await q<{ next_at: Date | null; next_from: Date | null }>('select next_at, next_from from trellis.schedules where name = $1', [name]))[0]!;
    for (const name of ['boot-same', 'boot-cron', 'boot-paused', 'boot-pending']) await q('select trellis.schedule_set($1, $2)', [name, spec()]);
    // An hour of downtime: each schedule's next tick is due and no ticker has fired it yet.
    await q(`update trellis.schedules set next_at = '2026-01-01T10:00:00Z' where name like 'boot-%' and name <> 'boot-pending'`);
    await q(`update trellis.schedules set next_at = null, next_from = '2026-01-01T09:30:00Z' where name = 'boot-pending'`);
    await q(`update trellis.schedules set paused = true where name = 'boot-paused'`);
    // The app boots and sets them again (its client computed the next tick from now).
    await q('select trellis.schedule_set($1, $2)', ['boot-same', spec({ input: { changed: true } })]);
    await q('select trellis.schedule_set($1, $2)', ['boot-pending', spec()]);
    await q('select trellis.schedule_set($1, $2)', ['boot-cron', spec({ cron: '30 * * * *' })]);
    await q('select trellis.schedule_set($1, $2)', ['boot-paused', spec({ paused: false })]);
    assert.equal((await at('boot-same')).next_at?.toISOString(), '2026-01-01T10:00:00.000Z', 'the due tick stays: the ticker fires it');
    assert.deepEqual(await at('boot-pending'), { next_at: null, next_from: new Date('2026-01-01T09:30:00Z') }, 'a tick still to be computed stays so');
    assert.equal((await at('boot-cron')).next_at?.toISOString(), '2999-01-01T00:00:00.000Z', 'another cron: its own next tick');
    assert.equal((await at('boot-paused')).next_at?.toISOString(), '2999-01-01T00:00:00.000Z', 'resumed: from now, its paused ticks skipped');
  });

  it('schedule_set refuses an infinite ends_at or next_at, or one past JavaScript\'s last date, and writes nothing', async () => {
    const before = (await q<{ n: number }>('select count(*)::int as n from trellis.schedules'))[0]!.n;
    for (const extra of [{ ends_at: 'infinity' }, { ends_at: '-infinity' }, { next_at: 'infinity' }, { ends_at: '294276-01-01T00:00:00Z' }]) {
      await assert.rejects(q('select trellis.schedule_set($1, $2)', ['inf', JSON.stringify({ cron: '* * * * *', workflow: 'w', ...extra })]),
        (e: { code?: string | undefined; message: string }) => e.code === 'TR001' && /finite timestamps before 275760-09-13/.test(e.message), JSON.stringify(extra));
    }
    assert.equal((await q<{ n: number }>('select count(*)::int as n from trellis.schedules'))[0]!.n, before);
  });
});

describe('manual ticks and the ticker (decision 0045): whoever gets to a tick first starts it, once', () => {
  const H1 = '2026-03-01T10:00:00.000Z';
  const H2 = '2026-03-01T11:00:00.000Z';
  const token = async () => (await q<{ t: string }>(`select trellis.role_acquire('trellis.schedules', 'manual-test', '1 minute') as t`))[0]!.t;
  /** The ticker's fire of `ticks` for schedule `name` alone, as it read the row. */
  async function fireOne(t: string, name: string, ticks: string[]): Promise<number> {
    const [row] = await q<{ next_at: Date | null; next_from: Date | null }>('select next_at, next_from from trellis.schedules where name = $1', [name]);
    const fire = { name, next_at: row!.next_at, next_from: row!.next_from, ticks, skipped: 0, next: '2999-01-01T00:00:00Z' };
    return Number((await q<{ n: number }>('select trellis.schedule_fire($1, $2) as n', [t, JSON.stringify([fire])]))[0]!.n);
  }
  const row = async (name: string) => (await q<{ fired: number; skipped: number; buffered_at: Date | null; last_run_id: string | null; last_tick_at: Date | null }>(
    'select fired::int, skipped::int, buffered_at, last_run_id, last_tick_at from trellis.schedules where name = $1', [name]))[0]!;
  const runs = async (name: string) => q<{ id: string; key: string; status: string; run_at: Date; metadata: Record<string, unknown> }>(
    `select id, key, status, run_at, metadata from trellis.runs where metadata->>'schedule' = $1 order by key, created_at`, [name]);

  /** An hourly schedule of workflow w by `overlap`, its next tick far away (the test makes ticks due with `dueAt`). */
  const hourly = (overlap: string) => ({ cron: '0 * * * *', workflow: 'w', overlap, next_at: '2999-01-01T00:00:00Z' });
  const setHourly = (name: string, overlap: string) => q('select trellis.schedule_set($1, $2)', [name, JSON.stringify(hourly(overlap))]);
  /** Tick `tick` of schedule `name` is due; the ticker has not fired it yet. */
  const dueAt = (name: string, tick: string) => q(`update trellis.schedules set next_at = $2 where name = $1`, [name, tick]);
  /** A buffer_one schedule whose H1 run is unfinished and whose H2 tick waits in the buffer; the ticker's token. */
  async function bufferedH2(name: string): Promise<string> {
    await setHourly(name, 'buffer_one');
    await dueAt(name, H1);
    const t = await token();
    await fireOne(t, name, [H1]); // H1's run, unfinished
    await dueAt(name, H2);
    await fireOne(t, name, [H2]); // H2 waits in the buffer
    return t;
  }

  for (const overlap of ['skip', 'allow', 'cancel_previous', 'buffer_one']) {
    it(`${overlap}: a due tick a backfill started is not started, counted or judged again by the ticker; the next tick is judged against its run`, async () => {
      const name = `raced-${overlap}`;
      await setHourly(name, overlap);
      await dueAt(name, H1); // H1 is due; the ticker has not fired it yet
      const [filled] = await q<{ run_id: string; outcome: string }>(`select run_id, outcome from trellis.schedule_backfill($1, array[$2::timestamptz])`, [name, H1]);
      assert.equal(filled!.outcome, 'started');
      const t = await token();
      assert.equal(await fireOne(t, name, [H1]), 0, 'the ticker finds the tick\'s run');
      assert.deepEqual(await runs(name).then((r) => r.map((x) => [x.id, x.status])), [[filled!.run_id, 'pending']], 'one run, not cancelled');
      assert.deepEqual(await row(name).then((r) => [r.fired, r.skipped, r.buffered_at, r.last_run_id]), [1, 0, null, filled!.run_id]);
      // H2 while the backfilled run is unfinished: the policy, against that run.
      await fireOne(t, name, [H2]);
      const after = await row(name);
      const expected: Record<string, [number, number, string | null]> = {
        skip: [1, 1, null], allow: [2, 0, null], cancel_previous: [2, 0, null], buffer_one: [1, 0, H2],
      };
      assert.deepEqual([after.fired, after.skipped, after.buffered_at?.toISOString() ?? null], expected[overlap], 'H2 by the policy, not lost');
      await q(`select trellis.role_release('trellis.schedules', 'manual-test', $1)`, [t]);
    });
  }

  it('a backfill that reaches the tick waiting in the buffer answers buffered and counts nothing; the ticker starts it once, counted once', async () => {
    const name = 'backfill-buffered';
    const t = await bufferedH2(name);
    const before = await row(name);
    assert.deepEqual([before.fired, before.skipped, before.buffered_at?.toISOString()], [1, 0, H2]);
    const filled = await q<{ run_id: string | null; outcome: string }>(`select run_id, outcome from trellis.schedule_backfill($1, array[$2::timestamptz])`, [name, H2]);
    assert.deepEqual(filled, [{ run_id: null, outcome: 'buffered' }], 'it is waiting, not skipped');
    assert.deepEqual(await row(name).then((r) => [r.fired, r.skipped, r.buffered_at?.toISOString()]), [1, 0, H2], 'nothing counted');
    await q(`select trellis.run_cancel($1, 'ended for the test')`, [before.last_run_id]);
    await q('select count(*) from trellis.schedule_tick($1, 10)', [t]);
    assert.deepEqual(await row(name).then((r) => [r.fired, r.skipped, r.buffered_at]), [2, 0, null], 'started and counted once');
    assert.equal((await runs(name)).filter((r) => r.key.endsWith(H2)).length, 1);
    await q(`select trellis.role_release('trellis.schedules', 'manual-test', $1)`, [t]);
  });

  for (const via of ['schedule_pause', 'schedule_set'] as const) {
    it(`pausing (${via}) skips the tick buffer_one buffered: resumed, the schedule does not start it; a buffered manual tick stays`, async () => {
      const name = `pause-buffered-${via}`;
      const t = await bufferedH2(name);
      const before = await row(name);
      assert.equal(before.buffered_at?.toISOString(), H2);
      if (via === 'schedule_pause') await q('select trellis.schedule_pause($1)', [name]);
      else await q('select trellis.schedule_set($1, $2)', [name, JSON.stringify({ ...hourly('buffer_one'), paused: true })]);
      assert.deepEqual(await row(name).then((r) => [r.buffered_at, r.skipped]), [null, 1], 'skipped at the pause');
      await q(`select trellis.run_cancel($1, 'ended for the test')`, [before.last_run_id]);
      await q('select trellis.schedule_resume($1)', [name]);
      await q('select count(*) from trellis.schedule_tick($1, 10)', [t]);
      assert.equal((await runs(name)).filter((r) => r.key.endsWith(H2)).length, 0, 'H2 never starts');
      assert.equal((await row(name)).fired, 1);
      // A manual tick buffered before a pause is the operator's: it stays, and starts on the paused schedule.
      const [first] = await q<{ run_id: string }>('select run_id from trellis.schedule_trigger($1)', [name]);
      await q(`select pg_sleep(0.002)`);
      const [second] = await q<{ tick: Date; outcome: string }>('select tick, outcome from trellis.schedule_trigger($1)', [name]);
      assert.equal(second!.outcome, 'buffered');
      await q('select trellis.schedule_pause($1)', [name]);
      assert.equal((await row(name)).buffered_at?.toISOString(), second!.tick.toISOString());
      await q(`select trellis.run_cancel($1, 'ended for the test')`, [first!.run_id]);
      await q('select count(*) from trellis.schedule_tick($1, 10)', [t]);
      assert.equal((await runs(name)).filter((r) => r.key.endsWith(second!.tick.toISOString())).length, 1, 'the buffered trigger started');
      await q(`select trellis.role_release('trellis.schedules', 'manual-test', $1)`, [t]);
    });
  }

  it('a buffered older tick (a backfill\'s) started by the ticker leaves the last run the newest tick\'s', async () => {
    const name = 'older-buffered';
    await setHourly(name, 'buffer_one');
    await dueAt(name, H2);
    const t = await token();
    await fireOne(t, name, [H2]); // the ticker's run of H2, unfinished
    const newest = await row(name);
    const filled = await q<{ outcome: string }>(`select outcome from trellis.schedule_backfill($1, array['2026-03-01T08:00:00Z', $2]::timestamptz[])`, [name, H1]);
    assert.deepEqual(filled.map((f) => f.outcome), ['skipped', 'buffered']);
    await q(`select trellis.run_cancel($1, 'ended for the test')`, [newest.last_run_id]);
    await q('select count(*) from trellis.schedule_tick($1, 10)', [t]);
    const after = await row(name);
    assert.equal(after.buffered_at, null, 'the buffered tick started');
    assert.deepEqual([after.last_run_id, after.last_tick_at?.toISOString(), after.fired], [newest.last_run_id, H2, 2], 'the last run is still H2\'s');
    await q(`select trellis.role_release('trellis.schedules', 'manual-test', $1)`, [t]);
  });

  for (const paused of [false, true]) {
    it(`a buffered trigger is started as a trigger (at once, metadata manual) when the last run ends${paused ? ', on a paused schedule too' : ''}`, async () => {
      const name = `buffered-trigger-${paused}`;
      await q('select trellis.schedule_set($1, $2)', [name, JSON.stringify({ cron: '0 0 1 1 *', workflow: 'w', overlap: 'buffer_one', jitter: '1 day', paused })]);
      const [first] = await q<{ run_id: string; outcome: string }>('select run_id, outcome from trellis.schedule_trigger($1)', [name]);
      await q(`select pg_sleep(0.002)`); // another millisecond: another tick
      const [second] = await q<{ tick: Date; outcome: string }>('select tick, outcome from trellis.schedule_trigger($1)', [name]);
      assert.deepEqual([first!.outcome, second!.outcome], ['started', 'buffered']);
      await q(`select trellis.run_cancel($1, 'ended for the test')`, [first!.run_id]);
      const t = await token();
      await q('select count(*) from trellis.schedule_tick($1, 10)', [t]);
      const started = (await runs(name)).find((r) => r.key === `schedule:${name}:${second!.tick.toISOString()}`);
      assert.ok(started, 'the buffered trigger started');
      assert.equal(started.metadata.manual, 'trigger');
      const [{ now }] = await q<{ now: Date }>('select trellis.now() as now') as [{ now: Date }];
      assert.ok(started.run_at.getTime() <= now.getTime(), 'due at once, no jitter');
      assert.equal((await row(name)).buffered_at, null);
      await q(`select trellis.role_release('trellis.schedules', 'manual-test', $1)`, [t]);
    });
  }

  it('a trigger or a backfill after the schedule\'s end is TR004, and changes nothing', async () => {
    await q('select trellis.schedule_set($1, $2)', ['ended', JSON.stringify({ cron: '0 * * * *', workflow: 'w', ends_at: '2026-03-01T10:30:00Z' })]);
    const before = await row('ended');
    for (const call of [`select * from trellis.schedule_trigger('ended')`, `select * from trellis.schedule_backfill('ended', array['2026-03-01T11:00:00Z']::timestamptz[])`]) {
      await assert.rejects(q(call), (e: { code?: string | undefined }) => e.code === 'TR004', call);
    }
    assert.deepEqual(await row('ended'), before);
    assert.deepEqual(await runs('ended'), []);
    const [ok] = await q<{ outcome: string }>(`select outcome from trellis.schedule_backfill('ended', array['2026-03-01T10:00:00Z']::timestamptz[])`);
    assert.equal(ok!.outcome, 'started', 'a tick before its end is its');
  });
});

/**
 * Cron schedules end to end on the test kit's virtual clock: the worker
 * holding role trellis.schedules starts one run per tick (keyed by the
 * tick), 3 days of ticks at once, catch-up after an hour with no tick by
 * each policy, catch-up under each overlap policy, each overlap policy, pause / resume / end date / jitter, a
 * schedule written with plain SQL, DST nights in Europe/Berlin and
 * America/New_York, and bad input that writes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NotFoundError, ValidationError } from '../../src/errors.ts';
import type { TestEnv } from '../../src/testing/env.ts';
import { scheduleTestEnv, scheduleWorkflows } from '../helpers/schedule-env.ts';
import { waitFor } from '../helpers/wait.ts';

const { job, held } = scheduleWorkflows();

let env: TestEnv;
before(async () => {
  env = await scheduleTestEnv({ job, held });
});
after(() => env.close());

const HOUR = 3_600_000;
const sql = async (text: string, values: unknown[] = []) => (await env.pool.query(text, values)).rows;

/** Wait until the ticker has dealt with every due tick of schedule `name` (its next tick is in the future, or it ended). */
async function ticked(name: string): Promise<void> {
  await waitFor(async () => (await sql(
    `select next_at > trellis.now() or (next_at is null and next_from is null) or paused as ok
       from trellis.schedules where name = $1`, [name]))[0]?.ok, { what: `schedule ${name} ticked`, timeout: 30_000 });
}

/** The ticks (from their run keys) of the runs schedule `name` started, in order. */
async function runTicks(name: string): Promise<string[]> {
  const rows = await sql(`select key from trellis.runs where metadata->>'schedule' = $1 order by key`, [name]);
  return rows.map((r) => new Date(String(r.key).slice(`schedule:${name}:`.length)).toISOString());
}

/** Move the virtual clock to `iso` (forward only). */
async function clockTo(iso: string): Promise<void> {
  const ms = new Date(iso).getTime() - (await env.now()).getTime();
  assert.ok(ms > 0, `the clock is past ${iso}`);
  await env.advance(ms);
}

/**
 * Move the virtual clock to the middle of a `stepMs` period. The virtual clock
 * is the real one plus an offset, so real time passes under a test; begun at a
 * period's middle, a test's own real time cannot carry it across a tick
 * boundary it did not move the clock over (CI once saw 3 runs of two ticks, the
 * test having begun a moment before a minute's end).
 */
async function midPeriod(stepMs: number): Promise<void> {
  const now = (await env.now()).getTime();
  await env.advance(Math.floor(now / stepMs) * stepMs + stepMs + stepMs / 2 - now);
}

/** Tick boundaries of `stepMs` after `from`, `count` of them. */
function boundaries(from: Date, stepMs: number, count: number): string[] {
  const first = Math.floor(from.getTime() / stepMs) * stepMs + stepMs;
  return Array.from({ length: count }, (_, i) => new Date(first + i * stepMs).toISOString());
}

describe('client.schedules', () => {
  it('stores the next tick, so select * from trellis.schedules shows what fires next', async () => {
    await midPeriod(HOUR);
    const now = await env.now();
    const row = await env.client.schedules.set('show-next', { cron: '0 * * * *', workflow: job, input: { n: 1 } });
    assert.equal(row.nextAt?.toISOString(), boundaries(now, HOUR, 1)[0]);
    const [stored] = await sql(`select * from trellis.schedules where name = 'show-next'`);
    assert.equal(stored.next_at.toISOString(), boundaries(now, HOUR, 1)[0]);
    assert.equal(stored.overlap, 'skip');
    assert.equal(await env.client.schedules.delete('show-next'), true);
    assert.equal(await env.client.schedules.delete('show-next'), false);
  });

  it('a virtual clock advancing 3 days sees exactly the expected ticks of an hourly and a daily schedule', async () => {
    await midPeriod(HOUR);
    const now = await env.now();
    await env.client.schedules.set('three-days-hourly', { cron: '0 * * * *', workflow: job, input: { n: 1 }, overlap: 'allow', catchUp: 1000 });
    await env.client.schedules.set('three-days-daily', { cron: '0 7 * * *', timeZone: 'UTC', workflow: job, input: { n: 2 }, overlap: 'allow', catchUp: 1000 });
    await env.advance('3 days');
    await ticked('three-days-hourly');
    await ticked('three-days-daily');
    assert.deepEqual(await runTicks('three-days-hourly'), boundaries(now, HOUR, 72));
    const daily = await runTicks('three-days-daily');
    assert.equal(daily.length, 3);
    for (const t of daily) assert.match(t, /T07:00:00\.000Z$/);
    const [row] = await sql(`select fired, skipped from trellis.schedules where name = 'three-days-hourly'`);
    assert.deepEqual(row, { fired: '72', skipped: '0' });
    const roles = await env.client.roles.list();
    const ticker = roles.find((r) => r.name === 'trellis.schedules');
    assert.equal(ticker?.holder, env.worker.id);
    assert.equal(ticker?.lastOutcome, 'ok');
    await env.client.schedules.delete('three-days-hourly');
    await env.client.schedules.delete('three-days-daily');
  });

  it('after an hour with no tick, catch-up 0 starts the latest tick only, catch-up 3 three missed ones too, 1000 all twelve', async () => {
    await midPeriod(5 * 60_000);
    const now = await env.now();
    for (const n of [0, 3, 1000]) {
      await env.client.schedules.set(`catch-up-${n}`, { cron: '*/5 * * * *', workflow: job, input: { n }, overlap: 'allow', catchUp: n });
    }
    const all = boundaries(now, 5 * 60_000, 12);
    // The outage: the engine's clock moves an hour in one step, with no tick in between.
    await env.advance('1 hour');
    try {
      for (const n of [0, 3, 1000]) await ticked(`catch-up-${n}`);
      assert.deepEqual(await runTicks('catch-up-0'), all.slice(-1));
      assert.deepEqual(await runTicks('catch-up-3'), all.slice(-4));
      assert.deepEqual(await runTicks('catch-up-1000'), all);
      const skipped = await sql(`select name, skipped::int from trellis.schedules where name like 'catch-up-%' order by name`);
      assert.deepEqual(skipped, [{ name: 'catch-up-0', skipped: 11 }, { name: 'catch-up-1000', skipped: 0 }, { name: 'catch-up-3', skipped: 8 }]);
    } finally {
      for (const n of [0, 3, 1000]) await env.client.schedules.delete(`catch-up-${n}`);
    }
  });
});

describe('catch-up under each overlap policy (overlap is judged against the run from before the catch-up)', () => {
  const POLICIES = ['skip', 'bufferOne', 'cancelPrevious'] as const;

  it('with no run unfinished, catch-up 2 starts the latest tick and the two missed before it under skip, bufferOne and cancelPrevious', async () => {
    await midPeriod(5 * 60_000);
    const now = await env.now();
    for (const overlap of POLICIES) {
      await env.client.schedules.set(`catch-up-${overlap}`, { cron: '*/5 * * * *', workflow: job, input: { n: 1 }, overlap, catchUp: 2 });
    }
    const all = boundaries(now, 5 * 60_000, 12);
    await env.advance('1 hour');
    try {
      for (const overlap of POLICIES) {
        await ticked(`catch-up-${overlap}`);
        assert.deepEqual(await runTicks(`catch-up-${overlap}`), all.slice(-3), overlap);
        const [row] = await sql(`select fired::int, skipped::int, buffered_at from trellis.schedules where name = $1`, [`catch-up-${overlap}`]);
        assert.deepEqual(row, { fired: 3, skipped: 9, buffered_at: null }, overlap);
      }
    } finally {
      for (const overlap of POLICIES) await env.client.schedules.delete(`catch-up-${overlap}`);
    }
  });

  it('with the last run still waiting, a catch-up is skipped whole (skip), buffers its latest tick (bufferOne), or cancels that run and starts every tick (cancelPrevious)', async () => {
    await midPeriod(5 * 60_000);
    for (const overlap of POLICIES) {
      await env.client.schedules.set(`busy-${overlap}`, { cron: '*/5 * * * *', workflow: held, input: {}, overlap, catchUp: 2 });
    }
    await env.advance('5 minutes');
    for (const overlap of POLICIES) await ticked(`busy-${overlap}`);
    const now = await env.now();
    const all = boundaries(now, 5 * 60_000, 12);
    await env.advance('1 hour');
    try {
      for (const overlap of POLICIES) await ticked(`busy-${overlap}`);
      const state = async (name: string) => (await sql(
        `select fired::int, skipped::int, buffered_at from trellis.schedules where name = $1`, [name]))[0];
      const runs = async (name: string) => sql(`select id, key, status from trellis.runs where metadata->>'schedule' = $1 order by key`, [name]);

      assert.equal((await runs('busy-skip')).length, 1);
      assert.deepEqual(await state('busy-skip'), { fired: 1, skipped: 12, buffered_at: null });

      assert.equal((await runs('busy-bufferOne')).length, 1);
      const buffer = await state('busy-bufferOne');
      assert.equal(buffer.buffered_at?.toISOString(), all[11]);
      assert.deepEqual({ fired: buffer.fired, skipped: buffer.skipped }, { fired: 1, skipped: 11 });

      const cancel = await runs('busy-cancelPrevious');
      assert.equal(cancel.length, 4);
      assert.equal((await env.waitFor(cancel[0].id, 'cancelled')).status, 'cancelled');
      assert.deepEqual(await runTicks('busy-cancelPrevious').then((t) => t.slice(1)), all.slice(-3));
      for (const run of cancel.slice(1)) assert.notEqual(run.status, 'cancelled');
      assert.deepEqual(await state('busy-cancelPrevious'), { fired: 4, skipped: 9, buffered_at: null });
    } finally {
      await sql(`select trellis.run_cancel(id) from trellis.runs where metadata->>'schedule' like 'busy-%' and status not in ('completed', 'failed', 'cancelled')`);
      for (const overlap of POLICIES) await env.client.schedules.delete(`busy-${overlap}`);
    }
  });
});

describe('overlap policies (a tick while the last run still waits)', () => {
  /** Set an every-minute schedule of `held`, let two ticks come; returns the runs it started, in tick order. */
  async function twoTicks(name: string, overlap: 'skip' | 'allow' | 'bufferOne' | 'cancelPrevious') {
    await midPeriod(60_000);
    await env.client.schedules.set(name, { cron: '* * * * *', workflow: held, input: {}, overlap });
    await env.advance('1 minute');
    await ticked(name);
    await env.advance('1 minute');
    await ticked(name);
    return sql(`select id, key, status from trellis.runs where metadata->>'schedule' = $1 order by key`, [name]);
  }

  it('skip: the second tick starts nothing while the first run waits', async () => {
    const runs = await twoTicks('overlap-skip', 'skip');
    assert.equal(runs.length, 1);
    assert.deepEqual((await sql(`select skipped::int from trellis.schedules where name = 'overlap-skip'`))[0], { skipped: 1 });
    await env.client.schedules.delete('overlap-skip');
  });

  it('allow: the second tick starts a second run beside the first', async () => {
    const runs = await twoTicks('overlap-allow', 'allow');
    assert.equal(runs.length, 2);
    assert.ok(runs.every((r) => r.status !== 'cancelled'));
    await env.client.schedules.delete('overlap-allow');
  });

  it('cancelPrevious: the second tick cancels the first run and starts its own', async () => {
    const runs = await twoTicks('overlap-cancel', 'cancelPrevious');
    assert.equal(runs.length, 2);
    assert.equal((await env.waitFor(runs[0].id, 'cancelled')).status, 'cancelled');
    assert.notEqual(runs[1].status, 'cancelled');
    await env.client.schedules.delete('overlap-cancel');
  });

  it('bufferOne: one tick waits for the first run to end, then starts; a third tick meanwhile is skipped', async () => {
    const runs = await twoTicks('overlap-buffer', 'bufferOne');
    assert.equal(runs.length, 1);
    const [buffered] = await sql(`select buffered_at from trellis.schedules where name = 'overlap-buffer'`);
    assert.ok(buffered.buffered_at instanceof Date, 'the second tick is buffered');
    await env.advance('1 minute');
    await waitFor(async () => (await sql(`select skipped::int as n from trellis.schedules where name = 'overlap-buffer'`))[0].n === 1,
      { what: 'the third tick skipped' });
    await env.waitFor(runs[0].id, 'waiting');
    await env.signal(runs[0], 'go', null);
    await env.waitFor(runs[0].id, 'completed');
    await waitFor(async () => (await sql(`select buffered_at is null as ok from trellis.schedules where name = 'overlap-buffer'`))[0].ok,
      { what: 'the buffered tick started' });
    const after = await sql(`select key from trellis.runs where metadata->>'schedule' = 'overlap-buffer' order by key`);
    assert.equal(after.length, 2);
    assert.equal(new Date(String(after[1].key).slice('schedule:overlap-buffer:'.length)).getTime(), buffered.buffered_at.getTime());
    await env.client.schedules.delete('overlap-buffer');
  });
});

describe('pause, resume, end date, jitter, SQL', () => {
  it('a paused schedule starts nothing; resumed, it fires from the next tick after now', async () => {
    await midPeriod(10 * 60_000);
    await env.client.schedules.set('paused-one', { cron: '*/10 * * * *', workflow: job, input: { n: 3 }, catchUp: 1000, overlap: 'allow' });
    await env.client.schedules.pause('paused-one');
    await env.advance('1 hour');
    const resumedAt = await env.now();
    const row = await env.client.schedules.resume('paused-one');
    assert.equal(row.paused, false);
    // The next tick at once (the one the ticker then stores), not null until the ticker's next round.
    const [next] = boundaries(resumedAt, 10 * 60_000, 1);
    assert.equal(row.nextAt?.toISOString(), next);
    assert.equal((await env.client.schedules.get('paused-one'))?.nextAt?.toISOString(), next);
    await ticked('paused-one');
    assert.equal((await env.client.schedules.get('paused-one'))?.nextAt?.toISOString(), next, 'as the ticker stored it');
    assert.deepEqual(await runTicks('paused-one'), [], 'no tick of the paused hour');
    await env.advance('10 minutes');
    await ticked('paused-one');
    assert.deepEqual(await runTicks('paused-one'), boundaries(resumedAt, 10 * 60_000, 1));
    await env.client.schedules.delete('paused-one');
  });

  it('stops at its end date and shows no next tick', async () => {
    await midPeriod(HOUR);
    const now = await env.now();
    const endsAt = new Date(now.getTime() + 2.5 * HOUR);
    await env.client.schedules.set('ending', { cron: '0 * * * *', workflow: job, input: { n: 4 }, catchUp: 1000, overlap: 'allow', endsAt });
    await env.advance('5 hours');
    await ticked('ending');
    const expected = boundaries(now, HOUR, 5).filter((t) => new Date(t) <= endsAt);
    assert.ok(expected.length >= 2);
    assert.deepEqual(await runTicks('ending'), expected);
    assert.equal((await env.client.schedules.get('ending'))?.nextAt, null);
    await env.client.schedules.delete('ending');
  });

  it('jitter delays each run by a fixed fraction of it, within the jitter', async () => {
    await midPeriod(HOUR);
    await env.client.schedules.set('jittery', { cron: '0 * * * *', workflow: job, input: { n: 5 }, catchUp: 1000, overlap: 'allow', jitter: '10 minutes' });
    await env.advance('4 hours');
    await ticked('jittery');
    const rows = await sql(`select key, run_at from trellis.runs where metadata->>'schedule' = 'jittery'`);
    assert.equal(rows.length, 4);
    const delays = rows.map((r) => r.run_at.getTime() - new Date(String(r.key).slice('schedule:jittery:'.length)).getTime());
    for (const d of delays) assert.ok(d >= 0 && d < 600_000, `delay ${d} ms`);
    assert.ok(new Set(delays).size > 1, 'different ticks, different delays');
    await env.client.schedules.delete('jittery');
  });

  it('timeLimit gives each tick\'s run a deadline from its start; an unfinished run is cancelled when it passes', async () => {
    await midPeriod(HOUR);
    const row = await env.client.schedules.set('limited', { cron: '0 * * * *', workflow: held, input: {}, overlap: 'allow', jitter: '5 minutes', timeLimit: '20 minutes' });
    assert.equal(row.timeLimitMs, 1_200_000);
    await env.advance('1 hour');
    await ticked('limited');
    // The clock jumped 30 minutes past the tick, so the run (due at the tick
    // plus up to 5 minutes of jitter) started late: 20 minutes from then.
    const [run] = await sql(`select id, deadline_at, created_at from trellis.runs where metadata->>'schedule' = 'limited'`);
    assert.equal(run.deadline_at.getTime() - run.created_at.getTime(), 1_200_000, '20 minutes from its start');
    await env.waitFor(run.id, ['pending', 'running', 'waiting']);
    await env.advance('21 minutes');
    const done = await env.waitFor(run.id, 'cancelled');
    assert.match((done.error as { message: string }).message, /^deadline .* passed$/);
    // Set again without it: the next ticks' runs have none.
    assert.equal((await env.client.schedules.set('limited', { cron: '0 * * * *', workflow: held, input: {} })).timeLimitMs, null);
    await env.client.schedules.delete('limited');
  });

  it('a schedule written with plain SQL gets its next tick from the ticker and fires', async () => {
    await midPeriod(HOUR);
    const now = await env.now();
    await sql(`select trellis.schedule_set('from-sql', '{"cron": "0 * * * *", "workflow": "job", "input": {"n": 6}}')`);
    await ticked('from-sql');
    const [row] = await sql(`select next_at from trellis.schedules where name = 'from-sql'`);
    assert.equal(row.next_at.toISOString(), boundaries(now, HOUR, 1)[0]);
    await env.advance('1 hour');
    await ticked('from-sql');
    assert.deepEqual(await runTicks('from-sql'), boundaries(now, HOUR, 1));
    await sql(`select trellis.schedule_pause('from-sql')`);
    assert.equal((await env.client.schedules.get('from-sql'))?.paused, true);
    assert.deepEqual((await sql(`select trellis.schedule_delete('from-sql') as ok`))[0], { ok: true });
  });
});

describe('inside the caller\'s transaction', () => {
  it('a schedule set in a transaction that rolls back is not there; one that commits is', async () => {
    const c = await env.pool.connect();
    try {
      await c.query('begin');
      await env.client.schedules.set('in-tx', { cron: '0 * * * *', workflow: job, input: { n: 8 } }, { tx: c });
      await c.query('rollback');
      assert.equal(await env.client.schedules.get('in-tx'), undefined);
      await c.query('begin');
      await env.client.schedules.set('in-tx', { cron: '0 * * * *', workflow: job, input: { n: 8 } }, { tx: c });
      await c.query('commit');
      assert.equal((await env.client.schedules.get('in-tx'))?.workflow, 'job');
      await c.query('begin');
      assert.equal(await env.client.schedules.delete('in-tx', { tx: c }), true);
      await c.query('rollback');
      assert.ok(await env.client.schedules.get('in-tx'), 'the delete rolled back');
      await env.client.schedules.delete('in-tx');
    } finally {
      c.release();
    }
  });
});

describe('bad input writes nothing', () => {
  const count = async () => Number((await sql('select count(*) as n from trellis.schedules'))[0].n);
  const cases: [string, () => Promise<unknown>, new (...a: any[]) => Error][] = [
    ['an invalid cron (TS)', () => env.client.schedules.set('bad', { cron: '61 * * * *', workflow: job, input: { n: 1 } }), ValidationError],
    ['an invalid cron (SQL)', () => sql(`select trellis.schedule_set('bad', '{"cron": "every day", "workflow": "job", "input": {"n": 1}}')`), Error],
    ['an unknown time zone (TS)', () => env.client.schedules.set('bad', { cron: '0 * * * *', timeZone: 'Mars/Olympus', workflow: job, input: { n: 1 } }), ValidationError],
    ['a misspelt option (timelimit)', () => env.client.schedules.set('bad', { cron: '0 * * * *', workflow: job, input: { n: 1 }, timelimit: '1h' } as never), ValidationError],
    ['a cron no date matches (30 February)', () => env.client.schedules.set('bad', { cron: '0 0 30 2 *', workflow: job, input: { n: 1 } }), ValidationError],
    ['an unknown time zone (SQL)', () => sql(`select trellis.schedule_set('bad', '{"cron": "0 * * * *", "time_zone": "Mars/Olympus", "workflow": "job", "input": {"n": 1}}')`), Error],
    ['an unknown workflow', () => env.client.schedules.set('bad', { cron: '0 * * * *', workflow: 'nobody', input: {} }), NotFoundError],
    ['input failing the schema (TS)', () => env.client.schedules.set('bad', { cron: '0 * * * *', workflow: job, input: { n: 'x' } as never }), ValidationError],
    ['input failing the schema (by name, checked in SQL)', () => env.client.schedules.set('bad', { cron: '0 * * * *', workflow: 'job', input: { n: 'x' } }), ValidationError],
    ['a name with a quote and SQL', () => env.client.schedules.set("x'; drop table trellis.runs; --", { cron: '0 * * * *', workflow: job, input: { n: 1 } }), ValidationError],
    ['an unknown overlap policy', () => env.client.schedules.set('bad', { cron: '0 * * * *', workflow: job, input: { n: 1 }, overlap: 'sometimes' as never }), ValidationError],
    ['a negative catch-up', () => env.client.schedules.set('bad', { cron: '0 * * * *', workflow: job, input: { n: 1 }, catchUp: -1 }), ValidationError],
    ['a time limit of zero (TS)', () => env.client.schedules.set('bad', { cron: '0 * * * *', workflow: job, input: { n: 1 }, timeLimit: 0 }), ValidationError],
    ['a time limit that is not an interval (SQL)', () => sql(`select trellis.schedule_set('bad', '{"cron": "0 * * * *", "workflow": "job", "input": {"n": 1}, "time_limit": "a while"}')`), Error],
    ['a negative time limit (SQL)', () => sql(`select trellis.schedule_set('bad', '{"cron": "0 * * * *", "workflow": "job", "input": {"n": 1}, "time_limit": "-1 hour"}')`), Error],
    ['a time limit as a number (SQL)', () => sql(`select trellis.schedule_set('bad', '{"cron": "0 * * * *", "workflow": "job", "input": {"n": 1}, "time_limit": 60}')`), Error],
  ];
  for (const [what, call, type] of cases) {
    it(`${what}: a typed error, no schedule written`, async () => {
      const before = await count();
      await assert.rejects(call(), (error: Error & { code?: string | undefined }) => {
        assert.ok(error instanceof type, `${error.name}: ${error.message}`);
        if (type === Error) assert.equal(error.code, 'TR001', error.message);
        return true;
      });
      assert.equal(await count(), before);
    });
  }
  it('pausing an unknown schedule is a NotFoundError', async () => {
    await assert.rejects(env.client.schedules.pause('no-such'), NotFoundError);
  });
});

describe('DST nights, ticking every 15 minutes of engine time (runs last: it moves the clock to 2027)', () => {
  /** From `from`, create the schedule, step the clock by 15 minutes `steps` times letting the ticker tick each time. */
  async function walk(name: string, cron: string, timeZone: string, from: string, steps: number): Promise<string[]> {
    await clockTo(from);
    await env.client.schedules.set(name, { cron, timeZone, workflow: job, input: { n: 7 }, overlap: 'allow' });
    for (let i = 0; i < steps; i++) {
      await env.advance('15 minutes');
      await ticked(name);
    }
    const ticks = await runTicks(name);
    await env.client.schedules.delete(name);
    return ticks;
  }

  it('America/New_York spring forward: 02:30 (skipped) fires once, at 03:00 EDT', async () => {
    assert.deepEqual(await walk('ny-spring', '30 2 * * *', 'America/New_York', '2027-03-14T05:00:00Z', 12), ['2027-03-14T07:00:00.000Z']);
  });

  it('Europe/Berlin spring forward: 02:30 (skipped) fires once, at 03:00 CEST', async () => {
    assert.deepEqual(await walk('berlin-spring', '30 2 * * *', 'Europe/Berlin', '2027-03-27T23:30:00Z', 12), ['2027-03-28T01:00:00.000Z']);
  });

  it('Europe/Berlin fall back: 02:00 and 02:30 fire once each though the hour repeats', async () => {
    assert.deepEqual(await walk('berlin-fall', '0,30 2 * * *', 'Europe/Berlin', '2027-10-30T23:30:00Z', 12),
      ['2027-10-31T00:00:00.000Z', '2027-10-31T00:30:00.000Z']);
  });

  it('America/New_York fall back: 01:30 fires once though the hour repeats', async () => {
    assert.deepEqual(await walk('ny-fall', '30 1 * * *', 'America/New_York', '2027-11-07T04:30:00Z', 12), ['2027-11-07T05:30:00.000Z']);
  });

  it('Europe/Berlin fall back: a schedule of every 5 minutes goes on after the repeated hour (it ended there, silently)', async () => {
    const ticks = await walk('berlin-fall-5min', '*/5 * * * *', 'Europe/Berlin', '2028-10-29T00:40:00Z', 8);
    // Catch-up 0, a step of 15 minutes: the latest tick of each step. 01:00Z-01:59Z (02:xx CET) repeat
    // 02:xx CEST: nothing fires in them; from 02:00Z (03:00 CET) on, it goes on.
    assert.deepEqual(ticks, ['2028-10-29T00:55:00.000Z', '2028-10-29T02:10:00.000Z', '2028-10-29T02:25:00.000Z', '2028-10-29T02:40:00.000Z']);
  });
});

describe('after a long outage', () => {
  it('four schedules of every second, a day behind, each start their latest tick in one turn of the ticker, which keeps its lease', async () => {
    await midPeriod(60_000);
    const names = [1, 2, 3, 4].map((i) => `every-second-${i}`);
    for (const name of names) await env.client.schedules.set(name, { cron: '* * * * * *', workflow: job, input: { n: 9 } });
    try {
      await env.advance('1 day');
      for (const name of names) await ticked(name);
      const now = (await env.now()).getTime();
      for (const name of names) {
        const ticks = await runTicks(name);
        const latest = new Date(ticks[ticks.length - 1] as string).getTime();
        assert.ok(now - latest < 60_000, `${name}'s latest run is of a tick a day later than its first (${ticks.length} runs)`);
        assert.ok(ticks.length <= 3, `${name} started ${ticks.length} runs, not the day's ticks`);
      }
      const ticker = (await env.client.roles.list()).find((r) => r.name === 'trellis.schedules');
      assert.equal(ticker?.lastOutcome, 'ok');
    } finally {
      for (const name of names) await env.client.schedules.delete(name);
    }
  });
});

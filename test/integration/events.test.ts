/**
 * The outbox through the engine and the client: random workflows run by a
 * worker emit exactly one event per status change (claims excepted) and per
 * step result; client.events() and client.eventConsumer() read them; bad
 * input is a typed error.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { NotFoundError, ValidationError } from '../../src/errors.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import type { RunEvent } from '../../src/db/events.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { type Engine, startEngine } from '../helpers/engine.ts';
import { prng } from '../helpers/prng.ts';
import { logStatusChanges } from '../helpers/status-log.ts';
import { waitFor } from '../helpers/wait.ts';

let db: TestDatabase;
let engine: Engine;

const Action = z.enum(['ok', 'flaky', 'sleep', 'signal', 'bad']);
const failedOnce = new Set<string>();

/** A workflow that interprets a random program: the "random workflows" of the property. */
const program = defineWorkflow({
  name: 'random-program', input: z.object({ actions: z.array(Action), fail: z.boolean(), continued: z.boolean() }),
  retry: { maxAttempts: 2, initialDelay: 10 },
}, async (ctx, { actions, fail, continued }) => {
  let i = 0;
  for (const action of actions) {
    const name = `a${i++}`;
    if (action === 'ok') await ctx.step(name, () => i);
    if (action === 'flaky') {
      await ctx.step(name, ({ runId }) => {
        if (!failedOnce.has(`${runId}/${name}`)) {
          failedOnce.add(`${runId}/${name}`);
          throw new Error('first attempt fails');
        }
        return i;
      }, { retry: { maxAttempts: 2, initialDelay: 10 } });
    }
    if (action === 'sleep') await ctx.sleep(name, '20ms');
    if (action === 'signal') await ctx.waitForSignal('go');
    if (action === 'bad') await ctx.step(name, () => { throw new Error('never works'); }, { retry: { maxAttempts: 1 } }).catch(() => undefined);
  }
  if (!continued && actions.includes('ok')) return ctx.continueAsNew({ actions: ['ok'], fail, continued: true });
  if (fail) throw new Error('the program fails');
  return actions.length;
});

before(async () => {
  db = await freshDatabase();
  await logStatusChanges(db.pool);
  await db.pool.query(`create table public.step_log (seq bigserial primary key, run_id uuid, call integer, status text)`);
  await db.pool.query(`create function public.log_step() returns trigger language plpgsql as $$
    begin
      if new.kind = 'step' and new.status in ('completed', 'failed')
         and (tg_op = 'INSERT' or old.status is distinct from new.status) then
        insert into public.step_log (run_id, call, status) values (new.run_id, new.seq, new.status);
      end if;
      return new;
    end $$`);
  await db.pool.query(`create trigger log_step after insert or update on trellis.steps for each row execute function public.log_step()`);
  engine = await startEngine(db, { workflows: [program] });
});
after(async () => {
  await engine.stop();
  await db.close();
});

const collect = async (it: AsyncIterable<RunEvent>) => {
  const out: RunEvent[] = [];
  for await (const e of it) out.push(e);
  return out;
};
/**
 * Read until `n` events pass `keep`: events become readable once every
 * older transaction on the server has ended (other test files run their own).
 */
const readAtLeast = async (n: number, read: () => AsyncIterable<RunEvent>, keep: (e: RunEvent) => boolean) => {
  let last: RunEvent[] = [];
  await waitFor(async () => {
    last = (await collect(read())).filter(keep);
    return last.length >= n;
  }, { what: `${n} events` }).catch(() => undefined);
  return last;
};

describe('events of random workflows', () => {
  it('one event per status change (claims excepted) and per step result, in order', async () => {
    const seed = Number(process.env.TRELLIS_PROPERTY_SEED ?? 7);
    const random = prng(seed);
    const runs = await Promise.all(Array.from({ length: 10 }, () => {
      const actions = Array.from({ length: Math.floor(random() * 5) }, () => Action.options[Math.floor(random() * Action.options.length)]!);
      return engine.client.start(program, { actions, fail: random() < 0.3, continued: false });
    }));
    const ids = runs.map((r) => r.id);
    await waitFor(async () => {
      for (const id of ids) {
        const run = await engine.client.get(id);
        if (run?.status === 'waiting') await engine.client.signal(id, 'go', null).catch(() => undefined);
      }
      const { rows } = await db.pool.query(`select count(*)::int as n from trellis.runs where id = any ($1) and status in ('completed', 'failed')`, [ids]);
      return rows[0].n === ids.length;
    }, { what: 'every random run finished', timeout: 60_000, interval: 50 });
    const changes = (await db.pool.query(`select run_id, from_status, to_status from public.status_log where run_id = any ($1) order by seq`, [ids])).rows
      .filter((c) => !(c.from_status === 'pending' && c.to_status === 'running'));
    const events = await readAtLeast(changes.length, () => engine.client.events({ follow: false, batchSize: 7 }),
      (e) => ids.includes(e.runId) && !e.kind.startsWith('step_'));
    const byRun = (rows: Array<{ runId: string; t: string }>) => {
      const out = new Map<string, string[]>();
      for (const r of rows) out.set(r.runId, [...(out.get(r.runId) ?? []), r.t]);
      return out;
    };
    assert.deepEqual(
      byRun(events.map((e) => ({ runId: e.runId, t: `${e.body.from ?? '[*]'} -> ${e.body.to}` }))),
      byRun(changes.map((c) => ({ runId: c.run_id, t: `${c.from_status} -> ${c.to_status}` }))),
      `seed ${seed}`,
    );
    // Step results: one event per call of kind step that completed or failed (logged by a trigger on trellis.steps).
    const steps = (await db.pool.query(`select run_id, call, status from public.step_log where run_id = any ($1) order by seq`, [ids])).rows;
    const stepEvents = await readAtLeast(steps.length, () => engine.client.events({ follow: false, kinds: ['step_completed', 'step_failed'] }),
      (e) => ids.includes(e.runId));
    assert.ok(steps.length > 0);
    assert.deepEqual(
      byRun(stepEvents.map((e) => ({ runId: e.runId, t: `${e.body.seq} ${e.kind}` }))),
      byRun(steps.map((c) => ({ runId: c.run_id, t: `${c.call} step_${c.status}` }))),
    );
  });
});

describe('client.events and client.eventConsumer', () => {
  it('filter by workflow and kind, resume after a cursor, and a consumer moves only on ack', async () => {
    const run = await engine.client.start(program, { actions: [], fail: false, continued: false });
    await run.result();
    const mine = await readAtLeast(1, () => engine.client.events({ follow: false, workflows: ['random-program'], kinds: ['completed'] }),
      (e) => e.runId === run.id);
    const last = mine.at(-1)!;
    assert.equal(last.runId, run.id);
    assert.deepEqual(await collect(engine.client.events({ follow: false, after: last.cursor, kinds: ['completed'] })), []);
    const consumer = await engine.client.eventConsumer('audit', { kinds: ['completed'] });
    const first = await consumer.read(1);
    assert.equal(first.length, 1);
    assert.deepEqual((await consumer.read(1)).map((e) => e.cursor), first.map((e) => e.cursor), 'not acknowledged: read again');
    await consumer.ack(first[0]!);
    assert.notDeepEqual((await consumer.read(1)).map((e) => e.cursor), first.map((e) => e.cursor));
    // A following iterator ends when its signal aborts.
    const stop = new AbortController();
    const seen: RunEvent[] = [];
    const reading = (async () => {
      for await (const e of consumer.events({ pollInterval: 20, signal: stop.signal })) {
        seen.push(e);
        if (e.runId === run.id) stop.abort();
      }
    })();
    await reading;
    assert.equal(seen.at(-1)?.runId, run.id);
    assert.equal(await consumer.drop(), true);
  });

  it('a consumer acknowledges in the caller\'s transaction: rolled back, the event is read again; committed, with the caller\'s write', async () => {
    const run = await engine.client.start(program, { actions: [], fail: false, continued: false });
    await run.result();
    await db.pool.query('create table if not exists public.receipts (run_id uuid not null, cursor text primary key)');
    const consumer = await engine.client.eventConsumer('receipts', { kinds: ['completed'] });
    const [event] = await consumer.read(1);
    assert.ok(event);
    const conn = await db.pool.connect();
    try {
      const handle = async (commit: boolean) => {
        await conn.query('begin');
        await conn.query('insert into public.receipts (run_id, cursor) values ($1, $2)', [event.runId, event.cursor]);
        await consumer.ack(event, { tx: conn });
        await conn.query(commit ? 'commit' : 'rollback');
      };
      await handle(false);
      assert.deepEqual((await consumer.read(1)).map((e) => e.cursor), [event.cursor], 'rolled back: not acknowledged');
      await handle(true);
      assert.notDeepEqual((await consumer.read(1)).map((e) => e.cursor), [event.cursor], 'committed: acknowledged');
      assert.equal((await db.pool.query('select count(*)::int as n from public.receipts where cursor = $1', [event.cursor])).rows[0].n, 1);
    } finally {
      conn.release();
      await consumer.drop();
    }
  });

  it('bad input is a typed error', async () => {
    await assert.rejects(collect(engine.client.events({ after: 'bogus', follow: false })), ValidationError);
    await assert.rejects(collect(engine.client.events({ after: `${'9'.repeat(18)}:1`, follow: false })), ValidationError);
    assert.throws(() => engine.client.events({ batchSize: 0 }), ValidationError);
    await assert.rejects(engine.client.eventConsumer('bad\nname'), ValidationError);
    await assert.rejects(db.pool.query(`select * from trellis.event_consumer_read('gone')`), { code: 'TR002' });
    // A bad filter is refused before the consumer is made: no row is left to hold events back.
    await assert.rejects(engine.client.eventConsumer('bad-kinds', { kinds: ['nope' as never] }), ValidationError);
    await assert.rejects(engine.client.eventConsumer('bad-run', { runId: 'not-a-uuid' }), ValidationError);
    assert.deepEqual((await db.pool.query(`select name from trellis.event_consumers where name in ('bad-kinds', 'bad-run')`)).rows, []);
    const consumer = await engine.client.eventConsumer('temp');
    for (const bad of [null, 42, {}, { cursor: 7 }]) await assert.rejects(consumer.ack(bad as never), ValidationError, String(bad));
    await consumer.drop();
    await assert.rejects(consumer.read(), NotFoundError);
  });
});

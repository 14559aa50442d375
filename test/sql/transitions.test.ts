/**
 * The one run state machine (sql/150_transitions.sql): trellis.run_transitions
 * against the diagram in docs/architecture.md, no other writer of runs.status
 * in sql/, the guard of _run_move, and a property over random sequences of
 * engine calls: every status change appends exactly one event (claims none),
 * in order, and every step result one.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { prng } from '../helpers/prng.ts';
import { logStatusChanges } from '../helpers/status-log.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const root = new URL('../../', import.meta.url);
const fx = useFreshDatabase({ setUp: () => sql(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;

/** The (from, to, event) arrows of the state diagram in docs/architecture.md. */
async function diagramArrows(): Promise<string[]> {
  const doc = await readFile(new URL('docs/architecture.md', root), 'utf8');
  const block = /```mermaid\nstateDiagram-v2\n([\s\S]*?)```/.exec(doc);
  assert.ok(block, 'docs/architecture.md has a mermaid state diagram');
  const arrows: string[] = [];
  for (const line of block[1]!.split('\n')) {
    const m = /^\s*(\S+) --> (\S+?)(?::\s*(\S+))?\s*(?:\(.*\))?\s*$/.exec(line);
    if (!m || m[2] === '[*]') continue;
    assert.ok(m[3], `arrow without an event: ${line.trim()}`);
    arrows.push(`${m[1]} -> ${m[2]}: ${m[3]}`);
  }
  return arrows.sort();
}

/** The text of sql/*.sql without comments, by file. */
async function sqlSources(): Promise<Array<{ file: string; text: string }>> {
  const dir = new URL('sql/', root);
  const files = (await readdir(dir)).filter((f) => f.endsWith('.sql')).sort();
  return Promise.all(
    files.map(async (file) => ({ file, text: (await readFile(new URL(file, dir), 'utf8')).replace(/--[^\n]*/g, '') })),
  );
}

describe('trellis.run_transitions', () => {
  it('is the diagram in docs/architecture.md, arrow for arrow', async () => {
    const rows = await sql(`select from_status || ' -> ' || to_status || ': ' || event as arrow from trellis.run_transitions`);
    assert.deepEqual(rows.map((r) => r.arrow as string).sort(), await diagramArrows());
  });

  it('only names states runs_row_check allows (and [*] for a new run)', async () => {
    const rows = await sql(`select distinct s from trellis.run_transitions, unnest(array[from_status, to_status]) s
                             where s not in ('[*]', 'pending', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled')`);
    assert.deepEqual(rows, []);
  });
});

describe('the one writer of runs.status', () => {
  it('no statement in sql/ but _run_move (and the insert of a new run) writes runs.status', async () => {
    const writers: string[] = [];
    for (const { file, text } of await sqlSources()) {
      for (const m of text.matchAll(/\bupdate\s+trellis\.runs\b([^;]*)/gi)) {
        const setClause = /\bset\b([\s\S]*?)(?:\bfrom\b|\bwhere\b|\breturning\b|$)/i.exec(m[1]!)?.[1] ?? '';
        if (/(^|,)\s*status\s*=/i.test(setClause)) writers.push(`${file}: update`);
      }
      for (const m of text.matchAll(/\binsert\s+into\s+trellis\.runs\s*\(([^)]*)\)/gi)) {
        if (/\bstatus\b/i.test(m[1]!)) writers.push(`${file}: insert`);
      }
    }
    // _run_move has the update twice: with and without the hook CTEs (see the next describe).
    assert.deepEqual([...new Set(writers)].sort(), ['150_transitions.sql: update', '200_runs.sql: insert']);
  });

  it('the grep sees a status write when there is one (the check itself can fail)', () => {
    const setClause = /\bset\b([\s\S]*?)(?:\bfrom\b|\bwhere\b|$)/i.exec(` r set updated_at = now(), status = 'x' where id = 1`)?.[1] ?? '';
    assert.ok(/(^|,)\s*status\s*=/i.test(setClause));
  });
});

describe('_run_move', () => {
  it('makes the same update in its two statements (with the hook CTEs, and without when no version declares hooks)', async () => {
    const [{ src }] = await sql(`select prosrc as src from pg_proc where oid = 'trellis._run_move(trellis.run_move[])'::regprocedure`);
    const updates = [...(src as string).matchAll(/update trellis\.runs r[\s\S]*?returning r as run, t\.from_status, t\.event, t\.recorded, m\.body/g)]
      .map((m) => m[0].replace(/\s+/g, ' '));
    assert.equal(updates.length, 2);
    assert.equal(updates[0], updates[1]);
  });

  it('refuses a transition that is not in the table with TR004 and writes nothing', async () => {
    const id = await sql(`select trellis.run_start('w', '{}', '{"queue":"guard"}') as id`).then((r) => r[0].id as string);
    const before = await sql('select count(*)::int as n from trellis.events where run_id = $1', [id]);
    await assert.rejects(
      sql(`select trellis._run_move(array[row($1, 'completed', 'completed', null, null, false, null, false, null, null, null, null,
                                              null, null, null, null, null, null)::trellis.run_move])`, [id]),
      (e: { code?: string | undefined; message?: string | undefined }) => e.code === 'TR004' && /pending -> completed/.test(e.message ?? ''),
    );
    const [run] = await sql('select status, finished_at from trellis.runs where id = $1', [id]);
    assert.deepEqual(run, { status: 'pending', finished_at: null });
    assert.deepEqual(await sql('select count(*)::int as n from trellis.events where run_id = $1', [id]), before);
  });
});

describe('every transition emits exactly one event', () => {
  it('over random sequences of starts, claims, checkpoints and controls, the events are the status changes, in order', async () => {
    // An independent record of every status change, kept by a trigger the
    // engine knows nothing about (test database only).
    await logStatusChanges(fx.db.pool);
    const seed = Number(process.env.TRELLIS_PROPERTY_SEED ?? 12);
    const random = prng(seed);
    const pick = <T>(xs: T[]): T => xs[Math.floor(random() * xs.length)]!;
    const runs: Array<{ id: string; queue: string; token?: string | undefined; seq: number }> = [];
    let stepResults = 0;
    for (let i = 0; i < 12; i++) {
      const queue = `p${i}`;
      const [{ id }] = await sql(`select trellis.run_start('w', '{}', $1) as id`, [JSON.stringify({ queue })]);
      runs.push({ id, queue, seq: 0 });
    }
    const apply = (ops: unknown[]) => sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);
    for (let round = 0; round < 400; round++) {
      const run = pick(runs);
      const [{ status }] = await sql('select status from trellis.runs where id = $1', [run.id]);
      const fence = { run: run.id, token: run.token };
      const choices: Array<() => Promise<unknown>> = [];
      if (status === 'pending') {
        choices.push(async () => {
          const [claimed] = await sql(`select lease_token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '1 minute')`, [run.queue]);
          run.token = claimed?.lease_token;
        });
      }
      if (status === 'running') {
        choices.push(
          () => apply([{ ...fence, op: 'complete', output: round }]),
          () => apply([{ ...fence, op: 'fail', error: { message: 'x' } }]),
          () => apply([{ ...fence, op: 'release', delay_ms: 0, failure: random() < 0.5, error: { message: 'r' } }]),
          () => apply([{ ...fence, op: 'wait', delay_ms: random() < 0.5 ? 0 : null }]),
          () => apply([{ ...fence, op: 'pause', error: { message: 'dead letter' } }]),
          () => apply([{ ...fence, op: 'continue', input: round }]),
          async () => {
            const completed = random() < 0.7;
            run.seq += 1;
            stepResults += 1;
            await apply([{ ...fence, op: 'step', seq: run.seq, name: 's', kind: 'step', status: completed ? 'completed' : 'failed',
                           output: completed ? 1 : null, error: completed ? null : { message: 'e' } }]);
          },
          () => sql('select trellis.run_pause($1)', [run.id]),
        );
      }
      if (status === 'waiting') choices.push(() => sql(`select trellis.signal_send($1, 'go', '1')`, [run.id]));
      if (status === 'pending' || status === 'waiting') choices.push(() => sql('select trellis.run_pause($1)', [run.id]));
      if (status === 'paused') choices.push(() => sql('select trellis.run_resume($1)', [run.id]));
      if (status === 'failed') choices.push(() => sql('select trellis.run_retry($1)', [run.id]));
      if (!['completed', 'failed', 'cancelled'].includes(status)) {
        choices.push(() => sql('select trellis.run_cancel($1)', [run.id]));
      }
      if (choices.length > 0) await pick(choices)();
    }
    const changes = await sql(`select run_id, from_status, to_status from public.status_log order by seq`);
    const events = await sql(`select run_id, kind, coalesce(body->>'from', '[*]') as from_status, body->>'to' as to_status
                                from trellis.events where kind not like 'step_%' and run_id = any ($1) order by xid, id`,
                             [runs.map((r) => r.id)]);
    const byRun = (rows: Array<Record<string, string>>) => {
      const out = new Map<string, string[]>();
      for (const r of rows) out.set(r.run_id!, [...(out.get(r.run_id!) ?? []), `${r.from_status} -> ${r.to_status}`]);
      return out;
    };
    const expected = byRun(changes.filter((c) => !(c.from_status === 'pending' && c.to_status === 'running')));
    assert.ok(changes.length > 60, `the walk changed statuses often enough (${changes.length})`);
    assert.deepEqual(byRun(events), expected, `seed ${seed}`);
    // Each event names a transition of the table.
    assert.deepEqual(await sql(`select e.kind, e.body from trellis.events e where e.kind not like 'step_%' and not exists (
                                  select 1 from trellis.run_transitions t where t.from_status = coalesce(e.body->>'from', '[*]')
                                     and t.to_status = e.body->>'to' and t.event = e.kind)`), []);
    const [{ n }] = await sql(`select count(*)::int as n from trellis.events where kind in ('step_completed', 'step_failed')`);
    assert.ok(stepResults > 0);
    assert.equal(n, stepResults, 'one event per step result');
    await sql('drop trigger log_status on trellis.runs');
  });
});


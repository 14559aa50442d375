import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { describe, it } from 'node:test';
import { FINISHED_STATES, RUN_STATES } from '../../src/db/tables.ts';
import { STEP_KINDS, STEP_STATES } from '../../src/protocol/history.ts';
import { ValidationError } from '../../src/errors.ts';
import { assertName, NAME_PATTERN } from '../../src/workflow/names.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase();

/**
 * The value lists of a row-invariant function (trellis._runs_row_ok,
 * trellis._steps_row_ok: sql/000_support.sql), in the order its body names
 * them: each `in ('a', 'b', ...)` list, sorted. The table's one CHECK
 * constraint must call that function.
 */
async function invariantLists(table: string, constraint: string, fn: string): Promise<string[][]> {
  const { rows: checks } = await fx.db.pool.query(
    `select pg_get_constraintdef(c.oid) as def from pg_constraint c
      where c.conrelid = $1::regclass and c.contype = 'c' order by c.conname`,
    [`trellis.${table}`],
  );
  assert.deepEqual(checks.map((r) => (/^CHECK \((\w+\.)?(\w+)\(/.exec(r.def as string) ?? [])[2]), [fn],
    `trellis.${table} has one CHECK constraint (${constraint}), a call of ${fn}: ${checks.map((r) => r.def).join('; ')}`);
  const { rows } = await fx.db.pool.query(`select prosrc from pg_proc where oid = to_regproc($1)`, [`trellis.${fn}`]);
  assert.equal(rows.length, 1, `trellis.${fn} exists`);
  const lists = [...(rows[0].prosrc as string).matchAll(/\bin \(((?:'[^']*'(?:, )?)+)\)/g)]
    .map((m) => [...m[1]!.matchAll(/'([^']*)'/g)].map((v) => v[1] as string).sort());
  assert.ok(lists.length > 0, `no value lists found in trellis.${fn}`);
  return lists;
}

describe('TS constants mirror the SQL row invariants', () => {
  it('RUN_STATES and FINISHED_STATES equal the lists of runs_row_check (trellis._runs_row_ok)', async () => {
    const [states, finished] = await invariantLists('runs', 'runs_row_check', '_runs_row_ok');
    assert.deepEqual(states, [...RUN_STATES].sort());
    assert.deepEqual(finished, [...FINISHED_STATES].sort());
  });

  it('STEP_KINDS and STEP_STATES equal the lists of steps_row_check (trellis._steps_row_ok)', async () => {
    const [kinds, states] = await invariantLists('steps', 'steps_row_check', '_steps_row_ok');
    assert.deepEqual(kinds, [...STEP_KINDS].sort());
    assert.deepEqual(states, [...STEP_STATES].sort());
  });

  it('runs_row_check accepts each status with its own finished_at and lease, and nothing else', async () => {
    const { rows } = await fx.db.pool.query(
      `select s, f, l, c, trellis._runs_row_ok(s, f, l, c) as ok
         from unnest($1::text[] || array['bogus', 'Pending']) s, unnest(array[false, true]) f, unnest(array[false, true]) l,
              unnest(array['cancel', 'abandon', 'keep']) c`,
      [[...RUN_STATES]],
    );
    for (const r of rows) {
      const expected = (RUN_STATES as readonly string[]).includes(r.s) && (FINISHED_STATES as readonly string[]).includes(r.s) === r.f
        && (r.s === 'running') === r.l && r.c !== 'keep';
      assert.equal(r.ok, expected, `${r.s} finished=${r.f} leased=${r.l} close=${r.c}`);
    }
  });
});

describe('runs_row_check and steps_row_check hold on a direct write', () => {
  it('refuse each broken invariant (23514, naming the constraint) and change nothing', async () => {
    const pool = fx.db.pool;
    await pool.query(`select trellis.workflow_register('[{"name":"parity-rows","version":"1","queue":"default"}]')`);
    const id = (await pool.query(`select trellis.run_start('parity-rows', '{}') as id`)).rows[0].id as string;
    const before = (await pool.query('select to_jsonb(r) as row from trellis.runs r where id = $1', [id])).rows[0].row;
    const broken: [string, string][] = [
      ['runs_row_check', `update trellis.runs set status = 'running' where id = '${id}'`],
      ['runs_row_check', `update trellis.runs set status = 'Pending' where id = '${id}'`],
      ['runs_row_check', `update trellis.runs set finished_at = now() where id = '${id}'`],
      ['runs_row_check', `update trellis.runs set status = 'completed' where id = '${id}'`],
      ['runs_row_check', `update trellis.runs set lease_token = '${randomUUID()}' where id = '${id}'`],
      ['runs_row_check', `update trellis.runs set parent_close = 'keep' where id = '${id}'`],
      ['steps_row_check', `insert into trellis.steps (bucket, run_id, execution, seq, name, kind, status, attempts, started_at, finished_at)
                           select bucket, id, 1, 0, 's', 'bogus', 'completed', 1, now(), now() from trellis.runs where id = '${id}'`],
      ['steps_row_check', `insert into trellis.steps (bucket, run_id, execution, seq, name, kind, status, attempts, started_at, finished_at)
                           select bucket, id, 1, 0, 's', 'step', 'done', 1, now(), now() from trellis.runs where id = '${id}'`],
    ];
    for (const [constraint, statement] of broken) {
      const error = await pool.query(statement).then(() => undefined, (e: { code?: string | undefined; constraint?: string | undefined; message: string }) => e);
      assert.ok(error, `refused: ${statement}`);
      assert.equal(error.code, '23514', statement);
      // (Citus passes on the shard's message without the constraint field, and
      // names the shard's constraint: its name and the shard's id.)
      assert.match(error.constraint || error.message, new RegExp(`\\b${constraint}(_\\d+)?\\b`), statement);
    }
    const unchanged = (await pool.query('select to_jsonb(r) as row from trellis.runs r where id = $1', [id])).rows[0].row;
    assert.deepEqual(unchanged, before);
    // A consistent direct write passes (the owner's; the engine's own writes go through _run_move).
    await pool.query(`update trellis.runs set status = 'running', lease_token = $2, attempt = 1 where id = $1`, [id, randomUUID()]);
    await pool.query(`update trellis.runs set status = 'completed', lease_token = null, finished_at = now() where id = $1`, [id]);
    const after = (await pool.query('select status, finished_at is not null as finished from trellis.runs where id = $1', [id])).rows[0];
    assert.equal(before.status, 'pending');
    assert.deepEqual(after, { status: 'completed', finished: true });
    assert.equal((await pool.query('select count(*)::int as n from trellis.steps where run_id = $1', [id])).rows[0].n, 0);
  });
});

describe('NAME_PATTERN and trellis._check_name', () => {
  const valid = [
    'a',
    'A',
    '0',
    '_',
    'orders',
    'Orders_v2',
    'a b',
    'a  b',
    'x/y:z@1.2-3_4',
    'a-',
    'a.',
    'billing/invoices:send@2',
    'a'.repeat(128),
    `a${' '.repeat(126)}b`,
  ];
  const invalid = [
    '',
    ' ',
    ' a',
    'a ',
    '-a',
    '.hidden',
    '/root',
    `o'rders`,
    'a"b',
    'a;b',
    'orders; drop table trellis.runs',
    'a'.repeat(129),
    'a\nb',
    'a\n',
    '\na',
    'a\tb',
    'a\rb',
    'café',
    'naïve',
    'заказ',
    '注文',
    '１２３',
    'a😀',
    'a\\b',
    'a$b',
    'a%b',
    'a,b',
    'a(b)',
  ];

  const sqlAccepts = async (name: string): Promise<boolean> => {
    try {
      const { rows } = await fx.db.pool.query(`select trellis._check_name($1, 'test') as v`, [name]);
      assert.equal(rows[0].v, name, 'returns the name it accepts');
      return true;
    } catch (error) {
      if ((error as { code?: string | undefined }).code === 'TR001') return false;
      throw error;
    }
  };

  it(`both accept the ${valid.length} valid names`, async () => {
    for (const name of valid) {
      assert.equal(NAME_PATTERN.test(name), true, `NAME_PATTERN accepts ${JSON.stringify(name)}`);
      assert.equal(await sqlAccepts(name), true, `_check_name accepts ${JSON.stringify(name)}`);
    }
  });

  it(`both refuse the ${invalid.length} invalid names`, async () => {
    for (const name of invalid) {
      assert.equal(NAME_PATTERN.test(name), false, `NAME_PATTERN refuses ${JSON.stringify(name)}`);
      assert.equal(await sqlAccepts(name), false, `_check_name refuses ${JSON.stringify(name)}`);
    }
  });

  it('agree on every string of one and two characters, and on 20,000 longer ones, over ASCII and a few others', async () => {
    // Two regex engines (PostgreSQL's in _check_name, JavaScript's in
    // NAME_PATTERN), and JavaScript's has a bounded repeat where
    // PostgreSQL's has a length test: held to each other character by character.
    const alphabet = [...Array.from({ length: 127 }, (_, i) => String.fromCharCode(i + 1)), 'é', 'ß', 'я', '注', '😀', '\u00a0', '\u2028'];
    const names = [...alphabet, ...alphabet.flatMap((a) => alphabet.map((b) => a + b))];
    let seed = 18;
    const pick = () => alphabet[(seed = (seed * 1103515245 + 12345) % 2147483648) % alphabet.length] as string;
    const common = 'Ab9_ .:@/-';
    for (let i = 0; i < 20_000; i++) {
      const length = 3 + (i % 126);
      names.push(Array.from({ length }, (_, j) => (j % 7 === 3 ? pick() : common[(i + j) % common.length])).join(''));
    }
    names.push('a'.repeat(129), `a${' '.repeat(127)}`, `a${' '.repeat(126)}b`);
    const client = await fx.db.pool.connect();
    try {
      await client.query(`create or replace function pg_temp.accepts(p text) returns boolean language plpgsql as $f$
        begin perform trellis._check_name(p, 'test'); return true; exception when sqlstate 'TR001' then return false; end $f$`);
      const { rows } = await client.query(`select n, pg_temp.accepts(n) as sql from unnest($1::text[]) as n`, [names]);
      assert.equal(rows.length, names.length);
      const differ = rows.filter((r) => r.sql !== NAME_PATTERN.test(r.n as string)).map((r) => JSON.stringify(r.n));
      assert.deepEqual(differ.slice(0, 10), [], `${differ.length} names judged differently`);
      assert.ok(rows.some((r) => r.sql) && rows.some((r) => !r.sql), 'both kinds among them');
    } finally {
      client.release();
    }
  });

  it('both refuse a missing name', async () => {
    assert.throws(() => assertName(undefined, 'test'), ValidationError);
    assert.throws(() => assertName(null, 'test'), ValidationError);
    await assert.rejects(fx.db.pool.query(`select trellis._check_name(null, 'test')`), { code: 'TR001' });
  });
});

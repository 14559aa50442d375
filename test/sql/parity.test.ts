import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { FINISHED_STATES, RUN_STATES } from '../../src/db/tables.ts';
import { STEP_KINDS, STEP_STATES } from '../../src/protocol/history.ts';
import { ValidationError } from '../../src/errors.ts';
import { assertName, NAME_PATTERN } from '../../src/workflow/names.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase();

/** The quoted text literals of a trellis table's CHECK constraint, sorted. */
async function checkValues(table: string, constraint: string): Promise<string[]> {
  const { rows } = await fx.db.pool.query(
    `select pg_get_constraintdef(c.oid) as def from pg_constraint c
      where c.conrelid = $1::regclass and c.conname = $2 and c.contype = 'c'`,
    [`trellis.${table}`, constraint],
  );
  assert.equal(rows.length, 1, `constraint ${constraint} exists on trellis.${table}`);
  const values = [...(rows[0].def as string).matchAll(/'([^']*)'::text/g)].map((m) => m[1] as string);
  assert.ok(values.length > 0, `no values found in ${rows[0].def}`);
  return values.sort();
}

describe('TS constants mirror the SQL CHECK constraints', () => {
  it('RUN_STATES equals the values allowed by runs_status_check', async () => {
    assert.deepEqual(await checkValues('runs', 'runs_status_check'), [...RUN_STATES].sort());
  });

  it('FINISHED_STATES equals the states runs_finished_check ties to finished_at', async () => {
    assert.deepEqual(await checkValues('runs', 'runs_finished_check'), [...FINISHED_STATES].sort());
  });

  it('STEP_KINDS equals the values allowed by steps_kind_check', async () => {
    assert.deepEqual(await checkValues('steps', 'steps_kind_check'), [...STEP_KINDS].sort());
  });

  it('STEP_STATES equals the values allowed by steps_status_check', async () => {
    assert.deepEqual(await checkValues('steps', 'steps_status_check'), [...STEP_STATES].sort());
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
      if ((error as { code?: string }).code === 'TR001') return false;
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

  it('both refuse a missing name', async () => {
    assert.throws(() => assertName(undefined, 'test'), ValidationError);
    assert.throws(() => assertName(null, 'test'), ValidationError);
    await assert.rejects(fx.db.pool.query(`select trellis._check_name(null, 'test')`), { code: 'TR001' });
  });
});

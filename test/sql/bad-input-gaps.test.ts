/**
 * Bad input the SQL entry points used to take or answer badly: numeric queue
 * and version options (coerced to text), a NULL setting key (a NOT NULL
 * violation instead of TR001), a NULL, empty or huge worker id in run_claim,
 * and error messages that echoed a whole 10,000-character bad value. Each
 * is TR001 with a message that quotes at most a bounded prefix, and writes
 * nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });

const HUGE = 'x'.repeat(10_000);
/** Longest message allowed for an error about a 10,000-character value. */
const BOUND = 400;

async function refused(text: string, values: unknown[], code = 'TR001'): Promise<string> {
  const before = await counts();
  const error = await fx.db.pool.query(text, values).then(() => undefined, (e: { code?: string; message: string }) => e);
  assert.ok(error, `${text} was accepted`);
  assert.equal(error.code, code, `${text}: ${error.message}`);
  assert.ok(error.message.length < BOUND, `message of ${error.message.length} characters: ${error.message.slice(0, 200)}`);
  assert.deepEqual(await counts(), before, 'nothing written');
  return error.message;
}

async function counts(): Promise<Record<string, number>> {
  const { rows } = await fx.db.pool.query(`select (select count(*)::int from trellis.runs) as runs,
    (select count(*)::int from trellis.settings) as settings, (select count(*)::int from trellis.workflows) as workflows`);
  return rows[0];
}

describe('run_start options', () => {
  it('refuses a numeric queue or version instead of coercing it', async () => {
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', '{"queue": 5}']);
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', '{"version": 1}']);
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', '{"queue": ["default"]}']);
  });

  it('quotes at most a prefix of a huge queue, version, option name or run_at', async () => {
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ queue: HUGE })]);
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ version: HUGE })]);
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ [HUGE]: 1 })]);
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ run_at: HUGE })]);
    const message = await refused('select trellis.run_start($1, $2, $3)', [HUGE, '{}', '{}']);
    assert.match(message, /'x{100}\.\.\.'/, 'the prefix, marked as cut');
  });
});

describe('setting_set', () => {
  it('refuses a NULL key with TR001, not a NOT NULL violation', async () => {
    await refused('select trellis.setting_set(null, $1)', ['100']);
  });

  it('quotes at most a prefix of a huge unknown key', async () => {
    await refused('select trellis.setting_set($1, $2)', [HUGE, '100']);
  });
});

describe('run_claim', () => {
  for (const [what, worker] of [['NULL', null], ['empty', ''], ['100,000-character', 'w'.repeat(100_000)]] as const) {
    it(`refuses a ${what} worker id`, async () => {
      await fx.db.pool.query(`select trellis.run_start('w', '{}', '{"queue":"claimq"}')`);
      const message = await refused(`select * from trellis.run_claim($1, array['claimq'], '{w}', '{1}', 10, '30 seconds')`, [worker]);
      assert.match(message, /worker id/);
      const { rows } = await fx.db.pool.query(`select count(*)::int as n from trellis.runs where queue = 'claimq' and status = 'running'`);
      assert.equal(rows[0].n, 0, 'nothing claimed');
    });
  }
});

describe('other entry points with a huge value', () => {
  it('step_record, workflow_register and signal_send quote at most a prefix', async () => {
    const run = '00000000-0000-0000-0000-000000000000';
    await refused('select trellis.step_record($1, $1, 0, $2, $3)', [run, 'a', HUGE]);
    await refused(`select trellis.step_record($1, $1, 0, 'a', 'completed', null, null, 1, $2)`, [run, HUGE]);
    await refused('select trellis.step_record($1, $1, 0, $2, $3)', [run, HUGE, 'completed']);
    await refused('select trellis.workflow_register($1)', [JSON.stringify([{ name: HUGE, version: '1' }])]);
    await refused('select trellis.workflow_register($1)', [JSON.stringify([{ name: 'w2', version: HUGE }])]);
    await refused(`select trellis.signal_send($1, $2, '{}')`, [run, HUGE]);
  });
});

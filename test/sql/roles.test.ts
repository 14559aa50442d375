/**
 * The SQL contract of sql/740_roles.sql: role_acquire / role_renew /
 * role_release / role_check / role_record: the fencing token grows on every
 * acquisition, a live lease is not taken over, an expired one is (virtual
 * clock), a stale token is refused for a fenced write, a takeover waits for
 * a fenced transaction under the old token, bad input changes nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({ virtualClock: true });
const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const one = async (text: string, values: unknown[] = []) => (await sql(text, values))[0];
const acquire = async (name: string, holder: string, ttl = '10 seconds') =>
  (await one('select trellis.role_acquire($1, $2, $3::interval) as t', [name, holder, ttl])).t as string | null;

describe('role_acquire', () => {
  it('gives a free role to the first holder with token 1 and refuses a second holder while the lease runs', async () => {
    assert.equal(await acquire('r1', 'a'), '1');
    assert.equal(await acquire('r1', 'b'), null);
    assert.equal(await acquire('r1', 'a'), '1', 'the holder acquiring again keeps its token');
    const row = await one('select holder, token, expires_at > trellis.now() as live, acquired_at is not null as a from trellis.roles where name = $1', ['r1']);
    assert.deepEqual(row, { holder: 'a', token: '1', live: true, a: true });
  });

  it('hands an expired lease to the next holder with a higher token, and the old token is refused', async () => {
    assert.equal(await acquire('r2', 'a', '1 second'), '1');
    await sql(`select trellis.clock_advance('2 seconds')`);
    assert.equal(await acquire('r2', 'b'), '2');
    await assert.rejects(sql(`select trellis.role_renew('r2', 'a', 1, '10 seconds')`), { code: 'TR003' });
    await assert.rejects(sql(`select trellis.role_check('r2', 1)`), { code: 'TR003' });
    assert.deepEqual(await one(`select trellis.role_check('r2', 2) as ok`), { ok: true });
  });

  it('after a release the next acquisition gets the next token, never an old one', async () => {
    assert.equal(await acquire('r3', 'a'), '1');
    assert.deepEqual(await one(`select trellis.role_release('r3', 'a', 1) as ok`), { ok: true });
    assert.deepEqual(await one(`select trellis.role_release('r3', 'a', 1) as ok`), { ok: false });
    await assert.rejects(sql(`select trellis.role_check('r3', 1)`), { code: 'TR003' });
    assert.equal(await acquire('r3', 'a'), '2');
  });

  it('renew extends the lease under the same token', async () => {
    assert.equal(await acquire('r4', 'a', '1 second'), '1');
    await sql(`select trellis.clock_advance('800 milliseconds')`);
    await sql(`select trellis.role_renew('r4', 'a', 1, '1 second')`);
    await sql(`select trellis.clock_advance('800 milliseconds')`);
    assert.equal(await acquire('r4', 'b'), null, 'renewed: still held by a');
    assert.deepEqual(await one(`select trellis.role_check('r4', 1) as ok`), { ok: true });
  });

  it('role_record stores the outcome of the current holder only', async () => {
    assert.equal(await acquire('r5', 'a'), '1');
    await sql(`select trellis.role_record('r5', 1, false, 'disk full')`);
    await sql(`select trellis.role_record('r5', 7, true)`);
    const row = await one(`select last_outcome, last_error, last_run_at is not null as ran from trellis.roles where name = 'r5'`);
    assert.deepEqual(row, { last_outcome: 'failed', last_error: 'disk full', ran: true });
  });

  it('a takeover waits until a transaction fenced by the old token has ended', async () => {
    assert.equal(await acquire('r6', 'a', '1 second'), '1');
    const fenced = await fx.db.pool.connect();
    try {
      await fenced.query('begin');
      await fenced.query(`select trellis.role_check('r6', 1)`);
      await sql(`select trellis.clock_advance('2 seconds')`);
      let acquired: string | null | undefined;
      const takeover = acquire('r6', 'b').then((t) => (acquired = t));
      await new Promise((r) => setTimeout(r, 200));
      assert.equal(acquired, undefined, 'the takeover waits for the fenced transaction');
      await fenced.query('commit');
      assert.equal(await takeover, '2');
    } finally {
      fenced.release();
    }
  });
});

describe('bad input', () => {
  for (const [what, args] of [
    ['a role name with a quote', [`x'; drop table trellis.roles; --`, 'a', '10 seconds']],
    ['an empty holder', ['ok', '', '10 seconds']],
    ['a ttl under 200 ms', ['ok', 'a', '100 milliseconds']],
    ['a ttl over an hour', ['ok', 'a', '2 hours']],
  ] as const) {
    it(`role_acquire refuses ${what} with TR001 and writes nothing`, async () => {
      const before = await one('select count(*)::int as n from trellis.roles');
      await assert.rejects(sql('select trellis.role_acquire($1, $2, $3::interval)', [...args]), { code: 'TR001' });
      assert.deepEqual(await one('select count(*)::int as n from trellis.roles'), before);
    });
  }
});

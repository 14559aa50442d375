/**
 * The harness's guarded pool (harness/guard.ts): a connection the server
 * ends while a caller holds it between queries must not kill the process.
 * Unguarded, node-postgres throws the FATAL 57P01 as an unhandled 'error'
 * event; that killed every harness worker process at F3's restarts, and
 * their runs waited out their leases.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import pg from 'pg';
import { guardPool } from './harness/guard.ts';
import { adminUrl } from '../helpers/db.ts';

describe('the harness guarded pool', () => {
  it('outlives the server ending a checked-out connection, and its next query fails instead', async () => {
    const pool = guardPool(new pg.Pool({ connectionString: adminUrl(), max: 2, application_name: 'guard-test' }));
    const admin = new pg.Client({ connectionString: adminUrl() });
    await admin.connect();
    try {
      const held = await pool.connect();
      const { rows: [me] } = await held.query<{ pid: number }>('select pg_backend_pid() as pid');
      // (Not events.once: it would listen for 'error' itself.)
      const ended = new Promise((resolve) => held.once('end', resolve));
      // The FATAL arrives while `held` is checked out with no query running.
      const { rows: [done] } = await admin.query<{ ok: boolean }>('select pg_terminate_backend($1) as ok', [me!.pid]);
      assert.equal(done!.ok, true);
      await ended;
      await assert.rejects(held.query('select 1'));
      held.release(true);
      // The pool goes on with a new connection.
      const { rows: [one] } = await pool.query<{ n: number }>('select 1 as n');
      assert.equal(one!.n, 1);
    } finally {
      await admin.end();
      await pool.end();
    }
  });
});

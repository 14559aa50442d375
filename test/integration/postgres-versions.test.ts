/**
 * The supported PostgreSQL majors: migrate() refuses a server older than
 * MIN_POSTGRES_MAJOR with a SchemaVersionError and writes nothing (12 used to
 * install, then fail at the first start on gen_random_uuid()). The SQL
 * contract suite runs on the oldest and newest supported majors in .ci/run
 * (TRELLIS_EMBEDDED_PG_PACKAGE=embedded-pg-13 / embedded-pg-18).
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { isTrellisError, migrate, SchemaVersionError } from '../../src/index.ts';
import { MIN_POSTGRES_MAJOR } from '../../src/schema/install.ts';
import { type EmbeddedPostgres, startEmbeddedPostgres } from '../../src/testing/embedded-postgres.ts';
import { testPool } from '../helpers/db.ts';

describe('supported PostgreSQL versions', () => {
  let old: EmbeddedPostgres;
  before(async () => {
    old = await startEmbeddedPostgres({ binariesPackage: 'embedded-pg-12' });
  });
  after(async () => {
    await old?.stop();
  });

  it('migrate() refuses PostgreSQL 12 with a SchemaVersionError naming the minimum, and creates nothing', async () => {
    const pool = testPool({ connectionString: old.connectionString, max: 1 });
    try {
      const { rows: [v] } = await pool.query<{ num: string }>(`select current_setting('server_version_num') as num`);
      assert.equal(Math.floor(Number(v!.num) / 10000), 12);
      await assert.rejects(migrate(pool), (error: unknown) => {
        assert.ok(isTrellisError(error) && error instanceof SchemaVersionError, String(error));
        assert.match((error as Error).message, new RegExp(`needs PostgreSQL ${MIN_POSTGRES_MAJOR} or newer`));
        return true;
      });
      const { rows } = await pool.query(`select 1 from pg_namespace where nspname = 'trellis'`);
      assert.equal(rows.length, 0, 'no trellis schema was created');
    } finally {
      await pool.end();
    }
  });
});

import assert from 'node:assert/strict';
import { BUNDLE } from '../../src/schema/bundle.generated.ts';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import { Logger, migrate as gmMigrate } from 'graphile-migrate';
import { clearAllPools } from 'graphile-migrate/dist/pgReal.js';
import pg from 'pg';
import { DatabaseError, SchemaVersionError } from '../../src/errors.ts';
import { SCHEMA_COMPATIBLE_FROM } from '../../src/protocol/schema-compat.ts';
import { SCHEMA_SQL_REVISION } from '../../src/protocol/schema-version.generated.ts';
import { checkSchema, functionsHash, installScript, latestMigration, migrate } from '../../src/schema/install.ts';
import { migrationHash } from '../../src/schema/migrations.ts';
import { createDatabase, testPool } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

/** Every migration the code ships, in order. */
const ALL = BUNDLE.migrations.map((m) => m.id);

/** An empty database and a pool on it for the duration of `fn`, dropped afterwards. */
async function withEmptyDatabase(fn: (url: string, pool: pg.Pool) => Promise<void>): Promise<void> {
  const db = await createDatabase('trellis_install');
  const pool = testPool({ connectionString: db.url, max: 4 });
  pool.on('error', () => undefined);
  try {
    await fn(db.url, pool);
  } finally {
    await pool.end();
    await db.drop();
  }
}

/** Start and claim a run: proof that the installed functions work. */
async function schemaWorks(pool: pg.Pool): Promise<void> {
  await pool.query(`select trellis.workflow_register('[{"name":"probe","version":"1","queue":"default"}]')`);
  const { rows } = await pool.query(`select trellis.run_start('probe', '{"n":1}') as id`);
  const claimed = await pool.query(`select id from trellis.run_claim('w', '{default}', '{probe}', '{1}', 1, '1 minute')`);
  assert.deepEqual(claimed.rows.map((r) => r.id), [rows[0].id]);
}

/** What migrate() may change: bookkeeping rows and the installed functions. */
async function state(pool: pg.Pool) {
  const q = async (text: string) => (await pool.query(text)).rows;
  return {
    migrations: await q('select id, hash, applied_at from trellis.migrations order by id'),
    info: await q('select migration, sql_hash, installed_at from trellis.schema_info'),
    functions: await q(`select p.oid, md5(p.prosrc) as src from pg_proc p
                         join pg_namespace n on n.oid = p.pronamespace where n.nspname = 'trellis' order by p.oid`),
  };
}

describe('migrate', () => {
  it('repairs the infinite schedule times an older release stored (migration 31), and no writer can store one after', async () => {
    await withEmptyDatabase(async (url, pool) => {
      const before31 = BUNDLE.migrations.findIndex((m) => m.id === 31);
      await migrate(pool, { bundle: { ...BUNDLE, migrations: BUNDLE.migrations.slice(0, before31), functions: [] } });
      await pool.query(`insert into trellis.schedules (name, cron, time_zone, workflow, ends_at, next_at, next_from) values
        ('no-end', '0 * * * *', 'UTC', 'w', 'infinity', '2026-12-06T10:00Z', null),
        ('ended', '0 * * * *', 'UTC', 'w', '-infinity', '2026-12-06T10:00Z', null),
        ('never-next', '0 * * * *', 'UTC', 'w', null, 'infinity', null),
        ('fine', '0 * * * *', 'UTC', 'w', '2030-01-01T00:00Z', '2026-12-06T10:00Z', null)`);
      await migrate(url);
      const rows = (await pool.query(`select name, ends_at is null as no_end, ends_at <= now() as ended, next_at, next_from is not null as computes,
                                             isfinite(ends_at) as finite_end from trellis.schedules order by name`)).rows;
      const by = Object.fromEntries(rows.map((r) => [r.name, r]));
      assert.equal(by['no-end'].no_end, true, 'an end at infinity is no end');
      assert.equal(by.ended.ended, true, 'an end at -infinity has passed');
      assert.equal(by['never-next'].next_at, null);
      assert.equal(by['never-next'].computes, true, 'its next tick is computed again');
      assert.equal(by.fine.finite_end, true);
      assert.equal(by.fine.next_at.toISOString(), '2026-12-06T10:00:00.000Z', 'a finite row is untouched');
      for (const column of ['ends_at', 'next_at', 'next_from']) {
        await assert.rejects(pool.query(`update trellis.schedules set ${column} = 'infinity' where name = 'fine'`), { code: '23514' }, column);
      }
    });
  });

  it('an upgrade that waits for a table lock gives the lock queue up after lockTimeout, so reads and starts are not held behind it, and tries again', async () => {
    const before30 = BUNDLE.migrations.findIndex((m) => m.id === 30);
    await withEmptyDatabase(async (url, pool) => {
      // A release before migration 30 (which alters trellis.runs).
      await migrate(pool, { bundle: { ...BUNDLE, migrations: BUNDLE.migrations.slice(0, before30), functions: [] } });
      const reader = await pool.connect();
      try {
        // A long report: it holds trellis.runs in ACCESS SHARE until it ends.
        await reader.query('begin');
        await reader.query('select count(*) from trellis.runs');
        const upgrading = migrate(url, { lockTimeout: '200ms' });
        upgrading.catch(() => undefined);
        // Meanwhile a read of trellis.runs from another session is never queued behind the upgrade for long.
        const waits: number[] = [];
        for (let i = 0; i < 10; i++) {
          const t0 = Date.now();
          await pool.query('select count(*) from trellis.runs');
          waits.push(Date.now() - t0);
          await new Promise((r) => setTimeout(r, 100));
        }
        assert.ok(Math.max(...waits) < 1500, `reads waited at most ${Math.max(...waits)} ms (lockTimeout 200 ms)`);
        // Its message says what waited: the tables it had locked, for at most lockTimeout each time.
        await assert.rejects(upgrading, (e) => e instanceof DatabaseError && e.retryable && /could not take a lock it needs on a trellis table/.test(e.message)
          && /the tables it had locked before were held up .* for at most that long each time/.test(e.message) && !/not held up/.test(e.message));
        assert.equal((await pool.query('select max(id)::int as id from trellis.migrations')).rows[0].id, 29, 'nothing applied');
      } finally {
        await reader.query('rollback');
        reader.release();
      }
      assert.deepEqual((await migrate(url, { lockTimeout: '200ms' })).applied, ALL.slice(before30), 'applied once the report ended');
      await schemaWorks(pool);
    });
  });

  it('lets 8 concurrent callers install an empty database: all succeed and exactly one applies every migration', async () => {
    await withEmptyDatabase(async (url, pool) => {
      const clients = Array.from({ length: 8 }, () => new pg.Client({ connectionString: url }));
      await Promise.all(clients.map((c) => c.connect()));
      try {
        const results = await Promise.all(clients.map((c) => migrate(c)));
        const appliers = results.filter((r) => r.applied.length > 0);
        assert.equal(appliers.length, 1);
        assert.deepEqual(appliers[0]?.applied, ALL);
        assert.equal(appliers[0]?.functionsApplied, true);
        for (const r of results.filter((x) => x.applied.length === 0)) assert.equal(r.functionsApplied, false);
        assert.ok(results.every((r) => r.version === latestMigration()));
      } finally {
        await Promise.all(clients.map((c) => c.end()));
      }
      assert.deepEqual((await pool.query('select id from trellis.migrations order by id')).rows, ALL.map((id) => ({ id })));
      await schemaWorks(pool);
    });
  });

  it('does nothing when called again on an up-to-date database', async () => {
    await withEmptyDatabase(async (url, pool) => {
      assert.deepEqual((await migrate(pool)).applied, ALL);
      const before = await state(pool);
      assert.deepEqual(await migrate(url), { applied: [], functionsApplied: false, newerFunctionsKept: false, newerSchemaKept: false, version: latestMigration() });
      assert.deepEqual(await state(pool), before);
    });
  });

  it('re-applies the functions, and only them, when the installed sql/ differs from the code', async () => {
    await withEmptyDatabase(async (_url, pool) => {
      await migrate(pool);
      await pool.query(`update trellis.schema_info set sql_hash = 'older'`);
      assert.deepEqual(await migrate(pool), { applied: [], functionsApplied: true, newerFunctionsKept: false, newerSchemaKept: false, version: latestMigration() });
      assert.equal((await pool.query('select sql_hash from trellis.schema_info')).rows[0].sql_hash, functionsHash());
    });
  });

  it('runs its transaction again when another transaction changed a function it replaces meanwhile ("tuple concurrently updated"), and succeeds', async () => {
    await withEmptyDatabase(async (url, pool) => {
      await migrate(pool);
      await pool.query(`update trellis.schema_info set sql_hash = 'older'`);
      const other = await pool.connect();
      try {
        // Another transaction updates run_start's catalog row and stays open: the install's
        // CREATE OR REPLACE of it waits for that transaction, and fails once it commits.
        await other.query('begin');
        await other.query(`alter function trellis.run_start(text, jsonb, jsonb) set work_mem = '1MB'`);
        const installing = migrate(url);
        installing.catch(() => undefined);
        await waitFor(async () => (await pool.query(`select count(*)::int as n from pg_stat_activity
                                                     where datname = current_database() and application_name = 'trellis-migrate'
                                                       and wait_event_type = 'Lock'`)).rows[0].n > 0,
          { what: 'the install to wait for the other transaction' });
        await other.query('commit');
        assert.deepEqual(await installing, { applied: [], functionsApplied: true, newerFunctionsKept: false, newerSchemaKept: false, version: latestMigration() });
      } finally {
        await other.query('rollback').catch(() => undefined);
        other.release();
      }
      // The install's own definition won: run_start has the settings sql/ gives it, not the other transaction's.
      const { rows } = await pool.query(`select proconfig from pg_proc where oid = 'trellis.run_start(text, jsonb, jsonb)'::regprocedure`);
      assert.ok(!String(rows[0].proconfig).includes('work_mem'), String(rows[0].proconfig));
      assert.equal((await pool.query('select sql_hash from trellis.schema_info')).rows[0].sql_hash, functionsHash());
      await schemaWorks(pool);
    });
  });

  it('records the revision of sql/ it installed', async () => {
    await withEmptyDatabase(async (_url, pool) => {
      await migrate(pool);
      const { rows } = await pool.query('select sql_revision, sql_hash from trellis.schema_info');
      assert.deepEqual(rows, [{ sql_revision: BUNDLE.sqlRevision, sql_hash: functionsHash() }]);
      assert.ok((BUNDLE.sqlRevision ?? 0) >= 1);
    });
  });

  it('keeps newer functions that a newer replica installed (same migrations, higher sql revision), and replaces older ones', async () => {
    await withEmptyDatabase(async (_url, pool) => {
      await migrate(pool);
      const current = BUNDLE.sqlRevision as number;
      // A newer release changed a function body and recorded its revision.
      const marker = `select 'newer release'::text`;
      await pool.query(`create or replace function trellis.retention(p_workflow text default null) returns interval language sql stable as $$ select null::interval $$`);
      await pool.query(`comment on function trellis.retention(text) is '${marker.replaceAll("'", "''")}'`);
      await pool.query(`update trellis.schema_info set sql_revision = $1, sql_hash = 'newer'`, [current + 1]);
      assert.deepEqual(await migrate(pool), { applied: [], functionsApplied: false, newerFunctionsKept: true, newerSchemaKept: false, version: latestMigration() });
      const comment = async () => (await pool.query(`select obj_description('trellis.retention(text)'::regprocedure) as c`)).rows[0].c;
      assert.equal(await comment(), marker, 'the newer function was kept');
      assert.equal((await pool.query('select sql_revision from trellis.schema_info')).rows[0].sql_revision, current + 1);

      // An older revision in the database is replaced by this code's.
      await pool.query(`update trellis.schema_info set sql_revision = $1, sql_hash = 'older'`, [current - 1]);
      assert.deepEqual(await migrate(pool), { applied: [], functionsApplied: true, newerFunctionsKept: false, newerSchemaKept: false, version: latestMigration() });
      assert.notEqual(await comment(), marker);
      assert.equal((await pool.query('select sql_revision from trellis.schema_info')).rows[0].sql_revision, current);
    });
  });

  it('refuses a database whose trellis schema is newer than the code with SchemaVersionError, changing nothing', async () => {
    await withEmptyDatabase(async (_url, pool) => {
      await migrate(pool);
      const next = latestMigration() + 1;
      await pool.query(`insert into trellis.migrations (id, filename, hash) values ($1, $2, 'sha1:future')`, [
        next,
        `${String(next).padStart(6, '0')}.sql`,
      ]);
      // A release that does not declare this code compatible (its compatible_from is its own migration).
      await pool.query(`update trellis.schema_info set sql_hash = 'older', migration = $1, compatible_from = $1`, [next]);
      const before = await state(pool);
      await assert.rejects(migrate(pool), (error) => error instanceof SchemaVersionError && /newer than this code/.test(error.message));
      await assert.rejects(checkSchema(pool), (error) => error instanceof SchemaVersionError && /newer than this code/.test(error.message));
      assert.deepEqual(await state(pool), before);
    });
  });

  it('keeps a newer schema whose release declared this code compatible (decision 0034): an older replica boots, changing nothing', async () => {
    await withEmptyDatabase(async (url, pool) => {
      await migrate(pool);
      assert.equal((await pool.query('select compatible_from from trellis.schema_info')).rows[0].compatible_from, SCHEMA_COMPATIBLE_FROM);
      const next = latestMigration() + 1;
      await pool.query(`insert into trellis.migrations (id, filename, hash) values ($1, $2, 'sha1:future')`, [next, `${String(next).padStart(6, '0')}.sql`]);
      // The newer release: an additive migration, declared compatible with this code's, and newer functions.
      await pool.query(`update trellis.schema_info set sql_hash = 'newer', migration = $1, compatible_from = $2, sql_revision = sql_revision + 1`,
        [next, latestMigration()]);
      const before = await state(pool);
      assert.deepEqual(await migrate(url), { applied: [], functionsApplied: false, newerFunctionsKept: true, newerSchemaKept: true, version: next });
      assert.deepEqual(await state(pool), before, 'nothing changed');
      await checkSchema(pool);
      await schemaWorks(pool);
      // A migration this code knows that differs from the database's is still refused.
      await pool.query(`update trellis.migrations set hash = 'sha1:other' where id = $1`, [latestMigration()]);
      await assert.rejects(migrate(url), (error) => error instanceof SchemaVersionError && /differs from this code/.test(error.message));
    });
  });

  it('refuses a database whose applied migration hash differs from the code with SchemaVersionError', async () => {
    await withEmptyDatabase(async (_url, pool) => {
      await migrate(pool);
      await pool.query(`update trellis.migrations set hash = 'sha1:tampered' where id = 1`);
      await pool.query(`update trellis.schema_info set sql_hash = 'older'`);
      const before = await state(pool);
      await assert.rejects(migrate(pool), (error) => error instanceof SchemaVersionError && /differs/.test(error.message));
      assert.deepEqual(await state(pool), before);
    });
  });
});

describe('migrate next to graphile-migrate', () => {
  const silent = new Logger(() => () => undefined);

  /** An application's own graphile-migrate folder with one committed migration. */
  async function appMigrations(): Promise<string> {
    const folder = await mkdtemp(join(tmpdir(), 'trellis-gm-'));
    const body = 'create table public.app_things (id integer primary key, name text not null);\n';
    await mkdir(join(folder, 'committed'));
    await writeFile(join(folder, 'committed', '000001.sql'), `--! Previous: -\n--! Hash: ${migrationHash(body, null)}\n\n${body}\n`);
    return folder;
  }

  async function assertBoth(pool: pg.Pool): Promise<void> {
    const app = await pool.query('select filename from graphile_migrate.migrations');
    assert.deepEqual(app.rows, [{ filename: '000001.sql' }]);
    const trellis = await pool.query('select id from trellis.migrations');
    assert.deepEqual(trellis.rows, ALL.map((id) => ({ id })));
    assert.equal((await pool.query(`select to_regclass('public.app_things') as t`)).rows[0].t, 'app_things');
    await checkSchema(pool);
    await schemaWorks(pool);
  }

  for (const order of ['graphile-migrate first', 'trellis first'] as const) {
    it(`keeps both bookkeepings apart (${order}, then the other, then the first again)`, async () => {
      const folder = await appMigrations();
      try {
        await withEmptyDatabase(async (url, pool) => {
          // graphile-migrate keeps a pool per connection string, and exits the process if one
          // of its idle connections dies (as when the database is dropped): close it first.
          const gmUrl = `${url}?application_name=app_migrate`;
          const app = async () => {
            await gmMigrate({ connectionString: gmUrl, migrationsFolder: folder, logger: silent });
            clearAllPools();
          };
          if (order === 'graphile-migrate first') {
            await app();
            assert.deepEqual((await migrate(url)).applied, ALL);
            await app();
          } else {
            assert.deepEqual((await migrate(url)).applied, ALL);
            await app();
            assert.deepEqual((await migrate(url)).applied, []);
          }
          await assertBoth(pool);
          const gmBackends = `select count(*)::int as n from pg_stat_activity where application_name = 'app_migrate'`;
          await waitFor(async () => (await pool.query(gmBackends)).rows[0].n === 0, { what: 'graphile-migrate to disconnect' });
        });
      } finally {
        await rm(folder, { recursive: true, force: true });
      }
    });
  }
});

describe('checkSchema', () => {
  it('throws SchemaVersionError on an empty database and passes after migrate', async () => {
    await withEmptyDatabase(async (_url, pool) => {
      await assert.rejects(checkSchema(pool), SchemaVersionError);
      await migrate(pool);
      await checkSchema(pool);
    });
  });

  it('throws SchemaVersionError when the recorded schema is behind or ahead of the code', async () => {
    await withEmptyDatabase(async (_url, pool) => {
      await migrate(pool);
      await pool.query('update trellis.schema_info set migration = $1', [latestMigration() - 1]);
      await assert.rejects(checkSchema(pool), /behind this code/);
      // Ahead, from a release that does not declare this code compatible; then from one that does.
      await pool.query('update trellis.schema_info set migration = $1, compatible_from = $1', [latestMigration() + 1]);
      await assert.rejects(checkSchema(pool), /newer than this code \(\d+\), and works with code from migration \d+ on/);
      await pool.query('update trellis.schema_info set compatible_from = null');
      await assert.rejects(checkSchema(pool), /newer than this code/);
      await pool.query('update trellis.schema_info set compatible_from = $1', [latestMigration()]);
      await checkSchema(pool);
    });
  });

  it('throws SchemaVersionError when the functions are at an older revision (a release that changed sql/ only), not when newer', async () => {
    await withEmptyDatabase(async (_url, pool) => {
      await migrate(pool);
      await pool.query('update trellis.schema_info set sql_revision = $1', [SCHEMA_SQL_REVISION - 1]);
      await assert.rejects(checkSchema(pool), (e: Error) => e instanceof SchemaVersionError
        && e.message.includes(`functions are at revision ${SCHEMA_SQL_REVISION - 1}, behind this code (${SCHEMA_SQL_REVISION})`));
      await pool.query('update trellis.schema_info set sql_revision = null');
      await assert.rejects(checkSchema(pool), /functions are at revision none, behind this code/);
      await pool.query('update trellis.schema_info set sql_revision = $1', [SCHEMA_SQL_REVISION + 1]);
      await checkSchema(pool);
      // migrate() brings older functions up to this code's revision.
      await pool.query('update trellis.schema_info set sql_revision = $1', [SCHEMA_SQL_REVISION - 1]);
      await migrate(pool);
      await checkSchema(pool);
    });
  });
});

describe('installScript', () => {
  it('refuses with TR001, changing nothing, a database not at the migration the script starts from', async () => {
    await withEmptyDatabase(async (_url, pool) => {
      const refused = async (from: number, at: number) => {
        const client = await pool.connect();
        try {
          const error = await client.query(installScript(from)).then(() => undefined, (e: { code?: string; message: string }) => e);
          assert.equal(error?.code, 'TR001', `--from ${from}`);
          assert.equal(error?.message, `trellis: this script holds the migrations after ${from}, but this database is at migration ${at}: print its script with trellis sql --from ${at}`);
          // (The script's own transaction is left aborted: end it.)
          await client.query('rollback');
        } finally {
          client.release();
        }
      };
      await refused(3, 0);
      assert.equal((await pool.query(`select count(*)::int as n from pg_namespace where nspname = 'trellis'`)).rows[0].n, 0);
      await pool.query(installScript());
      await checkSchema(pool);
      const at = latestMigration();
      const before = (await pool.query('select installed_at::text from trellis.schema_info')).rows[0].installed_at;
      await refused(at - 3, at);
      await refused(0, at);
      assert.equal((await pool.query('select installed_at::text from trellis.schema_info')).rows[0].installed_at, before);
      // The right start applies (nothing left but the functions).
      await pool.query(installScript(at));
      await checkSchema(pool);
    });
  });

  it('installs a working schema when sent as one query, and migrate() then finds nothing to do', async () => {
    await withEmptyDatabase(async (_url, pool) => {
      await pool.query(installScript());
      await checkSchema(pool);
      await schemaWorks(pool);
      assert.deepEqual(await migrate(pool), { applied: [], functionsApplied: false, newerFunctionsKept: false, newerSchemaKept: false, version: latestMigration() });
    });
  });
});

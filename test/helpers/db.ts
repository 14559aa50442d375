/**
 * A fresh database per test file on the test server (see test/run.ts), with
 * the trellis schema installed. Drop it with `close()`.
 */
import { readFileSync } from 'node:fs';
import pg from 'pg';
import { migrate } from '../../src/schema/install.ts';

export interface TestDatabase {
  url: string;
  name: string;
  pool: pg.Pool;
  close(): Promise<void>;
}

export function adminUrl(): string {
  const url = process.env.TRELLIS_TEST_ADMIN_URL ?? process.env.DATABASE_URL;
  if (!url) throw new Error('run tests through `npm test` (it provides a database)');
  return url;
}

export function urlFor(database: string): string {
  const url = new URL(adminUrl());
  url.pathname = `/${database}`;
  return url.toString();
}

/** Create an empty database (no schema). */
export async function createDatabase(prefix = 'trellis_t'): Promise<{ name: string; url: string; drop(): Promise<void> }> {
  const name = `${prefix}_${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const admin = new pg.Client({ connectionString: adminUrl() });
  await admin.connect();
  try {
    await admin.query(`create database ${name}`);
    // A test database, as the test kit marks its own: the virtual clock is allowed here.
    await admin.query(`alter database ${name} set trellis.test_database = 'on'`);
  } finally {
    await admin.end();
  }
  // `npm run test:citus` runs test/sql on a Citus cluster: the database exists on every node, with citus.
  const citus = process.env.TRELLIS_TEST_CITUS === '1' ? await citusNodes(name) : undefined;
  return {
    name,
    url: urlFor(name),
    async drop() {
      await citus?.drop();
      const c = new pg.Client({ connectionString: adminUrl() });
      await c.connect();
      try {
        // On a Citus coordinator too, a distributed commit's prepared part may
        // hold the database for a few seconds (55006, seen once in a full
        // test:citus run after outbox-cursor.test.ts): its daemon resolves it.
        for (let tries = 0; ; tries++) {
          try {
            await c.query(`drop database if exists ${name} with (force)`);
            break;
          } catch (error) {
            if (!citus || (error as { code?: string | undefined }).code !== '55006' || tries >= 40) throw error;
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      } finally {
        await c.end();
      }
    },
  };
}

/** Create database `name` on every worker of the Citus cluster at adminUrl() and join them to it. */
async function citusNodes(name: string): Promise<{ drop(): Promise<void> }> {
  const urls = async () => {
    const admin = new pg.Client({ connectionString: adminUrl() });
    await admin.connect();
    try {
      const { rows } = await admin.query(`select nodename, nodeport from pg_dist_node where groupid > 0 order by nodeport`);
      return rows.map((r) => {
        const url = new URL(adminUrl());
        url.host = `${r.nodename}:${r.nodeport}`;
        return url;
      });
    } finally {
      await admin.end();
    }
  };
  const on = async (url: URL | string, text: string) => {
    const c = new pg.Client({ connectionString: url.toString() });
    await c.connect();
    try {
      await c.query(text);
    } finally {
      await c.end();
    }
  };
  const workers = await urls();
  for (const w of workers) {
    // Trellis's roles on every node before an install grants on shards
    // there: Citus did not always carry a role the coordinator already had
    // to the workers, and an install then failed with 'role "trellis_reader"
    // does not exist' (seen after other files' installs on one cluster).
    await on(w, `do $$ declare r text; begin
      foreach r in array array['trellis_client', 'trellis_worker', 'trellis_reader'] loop
        begin execute format('create role %I nologin', r); exception when duplicate_object or unique_violation then null; end;
      end loop; end $$`);
    await on(w, `create database ${name}`);
    const db = new URL(w);
    db.pathname = `/${name}`;
    await on(db, 'create extension citus');
  }
  const coordinator = new URL(adminUrl());
  await on(urlFor(name), `create extension citus; select citus_set_coordinator_host('${coordinator.hostname}', ${coordinator.port});
    ${workers.map((w) => `select citus_add_node('${w.hostname}', ${w.port});`).join('\n')}`);
  return {
    async drop() {
      for (const w of workers) {
        // FORCE ends the sessions, not a prepared transaction of a distributed commit that Citus
        // has yet to resolve on this node ("is being accessed by other users", 55006, seen in a
        // full test:citus run): its maintenance daemon resolves those within seconds.
        for (let tries = 0; ; tries++) {
          try {
            await on(w, `drop database if exists ${name} with (force)`);
            break;
          } catch (error) {
            if ((error as { code?: string | undefined }).code !== '55006' || tries >= 40) throw error;
            await new Promise((r) => setTimeout(r, 250));
          }
        }
      }
    },
  };
}

/**
 * A pg.Pool for a test: like `new pg.Pool(config)`, with an 'error' listener,
 * so a server stopped or a database dropped right after `pool.end()` (which
 * resolves before its connections have closed) cannot raise an uncaught
 * 57P01 on a connection that was already ending.
 */
export function testPool(config: pg.PoolConfig): pg.Pool {
  const pool = new pg.Pool(config);
  pool.on('error', () => undefined);
  return pool;
}

/**
 * A fresh database with the trellis schema installed and a small pool on it;
 * with `virtualClock`, `trellis.now()` reads the virtual clock from the start
 * (moved by `select trellis.clock_advance(…)`).
 */
export async function freshDatabase(options: { poolSize?: number | undefined; virtualClock?: boolean | undefined } = {}): Promise<TestDatabase> {
  // On a Citus cluster one test file sets up its database at a time: the
  // installs of two files change the cluster's shared catalogs (roles, the
  // extension on the workers) and one failed with "tuple concurrently updated".
  const citus = process.env.TRELLIS_TEST_CITUS === '1';
  const gate = citus ? new pg.Client({ connectionString: adminUrl() }) : undefined;
  await gate?.connect();
  await gate?.query('select pg_advisory_lock(1414679636, 17)');
  let db: Awaited<ReturnType<typeof createDatabase>>;
  let pool: pg.Pool;
  try {
    db = await createDatabase();
    pool = testPool({ connectionString: db.url, max: options.poolSize ?? 8 });
    await migrate(pool);
    if (citus) {
      await pool.query(readFileSync(new URL('../citus/distribute.sql', import.meta.url), 'utf8'));
      // New sessions, which take the database settings citus_distribute made.
      await pool.end();
      pool = testPool({ connectionString: db.url, max: options.poolSize ?? 8 });
    }
  } finally {
    await gate?.end();
  }
  if (options.virtualClock) await useVirtualClock(pool);
  return {
    url: db.url,
    name: db.name,
    pool,
    async close() {
      await pool.end();
      await db.drop();
    },
  };
}

/** Switch a test database to the virtual clock (the session must allow it, so one transaction). */
async function useVirtualClock(pool: pg.Pool): Promise<void> {
  const c = await pool.connect();
  try {
    await c.query('begin');
    await c.query(`set local trellis.virtual_clock = 'allowed'`);
    await c.query('select trellis.clock_use_virtual()');
    await c.query('commit');
  } finally {
    c.release();
  }
}

/**
 * A fresh database per test file on the test server (see test/run.ts), with
 * the trellis schema installed. Drop it with `close()`.
 */
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
  return {
    name,
    url: urlFor(name),
    async drop() {
      const c = new pg.Client({ connectionString: adminUrl() });
      await c.connect();
      try {
        await c.query(`drop database if exists ${name} with (force)`);
      } finally {
        await c.end();
      }
    },
  };
}

/** A fresh database with the trellis schema installed and a small pool on it. */
export async function freshDatabase(options: { poolSize?: number } = {}): Promise<TestDatabase> {
  const db = await createDatabase();
  const pool = new pg.Pool({ connectionString: db.url, max: options.poolSize ?? 8 });
  pool.on('error', () => undefined);
  await migrate(pool);
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

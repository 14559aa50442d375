/**
 * The database an example runs against: DATABASE_URL when set, otherwise a
 * throwaway embedded PostgreSQL (stopped again by `stop()`). Either way the
 * trellis schema is installed first; migrate() is idempotent, so running an
 * example twice against the same DATABASE_URL is fine.
 */
import { migrate } from '../../src/index.ts';
import { startEmbeddedPostgres } from '../../src/testing/embedded-postgres.ts';

export interface ExampleDatabase {
  /** Connection string of a database with the trellis schema installed. */
  url: string;
  /** Stop the embedded server (a no-op for DATABASE_URL). */
  stop(): Promise<void>;
}

/**
 * @example
 * const database = await exampleDatabase();
 * try { console.log(database.url); } finally { await database.stop(); }
 */
export async function exampleDatabase(): Promise<ExampleDatabase> {
  const fromEnv = process.env.DATABASE_URL;
  let database: ExampleDatabase;
  if (fromEnv) {
    database = { url: fromEnv, stop: async () => {} };
  } else {
    const server = await startEmbeddedPostgres();
    database = { url: server.connectionString, stop: server.stop };
  }
  try {
    await migrate(database.url);
  } catch (error) {
    await database.stop();
    throw error;
  }
  return database;
}

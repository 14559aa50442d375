/**
 * The fixtures most test files share: a fresh database (see db.ts), alone
 * (useFreshDatabase) or with a client on its pool (useDatabase), opened
 * before the tests of the file (or of the describe() it is called in) and
 * closed after them.
 */
import { after, before } from 'node:test';
import { createClient, type Client } from '../../src/client/client.ts';
import type { ClientOptions } from '../../src/client/options.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { freshDatabase, type TestDatabase } from './db.ts';

export interface DatabaseFixture {
  readonly db: TestDatabase;
  /** A client on `db.pool` with the silent logger. */
  readonly client: Client;
}

export interface DatabaseFixtureOptions {
  poolSize?: number | undefined;
  virtualClock?: boolean | undefined;
  /** More options for the client (its pool is always `db.pool`). */
  client?: Omit<ClientOptions, 'pool' | 'connectionString'> | undefined;
  /**
   * More set-up that needs the database, run in the same before() once `db`
   * and `client` exist. (A second top-level before() would not wait for
   * this one: Node 20 starts top-level before() hooks at once, together.)
   */
  setUp?: ((fixture: DatabaseFixture) => Promise<unknown>) | undefined;
}

/** What useFreshDatabase gives a test file: the database alone. */
export interface FreshDatabaseFixture {
  readonly db: TestDatabase;
}

/**
 * Register a before() that opens a fresh database (then runs `setUp` on it,
 * in the same hook) and an after() that closes it: for tests of the SQL
 * functions, which need no client.
 *
 * @example
 * const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1"}]')`) });
 * it('counts no runs', async () => assert.equal((await fx.db.pool.query('select * from trellis.runs')).rows.length, 0));
 */
export function useFreshDatabase(options: { poolSize?: number | undefined; virtualClock?: boolean | undefined; setUp?: ((db: TestDatabase) => Promise<unknown>) | undefined } = {}): FreshDatabaseFixture {
  let db: TestDatabase | undefined;
  const fixture: FreshDatabaseFixture = {
    get db() {
      if (!db) throw new Error('the database fixture is used before its before() ran');
      return db;
    },
  };
  before(async () => {
    db = await freshDatabase({ poolSize: options.poolSize, virtualClock: options.virtualClock });
    await options.setUp?.(db);
  });
  after(() => db?.close());
  return fixture;
}

/**
 * Register a before() that opens a fresh database and a client on it, and an
 * after() that closes the client, then the database. Call it at the top of a
 * file or of a describe(); read `db` and `client` inside tests and hooks.
 * after() hooks run one after another in the order they were registered: one
 * registered before this call runs before the client and database close.
 *
 * @example
 * const fx = useDatabase({ client: { handoff: false } });
 * it('starts a run', async () => { await fx.client.start(echo, { v: 1 }); });
 */
export function useDatabase(options: DatabaseFixtureOptions = {}): DatabaseFixture {
  let client: Client | undefined;
  // after() hooks run in the order they are registered: the client closes before the database.
  after(async () => {
    await client?.close();
  });
  const base = useFreshDatabase({
    poolSize: options.poolSize,
    virtualClock: options.virtualClock,
    setUp: async (db) => {
      client = createClient({ logger: silentLogger, ...options.client, pool: db.pool });
      await options.setUp?.(fixture);
    },
  });
  const fixture: DatabaseFixture = {
    get db() {
      return base.db;
    },
    get client() {
      if (!client) throw new Error('the database fixture is used before its before() ran');
      return client;
    },
  };
  return fixture;
}

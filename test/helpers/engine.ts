/** A worker and a client on a test database, stopped together. */
import { after } from 'node:test';
import { createClient, type Client } from '../../src/client/client.ts';
import { createWorker, type Worker, type WorkerOptions } from '../../src/worker/worker.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { useFreshDatabase } from './database-fixture.ts';
import type { TestDatabase } from './db.ts';

export interface Engine {
  worker: Worker;
  client: Client;
  stop(): Promise<void>;
}

export async function startEngine(db: TestDatabase, options: Omit<WorkerOptions, 'pool'>): Promise<Engine> {
  const worker = createWorker({ pool: db.pool, pollInterval: 200, logger: silentLogger, ...options });
  const client = createClient({ pool: db.pool, logger: silentLogger, resultPollInterval: 1000 });
  await worker.start();
  return {
    worker,
    client,
    async stop() {
      await worker.stop({ timeout: 2000 });
      await client.close();
    },
  };
}

/** What useEngine gives a test file. */
export interface EngineFixture {
  readonly db: TestDatabase;
  readonly engine: Engine;
}

/**
 * Register a before() that opens a fresh database, runs `setUp` on it and
 * starts an engine there, and an after() that stops the engine, then closes
 * the database.
 *
 * @example
 * const fx = useEngine({ workflows: [greet] });
 * it('greets', async () => assert.equal(await (await fx.engine.client.start(greet, { name: 'a' })).result(), 'hi a'));
 */
export function useEngine(options: Omit<WorkerOptions, 'pool'>, { setUp }: { setUp?: ((db: TestDatabase) => Promise<unknown>) | undefined } = {}): EngineFixture {
  let engine: Engine | undefined;
  // after() hooks run in the order they are registered: the engine stops before the database closes.
  after(async () => {
    await engine?.stop();
  });
  const base = useFreshDatabase({
    setUp: async (db) => {
      await setUp?.(db);
      engine = await startEngine(db, options);
    },
  });
  return {
    get db() {
      return base.db;
    },
    get engine() {
      if (!engine) throw new Error('the engine fixture is used before its before() ran');
      return engine;
    },
  };
}

/** A promise with its resolver, for steps that wait on the test. */
export function deferred<T = void>(): { promise: Promise<T>; resolve: (v: T) => void; reject: (e: unknown) => void } {
  let resolve!: (v: T) => void;
  let reject!: (e: unknown) => void;
  const promise = new Promise<T>((res, rej) => {
    resolve = res;
    reject = rej;
  });
  return { promise, resolve, reject };
}

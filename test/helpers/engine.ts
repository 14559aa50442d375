/** A worker and a client on a test database, stopped together. */
import { createClient, type Client } from '../../src/client/client.ts';
import { createWorker, type Worker, type WorkerOptions } from '../../src/worker/worker.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
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

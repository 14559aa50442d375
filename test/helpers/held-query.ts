/**
 * A pg.Pool whose connections hold back one named prepared statement of
 * Trellis (e.g. 'trellis_run_claim') while a test says so: a real statement
 * on a real server, sent late (`when: 'send'`) or answered late (`when:
 * 'answer'`: it has run, its snapshot is taken, the caller does not know
 * yet). `arm()` holds the next one (sent after it; answered after it and
 * liked by `answerIf`); `reached` resolves when it is held, `release()` lets
 * it go.
 */
import pg from 'pg';
import { deferred } from './engine.ts';

export interface HeldQuery {
  pool: pg.Pool;
  /** Hold the next execution of the statement. */
  arm(): void;
  /** Resolves once the armed execution is held (rejects after 20 s). */
  reached(): Promise<void>;
  release(): void;
}

export function heldQueryPool(url: string, name: string, when: 'send' | 'answer',
  answerIf: (result: pg.QueryResult) => boolean = () => true): HeldQuery {
  let armed = false;
  let reached = deferred<void>();
  let go = deferred<void>();
  class Held extends pg.Client {
    override query(config: any, values?: any, callback?: any): any {
      if (typeof config !== 'object' || config?.name !== name) return super.query(config, values, callback);
      if (when === 'send' && !armed) return super.query(config, values, callback);
      const cb = typeof values === 'function' ? values : callback;
      const args = typeof values === 'function' ? undefined : values;
      let answered: Promise<unknown>;
      if (when === 'send') {
        armed = false;
        reached.resolve();
        answered = go.promise.then(() => super.query(config, args));
      } else {
        // Decided when the answer comes (an execution sent before arm() and
        // answered after it is held too), and only for an answer answerIf likes.
        answered = super.query(config, args).then(async (result: pg.QueryResult) => {
          if (!armed || !answerIf(result)) return result;
          armed = false;
          reached.resolve();
          await go.promise;
          return result;
        });
      }
      if (typeof cb !== 'function') return answered;
      answered.then((result: unknown) => cb(null, result), (error: unknown) => cb(error));
      return undefined;
    }
  }
  const pool = new pg.Pool({ connectionString: url, max: 4, Client: Held });
  pool.on('error', () => undefined);
  return {
    pool,
    arm: () => {
      armed = true;
      reached = deferred<void>();
      go = deferred<void>();
    },
    reached: () => {
      // Bounded: a statement that never comes fails the test, not hangs it.
      let timer: NodeJS.Timeout | undefined;
      const bound = new Promise<never>((_, reject) => {
        timer = setTimeout(() => reject(new Error(`timed out after 20000 ms waiting for ${name} to be held`)), 20_000);
      });
      return Promise.race([reached.promise, bound]).finally(() => clearTimeout(timer));
    },
    release: () => go.resolve(),
  };
}

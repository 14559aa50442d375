/**
 * The fixture most fault scenarios share: a fresh database and a harness
 * over it, set up before the file's tests and closed after them.
 */
import { after, before } from 'node:test';
import { freshDatabase, type TestDatabase } from '../../helpers/db.ts';
import { Harness } from './harness.ts';

export interface HarnessFixture {
  /** Set by the file's `before` hook. */
  db: TestDatabase;
  h: Harness;
}

/** Register before/after hooks that open a fresh database and a harness with these worker `env` settings. */
export function useHarness(env: Record<string, string>): HarnessFixture {
  const fx = {} as HarnessFixture;
  before(async () => {
    fx.db = await freshDatabase();
    fx.h = new Harness(fx.db.url, fx.db.pool, { env });
    await fx.h.setUp();
  });
  after(async () => {
    await fx.h?.close();
    await fx.db?.close();
  });
  return fx;
}

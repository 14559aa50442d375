/**
 * Named prepared statements behind a connection pooler. A pooler in
 * transaction mode that cannot keep them (PgBouncer before 1.21, or 1.21+
 * without `max_prepared_statements`) refuses a named statement once a
 * transaction lands on another server connection: SQLSTATE 26000
 * ("prepared statement does not exist") or 42P05 ("already exists"), both
 * before anything was executed.
 *
 * `preparedStatements: 'auto'` (the default) prepares, and on the first
 * such refusal switches this worker or client to unnamed statements for
 * good and sends that statement again unnamed. `true` never switches: the
 * refusal is a DatabaseError that says what to change. `false` never
 * prepares. See docs/pgbouncer.md.
 */
import type { Pool, QueryConfig, QueryResult } from './pg.ts';
import { DatabaseError, ValidationError } from '../errors.ts';
import type { Logger } from '../protocol/logger.ts';
import { type Queryable, unprepared, withQuery } from './queryable.ts';

/**
 * The `preparedStatements` option of createWorker and createClient.
 *
 * @example
 * createClient({ connectionString: process.env.PGBOUNCER_URL, preparedStatements: 'auto' });
 */
export type PreparedStatementsMode = boolean | 'auto';

const REFUSED = new Set(['26000', '42P05']);

/** A driver error that says a named statement was refused by the connection (a pooler in the way). */
export function isPreparedRefusal(error: unknown): boolean {
  const code = (error as { code?: unknown })?.code;
  return typeof code === 'string' && REFUSED.has(code);
}

/** The error a refused named statement becomes: it says what to change. */
export function preparedRefusedError(name: string, error: unknown): DatabaseError {
  const code = (error as { code?: string | undefined }).code;
  return new DatabaseError(
    `the connection refused prepared statement ${name} (${(error as Error).message}): a pooler in transaction mode ` +
      'that cannot keep prepared statements is in the way (PgBouncer before 1.21, or without max_prepared_statements). ' +
      "Set preparedStatements: false (or 'auto') on the worker and client, or max_prepared_statements in pgbouncer.ini (1.21+)",
    { cause: error, details: { sqlstate: code, preparedStatements: true } },
  );
}

export function checkPreparedMode(value: unknown): PreparedStatementsMode {
  if (value === undefined) return 'auto';
  if (value === true || value === false || value === 'auto') return value;
  throw new ValidationError('preparedStatements must be true, false or "auto"');
}

/**
 * The pool as engine statements use it. With 'auto', a proxy of the pool
 * (still a pg.Pool to `instanceof`, so names are used) that falls back to
 * unnamed statements on the first refusal.
 */
export class PreparedStatements {
  private off: boolean;
  readonly pool: Queryable;

  constructor(target: Pool, private readonly mode: PreparedStatementsMode, private readonly log: Logger) {
    this.off = mode === false;
    if (mode === false) {
      this.pool = unprepared(target);
    } else if (mode === true) {
      this.pool = target;
    } else {
      this.pool = withQuery(target, (_own, config, values) => this.query(target, config, values as unknown[] | undefined));
    }
  }

  /** Whether named statements are off (configured, or switched off by a refusal). */
  get disabled(): boolean {
    return this.off;
  }

  /**
   * A caller's transaction as engine statements use it: unnamed once
   * statements are off. With 'auto', a refusal inside it switches them off
   * (it cannot be sent again: the transaction is aborted), so the caller's
   * next transaction uses unnamed statements; the refusal itself is the
   * DatabaseError that says so.
   */
  within(tx: Queryable): Queryable {
    if (this.off) return unprepared(tx);
    if (this.mode !== 'auto') return tx;
    return withQuery(tx, async (own, config, values) => {
      try {
        return await own(config, values);
      } catch (error) {
        const name = typeof config === 'object' && config !== null && 'name' in config ? String((config as { name: unknown }).name) : undefined;
        if (name === undefined || !isPreparedRefusal(error)) throw error;
        this.switchOff(name, error);
        throw new DatabaseError(`the connection refused prepared statement ${name} inside your transaction (${(error as Error).message}): ` +
          'a pooler in transaction mode that cannot keep prepared statements is in the way. This client uses unnamed statements from now on: run the transaction again',
        { cause: error, retryable: true, details: { sqlstate: (error as { code?: string | undefined }).code, preparedStatements: 'auto' } });
      }
    });
  }

  /** The first refusal under 'auto': unnamed statements from now on, said once. */
  private switchOff(statement: string, error: unknown): void {
    if (this.off) return;
    this.off = true;
    this.log.warn('prepared statements refused by the connection (a pooler in transaction mode?): using unnamed statements from now on', {
      statement, error: String(error),
    });
  }

  private async query(target: Pool, config: unknown, values?: unknown[]): Promise<QueryResult> {
    const named = typeof config === 'object' && config !== null && 'name' in config
      ? (config as { name: string; text: string; values?: unknown[] | undefined }) : undefined;
    if (!named) return target.query(config as string, values);
    if (this.off) return target.query(named.text, named.values);
    try {
      return await target.query(named as QueryConfig);
    } catch (error) {
      if (!isPreparedRefusal(error)) throw error;
      this.switchOff(named.name, error);
      return target.query(named.text, named.values);
    }
  }
}

/**
 * Where the client's reads go when it has a `readPool` (a streaming
 * standby): list, get, history, queue stats, events, schedules and roles go
 * to the standby; writes, `result()` and its polls, and every read this
 * client makes before the standby has replayed its own last write go to the
 * primary (read your writes). See docs/scaling.md, "Read replicas".
 *
 * Read your writes: each write marks the client dirty; the next read asks
 * the primary for its WAL write position once (`pg_current_wal_lsn()`: a
 * commit has been written there when it returns, unless the primary runs
 * with `synchronous_commit = off`) and reads the primary until the
 * standby's replay position (`pg_last_wal_replay_lsn()`) has reached it. A
 * server that is not a physical standby (no replay position) counts as
 * caught up.
 */
import { Kysely, PostgresDialect } from 'kysely';
import type { Pool } from '../db/pg.ts';
import { guardedPool, ownPool, type ResolvedTimeouts } from '../db/connection.ts';
import { type Queryable, queryRows, withQuery } from '../db/queryable.ts';
import type { TrellisTables } from '../db/tables.ts';
import { ValidationError } from '../errors.ts';
import type { Logger } from '../protocol/logger.ts';
import { PreparedStatements, type PreparedStatementsMode } from '../db/prepared.ts';

/**
 * Which server a read goes to: `'replica'` (the default: the read pool when
 * the client has one, else the primary) or `'primary'` (never stale).
 *
 * @example
 * const r = await client.get(run.id, { consistency: 'primary' });
 */
export type Consistency = 'replica' | 'primary';

/**
 * Options of a read that a `readPool` may serve.
 *
 * @example
 * const fresh = await client.history(run.id, { consistency: 'primary' });
 */
export interface ReadOptions {
  /**
   * `'primary'` reads the primary even with a `readPool` (default
   * `'replica'`: the read pool, unless this client's own last write has
   * not reached it yet).
   *
   * @example
   * const { runs } = await client.list({ status: 'failed', consistency: 'primary' });
   */
  consistency?: Consistency | undefined;
}

/** One side of the routing: a pool as engine statements and as Kysely use it. */
export interface ReadTarget {
  readonly query: Queryable;
  readonly db: Kysely<TrellisTables>;
  readonly replica: boolean;
}

/** An LSN 'X/Y' as a number that orders like it. */
function lsnValue(lsn: string): bigint {
  const [hi, lo] = lsn.split('/');
  return (BigInt(`0x${hi}`) << 32n) + BigInt(`0x${lo}`);
}

function checkConsistency(value: unknown): Consistency {
  if (value === undefined || value === 'replica' || value === 'primary') return value ?? 'replica';
  throw new ValidationError(`consistency must be 'replica' or 'primary', not ${JSON.stringify(String(value).slice(0, 40))}`);
}

/** The routing of one client's reads between its primary and its read pool. */
export class ReadRouter {
  readonly primary: ReadTarget;
  private readonly replica: ReadTarget | undefined;
  private readonly replicaPool: Pool | undefined;
  private readonly ownsReplica: boolean;
  /** A write finished since the last LSN mark was taken. */
  private dirty = false;
  /** The primary's WAL position the standby must replay before it serves this client. */
  private mark: bigint | undefined;
  /**
   * The mark being taken: every read that starts meanwhile waits for it (a
   * read in parallel with the one that took it went to the standby before
   * its mark was known, and missed the client's own write).
   */
  private marking: Promise<void> | undefined;
  /** The read pool's server was seen replaying (a standby); a promoted one is warned of once. */
  private sawStandby = false;
  private warnedPromoted = false;

  /**
   * @param ready The client's schema check (once, then settled), made
   *   through the server a read goes to: every read waits for it, so a
   *   schema behind the client's code is a SchemaVersionError, not a
   *   missing column (and reads from a standby need no primary).
   */
  constructor(primary: Queryable, primaryDb: Kysely<TrellisTables>, readPool: Pool | string | undefined,
    timeouts: ResolvedTimeouts, private readonly log: Logger, preparedStatements: PreparedStatementsMode = 'auto',
    private readonly ready: (through: Queryable) => Promise<unknown> = () => Promise.resolve()) {
    this.primary = { query: primary, db: primaryDb, replica: false };
    if (readPool === undefined) {
      this.ownsReplica = false;
      return;
    }
    if (typeof readPool === 'string') {
      if (!readPool) throw new ValidationError('readPool must be a pg Pool or a non-empty connection string');
      this.replicaPool = ownPool(readPool, 'trellis-client-read', timeouts);
      this.replicaPool.on('error', (error) => log.warn('idle read pool client error', { error: String(error) }));
      this.ownsReplica = true;
    } else if (typeof readPool === 'object' && readPool !== null && typeof readPool.query === 'function') {
      this.replicaPool = readPool;
      this.ownsReplica = false;
    } else {
      throw new ValidationError('readPool must be a pg Pool or a connection string');
    }
    // The client's preparedStatements hold on the read pool too: a standby behind PgBouncer in
    // transaction mode refuses named statements as the primary's pooler does.
    const query = new PreparedStatements(this.replicaPool, preparedStatements, log).pool;
    this.replica = { query, db: new Kysely<TrellisTables>({ dialect: new PostgresDialect({ pool: guardedPool(this.replicaPool) as never }) }), replica: true };
  }

  /**
   * `db` (the primary, or a caller's transaction on it) marking the client
   * dirty after each statement: its writes. Still the same pool or client to
   * `instanceof`, so named prepared statements keep working. Without a read
   * pool, `db` itself.
   */
  writer<Q extends Queryable>(db: Q): Q {
    if (!this.replica) return db;
    return withQuery(db, async (own, ...args) => {
      try {
        return await own(...args);
      } finally {
        this.wrote();
      }
    });
  }

  /** Note a write: reads wait for the standby to replay it (or go to the primary). */
  wrote(): void {
    if (this.replica) this.dirty = true;
  }

  /** Where a read with `options` goes now. */
  async target(options: ReadOptions | undefined): Promise<ReadTarget> {
    const target = await this.pick(options);
    await this.ready(target.query);
    return target;
  }

  private async pick(options: ReadOptions | undefined): Promise<ReadTarget> {
    const consistency = checkConsistency(options?.consistency);
    if (!this.replica || consistency === 'primary') return this.primary;
    if (this.dirty) {
      // Cleared before asking: a write that ends meanwhile marks it again.
      this.dirty = false;
      const marking: Promise<void> = this.takeMark().finally(() => {
        if (this.marking === marking) this.marking = undefined;
      });
      this.marking = marking;
    }
    if (this.marking) await this.marking;
    const mark = this.mark;
    if (mark === undefined) return this.replica;
    const [row] = await queryRows<{ lsn: string | null; standby: boolean }>(this.replica.query,
      'select pg_catalog.pg_last_wal_replay_lsn()::text as lsn, pg_catalog.pg_is_in_recovery() as standby');
    this.notePromotion(row?.standby);
    if (row?.lsn != null && lsnValue(row.lsn) < mark) return this.primary;
    if (this.mark === mark) this.mark = undefined;
    return this.replica;
  }

  /** The primary's WAL position now, as the mark; a failure marks the client dirty again (the next read asks again). */
  private async takeMark(): Promise<void> {
    try {
      const [row] = await queryRows<{ lsn: string }>(this.primary.query, 'select pg_catalog.pg_current_wal_lsn()::text as lsn');
      const lsn = lsnValue(row!.lsn);
      if (this.mark === undefined || lsn > this.mark) this.mark = lsn;
    } catch (error) {
      this.dirty = true;
      throw error;
    }
  }

  /**
   * A read pool that was a standby and is not any more was promoted (a
   * failover): it no longer receives the primary's writes, and a client
   * that does not write cannot tell. Said once; the reads go on there.
   */
  private notePromotion(standby: boolean | undefined): void {
    if (standby === true) this.sawStandby = true;
    else if (standby === false && this.sawStandby && !this.warnedPromoted) {
      this.warnedPromoted = true;
      this.log.warn('the read pool\'s server is no longer a standby (promoted?): reads there miss the primary\'s writes; point readPool at a standby of the primary', {});
    }
  }

  /**
   * Read through `read`; when the standby served it and `missing` says the
   * answer lacks what the caller knows exists (a run by id), read the primary.
   */
  async read<T>(options: ReadOptions | undefined, read: (t: ReadTarget) => Promise<T>, missing?: (value: T) => boolean): Promise<T> {
    const target = await this.target(options);
    const value = await read(target);
    return target.replica && missing?.(value) ? read(this.primary) : value;
  }

  /** A Queryable that routes each statement as a read (for readers that take one, like events and schedules). */
  reader(options?: ReadOptions): Queryable {
    checkConsistency(options?.consistency);
    return { query: async <R>(text: string, values?: unknown[]) => (await this.target(options)).query.query<R>(text, values) };
  }

  /**
   * A Queryable that picks its server at its first statement and keeps it
   * (an events iterator: its cursor must not move between servers).
   */
  pinned(options?: ReadOptions): Queryable {
    checkConsistency(options?.consistency);
    let target: Promise<ReadTarget> | undefined;
    return { query: async <R>(text: string, values?: unknown[]) => (await (target ??= this.target(options))).query.query<R>(text, values) };
  }

  /** Close the read pool if the client opened it. */
  async close(): Promise<void> {
    if (this.ownsReplica) await this.replicaPool?.end();
  }
}

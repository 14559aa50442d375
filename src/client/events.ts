/**
 * Reading the outbox from TypeScript: `client.events()` (an async iterator
 * over trellis.events_read) and durable named consumers (position kept in
 * Postgres, moved only by `ack`).
 */
import { consumerAck, consumerCreate, consumerDrop, consumerRead, type EventFilter, eventsRead, type RunEvent } from '../db/events.ts';
import { type Executor, type Queryable, toQueryable } from '../db/queryable.ts';
import { isTransient, transientDelay } from '../db/transient.ts';
import { quoteValue, ValidationError } from '../errors.ts';
import { type Duration, toMs } from '../protocol/duration.ts';
import type { Logger } from '../protocol/logger.ts';
import { assertName } from '../workflow/names.ts';

/**
 * Options of `client.events()`.
 *
 * @example
 * client.events({ after: savedCursor, kinds: ['completed'], follow: false, batchSize: 500 });
 */
export interface EventsOptions extends EventFilter {
  /** Resume after this cursor (an event's `cursor`); default: from the oldest event kept. */
  after?: string | undefined;
  /** Events per read (1-10000, default 100). */
  batchSize?: number | undefined;
  /**
   * Keep waiting for new events when caught up (default true); false ends the
   * iteration there. While following, a read that fails with a transient
   * fault (a lost connection, a server restarting) is made again with a
   * capped backoff (50 ms to 1 s) from the same cursor, so the iteration
   * outlives it; without following, the third failure in a row is thrown.
   */
  follow?: boolean | undefined;
  /** How often a caught-up reader reads again (default 500 ms). */
  pollInterval?: Duration | undefined;
  /** Ends the iteration. */
  signal?: AbortSignal | undefined;
}

function checkBatch(size: number | undefined): number {
  const n = size ?? 100;
  if (!Number.isInteger(n) || n < 1 || n > 10_000) throw new ValidationError('events batchSize must be an integer from 1 to 10000');
  return n;
}

/** Resolve after `ms`, or at once when `signal` aborts. */
function pause(ms: number, signal: AbortSignal | undefined): Promise<void> {
  return new Promise((resolve) => {
    if (signal?.aborted) return resolve();
    const done = () => {
      clearTimeout(timer);
      signal?.removeEventListener('abort', done);
      resolve();
    };
    const timer = setTimeout(done, ms);
    signal?.addEventListener('abort', done, { once: true });
  });
}

/** Reads a non-following iteration makes of one batch before it throws a transient fault. */
const FINITE_ATTEMPTS = 3;

/**
 * Read batches through `read(after)` until aborted (or caught up without
 * `follow`). A transient fault of a read is retried from the same cursor
 * (see `EventsOptions.follow`); anything else is thrown.
 */
async function* iterate(read: (after: string | undefined) => Promise<RunEvent[]>, start: string | undefined,
  options: EventsOptions, batch: number, log?: Logger): AsyncGenerator<RunEvent> {
  const poll = toMs(options.pollInterval ?? 500, 'pollInterval');
  let after = start;
  while (!options.signal?.aborted) {
    let events: RunEvent[];
    for (let attempt = 1; ; attempt++) {
      try {
        events = await read(after);
        break;
      } catch (error) {
        if (!isTransient(error) || (options.follow === false && attempt >= FINITE_ATTEMPTS)) throw error;
        if (attempt === 1) log?.warn('events read failed; reading again', { error: String(error) });
        await pause(transientDelay(attempt), options.signal);
        if (options.signal?.aborted) return;
      }
    }
    for (const event of events) {
      if (options.signal?.aborted) return;
      yield event;
      after = event.cursor;
    }
    if (events.length < batch) {
      if (options.follow === false) return;
      await pause(poll, options.signal);
    }
  }
}

/** The events after `options.after`, in commit-safe order (see docs/events.md). */
export function readEvents(db: Queryable, options: EventsOptions = {}, log?: Logger): AsyncGenerator<RunEvent> {
  const batch = checkBatch(options.batchSize);
  if (options.after !== undefined && typeof options.after !== 'string') throw new ValidationError('events after must be a cursor string');
  return iterate((after) => eventsRead(db, after ?? null, batch, options), options.after, options, batch, log);
}

/**
 * Options of `client.eventConsumer()`.
 *
 * @example
 * await client.eventConsumer('billing', { from: 'now', workflows: ['order'] });
 */
export interface ConsumerOptions extends EventFilter {
  /** Where a new consumer starts: 'start' (default: every event kept), 'now', or a cursor. An existing one keeps its position. */
  from?: 'start' | 'now' | string | undefined;
}

/**
 * A durable named consumer: its position lives in trellis.event_consumers
 * and moves only when you `ack` an event, so a consumer that dies before
 * acknowledging reads the event again (at least once).
 *
 * @example
 * const mailer = await client.eventConsumer('mailer', { kinds: ['completed'] });
 * for await (const event of mailer.events({ signal })) {
 *   await sendReceipt(event.runId);
 *   await mailer.ack(event);
 * }
 */
export class EventConsumer {
  constructor(private readonly db: Queryable, readonly name: string, private readonly filter: EventFilter,
    private readonly log?: Logger) {}

  /** Create the consumer if it does not exist yet (`from`), and return it. */
  static async open(db: Queryable, name: string, options: ConsumerOptions = {}, log?: Logger): Promise<EventConsumer> {
    assertName(name, 'consumer');
    const filter = { workflows: options.workflows, kinds: options.kinds, runId: options.runId };
    // The filter is checked (a read of one event) before the consumer is made: a bad one creates nothing.
    await eventsRead(db, null, 1, filter);
    await consumerCreate(db, name, options.from ?? 'start');
    return new EventConsumer(db, name, filter, log);
  }

  /** The next `limit` events after the acknowledged position (reading does not move it). */
  read(limit = 100): Promise<RunEvent[]> {
    return consumerRead(this.db, this.name, checkBatch(limit), this.filter);
  }

  /**
   * Iterate from the acknowledged position. The iterator moves on by itself;
   * the stored position moves only with `ack`, so after a crash the next
   * iteration starts at the first event not acknowledged. A transient fault
   * of a read is retried as `client.events()` retries it (`follow`).
   */
  events(options: Pick<EventsOptions, 'batchSize' | 'follow' | 'pollInterval' | 'signal'> = {}): AsyncGenerator<RunEvent> {
    const batch = checkBatch(options.batchSize);
    let first = true;
    return iterate(async (after) => {
      if (first || after === undefined) {
        first = false;
        return consumerRead(this.db, this.name, batch, this.filter);
      }
      return eventsRead(this.db, after, batch, this.filter);
    }, undefined, options, batch, this.log);
  }

  /**
   * Acknowledge `event` and every event before it: the position moves there
   * (never back). With `tx`, in the caller's transaction: the position moves
   * exactly when the caller's own writes commit, so each event's effect is
   * made once (exactly-once processing into the same database).
   *
   * @example
   * await pgClient.query('begin');
   * await pgClient.query('insert into receipts (run_id) values ($1)', [event.runId]);
   * await consumer.ack(event, { tx: pgClient });
   * await pgClient.query('commit');
   */
  async ack(event: RunEvent | string, options: { tx?: Executor | undefined } = {}): Promise<string> {
    const cursor = typeof event === 'string' ? event : (event as { cursor?: unknown } | null)?.cursor;
    if (typeof cursor !== 'string') throw new ValidationError(`ack takes an event or its cursor, not ${quoteValue(event)}`);
    return consumerAck(options.tx ? toQueryable(options.tx) : this.db, this.name, cursor);
  }

  /** Remove the consumer (its position no longer holds events back from purging). */
  drop(): Promise<boolean> {
    return consumerDrop(this.db, this.name);
  }
}

/**
 * The client side of a state machine: trigger runs by foreign id, deliver
 * callbacks, await a status, read the current status and object, delete a
 * run's data. Every write goes through an engine function (sql/730_models.sql).
 */
import type { Client } from '../client/client.ts';
import {
  machineCallback, machineDataDelete, machineReached, machineRunGet, machineRunLatest, machineTriggerCheck, machineTriggerKeyed, type MachineRunRow,
} from '../db/models.ts';
import { type Executor, fromKysely, toQueryable, type Queryable } from '../db/queryable.ts';
import { toTrellisError } from '../db/errors.ts';
import { IllegalTransitionError, NotFoundError, TimeoutError, ValidationError, WorkflowFailedError } from '../errors.ts';
import { encodeJson } from '../protocol/serialize.ts';
import { type Duration, toMs } from '../protocol/duration.ts';
import { assertName } from '../workflow/names.ts';
import { validate } from '../workflow/standard-schema.ts';
import type { StateMachine } from './define.ts';

/**
 * A machine run's current status and object, as SQL sees it (view trellis.machine_runs).
 *
 * @example
 * const { status, object, runStatus } = await signups.get('user-42');
 */
export interface MachineRecord<S extends string = string, T = unknown> {
  runId: string;
  foreignId: string;
  /** The machine status (the newest transition's destination). */
  status: S;
  object: T;
  /** The run's engine status: pending, running, waiting, paused, completed, failed, cancelled. */
  runStatus: string;
  /**
   * When the run's newest transition step completed (a `saveAndRepeat` or
   * skip counts), else when it was triggered; after a continue-as-new, when
   * the last transition before it completed.
   */
  statusSince: Date;
  dataDeleted: boolean;
}

/**
 * Options of `MachineClient.trigger`.
 *
 * @example
 * await signups.trigger('user-42', { object: { email }, initial: 'emailed', startAt: tomorrow, tx: trx });
 */
export interface TriggerOptions<S extends string, T> {
  /** The object the run starts with (validated against the machine's schema). */
  object: T;
  /** The status it starts in (default: the machine's initial status). */
  initial?: S | undefined;
  /** Do not start before this time. */
  startAt?: Date | undefined;
  /** The caller's transaction: the trigger commits or rolls back with it. */
  tx?: Executor | undefined;
  /**
   * Makes the trigger idempotent (a connector's event id, a request id): a
   * trigger with a key this machine already used returns that run, whatever
   * its state, and writes nothing.
   */
  key?: string | undefined;
}

const toRecord = <S extends string, T>(row: MachineRunRow): MachineRecord<S, T> => ({
  runId: row.run_id,
  foreignId: row.foreign_id,
  status: row.status as S,
  object: row.object as T,
  runStatus: row.run_status,
  statusSince: row.status_since,
  dataDeleted: row.scrubbed_at !== null,
});

function checkForeignId(foreignId: unknown): string {
  if (typeof foreignId !== 'string' || foreignId.length === 0 || foreignId.length > 512) {
    throw new ValidationError('foreign id must be a string of 1-512 characters');
  }
  return foreignId;
}

/**
 * A state machine bound to a client. Create it with `connectMachine`.
 *
 * @example
 * const signups = connectMachine(client, signup);
 * const runId = await signups.trigger('user-42', { object: { email: 'ada@example.com' } });
 */
export class MachineClient<S extends string, T> {
  private readonly db: Queryable;

  constructor(private readonly client: Client, readonly machine: StateMachine<S, T>) {
    this.db = fromKysely(client.db);
  }

  /**
   * Start a run for `foreignId`. Refused with IllegalTransitionError (TR004)
   * while a run for that foreign id is unfinished or paused; bad input
   * (unknown status, an object failing the schema) is a ValidationError.
   * Nothing is written in either case. With `key`, a repeat returns the
   * run the key started.
   */
  async trigger(foreignId: string, options: TriggerOptions<S, T>): Promise<string> {
    checkForeignId(foreignId);
    const status = options.initial ?? this.machine.initial;
    if (!this.machine.statuses.includes(status)) {
      throw new ValidationError(`machine ${this.machine.name}: unknown status ${JSON.stringify(String(status).slice(0, 60))}`);
    }
    const object = await validate(this.machine.object, options.object, `object of ${this.machine.name}`);
    const key = options.key;
    if (key !== undefined && (typeof key !== 'string' || key.length === 0 || key.length > 512)) {
      throw new ValidationError('a trigger key must be a string of 1-512 characters');
    }
    const start = async (tx: Executor) => {
      if (key === undefined) await machineTriggerCheck(toQueryable(tx), this.machine.name, foreignId);
      else {
        const existing = await machineTriggerKeyed(toQueryable(tx), this.machine.name, foreignId, key);
        if (existing) return existing;
      }
      const handle = await this.client.start(this.machine.workflow, { status, object },
        { tx, key, metadata: { foreign_id: foreignId }, runAt: options.startAt });
      if (key !== undefined) {
        // A keyed trigger of another foreign id that ran at the same time
        // passed the key's check too, and this start was answered with its
        // run: refused, as one after the other would be.
        const { rows } = await toQueryable(tx).query<{ foreign_id: string | null }>(
          `select metadata->>'foreign_id'::text as foreign_id from trellis.runs where id = $1::uuid`, [handle.id]);
        if (rows[0]?.foreign_id !== foreignId) {
          throw new IllegalTransitionError(`trigger key ${JSON.stringify(key.slice(0, 60))} of machine ${this.machine.name} was used for another foreign id`);
        }
      }
      return handle.id;
    };
    if (options.tx) return start(options.tx);
    // Its BEGIN, COMMIT or ROLLBACK meeting a lost connection is a retryable DatabaseError, not pg's raw error.
    return this.client.db.transaction().execute((trx) => start(trx)).catch((error: unknown) => {
      throw toTrellisError(error);
    });
  }

  /**
   * Deliver an external payload to the callback of `status` of the foreign
   * id's unfinished run (buffered until the run is in that status).
   * NotFoundError when it has none; ValidationError when `status` has no callback.
   */
  async callback(foreignId: string, status: S, payload: unknown, options: { id?: string | undefined; tx?: Executor | undefined } = {}): Promise<boolean> {
    checkForeignId(foreignId);
    if (!this.machine.nodes.get(status)?.callback) {
      throw new ValidationError(`machine ${this.machine.name}: status ${JSON.stringify(String(status).slice(0, 60))} has no callback`);
    }
    const db = options.tx ? toQueryable(options.tx) : this.db;
    return machineCallback(db, this.machine.name, foreignId, status, encodeJson(payload ?? null, 'callback payload', 1 << 30), options.id ?? null);
  }

  /** The newest run for `foreignId` (or the run `runId`), with its current status and object. */
  async get(foreignId: string, runId?: string): Promise<MachineRecord<S, T>> {
    checkForeignId(foreignId);
    const row = runId ? await machineRunGet(this.db, runId) : await machineRunLatest(this.db, this.machine.name, foreignId);
    if (!row || row.foreign_id !== foreignId || row.machine !== this.machine.name) {
      throw new NotFoundError(`machine ${this.machine.name} has no run${runId ? ` ${runId}` : ''} for foreign id ${JSON.stringify(foreignId.slice(0, 60))}`);
    }
    return toRecord<S, T>(row);
  }

  /**
   * Wait until run `runId` of `foreignId` has reached `status` (polling its
   * transitions, 20 ms growing to 500 ms), as luno/workflow's Await: a
   * status the run passed through counts. Returns the run's record, with
   * the object and `statusSince` of its newest entry into `status` when it
   * has moved on since. Throws ValidationError for a status the machine
   * does not have, TimeoutError after `timeout`, and IllegalTransitionError
   * (or WorkflowFailedError) when the run ends without having reached it.
   */
  async await(foreignId: string, runId: string, status: S, options: { timeout?: Duration | undefined } = {}): Promise<MachineRecord<S, T>> {
    assertName(status, 'status');
    if (!this.machine.statuses.includes(status)) {
      throw new ValidationError(`machine ${this.machine.name}: unknown status ${JSON.stringify(String(status).slice(0, 60))}`);
    }
    const deadline = Date.now() + toMs(options.timeout ?? '1 minute', 'timeout');
    for (let delay = 20; ; delay = Math.min(500, delay * 2)) {
      const record = await this.get(foreignId, runId);
      if (record.status === status) return record;
      const reached = await machineReached(this.db, runId, status);
      if (reached) return { ...record, status, object: reached.object as T, statusSince: reached.at };
      if (record.runStatus === 'failed') throw new WorkflowFailedError(`machine run ${runId} failed in status ${record.status}`);
      if (record.runStatus === 'completed' || record.runStatus === 'cancelled') {
        throw new IllegalTransitionError(`machine run ${runId} ended (${record.runStatus}) in status ${record.status}, never reaching ${status}`);
      }
      if (Date.now() + delay > deadline) throw new TimeoutError(`machine run ${runId} did not reach ${status} in time (it is in ${record.status})`);
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  /**
   * Delete the data of a finished run (PII): every stored copy of its object
   * becomes what the machine's `deleteData` function makes of it; the
   * statuses and the path stay. IllegalTransitionError while unfinished.
   */
  async deleteData(foreignId: string, runId: string): Promise<Date> {
    const record = await this.get(foreignId, runId);
    const scrubbed = record.dataDeleted ? {} : await this.machine.deleteData(record.object as T);
    return machineDataDelete(this.db, runId, encodeJson(scrubbed ?? {}, 'deleted object', 1 << 30));
  }
}

/**
 * Bind a state machine to a client.
 *
 * @example
 * const signups = connectMachine(client, signup);
 * const runId = await signups.trigger('user-42', { object: { email: 'ada@example.com' } });
 * await signups.callback('user-42', 'emailed', { ok: true });
 * const done = await signups.await('user-42', runId, 'verified', { timeout: '30s' });
 */
export function connectMachine<S extends string, T>(client: Client, machine: StateMachine<S, T>): MachineClient<S, T> {
  return new MachineClient(client, machine);
}

/**
 * The operator's side of the outbox: hook deliveries (`client.hooks`) and
 * durable consumers (`client.consumers`), as `trellis hooks`, `trellis
 * consumers` and the dashboard's Outbox page show them.
 */
import { type ConsumerRow, consumerList, HOOK_STATUSES, type HookDelivery, type HookFilter, type HookStatus, hookList, hookRetry } from '../db/events.ts';
import type { Queryable } from '../db/queryable.ts';
import { quoteValue, ValidationError } from '../errors.ts';
import { assertName, assertRunId } from '../workflow/names.ts';

/**
 * Lifecycle hook deliveries: list them, and send a parked one (it kept
 * failing) to the workers again.
 *
 * @example
 * for (const d of await client.hooks.list({ status: 'parked' })) await client.hooks.retry(d.id);
 */
export class Hooks {
  constructor(private readonly reader: Queryable, private readonly writer: Queryable) {}

  /**
   * Deliveries not yet delivered (a delivered one is deleted), parked first,
   * then oldest first.
   *
   * @example
   * const parked = await client.hooks.list({ status: 'parked', workflow: 'order' });
   */
  async list(filter: HookFilter = {}): Promise<HookDelivery[]> {
    if (filter.status !== undefined && !(HOOK_STATUSES as readonly HookStatus[]).includes(filter.status)) {
      throw new ValidationError(`hook delivery status must be ${HOOK_STATUSES.join(', ')}`);
    }
    if (filter.workflow !== undefined) assertName(filter.workflow, 'workflow');
    if (filter.runId !== undefined) assertRunId(filter.runId);
    const limit = filter.limit ?? 100;
    if (!Number.isInteger(limit) || limit < 1 || limit > 1000) throw new ValidationError('limit must be an integer from 1 to 1000');
    return hookList(this.reader, filter, limit);
  }

  /**
   * Make parked delivery `id` pending again with a fresh count of attempts;
   * a worker serving its workflow runs the hook at its next hook poll.
   * NotFoundError if there is no such delivery (a delivered one is deleted),
   * IllegalTransitionError if it is not parked.
   *
   * @example
   * await client.hooks.retry('42');
   */
  async retry(id: string | number): Promise<void> {
    // A number is taken as SQL shows the id (a safe integer); a string as written.
    const text = typeof id === 'number' && Number.isSafeInteger(id) ? String(id) : id;
    if (typeof text !== 'string' || !/^[1-9][0-9]{0,18}$/.test(text)) {
      throw new ValidationError(`a hook delivery id is a positive integer (as a string or a number), not ${quoteValue(id)}`);
    }
    await hookRetry(this.writer, text);
  }
}

/**
 * The durable consumers of the outbox (`client.eventConsumer(name)` opens one).
 *
 * @example
 * for (const c of await client.consumers.list()) console.log(c.name, c.position, c.behind);
 */
export class Consumers {
  constructor(private readonly reader: Queryable) {}

  /**
   * Every consumer, by name, with its acknowledged position and how many
   * events are kept after it (see `ConsumerRow.behind`).
   *
   * @example
   * const lagging = (await client.consumers.list()).filter((c) => c.behind > 0);
   */
  list(): Promise<ConsumerRow[]> {
    return consumerList(this.reader);
  }
}

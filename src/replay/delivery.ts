/**
 * Delivery order: the order in which the results of durable calls reach the
 * workflow code, recorded with each call's checkpoint and reproduced on replay.
 *
 * Workflow code makes its next calls when a result reaches it, so inside
 * `Promise.all` branches the order of calls (and so their numbers, `seq`)
 * follows the order in which results arrived. A replay has every recorded
 * result at once; handing them back in call order could number the calls
 * differently, and with the same call names in every branch give one branch
 * another's result. So each result handed to the code takes the next delivery
 * number, stored with the checkpoint that records it, and a replay hands the
 * recorded results back in that order before any live one.
 *
 * Turns make that order the whole story: one event reaches the code (its
 * start, one delivery, a cancellation), then the code's microtasks run until
 * none is left (the next macrotask) before the next delivery. What the code
 * does in a turn then depends only on that event, on every replay alike.
 * See docs/decisions/0010-delivery-order.md.
 */
import type { StepRecord } from '../protocol/history.ts';

type Result<T> = { ok: true; value: T } | { ok: false; error: unknown };

/** One result on its way to the workflow code. */
export class Delivery<T = unknown> {
  /** What the workflow code awaits; settles in the delivery's turn. */
  readonly promise: Promise<T>;
  result: Result<T> | undefined;
  /** Given up (its checkpoint was refused): later deliveries do not wait for it. */
  dropped = false;
  private settle!: (result: Result<T>) => void;

  constructor(readonly number: number, private readonly owner: Deliveries) {
    this.promise = new Promise<T>((resolve, reject) => {
      this.settle = (r) => (r.ok ? resolve(r.value) : reject(r.error));
    });
  }

  /** The result is known: it reaches the code in its turn. Returns the promise the code awaits. */
  resolve(value: T): Promise<T> {
    return this.ready({ ok: true, value });
  }

  /** As resolve, for a rejection (a failed step, an invalid signal, a failed child). */
  reject(error: unknown): Promise<T> {
    return this.ready({ ok: false, error });
  }

  drop(): void {
    this.dropped = true;
    this.owner.pump();
  }

  hand(): void {
    this.settle(this.result as Result<T>);
  }

  private ready(result: Result<T>): Promise<T> {
    this.result ??= result;
    this.owner.pump();
    return this.promise;
  }
}

export interface DeliveryHooks {
  /** The execution has halted: nothing more reaches the code. */
  halted(): boolean;
  /** A delivery was made after a quiescence check found one due (check again). */
  delivered(): void;
  /** Recorded deliveries whose calls the code has not made were set aside. */
  skipped(numbers: readonly number[]): void;
}

/** The deliveries of one execution: recorded ones first, in their order, then live ones. */
export class Deliveries {
  /** Recorded delivery numbers, ascending; `at` is the next one to hand back. */
  private readonly order: number[];
  private at = 0;
  /** The recorded deliveries whose calls the code has made. */
  private readonly recorded = new Map<number, Delivery<any>>();
  /** Recorded numbers set aside by `unstick`, handed back (first) as soon as their calls are made. */
  private readonly skipped: number[] = [];
  private readonly live: Delivery<any>[] = [];
  private next: number;
  /** The epoch of the last event that reached the code: its turn runs until the epoch ends. */
  private turn = -1;
  /** Waiting for the end of the turn to hand over the next result. */
  private waiting = false;
  /** A quiescence check found a delivery due: ask for another after it. */
  private recheck = false;

  constructor(history: readonly StepRecord[], private readonly hooks: DeliveryHooks) {
    this.order = history.filter(isDelivered).map((r) => r.delivered as number).sort((a, b) => a - b);
    this.next = (this.order.at(-1) ?? 0) + 1;
  }

  /** The recorded delivery `number`, for the call that made it. */
  replayed<T>(number: number): Delivery<T> {
    const delivery = new Delivery<T>(number, this);
    this.recorded.set(number, delivery);
    return delivery;
  }

  /** A live result: its number goes into the checkpoint that records it. */
  reserve<T>(): Delivery<T> {
    const delivery = new Delivery<T>(this.next++, this);
    this.live.push(delivery);
    return delivery;
  }

  /** An event reaches the code now: no delivery until its microtasks have run. */
  begin(): void {
    this.turn = epochNow();
  }

  /** Hand the next result to the code, if it is its turn (after the running turn). */
  pump(): void {
    if (this.hooks.halted() || !this.peek()) return;
    if (this.turn === epoch.now) {
      if (this.waiting) return;
      this.waiting = true;
      atEpochEnd(() => {
        this.waiting = false;
        this.pump();
      });
      return;
    }
    const delivery = this.take() as Delivery<any>;
    this.begin();
    delivery.hand();
    if (this.recheck) {
      this.recheck = false;
      this.hooks.delivered();
    }
    this.pump(); // the next one, if ready, after this turn
  }

  /**
   * Nothing is due to be handed over (called by the quiescence check, after
   * the code's microtasks have run); if something is, the check is asked for
   * again after that delivery.
   */
  idle(): boolean {
    if (!this.waiting && !this.peek()) return true;
    this.recheck = true;
    return false;
  }

  /**
   * Nothing runs and nothing is in flight, yet the next recorded delivery's
   * call was never made: the history is not a prefix of one delivery order
   * (a retry deleted a failed call some recorded calls followed) or the code
   * changed. Set those deliveries aside (each is handed back once its call is
   * made) and go on with the rest. True if anything was set aside.
   */
  unstick(): boolean {
    const moved: number[] = [];
    while (this.at < this.order.length && !this.recorded.get(this.order[this.at] as number)?.result) {
      moved.push(this.order[this.at++] as number);
    }
    if (!moved.length) return false;
    this.skipped.push(...moved);
    this.hooks.skipped(moved);
    this.pump();
    return true;
  }

  private peek(): Delivery<any> | undefined {
    for (const number of this.skipped) {
      const delivery = this.recorded.get(number);
      if (delivery?.result) return delivery;
    }
    if (this.at < this.order.length) {
      const head = this.recorded.get(this.order[this.at] as number);
      return head?.result ? head : undefined;
    }
    while (this.live[0]?.dropped) this.live.shift();
    const head = this.live[0];
    return head?.result ? head : undefined;
  }

  private take(): Delivery<any> | undefined {
    const delivery = this.peek();
    if (!delivery) return undefined;
    if (this.live[0] === delivery) {
      this.live.shift();
      return delivery;
    }
    const skipped = this.skipped.indexOf(delivery.number);
    if (skipped >= 0) this.skipped.splice(skipped, 1);
    else this.at++;
    this.recorded.delete(delivery.number);
    return delivery;
  }
}

/**
 * Macrotask epochs, shared by the executions of the process: the epoch read
 * while microtasks run ends (`now` grows) in a later macrotask, so once it
 * has, every microtask queued during it has run. A result that arrives by
 * I/O finds its run's last turn over and is handed over at once; only a
 * result that arrives during a turn waits, for one `setImmediate` shared by
 * every execution waiting then. Module state, but no owner's state: any
 * number of workers and executions share it safely.
 */
const epoch: { now: number; ending: (() => void)[] | undefined } = { now: 0, ending: undefined };

function epochNow(): number {
  if (!epoch.ending) {
    epoch.ending = [];
    setImmediate(endEpoch);
  }
  return epoch.now;
}

function atEpochEnd(fn: () => void): void {
  epochNow();
  (epoch.ending as (() => void)[]).push(fn);
}

function endEpoch(): void {
  const waiting = epoch.ending ?? [];
  epoch.ending = undefined;
  epoch.now++;
  for (const fn of waiting) fn();
}

/** A recorded call whose result was handed to the code with a delivery number. */
export function isDelivered(rec: StepRecord): boolean {
  return typeof rec.delivered === 'number' && (rec.status === 'completed' || rec.status === 'failed');
}

/**
 * A state machine compiled to an ordinary workflow. The loop below is the
 * machine: in each status it runs the status's step at once, or waits
 * (durably: a signal `callback:<status>` and/or a timer, raced with
 * `ctx.race`) and then runs the callback or timeout handler. Every handler
 * call is one `ctx.step` whose recorded output is the transition
 * `{from, to, object, outcome}`, so replays, retries, leases, pauses and
 * the history are the core's, and SQL reads the current status from the
 * newest transition (view trellis.machine_runs).
 */
import { z } from 'zod';
import { CancelledError, IllegalTransitionError } from '../errors.ts';
import { machineHooks } from './hooks.ts';
import type { StepContext, StepOptions, WorkflowContext } from '../workflow/context.ts';
import { defineWorkflow, type WorkflowDefinition } from '../workflow/define.ts';
import type { RetryPolicy } from '../workflow/retry.ts';
import { EndRunCancelled, ParkRunRequest } from '../workflow/run-control.ts';
import { defineSignal } from '../workflow/signal.ts';
import { type StandardSchemaV1, validate } from '../workflow/standard-schema.ts';
import type { StateMachineOptions } from './define.ts';
import { makeOutcome, type MachineHookEvent, type MachineHookSink, type MachineNode, type MachineRun, outcomeKind, outcomeOf } from './types.ts';

/**
 * A transition as recorded: the output of the handler's step.
 *
 * @example
 * const path = (await client.history(runId)).filter((s) => s.kind === 'step').map((s) => (s.output as Transition).to);
 */
export interface Transition<S extends string = string, T = unknown> {
  from: S;
  to: S;
  object: T;
  outcome: 'transition' | 'skip' | 'repeat' | 'cancel';
  reason?: string | undefined;
}

/**
 * What a finished machine run returns: its final status and object.
 *
 * @example
 * const { status, object } = (await client.result(runId)) as MachineOutput;
 */
export interface MachineOutput<S extends string = string, T = unknown> {
  status: S;
  object: T;
  foreignId: string;
}

interface CompiledMachine<S extends string, T> {
  name: string;
  nodes: ReadonlyMap<S, MachineNode<S, T>>;
  object: StandardSchemaV1<unknown, T>;
  pauseAfterErrors: number | undefined;
  resumeAfterMs?: number | undefined;
  maxResumes?: number | undefined;
}

/** The run ended cancelled in `status` (by a handler, or from outside). */
class MachineCancelled extends EndRunCancelled {
  constructor(reason: string, readonly status: string, readonly object: unknown, readonly foreignId: string) {
    super(reason);
  }
}

type Handler<S extends string, T> = { fn: (run: MachineRun<S, T>, extra: any) => unknown; to: readonly S[] };

export function compileMachine<S extends string, T>(
  machine: CompiledMachine<S, T>,
  options: StateMachineOptions<S, StandardSchemaV1<unknown, T>>,
  sink: MachineHookSink<S, T> | undefined,
  events: readonly MachineHookEvent<S, T>['event'][] = ['complete', 'cancel', 'pause'],
): WorkflowDefinition<{ status: S; object: T }, MachineOutput<S, T>> {
  const pauseAfter = machine.pauseAfterErrors;
  const userRetry = options.retry;
  const retry: RetryPolicy = {
    ...userRetry,
    // With pauseAfterErrors the count of failures, not the policy, decides.
    ...(pauseAfter !== undefined ? { maxAttempts: pauseAfter } : {}),
    retryIf: (error) => !(error instanceof IllegalTransitionError) && (userRetry?.retryIf?.(error) ?? true),
  };
  const stepOptions: StepOptions = { retry, timeout: options.timeout };
  const signals = [...machine.nodes].filter(([, node]) => node.callback).map(([status]) => defineSignal(`callback:${status}`));

  /** One handler call, inside its step: the transition it returns, checked and validated. */
  async function handle(ctx: WorkflowContext, foreignId: string, from: S, object: T, handler: Handler<S, T>,
    step: StepContext, extra: unknown): Promise<Transition<S, T>> {
    const run: MachineRun<S, T> = {
      runId: ctx.runId,
      foreignId,
      status: from,
      object: structuredClone(object),
      step,
      pause: (reason) => makeOutcome('pause', reason ?? `paused in ${from}`),
      cancel: (reason) => makeOutcome('cancel', reason ?? `cancelled in ${from}`),
      skip: () => makeOutcome('skip'),
      saveAndRepeat: () => makeOutcome('repeat'),
    };
    const result: unknown = await handler.fn(run, extra);
    const outcome = outcomeOf(result);
    if (outcome) {
      const kind = outcomeKind(outcome);
      // The run's move to paused delivers onPause (a durable hook).
      if (kind === 'pause') throw new ParkRunRequest((outcome as { reason: string }).reason);
      if (kind === 'skip') return { from, to: from, object, outcome: 'skip' };
      const saved = await validate(machine.object, run.object, `object of ${machine.name} in ${from}`);
      if (kind === 'repeat') return { from, to: from, object: saved, outcome: 'repeat' };
      return { from, to: from, object: saved, outcome: 'cancel', reason: (outcome as { reason: string }).reason };
    }
    if (typeof result !== 'string' || !handler.to.includes(result as S)) {
      throw new IllegalTransitionError(`machine ${machine.name}: ${from} may move to ${handler.to.join(', ')}, not ${JSON.stringify(String(result).slice(0, 60))}`);
    }
    const saved = await validate(machine.object, run.object, `object of ${machine.name} after ${from}`);
    return { from, to: result as S, object: saved, outcome: 'transition' };
  }

  /** In a status without a step: wait for its callback and/or timeout; returns the handler and its argument. */
  async function awaitEvent(ctx: WorkflowContext, foreignId: string, status: S, object: T, node: MachineNode<S, T>) {
    let timer: Promise<void> | undefined;
    if (node.timeout) {
      const when = node.timeout.when;
      if (when.at) {
        const at = await ctx.sideEffect(`${status} deadline`, () => when.at({ status, object, foreignId }).toISOString());
        timer = ctx.sleepUntil(`${status} timeout`, new Date(at));
      } else {
        timer = ctx.sleep(`${status} timeout`, when.after);
      }
    }
    const wait = node.callback ? ctx.waitForSignal(`callback:${status}`) : undefined;
    if (timer && wait) {
      const won = await ctx.race({ callback: wait, timeout: timer }, `${status} await`);
      if (won.key === 'callback') return { kind: 'callback' as const, extra: won.value.timedOut ? undefined : won.value.payload };
    } else if (wait) {
      const got = await wait;
      return { kind: 'callback' as const, extra: got.timedOut ? undefined : got.payload };
    } else {
      await timer;
    }
    return { kind: 'timeout' as const, extra: ctx.now() };
  }

  // `since`: when a continued run's last transition completed (its new execution has no transition step to tell).
  const input = z.object({ status: options.status as unknown as z.ZodType<S>, object: options.object as unknown as z.ZodType<T>,
    since: z.string().optional() });
  return defineWorkflow({
    name: options.name,
    version: options.version,
    queue: options.queue,
    input,
    signals,
    pauseAfter,
    ...(machine.resumeAfterMs !== undefined ? { resumeAfter: machine.resumeAfterMs, maxResumes: machine.maxResumes } : {}),
    hooks: sink ? machineHooks(machine.name, sink, events) : undefined,
  }, async (ctx, start) => {
    const foreignId = String(ctx.metadata.foreign_id ?? '');
    let status = start.status as S;
    let object = start.object as T;
    const continueAfter = options.continueAfter ?? 1000;
    try {
      for (let transitions = 0; ; transitions++) {
        if (transitions >= continueAfter && machine.nodes.has(status)) {
          // The last transition step has just completed: the view's status_since for the new execution.
          return ctx.continueAsNew({ status, object, since: ctx.now().toISOString() });
        }
        const node = machine.nodes.get(status);
        if (!node) return { status, object, foreignId };
        const from = status;
        const current = object;
        let rec: Transition<S, T>;
        if (node.step) {
          const handler = node.step as Handler<S, T>;
          // A transition holds the machine's JSON object: it reads back as it was written.
          rec = await ctx.step(from, (step) => handle(ctx, foreignId, from, current, handler, step, undefined), stepOptions) as Transition<S, T>;
        } else {
          const event = await awaitEvent(ctx, foreignId, from, current, node);
          const handler = node[event.kind] as Handler<S, T>;
          rec = await ctx.step(`${from} ${event.kind}`, (step) => handle(ctx, foreignId, from, current, handler, step, event.extra), stepOptions) as Transition<S, T>;
        }
        status = rec.to;
        object = rec.object;
        if (rec.outcome === 'cancel') throw new MachineCancelled(rec.reason ?? 'cancelled', status, object, foreignId);
      }
    } catch (error) {
      if (error instanceof CancelledError && ctx.cancelled) throw new MachineCancelled(error.message, status, object, foreignId);
      throw error;
    }
  }) as never;
}

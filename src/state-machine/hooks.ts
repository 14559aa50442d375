/**
 * A state machine's `onComplete`, `onCancel` and `onPause` hooks, compiled
 * onto the durable lifecycle hooks of the outbox (docs/events.md): the run's
 * move to completed, cancelled or paused writes a hook delivery in its own
 * transaction, and a worker serving the machine runs the hook at least once,
 * with retries, even when the process that moved the run died right after
 * its commit. The hook reads the run's machine status and object as they are
 * when it runs (view trellis.machine_runs: at a pause, the status the
 * handler ran in and the object saved before it, while the run stays
 * paused; a run resumed before the delivery ran has moved on, and so has
 * what the hook reads). The reason is the run's error as the move left it
 * (kept with the delivery, hook_deliveries.at_event), even after a resume.
 */
import { machineRunGet } from '../db/models.ts';
import type { HookContext, HookEvent, WorkflowHooks } from '../workflow/hooks.ts';
import type { MachineHookEvent, MachineHookSink } from './types.ts';

type MachineEvent = MachineHookEvent<string, unknown>['event'];

const HOOK_OF: Record<MachineEvent, 'onComplete' | 'onCancel' | 'onPause'> = {
  complete: 'onComplete', cancel: 'onCancel', pause: 'onPause',
};

function reasonOf(error: unknown): string | undefined {
  const message = (error as { message?: unknown } | null | undefined)?.message;
  return typeof message === 'string' ? message : undefined;
}

/** The durable `hooks` option of a machine's workflow: one hook per machine event it listens to. */
export function machineHooks<S extends string, T>(machine: string, sink: MachineHookSink<S, T>,
  events: readonly MachineEvent[]): WorkflowHooks {
  const hooks: WorkflowHooks = {};
  for (const event of events) {
    hooks[HOOK_OF[event]] = async (e: HookEvent, { db }: HookContext) => {
      const row = await machineRunGet(db, e.runId);
      const output = e.output as { status?: S | undefined; object?: T | undefined } | undefined;
      await sink.emit({
        event,
        machine,
        runId: e.runId,
        foreignId: String(e.metadata?.foreign_id ?? row?.foreign_id ?? ''),
        status: (row?.status ?? output?.status) as S,
        object: (row ? row.object : output?.object) as T,
        ...(event === 'complete' ? {} : { reason: reasonOf(e.error) }),
      });
    };
  }
  return hooks;
}

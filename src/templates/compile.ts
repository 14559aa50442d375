/**
 * A template compiled to an ordinary workflow, `template:<name>`. The run's
 * input pins the template version it runs ({state, template: {version,
 * definition}}), so a new version never changes a run in flight. Each entry
 * is one `ctx.step` whose recorded output is the whole shared state after
 * it, so the state is persisted after every step and a replay (another
 * worker, after a crash) continues from the last one.
 */
import { z } from 'zod';
import { StepFailedError, ValidationError } from '../errors.ts';
import type { StepContext, StepOptions, WorkflowContext } from '../workflow/context.ts';
import { defineWorkflow, type WorkflowDefinition } from '../workflow/define.ts';
import type { RetryPolicy } from '../workflow/retry.ts';
import type { HookRunInfo } from '../workflow/run-control.ts';
import type { Logger } from '../protocol/logger.ts';
import {
  isTemplateEnd, type StepRegistry, type TemplateHookEvent, type TemplateState, type TemplateStepContext, templateEnd,
} from './registry.ts';
import { nextIndex, parseTemplate, type TemplateDefinition, type TemplateEntry } from './schema.ts';

/**
 * The input of a template run.
 *
 * @example
 * await client.start(templateWorkflow('ingest', steps), { state: {}, template: { version: 1, definition } });
 */
export interface TemplateInput {
  state: TemplateState;
  template: { version: number; definition: unknown };
}

/**
 * The output of a template run: the final state, and whether a step ended it early.
 *
 * @example
 * const { state, endedEarly, failed } = await (await templates.start('ingest', {})).result();
 */
export interface TemplateOutput {
  state: TemplateState;
  endedEarly: boolean;
  /** Entries that failed and were skipped (onFailure continue). */
  failed: string[];
}

const inputSchema = z.object({
  state: z.record(z.string(), z.unknown()),
  template: z.object({ version: z.number().int().min(1), definition: z.record(z.string(), z.unknown()) }),
});

type HookList = keyof NonNullable<TemplateDefinition['hooks']>;

const endRun = () => templateEnd;

/**
 * Run a hook list in order, each hook on its own copy of the state; a hook
 * that throws never stops the rest of the list. With `log` (the step hooks)
 * it is logged and ignored; without (the workflow hooks) the first failure
 * is thrown after the list, and the interceptor that runs it is logged and
 * ignored by the worker: a failing audit hook must not fail, or re-run, the
 * step or the run.
 */
async function runHooks(registry: StepRegistry, definition: TemplateDefinition, list: HookList, event: TemplateHookEvent, log?: Logger): Promise<void> {
  let failed: Error | undefined;
  for (const name of definition.hooks?.[list] ?? []) {
    try {
      // Each hook sees a copy: a hook observes the state, it cannot change what the step gets or what is saved.
      await registry.hook(name)?.({ ...event, state: structuredClone(event.state) });
    } catch (error) {
      if (log) log.warn('template hook threw; ignored', { template: event.template, hook: name, list, entry: event.entry, error: String(error) });
      // The run's own hooks have no logger: the rest of the list still runs, then the
      // first failure goes to the worker, which logs it and goes on (an interceptor's throw).
      else failed ??= new Error(`template hook ${name} (${list}) threw; ignored: ${String(error)}`, { cause: error });
    }
  }
  if (failed) throw failed;
}

/** Parsed definitions by version and text: a run's execution parses its template once per worker, not every time. */
function parseCache(name: string, registry: StepRegistry) {
  const parsed = new Map<string, TemplateDefinition>();
  return (version: number, definition: unknown): TemplateDefinition => {
    const key = `${version}\u0000${JSON.stringify(definition)}`;
    let hit = parsed.get(key);
    if (!hit) {
      hit = parseTemplate(name, definition, registry);
      if (parsed.size >= 64) parsed.clear();
      parsed.set(key, hit);
    }
    return hit;
  };
}

/** The hook event of a run, from the hook info of the core (its input). */
function runEvent(name: string, info: HookRunInfo, state?: TemplateState): { event: TemplateHookEvent; definition: TemplateDefinition } | undefined {
  const input = info.input as TemplateInput | undefined;
  if (!input?.template) return undefined;
  return {
    event: { template: name, version: input.template.version, runId: info.runId, state: state ?? input.state },
    definition: input.template.definition as TemplateDefinition,
  };
}

/**
 * The workflow that runs template `name` (every version of it): give it to
 * `createWorker({ workflows })`. One per template name and registry.
 *
 * @example
 * const worker = createWorker({ pool, workflows: [templateWorkflow('ingest', steps)] });
 */
export function templateWorkflow(name: string, registry: StepRegistry, options: { queue?: string | undefined } = {}): WorkflowDefinition<TemplateInput, TemplateOutput> {
  const cacheKey = `${name}\u0000${options.queue ?? ''}`;
  const cached = registry.workflows.get(cacheKey);
  if (cached) return cached as WorkflowDefinition<TemplateInput, TemplateOutput>;

  const parse = parseCache(name, registry);
  // The state of a run whose body threw a step's failure, for its afterWorkflow
  // hook (set just before the throw, taken by the hook).
  const failedState = new Map<string, TemplateState>();

  async function runEntry(ctx: WorkflowContext, definition: TemplateDefinition, version: number, entry: TemplateEntry,
    stepName: string, state: TemplateState, step: StepContext, compensation = false): Promise<{ state: TemplateState; end: boolean }> {
    const registered = registry.step(stepName);
    if (!registered) throw new ValidationError(`step ${stepName} is not registered in this worker`);
    const draft = structuredClone(state);
    const event: TemplateHookEvent = { template: name, version, runId: ctx.runId, state: draft, entry: entry.name, ...(compensation ? { compensation } : {}) };
    await runHooks(registry, definition, 'beforeStep', event, ctx.log);
    let result: unknown;
    try {
      // The step's signal is made on first use (an AbortController per step costs): forward it, do not copy it.
      const context: TemplateStepContext = {
        get signal() { return step.signal; },
        attempt: step.attempt, idempotencyKey: step.idempotencyKey, runId: step.runId,
        get progress() { return step.progress; },
        saveProgress: (details) => step.saveProgress(details),
        template: name, entry: entry.name, end: endRun,
      };
      // Raced with the step's signal: an attempt that times out (or is
      // cancelled) ends with its error now, and its afterStep gets it, not a
      // success whenever a body that ignored its signal returns (or never).
      result = await untilAborted(Promise.resolve().then(() => registered.fn(draft, context)), step.signal);
    } catch (error) {
      await runHooks(registry, definition, 'afterStep', { ...event, error }, ctx.log);
      throw error;
    }
    await runHooks(registry, definition, 'afterStep', event, ctx.log);
    return { state: draft, end: isTemplateEnd(result) };
  }

  /** `work`, or the signal's reason once it aborts (`work` is then left to end on its own). */
  function untilAborted<T>(work: Promise<T>, signal: AbortSignal): Promise<T> {
    if (signal.aborted) return Promise.reject(signal.reason);
    let stop: (() => void) | undefined;
    const aborted = new Promise<never>((_, reject) => {
      stop = () => reject(signal.reason);
      signal.addEventListener('abort', stop, { once: true });
    });
    return Promise.race([work, aborted]).finally(() => signal.removeEventListener('abort', stop!));
  }

  function policy(entry: TemplateEntry, stepName: string): StepOptions {
    const defaults = registry.step(stepName)?.defaults ?? {};
    return { retry: (entry.retry as RetryPolicy | undefined) ?? defaults.retry, timeout: entry.timeout ?? defaults.timeout };
  }

  const workflow = defineWorkflow({
    name: `template:${name}`,
    queue: options.queue,
    input: inputSchema,
    interceptors: {
      beforeWorkflow: async (info) => {
        const run = runEvent(name, info);
        if (run) await runHooks(registry, run.definition, 'beforeWorkflow', run.event);
      },
      afterWorkflow: async (info, error, output) => {
        const failed = failedState.get(info.runId);
        failedState.delete(info.runId);
        const run = runEvent(name, info, (output as TemplateOutput | undefined)?.state ?? (error === undefined ? undefined : failed));
        if (run) await runHooks(registry, run.definition, 'afterWorkflow', { ...run.event, error });
      },
    },
  }, async (ctx, input): Promise<TemplateOutput> => {
    // Checked again here: a template stored from SQL may name steps this worker lacks (the run fails, naming it).
    const definition = parse(input.template.version, input.template.definition);
    const version = input.template.version;
    let state = input.state as TemplateState;
    const done: TemplateEntry[] = [];
    const failed: string[] = [];
    for (let i = 0; i !== -1; i = nextIndex(definition, i)) {
      const entry = definition.steps[i] as TemplateEntry;
      const stepName = entry.step ?? entry.name;
      const current = state;
      try {
        const result = await ctx.step(entry.name, (step) => runEntry(ctx, definition, version, entry, stepName, current, step), policy(entry, stepName));
        state = result.state;
        done.push(entry);
        if (result.end) return { state, endedEarly: true, failed };
      } catch (error) {
        if (!(error instanceof StepFailedError)) throw error;
        const rule = entry.onFailure ?? 'fail';
        if (rule === 'continue') {
          failed.push(entry.name);
          continue;
        }
        if (rule === 'compensate') {
          for (const undo of [...done].reverse()) {
            if (!undo.compensate) continue;
            const compensate = undo.compensate;
            const before = state;
            const result = await ctx.step(`${undo.name} compensate`,
              (step) => runEntry(ctx, definition, version, undo, compensate, before, step, true), policy(undo, compensate));
            state = result.state;
          }
        }
        if (failedState.size >= 1000) failedState.clear(); // a run halted after its failure never takes its entry
        failedState.set(ctx.runId, state);
        throw error;
      }
    }
    return { state, endedEarly: false, failed };
  });
  registry.workflows.set(cacheKey, workflow);
  return workflow as WorkflowDefinition<TemplateInput, TemplateOutput>;
}

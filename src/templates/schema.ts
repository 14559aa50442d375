/**
 * A template is data: an ordered list of entries (a registered step, its
 * retry policy, timeout and on-failure rule) plus hooks by name. This file
 * is its zod schema and the checks zod alone cannot express.
 */
import { z } from 'zod';
import { ValidationError } from '../errors.ts';
import { type Duration, toMs } from '../protocol/duration.ts';
import { NAME_PATTERN } from '../workflow/names.ts';
import { checkRetryPolicy } from '../workflow/retry.ts';
import type { StepRegistry } from './registry.ts';

const name = z.string().regex(NAME_PATTERN, 'a name of 1-128 letters, digits, space or _ . : @ / -');
const duration = z.union([z.number().nonnegative(), z.string().min(1).max(40)]).refine((value) => {
  try {
    toMs(value as Duration);
    return true;
  } catch {
    return false;
  }
}, 'a duration such as 500, \'30s\', \'5 minutes\'').transform((value) => value as Duration);
/** A per-attempt timeout: a duration longer than zero (0 would end every attempt at once). */
const timeout = duration.refine((value) => toMs(value) > 0, 'a timeout longer than 0');

/**
 * A retry policy as JSON (no `retryIf`), with the limits a step's own policy
 * has (`checkRetryPolicy`: delays at most 1000 years and the like).
 *
 * @example
 * retryPolicySchema.parse({ maxAttempts: 5, backoff: 'constant', initialDelay: '2s' });
 */
export const retryPolicySchema = z.object({
  maxAttempts: z.number().int().min(1).optional(),
  backoff: z.enum(['exponential', 'constant']).optional(),
  initialDelay: duration.optional(),
  factor: z.number().min(1).optional(),
  maxDelay: duration.optional(),
  jitter: z.number().min(0).max(1).optional(),
  /** The step's budget with all its retries (ewf's step timeout). */
  maxElapsed: duration.optional(),
}).strict().superRefine((policy, ctx) => {
  try {
    checkRetryPolicy(policy, 'retry policy');
  } catch (error) {
    ctx.addIssue({ code: 'custom', message: (error as Error).message });
  }
});

/**
 * One entry of a template, as zod checks it.
 *
 * @example
 * templateEntrySchema.parse({ name: 'store', onFailure: 'continue' });
 */
export const templateEntrySchema = z.object({
  /** The entry's name, unique in the template (the step row's name). */
  name,
  /** The registered step it runs (default: `name`). */
  step: name.optional(),
  retry: retryPolicySchema.optional(),
  timeout: timeout.optional(),
  /** After the step fails for good: fail the run (default), continue with the next entry, or compensate then fail. */
  onFailure: z.enum(['fail', 'continue', 'compensate']).optional(),
  /** A registered step that undoes this entry, run (newest first) when a later entry fails with onFailure compensate. */
  compensate: name.optional(),
  /** The entry to run next (default: the following one; 'end' ends the run). */
  next: name.optional(),
}).strict();

const hookNames = z.array(name).max(20).optional();

/**
 * The zod schema of a template definition.
 *
 * @example
 * templateSchema.parse({ steps: [{ name: 'fetch', retry: { maxAttempts: 3 } }] });
 */
export const templateSchema = z.object({
  steps: z.array(templateEntrySchema).min(1).max(1000),
  hooks: z.object({
    beforeWorkflow: hookNames,
    afterWorkflow: hookNames,
    beforeStep: hookNames,
    afterStep: hookNames,
  }).strict().optional(),
}).strict();

/**
 * One entry of a template.
 *
 * @example
 * const entry: TemplateEntry = { name: 'charge', step: 'charge-card', onFailure: 'compensate' };
 */
export type TemplateEntry = z.infer<typeof templateEntrySchema>;
/**
 * A template definition.
 *
 * @example
 * const definition: TemplateDefinition = { steps: [{ name: 'fetch' }, { name: 'store' }], hooks: { afterStep: ['audit'] } };
 */
export type TemplateDefinition = z.infer<typeof templateSchema>;

/**
 * The index of the entry that follows entry `i` (-1: the run ends).
 *
 * @example
 * nextIndex({ steps: [{ name: 'a', next: 'end' }, { name: 'b' }] }, 0); // -1
 */
export function nextIndex(definition: TemplateDefinition, i: number): number {
  const next = definition.steps[i]?.next;
  if (next === undefined) return i + 1 < definition.steps.length ? i + 1 : -1;
  if (next === 'end') return -1;
  return definition.steps.findIndex((entry) => entry.name === next);
}

/**
 * Parse and check a template: its shape (zod), unique entry names, `next`
 * naming entries, no cycle, and (with a registry) every step, compensation
 * and hook registered. Throws ValidationError naming the first problem.
 *
 * @example
 * const definition = parseTemplate('ingest', JSON.parse(text), steps);
 */
export function parseTemplate(templateName: string, value: unknown, registry?: StepRegistry): TemplateDefinition {
  const parsed = templateSchema.safeParse(value);
  if (!parsed.success) {
    const issue = parsed.error.issues[0];
    throw new ValidationError(`template ${templateName}: ${issue?.path.join('.') || 'definition'}: ${issue?.message}`);
  }
  const definition = parsed.data;
  const names = new Set<string>();
  for (const entry of definition.steps) {
    if (names.has(entry.name)) throw new ValidationError(`template ${templateName}: step name ${entry.name} is used twice`);
    names.add(entry.name);
  }
  for (const entry of definition.steps) {
    if (entry.next !== undefined && entry.next !== 'end' && !names.has(entry.next)) {
      throw new ValidationError(`template ${templateName}: next of ${entry.name} names no step of the template: ${entry.next.slice(0, 60)}`);
    }
  }
  const seen = new Set<number>();
  for (let i = 0; i !== -1; i = nextIndex(definition, i)) {
    if (seen.has(i)) throw new ValidationError(`template ${templateName}: the steps form a cycle at ${definition.steps[i]?.name}`);
    seen.add(i);
  }
  if (registry) {
    for (const entry of definition.steps) {
      for (const step of [entry.step ?? entry.name, entry.compensate]) {
        if (step !== undefined && !registry.step(step)) throw new ValidationError(`template ${templateName}: step ${step} is not registered`);
      }
    }
    for (const list of Object.values(definition.hooks ?? {})) {
      for (const hook of list ?? []) {
        if (!registry.hook(hook)) throw new ValidationError(`template ${templateName}: hook ${hook} is not registered`);
      }
    }
  }
  return definition;
}

/** Store templates (versioned) and start template runs from TypeScript; SQL has template_set / template_start. */
import type { Client } from '../client/client.ts';
import type { RunHandle, StartOptions } from '../client/options.ts';
import { templateGet, templateSet } from '../db/models.ts';
import { type Executor, fromKysely, queryRows, toQueryable } from '../db/queryable.ts';
import { quoteValue, ValidationError } from '../errors.ts';
import { assertName } from '../workflow/names.ts';
import { templateWorkflow, type TemplateOutput } from './compile.ts';
import type { StepRegistry, TemplateState } from './registry.ts';
import { parseTemplate, type TemplateDefinition } from './schema.ts';

/**
 * Templates bound to a client; create it with `connectTemplates`.
 *
 * @example
 * const templates = connectTemplates(client, steps);
 * await templates.set('ingest', { steps: [{ name: 'fetch' }] });
 */
export class TemplateClient {
  constructor(private readonly client: Client, private readonly registry: StepRegistry, private readonly queue?: string) {}

  /**
   * Validate `definition` (shape, unique names, no cycle, every step and hook
   * registered) and store it as the next version of `name`; an unchanged
   * definition keeps its version. ValidationError writes nothing.
   */
  async set(name: string, definition: TemplateDefinition, options: { tx?: Executor | undefined } = {}): Promise<number> {
    assertName(name, 'template');
    parseTemplate(name, definition, this.registry);
    const db = options.tx ? toQueryable(options.tx) : fromKysely(this.client.db);
    return templateSet(db, name, JSON.stringify(definition));
  }

  /** A stored template (the newest version, or `version`); NotFoundError when unknown. */
  async get(name: string, version?: number): Promise<{ name: string; version: number; definition: TemplateDefinition }> {
    assertName(name, 'template');
    const row = await templateGet(fromKysely(this.client.db), name, version);
    return { ...row, definition: row.definition as TemplateDefinition };
  }

  /**
   * Start a run of template `name` (its newest version, or `templateVersion`)
   * with the shared `state`. The options are the client's (key, tx, runAt, …).
   */
  async start(name: string, state: TemplateState = {}, options: StartOptions & { templateVersion?: number | undefined } = {}): Promise<RunHandle<TemplateOutput>> {
    if (typeof state !== 'object' || state === null || Array.isArray(state)) throw new ValidationError('the state of a template run must be a JSON object');
    const { templateVersion, ...start } = options;
    if (templateVersion !== undefined && (!Number.isSafeInteger(templateVersion) || templateVersion < 1)) {
      throw new ValidationError(`templateVersion must be a positive integer, not ${quoteValue(templateVersion)}`);
    }
    const db = start.tx ? toQueryable(start.tx) : fromKysely(this.client.db);
    const template = await templateGet(db, assertName(name, 'template'), templateVersion);
    const input = { state, template: { version: template.version, definition: template.definition as Record<string, unknown> } };
    const workflow = templateWorkflow(name, this.registry, { queue: this.queue });
    // Started by name once registered (by a worker, or an earlier start): the
    // registered version keeps its queue, which a worker's
    // templateWorkflow(name, steps, { queue }) set; starting with this
    // process's definition would register it again on this client's queue.
    const registered = await queryRows(db, 'select 1 from trellis.workflows where name = $1 and version = $2', [workflow.name, workflow.version]);
    if (registered.length > 0) return this.client.start(workflow.name, input, { version: workflow.version, ...start }) as Promise<RunHandle<TemplateOutput>>;
    return this.client.start(workflow, input, start);
  }
}

/**
 * Bind a step registry to a client, to store and start templates. `queue`
 * is the queue a template's workflow is registered on when this client's
 * start is the first to register it (give the queue the workers'
 * `templateWorkflow(name, steps, { queue })` use); once registered, a start
 * keeps the registered queue.
 *
 * @example
 * const templates = connectTemplates(client, steps);
 * await templates.set('ingest', { steps: [{ name: 'fetch' }, { name: 'store', onFailure: 'continue' }] });
 * const run = await templates.start('ingest', { since: '2026-01-01' });
 * console.log((await run.result()).state);
 */
export function connectTemplates(client: Client, registry: StepRegistry, options: { queue?: string | undefined } = {}): TemplateClient {
  if (options.queue !== undefined) assertName(options.queue, 'queue');
  return new TemplateClient(client, registry, options.queue);
}

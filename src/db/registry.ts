/** Registers workflow definitions once per process object (client or worker), caching the round trip. */
import type { Queryable } from './queryable.ts';
import { workflowRegister } from './runs.ts';

export interface Registrable {
  name: string;
  version: string;
  queue: string;
}

export class WorkflowRegistry {
  private readonly registered = new Map<string, Promise<void>>();

  constructor(private readonly db: Queryable) {}

  /** trellis.workflow_register for one definition, at most once while it succeeds. */
  register(definition: Registrable): Promise<void> {
    const key = `${definition.name}@${definition.version}`;
    let pending = this.registered.get(key);
    if (!pending) {
      pending = workflowRegister(this.db, [{ name: definition.name, version: definition.version, queue: definition.queue }]);
      pending.catch(() => this.registered.delete(key));
      this.registered.set(key, pending);
    }
    return pending;
  }
}

/**
 * Registers workflow definitions once per process object (client or worker),
 * caching the round trip. The definition → row conversion (input and signal
 * shapes, hooks) is the caller's (`registrationOf`, src/workflow/registration.ts):
 * db/ stays free of the authoring layer.
 */
import type { WorkflowRegistration } from '../protocol/registration.ts';
import type { Queryable } from './queryable.ts';
import { workflowRegister } from './runs.ts';

/** What the registry needs to know of a definition: its key, and how to make its row. */
export interface Versioned {
  name: string;
  version: string;
}

export class WorkflowRegistry<D extends Versioned> {
  private readonly registered = new Map<string, Promise<void>>();
  /** Definitions whose registration has committed. */
  private readonly committed = new Set<string>();

  constructor(private readonly db: Queryable, private readonly toRow: (definition: D) => WorkflowRegistration) {}

  /**
   * Make sure `definition` is registered as seen from `tx`, a caller's
   * transaction, without taking a second connection (a pool full of such
   * transactions must not wait on itself). Registers inside `tx` if needed,
   * so the start and the registration commit or roll back together.
   */
  async registerIn(tx: Queryable, definition: D): Promise<void> {
    const key = `${definition.name}@${definition.version}`;
    if (this.committed.has(key)) return;
    const { rows } = await tx.query<{ found: boolean }>(
      'select exists (select 1 from trellis.workflows where name = $1 and version = $2) as found',
      [definition.name, definition.version]);
    if (!rows[0]?.found) await workflowRegister(tx, [this.toRow(definition)]);
  }

  /**
   * The registration row of `definition` while this registry has not
   * registered it (nor is registering it): for a caller that registers it in
   * a statement of its own and then calls {@link noteRegistered}.
   */
  unregistered(definition: D): WorkflowRegistration | undefined {
    return this.registered.has(`${definition.name}@${definition.version}`) ? undefined : this.toRow(definition);
  }

  /** `definition` was registered (and committed) by the caller's own statement. */
  noteRegistered(definition: D): void {
    const key = `${definition.name}@${definition.version}`;
    if (!this.registered.has(key)) this.registered.set(key, Promise.resolve());
    this.committed.add(key);
  }

  /** trellis.workflow_register for one definition, at most once while it succeeds. */
  register(definition: D): Promise<void> {
    const key = `${definition.name}@${definition.version}`;
    let pending = this.registered.get(key);
    if (!pending) {
      pending = workflowRegister(this.db, [this.toRow(definition)]);
      pending.then(() => this.committed.add(key), () => this.registered.delete(key));
      this.registered.set(key, pending);
    }
    return pending;
  }
}

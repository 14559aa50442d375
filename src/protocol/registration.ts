/**
 * A workflow version as `trellis.workflow_register` reads it (sql/100_workflows.sql):
 * plain JSON, made from a definition by `registrationOf` (src/workflow/registration.ts).
 */
export interface WorkflowRegistration {
  name: string;
  version: string;
  queue: string;
  /** The input shape SQL checks starts against (decision 0016); absent: none it can check. */
  input_schema?: unknown;
  /** Each declared signal's payload shape (true: any payload). */
  signals?: Record<string, unknown> | undefined;
  /** The lifecycle hooks the version declares (delivered durably, sql/710_hooks.sql). */
  hooks: string[];
  /** Whether the version's events carry payloads. */
  event_payloads: boolean;
}

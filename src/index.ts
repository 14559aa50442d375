export { createClient, Client, type ClientOptions, type Consistency, type ListFilter, type ReadOptions, type RunHandle, type RunRef, type StartOptions, type ForkOptions, type StartManyItem, type KeyPolicy, type ControlFilter, type ControlManyOptions, type ControlManyResult, type SignalWithStartOptions, type SignalWithStartHandle, type RequestOptions } from './client/client.ts';
export type { ReadStreamOptions, Run, RunValue, Step, StreamEntry } from './client/runs.ts';
export type { QueueOptions, QueueStats } from './client/queues.ts';
export { fromKysely, type Executor, type Queryable } from './db/queryable.ts';
export { FINISHED_STATES, RUN_STATES, type RunState, type TrellisTables } from './db/tables.ts';
export * from './errors.ts';
export { RaceLostError } from './replay/waits.ts';
export { WorkflowStuckError } from './replay/replay.ts';
export { STEP_KINDS, STEP_STATES, type StepKind, type StepState } from './protocol/history.ts';
export { createMetrics, type MetricsOptions, type MetricsRegistry, TrellisMetrics } from './observability/metrics.ts';
export type { TracerProviderLike, TracingOption, TracingOptions } from './observability/tracing.ts';
export type { WorkerMetricsOption, WorkerMetricsOptions } from './observability/worker-observer.ts';
export { checkSchema, installScript, migrate, type MigrateOptions, type MigrateResult } from './schema/install.ts';
export type { ConnectionTimeouts } from './db/connection.ts';
export type { PreparedStatementsMode } from './db/prepared.ts';
export { createWorker, Worker, type WorkerOptions } from './worker/worker.ts';
export type {
  ChildOptions, Logger, RaceResult, ReplyErrorInfo, StepContext, StepOptions, TransactionClient, TransactionOptions, TransactionStepContext, WaitForRunOptions, WaitForSignalOptions, WorkflowContext,
} from './workflow/context.ts';
export {
  type ActivityOptions, defineActivity, defineWorkflow, type WorkflowDefinition, type WorkflowFn, type WorkflowInput, type WorkflowOptions, type WorkflowOutput,
} from './workflow/define.ts';
export { type Duration, type DurationTerm, type DurationUnit, toMs } from './protocol/duration.ts';
export { childLogger, consoleLogger, type LogFields, type LogFn, type LogLevel, loggerFrom, type LoggerFromOptions, silentLogger } from './protocol/logger.ts';
export { NAME_PATTERN } from './workflow/names.ts';
export type { RetryPolicy } from './workflow/retry.ts';
export type { InferInput, InferOutput, StandardSchemaV1 } from './workflow/standard-schema.ts';
export { defineSignal, type SignalDefinition, type SignalPayload, type SignalResult } from './workflow/signal.ts';
export { EventConsumer, type ConsumerOptions, type EventsOptions } from './client/events.ts';
export {
  type ConsumerRow, EVENT_KINDS, type EventFilter, type EventKind, type HookDelivery, type HookFilter, type HookStatus, type RunEvent,
} from './db/events.ts';
export type { Consumers, Hooks } from './client/outbox.ts';
export type { HandoffSource } from './protocol/local-handoff.ts';
export { HOOK_NAMES, type HookContext, type HookEvent, type HookName, type WorkflowHooks } from './workflow/hooks.ts';
export type { HookDeliveryOptions } from './worker/hooks/loop.ts';
export { EndRunCancelled, type HookRunInfo, type HookStepInfo, ParkRunRequest, type WorkflowInterceptors } from './workflow/run-control.ts';
export { type ManualTick, OVERLAP_POLICIES, type OverlapPolicy, type RoleRow, Roles, type ScheduleBackfillOptions, type ScheduleInput, type ScheduleOptions, type ScheduleRow, type ScheduleSettings, type ScheduleTriggerOptions, Schedules } from './client/schedules.ts';
export type { RoleContext, RoleFunction, RoleOptions, WorkerRoleOptions } from './worker/roles/role-runner.ts';
export { type CronSchedule, parseCron } from './workflow/cron.ts';
export type { Stored } from './protocol/stored.ts';

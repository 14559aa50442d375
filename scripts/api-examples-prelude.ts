/**
 * The prelude of the typechecked `@example`s (scripts/api-docs.ts): the
 * public API, and the names examples use without defining them.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { Registry } from 'prom-client';
import pg from 'pg';
import { Kysely, PostgresDialect, type Transaction } from 'kysely';
import { z } from 'zod';
import * as trellis from '../src/index.ts';
import {
  type Client, createClient, createWorker, defineActivity, defineSignal, defineWorkflow, migrate, installScript, checkSchema,
  fromKysely, toMs, consoleLogger, silentLogger, childLogger, type Duration, type Run, type RunHandle, type StepContext,
  type TrellisTables, type Worker, type WorkflowContext, NonRetryableError, RetryAfterError, CancelledError, TimeoutError,
  isTrellisError, DatabaseError, ConfigurationError, createMetrics, type WorkflowDefinition, type Logger, ValidationError, quoteValue, loggerFrom,
  type EventConsumer, EVENT_KINDS, type EventsOptions, type RunEvent, HOOK_NAMES, type HookEvent, type WorkflowHooks,
  type HookDeliveryOptions, OVERLAP_POLICIES, type ScheduleOptions, type ScheduleTriggerOptions, type ScheduleBackfillOptions, type RoleContext, type RoleFunction, type CronSchedule, parseCron,
  EndRunCancelled, ParkRunRequest, type HookRunInfo, type HookStepInfo, type WorkflowInterceptors, type QueueOptions, type QueueStats,
  type HookContext, type StartManyItem, type KeyPolicy, type ControlFilter, type SignalWithStartOptions, type RequestOptions, type Stored,
} from '../src/index.ts';
import {
  type Connector, type ConnectorContext, type ConnectorEvent, connectorStep, runConnector, tableConnector,
  connectMachine, type MachineClient, type MachineOutput, type Transition, defineStateMachine, type StateMachine,
  machineDiagram, runPathDiagram, connectTemplates, type TemplateClient, templateWorkflow, templateDiagram, createStepRegistry,
  type StepRegistry, type TemplateState, type TemplateStepFn, type TemplateHookFn, parseTemplate, type TemplateDefinition,
  type TemplateEntry, templateSchema, outboxConnector, type OutboxEventPayload, machineConnectorStep, runMachineConnectors,
  type MachineConnectorFn,
} from '../src/models.ts';
import { checkReplay, createTestEnv, freePort, startEmbeddedPostgres, type TestEnv } from '../src/testing/index.ts';

declare const pool: pg.Pool;
declare function app(req: http.IncomingMessage, res: http.ServerResponse): void;
declare const client: Client;
declare const worker: Worker;
declare const ctx: WorkflowContext;
declare const step: StepContext;
declare const env: TestEnv;
declare const run: RunHandle<unknown>;
declare const runId: string;
declare const db: Kysely<TrellisTables>;
declare const orderId: string;
declare const userId: string;
declare function charge(orderId: string, options?: { idempotencyKey?: string | undefined; signal?: AbortSignal | undefined }): Promise<{ id: string }>;
declare function fetchJson(url: string, options?: { signal?: AbortSignal | undefined }): Promise<unknown>;
declare function sendEmail(to: string, text: string): Promise<void>;
declare const ids: string[];
declare const regions: string[];
declare const processed: number;
declare const cursor: string;
declare const card: { number: string; expired: boolean };
declare const subscription: { renewsAt: string };
declare const store: { put(row: unknown): Promise<string> };
declare const billing: { create(invoice: { id: string }): Promise<{ id: string }> };
declare const payments: { createSession(orderId: string): Promise<{ id: string; url: string }> };
declare function exportRows(): Promise<number>;
declare function cleanUp(): Promise<void>;
declare function render(url: string, options: { signal: AbortSignal }): Promise<string>;
declare function after(fn: () => unknown): void;
// Connections and workers.
declare const connectionString: string;
declare const workflows: WorkflowDefinition[];
declare const pgClient: pg.PoolClient;
declare const trx: Transaction<TrellisTables>;
declare const signal: AbortSignal;
declare const tomorrow: Date;
// Events, hooks, interceptors and logging.
declare const savedCursor: string;
declare const consumer: EventConsumer;
declare const event: RunEvent;
declare function notify(runId: string): Promise<void>;
declare function sendReceipt(runId: string): Promise<void>;
declare function importRows(from: number, to: number): Promise<void>;
declare function reindex(id: string): Promise<void>;
declare function page(message: string): Promise<void>;
declare function alert(runId: string): void;
declare const webhookUrl: string;
declare const log: Logger;
declare const metrics: { inc(name: string, labels: Record<string, string>): void; observe(step: string, attempt: number, ok: boolean): void };
declare const pager: { alert(message: string): Promise<void> };
declare const queue: { publish(topic: string, message: unknown): Promise<void> };
declare const audit: { log(record: Record<string, unknown>): Promise<void> };
/** pino's logger as pino's own types declare its levels (pino is not a dependency of Trellis). */
interface PinoLogFn {
  <T extends object>(obj: T, msg?: string, ...args: unknown[]): void;
  (msg: string, ...args: unknown[]): void;
}
declare function pino(): { trace: PinoLogFn; debug: PinoLogFn; info: PinoLogFn; warn: PinoLogFn; error: PinoLogFn; fatal: PinoLogFn };
// Application code the examples call.
interface Order { id: string; total: number; voided: boolean }
declare function loadOrder(id: string): Promise<Order>;
declare function ship(orderId: string): Promise<{ trackingId: string }>;
declare const stock: { unknown: boolean };
declare const remote: { busy: boolean };
declare const mail: { send(to: string, options?: { idempotencyKey?: string | undefined }): Promise<void> };
declare const api: { read(options: { signal: AbortSignal; idempotencyKey: string }): Promise<unknown[]> };
declare const source: { read(since?: string): Promise<unknown[]> };
declare const input: { region: string };
// Requests (ctx.reply, client.request).
const quote = defineSignal('quote', z.object({ qty: z.number() }));
const withdraw = defineSignal('withdraw', z.object({ amount: z.number() }), { reply: z.object({ balance: z.number() }) });
declare const balance: number;
declare const text: string;
declare const email: string;
declare function exportOrders(options: { signal: AbortSignal; fence: string }): Promise<void>;
declare function exportBatch(options: { fence: [role: string, token: string] }): Promise<void>;
// State machines, templates, connectors.
const Status = z.enum(['created', 'emailed', 'verified', 'expired']);
const Signup = z.object({ email: z.string(), mailedAt: z.string().optional() });
declare const signup: StateMachine<z.infer<typeof Status>, z.infer<typeof Signup>>;
declare const signups: MachineClient<z.infer<typeof Status>, z.infer<typeof Signup>>;
declare const orders: MachineClient<'awaiting-payment' | 'paid' | 'shipped', Order>;
declare const steps: StepRegistry;
declare const registry: StepRegistry;
declare const templates: TemplateClient;
declare const definition: TemplateDefinition;
declare const connector: Connector;
declare function handle(event: ConnectorEvent, ctx: ConnectorContext): Promise<void>;
const approved = defineSignal('approved', z.object({ by: z.string() }));
const onboard = defineWorkflow({ name: 'onboard', input: z.object({ email: z.string() }) }, async () => 'done');
const greet = defineWorkflow({ name: 'greet', input: z.object({ name: z.string() }) }, async (_ctx, { name }) => `hello ${name}`);
const fulfil = defineWorkflow({ name: 'fulfil', input: z.object({ orderId: z.string() }) }, async () => ({ shipped: true }));
const reminder = defineWorkflow({ name: 'reminder', input: z.object({ to: z.string() }) }, async () => 'sent');
const trial = defineWorkflow({ name: 'trial', input: z.object({ user: z.string() }) }, async (_ctx, { user }) => `trial of ${user} ended`);
const regionTotal = defineWorkflow({ name: 'region-total', input: z.object({ region: z.string() }) }, async () => 0);
const healthCheck = defineWorkflow({ name: 'health-check', input: z.object({}) }, async () => 'ok');
const order = defineWorkflow({ name: 'order', input: z.object({ id: z.string() }) }, async (ctx, { id }) => ctx.step('ship', () => ship(id)));
const dailyReport = defineWorkflow({ name: 'daily-report', input: z.object({ team: z.string() }) }, async () => 'sent');
const report = defineWorkflow({ name: 'report', input: z.object({ team: z.string() }) }, async () => 'sent');
const sync = defineWorkflow({ name: 'sync', input: z.object({}) }, async () => 'synced');
const approval = defineWorkflow({ name: 'approval', input: z.object({ order: z.string() }), signals: [approved] }, async () => 'ok');
const addItem = defineSignal('add-item', z.object({ sku: z.string(), qty: z.number() }));
const cart = defineWorkflow({ name: 'cart', input: z.object({ customer: z.string() }), signals: [addItem] }, async () => 'placed');

void [assert, writeFileSync, isTrellisError, DatabaseError, ConfigurationError, freePort, pg, Kysely, PostgresDialect, trellis, createClient, createWorker, defineActivity, migrate, installScript, checkSchema, fromKysely,
  toMs, consoleLogger, silentLogger, childLogger, NonRetryableError, RetryAfterError, CancelledError, TimeoutError, createTestEnv,
  startEmbeddedPostgres, approval, onboard, greet, fulfil, reminder, trial, healthCheck, regionTotal, ValidationError, quoteValue, loggerFrom,
  EVENT_KINDS, HOOK_NAMES, OVERLAP_POLICIES, parseCron, connectorStep, runConnector, tableConnector, connectMachine, defineStateMachine,
  machineDiagram, runPathDiagram, connectTemplates, templateWorkflow, templateDiagram, createStepRegistry, parseTemplate, templateSchema,
  EndRunCancelled, ParkRunRequest, Status, Signup, order, dailyReport, report, sync, cart, outboxConnector, machineConnectorStep, runMachineConnectors];
export type {
  Duration, Run, EventsOptions, RunEvent, HookEvent, WorkflowHooks, HookDeliveryOptions, ScheduleOptions, ScheduleTriggerOptions, ScheduleBackfillOptions, RoleContext, RoleFunction,
  CronSchedule, MachineOutput, Transition, TemplateState, TemplateStepFn, TemplateHookFn, TemplateEntry, HookRunInfo, HookStepInfo,
  WorkflowInterceptors, Order, PinoLogFn, QueueOptions, QueueStats, HookContext, OutboxEventPayload, MachineConnectorFn, SignalWithStartOptions, Stored,
};

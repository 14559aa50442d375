/**
 * The prelude of the typechecked `@example`s (scripts/api-docs.ts): the
 * public API, and the names examples use without defining them.
 */
import assert from 'node:assert/strict';
import { writeFileSync } from 'node:fs';
import http from 'node:http';
import { Registry } from 'prom-client';
import pg from 'pg';
import { Kysely, PostgresDialect } from 'kysely';
import { z } from 'zod';
import * as trellis from '../src/index.ts';
import {
  type Client, createClient, createWorker, defineActivity, defineSignal, defineWorkflow, migrate, installScript, checkSchema,
  fromKysely, toMs, consoleLogger, silentLogger, childLogger, type Duration, type Run, type RunHandle, type StepContext,
  type TrellisTables, type Worker, type WorkflowContext, NonRetryableError, RetryAfterError, CancelledError, TimeoutError,
  isTrellisError, DatabaseError, createMetrics,
} from '../src/index.ts';
import { createTestEnv, freePort, startEmbeddedPostgres, type TestEnv } from '../src/testing/index.ts';

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
declare function charge(orderId: string, options?: { idempotencyKey?: string; signal?: AbortSignal }): Promise<{ id: string }>;
declare function fetchJson(url: string, options?: { signal?: AbortSignal }): Promise<unknown>;
declare function sendEmail(to: string, text: string): Promise<void>;
declare const ids: string[];
declare const regions: string[];
declare const processed: number;
declare const cursor: string;
declare const card: { number: string; expired: boolean };
declare const subscription: { renewsAt: string };
declare const store: { put(row: unknown): Promise<string> };
declare const billing: { create(invoice: { id: string }): Promise<{ id: string }> };
declare function exportRows(): Promise<number>;
declare function cleanUp(): Promise<void>;
declare function render(url: string, options: { signal: AbortSignal }): Promise<string>;
declare function after(fn: () => unknown): void;
const approved = defineSignal('approved', z.object({ by: z.string() }));
const onboard = defineWorkflow({ name: 'onboard', input: z.object({ email: z.string() }) }, async () => 'done');
const greet = defineWorkflow({ name: 'greet', input: z.object({ name: z.string() }) }, async (_ctx, { name }) => `hello ${name}`);
const fulfil = defineWorkflow({ name: 'fulfil', input: z.object({ orderId: z.string() }) }, async () => ({ shipped: true }));
const reminder = defineWorkflow({ name: 'reminder', input: z.object({ to: z.string() }) }, async () => 'sent');
const trial = defineWorkflow({ name: 'trial', input: z.object({ user: z.string() }) }, async (_ctx, { user }) => `trial of ${user} ended`);
const regionTotal = defineWorkflow({ name: 'region-total', input: z.object({ region: z.string() }) }, async () => 0);
const healthCheck = defineWorkflow({ name: 'health-check', input: z.object({}) }, async () => 'ok');
const approval = defineWorkflow({ name: 'approval', input: z.object({ order: z.string() }), signals: [approved] }, async () => 'ok');

void [assert, writeFileSync, isTrellisError, DatabaseError, freePort, pg, Kysely, PostgresDialect, trellis, createClient, createWorker, defineActivity, migrate, installScript, checkSchema, fromKysely,
  toMs, consoleLogger, silentLogger, childLogger, NonRetryableError, RetryAfterError, CancelledError, TimeoutError, createTestEnv,
  startEmbeddedPostgres, approval, onboard, greet, fulfil, reminder, trial, healthCheck, regionTotal];
export type { Duration, Run };

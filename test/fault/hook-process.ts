/**
 * A worker in its own process whose onComplete hook never returns, for the
 * fault test that SIGKILLs it right after it completed a run.
 * env: DATABASE_URL. Prints "ready" once claiming.
 */
import pg from 'pg';
import { z } from 'zod';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 4 });

export const hooked = defineWorkflow({
  name: 'hook-kill', input: z.object({ n: z.number() }),
  // The hook this process would run hangs: the process dies holding it (or before claiming it).
  hooks: { timeout: '10s', onComplete: () => new Promise(() => {}) },
}, async (ctx, { n }) => ctx.step('double', () => n * 2));

const worker = createWorker({ pool, workflows: [hooked], pollInterval: 100, logger: silentLogger, hookDelivery: { interval: 20 } });
await worker.start();
process.stdout.write('ready\n');

/**
 * An HTTP service that starts workflows and reports on them, with a worker in
 * the same process. Plain node:http, no framework.
 *
 *   POST /orders    {"orderId": "A-1", "amount": 42}  → 202 {"runId": "…"}
 *                   a bad body                        → 400 {"error": "…"}
 *   GET  /runs/:id  → 200 {id, workflow, status, output, …}
 *                   404 for an unknown run, 400 for an id that is not a UUID
 *
 * The order id is the run's idempotency key: posting the same order twice
 * returns the same run instead of charging twice.
 *
 * Run it directly for a self-demo (it posts an order to itself and polls the
 * run until it completes):
 *   npx tsx examples/http-service/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import { createServer, type IncomingMessage, type ServerResponse } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { z } from 'zod';
import {
  createClient,
  createWorker,
  defineWorkflow,
  isTrellisError,
  PayloadTooLargeError,
  ValidationError,
  type WorkflowInput,
} from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

/** Three durable steps; each runs once and its result is checkpointed. */
export const orderFulfilment = defineWorkflow(
  {
    name: 'order-fulfilment',
    input: z.object({ orderId: z.string().min(1).max(512), amount: z.number().positive() }),
  },
  async (ctx, { orderId, amount }) => {
    const reservation = await ctx.step('reserve-stock', () => ({ reservationId: `res-${orderId}` }));
    // The idempotency key is stable across retries and replays: hand it to
    // the payment provider so a retried charge is not charged twice.
    const charge = await ctx.step('charge', ({ idempotencyKey }) => ({ chargeId: `ch-${idempotencyKey}`, amount }),
      { retry: { maxAttempts: 5, backoff: 'exponential' }, timeout: '10s' });
    const shipment = await ctx.step('ship', () => ({ trackingNumber: `TRK-${orderId}` }));
    return { orderId, reservationId: reservation.reservationId, chargeId: charge.chargeId, trackingNumber: shipment.trackingNumber };
  },
);

export interface Service {
  port: number;
  /** Runs this service's worker began from its own starts (handed off) and from claims. */
  counts(): { handedOff: number; claimed: number };
  close(): Promise<void>;
}

const MAX_BODY_BYTES = 64 * 1024;

class HttpError extends Error {
  constructor(readonly status: number, message: string) {
    super(message);
  }
}

async function readJson(req: IncomingMessage): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  for await (const chunk of req as AsyncIterable<Buffer>) {
    size += chunk.length;
    if (size > MAX_BODY_BYTES) throw new HttpError(413, `request body is over ${MAX_BODY_BYTES} bytes`);
    chunks.push(chunk);
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8'));
  } catch {
    throw new ValidationError('request body is not valid JSON');
  }
}

function send(res: ServerResponse, status: number, body: unknown): void {
  const text = JSON.stringify(body);
  res.writeHead(status, { 'content-type': 'application/json', 'content-length': Buffer.byteLength(text) });
  res.end(text);
}

/**
 * Start the HTTP service and its worker on `url` (a database with the trellis
 * schema installed), listening on 127.0.0.1 and a free port.
 *
 * @example
 * const service = await startService(process.env.DATABASE_URL!);
 * await fetch(`http://127.0.0.1:${service.port}/orders`, { method: 'POST', body: '{"orderId":"A-1","amount":5}' });
 * await service.close();
 */
export async function startService(url: string): Promise<Service> {
  const pool = new pg.Pool({ connectionString: url, max: 10 });
  pool.on('error', () => undefined);
  // The worker joins the client (`client`), so a start made here goes
  // straight to this worker when it has a free slot: the start's own
  // statement leases the run to it, and it begins as the start commits (no
  // NOTIFY, no claim). If this process dies, the lease expires and another
  // replica continues the run. Without `client` (or with
  // `createClient({ pool, handoff: false })`) every start goes through the queue.
  const client = createClient({ pool });
  const worker = createWorker({ pool, workflows: [orderFulfilment], client });
  await worker.start();

  async function route(req: IncomingMessage, res: ServerResponse): Promise<void> {
    const path = new URL(req.url ?? '/', 'http://localhost').pathname;
    if (path === '/orders') {
      if (req.method !== 'POST') throw new HttpError(405, 'use POST');
      const body = await readJson(req);
      const orderId = (body as { orderId?: unknown } | null)?.orderId;
      // client.start validates the body against the workflow's zod schema
      // and throws ValidationError before anything is written.
      const run = await client.start(orderFulfilment, body as WorkflowInput<typeof orderFulfilment>,
        { key: typeof orderId === 'string' ? orderId : undefined });
      return send(res, 202, { runId: run.id });
    }
    const match = /^\/runs\/([^/]+)$/.exec(path);
    if (match) {
      if (req.method !== 'GET') throw new HttpError(405, 'use GET');
      let id: string;
      try {
        id = decodeURIComponent(match[1] as string);
      } catch {
        throw new ValidationError('run id is not valid percent-encoding');
      }
      const run = await client.get(id); // ValidationError for a malformed id
      if (!run) throw new HttpError(404, `run ${id} does not exist`);
      return send(res, 200, {
        id: run.id,
        workflow: run.workflow,
        key: run.key,
        status: run.status,
        output: run.output,
        error: run.error,
        attempt: run.attempt,
        createdAt: run.createdAt,
        finishedAt: run.finishedAt,
      });
    }
    throw new HttpError(404, `no route for ${req.method} ${path}`);
  }

  const server = createServer((req, res) => {
    route(req, res).catch((error: unknown) => {
      if (error instanceof HttpError) return send(res, error.status, { error: error.message });
      if (error instanceof ValidationError) return send(res, 400, { error: error.message });
      if (error instanceof PayloadTooLargeError) return send(res, 413, { error: error.message });
      console.error('request failed:', isTrellisError(error) ? `${error.code}: ${error.message}` : error);
      send(res, 500, { error: 'internal error' });
    });
  });
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(0, '127.0.0.1', () => resolve());
  });
  const { port } = server.address() as AddressInfo;

  let closing: Promise<void> | undefined;
  return {
    port,
    counts: () => ({ handedOff: worker.stats.handedOff, claimed: worker.stats.claimed }),
    close() {
      closing ??= (async () => {
        const closed = new Promise<void>((resolve) => server.close(() => resolve()));
        server.closeAllConnections();
        await closed;
        await worker.stop({ timeout: '5s' });
        await client.close();
        await pool.end();
      })();
      return closing;
    },
  };
}

/** The self-demo: post an order to ourselves and follow the run until it completes. */
async function demo(): Promise<number> {
  const database = await exampleDatabase();
  let service: Service | undefined;
  try {
    service = await startService(database.url);
    const base = `http://127.0.0.1:${service.port}`;
    console.log(`listening on ${base}`);

    const post = await fetch(`${base}/orders`, {
      method: 'POST',
      headers: { 'content-type': 'application/json' },
      body: JSON.stringify({ orderId: 'order-1001', amount: 42.5 }),
    });
    const started = (await post.json()) as { runId?: string | undefined };
    console.log(`POST /orders -> ${post.status} ${JSON.stringify(started)}`);
    if (post.status !== 202 || !started.runId) return 1;

    const bad = await fetch(`${base}/orders`, { method: 'POST', body: JSON.stringify({ orderId: 'order-1002', amount: 'lots' }) });
    console.log(`POST /orders (bad body) -> ${bad.status} ${await bad.text()}`);

    const deadline = Date.now() + 10_000;
    for (;;) {
      const get = await fetch(`${base}/runs/${started.runId}`);
      const run = (await get.json()) as { status?: string | undefined };
      if (run.status === 'completed' || run.status === 'failed' || Date.now() > deadline) {
        console.log(`GET /runs/${started.runId} -> ${get.status} ${JSON.stringify(run)}`);
        const { handedOff, claimed } = service.counts();
        console.log(`worker: ${handedOff} run(s) handed off by this process's starts, ${claimed} claimed from the queue`);
        return run.status === 'completed' ? 0 : 1;
      }
      await new Promise((resolve) => setTimeout(resolve, 100));
    }
  } finally {
    await service?.close();
    await database.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await demo();
}

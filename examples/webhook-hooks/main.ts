/**
 * React to what runs do, without polling and without losing an event when a
 * process dies:
 * 1. Lifecycle hooks: `order`'s `onComplete` posts the run's output to a
 *    webhook (here a local HTTP receiver on 127.0.0.1). The delivery is a row
 *    written in the transaction that completes the run; a worker serving the
 *    workflow claims it and retries it with backoff if the receiver fails
 *    (the receiver refuses the first post with a 503 to show it).
 * 2. The outbox: a separate consumer process (this file run with `consumer`)
 *    reads `client.events()` through a durable named consumer, which keeps
 *    its position in Postgres and moves it only when it acknowledges.
 * 3. An operator's view: order A-3's webhook is down for longer than the
 *    hook's retry policy, so its delivery is parked; `client.hooks.list()`
 *    finds it, and once the receiver is back `client.hooks.retry(id)` sends
 *    it again (the same as `trellis hooks retry <id>` or the dashboard's
 *    Outbox page). `client.consumers.list()` shows the consumer's position.
 *
 *   npx tsx examples/webhook-hooks/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { fileURLToPath } from 'node:url';
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const order = defineWorkflow({
  name: 'order', input: z.object({ id: z.string(), amount: z.number() }),
  hooks: {
    retry: { maxAttempts: 5, initialDelay: '100ms' },
    onComplete: async ({ runId, output }) => {
      const response = await fetch(process.env.WEBHOOK_URL!, {
        method: 'POST', headers: { 'content-type': 'application/json' }, body: JSON.stringify({ runId, output }),
      });
      if (!response.ok) throw new Error(`webhook answered ${response.status}`);
    },
  },
}, async (ctx, { id, amount }) => {
  const charged = await ctx.step('charge', () => amount);
  return { id, charged };
});

/** The consumer process: prints the completed orders it reads, acknowledging each, until it has seen `want`. */
async function consume(url: string, want: number): Promise<void> {
  const client = createClient({ connectionString: url });
  const consumer = await client.eventConsumer('order-audit', { workflows: ['order'], kinds: ['completed'] });
  const stop = new AbortController();
  let seen = 0;
  for await (const event of consumer.events({ pollInterval: '100ms', signal: stop.signal })) {
    console.log(`consumer: ${event.kind} ${event.key}`);
    await consumer.ack(event);
    if (++seen === want) stop.abort();
  }
  await client.close();
}

if (process.argv[2] === 'consumer') {
  await consume(process.env.DATABASE_URL!, Number(process.argv[3]));
} else {
  const database = await exampleDatabase();
  // The webhook receiver: refuses the first post (the hook retries), and order A-3's until it is back; takes the rest.
  const received: string[] = [];
  let posts = 0;
  let a3Down = true;
  let a3Refused = 0;
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => (body += d));
    req.on('end', () => {
      posts += 1;
      const a3 = (JSON.parse(body) as { output: { id: string } }).output.id === 'A-3';
      if (posts === 1 || (a3 && a3Down)) {
        if (a3) a3Refused += 1;
        res.writeHead(503).end();
        return;
      }
      received.push(body);
      res.writeHead(204).end();
    });
  });
  /** Poll `check` every 50 ms until it returns a value (at most 30 s). */
  const until = async <T>(what: string, check: () => Promise<T | undefined> | T | undefined): Promise<T> => {
    for (const deadline = Date.now() + 30_000; Date.now() < deadline; await new Promise((r) => setTimeout(r, 50))) {
      const value = await check();
      if (value !== undefined) return value;
    }
    throw new Error(`${what}: not within 30 s`);
  };
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  process.env.WEBHOOK_URL = `http://127.0.0.1:${(server.address() as AddressInfo).port}/orders`;

  const pool = new pg.Pool({ connectionString: database.url });
  // The embedded server stops at the end while idle connections remain.
  pool.on('error', () => undefined);
  const worker = createWorker({ pool, workflows: [order], hookDelivery: { interval: '50ms' } });
  const client = createClient({ pool });
  try {
    await worker.start();
    const consumer = spawn(process.execPath, ['--import', 'tsx', fileURLToPath(import.meta.url), 'consumer', '2'], {
      env: { ...process.env, DATABASE_URL: database.url }, stdio: ['ignore', 'inherit', 'inherit'],
    });
    for (const [id, amount] of [['A-1', 10], ['A-2', 25]] as const) {
      const run = await client.start(order, { id, amount }, { key: id });
      console.log(`order ${id}: ${JSON.stringify(await run.result())}`);
    }
    await until('two webhook posts', () => (received.length >= 2 ? true : undefined));
    for (const body of received.map((b) => JSON.parse(b)).sort((a, b) => a.output.id.localeCompare(b.output.id))) {
      console.log(`webhook: ${JSON.stringify(body.output)}`);
    }
    console.log(`webhook posts: ${posts} (the first was refused and retried)`);
    const [code] = await once(consumer, 'exit');
    console.log(`consumer exited ${code}`);

    // 3. A webhook down for longer than the retry policy: the delivery is parked, then retried by hand.
    const a3 = await client.start(order, { id: 'A-3', amount: 40 }, { key: 'A-3' });
    await a3.result();
    const parked = await until('the parked delivery', async () => (await client.hooks.list({ status: 'parked', runId: a3.id }))[0]);
    console.log(`parked: ${parked.hook} of order A-3 after ${a3Refused} refused posts (${(parked.lastError as { message: string }).message})`);
    a3Down = false;
    await client.hooks.retry(parked.id);
    await until('the retried post', () => (received.some((b) => JSON.parse(b).output.id === 'A-3') ? true : undefined));
    console.log('webhook: order A-3 delivered after client.hooks.retry');
    for (const c of await client.consumers.list()) console.log(`consumer ${c.name}: position ${c.position}, ${c.behind} events after it`);
  } finally {
    await worker.stop();
    await client.close();
    await pool.end();
    server.close();
    await database.stop();
  }
}

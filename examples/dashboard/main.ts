/**
 * The dashboard mounted in your own Node server, next to your own routes:
 * requests under /trellis go to the dashboard, the rest to the app.
 *
 *   npx tsx examples/dashboard/main.ts           self-demo: start runs, fetch the dashboard's pages, exit
 *   npx tsx examples/dashboard/main.ts --serve   keep serving; open the printed URL (Ctrl-C to stop)
 *
 * Set TRELLIS_DASHBOARD_TOKEN to require a login. Uses DATABASE_URL when set,
 * else an embedded PostgreSQL.
 */
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { pathToFileURL } from 'node:url';
import pg from 'pg';
import { z } from 'zod';
import { createDashboard } from '../../src/dashboard/index.ts';
import { createClient, createWorker, defineWorkflow, silentLogger } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const approval = defineWorkflow({ name: 'approval', input: z.object({ order: z.string() }) }, async (ctx, { order }) => {
  await ctx.step('reserve', () => `reserved ${order}`);
  const answer = await ctx.waitForSignal<{ by: string }>('approved', { timeout: '7 days' });
  return { order, approved: !answer.timedOut };
});

async function main(serve: boolean): Promise<number> {
  const database = await exampleDatabase();
  const pool = new pg.Pool({ connectionString: database.url });
  const worker = createWorker({ pool, workflows: [approval], logger: silentLogger });
  const client = createClient({ pool, logger: silentLogger });
  await worker.start();

  const token = process.env.TRELLIS_DASHBOARD_TOKEN;
  const dashboard = createDashboard({ pool, basePath: '/trellis', ...(token ? { token } : {}) });
  const server = createServer((req, res) => {
    if (req.url?.startsWith('/trellis')) return dashboard.handle(req, res);
    res.setHeader('content-type', 'text/plain');
    res.end('your app\n');
  });
  await new Promise<void>((resolve) => server.listen(serve ? 3000 : 0, '127.0.0.1', resolve));
  const base = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  try {
    const run = await client.start(approval, { order: 'A-7' }, { key: 'order-A-7', metadata: { customer: 'acme' } });
    // Wait until the run is parked on its signal, so the pages have something to show.
    for (let i = 0; i < 200 && (await client.get(run.id))?.status !== 'waiting'; i++) await new Promise((r) => setTimeout(r, 50));
    console.log(`dashboard: ${base}/trellis/`);
    console.log(`app: ${(await (await fetch(`${base}/`)).text()).trim()}`);
    for (const path of ['/trellis/', '/trellis/runs?metadata=customer%3Dacme', `/trellis/runs/${run.id}`]) {
      const res = await fetch(`${base}${path}`, { headers: token ? { authorization: `Bearer ${token}` } : {} });
      const title = (await res.text()).match(/<title>([^<]*)<\/title>/)?.[1];
      console.log(`GET ${path} -> ${res.status} ${title}`);
    }
    if (serve) {
      console.log('serving; Ctrl-C to stop');
      await new Promise<void>((resolve) => process.once('SIGINT', () => resolve()));
    }
    return 0;
  } finally {
    server.closeAllConnections();
    await new Promise((resolve) => server.close(resolve));
    await worker.stop({ timeout: '5s' });
    await client.close();
    await pool.end();
    await database.stop();
  }
}

if (process.argv[1] && import.meta.url === pathToFileURL(process.argv[1]).href) {
  process.exitCode = await main(process.argv.includes('--serve'));
}

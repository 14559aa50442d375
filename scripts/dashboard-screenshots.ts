/**
 * `npm run docs:screenshots`: the PNGs in docs/dashboard/, taken in Debian's
 * chromium from a dashboard over a test database with about forty minutes
 * of (virtual-clock) history: completed, failed and sleeping runs, runs
 * waiting for a signal, a parent with children. Uses DATABASE_URL when set
 * (to create a throwaway database), else an embedded PostgreSQL.
 */
import { mkdir } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { z } from 'zod';
import { serveDashboard } from '../src/dashboard/index.ts';
import { defineWorkflow } from '../src/index.ts';
import { createTestEnv } from '../src/testing/index.ts';
import { launchChromium } from '../test/helpers/browser.ts';
import { approval, charge, fanOut, greet } from '../test/helpers/dashboard-fixtures.ts';

const out = fileURLToPath(new URL('../docs/dashboard/', import.meta.url));

const nap = defineWorkflow({ name: 'nap', input: z.object({ seconds: z.number() }) }, async (ctx, { seconds }) => {
  await ctx.step('prepare', () => 'ready');
  await ctx.sleep('rest', `${seconds}s`);
  return ctx.step('wake', () => `rested ${seconds}s`);
});

const env = await createTestEnv({ workflows: [greet, approval, charge, fanOut, nap], pollInterval: 100 });
try {
  // A deterministic pseudo-random history: batches a virtual minute apart.
  let seed = 7;
  const rand = (n: number) => {
    seed = (seed * 1103515245 + 12345) % 2 ** 31;
    return Math.floor(seed / 65536) % n;
  };
  for (let minute = 0; minute < 40; minute++) {
    const started = [];
    for (let i = 0; i < 2 + rand(6); i++) started.push(await env.start(greet, { name: `user-${minute}-${i}` }, { metadata: { plan: rand(3) ? 'pro' : 'free' } }));
    if (rand(4) === 0) started.push(await env.start(charge, { amount: 10 + rand(90) }, { key: `charge-${minute}` }));
    await env.start(nap, { seconds: 20 + rand(150) });
    for (const run of started) await env.waitFor(run.id, ['completed', 'failed']);
    await env.advance('1 minute');
  }
  for (const order of ['A-1', 'A-2', 'A-3']) await env.start(approval, { order }, { key: `order-${order}`, metadata: { customer: 'acme' } });
  const parent = await env.start(fanOut, { names: ['Alan', 'Barbara', 'Claude'] }, { key: 'fan-1' });
  await env.waitFor(parent.id, 'completed');
  const failed = (await env.client.list({ workflow: 'charge', status: 'failed', limit: 1 })).runs[0]!;
  const waiting = (await env.client.list({ workflow: 'approval', limit: 1 })).runs[0]!;
  await env.waitFor(waiting.id, 'waiting');

  const dashboard = await serveDashboard({ pool: env.pool });
  const browser = await launchChromium({ viewport: { width: 1100, height: 760 } });
  try {
    await mkdir(out, { recursive: true });
    const page = await browser.context.newPage();
    const shots: [string, string, boolean][] = [
      ['overview', '', false],
      ['runs', 'runs?limit=20', false],
      ['run', `runs/${waiting.id}`, false],
      ['run-failed', `runs/${failed.id}`, false],
      ['run-parent', `runs/${parent.id}`, true],
    ];
    for (const [name, path, fullPage] of shots) {
      await page.goto(dashboard.url + path);
      await page.screenshot({ path: `${out}${name}.png`, fullPage });
      console.log(`docs/dashboard/${name}.png`);
    }
  } finally {
    await browser.close();
    await dashboard.close();
  }
} finally {
  await env.close();
}

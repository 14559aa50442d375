/**
 * Workflows and runs for the dashboard tests and screenshots: completed,
 * waiting, failed, parent-with-children runs, and one whose output holds
 * markup that must be shown, never run.
 */
import { z } from 'zod';
import type { Client } from '../../src/client/client.ts';
import { NonRetryableError } from '../../src/errors.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { waitFor } from './wait.ts';

export const XSS_TEXT = '<script>window.__pwned = 1</script><img src="x" onerror="window.__pwned = 2">';

export const greet = defineWorkflow({ name: 'greet', input: z.object({ name: z.string() }) }, async (ctx, { name }) => {
  const greeting = await ctx.step('compose', () => `Hello, ${name}!`);
  const shouted = await ctx.step('shout', () => greeting.toUpperCase());
  return { greeting, shouted };
});

export const approval = defineWorkflow({ name: 'approval', input: z.object({ order: z.string() }) }, async (ctx, { order }) => {
  await ctx.step('reserve', () => `reserved ${order}`);
  const answer = await ctx.waitForSignal<{ by: string }>('approved', { timeout: '7 days' });
  if (answer.timedOut) return { order, approved: false };
  await ctx.step('ship', () => `shipped ${order}`);
  return { order, approved: true, by: answer.payload.by };
});

export const charge = defineWorkflow({ name: 'charge', input: z.object({ amount: z.number() }) }, async (ctx, { amount }) => {
  await ctx.step('reserve', () => `reserved ${amount}`);
  return ctx.step('capture', () => {
    throw new NonRetryableError('card processor down');
  });
});

export const fanOut = defineWorkflow({ name: 'fan-out', input: z.object({ names: z.array(z.string()) }) }, async (ctx, { names }) => {
  const results = await Promise.all(names.map((name) => ctx.child(greet, { name }, { key: `fan-${name}` })));
  return results.map((r) => r.shouted);
});

export const echo = defineWorkflow({ name: 'echo', input: z.object({ text: z.string() }) }, async (ctx, { text }) => {
  await ctx.setValue('echoed', text.length);
  await ctx.setValue('echoed', { text });
  return ctx.step('echo', () => ({ text }));
});

/** Waits for the signal `release`: a run others wait on. */
export const hold = defineWorkflow({ name: 'hold', input: z.object({}) }, async (ctx) => {
  await ctx.waitForSignal('release');
  return 'released';
});

/** Waits for another run's end (ctx.waitForRun) and reports it. */
export const watcher = defineWorkflow({ name: 'watcher', input: z.object({ runId: z.string() }) }, async (ctx, { runId }) => {
  try {
    return { output: await ctx.waitForRun(runId) };
  } catch (error) {
    return { failed: String(error) };
  }
});

/** Writes two entries to its stream `progress` and closes it. */
export const streamer = defineWorkflow({ name: 'streamer', input: z.object({}) }, async (ctx) => {
  await ctx.writeStream('progress', { done: 1, of: 2 });
  await ctx.writeStream('progress', { done: 2, of: 2 });
  await ctx.closeStream('progress');
  return 'streamed';
});

/** Answers two requests (ctx.reply, then a refusal with ctx.replyError) and ends. */
export const teller = defineWorkflow({ name: 'teller', input: z.object({}) }, async (ctx) => {
  const first = await ctx.waitForSignal<{ amount: number }>('ask');
  await ctx.reply(first, { balance: 70 });
  const second = await ctx.waitForSignal<{ amount: number }>('ask');
  await ctx.replyError(second, { message: 'insufficient <funds>', code: 'funds' });
  return 'told';
});

export const DASHBOARD_WORKFLOWS = [greet, approval, charge, fanOut, echo, hold, watcher, streamer, teller];

export interface SeededRuns {
  greets: string[];
  approvals: string[];
  failed: string;
  parent: string;
  xss: string;
}

/** Start the runs (a worker serving DASHBOARD_WORKFLOWS must be running) and wait until each has settled. */
export async function seedRuns(client: Client): Promise<SeededRuns> {
  const greets: string[] = [];
  for (const [i, name] of ['Ada', 'Grace', 'Edsger'].entries()) {
    greets.push((await client.start(greet, { name }, { key: `greet-${name.toLowerCase()}`, metadata: { plan: i === 1 ? 'free' : 'pro', region: 'eu' } })).id);
  }
  const approvals = [];
  for (const order of ['A-1', 'A-2']) approvals.push((await client.start(approval, { order }, { key: `order-${order}`, metadata: { customer: 'acme' } })).id);
  const failed = (await client.start(charge, { amount: 42 }, { key: 'charge-42' })).id;
  const parent = (await client.start(fanOut, { names: ['Alan', 'Barbara'] }, { key: 'fan-1' })).id;
  const xss = (await client.start(echo, { text: XSS_TEXT }, { key: '<b>key</b>', metadata: { note: XSS_TEXT } })).id;
  const expected: [string, string][] = [
    ...greets.map((id) => [id, 'completed'] as [string, string]),
    ...approvals.map((id) => [id, 'waiting'] as [string, string]),
    [failed, 'failed'], [parent, 'completed'], [xss, 'completed'],
  ];
  for (const [id, status] of expected) {
    await waitFor(async () => (await client.get(id))?.status === status, { what: `run ${id} ${status}` });
  }
  return { greets, approvals, failed, parent, xss };
}

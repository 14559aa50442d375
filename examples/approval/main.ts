/**
 * Expense approval: a run waits (holding no worker) for a manager's decision,
 * a typed signal defined once with defineSignal and a zod schema, for at most
 * 3 days. It shows:
 * - a decision sent with a signal id: a repeat of that id (a retried webhook,
 *   a mail read twice) is dropped and `client.signal` returns false;
 * - a payload that does not match the schema is refused before it is sent,
 *   and, because the workflow declares its signals, also when it comes from
 *   SQL (a webhook handler in another language, psql), before it is buffered;
 * - a second expense nobody answers times out after 3 days.
 * Days pass in milliseconds: the test kit's virtual clock (`env.advance`)
 * moves the engine's time for timers, timeouts and SQL alike.
 *
 *   npx tsx examples/approval/main.ts
 * Creates its database on DATABASE_URL's server when set, else on an
 * embedded PostgreSQL.
 */
import { z } from 'zod';
import { defineSignal, defineWorkflow, ValidationError } from '../../src/index.ts';
import { createTestEnv } from '../../src/testing/index.ts';

// Shared by the sender (client.signal validates the payload) and the
// receiver (waitForSignal returns it typed).
const decision = defineSignal('expense-decision', z.object({
  approved: z.boolean(),
  by: z.string().min(1),
  note: z.string().optional(),
}));

const expenseApproval = defineWorkflow(
  {
    name: 'expense-approval',
    input: z.object({ expenseId: z.string(), employee: z.string(), amount: z.number().positive() }),
    // Declared signals are registered with their schemas: trellis.signal_send
    // refuses other names and payloads that do not match.
    signals: [decision],
  },
  async (ctx, { expenseId, employee, amount }) => {
    await ctx.step('notify-manager', () => ({ mailed: `manager of ${employee}`, about: expenseId }));
    const answer = await ctx.waitForSignal(decision, { timeout: '3 days' });
    if (answer.timedOut) {
      await ctx.step('escalate-to-finance', () => ({ ticket: `FIN-${expenseId}` }));
      return { expenseId, status: 'expired' as const };
    }
    const { approved, by, note } = answer.payload;
    if (!approved) return { expenseId, status: 'rejected' as const, by, note };
    // Approved expenses are paid out with the next daily payout batch.
    await ctx.sleep('next-payout', '1 day');
    const payout = await ctx.step('reimburse', ({ idempotencyKey }) => ({ payoutId: `po-${idempotencyKey}`, amount }));
    return { expenseId, status: 'reimbursed' as const, by, signalId: answer.signalId, payoutId: payout.payoutId };
  },
);

const env = await createTestEnv({ workflows: [expenseApproval] });
const { client } = env;
const days = (ms: number) => `${(ms / 86_400_000).toFixed(2)} days`;
try {
  // 1. Approved, with a duplicate delivery of the same decision.
  const first = await env.start(expenseApproval, { expenseId: 'exp-1001', employee: 'ada', amount: 420 }, { key: 'exp-1001' });
  const startedAt = await env.now();
  await env.waitFor(first.id, 'waiting');
  await env.advance('1 day');
  console.log(`exp-1001 after 1 day: ${(await client.get(first.id))?.status}`);

  try {
    await client.signal(first.id, decision, { approved: 'yes' } as never);
  } catch (error) {
    console.log(`malformed decision refused: ${error instanceof ValidationError ? 'ValidationError' : String(error)}`);
  }
  // The same mistake from plain SQL is refused too (TR001), nothing is buffered.
  try {
    await env.pool.query(`select trellis.signal_send($1, 'expense-decision', '{"approved": "yes", "by": "grace"}')`, [first.id]);
  } catch (error) {
    console.log(`from SQL: ${(error as { code?: string | undefined }).code} ${(error as Error).message}`);
  }
  // Address the run by (workflow, key), as a mail handler that only knows the expense id would.
  const ref = { workflow: expenseApproval, key: 'exp-1001' };
  const sent = await client.signal(ref, decision, { approved: true, by: 'grace', note: 'ok' }, { id: 'mail-msg-42' });
  const again = await client.signal(ref, decision, { approved: true, by: 'grace', note: 'ok' }, { id: 'mail-msg-42' });
  console.log(`first delivery of mail-msg-42: ${sent}`);
  console.log(`repeat delivery of mail-msg-42: ${again}`);

  await env.waitFor(first.id, 'waiting'); // now asleep until the next payout
  await env.advance('1 day');
  const approved = await first.result({ timeout: '10s' });
  console.log(`exp-1001 result: ${JSON.stringify(approved)}`);
  console.log(`exp-1001 finished ${days((await client.get(first.id))!.finishedAt!.getTime() - startedAt.getTime())} after it started`);
  const { rows } = await env.pool.query('select count(*)::int as n from trellis.signals where run_id = $1', [first.id]);
  console.log(`exp-1001 signals stored: ${rows[0].n}`);

  // 2. Nobody answers: the wait times out after 3 days.
  const second = await env.start(expenseApproval, { expenseId: 'exp-1002', employee: 'bob', amount: 99 }, { key: 'exp-1002' });
  await env.waitFor(second.id, 'waiting');
  await env.advance('3 days');
  console.log(`exp-1002 result: ${JSON.stringify(await second.result({ timeout: '10s' }))}`);
  for (const step of await env.history(second.id)) {
    console.log(`  exp-1002 step ${step.seq} ${step.kind} ${step.name}: ${step.status} ${JSON.stringify(step.output)}`);
  }
} finally {
  await env.close();
}

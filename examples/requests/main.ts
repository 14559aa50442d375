/**
 * Requests: ask a running workflow and wait for its answer (client.request,
 * ctx.reply, ctx.replyError).
 * 1. An account is one long-lived run (keyed by the account). A withdrawal
 *    is a request: the run checks the balance it holds, answers with the
 *    new balance or refuses, and goes on waiting for the next one.
 * 2. A caller whose answer was lost (a timeout, a crash) asks again with the
 *    same request id: nothing is sent twice and it gets the same answer.
 * 3. A reply is a value of the run's history: plain SQL reads it.
 * 4. After the run ends, a repeated request is still answered; a new one is
 *    refused (IllegalTransitionError). A run that ends without answering a
 *    request it received settles it as NotFoundError.
 *
 *   npx tsx examples/requests/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineSignal, defineWorkflow, IllegalTransitionError, RequestRejectedError } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

// The answer has a schema too: ctx.reply is checked against it and client.request is typed by it ({ balance: number }).
const withdraw = defineSignal('withdraw', z.object({ amount: z.number().positive() }), { reply: z.object({ balance: z.number() }) });
const close = defineSignal('close', z.object({}));

const account = defineWorkflow({ name: 'account', input: z.object({ balance: z.number() }), signals: [withdraw, close] },
  async (ctx, { balance }) => {
    for (;;) {
      const next = await ctx.race({ withdraw: ctx.waitForSignal(withdraw), close: ctx.waitForSignal(close) });
      if (next.key === 'close') return { closedWith: balance };
      const ask = next.value;
      if (ask.timedOut) continue;
      if (ask.payload.amount > balance) {
        await ctx.replyError(ask, { message: `insufficient funds: ${balance} left`, code: 'insufficient-funds', details: { balance } });
        continue;
      }
      balance -= ask.payload.amount;
      await ctx.step('ledger', () => `-${ask.payload.amount}`); // the side effect, once per request
      await ctx.reply(ask, { balance });
    }
  });

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const client = createClient({ pool });
const worker = createWorker({ pool, workflows: [account] });
try {
  await worker.start();
  const acct = { workflow: account, key: 'acct-ada' };
  const run = await client.start(account, { balance: 100 }, { key: acct.key });

  // 1. Answers and a refusal; the run goes on after both.
  const first = await client.request(acct, withdraw, { amount: 30 }, { id: 'w-1', timeout: '30s' });
  console.log(`withdraw 30: balance ${first.balance}`);
  try {
    await client.request(acct, withdraw, { amount: 500 }, { id: 'w-2', timeout: '30s' });
  } catch (error) {
    if (!(error instanceof RequestRejectedError)) throw error;
    const { code } = error.details.error as { code: string };
    console.log(`withdraw 500: refused (${code}): ${error.message}`);
  }

  // 2. The caller of w-1 lost its answer and asks again: the same answer, withdrawn once.
  const again = await client.request(acct, withdraw, { amount: 30 }, { id: 'w-1', timeout: '30s' });
  const second = await client.request(acct, withdraw, { amount: 20 }, { id: 'w-3', timeout: '30s' });
  console.log(`withdraw 30 again (w-1): balance ${again.balance}; then withdraw 20: balance ${second.balance}`);

  // 3. Replies are run values: SQL reads them.
  const { rows } = await pool.query<{ key: string; value: unknown }>(
    `select key, value from trellis.run_values($1) where key like 'reply:%' order by key`, [run.id]);
  for (const row of rows) console.log(`sql: ${row.key} = ${JSON.stringify(row.value)}`);
  const { rows: ledger } = await pool.query(`select count(*)::int as n from trellis.steps where run_id = $1 and name = 'ledger'`, [run.id]);
  console.log(`sql: ${ledger[0].n} ledger entries for 4 requests (one refused, one a repeat)`);

  // 4. After the run ends, a repeat is still answered; a new request is refused.
  await client.signal(acct, close, {});
  console.log(`result: ${JSON.stringify(await run.result({ timeout: '30s' }))}`);
  const late = await client.request(run.id, withdraw, { amount: 20 }, { id: 'w-3', timeout: '30s' });
  console.log(`after the end: w-3 again: balance ${late.balance}`);
  try {
    await client.request(run.id, withdraw, { amount: 1 }, { id: 'w-4', timeout: '30s' });
  } catch (error) {
    console.log(`after the end: w-4: ${error instanceof IllegalTransitionError ? 'IllegalTransitionError' : String(error)}`);
  }
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}

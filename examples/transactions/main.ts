/**
 * Transactional steps (docs/workflows.md#transactional-steps): a transfer
 * between two of the application's own accounts, exactly once.
 * 1. `ctx.transaction('move', …)` debits one account, credits the other and
 *    writes a ledger row in one serializable transaction, which also records
 *    the step. Its first attempt fails after its writes (a simulated fault):
 *    they roll back with it, and the retry commits them once.
 * 2. In the same kind of step, `client.start(receipt, …, { tx })` starts the
 *    receipt workflow: the start commits with the step, so a crash or a
 *    retry can never start a second receipt.
 * 3. The balances, the ledger and the runs show each effect once.
 *
 *   npx tsx examples/transactions/main.ts
 * Uses DATABASE_URL when set, else an embedded PostgreSQL.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient, createWorker, defineWorkflow } from '../../src/index.ts';
import { exampleDatabase } from '../support/database.ts';

const database = await exampleDatabase();
const pool = new pg.Pool({ connectionString: database.url });
pool.on('error', () => undefined); // idle connections closed by a stopping server
const client = createClient({ pool });

const receipt = defineWorkflow({ name: 'transfer-receipt', input: z.object({ transfer: z.number() }) }, async (ctx, { transfer }) => {
  return ctx.step('send', () => `receipt for transfer ${transfer} sent`);
});

const transfer = defineWorkflow({
  name: 'transfer',
  input: z.object({ from: z.string(), to: z.string(), cents: z.number().int().positive() }),
}, async (ctx, { from, to, cents }) => {
  const id = await ctx.transaction('move', async ({ tx, attempt }) => {
    const debited = await tx.query('update wallet_accounts set cents = cents - $2 where name = $1 and cents >= $2', [from, cents]);
    if (debited.rowCount !== 1) throw new Error(`${from} cannot pay ${cents}`);
    await tx.query('update wallet_accounts set cents = cents + $2 where name = $1', [to, cents]);
    const { rows } = await tx.query<{ id: number }>(
      'insert into wallet_ledger (source, target, cents) values ($1, $2, $3) returning id::int as id', [from, to, cents]);
    console.log(`move: attempt ${attempt} wrote ledger row ${rows[0]!.id}`);
    if (attempt === 1) throw new Error('simulated fault after the writes'); // everything above rolls back
    return rows[0]!.id;
  }, { isolation: 'serializable', retry: { maxAttempts: 3, initialDelay: '50ms' } });
  const started = await ctx.transaction('start-receipt', async ({ tx }) =>
    (await client.start(receipt, { transfer: id }, { tx })).id);
  return { transfer: id, receipt: started };
});

const worker = createWorker({ pool, workflows: [transfer, receipt] });
try {
  await pool.query(`create table if not exists wallet_accounts (name text primary key, cents bigint not null);
    create table if not exists wallet_ledger (id bigserial primary key, source text not null, target text not null, cents bigint not null);
    truncate wallet_ledger restart identity;
    insert into wallet_accounts values ('ada', 10000), ('lin', 0) on conflict (name) do update set cents = excluded.cents`);
  await worker.start();

  const run = await client.start(transfer, { from: 'ada', to: 'lin', cents: 2500 });
  const out = await run.result({ timeout: '30s' });
  console.log(`receipt: ${await client.result(out.receipt, { timeout: '30s' })}`);

  const { rows: balances } = await pool.query<{ name: string; cents: string }>('select name, cents from wallet_accounts order by name');
  console.log(`balances: ${balances.map((b) => `${b.name} ${b.cents}`).join(', ')}`);
  const { rows: [ledger] } = await pool.query<{ n: number }>('select count(*)::int as n from wallet_ledger');
  console.log(`ledger rows: ${ledger!.n}`);
  const { rows: [receipts] } = await pool.query<{ n: number }>(`select count(*)::int as n from trellis.runs where workflow = 'transfer-receipt' and input->>'transfer' = $1`, [String(out.transfer)]);
  console.log(`receipt runs: ${receipts!.n}`);
  const [move] = (await client.history(run.id)).filter((c) => c.name === 'move');
  console.log(`move step: ${move!.status} after ${move!.attempts} attempts`);
} finally {
  await worker.stop();
  await client.close();
  await pool.end();
  await database.stop();
}

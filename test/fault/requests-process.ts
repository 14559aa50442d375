/**
 * A worker in its own process for the requests fault test. Runs
 * fault-account: an account run per key that answers withdraw requests
 * (ctx.reply with the new balance, or ctx.replyError when the balance is
 * short) and balance requests, and continues as new (without its history)
 * every 10 requests. env: DATABASE_URL. Prints "ready" once claiming.
 */
import pg from 'pg';
import { z } from 'zod';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { silentLogger } from '../../src/protocol/logger.ts';

const pool = new pg.Pool({ connectionString: process.env.DATABASE_URL, max: 6 });

export const faultAccount = defineWorkflow({ name: 'fault-account', input: z.object({ balance: z.number() }) }, async (ctx, { balance }) => {
  for (let served = 0; served < 10; served++) {
    const next = await ctx.race({ withdraw: ctx.waitForSignal<{ amount: number }>('withdraw'), balance: ctx.waitForSignal('balance') });
    const ask = next.value;
    if (ask.timedOut) continue;
    if (next.key === 'balance') {
      await ctx.reply(ask, { balance });
      continue;
    }
    const { amount } = ask.payload as { amount: number };
    if (amount > balance) {
      await ctx.replyError(ask, { message: 'insufficient funds', code: 'funds', details: { balance } });
      continue;
    }
    balance -= amount;
    await ctx.reply(ask, { balance });
  }
  return ctx.continueAsNew({ balance });
});

const worker = createWorker({ pool, workflows: [faultAccount], pollInterval: 200, leaseDuration: 2000, concurrency: 50, logger: silentLogger });
await worker.start();
process.stdout.write('ready\n');
process.on('SIGTERM', () => {
  void worker.stop({ timeout: 1000 }).then(() => pool.end()).then(() => process.exit(0));
});

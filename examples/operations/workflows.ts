/**
 * The workflows `trellis worker examples/operations/workflows.ts` serves:
 * every exported definition (or array of them) is collected.
 */
import { z } from 'zod';
import { defineSignal, defineWorkflow } from '../../src/index.ts';

export const approved = defineSignal('approved', z.object({ by: z.string() }));

export const expense = defineWorkflow(
  { name: 'expense', input: z.object({ id: z.string(), amount: z.number() }), signals: [approved] },
  async (ctx, { id, amount }) => {
    ctx.log.info('expense submitted', { id });                 // logged once, not again on the replay after the signal
    await ctx.step('check-policy', () => amount < 1000);
    const answer = await ctx.waitForSignal(approved, { timeout: '3 days' });
    if (answer.timedOut) return { paid: false };
    ctx.log.info('expense approved', { id, by: answer.payload.by });
    await ctx.step('pay', () => ({ paid: amount }));
    return { paid: true, by: answer.payload.by };
  },
);

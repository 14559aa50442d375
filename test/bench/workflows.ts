/** The no-op workflows every Trellis measurement runs: 1 step and 10 steps. */
import { z } from 'zod';
import { defineWorkflow } from './runtime.ts';

const input = z.object({ i: z.number().optional() }).passthrough();

export const bench1 = defineWorkflow({ name: 'bench-1', input }, async (ctx) => {
  await ctx.step('noop', () => null);
  return null;
});

export const bench10 = defineWorkflow({ name: 'bench-10', input }, async (ctx) => {
  for (let i = 0; i < 10; i++) await ctx.step(`noop-${i}`, () => i);
  return null;
});

/** Workflow name and steps per run of each kind. */
export const KINDS = { '1-step': { name: 'bench-1', steps: 1 }, '10-step': { name: 'bench-10', steps: 10 } } as const;
export type Kind = keyof typeof KINDS;

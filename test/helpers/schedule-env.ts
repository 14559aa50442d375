/**
 * What the schedule tests share: a one-step job, a run that waits for the
 * signal `go`, and a test kit env whose ticker looks every 20 ms.
 */
import { z } from 'zod';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';

/** The two workflows, named `<prefix>job` and `<prefix>held`. */
export function scheduleWorkflows(prefix = '') {
  const job = defineWorkflow({ name: `${prefix}job`, input: z.object({ n: z.number() }) }, async (ctx, { n }) => ctx.step('double', () => n * 2));
  const held = defineWorkflow({ name: `${prefix}held`, input: z.object({}) }, async (ctx) => {
    await ctx.waitForSignal('go');
    return 'done';
  });
  return { job, held };
}

/** A test kit env serving `workflows`, its schedule ticker every 20 ms. */
export function scheduleTestEnv(workflows: ReturnType<typeof scheduleWorkflows>): Promise<TestEnv> {
  return createTestEnv({ workflows: [workflows.job, workflows.held], schedules: { interval: 20 } });
}

/** The bench's state machine (10 transitions, s0 → s10) and template (10 no-op steps). */
import { z } from 'zod';
import { createStepRegistry, defineStateMachine, templateWorkflow } from './runtime.ts';

const STATUSES = Array.from({ length: 11 }, (_, i) => `s${i}`) as [string, ...string[]];

let builder = defineStateMachine({ name: 'bench-machine-10', status: z.enum(STATUSES), object: z.object({ i: z.number() }) });
for (let i = 0; i < 10; i++) {
  const to = `s${i + 1}`;
  builder = builder.step(`s${i}`, (run) => {
    run.object.i = i + 1;
    return to;
  }, to);
}
export const benchMachine = builder.build();

const registry = createStepRegistry();
for (let i = 0; i < 10; i++) registry.registerStep(`noop-${i}`, (state) => { state.i = i; });
export const benchTemplate = templateWorkflow('bench-10', registry);
export const BENCH_TEMPLATE = { steps: Array.from({ length: 10 }, (_, i) => ({ name: `noop-${i}` })) };

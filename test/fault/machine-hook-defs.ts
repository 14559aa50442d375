/** The state machine of the machine-hook fault test, shared by the test and its worker process. */
import { z } from 'zod';
import { defineStateMachine } from '../../src/state-machine/define.ts';
import type { MachineHookEvent } from '../../src/state-machine/types.ts';

export function hookedMachine(onComplete: (event: MachineHookEvent<'new' | 'checked' | 'done', { n: number }>) => unknown) {
  return defineStateMachine({ name: 'machine-hook-kill', status: z.enum(['new', 'checked', 'done']), object: z.object({ n: z.number() }) })
    .step('new', (run) => {
      run.object.n *= 2;
      return 'checked';
    }, 'checked')
    .step('checked', () => 'done', 'done')
    .onComplete(async (event) => { await onComplete(event); })
    .build();
}

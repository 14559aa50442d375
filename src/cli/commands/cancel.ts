/** `trellis cancel <run>` */
import { controlCommand } from '../run-control.ts';

export const cancel = controlCommand({
  name: 'cancel',
  summary: 'cancel a run and its children',
  description: 'A run that never started is cancelled at once. A started one (waiting, paused, pending or running) prints pending\n'
    + 'or running: it ends cancelled a moment later, when a worker replays it and its code sees CancelledError (its running steps aborted).',
  reason: true,
  done: 'cancelled',
  totalNote: 'any that had started ends cancelled at its next durable call, or completed if its code returns first',
  act: (client, run, reason) => client.cancel(run, reason),
  many: (client, filter, options) => client.cancelMany(filter, options),
});

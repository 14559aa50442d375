/** `trellis pause <run>` */
import { controlCommand } from '../run-control.ts';

export const pause = controlCommand({
  name: 'pause',
  summary: 'park a run (a running one after its current step)',
  description: 'A paused run does nothing until `trellis resume`.',
  reason: true,
  done: 'paused',
  act: (client, run, reason) => client.pause(run, reason),
  many: (client, filter, options) => client.pauseMany(filter, options),
});

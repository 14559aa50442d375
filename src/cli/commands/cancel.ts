/** `trellis cancel <run>` */
import { controlCommand } from '../run-control.ts';

export const cancel = controlCommand({
  name: 'cancel',
  summary: 'cancel a run and its children',
  description: 'A waiting or pending run is cancelled at once; a running one at its next checkpoint, its running steps aborted.',
  reason: true,
  act: (client, run, reason) => client.cancel(run, reason),
});

/** `trellis resume <run>` */
import { controlCommand } from '../run-control.ts';

export const resume = controlCommand({
  name: 'resume',
  summary: 'resume a paused run',
  description: 'Exit code 4 when the run is not paused.',
  done: 'resumed',
  act: (client, run) => client.resume(run),
  many: (client, filter, options) => client.resumeMany(filter, options),
});

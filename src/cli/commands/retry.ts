/** `trellis retry <run>` */
import { controlCommand } from '../run-control.ts';

export const retry = controlCommand({
  name: 'retry',
  summary: 'run a failed run again from its failed step',
  description: 'Exit code 4 when the run did not fail.',
  done: 'retried',
  act: (client, run) => client.retry(run),
  many: (client, filter, options) => client.retryMany(filter, options),
});

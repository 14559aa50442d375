/** `trellis dashboard`: serve the web dashboard (src/dashboard) until SIGTERM or SIGINT. */
import { serveDashboard } from '../../dashboard/index.ts';
import { checkSchema } from '../../schema/install.ts';
import { integer } from '../args.ts';
import type { Command } from '../command.ts';

export const dashboard: Command = {
  name: 'dashboard',
  summary: 'serve the web dashboard (overview, runs, a run\'s timeline, actions) until SIGTERM / SIGINT',
  description: 'Binds to 127.0.0.1 unless --host says otherwise; another host needs a token. The token is read from\n'
    + '$TRELLIS_DASHBOARD_TOKEN (not from the command line, where other users of the machine could see it).\n'
    + 'With --read-only the actions are hidden and refused (a role granted trellis_reader is then enough).',
  options: {
    port: { type: 'string', value: 'PORT', description: 'the port (default 4000; 0 for any free port)' },
    host: { type: 'string', value: 'HOST', description: 'the address to bind (default 127.0.0.1)' },
    'base-path': { type: 'string', value: 'PATH', description: 'serve under this path, e.g. /trellis' },
    'read-only': { type: 'boolean', description: 'no actions: browse only' },
  },
  async run({ options, pool, readPool, io, interrupted }) {
    const port = integer(options.port as string | undefined, 'port', 0, 65535, 4000);
    // Before listening, as every other command: a database without the schema (or behind this CLI) exits 6, not a server of 500s.
    await checkSchema(pool());
    const stop = interrupted();
    const served = await serveDashboard({
      pool: pool(),
      readPool: readPool(),
      port,
      host: (options.host as string | undefined) ?? '127.0.0.1',
      basePath: options['base-path'] as string | undefined,
      readOnly: options['read-only'] === true,
      token: process.env.TRELLIS_DASHBOARD_TOKEN || undefined,
    });
    io.out(`dashboard on ${served.url}\n`);
    await stop;
    await served.close();
  },
};

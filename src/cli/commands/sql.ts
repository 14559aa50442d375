/** `trellis sql`: print the install script, for DBAs who apply DDL by hand. */
import { installScript, latestMigration } from '../../schema/install.ts';
import { integer } from '../args.ts';
import type { Command } from '../command.ts';

export const sql: Command = {
  name: 'sql',
  summary: 'print the install script (migrations after --from, then all functions)',
  description: 'Pipe it into psql: trellis sql | psql "$DATABASE_URL". Reads no database.',
  database: false,
  options: {
    from: { type: 'string', value: 'N', description: 'leave out migrations up to and including N (default 0: all of them)' },
  },
  async run({ options, io }) {
    const from = integer(options.from as string | undefined, 'from', 0, latestMigration(), 0);
    io.out(installScript(from));
  },
};

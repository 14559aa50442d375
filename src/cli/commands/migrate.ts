/** `trellis migrate`: install or upgrade the schema. */
import { migrate as install } from '../../schema/install.ts';
import type { Command } from '../command.ts';

export const migrate: Command = {
  name: 'migrate',
  summary: 'install or upgrade the trellis schema (safe to run from many replicas at once)',
  database: 'url', // its own connections: no --read-url (it writes), no --query-timeout (an upgrade may rewrite a large table for longer)
  description: 'Applies the migrations the database lacks and re-applies every function, in one transaction under a waiting advisory lock.',
  async run({ databaseUrl, io }) {
    // Its own connection, without --query-timeout: an upgrade may rewrite a large table for longer.
    const result = await install(databaseUrl());
    io.out(result.newerSchemaKept
      ? `schema at ${result.version}, newer than this CLI, whose release declared this CLI's migration compatible: nothing changed\n`
      : result.applied.length
        ? `applied migrations ${result.applied.join(', ')}; schema at ${result.version}\n`
        : `schema already at ${result.version}${result.functionsApplied ? '; functions re-applied' : ''}\n`);
  },
};

/** `trellis status`: the schema version and how many runs are in each status. */
import { latestMigration } from '../../schema/install.ts';
import { JSON_OPTION, type Command } from '../command.ts';
import { table, toJson } from '../format.ts';

export const status: Command = {
  name: 'status',
  summary: 'show the schema version and run counts by status',
  options: { ...JSON_OPTION },
  async run({ client, readPool, options, io }) {
    await client();
    const { rows } = await readPool().query<{ status: string; n: number }>(
      'select status, pg_catalog.count(*)::int as n from trellis.runs group by status order by status');
    if (options.json) {
      io.out(toJson({ migration: latestMigration(), runs: Object.fromEntries(rows.map((r) => [r.status, r.n])) }));
      return;
    }
    io.out(`schema at migration ${latestMigration()}\n`);
    if (rows.length) io.out(table(['status', 'runs'], rows.map((r) => [r.status, String(r.n)])));
    else io.out('no runs\n');
  },
};

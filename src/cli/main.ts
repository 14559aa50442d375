/**
 * The `trellis` command line.
 *   trellis migrate [--database-url URL]   install or upgrade the schema
 *   trellis sql [--from N]                 print the install script (for DBAs)
 *   trellis status [--database-url URL]    schema version and run counts
 * DATABASE_URL is used when --database-url is not given.
 */
import { realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import pg from 'pg';
import { isTrellisError } from '../errors.ts';
import { checkSchema, installScript, latestMigration, migrate } from '../schema/install.ts';

const USAGE = `usage: trellis <command> [options]

commands:
  migrate            install or upgrade the trellis schema (safe to run from many replicas)
  sql [--from N]     print the install script (migrations after N, then all functions)
  status             show the schema version and run counts by status

options:
  --database-url URL   connection string (default: $DATABASE_URL)
  -h, --help           show this help`;

export async function main(argv: string[], out: (s: string) => void = (s) => process.stdout.write(s)): Promise<number> {
  let parsed;
  try {
    parsed = parseArgs({
      args: argv,
      allowPositionals: true,
      options: { 'database-url': { type: 'string' }, from: { type: 'string' }, help: { type: 'boolean', short: 'h' } },
    });
  } catch (error) {
    process.stderr.write(`trellis: ${(error as Error).message}\n${USAGE}\n`);
    return 2;
  }
  const { values, positionals } = parsed;
  const [command] = positionals;
  if (values.help || !command) {
    out(`${USAGE}\n`);
    return command || values.help ? 0 : 2;
  }
  if (command === 'sql') {
    const from = values.from === undefined ? 0 : Number(values.from);
    if (!Number.isInteger(from) || from < 0 || from > latestMigration()) {
      process.stderr.write(`trellis: --from must be a migration number from 0 to ${latestMigration()}\n`);
      return 2;
    }
    out(installScript(from));
    return 0;
  }
  if (command !== 'migrate' && command !== 'status') {
    process.stderr.write(`trellis: unknown command ${JSON.stringify(command)}\n${USAGE}\n`);
    return 2;
  }
  const url = values['database-url'] ?? process.env.DATABASE_URL;
  if (!url) {
    process.stderr.write('trellis: set DATABASE_URL or pass --database-url\n');
    return 2;
  }
  const pool = new pg.Pool({ connectionString: url, max: 1 });
  try {
    if (command === 'migrate') {
      const result = await migrate(pool);
      out(result.applied.length
        ? `applied migrations ${result.applied.join(', ')}; schema at ${result.version}\n`
        : `schema already at ${result.version}${result.functionsApplied ? '; functions re-applied' : ''}\n`);
      return 0;
    }
    await checkSchema(pool);
    const { rows } = await pool.query<{ status: string; n: number }>(
      'select status, count(*)::int as n from trellis.runs group by status order by status');
    out(`schema at migration ${latestMigration()}\n`);
    for (const r of rows) out(`${r.status.padEnd(10)} ${r.n}\n`);
    return 0;
  } catch (error) {
    process.stderr.write(`trellis: ${isTrellisError(error) ? `[${error.code}] ` : ''}${(error as Error).message}\n`);
    return 1;
  } finally {
    await pool.end();
  }
}

/**
 * True when this file is the program node was started with. Compares real
 * paths, not URL strings: `file://${argv[1]}` is not a URL for a path with a
 * space or on Windows, and a symlinked entry point has another spelling.
 */
function isMainModule(): boolean {
  const entry = process.argv[1];
  if (!entry) return false;
  try {
    return realpathSync(entry) === realpathSync(fileURLToPath(import.meta.url));
  } catch {
    return false;
  }
}

if (isMainModule()) {
  process.exit(await main(process.argv.slice(2)));
}

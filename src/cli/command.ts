/**
 * What a `trellis` command is: a name, its help, its options, and `run`.
 * Each command lives in its own file under commands/ and is listed once in
 * registry.ts; parsing, --help, the database connection and error reporting
 * are shared (main.ts).
 */
import type { Pool } from '../db/pg.ts';
import type { Client } from '../client/client.ts';
import type { Io } from './io.ts';

export interface OptionSpec {
  type: 'string' | 'boolean';
  short?: string | undefined;
  multiple?: boolean | undefined;
  /** The value's name in the help (`--limit N`). */
  value?: string | undefined;
  description: string;
}

/**
 * A `trellis` command. Export one from a file in commands/ and list it in registry.ts.
 *
 * @example
 * export const hello: Command = {
 *   name: 'hello', summary: 'say hello to a run', args: '<run>', positionals: [1, 1],
 *   async run({ args, client, io }) { io.out(`${(await (await client()).get(runId(args[0])))?.status}\n`); },
 * };
 */
export interface Command {
  name: string;
  /** One line for `trellis --help`. */
  summary: string;
  /** Positional arguments, as the usage line shows them (`<run>`, `[input]`). */
  args?: string | undefined;
  /** Paragraphs printed under the usage line of `trellis <name> --help`. */
  description?: string | undefined;
  options?: Record<string, OptionSpec> | undefined;
  /**
   * Needs a database (default true): adds --database-url, --read-url and
   * --query-timeout. `'url'`: a command that opens its own connections
   * from `databaseUrl()` (migrate, worker) takes --database-url alone.
   */
  database?: boolean | 'url' | undefined;
  /** Least and most positional arguments (default 0 and 0). */
  positionals?: [min: number, max: number] | undefined;
  run(ctx: CommandContext): Promise<number | void>;
}

export type OptionValues = Record<string, string | boolean | string[] | undefined>;

export interface CommandContext {
  args: string[];
  options: OptionValues;
  io: Io;
  verbose: boolean;
  /** The connection string (--database-url or $DATABASE_URL); a UsageError when neither is set. */
  databaseUrl(): string;
  /** A pool on the database (opened on first use, closed after the command). */
  pool(): Pool;
  /**
   * A pool for reads: on the standby of --read-url or $TRELLIS_READ_URL
   * (opened on first use, closed after the command), else `pool()`.
   */
  readPool(): Pool;
  /** A client on that pool, after checking the schema is installed and current. */
  client(): Promise<Client>;
  /**
   * Resolves with the signal's name when the process is asked to stop
   * (SIGINT / SIGTERM). Calling it takes over those signals: long-running
   * commands (worker, purge) call it and stop gracefully.
   */
  interrupted(): Promise<string>;
}

/** Options every command takes. */
export const COMMON_OPTIONS: Record<string, OptionSpec> = {
  help: { type: 'boolean', short: 'h', description: 'show this help' },
  verbose: { type: 'boolean', short: 'v', description: 'print stack traces of errors' },
};

export const DATABASE_URL_OPTION: Record<string, OptionSpec> = {
  'database-url': { type: 'string', value: 'URL', description: 'PostgreSQL connection string (default: $DATABASE_URL)' },
};

export const DATABASE_OPTION: Record<string, OptionSpec> = {
  ...DATABASE_URL_OPTION,
  'read-url': { type: 'string', value: 'URL', description: 'a streaming standby for reads (default: $TRELLIS_READ_URL; see docs/scaling.md)' },
  'query-timeout': { type: 'string', value: 'DURATION', description: 'how long one statement may go unanswered (a held lock, a dead connection) before the command fails with exit 5 (default 30s)' },
};

export const JSON_OPTION: Record<string, OptionSpec> = {
  json: { type: 'boolean', description: 'print JSON instead of text' },
};

/** Every option `command` takes, common ones included. */
export function optionsOf(command: Command): Record<string, OptionSpec> {
  const database = command.database === false ? {} : command.database === 'url' ? DATABASE_URL_OPTION : DATABASE_OPTION;
  return { ...command.options, ...database, ...COMMON_OPTIONS };
}

/** `trellis <name> --help`. */
export function commandHelp(command: Command): string {
  const lines = [`usage: trellis ${command.name}${command.args ? ` ${command.args}` : ''} [options]`, '', command.summary];
  if (command.description) lines.push('', command.description);
  lines.push('', 'options:');
  const entries = Object.entries(optionsOf(command)).map(([name, o]) => {
    const flag = `${o.short ? `-${o.short}, ` : '    '}--${name}${o.type === 'string' ? ` ${o.value ?? 'VALUE'}` : ''}`;
    return [flag, o.description + (o.multiple ? ' (repeatable)' : '')] as const;
  });
  const width = Math.max(...entries.map(([f]) => f.length)) + 2;
  for (const [flag, text] of entries) lines.push(`  ${flag.padEnd(width)}${text}`);
  return `${lines.join('\n')}\n`;
}

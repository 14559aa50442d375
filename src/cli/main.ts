/**
 * The `trellis` command line: parses the command and its options, opens the
 * database on demand, runs the command, and turns what it throws into one
 * line on stderr and an exit code (exit-codes.ts, docs/cli.md). The commands
 * are in commands/, listed in registry.ts.
 */
import { readFileSync, realpathSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { parseArgs } from 'node:util';
import { type ClientConfig, Pool } from '../db/pg.ts';
import { boundedConfig, DEFAULT_TIMEOUTS, resolveTimeouts } from '../db/connection.ts';
import { duration } from './args.ts';
import { type Client, createClient } from '../client/client.ts';
import { isTrellisError } from '../errors.ts';
import { checkSchema } from '../schema/install.ts';
import { silentLogger } from '../protocol/logger.ts';
import { SCHEMA_MIGRATION, SCHEMA_SQL_REVISION } from '../protocol/schema-version.generated.ts';
import { type Command, type CommandContext, commandHelp, type OptionValues, optionsOf } from './command.ts';
import { EXIT, exitCodeOf, UsageError } from './exit-codes.ts';
import { flush, type Io, processIo } from './io.ts';
import { COMMANDS } from './registry.ts';

/** The package's version (package.json sits two folders up, from src/cli and from dist/cli alike). */
export function version(): string {
  return (JSON.parse(readFileSync(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version;
}

function topHelp(): string {
  const width = Math.max(...COMMANDS.map((c) => c.name.length)) + 2;
  return [
    'usage: trellis <command> [options]',
    '',
    'commands:',
    ...COMMANDS.map((c) => `  ${c.name.padEnd(width)}${c.summary}`),
    '',
    'Every command takes --help, --verbose, and (when it uses the database) --database-url URL (default: $DATABASE_URL);',
    'all but migrate and worker also --read-url URL, a streaming standby that serves the reads (default: $TRELLIS_READ_URL),',
    'and --query-timeout DURATION.',
    'trellis --version prints the version. Exit codes: docs/cli.md.',
    '',
  ].join('\n');
}

/** The first line of an error message, bounded (a bad value is quoted by the error itself). */
function oneLine(error: unknown): string {
  const message = error instanceof Error ? error.message : String(error);
  const first = message.split('\n')[0] ?? '';
  return first.length > 500 ? `${first.slice(0, 500)}…` : first;
}

/** parseArgs's messages go on with a hint about `--`; the first sentence is the one that matters. */
function usageMessage(error: unknown): string {
  const message = String((error as Error)?.message ?? error);
  // A value that starts with a dash (a negative number: --priority -5) reads as another option: say how to give it.
  const dashed = /^Option '(--[\w-]+)[^']*' argument is ambiguous/.exec(message);
  if (dashed) return `${dashed[1]} takes a value starting with "-" only as ${dashed[1]}=VALUE (${dashed[1]}=-5)`;
  return oneLine(error).replace(/\. To specify a positional argument.*$/, '');
}

export interface MainOptions {
  /** Resolves when the process is asked to stop (SIGINT, SIGTERM); listening starts at the first call. */
  interrupted?: (() => Promise<string>) | undefined;
}

/**
 * Run `trellis` with `argv` (without node and the script): returns the exit code.
 *
 * @example
 * const code = await main(['ls', '--status', 'failed', '--json'], captureIo());
 */
export async function main(argv: string[], io: Io = processIo(), options: MainOptions = {}): Promise<number> {
  const [name, ...rest] = argv;
  if (name === '--version' || name === '-V') {
    // The schema this code installs and requires tells releases apart where the package version may not.
    io.out(`${version()} (schema migration ${SCHEMA_MIGRATION}, SQL revision ${SCHEMA_SQL_REVISION})\n`);
    return EXIT.ok;
  }
  if (name === undefined || name === '--help' || name === '-h' || name === 'help') {
    const target = name === 'help' ? COMMANDS.find((c) => c.name === rest[0]) : undefined;
    if (name === undefined) {
      io.err(topHelp());
      return EXIT.usage;
    }
    io.out(target ? commandHelp(target) : topHelp());
    return EXIT.ok;
  }
  const command = COMMANDS.find((c) => c.name === name);
  if (!command) {
    const what = name.startsWith('-') ? `unknown option ${JSON.stringify(name.slice(0, 60))} (give a command first)` : `unknown command ${JSON.stringify(name.slice(0, 60))}`;
    io.err(`trellis: ${what}; see trellis --help\n`);
    return EXIT.usage;
  }
  return runCommand(command, rest, io, options);
}

async function runCommand(command: Command, argv: string[], io: Io, o: MainOptions): Promise<number> {
  let values: OptionValues;
  let args: string[];
  try {
    const specs = optionsOf(command);
    const parsed = parseArgs({ args: argv, allowPositionals: true, strict: true, tokens: true, options: specs as never });
    values = parsed.values as OptionValues;
    args = parsed.positionals;
    // A value option given twice kept the last one silently (`--limit 5 … --limit 50`): say so instead.
    const given = new Set<string>();
    for (const token of parsed.tokens) {
      if (token.kind !== 'option' || specs[token.name]?.type !== 'string' || specs[token.name]?.multiple) continue;
      if (given.has(token.name)) throw new Error(`--${token.name} is given more than once (it takes one value)`);
      given.add(token.name);
    }
  } catch (error) {
    io.err(`trellis ${command.name}: ${usageMessage(error)}; see trellis ${command.name} --help\n`);
    return EXIT.usage;
  }
  if (values.help) {
    io.out(commandHelp(command));
    return EXIT.ok;
  }
  const verbose = values.verbose === true;
  let pool: Pool | undefined;
  let readPool: Pool | undefined;
  let client: Promise<Client> | undefined;
  const databaseUrl = (): string => {
    const url = (values['database-url'] as string | undefined) ?? io.env.DATABASE_URL;
    if (!url) throw new UsageError('set DATABASE_URL or pass --database-url');
    return connectionString(url, values['database-url'] === undefined ? 'DATABASE_URL' : '--database-url');
  };
  // Every wait on the CLI's connections is bounded, as the engine's own
  // connections are (docs/reliability.md): a statement that gets no answer
  // (a row lock another transaction holds, a connection that died silently)
  // fails after --query-timeout, and keepalive probes find a dead peer.
  let bounds: ClientConfig | undefined;
  const bounded = (): ClientConfig => {
    const given = values['query-timeout'] as string | undefined;
    return (bounds ??= boundedConfig(resolveTimeouts({
      queryTimeout: given === undefined ? DEFAULT_TIMEOUTS.queryMs : duration(given, 'query-timeout'),
    })));
  };
  const openPool = (): Pool => {
    if (pool) return pool;
    pool = new Pool({ connectionString: databaseUrl(), max: 4, application_name: 'trellis-cli', ...bounded() });
    // An idle connection dropped by the server surfaces in the next query.
    pool.on('error', () => undefined);
    return pool;
  };
  const openReadPool = (): Pool => {
    const url = (values['read-url'] as string | undefined) ?? (io.env.TRELLIS_READ_URL || undefined);
    if (!url) return openPool();
    readPool ??= new Pool({ connectionString: connectionString(url, '--read-url'), max: 4, application_name: 'trellis-cli-read', ...bounded() });
    readPool.on('error', () => undefined);
    return readPool;
  };
  const ctx: CommandContext = {
    args,
    options: values,
    io,
    verbose,
    databaseUrl,
    pool: openPool,
    readPool: openReadPool,
    client: () => {
      client ??= (async () => {
        const p = openPool();
        await checkSchema(p);
        const r = openReadPool();
        return createClient({ pool: p, ...(r === p ? {} : { readPool: r }), handoff: false, logger: silentLogger });
      })();
      return client;
    },
    interrupted: o.interrupted ?? (() => new Promise<string>(() => undefined)),
  };
  try {
    const [min, max] = command.positionals ?? [0, 0];
    if (args.length < min) throw new UsageError(`missing argument: trellis ${command.name} ${command.args ?? ''}`.trimEnd());
    if (args.length > max) throw new UsageError(`unexpected argument ${JSON.stringify(args[max]?.slice(0, 60))}`);
    return (await command.run(ctx)) ?? EXIT.ok;
  } catch (error) {
    const code = exitCodeOf(error);
    const tag = isTrellisError(error) ? ` [${error.code}]` : '';
    const hint = error instanceof UsageError ? `; see trellis ${command.name} --help`
      // The client gave up on the statement; the server did not (a lock wait ends when the lock is released).
      : /Query read timeout/.test(oneLine(error)) ? ' (no answer within --query-timeout; a statement that was waiting on a lock may still complete once the lock is released: check before you repeat it)'
      : '';
    io.err(`trellis ${command.name}:${tag} ${oneLine(error)}${hint}\n`);
    if (verbose && error instanceof Error) io.err(`${error.stack ?? ''}\n${error.cause instanceof Error ? `caused by: ${error.cause.stack}\n` : ''}`);
    return code;
  } finally {
    if (client) await (await client.catch(() => undefined))?.close();
    if (pool) await pool.end().catch(() => undefined);
    if (readPool) await readPool.end().catch(() => undefined);
  }
}

/**
 * The process entry (bin/trellis.mjs): run, wait until stdout and stderr
 * have been handed to the kernel, then exit with the command's code. A
 * reader that closes stdout early ends the process quietly with 141.
 */
export async function run(argv: string[]): Promise<never> {
  for (const stream of [process.stdout, process.stderr]) {
    stream.on('error', (error: NodeJS.ErrnoException) => {
      if (error.code === 'EPIPE') process.exit(EXIT.brokenPipe);
      // Output that cannot be written (a full disk: > /dev/full) is an error like any other: one line, if stderr still takes it.
      if (stream === process.stdout) {
        try {
          process.stderr.write(`trellis: [io] cannot write the output (${error.code ?? error.message}): it is incomplete\n`);
        } catch {
          // stderr is gone too: the exit code says it
        }
      }
      process.exit(EXIT.failed);
    });
  }
  // Listening only when a command asks (worker, purge): for the others Ctrl-C ends the process at once.
  let interrupt: Promise<string> | undefined;
  const interrupted = () => (interrupt ??= new Promise<string>((resolve) => {
    for (const signal of ['SIGINT', 'SIGTERM'] as const) process.once(signal, () => resolve(signal));
  }));
  const code = await main(argv, processIo(), { interrupted });
  await flush(process.stdout);
  await flush(process.stderr);
  process.exit(code);
}

/**
 * True when this file is the program node was started with (`tsx
 * src/cli/main.ts`). Compares real paths, not URL strings: `file://${argv[1]}`
 * is not a URL for a path with a space or on Windows, and a symlinked entry
 * point has another spelling.
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

if (isMainModule()) await run(process.argv.slice(2));

/**
 * `url` if it has the shape of a connection string pg reads (a URL such as
 * postgres://…, or a socket directory path), else a UsageError: pg reads
 * any other text as the name of a database on a host called "base".
 */
function connectionString(url: string, what: string): string {
  if (url.startsWith('/')) return url;
  if (/^[A-Za-z][A-Za-z0-9+.-]*:/.test(url)) {
    // As pg reads it (pg-connection-string): a URL, a socket path after '@/' allowed.
    let text = url;
    if (/ |%[^a-f0-9]|%[a-f0-9][^a-f0-9]/i.test(text)) text = encodeURI(text).replace(/%25(\d\d)/g, '%$1');
    if (URL.canParse(text, 'postgres://base') || URL.canParse(text.replace('@/', '@___DUMMY___/'), 'postgres://base')) return url;
    // (Never the string itself: it may hold a password.)
    throw new UsageError(`${what} is not a connection string pg can read (a host, port or part of it is malformed): use postgres://user:password@host:5432/database`);
  }
  throw new UsageError(`${what} is not a connection string: use postgres://user:password@host:5432/database`);
}

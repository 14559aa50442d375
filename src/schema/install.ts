/**
 * Trellis's own installer: one transaction under a *waiting* advisory lock,
 * bookkeeping in trellis.migrations (not graphile_migrate, so an application
 * that uses graphile-migrate itself is unaffected), hash chain verified,
 * pending migrations applied, sql/ re-applied when it changed (or when
 * trellis.now() is the test kit's virtual clock in a database that does not
 * allow it) unless the database has a newer revision of it, the schema
 * version recorded, and a database newer than the code refused.
 */
import { PgClient, type ClientBase, Pool } from '../db/pg.ts';
import { boundedConfig, type Checkout, checkout, resolveTimeouts, within } from '../db/connection.ts';
import { ConfigurationError, DatabaseError, SchemaVersionError } from '../errors.ts';
import { SCHEMA_COMPATIBLE_FROM } from '../protocol/schema-compat.ts';
import { schemaAhead } from '../db/schema-check.ts';
import { type Duration, toMs } from '../protocol/duration.ts';
import { toTrellisError } from '../db/errors.ts';
import { BUNDLE } from './bundle.generated.ts';
import { type BundledSql, functionsHash as hashFunctions, verifyChain } from './migrations.ts';

/** Advisory lock (classid, objid) held while installing: 'TRLS', 1. */
const LOCK_CLASS = 0x54524c53;
const LOCK_OBJECT = 1;

const BOOKKEEPING = `
create schema if not exists trellis;
create table if not exists trellis.migrations (
  id            integer primary key,
  filename      text not null,
  hash          text not null,
  previous_hash text,
  applied_at    timestamptz not null default pg_catalog.now()
);
create table if not exists trellis.schema_info (
  singleton    boolean primary key default true check (singleton),
  migration    integer not null,
  sql_hash     text not null,
  installed_at timestamptz not null default pg_catalog.now()
);
alter table trellis.schema_info add column if not exists sql_revision integer;
alter table trellis.schema_info add column if not exists compatible_from integer;`;

export interface MigrateResult {
  /** Migrations applied by this call. */
  applied: number[];
  /** Whether the functions in sql/ were (re-)applied. */
  functionsApplied: boolean;
  /**
   * The database has the same migrations but a newer revision of sql/ (a
   * newer replica installed it during a rolling deploy): its functions were
   * kept, not replaced by this code's older ones.
   */
  newerFunctionsKept: boolean;
  /**
   * The database is at a newer migration whose release declared this code
   * compatible (decision 0034, `schema_info.compatible_from`): nothing was
   * changed, and this code runs against it (an older replica booting during
   * a rolling deploy).
   */
  newerSchemaKept: boolean;
  /** The schema's migration number afterwards. */
  version: number;
}

export function latestMigration(bundle: BundledSql = BUNDLE): number {
  return bundle.migrations.at(-1)?.id ?? 0;
}

/** The oldest code migration a schema installed from `bundle` works with (SCHEMA_COMPATIBLE_FROM; a test bundle's own last). */
function compatibleFrom(bundle: BundledSql): number {
  return Math.min(SCHEMA_COMPATIBLE_FROM, latestMigration(bundle));
}

export function functionsHash(bundle: BundledSql = BUNDLE): string {
  return hashFunctions(bundle);
}

type Target = Pool | PgClient | string;

/**
 * Options of `migrate()`.
 *
 * @example
 * await migrate(process.env.DATABASE_URL!, { connectTimeout: '5s' });
 */
export interface MigrateOptions {
  /** Give up connecting (or waiting for a pool's connection) after this long (default 10s). */
  connectTimeout?: Duration | undefined;
  /**
   * A `migrate(url)` connection: a client-side read timeout per statement
   * (default none: a migration may wait for another replica's).
   * The transaction always ends the session if it sits idle in it for 60 s.
   */
  queryTimeout?: Duration | false | undefined;
  /**
   * How long the upgrade waits for each lock it needs on a trellis table
   * once it holds the install lock (default 3s; false: no limit). A DDL
   * statement waiting for its lock holds up every start, claim and read of
   * that table behind it, for as long as the transaction in its way stays
   * open (a report, a backup): so it gives up after this long, rolls back,
   * and tries again (5 tries in all, 1 to 8 s apart), then fails with a
   * retryable DatabaseError. A migration that got its locks is never cut.
   */
  lockTimeout?: Duration | false | undefined;
  /** The SQL to install (tests only; default: this package's). */
  bundle?: BundledSql | undefined;
  /**
   * The number of buckets runs are spread over (docs/scaling.md): a power of two
   * from 1 to 4096 (default 64), fixed once runs exist. Give it on the first
   * install; the same value later is a no-op, another one once runs exist a
   * ConfigurationError (nothing installed).
   */
  buckets?: number | undefined;
}

/** A pg Pool, also from another copy of `pg` (or a pg-shaped pool): it hands out clients. */
function isPoolShaped(target: object): target is Pool {
  if (target instanceof Pool) return true;
  if (target instanceof PgClient) return false;
  const t = target as Record<string, unknown>;
  return typeof t.connect === 'function' && typeof t.release !== 'function'
    && ('totalCount' in t || 'idleCount' in t || typeof t.escapeIdentifier !== 'function');
}

/** Whether the migration's transaction is still open on the client (then it must not go back to a pool). */
interface TxState {
  open: boolean;
}

async function withClient<T>(target: Target, o: MigrateOptions, fn: (client: ClientBase, tx: TxState) => Promise<T>): Promise<T> {
  const tx: TxState = { open: false };
  const t = resolveTimeouts({ connectTimeout: o.connectTimeout, queryTimeout: o.queryTimeout ?? false });
  if (typeof target === 'string') {
    const client = new PgClient({ connectionString: target, application_name: 'trellis-migrate', ...boundedConfig(t) });
    client.on('error', () => undefined);
    try {
      await client.connect();
    } catch (error) {
      await client.end().catch(() => undefined);
      throw toTrellisError(error);
    }
    try {
      return await fn(client, tx);
    } finally {
      await client.end().catch(() => undefined);
    }
  }
  if (isPoolShaped(target)) {
    // One checked-out client for the whole transaction. Bounded even when the pool is not.
    // Its 'error' heard from the moment pg-pool hands it over (checkout): the
    // pool listens for a connection's errors only while it is idle, and one
    // that comes while the install holds it (the server ended the session)
    // would end the process. The next statement fails with it instead.
    let checkedOut: Checkout;
    try {
      checkedOut = await within(checkout(target), t.connectMs, 'migrate', (late) => late.release());
    } catch (error) {
      throw toTrellisError(error);
    }
    try {
      return await fn(checkedOut.client, tx);
    } finally {
      // A client whose rollback failed may still be in the transaction: destroy it, never pool it.
      checkedOut.release(tx.open ? new Error('the migration transaction did not end') : undefined);
    }
  }
  return fn(target, tx);
}

/**
 * Whether trellis.now() is the test kit's virtual clock (its body reads
 * trellis.clock), and whether this session allows one (a database the test
 * kit made, `trellis.test_database = 'on'`, and a session with
 * `trellis.virtual_clock = 'allowed'`, set by the test kit's connections).
 */
async function virtualClock(client: ClientBase): Promise<{ installed: boolean; allowed: boolean }> {
  const { rows } = await client.query<{ installed: boolean; allowed: boolean }>(
    `select coalesce((select prosrc like '%trellis.clock%' from pg_proc where oid = pg_catalog.to_regprocedure('trellis.now()')), false) as installed,
            coalesce(pg_catalog.current_setting('trellis.virtual_clock', true), '') = 'allowed'
              and coalesce(pg_catalog.current_setting('trellis.test_database', true), '') = 'on' as allowed`,
  );
  return rows[0] ?? { installed: false, allowed: false };
}

/** The oldest PostgreSQL major Trellis supports (gen_random_uuid() in core, xid8, jsonpath). */
export const MIN_POSTGRES_MAJOR = 13;

/** Refuse a server older than MIN_POSTGRES_MAJOR before anything is written. */
async function assertSupportedServer(client: ClientBase): Promise<void> {
  const { rows } = await client.query<{ num: string; version: string; encoding: string }>(
    `select pg_catalog.current_setting('server_version_num') as num, pg_catalog.current_setting('server_version') as version,
            pg_catalog.getdatabaseencoding() as encoding`,
  );
  const num = Number(rows[0]?.num ?? 0);
  if (num < MIN_POSTGRES_MAJOR * 10000) {
    throw new SchemaVersionError(
      `PostgreSQL ${rows[0]?.version ?? 'unknown'} is not supported: Trellis needs PostgreSQL ${MIN_POSTGRES_MAJOR} or newer`,
      { details: { serverVersionNum: num } },
    );
  }
  // JSON text is Unicode: a database in another encoding (LATIN1, say)
  // cannot hold what inputs and outputs may carry, nor the install script
  // (it failed half-way with a conversion error: a configuration audit).
  const encoding = rows[0]?.encoding ?? '';
  if (encoding !== 'UTF8' && encoding !== 'SQL_ASCII') {
    throw new ConfigurationError(
      `the database's encoding is ${encoding}: Trellis needs UTF8 (CREATE DATABASE … ENCODING 'UTF8' TEMPLATE template0); nothing was installed`,
      { details: { encoding } },
    );
  }
}

/** How many times {@link migrate} runs its transaction when another transaction's catalog write or lock got in its way. */
const MIGRATE_ATTEMPTS = 5;

/** How long the upgrade waits for each table lock (MigrateOptions.lockTimeout). */
const DEFAULT_LOCK_TIMEOUT = 3000;

/** MigrateOptions.lockTimeout in whole milliseconds, at least 1 (ValidationError for anything but a duration). */
function lockTimeoutMs(options: MigrateOptions): number {
  return Math.max(1, Math.round(toMs(options.lockTimeout === false ? 0 : options.lockTimeout ?? DEFAULT_LOCK_TIMEOUT, 'lockTimeout')));
}

/** The upgrade gave up waiting for a lock (lock_timeout: 55P03). */
function lockNotAvailable(error: unknown): boolean {
  const cause = (error as { cause?: { code?: unknown } | undefined } | undefined)?.cause ?? error;
  return (cause as { code?: unknown } | undefined)?.code === '55P03' || (error as { code?: unknown } | undefined)?.code === '55P03';
}

/**
 * Whether an install failed only because another transaction changed the
 * same catalog row or lock graph at the same time, so running it again
 * succeeds: PostgreSQL's "tuple concurrently updated" (XX000; a DDL
 * statement whose catalog row another transaction updated first, e.g. a
 * GRANT on a trellis function, or on Citus the roles it carries to the
 * worker nodes for installs into two databases at once), a deadlock or a
 * serialization failure.
 */
function concurrentCatalogWrite(error: unknown): boolean {
  const cause = (error as { cause?: { code?: unknown; message?: unknown } | undefined } | undefined)?.cause ?? error;
  const code = (cause as { code?: unknown } | undefined)?.code;
  const message = String((cause as { message?: unknown } | undefined)?.message ?? '');
  return code === '40P01' || code === '40001' || (code === 'XX000' && /^tuple concurrently (updated|deleted)$/.test(message));
}

/**
 * Install or upgrade the trellis schema. Safe to call from every replica at
 * boot: concurrent callers wait for each other and all but the first find
 * nothing to do. Its one transaction is run again (up to 5 times in all,
 * 25 to 400 ms apart) when another transaction's catalog write got in its way
 * (PostgreSQL's "tuple concurrently updated", a deadlock, a serialization
 * failure); any other failure is thrown at once.
 *
 * @example
 * import pg from 'pg';
 * import { migrate } from 'trellis';
 * await migrate(new pg.Pool({ connectionString: process.env.DATABASE_URL }));
 */
export async function migrate(target: Target, options: MigrateOptions = {}): Promise<MigrateResult> {
  const bundle = options.bundle ?? BUNDLE;
  verifyChain(bundle.migrations);
  lockTimeoutMs(options); // a bad lockTimeout is refused before anything is opened
  for (let attempt = 1; ; attempt++) {
    try {
      return await migrateOnce(target, options, bundle);
    } catch (error) {
      const locked = lockNotAvailable(error);
      if (locked && attempt >= MIGRATE_ATTEMPTS) {
        throw new DatabaseError(`migrate could not take a lock it needs on a trellis table within its lockTimeout, ${MIGRATE_ATTEMPTS} times: `
          + 'a transaction holds it (see pg_locks and pg_stat_activity). Each time it gave its place in the lock queue up after lockTimeout, '
          + 'so the tables it had locked before were held up (starts, claims and reads of them waited) for at most that long each time. '
          + 'Nothing was changed: run it again once that transaction has ended', { cause: error, retryable: true });
      }
      if (attempt >= MIGRATE_ATTEMPTS || !(locked || concurrentCatalogWrite(error))) throw error;
      const base = locked ? 1000 : 50;
      await new Promise((resolve) => setTimeout(resolve, base * 2 ** (attempt - 1) * (0.5 + Math.random() / 2)));
    }
  }
}

async function migrateOnce(target: Target, options: MigrateOptions, bundle: BundledSql): Promise<MigrateResult> {
  return withClient(target, options, async (client, tx) => {
    try {
      await assertSupportedServer(client);
      tx.open = true;
      await client.query('begin');
      // If this process stops answering mid-install, the server ends the session instead of holding the lock.
      await client.query("set local idle_in_transaction_session_timeout = '60s'");
      await client.query('select pg_catalog.pg_advisory_xact_lock($1, $2)', [LOCK_CLASS, LOCK_OBJECT]);
      // Only after the install lock: replicas wait for each other's install as long as it takes.
      if (options.lockTimeout !== false) await client.query(`set local lock_timeout = ${lockTimeoutMs(options)}`);
      // The bookkeeping's DDL only where something of it is missing: a replica
      // whose login is not the owner (trellis_worker, trellis_client) may call
      // migrate() at boot against a schema already up to date, and `create
      // schema if not exists` needs CREATE on the database even when it exists.
      const kept = await client.query<{ ready: boolean }>(`select pg_catalog.to_regclass('trellis.migrations') is not null
        and (select pg_catalog.count(*) from pg_catalog.pg_attribute where attrelid = pg_catalog.to_regclass('trellis.schema_info')
              and attname in ('sql_revision', 'compatible_from') and not attisdropped) = 2 as ready`);
      if (!kept.rows[0]?.ready) await client.query(BOOKKEEPING);
      const { rows } = await client.query<{ id: number; hash: string }>(
        'select id, hash from trellis.migrations order by id',
      );
      const known = latestMigration(bundle);
      const newest = rows.at(-1)?.id ?? 0;
      if (newest > known) {
        // A newer release migrated the database. If it declared this code's
        // migration compatible (decision 0034), this replica keeps that schema
        // and its functions, after checking the migrations it knows match.
        const declared = await client.query<{ compatible_from: number | null }>('select compatible_from from trellis.schema_info');
        const ahead = schemaAhead(newest, declared.rows[0]?.compatible_from, known);
        if (ahead) throw new SchemaVersionError(`the database's ${ahead.slice('the '.length)}`);
      }
      for (const row of rows) {
        if (row.id > known) break;
        const mine = bundle.migrations[row.id - 1];
        if (!mine || mine.hash !== row.hash) {
          throw new SchemaVersionError(
            `trellis migration ${row.id} in the database (${row.hash}) differs from this code's (${mine?.hash ?? 'none'})`,
          );
        }
      }
      if (newest > known) {
        await client.query('commit');
        tx.open = false;
        return { applied: [], functionsApplied: false, newerFunctionsKept: true, newerSchemaKept: true, version: newest };
      }
      const applied: number[] = [];
      for (const m of bundle.migrations.slice(newest)) {
        await client.query(m.body);
        await client.query(
          'insert into trellis.migrations (id, filename, hash, previous_hash) values ($1, $2, $3, $4)',
          [m.id, m.filename, m.hash, m.previousHash],
        );
        applied.push(m.id);
      }
      const sqlHash = functionsHash(bundle);
      const info = await client.query<{ sql_hash: string; sql_revision: number | null }>('select sql_hash, sql_revision from trellis.schema_info');
      const clock = await virtualClock(client);
      const installedRevision = info.rows[0]?.sql_revision ?? null;
      // Same migrations, newer functions: keep them (an older replica booting
      // during a rolling deploy must not put its older functions back).
      const newerFunctionsKept = applied.length === 0 && installedRevision !== null && bundle.sqlRevision !== undefined
        && installedRevision > bundle.sqlRevision && !(clock.installed && !clock.allowed);
      // A virtual clock outside a session that allows it (a production database
      // where clock_use_virtual() was called) is replaced by re-applying sql/.
      const functionsApplied = !newerFunctionsKept
        && (applied.length > 0 || info.rows[0]?.sql_hash !== sqlHash || (clock.installed && !clock.allowed)
          // A revision behind this code's, whatever its hash: clients and workers refuse it (checkSchema).
          || (bundle.sqlRevision !== undefined && (installedRevision ?? 0) < bundle.sqlRevision));
      if (functionsApplied) {
        for (const f of bundle.functions) await client.query(f.text);
        // Where it is allowed (a test database), re-applying sql/ keeps it.
        if (clock.installed && clock.allowed) await client.query('select trellis.clock_use_virtual()');
        await client.query(
          `insert into trellis.schema_info (singleton, migration, sql_hash, sql_revision, compatible_from, installed_at)
           values (true, $1, $2, $3, $4, pg_catalog.now())
           on conflict (singleton) do update set migration = excluded.migration,
             sql_hash = excluded.sql_hash, sql_revision = excluded.sql_revision,
             compatible_from = excluded.compatible_from, installed_at = excluded.installed_at`,
          [known, sqlHash, bundle.sqlRevision ?? null, compatibleFrom(bundle)],
        );
      }
      if (options.buckets !== undefined) {
        await client.query('select trellis.setting_set($1, $2::jsonb)', ['buckets', JSON.stringify(options.buckets)]);
      }
      await client.query('commit');
      tx.open = false;
      return { applied, functionsApplied, newerFunctionsKept, newerSchemaKept: false, version: known };
    } catch (error) {
      try {
        await client.query('rollback');
        tx.open = false;
      } catch {
        // The connection is gone or unusable: the pool client is destroyed on release.
      }
      if ((error as { code?: unknown }).code === '42501') {
        throw new ConfigurationError(`migrate has something to install and this login may not: ${(error as Error).message}. `
          + 'Run it as the schema\'s owner (trellis migrate, or migrate() with the owner\'s pool); '
          + 'a login granted trellis_worker or trellis_client may call it only once the schema is up to date (it then changes nothing)',
          { cause: error });
      }
      throw toTrellisError(error);
    }
  });
}

export { checkSchema } from '../db/schema-check.ts';

/**
 * The full install script for teams that apply DDL by hand (`trellis sql`).
 * From migration `from` (exclusive) onwards; functions always included.
 *
 * @example
 * import { writeFileSync } from 'node:fs';
 * writeFileSync('trellis.sql', installScript());
 */
export function installScript(from = 0, bundle: BundledSql = BUNDLE): string {
  verifyChain(bundle.migrations);
  const parts = [
    '-- Trellis install script. Apply in one transaction.',
    'begin;',
    `select pg_catalog.pg_advisory_xact_lock(${LOCK_CLASS}, ${LOCK_OBJECT});`,
    BOOKKEEPING.trim(),
    // The database must be at `from`: a script for another start records
    // a migration whose DDL never ran (or fails halfway, by accident).
    `do $guard$
declare
  v_at integer := coalesce((select pg_catalog.max(m.id) from trellis.migrations m), 0);
begin
  if v_at <> ${Number(from)} then
    raise exception 'trellis: this script holds the migrations after %, but this database is at migration %: print its script with trellis sql --from %', ${Number(from)}, v_at, v_at
      using errcode = 'TR001';
  end if;
end $guard$;`,
  ];
  for (const m of bundle.migrations.slice(from)) {
    parts.push(`-- migration ${m.filename}`, m.body.trim());
    parts.push(
      `insert into trellis.migrations (id, filename, hash, previous_hash) values (${m.id}, '${m.filename}', '${m.hash}', ${
        m.previousHash ? `'${m.previousHash}'` : 'null'
      });`,
    );
  }
  for (const f of bundle.functions) parts.push(`-- ${f.filename}`, f.text.trim());
  parts.push(
    `insert into trellis.schema_info (singleton, migration, sql_hash, sql_revision, compatible_from) values (true, ${latestMigration(bundle)}, '${functionsHash(bundle)}', ${bundle.sqlRevision ?? 'null'}, ${compatibleFrom(bundle)})
  on conflict (singleton) do update set migration = excluded.migration, sql_hash = excluded.sql_hash, sql_revision = excluded.sql_revision, compatible_from = excluded.compatible_from, installed_at = pg_catalog.now();`,
    'commit;',
  );
  return `${parts.join('\n\n')}\n`;
}

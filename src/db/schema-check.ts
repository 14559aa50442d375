/**
 * Whether a database has exactly the schema this code speaks: the migration
 * and the functions' revision recorded in trellis.schema_info against
 * SCHEMA_MIGRATION and SCHEMA_SQL_REVISION (generated with the SQL bundle),
 * without loading the bundled SQL itself.
 */
import { ConfigurationError, SchemaVersionError } from '../errors.ts';
import { SCHEMA_MIGRATION, SCHEMA_SQL_REVISION } from '../protocol/schema-version.generated.ts';
import { SCHEMA_NOT_INSTALLED, toTrellisError } from './errors.ts';
import type { Queryable } from './queryable.ts';

/**
 * The select list of the installed schema's migration and functions'
 * revision (null when trellis.schema_info is empty; the revision null too for
 * a schema from before it was recorded: read through the row's JSON, so the
 * statement works on such a schema as well).
 */
export const SCHEMA_INFO_SQL = `(select i.migration from trellis.schema_info i) as migration,
  (select (pg_catalog.to_jsonb(i) ->> 'sql_revision'::text)::integer from trellis.schema_info i) as sql_revision,
  (select (pg_catalog.to_jsonb(i) ->> 'compatible_from'::text)::integer from trellis.schema_info i) as compatible_from`;

/**
 * The select list of the session settings that change how values come back
 * as text, which the TypeScript side reads (`sessionSettingsWrong`).
 */
export const SESSION_SETTINGS_SQL = `pg_catalog.current_setting('DateStyle'::text) as date_style,
  pg_catalog.current_setting('extra_float_digits'::text) as float_digits`;

/**
 * Why the session settings a database (or role) gives its sessions keep
 * Trellis from reading what it is sent, or undefined if they do not.
 * node-postgres reads timestamps only in ISO form: under another DateStyle
 * ('German', 'SQL, DMY') every timestamp came back null, silently (a
 * schedule never fired, `ctx.deadline` and every run's times were null).
 * A negative extra_float_digits rounds the durations Trellis reads as
 * floating point (a one-hour time limit read as 4,000,000 ms). A
 * configuration audit found both; each would be met by an app's own reads
 * through node-postgres too.
 */
export function sessionSettingsWrong(row: { date_style?: string | null | undefined; float_digits?: string | null | undefined } | undefined): string | undefined {
  const problems: string[] = [];
  if (row?.date_style != null && !/^\s*ISO\b/i.test(row.date_style)) {
    problems.push(`DateStyle is '${row.date_style}': node-postgres reads timestamps only in ISO form (set DateStyle = 'ISO, MDY')`);
  }
  if (row?.float_digits != null && Number(row.float_digits) < 0) {
    problems.push(`extra_float_digits is ${row.float_digits}: durations would come back rounded (set it to 0 or more; 1 is PostgreSQL's default)`);
  }
  if (!problems.length) return undefined;
  return `this database's session settings keep Trellis from reading its values: ${problems.join('; ')}. `
    + 'Change them for the role or database Trellis connects as (ALTER ROLE … SET / ALTER DATABASE … SET), or in the '
    + "connection string (options=-c DateStyle=ISO), docs/operations.md \"Session settings\".";
}

/** Throw a ConfigurationError if the session settings in `row` (SESSION_SETTINGS_SQL) keep Trellis from reading values. */
export function assertSessionSettings(row: Parameters<typeof sessionSettingsWrong>[0]): void {
  const wrong = sessionSettingsWrong(row);
  if (wrong) throw new ConfigurationError(wrong);
}

/**
 * Why a schema at `migration`, with its functions at `sqlRevision`, is behind
 * this code (`who`: "this code", "this client"), or undefined if it is not.
 * The functions count too: a release may add or change one in sql/ without
 * a migration, and code that calls it against older functions would meet
 * PostgreSQL's own "function does not exist" instead of this.
 */
export function schemaBehind(migration: number | null | undefined, sqlRevision: number | null | undefined, who: string): string | undefined {
  if (migration == null || migration < SCHEMA_MIGRATION) {
    return `the trellis schema is at migration ${migration ?? 0}, behind ${who} (${SCHEMA_MIGRATION}): run \`trellis migrate\` or call migrate()`;
  }
  if (migration === SCHEMA_MIGRATION && (sqlRevision == null || sqlRevision < SCHEMA_SQL_REVISION)) {
    return `the trellis functions are at revision ${sqlRevision ?? 'none'}, behind ${who} (${SCHEMA_SQL_REVISION}): run \`trellis migrate\` or call migrate()`;
  }
  return undefined;
}

/**
 * Why a schema at `migration`, which declares code from migration
 * `compatibleFrom` on compatible with it (decision 0034), is too new for
 * code at migration `known`, or undefined if that code may use it (its own
 * migration, or a newer one that declares it compatible).
 */
export function schemaAhead(migration: number | null | undefined, compatibleFrom: number | null | undefined, known = SCHEMA_MIGRATION): string | undefined {
  if (migration == null || migration <= known) return undefined;
  if (compatibleFrom != null && compatibleFrom <= known) return undefined;
  return `the trellis schema is at migration ${migration}, newer than this code (${known})`
    + (compatibleFrom == null ? '' : `, and works with code from migration ${compatibleFrom} on`)
    + ': upgrade the trellis package';
}

/**
 * Check that the database has exactly this code's schema; throws
 * SchemaVersionError otherwise (not installed, behind, or newer), and
 * ConfigurationError for session settings whose values Trellis cannot read
 * (`sessionSettingsWrong`). Functions
 * newer than this code's (a later release migrated the database, without a
 * new migration) are accepted: they keep what older code calls; so is a
 * newer schema whose release declared this code's migration compatible
 * (`schema_info.compatible_from`, decision 0034).
 *
 * @example
 * await checkSchema(pool); // in a readiness probe: fails until `migrate` has run
 */
export async function checkSchema(db: Queryable): Promise<void> {
  const known = SCHEMA_MIGRATION;
  type Row = { migration: number | null; sql_revision: number | null; compatible_from: number | null; date_style: string; float_digits: string };
  let row: Row | undefined;
  try {
    ({ rows: [row] } = await db.query<Row>(`select ${SCHEMA_INFO_SQL}, ${SESSION_SETTINGS_SQL}`));
  } catch (error) {
    const code = (error as { code?: string | undefined }).code;
    if (code === '42P01' || code === '3F000') {
      throw new SchemaVersionError(SCHEMA_NOT_INSTALLED);
    }
    throw toTrellisError(error);
  }
  const behind = schemaBehind(row?.migration, row?.sql_revision, 'this code');
  if (behind) throw new SchemaVersionError(behind);
  const ahead = schemaAhead(row?.migration, row?.compatible_from, known);
  if (ahead) throw new SchemaVersionError(ahead);
  assertSessionSettings(row);
}

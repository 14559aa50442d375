/**
 * Whether a database has exactly the schema this code speaks: the migration
 * recorded in trellis.schema_info against SCHEMA_MIGRATION (generated with the
 * SQL bundle), without loading the bundled SQL itself.
 */
import { SchemaVersionError } from '../errors.ts';
import { SCHEMA_MIGRATION } from '../protocol/schema-version.generated.ts';
import { SCHEMA_NOT_INSTALLED, toTrellisError } from './errors.ts';
import type { Queryable } from './queryable.ts';

/**
 * Check that the database has exactly this code's schema; throws
 * SchemaVersionError otherwise (not installed, behind, or newer).
 *
 * @example
 * await checkSchema(pool); // in a readiness probe: fails until `migrate` has run
 */
export async function checkSchema(db: Queryable): Promise<void> {
  const known = SCHEMA_MIGRATION;
  let version: number | undefined;
  try {
    const { rows } = await db.query<{ migration: number }>('select migration from trellis.schema_info');
    version = rows[0]?.migration;
  } catch (error) {
    if ((error as { code?: string }).code === '42P01' || (error as { code?: string }).code === '3F000') {
      throw new SchemaVersionError(SCHEMA_NOT_INSTALLED);
    }
    throw toTrellisError(error);
  }
  if (version === undefined || version < known) {
    throw new SchemaVersionError(
      `the trellis schema is at migration ${version ?? 0}, behind this code (${known}): run \`trellis migrate\` or call migrate()`,
    );
  }
  if (version > known) {
    throw new SchemaVersionError(
      `the trellis schema is at migration ${version}, newer than this code (${known}): upgrade the trellis package`,
    );
  }
}


/**
 * The oldest schema migration whose code still works against the schema
 * this release installs (decision 0034). `migrate()` records it in
 * `trellis.schema_info.compatible_from`; a replica of an older release that
 * knows this rule (this release and later) boots against a newer schema
 * when its own migration is at least that, instead of refusing it, so a
 * rolling deploy can restart old replicas after the new release migrated.
 *
 * When you add a migration, leave this at the new migration's number
 * unless the code of the releases before it works unchanged against it (an
 * added table or nullable column, an added index, an added function); then
 * keep it where it was. Never raise it past SCHEMA_MIGRATION, and never
 * lower it for a migration that drops, renames or retypes anything older
 * code reads or writes.
 */
export const SCHEMA_COMPATIBLE_FROM = 31;

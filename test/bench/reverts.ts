/**
 * SQL that puts a database back to the indexes before migration 000020 (the
 * base side of the A/B tools sql-ab.ts and cycle-cost.ts; override with
 * AB_REVERT / CYCLE_REVERT).
 */
export const BEFORE_MIGRATION_20 = `
  drop index if exists trellis.runs_status_created_idx;
  create index runs_status_created_idx on trellis.runs (status, created_at desc, id desc);
  create index if not exists runs_due_idx on trellis.runs (queue, workflow, version, run_at) where status = 'pending';`;

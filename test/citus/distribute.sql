-- Place an installed trellis schema on a Citus cluster (docs/scaling.md).
-- Run on the coordinator after `trellis migrate`, before the first run:
--   psql "$COORDINATOR_URL" -v ON_ERROR_STOP=1 -f test/citus/distribute.sql
-- The run-scoped tables are distributed by their bucket and co-located with
-- trellis.runs, so a run, its steps, signals, events and hook deliveries
-- live on one node; every other table is small and global: a reference table
-- (a copy on every node).
-- Sequential: the script may run as one transaction (a multi-statement query),
-- and Citus refuses the function changes at its end after parallel shard work.
set citus.multi_shard_modify_mode to 'sequential';
select create_reference_table(t) from unnest(array[
  'trellis.settings', 'trellis.workflows', 'trellis.clock', 'trellis.run_transitions',
  'trellis.event_consumers', 'trellis.retentions', 'trellis.templates', 'trellis.connector_cursors',
  'trellis.roles', 'trellis.schedules', 'trellis.queues', 'trellis.schema_info', 'trellis.migrations']::regclass[]) t;
select create_distributed_table('trellis.runs', 'bucket');
select create_distributed_table(t, 'bucket', colocate_with => 'trellis.runs') from unnest(array[
  'trellis.steps', 'trellis.signals', 'trellis.events', 'trellis.hook_deliveries']::regclass[]) t;
select trellis.setting_set('distributed', 'true');
-- A distributed planner needs parameter values to plan a multi-shard read:
-- no forced generic plans (sql/900_plans.sql skips them from now on).
do $$
declare
  f regprocedure;
begin
  for f in select p.oid::regprocedure from pg_proc p join pg_namespace n on n.oid = p.pronamespace
            where n.nspname = 'trellis' and p.proconfig::text like '%plan_cache_mode%'
  loop
    execute format('alter function %s reset plan_cache_mode', f);
  end loop;
end $$;

--! Previous: sha1:d98c1eb09047262ffdfc648f5a747b9082854375
--! Hash: sha1:85e881a2398d3d0308bc94054ba40b33cc60dd22

-- Trellis: run deadlines (decision 0031). A run started with a deadline
-- (run_start options deadline or time_limit, a child's deadline or time_limit)
-- is cancelled, with its cancel-children, once the deadline passes and it
-- has not finished: the role-held duty trellis.deadlines calls
-- run_cancel_overdue, which finds the runs through run_deadlines.
alter table trellis.runs add column if not exists deadline_at timestamptz;
-- The deadlines still to look at: one row per run started with a deadline,
-- written by its start and deleted when the duty has looked at it (then, or
-- with the run's purge). A table of its own rather than a partial index on
-- trellis.runs: every statement that writes a runs row (a start, a claim, a
-- checkpoint) would open and check that index too (a start measured 15-20
-- µs dearer with it, decision 0031), while most runs have no deadline.
create table if not exists trellis.run_deadlines (
  bucket      integer     not null,
  run_id      uuid        not null,
  deadline_at timestamptz not null,
  primary key (bucket, run_id)
);
create index if not exists run_deadlines_due_idx on trellis.run_deadlines (deadline_at);
comment on table trellis.run_deadlines is
  'Run deadlines still to be looked at by run_cancel_overdue (decision 0031); a run''s deadline itself is trellis.runs.deadline_at.';
-- On a Citus cluster already placed (citus_distribute), the new table is
-- placed with the runs it belongs to.
do $$
begin
  if exists (select 1 from pg_catalog.pg_extension where extname = 'citus')
     and exists (select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                  where n.nspname = 'pg_catalog' and c.relname = 'pg_dist_partition') then
    if exists (select 1 from pg_dist_partition where logicalrelid = 'trellis.runs'::regclass)
       and not exists (select 1 from pg_dist_partition where logicalrelid = 'trellis.run_deadlines'::regclass) then
      perform create_distributed_table('trellis.run_deadlines', 'bucket', colocate_with => 'trellis.runs');
    end if;
  end if;
end $$;
-- A schedule may give each tick's run a time limit (schedule_set's time_limit).
alter table trellis.schedules add column if not exists time_limit interval
  constraint schedules_time_limit_check check (time_limit > interval '0');
-- A child op may carry its run's deadline (a time) or time limit (from its start).
alter type trellis.checkpoint_op add attribute deadline timestamptz;
alter type trellis.checkpoint_op add attribute time_limit interval;

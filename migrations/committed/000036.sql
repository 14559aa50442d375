--! Previous: sha1:e1b2b088179f39115e8b571cd8a89d7af106a01b
--! Hash: sha1:3d2285ee7b63d394adaf8919db5e9147d7e45041

-- Trellis: a run's call may wait on any run, not only a child it started
-- (ctx.waitForRun, a child key another run holds, a fork's replay of its
-- original's child; decision 0039). Such a wait is written here when the
-- waiting run parks, and the awaited run's end wakes every run listed for it
-- (and deletes their rows), as it wakes its parent. Before, such a waiter
-- looked again every 30 seconds.
create table if not exists trellis.run_watches (
  bucket     integer     not null,
  run_id     uuid        not null,
  waiter_id  uuid        not null,
  created_at timestamptz not null default pg_catalog.now(),
  primary key (bucket, run_id, waiter_id)
);
-- The awaited run's end reads its watchers by its id alone.
create index if not exists run_watches_run_idx on trellis.run_watches (run_id);
comment on table trellis.run_watches is
  'Runs waiting on a run that is not their child (decision 0039): bucket and run_id are the awaited run''s, waiter_id the waiting run; deleted when the awaited run ends (waking the waiters) or is purged.';
-- On a Citus cluster already placed (citus_distribute), the new table is
-- placed with the runs it belongs to.
do $$
begin
  if exists (select 1 from pg_catalog.pg_extension where extname = 'citus')
     and exists (select 1 from pg_catalog.pg_class c join pg_catalog.pg_namespace n on n.oid = c.relnamespace
                  where n.nspname = 'pg_catalog' and c.relname = 'pg_dist_partition') then
    if exists (select 1 from pg_dist_partition where logicalrelid = 'trellis.runs'::regclass)
       and not exists (select 1 from pg_dist_partition where logicalrelid = 'trellis.run_watches'::regclass) then
      perform create_distributed_table('trellis.run_watches', 'bucket', colocate_with => 'trellis.runs');
    end if;
  end if;
end $$;

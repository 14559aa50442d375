-- 160_buckets: row locks by bucket, for a schema whose run-scoped tables are
-- distributed by their bucket (Citus, docs/scaling.md, decision 0024).
-- Owns: _distributed, _one_connection, _lock_runs, _lock_due, _lock_hooks, _purge_pick_by_bucket, and the distributed paths of
-- run_claim (_sweep_by_bucket, _pick_by_bucket, _claimed_by_bucket) and
-- run_heartbeat_many (_heartbeat_by_bucket) and run_next_due (_next_due_by_bucket);
-- citus_distribute (placing the schema on a Citus cluster), _plans_reset.
-- Touches: trellis.runs (row locks only), trellis.settings (read).
-- Lock order: runs in id order on one node; on a distributed schema in
-- (bucket, id) order, one statement per bucket (a row lock must name one
-- shard there).
--
-- On one node (setting 'distributed' off, the default) each helper is the
-- single statement the engine always ran. With the setting on (set by the
-- script that distributes the tables), a statement that locks runs found by
-- id first reads their buckets (a multi-shard read without a lock, which a
-- distributed planner runs on every node) and then locks them one bucket at
-- a time (a statement on one shard, which it routes to the node that holds
-- it).

create or replace function trellis._distributed()
returns boolean language plpgsql stable as $$
begin
  return coalesce((select (s.value #>> '{}')::boolean from trellis.settings s where s.key = 'distributed'), false);
end $$;
comment on function trellis._distributed() is
  'Whether the run-scoped tables are distributed by bucket (setting distributed, set when they are placed on a Citus cluster): row locks then go one bucket at a time.';

-- Before a transaction's row locks on a distributed schema: Citus runs the
-- rest of the transaction over one connection per node. Otherwise a later
-- multi-shard statement (a move of runs of many buckets, _run_move) can
-- open a second connection to a node and wait there for the row locks the
-- transaction took over the first: a distributed deadlock of the
-- transaction with itself, which Citus breaks by cancelling it.
-- citus_distribute makes one connection per node the database's default
-- (so no engine transaction opens a second one before its first lock);
-- this covers sessions that began before it.
create or replace function trellis._one_connection()
returns void language plpgsql as $$
begin
  perform pg_catalog.set_config('citus.max_adaptive_executor_pool_size', '1', true);
end $$;
comment on function trellis._one_connection() is
  'On a distributed schema, before row locks: Citus uses one connection per node for the rest of the transaction (no self-deadlock between its connections; citus_distribute makes it the database default).';

-- Lock the runs p_ids (FOR NO KEY UPDATE, waiting for them), in id order on
-- one node, in (bucket, id) order on a distributed schema.
create or replace function trellis._lock_runs(p_ids uuid[])
returns void language plpgsql as $$
declare
  v_bucket integer;
  v_ids    uuid[];
begin
  if cardinality(p_ids) is null or cardinality(p_ids) = 0 then
    return;
  end if;
  if not trellis._distributed() then
    perform 1 from trellis.runs r where r.id = any (p_ids) order by r.id for no key update;
    return;
  end if;
  perform trellis._one_connection();
  for v_bucket, v_ids in
    select r.bucket, array_agg(r.id order by r.id) from trellis.runs r where r.id = any (p_ids)
     group by r.bucket order by r.bucket
  loop
    perform 1 from trellis.runs r where r.bucket = v_bucket and r.id = any (v_ids) order by r.id for no key update;
  end loop;
end $$;
comment on function trellis._lock_runs(uuid[]) is
  'Lock runs p_ids FOR NO KEY UPDATE (waiting): one statement in id order on one node; on a distributed schema one statement per bucket, in (bucket, id) order.';

-- On a distributed schema: of the candidate runs p_ids (found by a read
-- without a lock), those still in status p_status ('unfinished': any but
-- completed, failed, cancelled; for 'waiting', due
-- by p_now; for 'running', with a lease expired by p_now) once locked FOR
-- UPDATE SKIP LOCKED, one bucket at a time; in the order of p_ids.
-- ('finished': completed, failed or cancelled, finished before p_now.)
create or replace function trellis._lock_due(p_ids uuid[], p_status text, p_now timestamptz)
returns uuid[] language plpgsql as $$
declare
  v_bucket integer;
  v_ids    uuid[];
  v_id     uuid;
  v_got    uuid[] := '{}';
begin
  if cardinality(p_ids) is null or cardinality(p_ids) = 0 then
    return v_got;
  end if;
  perform trellis._one_connection();
  for v_bucket, v_ids in
    select r.bucket, array_agg(r.id) from trellis.runs r where r.id = any (p_ids) group by r.bucket order by r.bucket
  loop
    -- (A query statement, not array(subquery): a distributed planner takes the former.)
    for v_id in
      select r.id from trellis.runs r
       where r.bucket = v_bucket and r.id = any (v_ids)
         and (r.status = p_status or p_status = 'any' or (p_status = 'unfinished' and r.status not in ('completed', 'failed', 'cancelled'))
              or (p_status = 'finished' and r.status in ('completed', 'failed', 'cancelled') and r.finished_at < p_now))
         and (p_status <> 'waiting' or r.run_at <= p_now)
         and (p_status <> 'running' or r.lease_expires_at < p_now)
       order by r.id
         for update skip locked
    loop
      v_got := v_got || v_id;
    end loop;
  end loop;
  return array(select i from unnest(p_ids) with ordinality as c(i, n) where i = any (v_got) order by n);
end $$;
comment on function trellis._lock_due(uuid[], text, timestamptz) is
  'On a distributed schema: lock (FOR UPDATE SKIP LOCKED, one bucket at a time) those of runs p_ids still in status p_status (waiting: due by p_now; running: lease expired by p_now; unfinished: any but an end; finished: an end before p_now; any: whatever their status); returns them in the order of p_ids.';

-- run_claim on a distributed schema: due timers and expired leases, found on
-- every node, locked one bucket at a time, made pending.
create or replace function trellis._sweep_by_bucket(p_now timestamptz)
returns void language plpgsql as $$
declare
  v_ids uuid[];
begin
  -- (Each step a statement of its own: a distributed planner takes a
  -- multi-shard read as a query, not as an expression's subquery.)
  select coalesce(array_agg(x.id order by x.run_at), '{}') into v_ids
    from (select r.id, r.run_at from trellis.runs r where r.status = 'waiting' and r.run_at <= p_now
           order by r.run_at limit 1000) x;
  v_ids := trellis._lock_due(v_ids, 'waiting', p_now);
  perform trellis._run_move(array(
    select row(i, 'pending', 'resumed', null, null, null, null, null, null, null, null, null,
               null, null, null, null, null, '{"reason":"timer"}')::trellis.run_move
      from unnest(v_ids) i));
  select coalesce(array_agg(x.id order by x.lease_expires_at), '{}') into v_ids
    from (select r.id, r.lease_expires_at from trellis.runs r where r.status = 'running' and r.lease_expires_at < p_now
           order by r.lease_expires_at limit 100) x;
  v_ids := trellis._lock_due(v_ids, 'running', p_now);
  perform trellis._leases_expired(v_ids, p_now);
end $$;
comment on function trellis._sweep_by_bucket(timestamptz) is
  'run_claim''s sweep on a distributed schema: due waiting runs become pending, expired leases are released (or parked, _leases_expired); locked one bucket at a time.';

-- run_claim on a distributed schema: up to p_limit due pending runs of queue
-- p_queue and the served pairs p_pairs (workflow || chr(31) || version), best
-- first, found on every node and locked one bucket at a time (a run another
-- claim locked first is skipped).
create or replace function trellis._pick_by_bucket(p_queue text, p_pairs text[], p_limit integer, p_now timestamptz)
returns uuid[] language plpgsql as $$
declare
  v_ids uuid[];
begin
  select coalesce(array_agg(x.id order by x.priority desc, x.run_at), '{}') into v_ids
    from (select r.id, r.priority, r.run_at from trellis.runs r
           where r.status = 'pending' and r.queue = p_queue and r.run_at <= p_now
             and r.workflow || pg_catalog.chr(31) || r.version = any (p_pairs)
           order by r.priority desc, r.run_at
           limit p_limit) x;
  return trellis._lock_due(v_ids, 'pending', p_now);
end $$;
comment on function trellis._pick_by_bucket(text, text[], integer, timestamptz) is
  'run_claim''s pick on a distributed schema: up to p_limit due pending runs of a queue and the served pairs, locked one bucket at a time.';

-- run_claim on a distributed schema: lease the picked runs (through
-- _run_move) and return them as run_claim does, their history, signals and
-- finished children read by bucket, run by run.
create or replace function trellis._claimed_by_bucket(p_ids uuid[], p_worker text, p_batch uuid,
  p_lease interval, p_now timestamptz)
returns table (id uuid, workflow text, version text, input jsonb, metadata jsonb, attempt integer,
               failures integer, lease_token uuid, lease_expires_at timestamptz, history jsonb,
               execution integer, cancel_requested boolean, pause_requested boolean,
               signals jsonb, children jsonb, now timestamptz, deadline_at timestamptz, cancel_reason text)
language plpgsql as $$
declare
  v_run  trellis.runs;
  v_hist jsonb;
  v_sigs jsonb;
  v_kids jsonb;
begin
  for v_run in
    select * from trellis._run_move(array(
      select row(i, 'running', 'claimed', null, null, null, null, null, null, null, null, null,
                 null, null, trellis._lease_token(p_batch, i), p_worker, p_now + p_lease, null)::trellis.run_move
        from unnest(p_ids) i))
  loop
    v_hist := null;
    v_kids := null;
    if v_run.attempt > 1 or v_run.forked_from is not null then
      v_hist := trellis._run_history(v_run.bucket, v_run.id, v_run.execution);
      v_kids := trellis._run_children_ended(v_run.bucket, v_run.id, v_run.execution);
    end if;
    select jsonb_agg(jsonb_build_object('id', g.id, 'name', g.name, 'payload', g.payload, 'signal_id', g.signal_id)
             order by g.id) into v_sigs
      from trellis.signals g where g.bucket = v_run.bucket and g.run_id = v_run.id and g.consumed_at is null;
    id := v_run.id; workflow := v_run.workflow; version := v_run.version; input := v_run.input;
    metadata := v_run.metadata; attempt := v_run.attempt; failures := v_run.failures;
    lease_token := v_run.lease_token; lease_expires_at := v_run.lease_expires_at; history := v_hist;
    execution := v_run.execution; cancel_requested := v_run.cancel_requested_at is not null;
    pause_requested := v_run.pause_requested_at is not null; signals := v_sigs; children := v_kids; now := p_now;
    deadline_at := v_run.deadline_at;
    cancel_reason := case when v_run.cancel_requested_at is not null then v_run.error->>'message' end;
    return next;
  end loop;
end $$;
comment on function trellis._claimed_by_bucket(uuid[], text, uuid, interval, timestamptz) is
  'run_claim''s lease on a distributed schema: move the picked runs to running under tokens derived from p_batch and return each with its history, signals and finished children, read by bucket.';

-- run_heartbeat_many on a distributed schema: lock one bucket at a time, then extend.
create or replace function trellis._heartbeat_by_bucket(p_run_ids uuid[], p_tokens uuid[], p_lease interval,
  p_now timestamptz)
returns table (id uuid, cancel_requested boolean, pause_requested boolean) language plpgsql as $$
begin
  perform trellis._lock_runs(p_run_ids);
  return query
  update trellis.runs r set lease_expires_at = p_now + p_lease, updated_at = p_now
    from unnest(p_run_ids, p_tokens) as h(id, token)
   where h.id = r.id and h.token = r.lease_token and r.status = 'running'
  returning r.id, r.cancel_requested_at is not null, r.pause_requested_at is not null;
end $$;
comment on function trellis._heartbeat_by_bucket(uuid[], uuid[], interval, timestamptz) is
  'run_heartbeat_many on a distributed schema: lock the runs one bucket at a time, then extend the leases still held.';

-- run_next_due on a distributed schema: the same three minima, each a
-- multi-shard read of its own (a distributed planner takes no subquery
-- inside an expression).
create or replace function trellis._next_due_by_bucket(p_queues text[], p_workflows text[], p_versions text[])
returns timestamptz language plpgsql stable as $$
declare
  v_pairs   text[] := array(select s.w || pg_catalog.chr(31) || s.v from unnest(p_workflows, p_versions) as s(w, v));
  v_open    text[];
  v_pending timestamptz;
  v_waiting timestamptz;
  v_lease   timestamptz;
begin
  -- A paused queue's pending runs are not due.
  select coalesce(array_agg(q), '{}') into v_open from unnest(p_queues) q
   where not exists (select 1 from trellis.queues p where p.name = q and p.paused);
  select min(r.run_at) into v_pending from trellis.runs r
   where r.status = 'pending' and r.queue = any (v_open) and r.workflow || pg_catalog.chr(31) || r.version = any (v_pairs);
  select min(r.run_at) into v_waiting from trellis.runs r
   where r.status = 'waiting' and r.queue = any (p_queues) and r.run_at < 'infinity'
     and r.workflow || pg_catalog.chr(31) || r.version = any (v_pairs);
  select min(r.lease_expires_at) into v_lease from trellis.runs r where r.status = 'running';
  return least(v_pending, v_waiting, v_lease);
end $$;
comment on function trellis._next_due_by_bucket(text[], text[], text[]) is
  'run_next_due on a distributed schema: the earliest due pending or waiting run of the served pairs, or lease expiry, each read on every node.';

-- run_purge and _purge_workflow on a distributed schema: up to p_limit
-- runs that finished before p_cutoff (of p_workflow, created before the
-- cutoff too, oldest created first; else oldest finished first), not
-- awaited by a waiting child call of a parent, locked FOR UPDATE SKIP
-- LOCKED one bucket at a time. The candidates are read in pages without a
-- lock (a multi-shard read), the awaited ones dropped by a read of steps by
-- child id (a parent may live in another bucket), then locked.
create or replace function trellis._purge_pick_by_bucket(p_workflow text, p_cutoff timestamptz, p_limit integer)
returns uuid[] language plpgsql as $$
declare
  v_got   uuid[] := '{}';
  v_ids   uuid[];
  v_keys  timestamptz[];
  v_held  uuid[];
  v_at    timestamptz := '-infinity';
  v_after uuid := '00000000-0000-0000-0000-000000000000';
  v_pages integer := 0;
begin
  while cardinality(v_got) < p_limit and v_pages < 10 loop
    v_pages := v_pages + 1;
    if p_workflow is null then
      select coalesce(array_agg(x.id order by x.at, x.id), '{}'), coalesce(array_agg(x.at order by x.at, x.id), '{}')
        into v_ids, v_keys
        from (select r.id, r.finished_at as at from trellis.runs r
               where r.finished_at < p_cutoff and (r.finished_at, r.id) > (v_at, v_after)
               order by r.finished_at, r.id limit p_limit) x;
    else
      select coalesce(array_agg(x.id order by x.at, x.id), '{}'), coalesce(array_agg(x.at order by x.at, x.id), '{}')
        into v_ids, v_keys
        from (select r.id, r.created_at as at from trellis.runs r
               where r.workflow = p_workflow and r.created_at < p_cutoff and r.finished_at < p_cutoff
                 and (r.created_at, r.id) > (v_at, v_after)
               order by r.created_at, r.id limit p_limit) x;
    end if;
    exit when cardinality(v_ids) = 0;
    v_at := v_keys[cardinality(v_keys)];
    v_after := v_ids[cardinality(v_ids)];
    -- (As _awaited: a completed or cancelled parent's waiting call holds nothing.)
    select coalesce(array_agg((w.output->>'child')::uuid), '{}') into v_held
      from trellis.steps w join trellis.runs p on p.bucket = w.bucket and p.id = w.run_id
     where (w.output->>'child')::uuid = any (v_ids) and w.status = 'waiting' and w.kind = 'child'
       and p.status not in ('completed', 'cancelled');
    -- (As the one-node purges: a run with a lifecycle hook not delivered yet is kept.)
    v_held := v_held || array(select h.run_id from trellis.hook_deliveries h where h.run_id = any (v_ids));
    v_held := trellis._lock_due(array(select i from unnest(v_ids) with ordinality as c(i, n)
                                        where i <> all (v_held) order by n), 'finished', p_cutoff);
    v_got := v_got || v_held[1:p_limit - cardinality(v_got)];
    exit when cardinality(v_ids) < p_limit;
  end loop;
  return v_got;
end $$;
comment on function trellis._purge_pick_by_bucket(text, timestamptz, integer) is
  'Purges on a distributed schema: up to p_limit runs finished before p_cutoff (of p_workflow, oldest created first; else oldest finished first) that no waiting child call awaits and no undelivered lifecycle hook holds, locked FOR UPDATE SKIP LOCKED one bucket at a time.';

-- hook_claim on a distributed schema: of the hook deliveries p_ids (found
-- by a read without a lock), those still pending and due by p_now
-- (p_status 'pending') or running with a lease expired by p_now
-- ('running'), locked FOR UPDATE SKIP LOCKED one bucket at a time; in the
-- order of p_ids.
create or replace function trellis._lock_hooks(p_ids bigint[], p_status text, p_now timestamptz)
returns bigint[] language plpgsql as $$
declare
  v_bucket integer;
  v_ids    bigint[];
  v_id     bigint;
  v_got    bigint[] := '{}';
begin
  if cardinality(p_ids) is null or cardinality(p_ids) = 0 then
    return v_got;
  end if;
  perform trellis._one_connection();
  for v_bucket, v_ids in
    select d.bucket, array_agg(d.id) from trellis.hook_deliveries d where d.id = any (p_ids)
     group by d.bucket order by d.bucket
  loop
    for v_id in
      select d.id from trellis.hook_deliveries d
       where d.bucket = v_bucket and d.id = any (v_ids) and d.status = p_status
         and (p_status <> 'pending' or d.run_at <= p_now)
         and (p_status <> 'running' or d.lease_expires_at < p_now)
       order by d.id
         for update skip locked
    loop
      v_got := v_got || v_id;
    end loop;
  end loop;
  return array(select i from unnest(p_ids) with ordinality as c(i, n) where i = any (v_got) order by n);
end $$;
comment on function trellis._lock_hooks(bigint[], text, timestamptz) is
  'hook_claim on a distributed schema: lock (FOR UPDATE SKIP LOCKED, one bucket at a time) those of hook deliveries p_ids still pending and due by p_now, or running with a lease expired by p_now (p_status); returns them in the order of p_ids.';

-- Place the schema on a Citus cluster (docs/scaling.md): run once on the
-- coordinator after install, before the first run. Dynamic SQL, so the
-- function installs on any PostgreSQL; it refuses (TR001) where the citus
-- extension is missing, and skips tables already placed, so a second call
-- changes nothing.
create or replace function trellis.citus_distribute()
returns void language plpgsql as $$
declare
  v_table regclass;
begin
  if not exists (select 1 from pg_catalog.pg_extension where extname = 'citus') then
    perform trellis._raise('TR001', 'citus_distribute needs the citus extension in this database (create extension citus)');
  end if;
  -- Sequential: Citus refuses function changes after parallel shard work in one transaction.
  perform pg_catalog.set_config('citus.multi_shard_modify_mode', 'sequential', true);
  foreach v_table in array array['trellis.settings', 'trellis.workflows', 'trellis.clock', 'trellis.run_transitions',
    'trellis.event_consumers', 'trellis.retentions', 'trellis.templates', 'trellis.connector_cursors',
    'trellis.roles', 'trellis.schedules', 'trellis.queues', 'trellis.schema_info', 'trellis.migrations']::regclass[] loop
    if not exists (select 1 from pg_dist_partition where logicalrelid = v_table) then
      execute format('select create_reference_table(%L)', v_table);
    end if;
  end loop;
  if not exists (select 1 from pg_dist_partition where logicalrelid = 'trellis.runs'::regclass) then
    execute 'select create_distributed_table(''trellis.runs'', ''bucket'')';
  end if;
  foreach v_table in array array['trellis.steps', 'trellis.signals', 'trellis.events', 'trellis.hook_deliveries',
                                  'trellis.run_deadlines', 'trellis.run_watches']::regclass[] loop
    if not exists (select 1 from pg_dist_partition where logicalrelid = v_table) then
      execute format('select create_distributed_table(%L, ''bucket'', colocate_with => ''trellis.runs'')', v_table);
    end if;
  end loop;
  -- One connection per node for each engine transaction (_one_connection):
  -- the default of every session that connects from now on.
  execute format('alter database %I set citus.max_adaptive_executor_pool_size = 1', pg_catalog.current_database());
  perform trellis.setting_set('distributed', 'true');
  -- A distributed planner needs parameter values to plan a multi-shard read:
  -- no forced generic plans (sql/900_plans.sql skips them from now on).
  perform trellis._plans_reset();
  -- The form of queue_stats a cluster can plan (sql/230_queue_claim.sql;
  -- every later install keeps it, reading the setting).
  perform trellis._queue_stats_view(true);
end $$;
comment on function trellis.citus_distribute() is
  'Place the schema on a Citus cluster (run on the coordinator, before the first run): the run-scoped tables distributed by bucket and co-located with trellis.runs, the others reference tables; then setting distributed on, one Citus connection per node per session (the database default of citus.max_adaptive_executor_pool_size) and no forced generic plans. TR001 without the citus extension. Idempotent.';

create or replace function trellis._plans_reset()
returns void language plpgsql as $$
declare
  f regprocedure;
begin
  for f in select p.oid::regprocedure from pg_catalog.pg_proc p join pg_catalog.pg_namespace n on n.oid = p.pronamespace
            where n.nspname = 'trellis' and p.proconfig::text like '%plan_cache_mode%'
  loop
    execute format('alter function %s reset plan_cache_mode', f);
  end loop;
end $$;
comment on function trellis._plans_reset() is
  'Reset plan_cache_mode on every trellis function that sets it (citus_distribute).';

-- 600_retention: deleting finished runs after an age, and scrubbing one
-- run's payloads.
-- Owns: retention_set, retention, run_purge, run_purge_due (_purge_workflow), run_scrub.
-- Touches: trellis.runs (delete; their signals go by cascade, their steps,
-- events and hook deliveries are deleted and a purged event appended; and a
-- deleted run's children lose their parent link; update by run_scrub),
-- trellis.steps and trellis.signals (update by run_scrub), trellis.settings
-- (the default retention), trellis.retentions (per workflow).
-- Lock order: the purged runs, FOR UPDATE SKIP LOCKED in finished_at
-- order, then their children (whose parent link is cleared), FOR UPDATE
-- SKIP LOCKED in id order, so a purge never waits for a run another
-- transaction holds (the run, or the parent of a child held, is left for a
-- later purge) and nothing waits long for a purge. run_purge_due
-- first takes a transaction-level advisory try-lock, so of many workers that
-- purge on a timer one does the work at a time and the others return at once.
-- run_scrub locks the one run (FOR NO KEY UPDATE), then its steps and signals.
-- On a distributed schema the purges read their candidates without a lock
-- and lock them one bucket at a time (_purge_pick_by_bucket, sql/160_buckets.sql).
--
-- A finished child run is kept while a call of its parent still waits on it
-- (a parent reads the child's outcome from the child's row when it next
-- runs, and a failed parent that is retried runs that call again); the
-- waiting call is found through steps_child_wait_idx.

-- At most 1000 years (or infinity): the purges subtract it from now, and a
-- longer finite duration reaches before the first timestamp PostgreSQL
-- holds (4713 BC), 22008 on every purge.
create or replace function trellis._check_retention(p_older_than interval, p_what text)
returns interval language plpgsql immutable as $$
begin
  if p_older_than is null or p_older_than < interval '0'
     or (p_older_than > interval '1000 years' and isfinite(p_older_than)) then
    perform trellis._raise('TR001', format('%s must be a duration from zero to 1000 years (or infinity), not %s',
      p_what, coalesce(trellis._quote(p_older_than::text), 'null')));
  end if;
  return p_older_than;
end $$;
comment on function trellis._check_retention(interval, text) is
  'Return p_older_than if it is an interval from zero to 1000 years, or infinity, else raise TR001.';

create or replace function trellis._check_purge_limit(p_limit integer)
returns integer language plpgsql immutable as $$
begin
  if p_limit is null or p_limit < 1 or p_limit > 100000 then
    perform trellis._raise('TR001', format('limit must be from 1 to 100000, not %s', coalesce(p_limit::text, 'null')));
  end if;
  return p_limit;
end $$;
comment on function trellis._check_purge_limit(integer) is
  'Return p_limit if it is from 1 to 100000, else raise TR001.';

-- Without p_workflow: the default retention, for every workflow without one
-- of its own. With p_workflow: that workflow's (null removes it, so the
-- default applies again).
create or replace function trellis.retention_set(p_older_than interval, p_workflow text default null)
returns interval language plpgsql as $$
begin
  if p_older_than is not null and p_older_than < interval '1 second' then
    perform trellis._raise('TR001', format('retention must be at least 1 second, not %s', p_older_than));
  end if;
  if p_older_than is not null then
    perform trellis._check_retention(p_older_than, 'retention');
  end if;
  if p_workflow is not null then
    perform trellis._check_name(p_workflow, 'workflow');
    if not exists (select 1 from trellis.workflows where name = p_workflow) then
      perform trellis._raise('TR002', format('unknown workflow %L: no worker or client has registered it', p_workflow));
    end if;
    if p_older_than is null then
      delete from trellis.retentions where workflow = p_workflow;
    else
      insert into trellis.retentions as r (workflow, keep, updated_at) values (p_workflow, p_older_than, now())
      on conflict (workflow) do update set keep = excluded.keep, updated_at = excluded.updated_at;
    end if;
    return p_older_than;
  end if;
  if p_older_than is null then
    delete from trellis.settings where key = 'retention';
    return null;
  end if;
  insert into trellis.settings as s (key, value, updated_at) values ('retention', to_jsonb(p_older_than::text), now())
  on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at;
  return p_older_than;
end $$;
comment on function trellis.retention_set(interval, text) is
  'Keep finished runs (completed, failed, cancelled) for p_older_than after they finished, then let workers purge them with their steps and signals. Without p_workflow: the default for every workflow (null: kept forever, the default). With p_workflow: that workflow''s own retention, which wins over the default either way (null removes it). From 1 second to 1000 years, or infinity (TR001 otherwise). Returns the new setting.';

create or replace function trellis.retention(p_workflow text default null)
returns interval language plpgsql stable as $$
begin
  if p_workflow is not null then
    perform trellis._check_name(p_workflow, 'workflow');
    if not exists (select 1 from trellis.workflows where name = p_workflow) then
      perform trellis._raise('TR002', format('unknown workflow %L: no worker or client has registered it', p_workflow));
    end if;
  end if;
  return coalesce((select r.keep from trellis.retentions r where r.workflow = p_workflow),
                  (select (value #>> '{}')::interval from trellis.settings where key = 'retention'));
end $$;
comment on function trellis.retention(text) is
  'The retention of finished runs: without p_workflow the default set by retention_set (null: kept forever); with p_workflow the one that applies to that workflow (its own, else the default; TR002 for a workflow nobody registered, TR001 for a bad name).';

-- Whether a call of a parent still waits on this (finished child) run: the
-- parent reads the child's outcome from its row when it next runs. Inlined
-- into the purges' queries (a probe of steps_child_wait_idx per candidate).
-- A waiting child call of a completed or cancelled parent waits for nothing:
-- that parent never runs again (only a failed run can be retried, and its
-- replay would wait on the child again), so it no longer keeps the child
-- from its own retention (a cancelled parent's abandoned child was kept
-- until the parent itself was purged).
create or replace function trellis._awaited(p_run_id uuid)
returns boolean language sql stable as $$
  select exists (select 1 from trellis.steps w join trellis.runs p on p.bucket = w.bucket and p.id = w.run_id
                  where (w.output->>'child')::uuid = p_run_id and w.status = 'waiting' and w.kind = 'child'
                    and p.status not in ('completed', 'cancelled'))
$$;
comment on function trellis._awaited(uuid) is
  'Whether a waiting child call of a parent run that may still run (not completed or cancelled) waits on run p_run_id.';

-- Delete the runs a purge picked and locked; how many (0 for none).
-- Their events and hook deliveries go with them, and each leaves one
-- purged event (so a reader learns the run is gone; it is itself purged
-- with the consumed events).
create or replace function trellis._delete_runs(p_ids uuid[])
returns integer language plpgsql as $$
declare
  v_now     timestamptz := trellis.now();
  v_xid     xid8;
  v_kids    uuid[];
  v_parents uuid[];
  v_locked  uuid[];
  v_picked  uuid[] := p_ids;
begin
  if p_ids is null or cardinality(p_ids) = 0 then
    return 0;
  end if;
  -- The children of the runs to delete lose their parent link below (it
  -- crosses buckets, so it is no foreign key). They are locked first, with
  -- SKIP LOCKED, and a run with a child another transaction holds is left
  -- for a later purge: waiting there, the purge (holding the parent) and a
  -- cancel or the end of that child (holding the child, then locking its
  -- parent in id order) could wait on each other (40P01). A finished run
  -- starts no more children, so the set read here does not grow.
  select coalesce(array_agg(c.id order by c.id), '{}'), coalesce(array_agg(c.parent_run_id order by c.id), '{}')
    into v_kids, v_parents
    from trellis.runs c where c.parent_run_id = any (p_ids) and c.id <> all (p_ids);
  if cardinality(v_kids) > 0 then
    if trellis._distributed() then
      v_locked := trellis._lock_due(v_kids, 'any', null);
    else
      v_locked := array(select c.id from trellis.runs c where c.id = any (v_kids) order by c.id for update skip locked);
    end if;
    if cardinality(v_locked) < cardinality(v_kids) then
      p_ids := array(select i from unnest(p_ids) i
                      where i <> all (array(select k.parent from unnest(v_kids, v_parents) as k(id, parent)
                                             where k.id <> all (v_locked))));
      if cardinality(p_ids) = 0 then
        return 0;
      end if;
    end if;
  end if;
  -- The purged events' transaction id, read here, not by a default a
  -- distributed plan could evaluate on a worker node (decision 0030); after
  -- the return above, so a call with nothing to delete takes no id.
  v_xid := pg_catalog.pg_current_xact_id();
  with gone as (
    delete from trellis.runs where id = any (p_ids)
    returning bucket, id, workflow, version, key, attempt, status, execution),
  -- Steps have no foreign key to their run (migration 000022): deleted here.
  steps as (
    delete from trellis.steps s using gone where s.bucket = gone.bucket and s.run_id = gone.id),
  events as (
    delete from trellis.events e using gone where e.bucket = gone.bucket and e.run_id = gone.id),
  hooks as (
    delete from trellis.hook_deliveries h using gone where h.bucket = gone.bucket and h.run_id = gone.id),
  deadlines as (
    delete from trellis.run_deadlines d using gone where d.bucket = gone.bucket and d.run_id = gone.id),
  -- (A finished run's watchers were woken and deleted at its end: none are
  -- left but those of a run purged some other way.)
  watches as (
    delete from trellis.run_watches w using gone where w.bucket = gone.bucket and w.run_id = gone.id),
  -- The parent link crosses buckets (a child with its own key), so it is no
  -- foreign key: a purged run's children lose it here.
  orphans as (
    update trellis.runs c set parent_run_id = null
     where c.parent_run_id = any (p_ids) and c.id <> all (p_ids)
       -- The locked children, and the picked runs left out above (locked
       -- by the pick) whose parent goes.
       and (c.id = any (v_locked) or c.id = any (v_picked)))
  insert into trellis.events (bucket, run_id, workflow, version, key, kind, attempt, body, created_at, xid)
  select gone.bucket, gone.id, gone.workflow, gone.version, gone.key, 'purged', gone.attempt,
         jsonb_build_object('from', gone.status, 'execution', gone.execution), v_now, v_xid
    from gone
   where trellis._outbox_on()
   order by gone.id;
  return cardinality(p_ids);
end $$;
comment on function trellis._delete_runs(uuid[]) is
  'Delete the runs p_ids (their signals by cascade; their steps, events, hook deliveries and deadline rows), appending one purged event each; returns how many.';

-- Up to p_limit finished runs of one workflow that finished more than p_keep
-- ago. Found through runs_workflow_created_idx: a run finished after it was
-- created, so only runs created before the cutoff are read (those among them
-- still unfinished, or finished later, are read again next time: the
-- long-lived few). A child is kept while a call of its parent waits on it.
create or replace function trellis._purge_workflow(p_workflow text, p_keep interval, p_limit integer)
returns integer language plpgsql as $$
declare
  -- A keep over 1000 years (stored before retention_set refused it) as
  -- 1000 years: the same runs (none), without 22008 on every purge.
  v_cutoff timestamptz := trellis.now() - least(p_keep, interval '1000 years');
  v_ids    uuid[];
begin
  if trellis._distributed() then
    -- Row locks one bucket at a time (sql/160_buckets.sql).
    return trellis._delete_runs(trellis._purge_pick_by_bucket(p_workflow, v_cutoff, p_limit));
  end if;
  select array_agg(s.id) into v_ids from (
    select r.id from trellis.runs r
     where r.workflow = p_workflow and r.created_at < v_cutoff and r.finished_at < v_cutoff
       and not trellis._awaited(r.id)
       -- A lifecycle hook not delivered yet (pending, retrying, running or
       -- parked) keeps its run: it is delivered at least once, or parked for
       -- an operator, never dropped by retention.
       and not exists (select 1 from trellis.hook_deliveries h where h.bucket = r.bucket and h.run_id = r.id)
     order by r.created_at
     limit p_limit
       for update of r skip locked) s;
  return trellis._delete_runs(v_ids);
end $$;
comment on function trellis._purge_workflow(text, interval, integer) is
  'Delete up to p_limit runs of p_workflow that finished more than p_keep ago (oldest started first), with their steps and signals; returns how many.';

create or replace function trellis.run_purge(p_older_than interval, p_limit integer default 1000,
  p_workflow text default null)
returns integer language plpgsql as $$
declare
  v_cutoff timestamptz;
  v_ids    uuid[];
begin
  perform trellis._check_retention(p_older_than, 'older_than');
  perform trellis._check_purge_limit(p_limit);
  if p_workflow is not null then
    perform trellis._check_name(p_workflow, 'workflow');
    return trellis._purge_workflow(p_workflow, p_older_than, p_limit);
  end if;
  v_cutoff := trellis.now() - p_older_than;
  if trellis._distributed() then
    -- Row locks one bucket at a time (sql/160_buckets.sql).
    return trellis._delete_runs(trellis._purge_pick_by_bucket(null, v_cutoff, p_limit));
  end if;
  select array_agg(s.id) into v_ids from (
    select r.id from trellis.runs r
     where r.finished_at < v_cutoff
       and not trellis._awaited(r.id)
       and not exists (select 1 from trellis.hook_deliveries h where h.bucket = r.bucket and h.run_id = r.id)
     order by r.finished_at
     limit p_limit
       for update of r skip locked) s;
  return trellis._delete_runs(v_ids);
end $$;
comment on function trellis.run_purge(interval, integer, text) is
  'Delete up to p_limit runs (1-100000) that finished more than p_older_than ago, oldest first, with their steps and signals (optionally only of workflow p_workflow); keeps a child run while a call of its parent waits on it, and a run while a lifecycle hook of it is not delivered (pending, running or parked). Skips runs locked by other transactions. Returns how many runs were deleted. Their idempotency keys are free again.';

-- Each registered workflow with a retention (its own, else the default) is
-- purged through _purge_workflow until p_limit runs are gone, so a workflow
-- kept longer than the default is never scanned past by the others' purges.
-- The outbox's retention: events past the default retention (the longest
-- a workflow's own when there is no default) that every durable consumer
-- has acknowledged, one batch. The worker's purge loop calls it until a
-- batch comes back short, so a backlog (a consumer dropped after it
-- lagged, a long chain of continue-as-new) drains at the database's pace,
-- not at one batch per purge interval.
create or replace function trellis.events_purge_due(p_limit integer default 1000)
returns integer language plpgsql as $$
declare
  v_keep interval;
begin
  perform trellis._check_purge_limit(p_limit);
  v_keep := coalesce(trellis.retention(), (select max(keep) from trellis.retentions));
  if v_keep is null then
    return null;
  end if;
  -- One purger of events at a time; the others have nothing to add.
  if not pg_try_advisory_xact_lock(1414679635, 3) then
    return 0;
  end if;
  return trellis.events_purge(least(v_keep, interval '1000 years'), p_limit);
end $$;
comment on function trellis.events_purge_due(integer) is
  'Delete up to p_limit events past the outbox''s retention (the default retention, else the longest per-workflow one) that every durable consumer acknowledged (events_purge); returns how many, null when no retention is set at all, 0 when another session is purging events. Workers call it after run_purge_due until a batch comes back short.';

create or replace function trellis.run_purge_due(p_limit integer default 1000)
returns integer language plpgsql as $$
declare
  v_default interval := trellis.retention();
  v_left    integer;
  w         record;
begin
  perform trellis._check_purge_limit(p_limit);
  if v_default is null and not exists (select 1 from trellis.retentions) then
    return null;
  end if;
  -- One purger at a time; the others have nothing to add.
  if not pg_try_advisory_xact_lock(1414679635, 2) then
    return 0;
  end if;
  -- Consumed events past their retention, a batch of their own (workers
  -- drain the rest with events_purge_due; older ones called only this).
  perform trellis.events_purge_due(p_limit);
  v_left := p_limit;
  for w in
    select f.name, coalesce(r.keep, v_default) as keep
      from (select distinct name from trellis.workflows) f
      left join trellis.retentions r on r.workflow = f.name
     where coalesce(r.keep, v_default) is not null
     order by f.name
  loop
    exit when v_left <= 0;
    v_left := v_left - trellis._purge_workflow(w.name, w.keep, v_left);
  end loop;
  return p_limit - v_left;
end $$;
comment on function trellis.run_purge_due(integer) is
  'Purge up to p_limit runs past their retention (each workflow''s own from retention_set, else the default); null when no retention is set at all, 0 when another session is purging. Workers call it on a timer.';

-- An error with its message and details replaced: its name and code stay.
create or replace function trellis._scrub_error(p_error jsonb)
returns jsonb language sql immutable as $$
  select case when p_error is null then null
              else jsonb_strip_nulls(jsonb_build_object('name', p_error->'name', 'code', p_error->'code', 'message', 'scrubbed'))
         end
$$;
comment on function trellis._scrub_error(jsonb) is
  'p_error with only its name and code kept and the message replaced by ''scrubbed''; null stays null.';

create or replace function trellis.run_scrub(p_run_id uuid)
returns timestamptz language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
  v_run trellis.runs;
begin
  v_run := trellis._run_lock(p_run_id);
  if v_run.status not in ('completed', 'failed', 'cancelled') then
    perform trellis._raise('TR004', format('run %s is %s: only a finished run can be scrubbed (cancel it first)', p_run_id, v_run.status));
  end if;
  if v_run.scrubbed_at is not null then
    return v_run.scrubbed_at;
  end if;
  update trellis.steps
     set output = null, error = trellis._scrub_error(error)
   where bucket = v_run.bucket and run_id = p_run_id;
  update trellis.signals set payload = 'null', start = null, reply = null where bucket = v_run.bucket and run_id = p_run_id;
  -- Events carry output and error only when the workflow opted in.
  update trellis.events set body = body - 'output' - 'error'
   where bucket = v_run.bucket and run_id = p_run_id and (body ? 'output' or body ? 'error');
  update trellis.runs
     set input = 'null', output = null, error = trellis._scrub_error(error), metadata = '{}',
         scrubbed_at = v_now, updated_at = v_now
   where bucket = v_run.bucket and id = p_run_id;
  return v_now;
end $$;
comment on function trellis.run_scrub(uuid) is
  'Remove the payloads of finished run p_run_id (PII): input, output, metadata, every step result and signal payload, and error messages; keep its skeleton (workflow, key, status, step names, kinds, statuses, attempts, timestamps). Returns when it was scrubbed (the first time; calling again changes nothing). TR002 unknown, TR004 not finished. A scrubbed run cannot be retried. Its child runs are separate runs: scrub them too.';

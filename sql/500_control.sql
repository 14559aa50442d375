-- 500_control: operator and API controls of a run.
-- Owns: run_cancel (_run_cancel, _cancel_reach, _cancel_cascade, _cancel_one, _finish_cancelled),
-- run_cancel_overdue (run deadlines),
-- run_pause, run_resume, run_resume_due (parked runs resumed: decision 0038), run_retry. (The test kit's clock is in 800_clock.sql.)
-- Touches: trellis.run_deadlines (run_cancel_overdue deletes the row it looked at),
-- trellis.runs (update; status only through _run_move,
-- sql/150_transitions.sql), trellis.steps (delete on retry), trellis.signals
-- (given back on retry).
-- Lock order: run rows in id order, all taken up front in one statement.
-- run_cancel locks the run, its parent (woken if the run ends at once) and
-- every run the cancellation reaches (the unfinished 'cancel' children,
-- recursively), then changes them parent before child without waiting for any
-- further lock: a run that appeared after the reach was computed (a child
-- started meanwhile) is taken with SKIP LOCKED, and if another transaction
-- holds it, it is left to the cascade that runs when its parent ends. A
-- child's end (checkpoint_apply) also locks the child and its parent up front
-- in id order, so a cancel of the parent and the end of the child serialise on
-- the first row of the two instead of deadlocking (40P01). The other controls
-- lock one run.

-- Lock a run for a control (one run, or one of many: run_resume_due and the
-- bulk controls of sql/520_control_many.sql); its row, or a row of nulls
-- when it is gone (purged since the caller read it).
create or replace function trellis._run_lock_if_any(p_run_id uuid)
returns trellis.runs language plpgsql as $$
declare
  v_run trellis.runs;
begin
  if trellis._distributed() then
    -- Locked within its bucket (sql/160_buckets.sql), then read.
    perform trellis._lock_runs(array[p_run_id]);
    select * into v_run from trellis.runs r where r.id = p_run_id;
  else
    select * into v_run from trellis.runs r where r.id = p_run_id for no key update;
  end if;
  return v_run;
end $$;
comment on function trellis._run_lock_if_any(uuid) is
  'Lock run p_run_id (FOR NO KEY UPDATE) and return it; a row of nulls if it does not exist.';

-- Lock a run for a control change; TR002 when it does not exist.
create or replace function trellis._run_lock(p_run_id uuid)
returns trellis.runs language plpgsql as $$
declare
  v_run trellis.runs := trellis._run_lock_if_any(p_run_id);
begin
  if v_run.id is null then
    perform trellis._raise('TR002', format('run %s does not exist', coalesce(p_run_id::text, 'null')));
  end if;
  return v_run;
end $$;
comment on function trellis._run_lock(uuid) is
  'Lock run p_run_id (FOR NO KEY UPDATE) and return it; TR002 if it does not exist.';

-- Reads only: callers lock the result (in id order, with the rest of their set).
-- PL/pgSQL so the distributed path (level by level: a distributed schema has
-- no recursive query over its runs) is never planned on one node, nor the
-- recursive one there.
create or replace function trellis._cancel_reach(p_roots uuid[])
returns setof uuid language plpgsql stable as $$
declare
  v_level uuid[] := p_roots;
begin
  if not trellis._distributed() then
    return query
    with recursive reach(id) as (
      select c.id from trellis.runs c
       where c.parent_run_id = any (p_roots) and c.parent_close = 'cancel'
         and c.status not in ('completed', 'failed', 'cancelled')
      union
      select c.id from trellis.runs c join reach on c.parent_run_id = reach.id
       where c.parent_close = 'cancel' and c.status not in ('completed', 'failed', 'cancelled')
    )
    select reach.id from reach;
    return;
  end if;
  while cardinality(v_level) > 0 loop
    select coalesce(array_agg(c.id), '{}') into v_level from trellis.runs c
     where c.parent_run_id = any (v_level) and c.parent_close = 'cancel'
       and c.status not in ('completed', 'failed', 'cancelled');
    return query select unnest(v_level);
  end loop;
end $$;
comment on function trellis._cancel_reach(uuid[]) is
  'The runs a cancellation of p_roots reaches (roots excluded): their unfinished children started with parent_close cancel, and those children''s, recursively. Takes no locks.';

create or replace function trellis._finish_cancelled(p_run_id uuid, p_reason text)
returns void language plpgsql as $$
begin
  perform trellis._run_move(array[row(p_run_id, 'cancelled', 'cancelled', null, null, false,
    jsonb_build_object('name', 'CancelledError', 'code', 'cancelled', 'message', coalesce(p_reason, 'cancelled')), true,
    null, null, null, null, null, null, null, null, null, null)::trellis.run_move]);
  perform trellis._wake_child_waiters(array[p_run_id]);
  perform trellis._notify_finished(p_run_id::text);
end $$;
comment on function trellis._finish_cancelled(uuid, text) is
  'End a run (already locked with its parent, not running) as cancelled: wake its waiting parent and notify.';

-- Cancel one unfinished run that the caller has locked (with its parent).
create or replace function trellis._cancel_one(p_run trellis.runs, p_reason text)
returns void language plpgsql as $$
declare
  v_now   timestamptz := trellis.now();
  v_error jsonb;
begin
  if p_run.attempt = 0 then
    -- Never started: no workflow code to deliver the cancellation to.
    perform trellis._finish_cancelled(p_run.id, p_reason);
    return;
  end if;
  -- A cancellation requested before keeps its reason: the first one wins (a
  -- second run_cancel, or a parent's cascade reaching a child cancelled with
  -- a reason of its own, only wakes the run again).
  v_error := case when p_run.cancel_requested_at is not null and p_run.error->>'code' = 'cancelled' then p_run.error
                  else jsonb_build_object('name', 'CancelledError', 'code', 'cancelled', 'message', coalesce(p_reason, 'cancelled')) end;
  -- Started: the workflow gets CancelledError at its next wait (its cleanup
  -- code may run); a running step's AbortSignal fires on its worker.
  -- A waiting or paused run becomes pending (through _run_move); a running
  -- or pending one keeps its status.
  if p_run.status in ('waiting', 'paused') then
    perform trellis._run_move(array[row(p_run.id, 'pending', 'resumed', v_now, null, false, v_error, true,
      null, null, null, null, null, true, null, null, null, '{"reason":"cancel"}')::trellis.run_move]);
    if p_run.resume_at is not null then
      update trellis.runs set resume_at = null where bucket = p_run.bucket and id = p_run.id;
    end if;
  else
    update trellis.runs
       set cancel_requested_at = coalesce(cancel_requested_at, v_now),
           error = v_error,
           run_at = case when p_run.status = 'running' then run_at else v_now end,
           updated_at = v_now
     where bucket = p_run.bucket and id = p_run.id;
  end if;
  if p_run.status = 'running' then
    -- The id only (any role may LISTEN, docs/security.md): the worker reads
    -- the reason with run_requests, under its lease token.
    perform pg_notify('trellis:run_control', 'cancel:' || p_run.id::text);
  else
    perform pg_notify('trellis:run_ready', p_run.queue);
  end if;
end $$;
comment on function trellis._cancel_one(trellis.runs, text) is
  'Cancel a locked unfinished run: end it at once if it never started, else request the cancellation and wake it or tell its worker.';

-- The cascade, parent before child. Runs of the caller's locked set are its
-- own locks (never skipped); a run not in it is locked only if free now.
create or replace function trellis._cancel_cascade(p_parents uuid[], p_reason text)
returns void language plpgsql as $$
declare
  v_level uuid[] := p_parents;
  v_next  uuid[];
  v_run   trellis.runs;
begin
  while cardinality(v_level) > 0 loop
    v_next := '{}';
    if trellis._distributed() then
      -- Found on every node, then locked one bucket at a time (sql/160_buckets.sql).
      select coalesce(array_agg(c.id), '{}') into v_next from trellis.runs c
       where c.parent_run_id = any (v_level) and c.parent_close = 'cancel'
         and c.status not in ('completed', 'failed', 'cancelled');
      v_next := trellis._lock_due(v_next, 'unfinished', null);
      for v_run in select * from trellis.runs c where c.id = any (v_next) order by c.id loop
        perform trellis._cancel_one(v_run, p_reason);
      end loop;
    else
    for v_run in
      select * from trellis.runs c
       where c.parent_run_id = any (v_level) and c.parent_close = 'cancel'
         and c.status not in ('completed', 'failed', 'cancelled')
       order by c.id
         for no key update skip locked
    loop
      perform trellis._cancel_one(v_run, p_reason);
      v_next := v_next || v_run.id;
    end loop;
    end if;
    v_level := v_next;
  end loop;
end $$;
comment on function trellis._cancel_cascade(uuid[], text) is
  'Cancel the unfinished cancel-children of p_parents, recursively; expects the caller to hold the runs _cancel_reach(p_parents) returned, and never waits for another lock.';

-- run_cancel's body. With p_overdue (run_cancel_overdue), only a run still
-- overdue then under its lock (unfinished, no cancellation requested, its
-- deadline at or before p_overdue) is cancelled; null otherwise, and for a
-- run that no longer exists (purged).
create or replace function trellis._run_cancel(p_run_id uuid, p_reason text, p_overdue timestamptz)
returns text language plpgsql as $$
declare
  v_run trellis.runs;
begin
  select * into v_run from trellis.runs where id = p_run_id;
  if not found and p_overdue is not null then
    return null;
  elsif not found then
    perform trellis._raise('TR002', format('run %s does not exist', coalesce(p_run_id::text, 'null')));
  end if;
  perform trellis._lock_runs(array(select p_run_id union all select v_run.parent_run_id
                                  union all select trellis._cancel_reach(array[p_run_id])
                                  -- The runs that wait on it (decision 0039), woken by its end.
                                  union all select w.waiter_id from trellis.run_watches w where w.run_id = p_run_id));
  select * into v_run from trellis.runs where id = p_run_id;
  if not found and p_overdue is not null then
    return null;
  elsif not found then
    perform trellis._raise('TR002', format('run %s does not exist', coalesce(p_run_id::text, 'null')));
  end if;
  if p_overdue is not null and not coalesce(v_run.deadline_at <= p_overdue and v_run.finished_at is null
                                             and v_run.cancel_requested_at is null, false) then
    return null;
  end if;
  if v_run.status = 'cancelled' then
    return 'cancelled';
  elsif v_run.status in ('completed', 'failed') then
    perform trellis._raise('TR004', format('run %s is %s and cannot be cancelled', p_run_id, v_run.status));
  end if;
  perform trellis._cancel_one(v_run, p_reason);
  perform trellis._cancel_cascade(array[p_run_id], coalesce(p_reason, 'parent run cancelled'));
  return (select status from trellis.runs where id = p_run_id);
end $$;
comment on function trellis._run_cancel(uuid, text, timestamptz) is
  'run_cancel, and (p_overdue) run_cancel_overdue''s cancellation of a run only while it is still overdue at p_overdue (else null).';

create or replace function trellis.run_cancel(p_run_id uuid, p_reason text default null)
returns text language plpgsql as $$
begin
  -- The reason is kept in the run's error (and its children's): a payload.
  perform trellis._check_payload(to_jsonb(p_reason), 'cancel reason');
  return trellis._run_cancel(p_run_id, p_reason, null);
end $$;
comment on function trellis.run_cancel(uuid, text) is
  'Cancel a run and (unless they were started with parent_close abandon) its unfinished children. A run that never started ends cancelled at once; a started one is woken and ends cancelled after its workflow sees CancelledError. Returns the status. TR002 unknown, TR004 completed/failed, TR005 a reason over max_payload_bytes. Locks the run, its parent and the runs it reaches in id order, up front.';

-- Run deadlines (decision 0031). The duty trellis.deadlines (a worker that
-- holds the role) calls this until it returns null: one run per call, so
-- each cancellation is a transaction of its own and takes its locks as
-- run_cancel does (the run, its parent and the runs it reaches, in id
-- order, up front). The run is found without a lock, through
-- trellis.run_deadlines (a row per run started with a deadline), and
-- cancelled only if it is still overdue under its lock. Either way its row
-- there is deleted: a run that finished, was cancelled or was purged
-- meanwhile is passed over, and its id is returned all the same (the
-- caller looks again).
create or replace function trellis.run_cancel_overdue()
returns uuid language plpgsql as $$
declare
  v_now      timestamptz := trellis.now();
  v_bucket   integer;
  v_id       uuid;
  v_deadline timestamptz;
begin
  select d.bucket, d.run_id, d.deadline_at into v_bucket, v_id, v_deadline from trellis.run_deadlines d
   where d.deadline_at <= v_now
   order by d.deadline_at limit 1;
  if v_id is null then
    return null;
  end if;
  perform trellis._run_cancel(v_id, format('deadline %s passed',
    to_char(v_deadline at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')), v_now);
  delete from trellis.run_deadlines d where d.bucket = v_bucket and d.run_id = v_id;
  return v_id;
end $$;
comment on function trellis.run_cancel_overdue() is
  'Cancel the unfinished run whose deadline passed longest ago, as run_cancel does (its cancel-children too), with the reason "deadline <time> passed"; returns its id (also when it had finished meanwhile, which is passed over), or null when no deadline is due. One run per call: call it until it returns null.';

create or replace function trellis.run_pause(p_run_id uuid, p_reason text default null)
returns text language plpgsql as $$
declare
  v_now   timestamptz := trellis.now();
  v_run   trellis.runs;
  v_error jsonb;
begin
  -- The reason is kept in the run's error: a payload.
  perform trellis._check_payload(to_jsonb(p_reason), 'pause reason');
  v_run := trellis._run_lock(p_run_id);
  if v_run.status in ('completed', 'failed', 'cancelled') then
    perform trellis._raise('TR004', format('run %s is %s and cannot be paused', p_run_id, v_run.status));
  elsif v_run.status = 'running' then
    -- (The new error is computed first: a distributed planner takes no
    -- non-immutable function inside a CASE of an UPDATE.) A cancellation
    -- requested before keeps its reason, for the end it brings.
    v_error := case when p_reason is null or v_run.cancel_requested_at is not null then v_run.error
                    else jsonb_build_object('name', 'Paused', 'code', 'paused', 'message', p_reason) end;
    update trellis.runs
       set pause_requested_at = coalesce(pause_requested_at, v_now), updated_at = v_now, error = v_error
     where bucket = v_run.bucket and id = p_run_id;
    perform pg_notify('trellis:run_control', 'pause:' || p_run_id::text);
  elsif v_run.status = 'paused' and v_run.resume_at is not null then
    -- Parked by its code, to be resumed at resume_at: an operator's pause
    -- holds it until an operator resumes it. A reason becomes the error,
    -- the code's error its cause (no event: the run stays paused).
    -- (The error computed first: a distributed UPDATE takes no stable
    -- function such as jsonb_build_object in its CASE.)
    v_error := case when p_reason is null then v_run.error
                    else jsonb_build_object('name', 'Paused', 'code', 'paused', 'message', p_reason, 'cause', v_run.error) end;
    update trellis.runs set resume_at = null, updated_at = v_now, error = v_error
     where bucket = v_run.bucket and id = p_run_id;
  elsif v_run.status in ('pending', 'waiting') then
    perform trellis._run_move(array[row(p_run_id, 'paused', 'paused', null, null, false,
      jsonb_build_object('name', 'Paused', 'code', 'paused', 'message', p_reason),
      p_reason is not null and v_run.cancel_requested_at is null,
      null, null, null, null, null, null, null, null, null, null)::trellis.run_move]);
  end if;
  return (select status from trellis.runs where id = p_run_id);
end $$;
comment on function trellis.run_pause(uuid, text) is
  'Park a run: pending or waiting runs become paused at once; a running run finishes its current step and then parks. Returns the status. TR004 for finished runs, TR005 a reason over max_payload_bytes.';

create or replace function trellis.run_resume(p_run_id uuid)
returns text language plpgsql as $$
begin
  return trellis._run_resume(p_run_id, 'resume');
end $$;
comment on function trellis.run_resume(uuid) is
  'Resume a paused run (it replays and continues where it stopped): pending again, not before its run_at (a runAt or the rest of a retry backoff is kept; a run parked on a wait, after a dead letter or by a pause request goes now). TR004 unless paused.';

-- run_resume's body; p_reason goes into the resumed event's body: resume
-- (an operator or the API) or resume_after (the resumes duty).
create or replace function trellis._run_resume(p_run_id uuid, p_reason text)
returns text language plpgsql as $$
declare
  v_now    timestamptz := trellis.now();
  v_run    trellis.runs;
  v_run_at timestamptz;
begin
  v_run := trellis._run_lock(p_run_id);
  if v_run.status = 'running' and v_run.pause_requested_at is not null then
    -- The withdrawn pause's reason goes with it (run_pause put it in the
    -- error); a cancellation's error stays.
    update trellis.runs set pause_requested_at = null, updated_at = v_now, auto_resumes = 0,
                            error = case when error->>'code' = 'paused' then null else error end
     where bucket = v_run.bucket and id = p_run_id;
  elsif v_run.status <> 'paused' then
    perform trellis._raise('TR004', format('run %s is %s, not paused', p_run_id, v_run.status));
  else
    -- run_at is "do not start before": a run paused before its runAt, or
    -- during a retry backoff, keeps it (a dead-lettered or worker-parked run
    -- was parked with run_at = now, so it goes at once). A run parked on an
    -- open wait (a 'waiting' call; its run_at was the timer) goes now: its
    -- replay parks it again until the timer, a signal or a child.
    -- (Read in a statement of its own: a distributed planner takes no
    -- subquery on a distributed table inside the moves' array.)
    if exists (select 1 from trellis.steps s
                where s.bucket = v_run.bucket and s.run_id = p_run_id and s.execution = v_run.execution
                  and s.status = 'waiting') then
      v_run_at := v_now;
    else
      v_run_at := greatest(v_run.run_at, v_now);
    end if;
    -- The pause's reason goes with the pause (run_pause put it in the error,
    -- where a paused run shows why); a dead letter's or a park's error stays
    -- until the run ends, as the cause of the pause it ended.
    perform trellis._run_move(array[row(p_run_id, 'pending', 'resumed', v_run_at,
      null, false, null, coalesce(v_run.error->>'code' = 'paused', false),
      null, null, null, null, true, null, null, null, null, jsonb_build_object('reason', p_reason))::trellis.run_move]);
    -- The duty's resume counts one more automatic resume (a definition's
    -- maxResumes caps them, run_release); an operator's starts the count again.
    if v_run.resume_at is not null or v_run.auto_resumes > 0 or p_reason = 'resume_after' then
      update trellis.runs set resume_at = null,
                              auto_resumes = case when p_reason = 'resume_after' then v_run.auto_resumes + 1 else 0 end
       where bucket = v_run.bucket and id = p_run_id;
    end if;
    perform pg_notify('trellis:run_ready', v_run.queue);
  end if;
  return (select status from trellis.runs where id = p_run_id);
end $$;
comment on function trellis._run_resume(uuid, text) is
  'run_resume, with p_reason in the resumed event''s body (resume, or resume_after from run_resume_due).';

-- The trellis.resumes duty (decision 0038): resume, as run_resume does, up
-- to p_limit paused runs whose resume_at has passed (runs their code parked
-- under a definition with resumeAfter), oldest resume_at first, each locked
-- and looked at again (an operator's pause, resume or cancel meanwhile
-- cleared resume_at: passed over). Returns how many it resumed.
create or replace function trellis.run_resume_due(p_limit integer default 100)
returns integer language plpgsql as $$
declare
  v_now  timestamptz := trellis.now();
  v_id   uuid;
  v_run  trellis.runs;
  v_done integer := 0;
begin
  if p_limit is null or p_limit < 1 or p_limit > 10000 then
    perform trellis._raise('TR001', format('limit must be from 1 to 10000, not %s', coalesce(p_limit::text, 'null')));
  end if;
  for v_id in
    select r.id from trellis.runs r
     where r.resume_at <= v_now and r.status = 'paused'
     order by r.resume_at
     limit p_limit
  loop
    v_run := trellis._run_lock_if_any(v_id);
    continue when v_run.id is null or v_run.status <> 'paused' or not coalesce(v_run.resume_at <= v_now, false);
    perform trellis._run_resume(v_id, 'resume_after');
    v_done := v_done + 1;
  end loop;
  return v_done;
end $$;
comment on function trellis.run_resume_due(integer) is
  'Resume, as run_resume does, up to p_limit (1-10000) paused runs whose resume_at has passed (parked by their code under a definition with resumeAfter), oldest first; returns how many. The trellis.resumes duty calls it.';

-- Retry re-runs the workflow from its first failed call: that call and every
-- later call of the current execution are forgotten, so what the workflow did
-- after the failure (a compensation that caught it, a concurrent branch) runs
-- again in order on the replay, and the history cannot hold calls the new
-- run never makes. Earlier calls stay memoised. Signals the forgotten waits
-- consumed are given back (a wait consumes its signal in the transaction that
-- records it, so consumed_at equals the call's finished_at), so the replay's
-- waits receive them again.
create or replace function trellis.run_retry(p_run_id uuid)
returns text language plpgsql as $$
declare
  v_now   timestamptz := trellis.now();
  v_run   trellis.runs;
  v_from  integer;
begin
  v_run := trellis._run_lock(p_run_id);
  if v_run.status <> 'failed' then
    perform trellis._raise('TR004', format('run %s is %s, not failed', p_run_id, v_run.status));
  end if;
  if v_run.scrubbed_at is not null then
    perform trellis._raise('TR004', format('run %s was scrubbed and cannot be retried', p_run_id));
  end if;
  -- Its key went to a later start (key_policy reuse or replace, decision
  -- 0036): retried, it would run beside that key's run. A fork runs it again.
  if v_run.former_key is not null then
    perform trellis._raise('TR004', format('run %s gave its key %s to a later run and cannot be retried: fork it instead',
                                           p_run_id, trellis._quote(v_run.former_key)));
  end if;
  select min(seq) into v_from from trellis.steps
   where bucket = v_run.bucket and run_id = p_run_id and execution = v_run.execution and status = 'failed';
  if v_from is not null then
    perform trellis._forget_calls(v_run.bucket, p_run_id, v_run.execution, v_from);
  end if;
  perform trellis._run_move(array[row(p_run_id, 'pending', 'retried', v_now, null, false, null, false,
    null, null, null, 0, null, null, null, null, null, null)::trellis.run_move]);
  -- A cancel or pause requested before the run failed was never carried
  -- out (the run failed first); kept, it would cancel or park the retried
  -- run at its first call. A deadline that has passed would cancel it at
  -- once: it is dropped (one still ahead is kept).
  -- An operator's retry starts the count of automatic resumes again.
  if v_run.cancel_requested_at is not null or v_run.pause_requested_at is not null or v_run.deadline_at <= v_now
     or v_run.auto_resumes > 0 then
    update trellis.runs
       set cancel_requested_at = null, pause_requested_at = null,
           deadline_at = case when deadline_at <= v_now then null else deadline_at end, auto_resumes = 0
     where bucket = v_run.bucket and id = p_run_id;
  end if;
  perform pg_notify('trellis:run_ready', v_run.queue);
  return 'pending';
end $$;
comment on function trellis.run_retry(uuid) is
  'Run a failed run again from its first failed call: that call and every later call of the current execution are deleted (signals they consumed are given back), earlier calls are not re-run. A cancel or pause requested before it failed, and a deadline that has passed, are dropped. TR004 unless failed, for a scrubbed run, and for a run whose key a later start took (key_policy reuse or replace).';

-- Fork a run (decision 0032): a new run of the same workflow with the
-- original's current input (that of its current execution), whose history
-- holds the settled results (completed or failed) of the original's calls
-- before call p_from_seq of that execution; call p_from_seq and every later
-- call run again, live. Unsettled calls (a step still retrying, a wait still
-- waiting) are not copied, whatever their number. Options are run_start's:
-- by default the original's version, queue, priority, concurrency key and
-- metadata; no key and no deadline unless given. A key that another run
-- holds returns that run and copies nothing (a fork made once).
create or replace function trellis.run_fork(p_run_id uuid, p_from_seq integer default 0, p_options jsonb default '{}')
returns uuid language plpgsql as $$
declare
  v_options jsonb := coalesce(p_options, '{}');
  v_run     trellis.runs;
  v_id      uuid := pg_catalog.gen_random_uuid();
  v_got     uuid;
  v_bucket  integer;
  v_call    trellis.steps;
  v_bad     text;
  v_calls   integer;
begin
  if jsonb_typeof(v_options) <> 'object' then
    perform trellis._raise('TR001', 'run_fork options must be a JSON object');
  end if;
  if v_options - '{key,queue,priority,run_at,metadata,version,concurrency_key,deadline,time_limit}'::text[] <> '{}'::jsonb then
    select string_agg(k, ', ') into v_bad from jsonb_object_keys(v_options) as k
     where k not in ('key', 'queue', 'priority', 'run_at', 'metadata', 'version', 'concurrency_key', 'deadline', 'time_limit');
    perform trellis._raise('TR001', format('unknown run_fork option(s): %s', trellis._quote(v_bad)));
  end if;
  if p_from_seq is null or p_from_seq < 0 then
    perform trellis._raise('TR001', format('run_fork needs the call to run again from: a number from 0, not %s',
                                           coalesce(p_from_seq::text, 'null')));
  end if;
  -- Locked, so its calls are read as one state (no checkpoint, continue or
  -- purge of it in between).
  v_run := trellis._run_lock(p_run_id);
  if v_run.scrubbed_at is not null then
    perform trellis._raise('TR004', format('run %s was scrubbed and cannot be forked', p_run_id));
  end if;
  -- A call number past the one after its last call names nothing to run
  -- again (the fork would replay every call and run nothing): a mistake.
  select coalesce(max(s.seq) + 1, 0) into v_calls from trellis.steps s
   where s.bucket = v_run.bucket and s.run_id = v_run.id and s.execution = v_run.execution;
  if p_from_seq > v_calls then
    perform trellis._raise('TR001', format('run %s has %s calls in its current execution: fromCall %s is past them (%s keeps them all)',
                                           p_run_id, v_calls, p_from_seq, v_calls));
  end if;
  v_got := trellis._run_start(v_run.workflow, v_run.input,
    jsonb_strip_nulls(jsonb_build_object('version', v_run.version, 'queue', v_run.queue, 'priority', v_run.priority,
                                         'concurrency_key', v_run.concurrency_key, 'metadata', v_run.metadata)) || v_options,
    v_id, null, null, null, null, null, null);
  if v_got <> v_id then
    return v_got;  -- its key is another run's: that run, untouched
  end if;
  select r.bucket into v_bucket from trellis.runs r where r.id = v_id;
  update trellis.runs set forked_from = v_run.id, forked_from_seq = p_from_seq
   where bucket = v_bucket and id = v_id;
  -- The settled calls before p_from_seq, read from the original's bucket
  -- and written to the fork's row by row (on a distributed schema the read
  -- is routed to the original's shard, each single-row insert of values to
  -- the fork's; the original is locked, so no call is added meanwhile).
  -- A wait that lost a ctx.race (its result {"lost": true}) is copied only
  -- with the race that decided it: the race itself is a later call, and a
  -- fork that runs it again runs its branches again too.
  for v_call in
    select * from trellis.steps s
     where s.bucket = v_run.bucket and s.run_id = v_run.id and s.execution = v_run.execution
       and s.seq < p_from_seq and s.status in ('completed', 'failed')
       and (not coalesce(s.output @> '{"lost": true}', false)
            or exists (select 1 from trellis.steps r
                        where r.bucket = s.bucket and r.run_id = s.run_id and r.execution = s.execution
                          and r.kind = 'race' and r.status = 'completed' and r.seq < p_from_seq
                          and r.output->'lost' @> to_jsonb(s.seq)))
     order by s.seq
  loop
    insert into trellis.steps (bucket, run_id, execution, seq, name, kind, status, output, error, attempts,
                               started_at, finished_at, delivered)
    values (v_bucket, v_id, 1, v_call.seq, v_call.name, v_call.kind, v_call.status, v_call.output, v_call.error,
            v_call.attempts, v_call.started_at, v_call.finished_at, v_call.delivered);
  end loop;
  return v_id;
end $$;
comment on function trellis.run_fork(uuid, integer, jsonb) is
  'Start a new run of run p_run_id''s workflow with its current input, keeping the settled results of the calls of its current execution before call p_from_seq (0: none, a fresh run); the rest runs again. p_options as run_start''s (default: the original''s version, queue, priority, concurrency key and metadata). The new run''s forked_from / forked_from_seq name the original. TR002 unknown run, TR004 scrubbed, TR001 bad input; returns the new run''s id (or, for a key another run holds, that run''s).';

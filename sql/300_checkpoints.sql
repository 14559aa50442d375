-- 300_checkpoints: the fenced write path of workers.
-- Owns: checkpoint_apply (batched), step_record, run_complete, run_fail, run_release,
-- _wake_child_waiters.
-- Touches: trellis.runs (insert child runs, update), trellis.steps (insert, update,
-- delete), trellis.signals (consume).
-- Lock order: every run row a call may change is locked up front, in one
-- statement, in id order (FOR NO KEY UPDATE): the runs of the ops, the parents
-- of the runs it finishes (to wake them) and the runs a finish cancels (the
-- unfinished children and their subtrees). Nothing later waits for a run lock:
-- the cancel cascade takes runs that appeared meanwhile with SKIP LOCKED (a
-- skipped run is reached again when its own parent ends), and the steps and
-- signals touched belong to runs already held. run_cancel, run_heartbeat_many
-- and _wake_child_waiters take their runs in id order too, so no two engine
-- calls can wait on each other in a cycle (see 500_control.sql).
--
-- checkpoint_apply takes the checkpoints of many runs at once, so a worker
-- commits every run's progress in one transaction (grouped commit). Each op is
-- fenced by its run's lease token; ops whose (run, token) is not held are
-- refused and returned. Ops of one run apply in this order: steps and child
-- starts, then the run's end (complete | fail | cancelled | release | wait |
-- pause | continue); a batch holds at most one end per run.
--
-- Ops (JSON objects; execution defaults to 1):
--   {op:'step', run, token, execution, seq, name, kind, status, output, error, attempts, ms, signal, delivered}
--        (delivered: the result's place in the order results reached the workflow code)
--   {op:'child', run, token, execution, seq, name, child, workflow, version, input, key, queue, close}
--   {op:'complete', run, token, output}        {op:'fail', run, token, error}
--   {op:'cancelled', run, token, error}
--   {op:'pause', run, token, error, seen_cancel}
--   {op:'release', run, token, delay_ms, error, failure, seen_cancel} -- pending again after delay_ms
--        (both due now instead when a cancel request is pending that the execution did not see)
--   {op:'wait', run, token, delay_ms, signal, seen_cancel} -- waiting; delay_ms null = no timer;
--        signal = newest signal id the execution saw; seen_cancel = it already knew of a cancel request
--   {op:'continue', run, token, input, keep}               -- continue-as-new

create or replace function trellis.checkpoint_apply(p_ops jsonb)
returns table (run_id uuid, token uuid) language plpgsql as $$
#variable_conflict use_column
declare
  v_now      timestamptz := trellis.now();
  v_max      integer := trellis._setting_int('max_payload_bytes', 1048576);
  v_ops      trellis.checkpoint_op[];
  v_all      trellis.checkpoint_op[];
  v_held     text[];
  v_kinds    text[];
  v_big      text;
  v_ids      text;
  v_queue    text;
  v_child    trellis.checkpoint_op;
  v_child_id uuid;
  v_finishing uuid[];
  v_lock     uuid[];
  v_finished uuid[];
begin
  if jsonb_typeof(p_ops) is distinct from 'array' then
    perform trellis._raise('TR001', 'checkpoint_apply expects a JSON array of ops');
  end if;

  v_ops := array(select o from jsonb_populate_recordset(null::trellis.checkpoint_op, p_ops) as o);

  if exists (select 1 from unnest(v_ops)
              where op is null
                 or op not in ('step', 'child', 'complete', 'fail', 'cancelled', 'release', 'wait', 'pause', 'continue')
                 or run is null or token is null
                 or (op in ('step', 'child') and (seq is null or seq < 0 or name is null))
                 or (op = 'step' and (status is null or kind is null))
                 or (op = 'step' and delivered is not null and (delivered < 1 or status not in ('completed', 'failed')))
                 or (op = 'child' and (child is null or workflow is null))) then
    perform trellis._raise('TR001', 'malformed checkpoint op: each needs op, run, token (and seq, name, kind, status for steps, a delivered number only on a completed or failed one, at least 1; child and workflow for child starts)');
  end if;
  perform trellis._check_name(name, 'step') from unnest(v_ops) where op in ('step', 'child');
  -- Sizes are the bytes of the JSON text, as in _check_payload and the
  -- workers' own check (src/replay/serialize.ts), so both agree.
  select format('%s of run %s is %s bytes, over the limit of %s bytes', o.op, o.run, o.size, v_max)
    into v_big
    from (select o.op, o.run, greatest(octet_length(o.output::text), octet_length(o.error::text),
                                       octet_length(o.input::text)) as size
            from unnest(v_ops) o) o
   where o.size > v_max limit 1;
  if v_big is not null then
    perform trellis._raise('TR005', v_big);
  end if;

  -- Lock up front, in id order, every run this call may change: the runs of
  -- the ops, the parents of runs that end here (woken) and the runs their end
  -- cancels. Then fence: an op applies only if its own (run, token) pair is
  -- held: two executions of one run (an old one that lost its lease, a new
  -- one) may share a batch.
  -- The ids are gathered into an array first, so the lock is one primary-key
  -- probe per id (an `in (subquery)` plan read the whole table), and the
  -- subtree walk runs only when a finishing run has children at all.
  v_finishing := array(select distinct o.run from unnest(v_ops) o where o.op in ('complete', 'fail', 'cancelled'));
  v_lock := array(select o.run from unnest(v_ops) o);
  if cardinality(v_finishing) > 0 then
    v_lock := v_lock || array(select p.parent_run_id from trellis.runs p
                               where p.id = any (v_finishing) and p.parent_run_id is not null);
    if exists (select 1 from trellis.runs c where c.parent_run_id = any (v_finishing)) then
      v_lock := v_lock || array(select trellis._cancel_reach(v_finishing));
    end if;
  end if;
  perform 1 from trellis.runs r
   where r.id = any (v_lock)
   order by r.id
     for no key update;
  select coalesce(array_agg(held.pair), '{}') into v_held from (
    select distinct r.id::text || '/' || r.lease_token::text as pair from trellis.runs r
      join unnest(v_ops) o on o.run = r.id and o.token = r.lease_token
     where r.status = 'running') held;
  v_all := v_ops;
  v_ops := array(select o from unnest(v_ops) o where o.run::text || '/' || o.token::text = any (v_held));
  -- The op kinds present: each statement below runs only if its kind is.
  v_kinds := array(select distinct o.op from unnest(v_ops) o);

  -- Steps. A completed or failed checkpoint is never overwritten; a 'running'
  -- marker (the attempt started), a 'waiting' one or a 'retrying' one is.
  if 'step' = any (v_kinds) then
    insert into trellis.steps as s (run_id, execution, seq, name, kind, status, output, error, attempts,
                                    started_at, finished_at, delivered)
    select o.run, coalesce(o.execution, r.execution), o.seq, o.name, o.kind, o.status, o.output, o.error,
           coalesce(o.attempts, 1), v_now - make_interval(secs => coalesce(o.ms, 0) / 1000.0), v_now, o.delivered
      from unnest(v_ops) o join trellis.runs r on r.id = o.run
     where o.op = 'step'
    on conflict (run_id, execution, seq) do update
       set status = excluded.status, output = excluded.output, error = excluded.error,
           attempts = excluded.attempts, started_at = excluded.started_at,
           finished_at = excluded.finished_at, delivered = excluded.delivered
     where s.status in ('running', 'waiting', 'retrying') and s.name = excluded.name;

    -- A wait that consumed a signal marks it, so it is delivered once.
    update trellis.signals g set consumed_at = v_now, consumed_seq = o.seq
      from unnest(v_ops) o
     where o.op = 'step' and o.signal is not null and g.id = o.signal and g.run_id = o.run
       and g.consumed_at is null;
  end if;

  -- Child runs: started with the id the parent chose (a key already taken
  -- attaches the parent to that run instead), and the parent's call waits on it.
  if 'child' = any (v_kinds) then
    for v_child in select * from unnest(v_ops) o where o.op = 'child' loop
      -- Already recorded (a retried batch whose first attempt committed): a no-op.
      continue when exists (select 1 from trellis.steps s join trellis.runs r on r.id = s.run_id
                             where s.run_id = v_child.run and s.seq = v_child.seq
                               and s.execution = coalesce(v_child.execution, r.execution));
      v_child_id := trellis._run_start(v_child.workflow, v_child.input,
        jsonb_strip_nulls(jsonb_build_object('version', v_child.version, 'key', v_child.key, 'queue', v_child.queue)),
        v_child.child, v_child.run, v_child.seq, v_child.close, null, null, null);
      insert into trellis.steps as s (run_id, execution, seq, name, kind, status, output, attempts, started_at, finished_at)
      values (v_child.run, coalesce(v_child.execution, (select execution from trellis.runs where id = v_child.run)), v_child.seq, v_child.name, 'child', 'waiting',
              jsonb_build_object('child', v_child_id), 1, v_now, v_now)
      on conflict (run_id, execution, seq) do nothing;
    end loop;
  end if;

  if 'complete' = any (v_kinds) then
    update trellis.runs r
       set status = 'completed', output = coalesce(o.output, 'null'), error = null,
           finished_at = v_now, updated_at = v_now,
           lease_token = null, lease_owner = null, lease_expires_at = null
      from unnest(v_ops) o
     where o.op = 'complete' and r.id = o.run and r.lease_token = o.token;
  end if;

  if v_kinds && array['fail', 'cancelled'] then
    update trellis.runs r
       set status = case o.op when 'fail' then 'failed' else 'cancelled' end,
           -- A cancellation keeps the reason run_cancel recorded.
           error = case when o.op = 'cancelled' and r.error->>'code' = 'cancelled' then r.error
                        else coalesce(o.error, '{}') end,
           finished_at = v_now, updated_at = v_now,
           lease_token = null, lease_owner = null, lease_expires_at = null
      from unnest(v_ops) o
     where o.op in ('fail', 'cancelled') and r.id = o.run and r.lease_token = o.token;
  end if;

  -- A failed attempt of the whole workflow (a release with failure) forgets
  -- its first failed call and every later call, as run_retry does (decision
  -- 0009): what the code did after catching that failure (a compensation)
  -- runs again in order on the next attempt, and calls before it stay
  -- memoised. Signals the forgotten waits consumed are given back.
  if v_kinds && array['release', 'pause'] then
    with f as (
      select o.run, r.execution,
             (select min(s.seq) from trellis.steps s
               where s.run_id = o.run and s.execution = r.execution and s.status = 'failed') as from_seq
        from unnest(v_ops) o join trellis.runs r on r.id = o.run
       where o.op = 'release' and o.failure),
    given_back as (
      update trellis.signals g set consumed_at = null, consumed_seq = null
        from f, trellis.steps s
       where s.run_id = f.run and s.execution = f.execution and s.seq >= f.from_seq and s.kind = 'signal'
         and g.run_id = f.run and g.consumed_seq = s.seq and g.consumed_at = s.finished_at)
    delete from trellis.steps s
     using f
     where s.run_id = f.run and s.execution = f.execution and s.seq >= f.from_seq;

    -- A requested pause (no error) whose request was withdrawn by run_resume
    -- while the worker was parking the run leaves it pending instead. A cancel
    -- requested while the run executed, which the execution did not see
    -- (seen_cancel), makes a release or a pause due now instead of after its
    -- backoff or the operator's resume: the replay then ends the run cancelled
    -- (its cancellation reason is kept).
    update trellis.runs r
       set status = case when r.cancel_requested_at is not null and not coalesce(o.seen_cancel, false) then 'pending'
                         when o.op = 'release' then 'pending'
                         when o.error is null and r.pause_requested_at is null then 'pending'
                         else 'paused' end,
           run_at = case when (r.cancel_requested_at is not null and not coalesce(o.seen_cancel, false))
                           or o.op = 'pause' then v_now
             else v_now + make_interval(secs => greatest(coalesce(o.delay_ms, 0), 0) / 1000.0) end,
           error = case when r.cancel_requested_at is not null and not coalesce(o.seen_cancel, false) then r.error
                        else coalesce(o.error, r.error) end,
           failures = r.failures + case when o.failure then 1 else 0 end,
           pause_requested_at = case when o.op = 'pause' then null else r.pause_requested_at end,
           updated_at = v_now, lease_token = null, lease_owner = null, lease_expires_at = null
      from unnest(v_ops) o
     where o.op in ('release', 'pause') and r.id = o.run and r.lease_token = o.token;
  end if;

  -- Wait: park the run until its timer (delay_ms; null = none), a signal or a
  -- child wakes it. Anything that arrived while it ran (a signal newer than the
  -- newest it saw, a finished child, a cancel request) makes it pending now;
  -- a pause request parks it.
  if 'wait' = any (v_kinds) then
    -- A child that finishes concurrently locks this run (its parent) up front,
    -- so either it committed before the lock above was granted (and the check
    -- below sees it finished) or it waits for this transaction and then wakes
    -- the run it finds waiting. Only calls of the current execution count: a
    -- child left by an execution kept with continue-as-new wakes no one.
    with w as (
      select o.run, o.token, o.delay_ms, coalesce(o.seen_cancel, false) as seen_cancel,
             exists (select 1 from trellis.signals g
                      where g.run_id = o.run and g.consumed_at is null and g.id > coalesce(o.signal, 0))
          or exists (select 1 from trellis.runs p
                       join trellis.steps s on s.run_id = p.id and s.execution = p.execution
                       join trellis.runs c on c.id = (s.output->>'child')::uuid
                      where p.id = o.run and s.status = 'waiting' and s.kind = 'child'
                        and c.status in ('completed', 'failed', 'cancelled')) as wake
        from unnest(v_ops) o where o.op = 'wait')
    update trellis.runs r
       set status = case when r.pause_requested_at is not null then 'paused'
                         when w.wake or (r.cancel_requested_at is not null and not w.seen_cancel) then 'pending'
                         else 'waiting' end,
           run_at = case when w.wake or (r.cancel_requested_at is not null and not w.seen_cancel)
                           or r.pause_requested_at is not null then v_now
                         when w.delay_ms is null then 'infinity'
                         else v_now + make_interval(secs => greatest(w.delay_ms, 0) / 1000.0) end,
           pause_requested_at = null,
           updated_at = v_now, lease_token = null, lease_owner = null, lease_expires_at = null
      from w
     where r.id = w.run and r.lease_token = w.token;
  end if;

  -- Continue-as-new: the same run (id, key, parent) starts a new execution
  -- with a fresh history; the old execution's steps are kept or removed.
  if 'continue' = any (v_kinds) then
    delete from trellis.steps s
     using unnest(v_ops) o
     where o.op = 'continue' and not coalesce(o.keep, false) and s.run_id = o.run;
    update trellis.runs r
       set status = 'pending', run_at = v_now, execution = r.execution + 1,
           input = coalesce(o.input, 'null'), output = null, error = null, attempt = 0, failures = 0,
           updated_at = v_now, lease_token = null, lease_owner = null, lease_expires_at = null
      from unnest(v_ops) o
     where o.op = 'continue' and r.id = o.run and r.lease_token = o.token;
  end if;

  -- Finished runs: wake the runs waiting on them as children, cancel their
  -- own unfinished children (unless abandoned), and notify their ids.
  v_finished := array(select o.run from unnest(v_ops) o where o.op in ('complete', 'fail', 'cancelled'));
  if cardinality(v_finished) > 0 then
    perform trellis._wake_child_waiters(v_finished);
    perform trellis._cancel_cascade(v_finished, 'parent run finished');
    for v_ids in
      select string_agg(f.id::text, ',')
        from (select f.id, (row_number() over ()) / 200 as chunk from unnest(v_finished) as f(id)) f
       group by f.chunk
    loop
      perform pg_notify('trellis:run_finished', v_ids);
    end loop;
  end if;
  if v_kinds && array['release', 'continue', 'wait', 'child'] then
    for v_queue in
      select distinct r.queue from unnest(v_ops) o join trellis.runs r on r.id = o.run
       where (o.op = 'release' and coalesce(o.delay_ms, 0) <= 0) or o.op = 'continue'
          or (o.op = 'wait' and r.status = 'pending')
      union
      select distinct c.queue from unnest(v_ops) o join trellis.runs c on c.id = o.child
       where o.op = 'child' and c.status = 'pending'
    loop
      perform pg_notify('trellis:run_ready', v_queue);
    end loop;
  end if;

  if cardinality(v_ops) < cardinality(v_all) then
    return query
    select distinct o.run, o.token from unnest(v_all) o
     where o.run::text || '/' || o.token::text <> all (v_held);
  end if;
end $$;
comment on function trellis.checkpoint_apply(jsonb) is
  'Apply many fenced checkpoint ops (step, child, complete, fail, cancelled, release, wait, pause, continue) of many runs in one transaction; returns the (run_id, token) pairs that were stale (their ops were refused).';

-- Runs waiting (as parents) on any of p_finished become pending now. Every
-- caller has already locked those parents (checkpoint_apply and run_cancel
-- lock them up front); the lock here is taken in id order all the same and
-- never skips: a parent locked by another transaction is waited for, not
-- missed. Only waiting calls of a parent's current execution count.
create or replace function trellis._wake_child_waiters(p_finished uuid[])
returns void language plpgsql as $$
declare
  v_now     timestamptz := trellis.now();
  v_parents uuid[];
  v_queue   text;
begin
  v_parents := array(select distinct c.parent_run_id from trellis.runs c
                      where c.id = any (p_finished) and c.parent_run_id is not null);
  if cardinality(v_parents) = 0 then
    return;
  end if;
  perform 1 from trellis.runs p where p.id = any (v_parents) order by p.id for no key update;
  for v_queue in
    with woken as (
      update trellis.runs p set status = 'pending', run_at = v_now, updated_at = v_now
       where p.id = any (v_parents) and p.status = 'waiting'
         and exists (select 1 from trellis.steps w
                      where w.run_id = p.id and w.execution = p.execution
                        and w.status = 'waiting' and w.kind = 'child'
                        and (w.output->>'child')::uuid = any (p_finished))
      returning p.queue)
    select distinct queue from woken
  loop
    perform pg_notify('trellis:run_ready', v_queue);
  end loop;
end $$;
comment on function trellis._wake_child_waiters(uuid[]) is
  'Make runs that wait (in their current execution) on any of the finished runs p_finished pending now. Locks those parents in id order; callers lock them first.';

create or replace function trellis._checkpoint_one(p_op jsonb)
returns void language plpgsql as $$
begin
  if exists (select 1 from trellis.checkpoint_apply(jsonb_build_array(p_op))) then
    perform trellis._raise_unheld((p_op->>'run')::uuid, (p_op->>'token')::uuid);
  end if;
end $$;
comment on function trellis._checkpoint_one(jsonb) is
  'Apply one checkpoint op, raising TR002/TR003/TR004 if it was refused.';

create or replace function trellis.step_record(
  p_run_id uuid, p_token uuid, p_seq integer, p_name text, p_status text,
  p_output jsonb default null, p_error jsonb default null, p_attempts integer default 1,
  p_kind text default 'step')
returns void language plpgsql as $$
begin
  if p_status is null or p_status not in ('running', 'waiting', 'completed', 'failed', 'retrying') then
    perform trellis._raise('TR001', format('step status %s is not running, waiting, completed, failed or retrying', trellis._quote(p_status)));
  end if;
  if p_kind is null or p_kind not in ('step', 'now', 'random', 'uuid', 'side_effect', 'sleep', 'signal', 'child', 'race') then
    perform trellis._raise('TR001', format('step kind %s is unknown', trellis._quote(p_kind)));
  end if;
  perform trellis._checkpoint_one(jsonb_build_object('op', 'step', 'run', p_run_id, 'token', p_token,
    'seq', p_seq, 'name', p_name, 'kind', p_kind, 'status', p_status, 'output', p_output,
    'error', p_error, 'attempts', p_attempts));
end $$;
comment on function trellis.step_record(uuid, uuid, integer, text, text, jsonb, jsonb, integer, text) is
  'Checkpoint call p_seq of the current execution of a run held under p_token: running (attempt p_attempts started), completed, failed or retrying. A completed or failed step is never overwritten.';

create or replace function trellis.run_complete(p_run_id uuid, p_token uuid, p_output jsonb)
returns void language plpgsql as $$
begin
  perform trellis._checkpoint_one(jsonb_build_object('op', 'complete', 'run', p_run_id,
    'token', p_token, 'output', coalesce(p_output, 'null')));
end $$;
comment on function trellis.run_complete(uuid, uuid, jsonb) is
  'Complete a run held under p_token with its output; notifies trellis:run_finished.';

create or replace function trellis.run_fail(p_run_id uuid, p_token uuid, p_error jsonb)
returns void language plpgsql as $$
begin
  perform trellis._checkpoint_one(jsonb_build_object('op', 'fail', 'run', p_run_id,
    'token', p_token, 'error', coalesce(p_error, '{}')));
end $$;
comment on function trellis.run_fail(uuid, uuid, jsonb) is
  'Fail a run held under p_token with an error object {name, message, code?, ...}; notifies trellis:run_finished.';

create or replace function trellis.run_release(p_run_id uuid, p_token uuid, p_delay interval default '0',
                                               p_error jsonb default null, p_failure boolean default false)
returns void language plpgsql as $$
begin
  perform trellis._checkpoint_one(jsonb_build_object('op', 'release', 'run', p_run_id,
    'token', p_token, 'delay_ms', (extract(epoch from coalesce(p_delay, '0')) * 1000)::bigint,
    'error', p_error, 'failure', coalesce(p_failure, false)));
end $$;
comment on function trellis.run_release(uuid, uuid, interval, jsonb, boolean) is
  'Give a held run back: pending again after p_delay. With p_failure it counts a failed workflow attempt and forgets failed steps.';

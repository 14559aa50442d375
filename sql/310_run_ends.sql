-- 310_run_ends: how a checkpoint ends a run's execution, one set-based
-- function per op kind, and the one-run functions for psql.
-- Owns: run_complete, run_fail, run_release (each set-based over checkpoint
-- ops, and for one run), _runs_cancelled, _runs_wait, _runs_continue, _forget_calls (also for run_retry).
-- Touches: trellis.runs (status only through _run_move, sql/150_transitions.sql),
-- trellis.steps (forgotten on a failed attempt, removed on continue-as-new),
-- trellis.signals (given back).
-- Lock order: the set-based functions take no lock: checkpoint_apply
-- (_checkpoint_apply, sql/300_checkpoints.sql) locked every run first and
-- fenced the ops; each applies only ops whose (run, token) is still held.
-- The one-run functions go through _checkpoint_apply (lock, fence, dispatch).

-- The run ends. Each takes the (locked, fenced) ops of a batch, applies the
-- ones of its kind whose (run, token) is still held, through _run_move.
create or replace function trellis.run_complete(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
begin
  perform trellis._run_move(array(
    select row(o.run, 'completed', 'completed', null, coalesce(o.output, 'null'), true, null, true,
               null, null, null, null, null, null, null, null, null, null)::trellis.run_move
      from unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
     where o.op = 'complete'));
end $$;
comment on function trellis.run_complete(trellis.checkpoint_op[]) is
  'Set-based: complete the runs of the complete ops whose (run, token) is held, with their outputs (the caller locked them: checkpoint_apply). Wakes nobody: checkpoint_apply does that after every end.';

create or replace function trellis.run_fail(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
begin
  perform trellis._run_move(array(
    select row(o.run, 'failed', 'failed', null, null, false, coalesce(o.error, '{}'), true,
               null, null, null, null, null, null, null, null, null, null)::trellis.run_move
      from unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
     where o.op = 'fail'));
end $$;
comment on function trellis.run_fail(trellis.checkpoint_op[]) is
  'Set-based: fail the runs of the fail ops whose (run, token) is held, with their errors (the caller locked them: checkpoint_apply).';

-- A cancellation keeps the reason run_cancel recorded.
create or replace function trellis._runs_cancelled(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
begin
  perform trellis._run_move(array(
    select row(o.run, 'cancelled', 'cancelled', null, null, false,
               case when r.error->>'code' = 'cancelled' then r.error else coalesce(o.error, '{}') end, true,
               null, null, null, null, null, null, null, null, null, null)::trellis.run_move
      from unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
     where o.op = 'cancelled'));
end $$;
comment on function trellis._runs_cancelled(trellis.checkpoint_op[]) is
  'Set-based: end the runs of the cancelled ops whose (run, token) is held as cancelled, keeping the reason run_cancel recorded.';

-- A failed attempt of the whole workflow (a release with failure) forgets
-- its first failed call and every later call, as run_retry does (decision
-- 0009): what the code did after catching that failure (a compensation)
-- runs again in order on the next attempt, and calls before it stay
-- memoised. Signals the forgotten waits consumed are given back.
-- A requested pause (no error) whose request was withdrawn by run_resume
-- while the worker was parking the run leaves it pending instead. A cancel
-- requested while the run executed, which the execution did not see
-- (seen_cancel), makes a release or a pause due now instead of after its
-- backoff or the operator's resume: the replay then ends the run cancelled
-- (its cancellation reason is kept).
-- Forget call p_from and every later call of execution p_execution of run
-- p_run (in bucket p_bucket), giving back the signals the forgotten waits
-- consumed (a wait consumes its signal in the transaction that records it,
-- so consumed_at equals the call's finished_at). Statements on one bucket.
create or replace function trellis._forget_calls(p_bucket integer, p_run uuid, p_execution integer, p_from integer)
returns void language plpgsql as $$
declare
  v_replied text[];
begin
  update trellis.signals g set consumed_at = null, consumed_seq = null
    from trellis.steps s
   where s.bucket = p_bucket and s.run_id = p_run and s.execution = p_execution and s.seq >= p_from
     and s.kind = 'signal' and g.bucket = p_bucket and g.run_id = p_run and g.consumed_seq = s.seq
     and g.consumed_at = s.finished_at;
  -- Replies among the forgotten calls (decision 0044): their requests are
  -- answered as the history left them (an earlier reply, or none yet).
  v_replied := array(select distinct substr(s.name, 7) from trellis.steps s
                      where s.bucket = p_bucket and s.run_id = p_run and s.execution = p_execution and s.seq >= p_from
                        and s.kind = 'value' and s.name like 'reply:%');
  delete from trellis.steps s
   where s.bucket = p_bucket and s.run_id = p_run and s.execution = p_execution and s.seq >= p_from;
  if cardinality(v_replied) > 0 then
    perform trellis._replies_kept(p_bucket, p_run, v_replied);
  end if;
end $$;
comment on function trellis._forget_calls(integer, uuid, integer, integer) is
  'Delete call p_from and every later call of an execution of a run (its bucket given), giving back the signals the forgotten waits consumed and taking back the answers forgotten replies gave (run_release with failure, run_retry).';

create or replace function trellis.run_release(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
declare
  v_now     timestamptz := trellis.now();
  v_f       record;
  v_rb      integer[];
  v_rid     uuid[];
  v_rat     timestamptz[];
begin
  -- Runs their code parks with a delay (a definition's resumeAfter, decision
  -- 0038): a pause op with an error and delay_ms, on a run no operator asked
  -- to pause or cancel, and (with max_resumes, the definition's maxResumes)
  -- resumed automatically fewer times than that since an operator last
  -- resumed or retried it; past the cap it stays parked for an operator.
  -- Read before the move, which clears the requests.
  if exists (select 1 from unnest(p_ops) o where o.op = 'pause' and o.delay_ms > 0) then
    select array_agg(r.bucket), array_agg(r.id), array_agg(v_now + make_interval(secs => least(o.delay_ms, 31536000000000) / 1000.0))
      into v_rb, v_rid, v_rat
      from unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
     where o.op = 'pause' and o.delay_ms > 0 and o.error is not null
       and r.pause_requested_at is null and r.cancel_requested_at is null
       and (o.max_resumes is null or r.auto_resumes < o.max_resumes);
  end if;
  -- Run by run (a failed attempt is rare in a batch), each on its bucket.
  for v_f in
    select r.bucket, o.run, r.execution,
           (select min(s.seq) from trellis.steps s
             where s.bucket = r.bucket and s.run_id = r.id and s.execution = r.execution and s.status = 'failed') as from_seq
      from unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
     where o.op = 'release' and o.failure
  loop
    continue when v_f.from_seq is null;
    perform trellis._forget_calls(v_f.bucket, v_f.run, v_f.execution, v_f.from_seq);
  end loop;

  perform trellis._run_move(array(
    select row(m.run, m.to_status,
               case when m.to_status = 'paused' then 'paused' when m.failure then 'retried' else 'released' end,
               case when m.cancel or m.op = 'pause' then v_now
                    else v_now + make_interval(secs => greatest(coalesce(m.delay_ms, 0), 0) / 1000.0) end,
               null, false, m.error, true, null, null, m.attempt, m.failures, m.to_status = 'paused', null,
               null, null, null, null)::trellis.run_move
      from (select o.run, o.op, o.delay_ms, coalesce(o.failure, false) as failure,
                   -- A run its worker claimed and gave back unexecuted: the
                   -- claim's attempt is taken back.
                   case when o.op = 'release' and o.begun is false then greatest(r.attempt - 1, 0) end as attempt,
                   r.failures + case when o.failure then 1 else 0 end as failures,
                   r.cancel_requested_at is not null and not coalesce(o.seen_cancel, false) as cancel,
                   -- A pause requested while the attempt ran parks a release
                   -- too (its backoff kept: resumed, it is due when that
                   -- ends); it was left pending with the request set, which
                   -- run_resume refused, and parked only at the next claim.
                   case when r.cancel_requested_at is not null and not coalesce(o.seen_cancel, false) then 'pending'
                        when r.pause_requested_at is not null then 'paused'
                        when o.op = 'release' then 'pending'
                        when o.error is null then 'pending'
                        else 'paused' end as to_status,
                   case when r.cancel_requested_at is not null and not coalesce(o.seen_cancel, false) then r.error
                        -- A requested cancellation keeps its reason (the run
                        -- ends with it); the op's error (a cleanup step's
                        -- retry or dead letter) becomes its cause.
                        when r.cancel_requested_at is not null and r.error->>'code' = 'cancelled' then
                          case when o.error is null then r.error else r.error || jsonb_build_object('cause', o.error) end
                        else coalesce(o.error, r.error) end as error
              from unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
             where o.op in ('release', 'pause')) m));
  -- One run at a time, on its bucket (rare: a parked run).
  for v_f in select x.bucket, x.id, x.resume_at from unnest(v_rb, v_rid, v_rat) as x(bucket, id, resume_at) loop
    update trellis.runs set resume_at = v_f.resume_at
     where bucket = v_f.bucket and id = v_f.id and status = 'paused';
  end loop;
end $$;
comment on function trellis.run_release(trellis.checkpoint_op[]) is
  'Set-based: give back the runs of the release and pause ops whose (run, token) is held: pending after delay_ms (a failure counts a failed workflow attempt and forgets the failed call and every later one; begun false, a run its worker never executed, takes the claim''s attempt back), or paused (a pause op with an error, or either op with a pause request: a release keeps its due time); due now when a cancel request the execution did not see is pending.';

-- Wait: park the run until its timer (deadline, in engine time; null and no
-- delay_ms = none), a signal or a child wakes it. Anything that arrived while
-- it ran (a signal newer than the newest it saw, a finished child, a cancel
-- request) or a timer the engine's clock has passed makes it pending now;
-- a pause request parks it, unless a cancel request it did not see came too.
-- A child that finishes concurrently locks this run (its parent) up front,
-- so either it committed before the lock above was granted (and the check
-- below sees it finished) or it waits for this transaction and then wakes
-- the run it finds waiting. Only calls of the current execution count: a
-- child left by an execution kept with continue-as-new wakes no one.
create or replace function trellis._runs_wait(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
declare
  v_now     timestamptz := trellis.now();
  v_waiters uuid[];
  v_kids    uuid[];
  v_done    uuid[];
  v_woken   uuid[] := '{}';
  v_open    uuid[];
  v_owners  uuid[];
  v_fw      uuid[];
  v_fk      uuid[];
  v_fb      integer[];
  v_gone    uuid[];
begin
  -- The children the held waiting runs wait on (calls of their current
  -- execution), then those of them that finished: two statements, as a
  -- child with its own key lives in another bucket than its parent (on a
  -- distributed schema a join across buckets is refused; docs/scaling.md).
  select coalesce(array_agg(p.id), '{}'), coalesce(array_agg((s.output->>'child')::uuid), '{}')
    into v_waiters, v_kids
    from unnest(p_ops) o
    join trellis.runs p on p.id = o.run and p.lease_token = o.token
    join trellis.steps s on s.bucket = p.bucket and s.run_id = p.id and s.execution = p.execution
   where o.op = 'wait' and s.status = 'waiting' and s.kind = 'child';
  if cardinality(v_kids) > 0 then
    select coalesce(array_agg(c.id) filter (where c.status in ('completed', 'failed', 'cancelled')), '{}'),
           coalesce(array_agg(c.id) filter (where c.status not in ('completed', 'failed', 'cancelled')), '{}'),
           coalesce(array_agg(c.parent_run_id) filter (where c.status not in ('completed', 'failed', 'cancelled')), '{}')
      into v_done, v_open, v_owners
      from trellis.runs c where c.id = any (v_kids);
    v_woken := array(select distinct x.w from unnest(v_waiters, v_kids) x(w, k) where x.k = any (v_done));
    -- A call that waits on a run that does not exist (ctx.waitForRun of an
    -- unknown id) wakes at once: the claim reports it as not found
    -- (_run_children_ended), and the replay fails the call.
    v_gone := array(select k from unnest(v_kids) k where k <> all (v_done) and k <> all (v_open));
    v_woken := v_woken || array(select distinct x.w from unnest(v_waiters, v_kids) x(w, k) where x.k = any (v_gone));
    -- A call that waits on an unfinished run whose parent is another run
    -- (ctx.waitForRun, a child key that run started first, a fork's replay
    -- of its original's child) is not woken by the parent link: it is
    -- written to run_watches, which that run's end reads (decision 0039).
    -- The awaited runs are locked first, so their end either committed
    -- before the lock was granted (and the read below sees it finished) or
    -- comes after this transaction and reads the watch (_wake_child_waiters).
    -- This is the one run lock taken after a checkpoint's up-front locks; a
    -- cycle with it is a deadlock PostgreSQL breaks and the worker retries.
    select coalesce(array_agg(x.w), '{}'), coalesce(array_agg(x.k), '{}') into v_fw, v_fk
      from unnest(v_waiters, v_kids) x(w, k)
      join unnest(v_open, v_owners) o(id, owner) on o.id = x.k
     where o.owner is distinct from x.w;
    if cardinality(v_fk) > 0 then
      perform trellis._lock_runs(v_fk);
      select coalesce(array_agg(c.id) filter (where c.status in ('completed', 'failed', 'cancelled')), '{}')
        into v_done from trellis.runs c where c.id = any (v_fk);
      v_woken := v_woken || array(select distinct x.w from unnest(v_fw, v_fk) x(w, k) where x.k = any (v_done));
      select coalesce(array_agg(x.w), '{}'), coalesce(array_agg(x.k), '{}'), coalesce(array_agg(c.bucket), '{}')
        into v_fw, v_fk, v_fb
        from unnest(v_fw, v_fk) x(w, k) join trellis.runs c on c.id = x.k
       where c.status not in ('completed', 'failed', 'cancelled') and x.w <> all (v_woken);
      insert into trellis.run_watches (bucket, run_id, waiter_id)
      select distinct x.b, x.k, x.w from unnest(v_fb, v_fk, v_fw) x(b, k, w)
      on conflict do nothing;
    end if;
  end if;
  perform trellis._run_move(array(
    select row(m.run, m.to_status,
               case m.to_status when 'paused' then 'paused' when 'pending' then 'resumed' else 'waiting' end,
               case when m.to_status in ('paused', 'pending') then v_now
                    else coalesce(m.wake_at, 'infinity') end,
               null, false, null, false, null, null, null, null, true, null,
               null, null, null, null)::trellis.run_move
      -- The timer: the op's deadline (engine time), or delay_ms from now,
      -- as older workers send it (written out twice: no lateral subquery,
      -- which a distributed schema cannot push down).
      from (select o.run,
                   case when o.deadline is not null then o.deadline
                        when o.delay_ms is not null then v_now + make_interval(secs => greatest(o.delay_ms, 0) / 1000.0) end as wake_at,
                   -- A cancel request the execution did not see wins over a
                   -- pause requested with it: the run ends cancelled, as a
                   -- release or a pause op does (run_release).
                   case when r.cancel_requested_at is not null and not coalesce(o.seen_cancel, false) then 'pending'
                        when r.pause_requested_at is not null then 'paused'
                        -- A timer already due: the engine's clock passed it
                        -- while the execution ran (the test kit's clock moved).
                        when case when o.deadline is not null then o.deadline
                                  when o.delay_ms is not null then v_now + make_interval(secs => greatest(o.delay_ms, 0) / 1000.0) end <= v_now
                          or o.run = any (v_woken)
                          or exists (select 1 from trellis.signals g
                                      where g.bucket = r.bucket and g.run_id = r.id and g.consumed_at is null
                                        and g.id > coalesce(o.signal, 0)) then 'pending'
                        else 'waiting' end as to_status
              from unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
             where o.op = 'wait') m));
end $$;
comment on function trellis._runs_wait(trellis.checkpoint_op[]) is
  'Set-based: park the runs of the wait ops whose (run, token) is held: waiting until deadline (engine time; or delay_ms from now; neither: no timer), pending now if that time has passed or a newer signal, a finished child or an unseen cancel request is there, paused if a pause was requested.';

-- Continue-as-new: the same run (id, key, parent) starts a new execution
-- with a fresh history; the old execution's steps are kept or removed.
create or replace function trellis._runs_continue(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
begin
  delete from trellis.steps s
   using unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
   where o.op = 'continue' and not coalesce(o.keep, false) and s.bucket = r.bucket and s.run_id = o.run;
  -- Their values went with the history: whoever waits for one (a request's
  -- answer, decision 0044) reads again (sql/410_values.sql).
  if exists (select 1 from unnest(p_ops) o where o.op = 'continue' and not coalesce(o.keep, false)) then
    perform trellis._notify_values(array(select o.run from unnest(p_ops) o where o.op = 'continue' and not coalesce(o.keep, false)));
  end if;
  -- The error is cleared, but for a cancellation requested meanwhile (by
  -- run_cancel or a deadline): its reason stays for the end it brings.
  perform trellis._run_move(array(
    select row(o.run, 'pending', 'continued', v_now, null, true,
               case when r.cancel_requested_at is not null and r.error->>'code' = 'cancelled' then r.error end, true,
               coalesce(o.input, 'null'), r.execution + 1, 0, 0, null, null,
               null, null, null, null)::trellis.run_move
      from unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
     where o.op = 'continue'));
end $$;
comment on function trellis._runs_continue(trellis.checkpoint_op[]) is
  'Set-based: continue the runs of the continue ops whose (run, token) is held as new: execution + 1 with the new input, counters reset, pending now; the old steps removed unless keep (then trellis:run_value is notified, if watched: their values are gone).';

create or replace function trellis.run_complete(p_run_id uuid, p_token uuid, p_output jsonb)
returns void language plpgsql as $$
declare
  v_op trellis.checkpoint_op;
begin
  v_op.op := 'complete'; v_op.run := p_run_id; v_op.token := p_token; v_op.output := coalesce(p_output, 'null');
  perform trellis._checkpoint_one(v_op);
end $$;
comment on function trellis.run_complete(uuid, uuid, jsonb) is
  'Complete a run held under p_token with its output; notifies trellis:run_finished while a session watches (run_finished_watch).';

create or replace function trellis.run_fail(p_run_id uuid, p_token uuid, p_error jsonb)
returns void language plpgsql as $$
declare
  v_op trellis.checkpoint_op;
begin
  v_op.op := 'fail'; v_op.run := p_run_id; v_op.token := p_token; v_op.error := coalesce(p_error, '{}');
  perform trellis._checkpoint_one(v_op);
end $$;
comment on function trellis.run_fail(uuid, uuid, jsonb) is
  'Fail a run held under p_token with an error object {name, message, code?, ...}; notifies trellis:run_finished while a session watches (run_finished_watch).';

create or replace function trellis.run_release(p_run_id uuid, p_token uuid, p_delay interval default '0',
                                               p_error jsonb default null, p_failure boolean default false)
returns void language plpgsql as $$
declare
  v_op trellis.checkpoint_op;
begin
  if p_delay is not null and (p_delay < interval '0' or p_delay > interval '1000 years' or not isfinite(p_delay)) then
    perform trellis._raise('TR001', format('release delay must be from zero to 1000 years, not %s', trellis._quote(p_delay::text)));
  end if;
  v_op.op := 'release'; v_op.run := p_run_id; v_op.token := p_token;
  v_op.delay_ms := (extract(epoch from coalesce(p_delay, '0')) * 1000)::bigint;
  v_op.error := p_error; v_op.failure := coalesce(p_failure, false);
  perform trellis._checkpoint_one(v_op);
end $$;
comment on function trellis.run_release(uuid, uuid, interval, jsonb, boolean) is
  'Give a held run back: pending again after p_delay (zero to 1000 years; TR001 otherwise). With p_failure it counts a failed workflow attempt and forgets failed steps.';

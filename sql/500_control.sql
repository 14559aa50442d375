-- 500_control: operator and API controls of a run.
-- Owns: run_cancel, run_pause, run_resume, run_retry, clock_use_virtual, clock_advance.
-- Touches: trellis.runs (update), trellis.steps (delete failed steps on retry), trellis.clock.
-- Lock order: the run row, then its children (recursively), then its parents.

-- Lock a run for a control change; TR002 when it does not exist.
create or replace function trellis._run_lock(p_run_id uuid)
returns trellis.runs language plpgsql as $$
declare
  v_run trellis.runs;
begin
  select * into v_run from trellis.runs where id = p_run_id for no key update;
  if not found then
    perform trellis._raise('TR002', format('run %s does not exist', p_run_id));
  end if;
  return v_run;
end $$;
comment on function trellis._run_lock(uuid) is
  'Lock run p_run_id (FOR NO KEY UPDATE) and return it; TR002 if it does not exist.';

create or replace function trellis._finish_cancelled(p_run_id uuid, p_reason text)
returns void language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
begin
  update trellis.runs
     set status = 'cancelled', finished_at = v_now, updated_at = v_now,
         error = jsonb_build_object('name', 'CancelledError', 'code', 'cancelled',
                                    'message', coalesce(p_reason, 'cancelled'))
   where id = p_run_id;
  perform trellis._wake_child_waiters(array[p_run_id]);
  perform pg_notify('trellis:run_finished', p_run_id::text);
end $$;
comment on function trellis._finish_cancelled(uuid, text) is
  'End a run (already locked, not running) as cancelled: wake its waiting parent and notify.';

create or replace function trellis.run_cancel(p_run_id uuid, p_reason text default null)
returns text language plpgsql as $$
declare
  v_now   timestamptz := trellis.now();
  v_run   trellis.runs;
  v_child uuid;
begin
  v_run := trellis._run_lock(p_run_id);
  if v_run.status = 'cancelled' then
    return 'cancelled';
  elsif v_run.status in ('completed', 'failed') then
    perform trellis._raise('TR004', format('run %s is %s and cannot be cancelled', p_run_id, v_run.status));
  end if;
  if v_run.attempt = 0 then
    -- Never started: no workflow code to deliver the cancellation to.
    perform trellis._finish_cancelled(p_run_id, p_reason);
  else
    -- Started: the workflow gets CancelledError at its next wait (its cleanup
    -- code may run); a running step's AbortSignal fires on its worker.
    update trellis.runs
       set cancel_requested_at = coalesce(cancel_requested_at, v_now),
           error = jsonb_build_object('name', 'CancelledError', 'code', 'cancelled',
                                      'message', coalesce(p_reason, 'cancelled')),
           status = case when status = 'running' then status else 'pending' end,
           run_at = case when status = 'running' then run_at else v_now end,
           updated_at = v_now
     where id = p_run_id;
    if v_run.status = 'running' then
      perform pg_notify('trellis:run_control', 'cancel:' || p_run_id::text);
    else
      perform pg_notify('trellis:run_ready', v_run.queue);
    end if;
  end if;
  for v_child in
    select id from trellis.runs
     where parent_run_id = p_run_id and parent_close = 'cancel'
       and status not in ('completed', 'failed', 'cancelled')
     order by id
  loop
    perform trellis.run_cancel(v_child, coalesce(p_reason, 'parent run cancelled'));
  end loop;
  return (select status from trellis.runs where id = p_run_id);
end $$;
comment on function trellis.run_cancel(uuid, text) is
  'Cancel a run and (unless they were started with parent_close abandon) its unfinished children. A run that never started ends cancelled at once; a started one is woken and ends cancelled after its workflow sees CancelledError. Returns the status. TR002 unknown, TR004 completed/failed.';

create or replace function trellis.run_pause(p_run_id uuid, p_reason text default null)
returns text language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
  v_run trellis.runs;
begin
  v_run := trellis._run_lock(p_run_id);
  if v_run.status in ('completed', 'failed', 'cancelled') then
    perform trellis._raise('TR004', format('run %s is %s and cannot be paused', p_run_id, v_run.status));
  elsif v_run.status = 'running' then
    update trellis.runs
       set pause_requested_at = coalesce(pause_requested_at, v_now), updated_at = v_now,
           error = case when p_reason is null then error
                        else jsonb_build_object('name', 'Paused', 'code', 'paused', 'message', p_reason) end
     where id = p_run_id;
    perform pg_notify('trellis:run_control', 'pause:' || p_run_id::text);
  elsif v_run.status in ('pending', 'waiting') then
    update trellis.runs
       set status = 'paused', updated_at = v_now,
           error = case when p_reason is null then error
                        else jsonb_build_object('name', 'Paused', 'code', 'paused', 'message', p_reason) end
     where id = p_run_id;
  end if;
  return (select status from trellis.runs where id = p_run_id);
end $$;
comment on function trellis.run_pause(uuid, text) is
  'Park a run: pending or waiting runs become paused at once; a running run finishes its current step and then parks. Returns the status. TR004 for finished runs.';

create or replace function trellis.run_resume(p_run_id uuid)
returns text language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
  v_run trellis.runs;
begin
  v_run := trellis._run_lock(p_run_id);
  if v_run.status = 'running' and v_run.pause_requested_at is not null then
    update trellis.runs set pause_requested_at = null, updated_at = v_now where id = p_run_id;
  elsif v_run.status <> 'paused' then
    perform trellis._raise('TR004', format('run %s is %s, not paused', p_run_id, v_run.status));
  else
    update trellis.runs set status = 'pending', run_at = v_now, pause_requested_at = null, updated_at = v_now
     where id = p_run_id;
    perform pg_notify('trellis:run_ready', v_run.queue);
  end if;
  return (select status from trellis.runs where id = p_run_id);
end $$;
comment on function trellis.run_resume(uuid) is
  'Resume a paused run (it replays and continues where it stopped). TR004 unless paused.';

create or replace function trellis.run_retry(p_run_id uuid)
returns text language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
  v_run trellis.runs;
begin
  v_run := trellis._run_lock(p_run_id);
  if v_run.status <> 'failed' then
    perform trellis._raise('TR004', format('run %s is %s, not failed', p_run_id, v_run.status));
  end if;
  -- Completed steps stay memoised; the failed step runs again from attempt 1.
  delete from trellis.steps where run_id = p_run_id and execution = v_run.execution and status = 'failed';
  update trellis.runs
     set status = 'pending', run_at = v_now, finished_at = null, failures = 0, updated_at = v_now
   where id = p_run_id;
  perform pg_notify('trellis:run_ready', v_run.queue);
  return 'pending';
end $$;
comment on function trellis.run_retry(uuid) is
  'Run a failed run again from its failed step (completed steps are not re-run). TR004 unless failed.';

-- The test kit's virtual clock. Production never calls these.
-- clock_use_virtual is DDL that changes the clock of every session of the
-- database, so it needs an explicit opt-in: trellis.virtual_clock = 'allowed'
-- (the test kit sets it in its connection options; `set local` works too).
create or replace function trellis.clock_use_virtual()
returns void language plpgsql as $$
begin
  if current_setting('trellis.virtual_clock', true) is distinct from 'allowed' then
    perform trellis._raise('TR004',
      'the virtual clock is for test databases: set trellis.virtual_clock = ''allowed'' in this session first '
      || '(the test kit does; by hand: set local trellis.virtual_clock = ''allowed'')');
  end if;
  insert into trellis.clock (singleton, "offset") values (true, '0') on conflict do nothing;
  create or replace function trellis.now() returns timestamptz
  language sql stable parallel safe as 'select now() + coalesce((select "offset" from trellis.clock), interval ''0'')';
end $$;
comment on function trellis.clock_use_virtual() is
  'Test kit only: make trellis.now() read a shared offset from trellis.clock. TR004 unless the session set trellis.virtual_clock = ''allowed''.';

create or replace function trellis.clock_advance(p_by interval)
returns timestamptz language plpgsql as $$
declare
  v_queue text;
begin
  if p_by is null or p_by < interval '0' then
    perform trellis._raise('TR001', 'the clock only moves forward');
  end if;
  update trellis.clock set "offset" = "offset" + p_by;
  if not found or (select prosrc from pg_proc where oid = 'trellis.now()'::regprocedure) not like '%trellis.clock%' then
    perform trellis._raise('TR004', 'the virtual clock is not in use (call trellis.clock_use_virtual())');
  end if;
  for v_queue in select distinct queue from trellis.runs where status in ('pending', 'waiting') loop
    perform pg_notify('trellis:run_ready', v_queue);
  end loop;
  return trellis.now();
end $$;
comment on function trellis.clock_advance(interval) is
  'Test kit only: move the virtual clock forward and wake workers, so due sleeps, timeouts and retries fire.';

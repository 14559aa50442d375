-- 520_control_many: the controls of sql/500_control.sql applied to every run a filter matches (decision 0037).
-- Owns: run_cancel_many, run_retry_many, run_pause_many, run_resume_many, run_control_preview
-- (_run_filter, _run_control_targets, _run_control_many).
-- Touches: trellis.runs, trellis.steps, trellis.signals, trellis.events as
-- the one-run controls do (each matched run goes through run_cancel,
-- run_retry, run_pause or run_resume).
-- Lock order: a batch's runs in id order, one at a time (pause, resume,
-- retry), or for a cancel, the batch's runs with their parents and the runs
-- they reach all at once in id order, as run_cancel does for one; a batch
-- holds its locks until its transaction ends. A child started after the
-- batch looked is locked by run_cancel when it gets there: rarely, a
-- deadlock (40P01) still rolls the batch back whole, and it is run again
-- (the client does).
--
-- A batch examines up to p_limit runs the filter matches, whose status the
-- control applies to, in id order after p_after; it returns each with its
-- status afterwards and whether it changed (a run that changed meanwhile,
-- between the read and its lock, is returned unchanged). The next batch
-- starts after the last id returned; fewer rows than p_limit: no more.

-- The filter: {"workflow", "version", "queue", "key", "status" (one or an
-- array), "created_after", "created_before", "metadata" (an object the run's
-- metadata contains), "ids" (an array of run ids), "all"}, each optional,
-- but at least one (an empty metadata object names nothing): a control of
-- every run must say {"all": true}.
create or replace function trellis._run_filter(p_filter jsonb,
  out workflow text, out version text, out queue text, out key text, out statuses text[],
  out created_after timestamptz, out created_before timestamptz, out ids uuid[], out metadata jsonb)
language plpgsql immutable as $$
declare
  v_bad text;
begin
  if p_filter is null or jsonb_typeof(p_filter) <> 'object' then
    perform trellis._raise('TR001', 'a run filter is a JSON object {workflow?, version?, queue?, key?, status?, created_after?, created_before?, metadata?, ids?, all?}');
  end if;
  select string_agg(trellis._quote(k), ', ') into v_bad from jsonb_object_keys(p_filter) k
   where k not in ('workflow', 'version', 'queue', 'key', 'status', 'created_after', 'created_before', 'metadata', 'ids', 'all');
  if v_bad is not null then
    perform trellis._raise('TR001', format('unknown run filter key(s): %s', v_bad));
  end if;
  if p_filter ? 'all' and jsonb_typeof(p_filter->'all') not in ('boolean', 'null') then
    perform trellis._raise('TR001', 'run filter all must be true or false');
  end if;
  if (select count(*) from jsonb_each(p_filter) e
       where e.value <> 'null'::jsonb and e.key <> 'all' and not (e.key = 'metadata' and e.value = '{}'::jsonb)) = 0
     and p_filter->'all' is distinct from 'true'::jsonb then
    perform trellis._raise('TR001', 'a run filter names at least one of workflow, version, queue, key, status, created_after, created_before, metadata, ids; {"all": true} for every run');
  end if;
  if exists (select 1 from jsonb_each(p_filter) e
              where e.key in ('workflow', 'version', 'queue', 'key', 'created_after', 'created_before')
                and jsonb_typeof(e.value) not in ('string', 'null')) then
    perform trellis._raise('TR001', 'run filter workflow, version, queue, key, created_after and created_before are strings');
  end if;
  workflow := p_filter->>'workflow';
  if workflow is not null then
    workflow := trellis._check_name(workflow, 'workflow');
  end if;
  version := p_filter->>'version';
  if version is not null then
    version := trellis._check_name(version, 'version');
  end if;
  queue := p_filter->>'queue';
  if queue is not null then
    queue := trellis._check_name(queue, 'queue');
  end if;
  key := p_filter->>'key';
  if jsonb_typeof(p_filter->'status') = 'string' then
    statuses := array[p_filter->>'status'];
  elsif jsonb_typeof(p_filter->'status') = 'array' then
    if exists (select 1 from jsonb_array_elements(p_filter->'status') s where jsonb_typeof(s) <> 'string') then
      perform trellis._raise('TR001', 'run filter status is a status or an array of statuses');
    end if;
    statuses := array(select jsonb_array_elements_text(p_filter->'status'));
  elsif jsonb_typeof(p_filter->'status') not in ('null') then
    perform trellis._raise('TR001', 'run filter status is a status or an array of statuses');
  end if;
  select string_agg(trellis._quote(s), ', ') into v_bad from unnest(statuses) s
   where s not in ('pending', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled');
  if v_bad is not null then
    perform trellis._raise('TR001', format('run filter status: no run is %s', v_bad));
  end if;
  begin
    created_after := (p_filter->>'created_after')::timestamptz;
  exception when others then
    perform trellis._raise('TR001', format('run filter created_after %s is not a timestamp', trellis._quote(p_filter->>'created_after')));
  end;
  begin
    created_before := (p_filter->>'created_before')::timestamptz;
  exception when others then
    perform trellis._raise('TR001', format('run filter created_before %s is not a timestamp', trellis._quote(p_filter->>'created_before')));
  end;
  if jsonb_typeof(p_filter->'metadata') = 'object' then
    metadata := p_filter->'metadata';
  elsif jsonb_typeof(p_filter->'metadata') not in ('null') then
    perform trellis._raise('TR001', 'run filter metadata is a JSON object the runs'' metadata contains');
  end if;
  if jsonb_typeof(p_filter->'ids') = 'array' then
    begin
      ids := array(select i::uuid from jsonb_array_elements_text(p_filter->'ids') i);
    exception when others then
      perform trellis._raise('TR001', 'run filter ids is an array of run ids (UUIDs)');
    end;
  elsif jsonb_typeof(p_filter->'ids') not in ('null') then
    perform trellis._raise('TR001', 'run filter ids is an array of run ids (UUIDs)');
  end if;
end $$;
comment on function trellis._run_filter(jsonb) is
  'Parse a run filter {workflow?, version?, queue?, key?, status? (one or an array), created_after?, created_before?, metadata? (contained in the run''s), ids?, all?}; TR001 for anything else, and for an empty one (every run needs {"all": true}).';

-- Which runs a control applies to: those its one-run function would change
-- (and not a run it would refuse with TR004, nor one already asked). A pause
-- takes a run its code parked to be resumed (resume_at): the operator holds it.
create or replace function trellis._run_control_applies(p_action text, p_status text, p_cancel_requested timestamptz,
  p_pause_requested timestamptz, p_scrubbed timestamptz, p_former_key text, p_resume_at timestamptz)
returns boolean language sql immutable parallel safe as $$
  select case p_action
    when 'cancel' then p_status in ('pending', 'waiting', 'paused') or (p_status = 'running' and p_cancel_requested is null)
    when 'retry' then p_status = 'failed' and p_scrubbed is null and p_former_key is null
    when 'pause' then p_status in ('pending', 'waiting') or (p_status = 'running' and p_pause_requested is null)
                      or (p_status = 'paused' and p_resume_at is not null)
    when 'resume' then p_status = 'paused' or (p_status = 'running' and p_pause_requested is not null)
  end
$$;
comment on function trellis._run_control_applies(text, text, timestamptz, timestamptz, timestamptz, text, timestamptz) is
  'Whether control p_action changes a run with this status and these request times (the runs run_cancel_many and the others pick).';

-- The runs control p_action would change now: up to p_limit runs matching
-- p_filter that it applies to, in id order after p_after. A read: no locks.
create or replace function trellis._run_control_targets(p_action text, p_filter jsonb, p_limit integer, p_after uuid)
returns uuid[] language plpgsql stable as $$
declare
  f record;
begin
  select * into f from trellis._run_filter(p_filter);
  if p_limit is null or p_limit < 1 or p_limit > 10000 then
    perform trellis._raise('TR001', format('limit must be from 1 to 10000, not %s', coalesce(p_limit::text, 'null')));
  end if;
  return array(
    select r.id from trellis.runs r
     where (f.workflow is null or r.workflow = f.workflow)
       and (f.version is null or r.version = f.version)
       and (f.queue is null or r.queue = f.queue)
       and (f.key is null or r.key = f.key)
       and (f.statuses is null or r.status = any (f.statuses))
       and (f.created_after is null or r.created_at >= f.created_after)
       and (f.created_before is null or r.created_at < f.created_before)
       and (f.ids is null or r.id = any (f.ids))
       and (f.metadata is null or r.metadata @> f.metadata)
       and (p_after is null or r.id > p_after)
       and trellis._run_control_applies(p_action, r.status, r.cancel_requested_at, r.pause_requested_at, r.scrubbed_at, r.former_key, r.resume_at)
     order by r.id
     limit p_limit);
end $$;
comment on function trellis._run_control_targets(text, jsonb, integer, uuid) is
  'The ids of up to p_limit runs matching p_filter that control p_action applies to, in id order after p_after (TR001 for a bad filter or limit).';

create or replace function trellis._run_control_many(p_action text, p_filter jsonb, p_reason text, p_limit integer, p_after uuid)
returns table (id uuid, status text, changed boolean) language plpgsql as $$
declare
  v_id     uuid;
  v_ids    uuid[];
  v_run    trellis.runs;
  v_before text;
  v_after  text;
begin
  v_ids := trellis._run_control_targets(p_action, p_filter, p_limit, p_after);
  if p_reason is not null then
    perform trellis._check_payload(to_jsonb(p_reason), p_action || ' reason');
  end if;
  -- A cancel also locks each run's parent and every run it reaches (its
  -- cancel-children): the whole batch's set is locked up front, in id order,
  -- as run_cancel does for one run, so two batches, or a batch and a
  -- worker ending a child (which locks child and parent in id order), wait
  -- for each other in one order instead of deadlocking.
  if p_action = 'cancel' and cardinality(v_ids) > 0 then
    perform trellis._lock_runs(array(
      select unnest(v_ids)
      union select c.parent_run_id from trellis.runs c where c.id = any (v_ids) and c.parent_run_id is not null
      union select w.waiter_id from trellis.run_watches w where w.run_id = any (v_ids)
      union select trellis._cancel_reach(v_ids)));
  end if;
  foreach v_id in array v_ids
  loop
    -- Locked one at a time (a run gone meanwhile, purged, is passed over),
    -- then looked at again: it may have changed since the read above.
    v_run := trellis._run_lock_if_any(v_id);
    continue when v_run.id is null;
    v_before := v_run.status;
    if trellis._run_control_applies(p_action, v_run.status, v_run.cancel_requested_at, v_run.pause_requested_at,
                                    v_run.scrubbed_at, v_run.former_key, v_run.resume_at) then
      v_after := case p_action
        when 'cancel' then trellis._run_cancel(v_id, p_reason, null)
        when 'retry' then trellis.run_retry(v_id)
        when 'pause' then trellis.run_pause(v_id, p_reason)
        when 'resume' then trellis.run_resume(v_id) end;
      return query select v_id, v_after, true;
    else
      return query select v_id, v_before, false;
    end if;
  end loop;
end $$;
comment on function trellis._run_control_many(text, jsonb, text, integer, uuid) is
  'Apply control p_action (cancel, retry, pause, resume) to up to p_limit runs matching p_filter that it applies to, in id order after p_after; returns each with its status afterwards and whether it changed.';

create or replace function trellis.run_cancel_many(p_filter jsonb, p_reason text default null, p_limit integer default 1000,
  p_after uuid default null)
returns table (id uuid, status text, changed boolean) language sql as $$
  select * from trellis._run_control_many('cancel', p_filter, p_reason, p_limit, p_after)
$$;
comment on function trellis.run_cancel_many(jsonb, text, integer, uuid) is
  'Cancel, as run_cancel does, up to p_limit (1-10000) unfinished runs matching p_filter {workflow?, version?, queue?, key?, status?, created_after?, created_before?, metadata?, ids?, all?} (at least one; {"all": true} for every run), in id order after p_after, skipping running runs already asked to cancel. Returns each run examined with its status afterwards and whether it changed; call again after the last id while a full batch comes back. TR001 for a bad filter or limit, TR005 a reason over max_payload_bytes.';

create or replace function trellis.run_retry_many(p_filter jsonb, p_limit integer default 1000, p_after uuid default null)
returns table (id uuid, status text, changed boolean) language sql as $$
  select * from trellis._run_control_many('retry', p_filter, null, p_limit, p_after)
$$;
comment on function trellis.run_retry_many(jsonb, integer, uuid) is
  'Retry, as run_retry does, up to p_limit (1-10000) failed runs matching p_filter (as run_cancel_many''s), in id order after p_after, skipping scrubbed runs and runs whose key a later start took. Returns each run examined with its status afterwards and whether it changed.';

create or replace function trellis.run_pause_many(p_filter jsonb, p_reason text default null, p_limit integer default 1000,
  p_after uuid default null)
returns table (id uuid, status text, changed boolean) language sql as $$
  select * from trellis._run_control_many('pause', p_filter, p_reason, p_limit, p_after)
$$;
comment on function trellis.run_pause_many(jsonb, text, integer, uuid) is
  'Pause, as run_pause does, up to p_limit (1-10000) pending, waiting or running runs matching p_filter (as run_cancel_many''s), in id order after p_after, skipping running runs already asked to pause. Returns each run examined with its status afterwards and whether it changed.';

create or replace function trellis.run_resume_many(p_filter jsonb, p_limit integer default 1000, p_after uuid default null)
returns table (id uuid, status text, changed boolean) language sql as $$
  select * from trellis._run_control_many('resume', p_filter, null, p_limit, p_after)
$$;
comment on function trellis.run_resume_many(jsonb, integer, uuid) is
  'Resume, as run_resume does, up to p_limit (1-10000) paused runs (and running runs asked to pause) matching p_filter (as run_cancel_many''s), in id order after p_after. Returns each run examined with its status afterwards and whether it changed.';

-- A dry run of a bulk control: the runs it would change now, read and
-- returned, nothing changed or locked (a run may change before a real call).
create or replace function trellis.run_control_preview(p_action text, p_filter jsonb, p_limit integer default 1000,
  p_after uuid default null)
returns table (id uuid, workflow text, key text, status text, created_at timestamptz) language plpgsql stable as $$
declare
  v_ids uuid[];
begin
  if p_action is null or p_action not in ('cancel', 'retry', 'pause', 'resume') then
    perform trellis._raise('TR001', format('a control is cancel, retry, pause or resume, not %s', trellis._quote(p_action)));
  end if;
  v_ids := trellis._run_control_targets(p_action, p_filter, p_limit, p_after);
  return query
    select r.id, r.workflow, r.key, r.status, r.created_at from trellis.runs r
     where r.id = any (v_ids)
     order by r.id;
end $$;
comment on function trellis.run_control_preview(text, jsonb, integer, uuid) is
  'A dry run of run_cancel_many, run_retry_many, run_pause_many or run_resume_many (p_action cancel, retry, pause or resume): the runs matching p_filter that the control would change now, up to p_limit (1-10000) in id order after p_after, with their workflow, key, status and creation time. Changes and locks nothing. TR001 for a bad action, filter or limit.';

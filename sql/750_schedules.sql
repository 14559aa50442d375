-- 750_schedules: cron schedules that start runs.
-- Owns: schedule_set, schedule_pause, schedule_resume, schedule_delete,
-- schedule_tick, schedule_fire, schedule_backfill, schedule_trigger (_schedule_key,
-- _schedule_start, _schedule_take_tick, _schedule_manual, _schedule_active,
-- _check_cron, _check_time_zone).
-- Touches: trellis.schedules (insert, update, delete), trellis.runs (insert
-- through _run_start; run_cancel for the cancel_previous policy), trellis.roles
-- (role_check: the ticker's fence).
-- Lock order: the role row (FOR KEY SHARE, role_check), then schedule rows
-- FOR UPDATE in name order, then the runs they start or cancel.
--
-- Next fire times are computed in TypeScript (croner, with the IANA time
-- zone's DST rules) and stored: schedule_set takes one from the client, and
-- a schedule set from SQL, or resumed, gets its next_at from the ticker,
-- which computes it from next_from. The ticker (the worker holding the role
-- trellis.schedules) reads due schedules with schedule_tick and writes what
-- it computed with schedule_fire, fenced by its role token. Each tick starts
-- its run under the key schedule:<name>:<tick in UTC>, and schedule_fire
-- does nothing for a schedule whose next_at moved since it was read, so a
-- tick fired twice (a failover between the two calls) starts one run.

create or replace function trellis._check_cron(p_cron text)
returns text language plpgsql immutable as $$
begin
  if p_cron is null or length(p_cron) > 200
     or (p_cron !~ E'^\\s*[0-9A-Za-z*/,?#LW-]+(\\s+[0-9A-Za-z*/,?#LW-]+){4,5}\\s*$'
         and p_cron !~ '^@(yearly|annually|monthly|weekly|daily|midnight|hourly)$') then
    perform trellis._raise('TR001', format('invalid cron expression %s: use 5 fields (minute hour day month weekday) or 6 (seconds first)',
                                           coalesce(quote_literal(left(p_cron, 60)), 'null')));
  end if;
  return p_cron;
end $$;
comment on function trellis._check_cron(text) is
  'Return p_cron if it has the shape of a cron expression (5 or 6 fields, or @daily and the like), else TR001. The ticker parses it fully (croner) and records an error on the schedule if it cannot.';

-- Looked up among PostgreSQL's zone names, not tried with AT TIME ZONE:
-- that also takes a POSIX spec (UTC+3, Foo-3), which the ticker's
-- Intl/croner refuses, so such a schedule would never fire. Case-blind, as
-- Intl is. Not the POSIX copies of the tz database (posix/, right/) or its
-- special files. A scan of pg_timezone_names: schedule_set only.
create or replace function trellis._check_time_zone(p_zone text)
returns text language plpgsql stable as $$
begin
  if p_zone is null or p_zone !~ '^[A-Za-z][A-Za-z0-9_+-]*(/[A-Za-z0-9_+-]+){0,2}$' then
    perform trellis._raise('TR001', format('invalid time zone %s: use an IANA name such as Europe/Berlin or UTC',
                                           coalesce(quote_literal(left(p_zone, 60)), 'null')));
  end if;
  if not exists (select 1 from pg_catalog.pg_timezone_names z
                  where lower(z.name) = lower(p_zone)
                    and z.name !~* '^(posix|right)/' and z.name not in ('posixrules', 'localtime', 'Factory')) then
    perform trellis._raise('TR001', format('unknown time zone %s: use an IANA name such as Europe/Berlin or UTC',
                                           quote_literal(left(p_zone, 60))));
  end if;
  return p_zone;
end $$;
comment on function trellis._check_time_zone(text) is
  'Return p_zone if it is an IANA time zone name PostgreSQL knows, else TR001.';

create or replace function trellis._schedule_key(p_name text, p_tick timestamptz)
returns text language sql immutable as $$
  select 'schedule:' || p_name || ':' || to_char(p_tick at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')
$$;
comment on function trellis._schedule_key(text, timestamptz) is
  'The idempotency key of the run of schedule p_name''s tick p_tick: schedule:<name>:<tick in UTC>.';

-- PL/pgSQL, not SQL: on a distributed schema (Citus) a SQL function's
-- parameter in a query of a distributed table (runs) is refused ("could
-- not create distributed plan"), so every fire of a schedule whose overlap
-- policy is not allow failed there.
create or replace function trellis._schedule_active(p_run_id uuid)
returns boolean language plpgsql stable as $$
begin
  return exists (select 1 from trellis.runs where id = p_run_id and status in ('pending', 'running', 'waiting', 'paused'));
end $$;
comment on function trellis._schedule_active(uuid) is
  'Whether run p_run_id (a schedule''s last run) has not finished.';

-- The run a tick already has, found by its key: the ticker's, or a manual
-- tick's (a backfill that got to a due tick before the ticker), or null.
-- Every path that starts a tick asks first, so a tick is started, counted
-- and judged by the overlap policy once, whoever gets to it first.
create or replace function trellis._schedule_tick_run(p_schedule trellis.schedules, p_tick timestamptz)
returns uuid language plpgsql stable as $$
declare
  v_key    text := trellis._schedule_key(p_schedule.name, p_tick);
  v_bucket integer := trellis._bucket(p_schedule.workflow, v_key, null, trellis._bucket_count());
  v_id     uuid;
begin
  select r.id into v_id from trellis.runs r where r.bucket = v_bucket and r.workflow = p_schedule.workflow and r.key = v_key;
  return v_id;
end $$;
comment on function trellis._schedule_tick_run(trellis.schedules, timestamptz) is
  'The run of schedule p_schedule''s tick p_tick (by its key schedule:<name>:<tick>), or null when the tick has none yet.';

-- Start the run of one tick; the caller records it as the last run. A
-- ticker's tick (p_manual null) starts at its tick plus a fixed fraction of
-- the schedule's jitter (from the hash of its key), with metadata
-- {schedule, tick}; a manual one (trigger, backfill, decision 0045) at
-- once, with manual: p_manual too.
create or replace function trellis._schedule_start(p_schedule trellis.schedules, p_tick timestamptz, p_manual text)
returns uuid language plpgsql as $$
declare
  v_key  text := trellis._schedule_key(p_schedule.name, p_tick);
  v_meta jsonb := jsonb_build_object('schedule', p_schedule.name, 'tick', p_tick);
begin
  if p_manual is not null then
    return trellis._run_start(p_schedule.workflow, p_schedule.input,
             jsonb_build_object('key', v_key, 'time_limit', p_schedule.time_limit, 'metadata', v_meta || jsonb_build_object('manual', p_manual)),
             null, null, null, null, null, null, null);
  end if;
  return trellis._run_start(p_schedule.workflow, p_schedule.input,
           jsonb_build_object('key', v_key, 'time_limit', p_schedule.time_limit, 'metadata', v_meta,
                              'run_at', p_tick + p_schedule.jitter * ((hashtext(v_key)::bigint + 2147483648) / 4294967296.0)),
           null, null, null, null, null, null, null);
end $$;
comment on function trellis._schedule_start(trellis.schedules, timestamptz, text) is
  'Start the run of schedule p_schedule''s tick p_tick (idempotent by its key): the ticker''s (p_manual null: jittered) or a manual one (p_manual trigger or backfill: due at once, metadata manual); returns its id.';

-- _schedule_start for the ticker: a start the engine refuses for this
-- schedule alone (its stored input no longer matches the newest version's
-- shape, a payload limit lowered since, a time limit that lands before the
-- tick, the workflow gone) must not stop the other schedules of the batch,
-- which share the ticker's transaction. Such a start is undone (the block is
-- a savepoint), nothing is started for the tick, and the reason is returned
-- for the schedule's last_error. Anything else (a lost connection, a
-- deadlock, a lost role) still ends the whole call.
create or replace function trellis._schedule_try_start(p_schedule trellis.schedules, p_tick timestamptz, p_manual text,
                                                       out run_id uuid, out error text)
language plpgsql as $$
begin
  run_id := trellis._schedule_start(p_schedule, p_tick, p_manual);
exception
  when sqlstate 'TR001' or sqlstate 'TR002' or sqlstate 'TR004' or sqlstate 'TR005' or sqlstate 'TR008'
       or data_exception or check_violation then
    error := left(format('tick %s not started: %s', to_char(p_tick at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"'), sqlerrm), 500);
end $$;
comment on function trellis._schedule_try_start(trellis.schedules, timestamptz, text) is
  'Start schedule p_schedule''s tick p_tick as _schedule_start does; when the engine refuses that start (bad input for it: TR001/2/4/5/8, a data exception, a CHECK), nothing is started and error says why.';

-- One tick of a schedule, judged by its overlap policy: the step every path
-- that starts ticks shares (the ticker's fire, its buffered ticks, trigger
-- and backfill), so a tick is found, started, judged and recorded one way.
-- p_busy: the last run from before the call is unfinished (the policy is
-- judged once per call, against it); p_latest: the call's newest tick (the
-- one buffer_one keeps); p_manual: null for the ticker, else trigger or
-- backfill; p_try: a start the engine refuses is returned as outcome
-- refused with its error (the ticker's batch goes on) instead of raised.
-- Returns the schedule's row with its last run, last tick and buffered tick
-- as they are after the tick (the caller stores them), busy after the tick
-- (a cancel_previous start ends it), the outcome (existing: the tick has its
-- run already, never started, counted or judged again; started; buffered;
-- skipped; refused) and the tick's run.
create or replace function trellis._schedule_take_tick(p_row trellis.schedules, p_tick timestamptz, p_overlap text,
                                                       p_busy boolean, p_latest boolean, p_manual text, p_try boolean,
                                                       out row_after trellis.schedules, out busy boolean, out outcome text,
                                                       out run_id uuid, out error text)
language plpgsql as $$
declare
  v_try record;
begin
  row_after := p_row;
  busy := p_busy;
  run_id := trellis._schedule_tick_run(p_row, p_tick);
  if run_id is not null then
    outcome := 'existing';
  elsif not p_busy or p_overlap = 'cancel_previous' then
    if p_try then
      v_try := trellis._schedule_try_start(p_row, p_tick, p_manual);
      if v_try.error is not null then
        outcome := 'refused';
        error := v_try.error;
        return;
      end if;
      run_id := v_try.run_id;
    else
      run_id := trellis._schedule_start(p_row, p_tick, p_manual);
    end if;
    -- Superseded only once the new run is there.
    if p_busy then
      perform trellis.run_cancel(p_row.last_run_id, format('schedule %s: superseded by the %s of %s', p_row.name,
                                                            coalesce(p_manual || ' of tick', 'tick'), p_tick));
      busy := false;
    end if;
    outcome := 'started';
  elsif p_row.buffered_at = p_tick then
    -- Waiting in the buffer already (a backfill that reaches it while the
    -- last run goes on): the ticker starts it when that run ends; counted
    -- then, not now, and not skipped.
    outcome := 'buffered';
    return;
  elsif p_overlap = 'buffer_one' and p_row.buffered_at is null and p_latest then
    -- The latest tick waits for the last run (the ticker starts it as the
    -- call would: a manual one on a paused schedule too); the ones before
    -- it are skipped.
    row_after.buffered_at := p_tick;
    row_after.buffered_manual := p_manual;
    outcome := 'buffered';
    return;
  else
    outcome := 'skipped';
    return;
  end if;
  -- The schedule's last run stays the run of its newest tick (a backfill of older ones leaves it).
  if row_after.last_tick_at is null or p_tick >= row_after.last_tick_at then
    row_after.last_run_id := run_id;
    row_after.last_tick_at := p_tick;
  end if;
end $$;
comment on function trellis._schedule_take_tick(trellis.schedules, timestamptz, text, boolean, boolean, text, boolean) is
  'One tick of schedule p_row by overlap policy p_overlap (p_busy: its last run from before the call is unfinished; p_latest: the call''s newest tick; p_manual: trigger/backfill or null; p_try: a refused start is outcome refused, not raised): existing, started, buffered, skipped or refused, with the row''s last run, last tick and buffered tick after it.';

create or replace function trellis.schedule_set(p_name text, p_spec jsonb)
returns trellis.schedules language plpgsql as $$
declare
  v_now    timestamptz := trellis.now();
  v_bad    text;
  v_input  jsonb := coalesce(p_spec->'input', 'null');
  v_over   text := coalesce(p_spec->>'overlap', 'skip');
  v_catch  integer := 0;
  v_jitter interval := '0';
  v_limit  interval;
  v_ends   timestamptz;
  v_next   timestamptz;
  v_row    trellis.schedules;
begin
  perform trellis._check_name(p_name, 'schedule');
  if p_spec is null or jsonb_typeof(p_spec) <> 'object' then
    perform trellis._raise('TR001', 'schedule_set spec must be a JSON object');
  end if;
  select string_agg(k, ', ') into v_bad from jsonb_object_keys(p_spec) as k
   where k not in ('cron', 'time_zone', 'workflow', 'input', 'overlap', 'catch_up', 'jitter', 'ends_at', 'paused', 'next_at',
                   'time_limit');
  if v_bad is not null then
    perform trellis._raise('TR001', format('unknown schedule option(s): %s', left(v_bad, 200)));
  end if;
  perform trellis._check_cron(p_spec->>'cron');
  perform trellis._check_time_zone(coalesce(p_spec->>'time_zone', 'UTC'));
  perform trellis._check_name(p_spec->>'workflow', 'workflow');
  perform trellis._check_payload(v_input, 'input');
  v_bad := trellis.workflow_input_error(p_spec->>'workflow', v_input);
  if v_bad is not null then
    perform trellis._raise('TR001', format('input of schedule %s does not match the schema of %s: %s',
                                           p_name, p_spec->>'workflow', left(v_bad, 200)));
  end if;
  if v_over not in ('skip', 'allow', 'buffer_one', 'cancel_previous') then
    perform trellis._raise('TR001', format('overlap must be skip, allow, buffer_one or cancel_previous, not %s', quote_literal(left(v_over, 40))));
  end if;
  if p_spec ? 'catch_up' then
    v_catch := trellis._json_int(p_spec->'catch_up', 0, 1000);
    if v_catch is null then
      perform trellis._raise('TR001', 'catch_up must be an integer from 0 (skip missed ticks) to 1000');
    end if;
  end if;
  -- An interval as text with its unit: a bare number is seconds to PostgreSQL
  -- and milliseconds to TypeScript (as time_limit and a queue's rate.period).
  if p_spec ? 'jitter' and jsonb_typeof(p_spec->'jitter') <> 'null'
     and (jsonb_typeof(p_spec->'jitter') <> 'string' or trellis._bare_number(p_spec->>'jitter')) then
    perform trellis._raise('TR001', format('jitter must be an interval with a unit (''30 seconds''), not %s: a bare number is seconds in PostgreSQL and milliseconds in TypeScript',
                                           left(p_spec->>'jitter', 40)));
  end if;
  begin
    v_jitter := coalesce((p_spec->>'jitter')::interval, '0');
    v_ends := (p_spec->>'ends_at')::timestamptz;
    v_next := (p_spec->>'next_at')::timestamptz;
  exception when others then
    perform trellis._raise('TR001', 'jitter must be an interval, ends_at and next_at timestamps');
  end;
  if v_jitter < interval '0' or v_jitter > interval '1 day' then
    perform trellis._raise('TR001', 'jitter must be from 0 to 1 day');
  end if;
  -- The ticker computes with them as JavaScript dates: 'infinity' (which
  -- node-pg reads as a number) or a time past JavaScript's last one stopped
  -- every schedule's ticks.
  if not isfinite(v_ends) or not isfinite(v_next) or v_ends > '275760-09-13T00:00:00Z' or v_next > '275760-09-13T00:00:00Z' then
    perform trellis._raise('TR001', 'ends_at and next_at must be finite timestamps before 275760-09-13 (the last one JavaScript holds)');
  end if;
  -- Each tick's run's deadline is its start plus this (run_start's time_limit, decision 0031).
  v_limit := trellis._time_limit(p_spec->'time_limit');
  if p_spec ? 'paused' and jsonb_typeof(p_spec->'paused') <> 'boolean' then
    perform trellis._raise('TR001', 'paused must be true or false');
  end if;
  -- Stored to the millisecond: the ticker hands next_at and next_from back
  -- as JavaScript dates to show what it read.
  v_next := date_trunc('milliseconds', v_next);
  if v_next is not null and v_next <= v_now then
    v_next := null; -- computed on a client with a clock behind: the ticker computes it
  end if;

  insert into trellis.schedules as s (name, cron, time_zone, workflow, input, overlap, catch_up, jitter, time_limit, ends_at,
                                      paused, next_at, next_from, created_at, updated_at)
  values (p_name, p_spec->>'cron', coalesce(p_spec->>'time_zone', 'UTC'), p_spec->>'workflow', v_input, v_over,
          v_catch, v_jitter, v_limit, v_ends, coalesce((p_spec->>'paused')::boolean, false), v_next,
          case when v_next is null then date_trunc('milliseconds', v_now) end, v_now, v_now)
  on conflict (name) do update
    set cron = excluded.cron, time_zone = excluded.time_zone, workflow = excluded.workflow, input = excluded.input,
        overlap = excluded.overlap, catch_up = excluded.catch_up, jitter = excluded.jitter,
        time_limit = excluded.time_limit, ends_at = excluded.ends_at,
        paused = case when p_spec ? 'paused' then excluded.paused else s.paused end,
        -- Set again with the same cron and time zone while it stays active (an app that sets its
        -- schedules at every boot): its next tick stays, a tick already due included, so the
        -- ticker fires it (by the catch-up policy). Computed afresh from now, a due tick was
        -- dropped, neither run nor counted. A paused schedule resumed here fires from now, as
        -- schedule_resume; an ended one (neither set) starts again.
        next_at = case when s.cron = excluded.cron and s.time_zone = excluded.time_zone and not s.paused
                            and not (case when p_spec ? 'paused' then excluded.paused else s.paused end)
                            and (s.next_at is not null or s.next_from is not null)
                       then s.next_at else excluded.next_at end,
        next_from = case when s.cron = excluded.cron and s.time_zone = excluded.time_zone and not s.paused
                              and not (case when p_spec ? 'paused' then excluded.paused else s.paused end)
                              and (s.next_at is not null or s.next_from is not null)
                         then s.next_from else excluded.next_from end,
        -- Paused here: its buffered tick (not a manual one) is skipped, as schedule_pause does.
        buffered_at = case when not s.paused and (case when p_spec ? 'paused' then excluded.paused else s.paused end)
                                and s.buffered_manual is null then null else s.buffered_at end,
        skipped = s.skipped + (not s.paused and (case when p_spec ? 'paused' then excluded.paused else s.paused end)
                               and s.buffered_at is not null and s.buffered_manual is null)::integer,
        last_error = null, updated_at = excluded.updated_at
  returning * into v_row;
  return v_row;
end $$;
comment on function trellis.schedule_set(text, jsonb) is
  'Create or replace schedule p_name. Spec: cron (5 fields, or 6 with seconds first), time_zone (IANA, default UTC), workflow, input (checked against the workflow''s input shape), overlap (skip, allow, buffer_one, cancel_previous; default skip), catch_up (0: of ticks missed during downtime only the latest runs; N: up to N missed ticks run too), jitter (interval, up to 1 day), time_limit (interval: each tick''s run is cancelled if it has not finished this long after its start, decision 0031), ends_at, paused, next_at (the next tick, computed by the TypeScript client; without it the ticker computes it). TR001 bad spec or input, TR002 unknown workflow. Returns the row.';

create or replace function trellis._schedule_lock(p_name text)
returns trellis.schedules language plpgsql as $$
declare
  v_row trellis.schedules;
begin
  perform trellis._check_name(p_name, 'schedule');
  select * into v_row from trellis.schedules where name = p_name for update;
  if not found then
    perform trellis._raise('TR002', format('schedule %L does not exist', p_name));
  end if;
  return v_row;
end $$;
comment on function trellis._schedule_lock(text) is
  'Lock schedule p_name FOR UPDATE and return it; TR002 if it does not exist.';

create or replace function trellis.schedule_pause(p_name text)
returns trellis.schedules language plpgsql as $$
declare
  v_row trellis.schedules;
begin
  perform trellis._schedule_lock(p_name);
  -- A tick the schedule buffered (buffer_one) is one of its ticks: skipped
  -- too, not started when it is resumed. A buffered manual tick stays: the
  -- operator asked for it, and manual ticks run on a paused schedule.
  update trellis.schedules
     set paused = true, buffered_at = case when buffered_manual is null then null else buffered_at end,
         skipped = skipped + (buffered_at is not null and buffered_manual is null and not paused)::integer, updated_at = trellis.now()
   where name = p_name returning * into v_row;
  return v_row;
end $$;
comment on function trellis.schedule_pause(text) is
  'Stop schedule p_name from firing until schedule_resume (ticks while paused are skipped, a tick buffered by buffer_one too; a buffered manual tick stays). TR002 unknown.';

create or replace function trellis.schedule_resume(p_name text)
returns trellis.schedules language plpgsql as $$
declare
  v_row trellis.schedules;
begin
  v_row := trellis._schedule_lock(p_name);
  if not v_row.paused then
    return v_row;
  end if;
  update trellis.schedules
     set paused = false, next_at = null, next_from = date_trunc('milliseconds', trellis.now()), updated_at = trellis.now()
   where name = p_name returning * into v_row;
  return v_row;
end $$;
comment on function trellis.schedule_resume(text) is
  'Let paused schedule p_name fire again from its next tick after now (the ticker computes it). TR002 unknown.';

create or replace function trellis.schedule_delete(p_name text)
returns boolean language plpgsql as $$
begin
  perform trellis._check_name(p_name, 'schedule');
  delete from trellis.schedules where name = p_name;
  return found;
end $$;
comment on function trellis.schedule_delete(text) is
  'Delete schedule p_name (runs it started are kept). False if it did not exist.';

-- The ticker's read: starts the buffered ticks whose previous run has
-- finished, then returns up to p_limit schedules with a tick due or a next
-- tick to compute.
create or replace function trellis.schedule_tick(p_token bigint, p_limit integer)
returns table (name text, cron text, time_zone text, next_at timestamptz, next_from timestamptz,
               catch_up integer, ends_at timestamptz, now timestamptz)
language plpgsql as $$
declare
  v_now  timestamptz := trellis.now();
  v_row  trellis.schedules;
  v_take record;
  v_tick timestamptz;
begin
  perform trellis.role_check('trellis.schedules', p_token);
  if p_limit is null or p_limit < 0 then
    perform trellis._raise('TR001', 'schedule_tick limit must be zero or more');
  end if;
  -- A manual tick buffered (buffered_manual) is started on a paused
  -- schedule too: the operator asked for it, as for the manual tick itself.
  for v_row in
    select * from trellis.schedules s
     where s.buffered_at is not null and (not s.paused or s.buffered_manual is not null)
       and not trellis._schedule_active(s.last_run_id)
     order by s.name for update
  loop
    -- Its previous run has ended: started now (no policy to judge), unless
    -- it has its run already (a backfill got to it: not counted again).
    -- Started first, then stored: no volatile function inside an UPDATE
    -- (Citus refuses one in an UPDATE of a reference table, decision 0024).
    -- Out of the buffer first: taken from there, it is not the tick waiting in it.
    v_tick := v_row.buffered_at;
    v_row.buffered_at := null;
    v_take := trellis._schedule_take_tick(v_row, v_tick, v_row.overlap, false, true, v_row.buffered_manual, true);
    -- Refused: the buffered tick is dropped (counted as skipped), the reason kept.
    update trellis.schedules
       set buffered_at = null, buffered_manual = null, last_run_id = (v_take.row_after).last_run_id,
           last_tick_at = (v_take.row_after).last_tick_at,
           fired = fired + (v_take.outcome = 'started')::integer, skipped = skipped + (v_take.outcome = 'refused')::integer,
           last_error = case v_take.outcome when 'refused' then v_take.error when 'started' then null else last_error end,
           updated_at = v_now
     where schedules.name = v_row.name;
  end loop;
  return query
  select * from (
    (select s.name, s.cron, s.time_zone, s.next_at, s.next_from, s.catch_up, s.ends_at, v_now
       from trellis.schedules s
      where not s.paused and s.next_at <= v_now
      order by s.next_at limit p_limit)
    union all
    (select s.name, s.cron, s.time_zone, s.next_at, s.next_from, s.catch_up, s.ends_at, v_now
       from trellis.schedules s
      where not s.paused and s.next_at is null and s.next_from is not null
        -- A cron the ticker could not read stops its schedule (until it is
        -- set again); a refused tick does not.
        and (s.last_error is null or s.last_error like 'tick % not started: %')
      limit p_limit)) due
  limit p_limit;
end $$;
comment on function trellis.schedule_tick(bigint, integer) is
  'The schedule ticker''s read, fenced by its token of role trellis.schedules: starts buffered ticks whose previous run finished, then returns up to p_limit schedules whose tick is due (next_at <= now) or whose next tick is to be computed (from next_from), with the engine time.';

-- schedule_fire's input read before anything is written: TR001 for what
-- the loop below could not read (a fire that is not an object, a name that
-- is not a string, a timestamp or count PostgreSQL cannot parse).
create or replace function trellis._schedule_fires_check(p_fires jsonb)
returns void language plpgsql as $$
declare
  v_bad text;
begin
  if jsonb_typeof(p_fires) is distinct from 'array' then
    perform trellis._raise('TR001', 'schedule_fire expects a JSON array of fires');
  end if;
  begin
    -- Every cast is evaluated for every fire (num_nulls takes all its
    -- arguments), so a value the loop would choke on is found here.
    select x.bad into v_bad
      from (select case when jsonb_typeof(f) <> 'object' or jsonb_typeof(f->'name') is distinct from 'string'
                          then 'each fire needs a string name'
                        when jsonb_typeof(f->'ticks') not in ('array', 'null')
                          then 'ticks must be an array of timestamps'
                        when num_nulls((f->>'next_at')::timestamptz, (f->>'next_from')::timestamptz, (f->>'next')::timestamptz,
                                       array(select (e #>> '{}')::timestamptz from jsonb_array_elements(f->'ticks') e)) < 0
                          then 'unreachable'
                        when (f->>'skipped')::integer < 0
                          then 'skipped must be zero or more' end as bad
              from jsonb_array_elements(p_fires) f) x
     where x.bad is not null
     limit 1;
  exception when data_exception then
    v_bad := left(sqlerrm, 200);
  end;
  if v_bad is not null then
    perform trellis._raise('TR001', format('schedule_fire: malformed fire: %s', v_bad));
  end if;
end $$;
comment on function trellis._schedule_fires_check(jsonb) is
  'Raise TR001 for schedule_fire input it could not read: not an array of fires with string names, unparseable timestamps, counts or ticks.';

-- p_fires: [{name, next_at (as read), next_from (as read), ticks: [timestamps
-- to start, oldest first], skipped: count of ticks passed over, next: the new
-- next_at or null (ended), error: text (the cron could not be parsed)}].
--
-- The overlap policy is judged once per fire, against the schedule's last
-- run from before it: the ticks of one fire (the latest due tick and the
-- missed ones catch_up adds) do not overlap one another. Judged tick by
-- tick, each catch-up tick would find the previous one's run unfinished,
-- and skip would run only the oldest tick, buffer_one would keep the oldest
-- and skip the latest, cancel_previous would cancel each in turn.
create or replace function trellis.schedule_fire(p_token bigint, p_fires jsonb)
returns integer language plpgsql as $$
declare
  v_now     timestamptz := trellis.now();
  v_started integer := 0;
  v_fire    jsonb;
  v_row     trellis.schedules;
  v_ticks   timestamptz[];
  v_last    integer;
  v_busy    boolean;
  v_skipped integer;
  v_fired   integer;
  v_take    record;
  v_error   text;
begin
  -- The input first, before the fence reads a table: its exception block
  -- is a savepoint, which on Citus must not follow a read of a reference
  -- table in the same transaction (see workflow_register).
  perform trellis._schedule_fires_check(p_fires);
  perform trellis.role_check('trellis.schedules', p_token);
  for v_fire in select f from jsonb_array_elements(p_fires) f order by f->>'name' loop
    select * into v_row from trellis.schedules where name = v_fire->>'name' for update;
    -- Gone, paused, or moved on since the ticker read it: nothing to do.
    continue when not found or v_row.paused
      or v_row.next_at is distinct from (v_fire->>'next_at')::timestamptz
      or v_row.next_from is distinct from (v_fire->>'next_from')::timestamptz;
    v_skipped := coalesce((v_fire->>'skipped')::integer, 0);
    v_fired := 0;
    v_error := left(v_fire->>'error', 500);
    v_ticks := array(select t from (select (e #>> '{}')::timestamptz as t
                                      from jsonb_array_elements(coalesce(v_fire->'ticks', '[]')) e) e
                      where v_row.ends_at is null or t <= v_row.ends_at order by t);
    v_last := coalesce(array_length(v_ticks, 1), 0);
    -- Whether the last run from before this fire is unfinished (allow never minds).
    v_busy := v_row.overlap <> 'allow' and trellis._schedule_active(v_row.last_run_id);
    -- One update per schedule at the end: the last run and buffered tick are kept in v_row.
    for i in 1 .. v_last loop
      v_take := trellis._schedule_take_tick(v_row, v_ticks[i], v_row.overlap, v_busy, i = v_last, null, true);
      v_row := v_take.row_after;
      v_busy := v_take.busy;
      case v_take.outcome
        when 'started' then v_fired := v_fired + 1;
        when 'skipped' then v_skipped := v_skipped + 1;
        -- Refused for this schedule alone: the tick is skipped and the
        -- reason kept in last_error; the ticker goes on to the next tick
        -- (and a run cancel_previous would have superseded runs on).
        when 'refused' then v_skipped := v_skipped + 1; v_error := v_take.error;
        else null; -- existing (a backfill got to it first) or buffered: not counted
      end case;
    end loop;
    update trellis.schedules
       set next_at = (v_fire->>'next')::timestamptz, next_from = null, last_run_id = v_row.last_run_id,
           last_tick_at = v_row.last_tick_at, buffered_at = v_row.buffered_at, buffered_manual = v_row.buffered_manual, fired = fired + v_fired,
           skipped = skipped + v_skipped, last_error = v_error, updated_at = v_now
     where name = v_row.name;
    v_started := v_started + v_fired;
  end loop;
  return v_started;
end $$;
comment on function trellis.schedule_fire(bigint, jsonb) is
  'The schedule ticker''s write, fenced by its token of role trellis.schedules: for each schedule still as the ticker read it, start a run per tick given (each under the tick''s key, so a repeated fire starts nothing new), by the overlap policy judged once against the last run from before the fire (the ticks of one catch-up do not overlap one another): skip (all skipped while it is unfinished), allow, buffer_one (the latest tick buffered, the rest skipped), cancel_previous (it is cancelled, every tick starts), then store the next tick the ticker computed (null: ended) or the error it met. Returns the runs started.';

-- Manual ticks (decision 0045): backfill a schedule's past ticks, or
-- trigger one now. Each tick starts its run under the same key as the
-- ticker's (schedule:<name>:<tick>), so a tick the schedule already ran,
-- or an earlier backfill, is found ('existing') and never started twice;
-- a tick backfilled before the ticker gets to it is the ticker's run too.
-- The overlap policy (the schedule's, or p_overlap) is judged once,
-- against the last run from before the call, as a catch-up is. Manual
-- runs are due at once (no jitter) and carry metadata manual:
-- 'backfill' or 'trigger'. A start the engine refuses (the stored input
-- no longer matches the workflow, the workflow gone) is the caller's
-- error: nothing is started or changed. Paused schedules take them too.
create or replace function trellis._schedule_manual(p_name text, p_ticks timestamptz[], p_overlap text, p_how text)
returns table (tick timestamptz, run_id uuid, outcome text) language plpgsql as $$
declare
  v_now     timestamptz := trellis.now();
  v_row     trellis.schedules;
  v_overlap text;
  v_ticks   timestamptz[];
  v_last    integer;
  v_busy    boolean;
  v_take    record;
  v_fired   integer := 0;
  v_skipped integer := 0;
begin
  perform trellis._check_name(p_name, 'schedule');
  if p_overlap is not null and p_overlap not in ('skip', 'allow', 'buffer_one', 'cancel_previous') then
    perform trellis._raise('TR001', format('overlap must be skip, allow, buffer_one or cancel_previous, not %s', quote_literal(left(p_overlap, 40))));
  end if;
  if p_ticks is null or cardinality(p_ticks) = 0 or cardinality(p_ticks) > 1000 then
    perform trellis._raise('TR001', 'a backfill takes 1 to 1000 ticks');
  end if;
  if array_position(p_ticks, null) is not null then
    perform trellis._raise('TR001', 'a backfill''s ticks must not be null');
  end if;
  -- To the millisecond, as the ticker's: the key of a tick is the same from either.
  v_ticks := array(select distinct date_trunc('milliseconds', t) from unnest(p_ticks) t order by 1);
  if not isfinite(v_ticks[1]) or v_ticks[cardinality(v_ticks)] > v_now then
    perform trellis._raise('TR001', format('a backfill''s ticks must have come (at or before %s): a tick to come is the schedule''s own',
                                           to_char(v_now at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')));
  end if;
  v_row := trellis._schedule_lock(p_name);
  -- As the ticker drops them: a tick after the schedule's end is not its.
  if v_row.ends_at is not null and v_ticks[cardinality(v_ticks)] > v_row.ends_at then
    perform trellis._raise('TR004', format('schedule %s ended at %s: a tick after its end is not its', v_row.name,
                                           to_char(v_row.ends_at at time zone 'UTC', 'YYYY-MM-DD"T"HH24:MI:SS.MS"Z"')));
  end if;
  v_overlap := coalesce(p_overlap, v_row.overlap);
  v_last := cardinality(v_ticks);
  v_busy := v_overlap <> 'allow' and trellis._schedule_active(v_row.last_run_id);
  for i in 1 .. v_last loop
    tick := v_ticks[i];
    v_take := trellis._schedule_take_tick(v_row, tick, v_overlap, v_busy, i = v_last, p_how, false);
    v_row := v_take.row_after;
    v_busy := v_take.busy;
    run_id := v_take.run_id;
    outcome := v_take.outcome;
    if outcome = 'started' then
      v_fired := v_fired + 1;
    elsif outcome = 'skipped' then
      v_skipped := v_skipped + 1;
    end if;
    return next;
  end loop;
  update trellis.schedules
     set last_run_id = v_row.last_run_id, last_tick_at = v_row.last_tick_at, buffered_at = v_row.buffered_at,
         buffered_manual = v_row.buffered_manual, fired = fired + v_fired, skipped = skipped + v_skipped, updated_at = v_now
   where name = v_row.name;
end $$;
comment on function trellis._schedule_manual(text, timestamptz[], text, text) is
  'schedule_backfill and schedule_trigger: start the runs of schedule p_name''s ticks p_ticks (p_how: backfill or trigger), as the ticker would, under their keys, by the overlap policy judged once.';

create or replace function trellis.schedule_backfill(p_name text, p_ticks timestamptz[], p_overlap text default null)
returns table (tick timestamptz, run_id uuid, outcome text) language sql as $$
  select * from trellis._schedule_manual(p_name, p_ticks, p_overlap, 'backfill')
$$;
comment on function trellis.schedule_backfill(text, timestamptz[], text) is
  'Start the runs of schedule p_name''s past ticks p_ticks (1-1000 times at or before now; the TypeScript client computes them from the cron for a range), oldest first, each under its tick''s key: a tick already run (by the ticker or an earlier backfill) is returned as existing, never started twice. The overlap policy (p_overlap, default the schedule''s) is judged once against the schedule''s last run from before the call: started, buffered (buffer_one: the latest tick, started by the ticker when the last run ends), or skipped. Runs are due at once, with metadata manual: backfill. Works on a paused schedule. TR001 bad ticks or overlap, TR002 unknown schedule; a start the engine refuses fails the call, which then changes nothing.';

create or replace function trellis.schedule_trigger(p_name text, p_overlap text default null)
returns table (tick timestamptz, run_id uuid, outcome text) language sql as $$
  select * from trellis._schedule_manual(p_name, array[date_trunc('milliseconds', trellis.now())], p_overlap, 'trigger')
$$;
comment on function trellis.schedule_trigger(text, text) is
  'Start a run of schedule p_name now, as a tick at the current time would (its workflow, input and time limit; metadata manual: trigger), by the overlap policy (p_overlap, default the schedule''s) against its last run: started, buffered or skipped. Works on a paused schedule; the schedule''s own ticks go on as before. TR001 bad overlap, TR002 unknown schedule.';

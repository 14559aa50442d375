-- 150_transitions: the one place that changes a run's status.
-- Owns: _run_move (every status change of trellis.runs), _outbox_on. A new
-- run's first status and its started event are _run_start's (sql/200_runs.sql).
-- Touches: trellis.runs (update), trellis.events (insert), trellis.hook_deliveries
-- (insert), trellis.run_transitions and trellis.workflows (read).
-- Lock order: none of its own. Every caller has locked the runs it moves
-- (in id order, with the rest of its set) before it calls _run_move.
--
-- A move names the run, its target status and the event (the kind of the
-- transition). _run_move checks every (current status, target, event)
-- against trellis.run_transitions (the table the diagram in
-- docs/architecture.md shows) and raises TR004 for any that is not there,
-- writing nothing. It sets what belongs to the target state: the lease
-- (only running runs carry one; a move to running brings the new token and
-- counts the attempt), started_at on the first run, finished_at on an end
-- (and clears it otherwise), updated_at; and the fields the move carries
-- (run_at, output, error, input, execution, attempt, failures, the pause
-- and cancel requests; an end clears a pause request, which nothing would
-- carry out). In the same statement it appends one event per
-- recorded transition to trellis.events (unless the events setting is off)
-- and one hook delivery per lifecycle hook the run's version declares.

-- Whether the outbox is on (setting 'events', default on). PL/pgSQL so its
-- plan is cached; callers read it once per statement.
create or replace function trellis._outbox_on()
returns boolean language plpgsql stable as $$
begin
  return coalesce((select (value #>> '{}')::boolean from trellis.settings where key = 'events'), true);
end $$;
comment on function trellis._outbox_on() is
  'Whether run transitions and step results append events to trellis.events (setting_set(''events'', ''false'') turns it off).';

-- The hook a transition to p_status delivers, if any.
create or replace function trellis._hook_for(p_status text)
returns text language sql immutable as $$
  select case p_status when 'completed' then 'onComplete' when 'failed' then 'onFail'
                       when 'cancelled' then 'onCancel' when 'paused' then 'onPause' end
$$;
comment on function trellis._hook_for(text) is
  'The lifecycle hook (onComplete, onFail, onCancel, onPause) a run''s move to status p_status delivers; null for none.';

create or replace function trellis._run_move(p_moves trellis.run_move[])
returns setof trellis.runs language plpgsql as $$
declare
  v_now    timestamptz := trellis.now();
  v_outbox boolean := trellis._outbox_on();
  v_xid    xid8;
  -- Whether any version declares hooks or event payloads: if none does,
  -- the moves need no look-up of their version (the hot path).
  v_declared boolean := exists (select 1 from trellis.workflows w where cardinality(w.hooks) > 0 or w.event_payloads);
  v_moved  integer;
  v_bad    text;
begin
  if cardinality(p_moves) is null or cardinality(p_moves) = 0 then
    return;
  end if;
  -- The transaction's id for its events, read here and not by the column's
  -- default: on a distributed schema a statement pushed down to the shards
  -- would evaluate the default on a worker node (decision 0030).
  v_xid := pg_catalog.pg_current_xact_id();
  -- With no version declaring hooks or event payloads (v_declared), the
  -- statement has no hook CTEs: a single-run move (a start's claim, the
  -- hand-off, a one-run checkpoint) pays for every table and index a
  -- statement names when it starts, used or not (decision 0027).
  if not v_declared then
    return query
    with moved as (
      update trellis.runs r
         set status = m.to_status,
             run_at = coalesce(m.run_at, r.run_at),
             output = case when m.set_output then m.output else r.output end,
             error = case when m.set_error then m.error else r.error end,
             input = coalesce(m.input, r.input),
             execution = coalesce(m.execution, r.execution),
             attempt = coalesce(m.attempt, case when m.to_status = 'running' then r.attempt + 1 else r.attempt end),
             failures = coalesce(m.failures, r.failures),
             pause_requested_at = case when m.clear_pause or m.to_status in ('completed', 'failed', 'cancelled') then null else r.pause_requested_at end,
             cancel_requested_at = case when m.request_cancel then coalesce(r.cancel_requested_at, v_now)
                                        else r.cancel_requested_at end,
             lease_token = case when m.to_status = 'running' then m.lease_token end,
             lease_owner = case when m.to_status = 'running' then m.lease_owner end,
             lease_expires_at = case when m.to_status = 'running' then m.lease_expires_at end,
             started_at = case when m.to_status = 'running' then coalesce(r.started_at, v_now) else r.started_at end,
             finished_at = case when m.to_status in ('completed', 'failed', 'cancelled') then v_now end,
             updated_at = v_now
        from unnest(p_moves) m
        join trellis.run_transitions t on t.to_status = m.to_status and t.event = m.event
       where r.id = m.run and t.from_status = r.status
      returning r as run, t.from_status, t.event, t.recorded, m.body),
    events as (
      insert into trellis.events (bucket, run_id, workflow, version, key, kind, attempt, body, created_at, xid)
      select (x.run).bucket, (x.run).id, (x.run).workflow, (x.run).version, (x.run).key, x.event, (x.run).attempt,
             jsonb_build_object('from', x.from_status, 'to', (x.run).status, 'execution', (x.run).execution)
               || coalesce(x.body, '{}'),
             v_now, v_xid
        from moved x
       where v_outbox and x.recorded)
    select (x.run).* from moved x;
  else
    return query
    with moved as (
      update trellis.runs r
         set status = m.to_status,
             run_at = coalesce(m.run_at, r.run_at),
             output = case when m.set_output then m.output else r.output end,
             error = case when m.set_error then m.error else r.error end,
             input = coalesce(m.input, r.input),
             execution = coalesce(m.execution, r.execution),
             attempt = coalesce(m.attempt, case when m.to_status = 'running' then r.attempt + 1 else r.attempt end),
             failures = coalesce(m.failures, r.failures),
             pause_requested_at = case when m.clear_pause or m.to_status in ('completed', 'failed', 'cancelled') then null else r.pause_requested_at end,
             cancel_requested_at = case when m.request_cancel then coalesce(r.cancel_requested_at, v_now)
                                        else r.cancel_requested_at end,
             lease_token = case when m.to_status = 'running' then m.lease_token end,
             lease_owner = case when m.to_status = 'running' then m.lease_owner end,
             lease_expires_at = case when m.to_status = 'running' then m.lease_expires_at end,
             started_at = case when m.to_status = 'running' then coalesce(r.started_at, v_now) else r.started_at end,
             finished_at = case when m.to_status in ('completed', 'failed', 'cancelled') then v_now end,
             updated_at = v_now
        from unnest(p_moves) m
        join trellis.run_transitions t on t.to_status = m.to_status and t.event = m.event
       where r.id = m.run and t.from_status = r.status
      returning r as run, t.from_status, t.event, t.recorded, m.body),
    hooked as (
      select x.*, w.hooks, w.event_payloads from moved x
        join trellis.workflows w on w.name = (x.run).workflow and w.version = (x.run).version
       where v_declared and (x.run).status in ('completed', 'failed', 'cancelled', 'paused')
         and (cardinality(w.hooks) > 0 or w.event_payloads)),
    events as (
      insert into trellis.events (bucket, run_id, workflow, version, key, kind, attempt, body, created_at, xid)
      select (x.run).bucket, (x.run).id, (x.run).workflow, (x.run).version, (x.run).key, x.event, (x.run).attempt,
             jsonb_build_object('from', x.from_status, 'to', (x.run).status, 'execution', (x.run).execution)
               || coalesce(x.body, '{}')
               || case when not coalesce(h.event_payloads, false) then '{}'::jsonb
                       when (x.run).status = 'completed' then jsonb_build_object('output', (x.run).output)
                       when (x.run).error is not null then jsonb_build_object('error', (x.run).error)
                       else '{}'::jsonb end,
             v_now, v_xid
        from moved x left join hooked h on (h.run).id = (x.run).id
       where v_outbox and x.recorded),
    hooks as (
      insert into trellis.hook_deliveries (bucket, run_id, workflow, version, hook, event, run_at, created_at, updated_at,
                                           at_event)
      select (h.run).bucket, (h.run).id, (h.run).workflow, (h.run).version, trellis._hook_for((h.run).status), h.event,
             v_now, v_now, v_now,
             -- What the hook is about, as this transition left it (the run may move on before it runs).
             jsonb_build_object('status', (h.run).status, 'error', (h.run).error)
        from hooked h
       where trellis._hook_for((h.run).status) = any (h.hooks))
    select (x.run).* from moved x;
  end if;
  get diagnostics v_moved = row_count;
  if v_moved < cardinality(p_moves) then
    select format('run %s: %s -> %s (%s)', m.run, coalesce(r.status, 'missing'), m.to_status, m.event) into v_bad
      from unnest(p_moves) m left join trellis.runs r on r.id = m.run
     where r.id is null or r.updated_at <> v_now or r.status <> m.to_status
     limit 1;
    perform trellis._raise('TR004', format('illegal run transition %s: not in trellis.run_transitions',
                                           coalesce(v_bad, '(a run moved twice in one call)')));
  end if;
end $$;
comment on function trellis._run_move(trellis.run_move[]) is
  'The one writer of trellis.runs.status: apply the moves (each run once; the caller holds their locks), each checked against trellis.run_transitions (TR004 for a pair not there, nothing written), with the timestamps and lease of the target state; append their events (trellis.events, unless the events setting is off) and the lifecycle hook deliveries their versions declare. Returns the moved runs.';

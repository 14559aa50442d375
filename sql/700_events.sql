-- 700_events: reading the outbox, durable consumers, and purging consumed events.
-- Owns: events_read, event_consumer_create, event_consumer_read,
-- event_consumer_ack, event_consumer_drop, events_purge (_event_cursor, _event_filter,
-- _events_after, _events_horizon).
-- Touches: trellis.events (read, delete), trellis.event_consumers.
-- Lock order: a consumer row (ack, drop); events_purge deletes events only,
-- in (xid, id) order, and takes no run lock.
--
-- Why a cursor never skips an event (decision 0019): every event stores the
-- id of the transaction that wrote it (xid8, pg_current_xact_id()), and a
-- read returns only events whose transaction id is below the oldest
-- transaction still running (pg_snapshot_xmin of the reader's snapshot),
-- ordered by (xid, id). Every transaction below that horizon has ended, so
-- its events are all visible or were rolled back, and no transaction that
-- commits later can write an event below it (new transactions get larger
-- ids). So once the cursor passes (xid, id), nothing can appear before it. A
-- long transaction holds the horizon back (its events and every later one
-- wait for it), never loses an event.
--
-- A cursor is the text '<xid>:<id>' of the last event read; null (or '') is
-- the start of the outbox.

create or replace function trellis._event_cursor(p_cursor text, out xid xid8, out id bigint)
language plpgsql stable as $$
begin
  if p_cursor is null or p_cursor = '' then
    xid := '0'::xid8;
    id := 0;
    return;
  end if;
  if p_cursor !~ '^[0-9]{1,19}:[0-9]{1,18}$' then
    perform trellis._raise('TR001', format('event cursor %s is not <xid>:<id>', quote_literal(left(p_cursor, 40))));
  end if;
  xid := split_part(p_cursor, ':', 1)::xid8;
  id := split_part(p_cursor, ':', 2)::bigint;
  -- A cursor at or past the snapshot's xmax (every transaction from there on
  -- is running or yet to start) was never handed out.
  if xid >= pg_snapshot_xmax(pg_current_snapshot()) then
    perform trellis._raise('TR001', format('event cursor %s is from the future (no transaction that far has ended yet)', p_cursor));
  end if;
end $$;
comment on function trellis._event_cursor(text) is
  'Parse an event cursor ''<xid>:<id>'' (null or empty: the start); TR001 for a malformed cursor or one from the future.';

-- The filter: {"workflows": [...], "kinds": [...], "run_id": "..."}, each optional.
create or replace function trellis._event_filter(p_filter jsonb, out workflows text[], out kinds text[], out run_id uuid)
language plpgsql immutable as $$
declare
  v_bad text;
begin
  if p_filter is null or p_filter = 'null'::jsonb then
    return;
  end if;
  if jsonb_typeof(p_filter) <> 'object' then
    perform trellis._raise('TR001', 'event filter must be a JSON object {workflows?, kinds?, run_id?}');
  end if;
  select string_agg(left(k, 40), ', ') into v_bad from jsonb_object_keys(p_filter) k where k not in ('workflows', 'kinds', 'run_id');
  if v_bad is not null then
    perform trellis._raise('TR001', format('unknown event filter key(s): %s', v_bad));
  end if;
  if p_filter ? 'workflows' and jsonb_typeof(p_filter->'workflows') <> 'null' then
    if jsonb_typeof(p_filter->'workflows') <> 'array'
       or exists (select 1 from jsonb_array_elements(p_filter->'workflows') e where jsonb_typeof(e) <> 'string') then
      perform trellis._raise('TR001', 'event filter workflows must be an array of names');
    end if;
    workflows := array(select jsonb_array_elements_text(p_filter->'workflows'));
    -- A name no workflow can have (a quote, 5000 characters) would filter everything out, silently.
    for i in 1 .. coalesce(array_length(workflows, 1), 0) loop
      perform trellis._check_name(workflows[i], 'workflow');
    end loop;
  end if;
  if p_filter ? 'kinds' and jsonb_typeof(p_filter->'kinds') <> 'null' then
    if jsonb_typeof(p_filter->'kinds') <> 'array'
       or exists (select 1 from jsonb_array_elements(p_filter->'kinds') e where jsonb_typeof(e) <> 'string') then
      perform trellis._raise('TR001', 'event filter kinds must be an array of event kinds');
    end if;
    kinds := array(select jsonb_array_elements_text(p_filter->'kinds'));
    -- A kind no event has would filter everything out, silently (the kinds
    -- of docs/events.md; src/db/events.ts EVENT_KINDS is the same list).
    select string_agg(quote_literal(left(k, 40)), ', ') into v_bad from unnest(kinds) k
     where k not in ('started', 'waiting', 'resumed', 'released', 'retried', 'continued', 'paused', 'completed',
                     'failed', 'cancelled', 'purged', 'replaced', 'step_completed', 'step_failed');
    if v_bad is not null then
      perform trellis._raise('TR001', format('event filter kinds: no event is of kind %s', v_bad));
    end if;
  end if;
  if p_filter ? 'run_id' and jsonb_typeof(p_filter->'run_id') <> 'null' then
    begin
      run_id := (p_filter->>'run_id')::uuid;
    exception when others then
      perform trellis._raise('TR001', format('event filter run_id %s is not a UUID', quote_literal(left(p_filter->>'run_id', 40))));
    end;
  end if;
end $$;
comment on function trellis._event_filter(jsonb) is
  'Parse an event filter {workflows?: text[], kinds?: text[], run_id?: uuid}; TR001 for anything else.';

-- The horizon: events of transactions below it are final.
-- On a distributed schema (Citus, decision 0030) every event carries the
-- coordinator's transaction id (its writers read pg_current_xact_id()
-- themselves rather than leave it to the column's default, which a statement
-- pushed down to the shards would evaluate on a worker node), so the
-- coordinator's horizon orders them. One more wait: a transaction that wrote
-- to more than one worker node commits in two phases, and its rows become
-- visible on a node only at that node's COMMIT PREPARED, after the
-- coordinator's own commit has moved the horizon past it. Citus records
-- each such prepared part in pg_dist_transaction, a row written by the
-- coordinator's transaction itself (so its xmin is that transaction's id),
-- until its recovery finds the part gone. The horizon is held below the
-- oldest transaction with a part still prepared on a worker node: the
-- nodes' prepared transactions are read after this snapshot was taken, so a
-- part not among them was committed (or rolled back) before the events are
-- read. A node that does not answer raises 08006 (a connection failure,
-- which clients retry): the cursor cannot tell what is safe to pass.
create or replace function trellis._xact_horizon(p_cluster boolean)
returns xid8 language plpgsql stable as $$
declare
  v_snapshot pg_snapshot := pg_catalog.pg_current_snapshot();
  v_horizon  xid8 := pg_catalog.pg_snapshot_xmin(v_snapshot);
  v_next     bigint;
  v_prepared text[];
  v_answered boolean;
  v_held     xid8;
begin
  -- The distributed setting on one node (test/sql/distributed-mode.test.ts)
  -- has no worker nodes: nothing is prepared elsewhere.
  if not p_cluster or pg_catalog.to_regclass('pg_catalog.pg_dist_transaction') is null then
    return v_horizon;
  end if;
  execute $q$
    select coalesce(array_agg(g.gid), '{}'), bool_and(w.success)
      from run_command_on_workers(
             'select coalesce(string_agg(gid, chr(31)), '''') from pg_catalog.pg_prepared_xacts where database = current_database()') w
      left join lateral unnest(case when w.success and w.result <> '' then string_to_array(w.result, chr(31)) end) as g(gid) on true$q$
    into v_prepared, v_answered;
  -- (Null: no worker nodes, a cluster of one node: nothing is prepared elsewhere.)
  if v_answered is false then
    -- Class 08, as the lost connection it is: clients and connectors retry.
    raise exception 'trellis: a worker node did not say which transactions are prepared on it; read the events again'
      using errcode = '08006';
  end if;
  if cardinality(v_prepared) = 0 then
    return v_horizon;
  end if;
  -- xmin is a 32-bit transaction id: widened against the snapshot's xmax,
  -- which every transaction this snapshot sees as committed is below.
  v_next := pg_catalog.pg_snapshot_xmax(v_snapshot)::text::bigint;
  execute $q$
    select min(($1 - (($1 % 4294967296) - t.xmin::text::bigint + 4294967296) % 4294967296)::text::xid8)
      from pg_catalog.pg_dist_transaction t
     where t.gid = any ($2)$q$
    into v_held using v_next, v_prepared;
  return least(v_horizon, v_held);
end $$;
comment on function trellis._xact_horizon(boolean) is
  'The oldest transaction id still running as this snapshot sees it: every row written by a transaction below it is committed or gone for good. With p_cluster on a Citus coordinator, also below the oldest transaction whose two-phase commit is still prepared on a worker node (08006 when a node does not answer).';

create or replace function trellis._events_horizon()
returns xid8 language sql stable as $$
  select trellis._xact_horizon(trellis._distributed())
$$;
comment on function trellis._events_horizon() is
  'The outbox''s horizon: events of transactions below it are final (trellis._xact_horizon, cluster-wide on a distributed schema).';

-- The horizon of a user's own table of events read in (transaction id, row
-- id) order, as tableConnector does (docs/connectors.md): the table may be
-- distributed while the Trellis schema is not, so on a Citus coordinator it
-- always asks the worker nodes what is still prepared there.
create or replace function trellis.xact_horizon()
returns xid8 language sql stable as $$
  select trellis._xact_horizon(true)
$$;
comment on function trellis.xact_horizon() is
  'The oldest transaction id still running, cluster-wide on a Citus coordinator (a two-phase commit still prepared on a worker node counts as running): rows of a table written with tx = pg_current_xact_id() below it are final. Read it in its own statement before the rows.';

create or replace function trellis._events_after(p_xid xid8, p_id bigint, p_limit integer, p_filter jsonb)
returns table (cursor text, run_id uuid, workflow text, version text, key text, kind text,
               attempt integer, body jsonb, created_at timestamptz)
language plpgsql stable as $$
declare
  v_horizon xid8 := trellis._events_horizon();
  f record;
begin
  if p_limit is null or p_limit < 1 or p_limit > 10000 then
    perform trellis._raise('TR001', format('event read limit must be from 1 to 10000, not %s', coalesce(p_limit::text, 'null')));
  end if;
  select * into f from trellis._event_filter(p_filter);
  return query
  select e.xid::text || ':' || e.id::text, e.run_id, e.workflow, e.version, e.key, e.kind, e.attempt, e.body, e.created_at
    from trellis.events e
   where (e.xid, e.id) > (p_xid, p_id) and e.xid < v_horizon
     and (f.workflows is null or e.workflow = any (f.workflows))
     and (f.kinds is null or e.kind = any (f.kinds))
     and (f.run_id is null or e.run_id = f.run_id)
   order by e.xid, e.id
   limit p_limit;
end $$;
comment on function trellis._events_after(xid8, bigint, integer, jsonb) is
  'Up to p_limit events after (p_xid, p_id) that match p_filter, below the visibility horizon, in (xid, id) order.';

create or replace function trellis.events_read(p_after text default null, p_limit integer default 100,
                                               p_filter jsonb default '{}')
returns table (cursor text, run_id uuid, workflow text, version text, key text, kind text,
               attempt integer, body jsonb, created_at timestamptz)
language plpgsql stable as $$
declare
  c record;
begin
  select * into c from trellis._event_cursor(p_after);
  return query select * from trellis._events_after(c.xid, c.id, p_limit, p_filter);
end $$;
comment on function trellis.events_read(text, integer, jsonb) is
  'Read up to p_limit (1-10000) events after cursor p_after (null: from the start) matching p_filter {workflows?, kinds?, run_id?}, in commit-safe order: only events of transactions that have ended (below the oldest running transaction), by (xid, id), so a transaction that commits late never has its events skipped. Each row''s cursor resumes after it. TR001 for a malformed or future cursor, a limit out of range or a bad filter.';

-- Durable consumers.
create or replace function trellis.event_consumer_create(p_name text, p_from text default 'start')
returns text language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
  v_xid xid8;
  v_id  bigint;
begin
  perform trellis._check_name(p_name, 'consumer');
  if p_from = 'start' then
    v_xid := '0'::xid8; v_id := 0;
  elsif p_from = 'now' then
    -- After every event that is final now; events of running transactions come.
    v_xid := trellis._events_horizon(); v_id := 0;
  else
    select c.xid, c.id into v_xid, v_id from trellis._event_cursor(p_from) c;
  end if;
  insert into trellis.event_consumers (name, after_xid, after_id, created_at, updated_at)
  values (p_name, v_xid, v_id, v_now, v_now)
  on conflict (name) do nothing;
  return (select after_xid::text || ':' || after_id::text from trellis.event_consumers where name = p_name);
end $$;
comment on function trellis.event_consumer_create(text, text) is
  'Create durable consumer p_name positioned at p_from: ''start'' (every event kept), ''now'' (only events from now on) or a cursor. An existing consumer is kept as it is. Returns its position (a cursor).';

create or replace function trellis._event_consumer(p_name text)
returns trellis.event_consumers language plpgsql stable as $$
declare
  v_row trellis.event_consumers;
begin
  select * into v_row from trellis.event_consumers where name = p_name;
  if not found then
    perform trellis._raise('TR002', format('event consumer %s does not exist (create it with event_consumer_create)',
                                           coalesce(quote_literal(left(p_name, 140)), 'null')));
  end if;
  return v_row;
end $$;
comment on function trellis._event_consumer(text) is
  'The consumer row p_name; TR002 if there is none.';

create or replace function trellis.event_consumer_read(p_name text, p_limit integer default 100, p_filter jsonb default '{}')
returns table (cursor text, run_id uuid, workflow text, version text, key text, kind text,
               attempt integer, body jsonb, created_at timestamptz)
language plpgsql stable as $$
declare
  v_row trellis.event_consumers := trellis._event_consumer(p_name);
begin
  return query select * from trellis._events_after(v_row.after_xid, v_row.after_id, p_limit, p_filter);
end $$;
comment on function trellis.event_consumer_read(text, integer, jsonb) is
  'The next up to p_limit events after consumer p_name''s position (as events_read); reading does not move it: event_consumer_ack does. TR002 unknown consumer.';

create or replace function trellis.event_consumer_ack(p_name text, p_cursor text)
returns text language plpgsql as $$
declare
  c record;
  v_row trellis.event_consumers;
begin
  select * into c from trellis._event_cursor(p_cursor);
  if p_cursor is null or p_cursor = '' then
    perform trellis._raise('TR001', 'event_consumer_ack needs the cursor of the last event handled');
  end if;
  if c.xid >= trellis._events_horizon() then
    perform trellis._raise('TR001', format('event cursor %s is past what a read can have returned', p_cursor));
  end if;
  perform trellis._event_consumer(p_name);
  update trellis.event_consumers
     set after_xid = c.xid, after_id = c.id, updated_at = trellis.now()
   where name = p_name and (after_xid, after_id) < (c.xid, c.id)
  returning * into v_row;
  if v_row.name is null then
    select * into v_row from trellis.event_consumers where name = p_name;
  end if;
  return v_row.after_xid::text || ':' || v_row.after_id::text;
end $$;
comment on function trellis.event_consumer_ack(text, text) is
  'Acknowledge every event of consumer p_name up to cursor p_cursor: its position moves there (never back). Returns the position. TR002 unknown consumer, TR001 a malformed cursor or one past what a read can have returned.';

create or replace function trellis.event_consumer_drop(p_name text)
returns boolean language plpgsql as $$
begin
  delete from trellis.event_consumers where name = p_name;
  return found;
end $$;
comment on function trellis.event_consumer_drop(text) is
  'Remove consumer p_name (its position no longer holds events back from events_purge); false if there was none.';

-- Consumed events past the retention: older than p_older_than and behind
-- every durable consumer, oldest first, up to p_limit per call.
create or replace function trellis.events_purge(p_older_than interval, p_limit integer default 1000)
returns integer language plpgsql as $$
declare
  v_cutoff timestamptz;
  v_xid    xid8;
  v_id     bigint;
  v_n      integer;
begin
  perform trellis._check_retention(p_older_than, 'older_than');
  perform trellis._check_purge_limit(p_limit);
  v_cutoff := trellis.now() - p_older_than;
  select c.after_xid, c.after_id into v_xid, v_id from trellis.event_consumers c
   order by c.after_xid, c.after_id limit 1;
  if not found then
    v_xid := trellis._events_horizon(); v_id := 0;
  end if;
  with batch as (
    select e.xid, e.id from trellis.events e
     where (e.xid, e.id) <= (v_xid, v_id)
     order by e.xid, e.id limit p_limit)
  delete from trellis.events e using batch
   where e.xid = batch.xid and e.id = batch.id and e.created_at < v_cutoff;
  get diagnostics v_n = row_count;
  return v_n;
end $$;
comment on function trellis.events_purge(interval, integer) is
  'Delete up to p_limit events created more than p_older_than ago that every durable consumer has acknowledged (all final events when there is none), oldest first; returns how many. run_purge_due calls it with the default retention.';

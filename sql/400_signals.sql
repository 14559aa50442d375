-- 400_signals: messages sent to runs, buffered until a wait consumes them.
-- Owns: signal_send, signal_with_start, request_send, _key_received. Touches: trellis.signals (insert), trellis.runs (wake,
-- through _run_move; a start, through _run_start), trellis.workflows (read: the declared signals).
-- Lock order: the run row, then its signals; signal_with_start: the key's index entry
-- (its start), then the run row.

create or replace function trellis.signal_send(p_run_id uuid, p_name text, p_payload jsonb,
                                               p_signal_id text default null)
returns boolean language plpgsql as $$
declare
  v_now    timestamptz := trellis.now();
  v_status text;
  v_queue  text;
  v_id     bigint;
  v_workflow text;
  v_version  text;
  v_signals  jsonb;
  v_bad      text;
  v_bucket   integer;
  v_buffered bigint;
  v_bytes    bigint;
  v_cap      bigint;
begin
  perform trellis._check_name(p_name, 'signal');
  if p_signal_id is not null and (length(p_signal_id) = 0 or length(p_signal_id) > 512) then
    perform trellis._raise('TR001', 'signal_id must be 1-512 characters');
  end if;
  perform trellis._check_payload(coalesce(p_payload, 'null'), 'signal payload');
  if trellis._distributed() then
    -- Locked within its bucket (sql/160_buckets.sql), then read.
    perform trellis._lock_runs(array[p_run_id]);
    select bucket, status, queue, workflow, version into v_bucket, v_status, v_queue, v_workflow, v_version
      from trellis.runs where id = p_run_id;
  else
    select bucket, status, queue, workflow, version into v_bucket, v_status, v_queue, v_workflow, v_version
      from trellis.runs where id = p_run_id for no key update;
  end if;
  if not found then
    perform trellis._raise('TR002', format('run %s does not exist', coalesce(p_run_id::text, 'null')));
  end if;
  -- A version that declares its signals (defineWorkflow({ signals })) takes
  -- only those, each with a payload that matches its shape (050_shapes.sql).
  select signal_schemas into v_signals from trellis.workflows where name = v_workflow and version = v_version;
  if jsonb_typeof(v_signals) = 'object' then
    if not v_signals ? p_name then
      perform trellis._raise('TR001', format('%s version %s does not wait for signal %s (it declares: %s)', v_workflow, v_version, p_name,
        coalesce((select string_agg(k, ', ' order by k) from jsonb_object_keys(v_signals) k), 'none')));
    end if;
    v_bad := trellis._shape_error(v_signals->p_name, coalesce(p_payload, 'null'));
    if v_bad is not null then
      perform trellis._raise('TR001', format('payload of signal %s does not match its schema: $%s', p_name, v_bad));
    end if;
  end if;
  -- A redelivery of a signal already received is dropped, even after the run ended.
  if p_signal_id is not null
     and exists (select 1 from trellis.signals
                  where bucket = v_bucket and run_id = p_run_id and signal_id = p_signal_id) then
    return false;
  end if;
  if v_status in ('completed', 'failed', 'cancelled') then
    perform trellis._raise('TR004', format('run %s is %s; signals go to unfinished runs', p_run_id, v_status));
  end if;
  -- What a run buffers is bounded: a claim hands the run all its unconsumed
  -- signals as one value, and one PostgreSQL cannot build (over 256 MB)
  -- would fail every claim that picks the run, and the other runs of that
  -- claim with it. At most 10,000 signals and 16 times max_payload_bytes
  -- (at most 64 MiB) of payloads wait for a run; the run lock above
  -- serialises the senders.
  select count(*), coalesce(sum(octet_length(g.payload::text)), 0) into v_buffered, v_bytes
    from trellis.signals g where g.bucket = v_bucket and g.run_id = p_run_id and g.consumed_at is null;
  v_cap := least(16::bigint * trellis._setting_int('max_payload_bytes', 1048576), 67108864);
  if v_buffered >= 10000 or v_bytes + octet_length(coalesce(p_payload, 'null')::text) > v_cap then
    perform trellis._raise('TR005', format('run %s already buffers %s unconsumed signals of %s bytes; a run buffers at most 10000 signals and %s bytes of payloads (16 x max_payload_bytes, at most 64 MiB) until its code consumes them',
      p_run_id, v_buffered, v_bytes, v_cap));
  end if;
  insert into trellis.signals (bucket, run_id, name, payload, signal_id, created_at)
  values (v_bucket, p_run_id, p_name, coalesce(p_payload, 'null'), p_signal_id, v_now)
  on conflict (bucket, run_id, signal_id) where signal_id is not null do nothing
  returning id into v_id;
  if v_id is null then
    return false; -- a repeat of an already received signal id
  end if;
  if v_status = 'waiting' then
    perform trellis._run_move(array[row(p_run_id, 'pending', 'resumed', v_now, null, false, null, false,
      null, null, null, null, null, null, null, null, null, '{"reason":"signal"}')::trellis.run_move]);
    perform pg_notify('trellis:run_ready', v_queue);
  end if;
  return true;
end $$;
comment on function trellis.signal_send(uuid, text, jsonb, text) is
  'Send signal p_name with p_payload to an unfinished run and wake it if waiting. Buffered until a wait consumes it. With p_signal_id, a repeat is ignored (returns false). TR001 a signal the run''s version does not declare, or a payload that does not match its shape; TR002 unknown run, TR004 finished run; TR005 when the run already buffers 10,000 unconsumed signals or the payload would take its buffered payloads over 16 x max_payload_bytes (at most 64 MiB).';

-- The run of key p_key of workflow p_workflow (in its bucket) that received
-- signal id p_signal_id: its current holder or one of the runs that held
-- the key before (former_key), the newest first, among the key's 100
-- newest runs; null if none. What makes a signal id a key's, not a run's:
-- a message redelivered after the key changed hands is not delivered to
-- its next run (signal_with_start, request_send).
create or replace function trellis._key_received(p_bucket integer, p_workflow text, p_key text, p_signal_id text)
returns uuid language plpgsql stable as $$
begin
  return (select r.id
            from (select r.id, r.created_at from trellis.runs r
                   where r.bucket = p_bucket and r.workflow = p_workflow and r.key = p_key
                  union all
                  (select r.id, r.created_at from trellis.runs r
                    where r.bucket = p_bucket and r.workflow = p_workflow and r.former_key = p_key and r.former_key is not null
                    order by r.created_at desc limit 100)) r
           where exists (select 1 from trellis.signals g
                          where g.bucket = p_bucket and g.run_id = r.id and g.signal_id = p_signal_id)
           order by r.created_at desc limit 1);
end $$;
comment on function trellis._key_received(integer, text, text, text) is
  'The run of key p_key of workflow p_workflow (bucket p_bucket) that received signal id p_signal_id: the current holder or one of the 100 newest runs that held the key before; null if none.';

-- Signal with start (decision 0043): the signal goes to the run that holds
-- key p_options.key of workflow p_workflow if that run has not finished;
-- otherwise a new run is started with the key (as key_policy 'reuse'
-- starts one: a finished holder gives its key up and keeps it as
-- former_key) and the signal is buffered for it in the same transaction,
-- before any worker can claim it. Both or neither: a bad input, signal or
-- payload writes nothing. Concurrent calls for one key meet on the key's
-- unique index (one start waits for the other's insert): one starts the
-- run, the others signal it. A signal id a run of the key already
-- received (its holder, or one of the 100 newest that held it before:
-- _key_received) is dropped (delivered false, naming that run) even after
-- that run finished, so a redelivered message neither starts a run nor
-- reaches the key's next one.
create or replace function trellis.signal_with_start(p_workflow text, p_input jsonb, p_options jsonb,
  p_signal text, p_payload jsonb, p_signal_id text default null)
returns table (run_id uuid, started boolean, delivered boolean) language plpgsql as $$
declare
  v_options jsonb := coalesce(p_options, '{}');
  v_key     text;
  v_bucket  integer;
  v_holder  uuid;
  v_new     uuid;
  v_id      uuid;
  v_status  text;
  v_try     integer;
  v_sent    boolean;
begin
  p_workflow := trellis._check_name(p_workflow, 'workflow');
  if jsonb_typeof(v_options) <> 'object' then
    perform trellis._raise('TR001', 'signal_with_start options must be a JSON object');
  end if;
  if v_options ? 'key_policy' then
    perform trellis._raise('TR001', 'signal_with_start takes no key_policy: it signals the key''s unfinished run, or starts one as key_policy reuse would');
  end if;
  if jsonb_typeof(v_options->'key') is distinct from 'string' then
    perform trellis._raise('TR001', 'signal_with_start needs a key (a string in its options): the key names the run to signal or to start');
  end if;
  v_key := v_options->>'key';
  perform trellis._check_name(p_signal, 'signal');
  if length(v_key) between 1 and 512 then
    v_bucket := trellis._bucket(p_workflow, v_key, null, trellis._bucket_count());
  end if;
  if p_signal_id is not null then
    if length(p_signal_id) = 0 or length(p_signal_id) > 512 then
      perform trellis._raise('TR001', 'signal_id must be 1-512 characters');
    end if;
    -- A repeat of a signal a run of the key received (its current holder
    -- or one that held it before), finished or not.
    if v_bucket is not null then
      v_holder := trellis._key_received(v_bucket, p_workflow, v_key, p_signal_id);
      if v_holder is not null then
        return query select v_holder, false, false;
        return;
      end if;
    end if;
  end if;
  for v_try in 1 .. 100 loop
    v_new := pg_catalog.gen_random_uuid();
    v_id := trellis._run_start(p_workflow, p_input, v_options || '{"key_policy": "reuse"}', v_new,
                               null, null, null, null, null, null);
    if v_id = v_new then
      -- This call's run: nobody else sees it before the commit.
      return query select v_id, true, trellis.signal_send(v_id, p_signal, p_payload, p_signal_id);
      return;
    end if;
    -- The key's unfinished holder, locked as signal_send locks it and
    -- looked at again: it may have finished since the start looked.
    if trellis._distributed() then
      perform trellis._lock_runs(array[v_id]);
      select r.status into v_status from trellis.runs r where r.id = v_id;
    else
      select r.status into v_status from trellis.runs r where r.id = v_id for no key update;
    end if;
    if v_status is not null and v_status not in ('completed', 'failed', 'cancelled') then
      v_sent := trellis.signal_send(v_id, p_signal, p_payload, p_signal_id);
      if v_sent then
        -- The start it came with: if the run ends without having read the
        -- signal, that run's checkpoint starts the key's next run with it
        -- (_late_messages). The run's lock (signal_send's) keeps other
        -- senders out, so the run's newest signal is this one.
        -- (Without coalesce_notify: the start a checkpoint makes notifies
        -- and takes no wake-up gate lock inside the checkpoint.)
        update trellis.signals g set start = jsonb_build_object('input', coalesce(p_input, 'null'), 'options', v_options - 'coalesce_notify')
         where g.bucket = v_bucket and g.run_id = v_id
           and g.id = (select max(m.id) from trellis.signals m where m.bucket = v_bucket and m.run_id = v_id);
      end if;
      return query select v_id, false, v_sent;
      return;
    end if;
  end loop;
  -- Only under a churn of runs of the key that end as soon as they start.
  raise exception 'trellis: the key of this signal_with_start changed hands 100 times while it looked; send it again'
    using errcode = '40001';
end $$;
comment on function trellis.signal_with_start(text, jsonb, jsonb, text, jsonb, text) is
  'Send signal p_signal with p_payload to the unfinished run of workflow p_workflow that holds key p_options.key, or start one (p_input, p_options as run_start takes them, key required, no key_policy: a finished holder gives its key up as with reuse) and buffer the signal for it, in one transaction. Returns the run, whether this call started it, and whether the signal was delivered (false: a repeat of p_signal_id a run of the key already received, its holder or one that held the key before, finished or not: that run is returned and nothing is started). Errors as run_start and signal_send raise them, before anything is written.';

comment on column trellis.signals.start is
  'For a signal signal_with_start buffered for a run it did not start: the start it came with ({input, options}), used to start the key''s next run if this run completes or fails without reading the signal (having read at least one of its signals). Null otherwise; removed by run_scrub.';

-- A request to the run of a key (decision 0044, client.request by
-- { workflow, key }): the key's run that already received p_request_id
-- (its holder or one that held the key before: _key_received) is returned
-- and nothing is sent, so a request repeated after the key changed hands
-- is not applied by the key's next run; otherwise the signal goes to the
-- key's holder as signal_send sends it (TR004 if that run has ended). TR002
-- when the key has no run.
create or replace function trellis.request_send(p_workflow text, p_key text, p_signal text, p_payload jsonb, p_request_id text)
returns table (run_id uuid, delivered boolean) language plpgsql as $$
declare
  v_bucket integer;
  v_run    uuid;
begin
  p_workflow := trellis._check_name(p_workflow, 'workflow');
  if p_key is null or length(p_key) not between 1 and 512 then
    perform trellis._raise('TR001', 'a key is 1-512 characters');
  end if;
  perform trellis._check_request_id(p_request_id);
  v_bucket := trellis._bucket(p_workflow, p_key, null, trellis._bucket_count());
  v_run := trellis._key_received(v_bucket, p_workflow, p_key, p_request_id);
  if v_run is not null then
    return query select v_run, false;
    return;
  end if;
  select r.id into v_run from trellis.runs r where r.bucket = v_bucket and r.workflow = p_workflow and r.key = p_key;
  if v_run is null then
    perform trellis._raise('TR002', format('no run of %s with key %s', p_workflow, quote_literal(left(p_key, 60))));
  end if;
  return query select v_run, trellis.signal_send(v_run, p_signal, p_payload, p_request_id);
end $$;
comment on function trellis.request_send(text, text, text, jsonb, text) is
  'Send request p_request_id (signal p_signal with p_payload) to the run of workflow p_workflow that holds key p_key: the run of the key that already received that id (its holder or one of the 100 newest that held the key before) is returned with delivered false and nothing is sent; otherwise signal_send to the holder. TR002 no run of the key, TR004 the holder has ended, TR001 bad input as signal_send or an id a request cannot carry (_check_request_id).';

-- Messages a run never read (decision 0043's amendment): a keyed run that
-- a checkpoint completes or fails, holding unread signals signal_with_start
-- buffered for it (each with the start it came with), hands them to the
-- key's next run, started with the oldest one's start as signal_with_start
-- would start it, in the checkpoint's transaction: a message a caller was
-- told was delivered is not left on a run that ended without reading it.
-- Only a run that read at least one of its signals hands any over: a run
-- that reads none (its code ignores its messages) would start runs that
-- read none, one after another. A start that fails (its workflow version
-- gone, a deadline passed) leaves them where they are, with a warning.
create or replace function trellis._late_messages(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
declare
  v_ended uuid[];
  v_id    uuid;
  v_run   record;
  v_start jsonb;
  v_new   uuid;
begin
  v_ended := array(select distinct o.run from unnest(p_ops) o where o.op in ('complete', 'fail'));
  -- The common case: one probe of an index that is almost always empty.
  if cardinality(v_ended) = 0
     or not exists (select 1 from trellis.signals s where s.run_id = any (v_ended) and s.start is not null and s.consumed_at is null) then
    return;
  end if;
  foreach v_id in array v_ended loop
    select r.bucket, r.workflow, r.key, r.status into v_run from trellis.runs r where r.id = v_id;
    continue when v_run.key is null or v_run.status not in ('completed', 'failed');
    select s.start into v_start from trellis.signals s
     where s.bucket = v_run.bucket and s.run_id = v_id and s.start is not null and s.consumed_at is null
     order by s.id limit 1;
    continue when v_start is null
      or not exists (select 1 from trellis.signals s where s.bucket = v_run.bucket and s.run_id = v_id and s.consumed_at is not null);
    begin
      v_new := trellis._run_start(v_run.workflow, v_start->'input',
                                  (coalesce(v_start->'options', '{}') - 'coalesce_notify') || jsonb_build_object('key', v_run.key, 'key_policy', 'reuse'),
                                  null, null, null, null, null, null, null);
      update trellis.signals s set run_id = v_new
       where s.bucket = v_run.bucket and s.run_id = v_id and s.start is not null and s.consumed_at is null
         and (s.signal_id is null or not exists (select 1 from trellis.signals d
                                                 where d.bucket = v_run.bucket and d.run_id = v_new and d.signal_id = s.signal_id));
      -- A holder that was there already and waits: woken, as signal_send would.
      if exists (select 1 from trellis.runs r where r.bucket = v_run.bucket and r.id = v_new and r.status = 'waiting') then
        perform trellis._run_move(array[row(v_new, 'pending', 'resumed', trellis.now(), null, false, null, false,
          null, null, null, null, null, null, null, null, null, '{"reason":"signal"}')::trellis.run_move]);
        perform pg_notify('trellis:run_ready', (select r.queue from trellis.runs r where r.bucket = v_run.bucket and r.id = v_new));
      end if;
    exception when others then
      raise warning 'trellis: run % ended with messages it had not read; starting the next run of its key failed: %', v_id, sqlerrm;
    end;
  end loop;
end $$;
comment on function trellis._late_messages(trellis.checkpoint_op[]) is
  'For the runs p_ops complete or fail: a keyed run that read at least one of its signals hands the unread ones signal_with_start buffered for it to the key''s next run, started with the oldest one''s start (decision 0043''s amendment).';

-- 400_signals: messages sent to runs, buffered until a wait consumes them.
-- Owns: signal_send. Touches: trellis.signals (insert), trellis.runs (wake, through _run_move),
-- trellis.workflows (read: the declared signals).
-- Lock order: the run row, then its signals.

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

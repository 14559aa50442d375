-- 400_signals: messages sent to runs, buffered until a wait consumes them.
-- Owns: signal_send. Touches: trellis.signals (insert), trellis.runs (wake).
-- Lock order: the run row, then its signals.

create or replace function trellis.signal_send(p_run_id uuid, p_name text, p_payload jsonb,
                                               p_signal_id text default null)
returns boolean language plpgsql as $$
declare
  v_now    timestamptz := trellis.now();
  v_status text;
  v_queue  text;
  v_id     bigint;
begin
  perform trellis._check_name(p_name, 'signal');
  if p_signal_id is not null and (length(p_signal_id) = 0 or length(p_signal_id) > 512) then
    perform trellis._raise('TR001', 'signal_id must be 1-512 characters');
  end if;
  perform trellis._check_payload(coalesce(p_payload, 'null'), 'signal payload');
  select status, queue into v_status, v_queue from trellis.runs where id = p_run_id for no key update;
  if not found then
    perform trellis._raise('TR002', format('run %s does not exist', p_run_id));
  end if;
  -- A redelivery of a signal already received is dropped, even after the run ended.
  if p_signal_id is not null
     and exists (select 1 from trellis.signals where run_id = p_run_id and signal_id = p_signal_id) then
    return false;
  end if;
  if v_status in ('completed', 'failed', 'cancelled') then
    perform trellis._raise('TR004', format('run %s is %s; signals go to unfinished runs', p_run_id, v_status));
  end if;
  insert into trellis.signals (run_id, name, payload, signal_id, created_at)
  values (p_run_id, p_name, coalesce(p_payload, 'null'), p_signal_id, v_now)
  on conflict (run_id, signal_id) where signal_id is not null do nothing
  returning id into v_id;
  if v_id is null then
    return false; -- a repeat of an already received signal id
  end if;
  if v_status = 'waiting' then
    update trellis.runs set status = 'pending', run_at = v_now, updated_at = v_now where id = p_run_id;
    perform pg_notify('trellis:run_ready', v_queue);
  end if;
  return true;
end $$;
comment on function trellis.signal_send(uuid, text, jsonb, text) is
  'Send signal p_name with p_payload to an unfinished run and wake it if waiting. Buffered until a wait consumes it. With p_signal_id, a repeat is ignored (returns false). TR002 unknown run, TR004 finished run.';

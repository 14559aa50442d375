-- 300_checkpoints: the fenced write path of workers.
-- Owns: checkpoint_apply (batched), step_record, run_complete, run_fail, run_release.
-- Touches: trellis.runs (update), trellis.steps (insert, update, delete).
-- Lock order: runs rows in id order (FOR NO KEY UPDATE), then their steps.
--
-- checkpoint_apply takes the checkpoints of many runs at once, so a worker
-- commits every run's progress in one transaction (grouped commit). Each op is
-- fenced by its run's lease token; ops of runs not held under that token are
-- refused and their run ids returned. Ops of one run apply in this order:
-- steps, then the run's end (complete | fail | release).
--
-- Ops (JSON objects):
--   {op:'step', run, token, seq, name, kind, status, output, error, attempts, ms}
--   {op:'complete', run, token, output}
--   {op:'fail', run, token, error}
--   {op:'release', run, token, delay_ms, error, failure}   -- back to pending

create or replace function trellis.checkpoint_apply(p_ops jsonb)
returns table (run_id uuid, token uuid) language plpgsql as $$
#variable_conflict use_column
declare
  v_now     timestamptz := trellis.now();
  v_max     integer := trellis._setting_int('max_payload_bytes', 1048576);
  v_ops     trellis.checkpoint_op[];
  v_held    text[];
  v_big     text;
  v_ids     text;
  v_queue   text;
begin
  if jsonb_typeof(p_ops) is distinct from 'array' then
    perform trellis._raise('TR001', 'checkpoint_apply expects a JSON array of ops');
  end if;

  v_ops := array(select o from jsonb_populate_recordset(null::trellis.checkpoint_op, p_ops) as o);

  if exists (select 1 from unnest(v_ops)
              where op is null or op not in ('step', 'complete', 'fail', 'release')
                 or run is null or token is null
                 or (op = 'step' and (seq is null or seq < 0 or status is null or kind is null))) then
    perform trellis._raise('TR001', 'malformed checkpoint op: each needs op, run, token (and seq, name, kind, status for steps)');
  end if;
  perform trellis._check_name(name, 'step') from unnest(v_ops) where op = 'step';
  select format('%s of run %s is %s bytes, over the limit of %s bytes', o.op, o.run,
                greatest(pg_column_size(o.output), pg_column_size(o.error)), v_max)
    into v_big
    from unnest(v_ops) o
   where greatest(pg_column_size(o.output), pg_column_size(o.error)) > v_max limit 1;
  if v_big is not null then
    perform trellis._raise('TR005', v_big);
  end if;

  -- Fence: lock the runs held under the given tokens, in id order. An op
  -- applies only if its own (run, token) pair is held: two executions of one
  -- run (an old one that lost its lease, a new one) may share a batch.
  select coalesce(array_agg(held.pair), '{}') into v_held from (
    select r.id::text || '/' || r.lease_token::text as pair from trellis.runs r
      join (select distinct o.run, o.token from unnest(v_ops) o) o
        on o.run = r.id and o.token = r.lease_token
     where r.status = 'running'
     order by r.id
     for no key update of r) held;
  v_ops := array(select o from unnest(v_ops) o where o.run::text || '/' || o.token::text = any (v_held));

  -- Steps. A completed or failed checkpoint is never overwritten; a 'running'
  -- marker (the attempt started) or a 'retrying' one is.
  insert into trellis.steps as s (run_id, seq, name, kind, status, output, error, attempts,
                                  started_at, finished_at)
  select o.run, o.seq, o.name, o.kind, o.status, o.output, o.error, coalesce(o.attempts, 1),
         v_now - make_interval(secs => coalesce(o.ms, 0) / 1000.0), v_now
    from unnest(v_ops) o
   where o.op = 'step'
  on conflict (run_id, seq) do update
     set status = excluded.status, output = excluded.output, error = excluded.error,
         attempts = excluded.attempts, started_at = excluded.started_at,
         finished_at = excluded.finished_at
   where s.status in ('running', 'retrying') and s.name = excluded.name;

  update trellis.runs r
     set status = 'completed', output = coalesce(o.output, 'null'), error = null,
         finished_at = v_now, updated_at = v_now,
         lease_token = null, lease_owner = null, lease_expires_at = null
    from unnest(v_ops) o
   where o.op = 'complete' and r.id = o.run and r.lease_token = o.token;

  update trellis.runs r
     set status = 'failed', error = coalesce(o.error, '{}'),
         finished_at = v_now, updated_at = v_now,
         lease_token = null, lease_owner = null, lease_expires_at = null
    from unnest(v_ops) o
   where o.op = 'fail' and r.id = o.run and r.lease_token = o.token;

  -- A failed attempt of the whole workflow forgets its failed steps, so the
  -- next attempt runs them again (completed steps stay memoised).
  delete from trellis.steps s
   using unnest(v_ops) o
   where o.op = 'release' and o.failure and s.run_id = o.run
     and s.status = 'failed';

  update trellis.runs r
     set status = 'pending', run_at = v_now + make_interval(secs => greatest(coalesce(o.delay_ms, 0), 0) / 1000.0),
         error = coalesce(o.error, r.error),
         failures = r.failures + case when o.failure then 1 else 0 end,
         updated_at = v_now, lease_token = null, lease_owner = null, lease_expires_at = null
    from unnest(v_ops) o
   where o.op = 'release' and r.id = o.run and r.lease_token = o.token;

  -- Wake-ups: finished run ids (ids only, chunked under the 8000-byte payload
  -- limit) and the queues that have a run due now.
  for v_ids in
    select string_agg(run::text, ',')
      from (select run, (row_number() over ()) / 200 as chunk
              from unnest(v_ops) where op in ('complete', 'fail')) f
     group by chunk
  loop
    perform pg_notify('trellis:run_finished', v_ids);
  end loop;
  for v_queue in
    select distinct r.queue from unnest(v_ops) o join trellis.runs r on r.id = o.run
     where o.op = 'release' and coalesce(o.delay_ms, 0) <= 0
  loop
    perform pg_notify('trellis:run_ready', v_queue);
  end loop;

  return query
  select distinct o.run, o.token from jsonb_populate_recordset(null::trellis.checkpoint_op, p_ops) o
   where o.run::text || '/' || o.token::text <> all (v_held);
end $$;
comment on function trellis.checkpoint_apply(jsonb) is
  'Apply many fenced checkpoint ops (step, complete, fail, release) of many runs in one transaction; returns the (run_id, token) pairs that were stale (their ops were refused).';

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
  if p_status is null or p_status not in ('running', 'completed', 'failed', 'retrying') then
    perform trellis._raise('TR001', format('step status %L is not running, completed, failed or retrying', p_status));
  end if;
  if p_kind is null or p_kind not in ('step', 'now', 'random', 'uuid', 'side_effect') then
    perform trellis._raise('TR001', format('step kind %L is unknown', p_kind));
  end if;
  perform trellis._checkpoint_one(jsonb_build_object('op', 'step', 'run', p_run_id, 'token', p_token,
    'seq', p_seq, 'name', p_name, 'kind', p_kind, 'status', p_status, 'output', p_output,
    'error', p_error, 'attempts', p_attempts));
end $$;
comment on function trellis.step_record(uuid, uuid, integer, text, text, jsonb, jsonb, integer, text) is
  'Checkpoint step p_seq of a run held under p_token: running (attempt p_attempts started), completed, failed or retrying. A completed or failed step is never overwritten.';

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

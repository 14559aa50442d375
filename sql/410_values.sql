-- 410_values: what a run publishes while it runs (ctx.setValue; decision 0033).
-- Owns: run_value, run_values, _notify_values.
-- Touches: nothing (reads trellis.runs and trellis.steps). A value is a call
-- of kind 'value' in the run's history: its name is the key, its output the
-- value, written by checkpoint_apply under the run's lease like any other
-- call, so it commits with the progress that led to it and a replay hands
-- the recorded call back instead of writing it again. The newest call of a
-- key wins (by execution, then call number).

-- NOTIFY trellis:run_value with the ids of runs that set values, only while
-- a session watches (the watch of trellis:run_finished, decision 0029: the
-- same advisory-lock shards, so a watcher that LISTENs, watches and then
-- reads a value never misses one set after its read).
create or replace function trellis._notify_values(p_ids uuid[])
returns void language plpgsql as $$
begin
  perform trellis._notify_watched('trellis:run_value', p_ids);
end $$;
comment on function trellis._notify_values(uuid[]) is
  'NOTIFY trellis:run_value with the ids of runs that set values if a session watches (_notify_watched).';

-- PL/pgSQL, not SQL functions: Citus plans no SQL function that reads a
-- distributed table with parameters; and two reads (the run, then its calls
-- in its bucket), not a join, so each goes to one shard.
create or replace function trellis.run_value(p_run_id uuid, p_key text)
returns table (status text, value jsonb, set_at timestamptz) language plpgsql stable as $$
declare
  v_bucket integer;
  v_status text;
begin
  select r.bucket, r.status into v_bucket, v_status from trellis.runs r where r.id = p_run_id;
  if v_status is null then
    return;
  end if;
  return query
  select v_status, v.output, v.finished_at
    from (select null) one
    left join (select s.output, s.finished_at from trellis.steps s
                where s.bucket = v_bucket and s.run_id = p_run_id and s.kind = 'value' and s.name = p_key
                  and s.status = 'completed'
                order by s.execution desc, s.seq desc limit 1) v on true;
end $$;
comment on function trellis.run_value(uuid, text) is
  'The value run p_run_id set under key p_key with ctx.setValue, and the run''s status: one row if the run exists (value and set_at null while the key has not been set; a value set to JSON null is ''null''::jsonb), none otherwise. The newest setting of the key wins.';

create or replace function trellis.run_values(p_run_id uuid)
returns table (key text, value jsonb, set_at timestamptz) language plpgsql stable as $$
declare
  v_bucket integer;
begin
  select r.bucket into v_bucket from trellis.runs r where r.id = p_run_id;
  if v_bucket is null then
    return;
  end if;
  return query
  select distinct on (s.name) s.name, s.output, s.finished_at
    from trellis.steps s
   where s.bucket = v_bucket and s.run_id = p_run_id and s.kind = 'value' and s.status = 'completed'
   order by s.name, s.execution desc, s.seq desc;
end $$;
comment on function trellis.run_values(uuid) is
  'Every key run p_run_id set with ctx.setValue and its newest value, by key; no rows for a run that set none or does not exist.';

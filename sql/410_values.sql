-- 410_values: what a run publishes while it runs (ctx.setValue, decision
-- 0033; ctx.writeStream, decision 0040).
-- Owns: run_value, run_values, run_request, run_stream, _notify_values, _replies_kept,
-- _check_request_id.
-- Touches: nothing (reads trellis.runs, trellis.steps and trellis.signals). A value is a call
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
    -- A value set to JSON null may be stored as SQL null: read as 'null'::jsonb.
    left join (select coalesce(s.output, 'null'::jsonb) as output, s.finished_at from trellis.steps s
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
  select distinct on (s.name) s.name, coalesce(s.output, 'null'::jsonb), s.finished_at
    from trellis.steps s
   where s.bucket = v_bucket and s.run_id = p_run_id and s.kind = 'value' and s.status = 'completed'
   order by s.name, s.execution desc, s.seq desc;
end $$;
comment on function trellis.run_values(uuid) is
  'Every key run p_run_id set with ctx.setValue and its newest value, by key (a value set to JSON null is ''null''::jsonb); no rows for a run that set none or does not exist.';

-- The answers of requests p_ids of run p_run as its history holds them now
-- (decision 0044): each request's signal row gets the newest completed
-- reply call of its id (value reply:<id>), or none. Called by the
-- checkpoint that records replies and by _forget_calls; a continue-as-new
-- that drops the history leaves the rows as they are (that is what they
-- are for).
create or replace function trellis._replies_kept(p_bucket integer, p_run uuid, p_ids text[])
returns void language plpgsql as $$
begin
  update trellis.signals g
     set reply = v.output, replied_at = v.finished_at
    from (select i.id, s.output, s.finished_at
            from unnest(p_ids) as i(id)
            left join lateral (select coalesce(s.output, 'null'::jsonb) as output, s.finished_at from trellis.steps s
                                where s.bucket = p_bucket and s.run_id = p_run and s.kind = 'value'
                                  and s.name = 'reply:' || i.id and s.status = 'completed'
                                order by s.execution desc, s.seq desc limit 1) s on true) v
   where g.bucket = p_bucket and g.run_id = p_run and g.signal_id = v.id
     and (g.reply is distinct from v.output or g.replied_at is distinct from v.finished_at);
end $$;
comment on function trellis._replies_kept(integer, uuid, text[]) is
  'Set the reply of requests p_ids of run p_run (their signal rows) to the newest completed reply call of each in the history, or none (decision 0044).';

-- A request's id is the tail of its answer's value key reply:<id> (src/workflow/requests.ts
-- replyKey): 1-122 characters of the name alphabet. signal_send takes ids
-- of up to 512 of any characters; such a message is not a request (ctx.reply
-- records nothing for it), so request_send and run_request refuse them.
create or replace function trellis._check_request_id(p_id text)
returns text language plpgsql immutable as $$
begin
  if p_id is null or length(p_id) not between 1 and 122
     or ('reply:' || p_id) !~ '^[A-Za-z0-9_]([A-Za-z0-9_.:@/ -]*[A-Za-z0-9_.:@/-])?$' then
    -- raise, not _raise: run_request runs with its reader's rights (950_grants.sql grants this function, not _raise).
    raise exception using errcode = 'TR001',
      message = format('a request id is 1-122 letters, digits, space or _ . : @ / - (not ending with a space), not %s',
                       coalesce(quote_literal(left(p_id, 60)), 'null'));
  end if;
  return p_id;
end $$;
comment on function trellis._check_request_id(text) is
  'Return p_id if it can be a request id (the tail of the value key reply:<id>: 1-122 characters of the name alphabet), else TR001.';

-- A request (decision 0044): the signal sent under the request's id and the
-- run's answer (ctx.reply / ctx.replyError: the value 'reply:<id>'), which
-- checkpoint_apply also keeps on the signal's row, so it outlives
-- continue-as-new; a reply by id to a request no signal carried is read
-- from the value. lost: the run read the request, has not answered it,
-- and no wait of its history received it: the execution that read it was
-- discarded by continue-as-new (or the wait's own schema refused the
-- payload), so no answer will come from the code that read it. Reads in
-- the run's bucket, as run_value.
create or replace function trellis.run_request(p_run_id uuid, p_request_id text)
returns table (status text, received boolean, read boolean, reply jsonb, replied_at timestamptz, lost boolean)
language plpgsql stable as $$
declare
  v_bucket integer;
  v_status text;
  v_received boolean;
  v_read boolean;
  v_reply jsonb;
  v_at timestamptz;
  v_lost boolean := false;
begin
  perform trellis._check_request_id(p_request_id);
  select r.bucket, r.status into v_bucket, v_status from trellis.runs r where r.id = p_run_id;
  if v_status is null then
    return;
  end if;
  select true, g.consumed_at is not null, g.reply, g.replied_at into v_received, v_read, v_reply, v_at
    from trellis.signals g
   where g.bucket = v_bucket and g.run_id = p_run_id and g.signal_id = p_request_id;
  if v_at is null then
    select coalesce(s.output, 'null'::jsonb), s.finished_at into v_reply, v_at
      from trellis.steps s
     where s.bucket = v_bucket and s.run_id = p_run_id and s.kind = 'value' and s.name = 'reply:' || p_request_id
       and s.status = 'completed'
     order by s.execution desc, s.seq desc limit 1;
  end if;
  if v_read and v_at is null then
    v_lost := not exists (select 1 from trellis.steps s
                           where s.bucket = v_bucket and s.run_id = p_run_id and s.kind = 'signal'
                             and s.output->>'signalId' = p_request_id);
  end if;
  return query select v_status, coalesce(v_received, false), coalesce(v_read, false), v_reply, v_at, v_lost;
end $$;
comment on function trellis.run_request(uuid, text) is
  'Request p_request_id of run p_run_id (decision 0044): the run''s status, whether the signal with that id was received and read, the run''s answer ({"value": ...} or {"error": {...}}: the signal row''s reply, else the value reply:<id>) and when, and lost (read, unanswered, and no wait of the run''s history received it: continue-as-new discarded the execution that read it). One row if the run exists, none otherwise; TR001 for an id that is not a request''s (1-122 letters, digits, space or _ . : @ / -, not ending with a space).';

-- A stream (decision 0040): the calls of kind 'stream' named p_key, in
-- history order (execution, then call number), after the cursor p_after
-- ('<execution>.<seq>' of the last entry read; null: from the start). An
-- entry's output is {"v": value}; ctx.closeStream writes {"closed": true}.
-- Two reads (the run, then its calls in its bucket), as run_value.
create or replace function trellis.run_stream(p_run_id uuid, p_key text, p_after text default null,
  p_limit integer default 1000)
returns table (cursor text, value jsonb, closed boolean, written_at timestamptz) language plpgsql stable as $$
declare
  v_bucket integer;
  v_exec   integer := -1;
  v_seq    integer := -1;
begin
  if p_after is not null then
    -- (Raised here, not through trellis._raise / _quote: this function runs
    -- with the caller's rights, and a trellis_client or trellis_reader login
    -- may not call the engine's helpers.)
    if p_after !~ '^[0-9]{1,9}[.][0-9]{1,9}$' then
      raise exception using errcode = 'TR001',
        message = format('stream cursor %s is not <execution>.<call> (a cursor run_stream returned)', quote_literal(left(p_after, 100)));
    end if;
    v_exec := split_part(p_after, '.', 1)::integer;
    v_seq := split_part(p_after, '.', 2)::integer;
  end if;
  if p_limit is null or p_limit < 1 or p_limit > 10000 then
    raise exception using errcode = 'TR001',
      message = format('stream read limit %s is not between 1 and 10000', coalesce(p_limit::text, 'null'));
  end if;
  select r.bucket into v_bucket from trellis.runs r where r.id = p_run_id;
  if v_bucket is null then
    return;
  end if;
  return query
  select s.execution::text || '.' || s.seq::text, s.output->'v', coalesce((s.output->>'closed')::boolean, false), s.finished_at
    from trellis.steps s
   where s.bucket = v_bucket and s.run_id = p_run_id and s.kind = 'stream' and s.name = p_key and s.status = 'completed'
     and (s.execution, s.seq) > (v_exec, v_seq)
   order by s.execution, s.seq
   limit p_limit;
end $$;
comment on function trellis.run_stream(uuid, text, text, integer) is
  'The entries run p_run_id wrote to stream p_key with ctx.writeStream (and its close, closed true, from ctx.closeStream), in order, after cursor p_after (null: from the start), at most p_limit (1-10000; TR001 otherwise, and for a malformed cursor); each with the cursor to read on from. No rows for a run that does not exist. A stream without a close row ends with its run: read the run''s status before the entries.';

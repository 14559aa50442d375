-- 300_checkpoints: the fenced write path of workers.
-- Owns: checkpoint_apply (lock -> fence -> dispatch, _checkpoint_apply), one
-- set-based function per op kind (_steps_record, _children_start, run_complete,
-- run_fail, _runs_cancelled, run_release, _runs_wait, _runs_continue), _runs_finished,
-- _wake_child_waiters, step_record and the one-run run_complete, run_fail, run_release.
-- Touches: trellis.runs (insert child runs; lease_expiries back to 0; metadata merged by
-- _runs_metadata_set, sql/420_metadata.sql; status only through _run_move,
-- sql/150_transitions.sql), trellis.steps (insert, update, delete), trellis.signals
-- (consume), trellis.events (step results), trellis.run_watches (deleted when
-- the awaited run ends; written by _runs_wait, sql/310_run_ends.sql).
-- Lock order: every run row a call may change is locked up front, in one
-- statement, in id order (FOR NO KEY UPDATE): the runs of the ops, the parents
-- of the runs it finishes (to wake them) and the runs a finish cancels (the
-- unfinished children and their subtrees), and the runs that wait on the
-- runs it finishes through run_watches, and the runs its waits wait on that
-- are not the waiters' children (_awaited_runs). Nothing later waits for a
-- run lock but two rare cases of decision 0039 (such a run _awaited_runs
-- could not tell, locked in _runs_wait; a watch written after the up-front
-- read, whose waiter _wake_child_waiters locks): a cycle through them is a
-- deadlock PostgreSQL breaks and the worker retries. Otherwise
-- the cancel cascade takes runs that appeared meanwhile with SKIP LOCKED (a
-- skipped run is reached again when its own parent ends), and the steps and
-- signals touched belong to runs already held. run_cancel, run_heartbeat_many
-- and _wake_child_waiters take their runs in id order too, so no two engine
-- calls can wait on each other in a cycle (see 500_control.sql).
--
-- checkpoint_apply takes the checkpoints of many runs at once, so a worker
-- commits every run's progress in one transaction (grouped commit). Each op is
-- fenced by its run's lease token; ops whose (run, token) is not held are
-- refused and returned. Ops of one run apply in this order: steps and child
-- starts, then the run's end (complete | fail | cancelled | release | wait |
-- pause | continue); a batch holds at most one end per run.
--
-- Ops (JSON objects; execution defaults to 1):
--   {op:'step', run, token, execution, seq, name, kind, status, output, error, attempts, ms, signal, delivered}
--        (delivered: the result's place in the order results reached the workflow code)
--   {op:'child', run, token, execution, seq, name, child, workflow, version, input, key, queue, close, metadata,
--    deadline, time_limit}  (the child run's deadline, or its time limit from now: decision 0031)
--   {op:'complete', run, token, output}        {op:'fail', run, token, error}
--        (a keyed run's unread signals from signal_with_start go to the key's
--        next run, sql/400_signals.sql _late_messages)
--   {op:'cancelled', run, token, error}
--   {op:'pause', run, token, error, seen_cancel, delay_ms, max_resumes}
--        (delay_ms: resumed by the trellis.resumes duty after it, decision 0038; max_resumes:
--        only while runs.auto_resumes is below it)
--   {op:'release', run, token, delay_ms, error, failure, seen_cancel, begun} -- pending again after delay_ms
--        (begun false: the worker never executed the run it claimed; its attempt is taken back)
--        (both due now instead when a cancel request is pending that the execution did not see)
--   {op:'wait', run, token, deadline, signal, seen_cancel} -- waiting until deadline (engine time; null = no
--        timer; a deadline already passed: pending now); older workers send delay_ms (from now) instead;
--        signal = newest signal id the execution saw; seen_cancel = it already knew of a cancel request
--   {op:'continue', run, token, input, keep}               -- continue-as-new

create or replace function trellis.checkpoint_apply(p_ops jsonb)
returns table (run_id uuid, token uuid) language plpgsql as $$
declare
  v_ops trellis.checkpoint_op[];
begin
  if jsonb_typeof(p_ops) is distinct from 'array' then
    perform trellis._raise('TR001', 'checkpoint_apply expects a JSON array of ops');
  end if;
  begin
    v_ops := array(select o from jsonb_populate_recordset(null::trellis.checkpoint_op, p_ops) as o);
  exception when data_exception then
    -- Off the hot path (the block's subtransaction writes nothing, so it
    -- takes no transaction id): an element that is not an object, or a
    -- field PostgreSQL cannot read as its type. Whole numbers written with
    -- a fraction (1.0) are read through numeric, as elsewhere; anything
    -- else is TR001, with what PostgreSQL said.
    v_ops := trellis._checkpoint_ops_read(p_ops);
  end;
  return query select * from trellis._checkpoint_apply(v_ops);
end $$;
comment on function trellis.checkpoint_apply(jsonb) is
  'Apply many fenced checkpoint ops (step, child, complete, fail, cancelled, release, wait, pause, continue) of many runs in one transaction; returns the (run_id, token) pairs that were stale (their ops were refused).';

-- checkpoint_apply's second reading of ops the plain one refused: integer
-- fields that are whole JSON numbers written with a fraction (seq 1.0)
-- made integers; then TR001 for what is still unreadable.
create or replace function trellis._checkpoint_ops_read(p_ops jsonb)
returns trellis.checkpoint_op[] language plpgsql as $$
declare
  v_fixed jsonb;
begin
  select coalesce(jsonb_agg(
           case when jsonb_typeof(e) = 'object' then
             e || coalesce((select jsonb_object_agg(f.key, trunc((f.value #>> '{}')::numeric))
                              from jsonb_each(e) f
                             where f.key in ('seq', 'attempts', 'ms', 'delay_ms', 'execution', 'signal', 'delivered')
                               and jsonb_typeof(f.value) = 'number'
                               and (f.value #>> '{}')::numeric = trunc((f.value #>> '{}')::numeric)), '{}')
           else e end order by n), '[]')
    into v_fixed from jsonb_array_elements(p_ops) with ordinality as a(e, n);
  return array(select o from jsonb_populate_recordset(null::trellis.checkpoint_op, v_fixed) as o);
exception when data_exception then
  perform trellis._raise('TR001', format('malformed checkpoint op: %s', left(sqlerrm, 200)));
end $$;
comment on function trellis._checkpoint_ops_read(jsonb) is
  'checkpoint_apply''s reading of ops after the plain one failed: whole numbers written with a fraction as integers, else TR001 naming what PostgreSQL could not read.';

-- Check the ops: TR001 for a malformed one, TR005 for a payload over the limit.
create or replace function trellis._checkpoint_check(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
declare
  v_max integer := trellis._setting_int('max_payload_bytes', 1048576);
  v_error_max integer := greatest(v_max, 65536);
  v_big text;
  v_long boolean;
begin
  if exists (select 1 from unnest(p_ops)
              where op is null
                 or op not in ('step', 'child', 'complete', 'fail', 'cancelled', 'release', 'wait', 'pause', 'continue')
                 or run is null or token is null
                 or (op in ('step', 'child') and (seq is null or seq < 0 or name is null))
                 or (op = 'step' and (status is null or kind is null
                                      or status not in ('running', 'waiting', 'completed', 'failed', 'retrying')
                                      or kind not in ('step', 'now', 'random', 'uuid', 'side_effect', 'sleep', 'signal', 'child', 'race', 'value', 'patch', 'stream', 'metadata')))
                 or (op = 'step' and delivered is not null and (delivered < 1 or status not in ('completed', 'failed')))
                 -- A metadata call (ctx.setMetadata) is written once: completed, its
                 -- output the patch, or failed (refused for its size).
                 or (op = 'step' and kind = 'metadata' and (status not in ('completed', 'failed')
                                                             or (status = 'completed' and jsonb_typeof(output) is distinct from 'object')))
                 or (op = 'child' and (child is null or workflow is null))
                 or (op = 'child' and close is not null and close not in ('cancel', 'abandon'))
                 -- A child's deadline or time limit (not both; a time limit
                 -- longer than zero and, as delay_ms, at most 1000 years).
                 or (op = 'child' and deadline is not null and time_limit is not null)
                 or time_limit <= interval '0' or time_limit > interval '1000 years'
                 -- A delay past 1000 years reaches past the last timestamp
                 -- PostgreSQL holds (22008 when the run's due time is set).
                 or delay_ms > 31536000000000
                 -- A waiting child call's output names its child, which
                 -- steps_child_wait_idx reads as a uuid (22P02 at the insert).
                 or (op = 'step' and kind = 'child' and status = 'waiting' and jsonb_typeof(output) = 'object'
                     and (output->>'child') !~ E'^(\\{[0-9a-fA-F]{4}(-?[0-9a-fA-F]{4}){7}\\}|[0-9a-fA-F]{4}(-?[0-9a-fA-F]{4}){7})$')
                 -- Last: the name, which _check_name raises TR001 for (the
                 -- executor evaluates an OR left to right, so a malformed op
                 -- gets the message above; either way the error is TR001).
                 -- In this statement, not one of its own (decision 0027).
                 or (op in ('step', 'child') and trellis._check_name(name, 'step') is null)) then
    perform trellis._raise('TR001', 'malformed checkpoint op: each needs op, run, token (and seq, name, a known kind and status for steps, a delivered number only on a completed or failed one, at least 1; child and workflow for child starts, close cancel or abandon, a deadline or a time_limit of more than zero and at most 1000 years; a waiting child step''s output.child a uuid); delay_ms at most 1000 years');
  end if;
  -- Sizes are the bytes of the JSON text, as in _check_payload and the
  -- workers' own check (src/protocol/serialize.ts), so both agree. An
  -- error may take up to 64 KiB whatever the limit: workers bound the
  -- errors they write (src/protocol/serialize.ts serializeError: about 21
  -- KB at most), and a run must always be able to record its failure (under
  -- a lowered limit a failure record refused as too large left the run
  -- running, its execution crashing on every claim).
  -- (One pass over the ops, as before the error's own bound.)
  -- The same pass says whether any output or input is long enough to be
  -- nested more than 1,016 deep (_check_json_depth); only then are those
  -- walked.
  select (array_agg(format('%s of run %s is %s bytes, over the limit of %s bytes', o.op, o.run,
                           case when o.error_size > v_error_max then o.error_size else o.size end,
                           case when o.error_size > v_error_max then v_error_max else v_max end))
            filter (where o.size > v_max or o.error_size > v_error_max))[1],
         coalesce(bool_or(o.size >= 2034), false)
    into v_big, v_long
    from (select o.op, o.run, greatest(octet_length(o.output::text), octet_length(o.input::text)) as size,
                 octet_length(o.error::text) as error_size
            from unnest(p_ops) o) o;
  if v_big is not null then
    perform trellis._raise('TR005', v_big);
  end if;
  if v_long then
    -- (16 levels for the engine's own records around a value: a signal
    -- call's of its payload, a stream entry, a reply.)
    perform trellis._check_json_depth(o.output, format('the output of %s of run %s', o.op, o.run), null, 16),
            trellis._check_json_depth(o.input, format('the input of %s of run %s', o.op, o.run), null, 16)
       from unnest(p_ops) o;
  end if;
end $$;
comment on function trellis._checkpoint_check(trellis.checkpoint_op[]) is
  'Raise TR001 for a malformed checkpoint op or TR005 for one whose output or input is over max_payload_bytes, or whose error is over the greater of max_payload_bytes and 64 KiB.';

-- Lock -> fence -> dispatch.
create or replace function trellis._checkpoint_apply(p_ops trellis.checkpoint_op[])
returns table (run_id uuid, token uuid) language plpgsql as $$
#variable_conflict use_column
declare
  v_ops       trellis.checkpoint_op[];
  v_held      text[];
  v_kinds     text[];
  v_finishing uuid[];
  v_lock      uuid[];
  v_stalled   uuid[];
begin
  perform trellis._checkpoint_check(p_ops);

  -- Lock up front, in id order, every run this call may change: the runs of
  -- the ops, the parents of runs that end here (woken) and the runs their end
  -- cancels. Then fence: an op applies only if its own (run, token) pair is
  -- held: two executions of one run (an old one that lost its lease, a new
  -- one) may share a batch.
  -- The ids are gathered into an array first, so the lock is one primary-key
  -- probe per id (an `in (subquery)` plan read the whole table), and the
  -- subtree walk runs only when a finishing run has children at all.
  v_finishing := array(select distinct o.run from unnest(p_ops) o where o.op in ('complete', 'fail', 'cancelled'));
  v_lock := array(select o.run from unnest(p_ops) o);
  if cardinality(v_finishing) > 0 then
    v_lock := v_lock || array(select p.parent_run_id from trellis.runs p
                               where p.id = any (v_finishing) and p.parent_run_id is not null);
    -- The runs that wait on them without being their parent (decision 0039).
    v_lock := v_lock || array(select w.waiter_id from trellis.run_watches w where w.run_id = any (v_finishing));
    if exists (select 1 from trellis.runs c where c.parent_run_id = any (v_finishing)) then
      v_lock := v_lock || array(select trellis._cancel_reach(v_finishing));
    end if;
  end if;
  -- Runs the batch's waits wait on without being their parent (decision
  -- 0039): _runs_wait locks them before it writes their watches; locked here
  -- with the rest, in one order, so a park and a cancel or an end of such a
  -- run lock them in the same order instead of deadlocking.
  if exists (select 1 from unnest(p_ops) o where o.op = 'wait') then
    v_lock := v_lock || trellis._awaited_runs(p_ops);
  end if;
  -- (One statement in id order on one node; per bucket on a distributed schema, sql/160_buckets.sql.)
  perform trellis._lock_runs(v_lock);
  -- A token matches only a running run (runs_row_check: lease_token is
  -- set exactly while status is running), so the fence needs no status
  -- condition; and it must have none: with `status = 'running'` a generic
  -- plan read every running run through a status index and compared each
  -- with every op (running runs x ops per checkpoint, issue 18), where
  -- this is one probe of the primary key (id, bucket) per op.
  select coalesce(array_agg(distinct r.id::text || '/' || r.lease_token::text), '{}'),
         array_agg(distinct r.id) filter (where r.lease_expiries > 0 and not (o.op = 'step' and o.status = 'running'))
    into v_held, v_stalled
    from unnest(p_ops) o
    join trellis.runs r on r.id = o.run and r.lease_token = o.token;
  v_ops := array(select o from unnest(p_ops) o where o.run::text || '/' || o.token::text = any (v_held));
  -- A step's saved progress (step.saveProgress: a running marker whose
  -- output has progress) is progress too when it differs from what the
  -- step's call holds (a marker carrying the same progress is not).
  if exists (select 1 from unnest(p_ops) o where o.op = 'step' and o.status = 'running' and jsonb_typeof(o.output) = 'object') then
    v_stalled := coalesce(v_stalled, '{}') || array(
      select r.id from unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
       where r.lease_expiries > 0 and o.op = 'step' and o.status = 'running'
         and jsonb_typeof(o.output) = 'object' and o.output ? 'progress'
         and not exists (select 1 from trellis.steps s
                          where s.bucket = r.bucket and s.run_id = r.id and s.execution = coalesce(o.execution, r.execution)
                            and s.seq = o.seq and jsonb_typeof(s.output) = 'object'
                            and s.output->'progress' is not distinct from o.output->'progress'));
  end if;
  -- Progress (any op but a step's attempt-started marker) ends a run's
  -- series of lease expiries (sql/250_recovery.sql _leases_expired).
  if cardinality(v_stalled) > 0 then
    update trellis.runs r set lease_expiries = 0 where r.id = any (v_stalled);
  end if;

  -- Dispatch: one set-based function per op kind, each only if its kind is
  -- present. Ops of one run apply in this order: steps and child starts,
  -- then the run's end.
  v_kinds := array(select distinct o.op from unnest(v_ops) o);
  if 'step' = any (v_kinds) then
    perform trellis._steps_record(v_ops);
  end if;
  if 'child' = any (v_kinds) then
    perform trellis._children_start(v_ops);
  end if;
  if 'complete' = any (v_kinds) then
    perform trellis.run_complete(v_ops);
  end if;
  if 'fail' = any (v_kinds) then
    perform trellis.run_fail(v_ops);
  end if;
  if 'cancelled' = any (v_kinds) then
    perform trellis._runs_cancelled(v_ops);
  end if;
  if v_kinds && array['release', 'pause'] then
    perform trellis.run_release(v_ops);
  end if;
  if 'wait' = any (v_kinds) then
    perform trellis._runs_wait(v_ops);
  end if;
  if 'continue' = any (v_kinds) then
    perform trellis._runs_continue(v_ops);
  end if;
  if v_kinds && array['complete', 'fail', 'cancelled'] then
    perform trellis._runs_finished(array(select o.run from unnest(v_ops) o where o.op in ('complete', 'fail', 'cancelled')));
  end if;
  if v_kinds && array['complete', 'fail'] then
    perform trellis._late_messages(v_ops);
  end if;
  if v_kinds && array['release', 'continue', 'wait', 'child'] then
    perform trellis._runs_ready(v_ops);
  end if;

  if cardinality(v_ops) < cardinality(p_ops) then
    return query
    select distinct o.run, o.token from unnest(p_ops) o
     where o.run::text || '/' || o.token::text <> all (v_held);
  end if;
end $$;
comment on function trellis._checkpoint_apply(trellis.checkpoint_op[]) is
  'checkpoint_apply on parsed ops: check, lock every run the ops may change in id order, fence by (run, token), dispatch the held ops to one set-based function per kind; returns the refused (run, token) pairs.';

-- Steps. A completed or failed checkpoint is never overwritten; a 'running'
-- marker (the attempt started), a 'waiting' one or a 'retrying' one is. A
-- step (kind step) that completes or fails here appends its event.
create or replace function trellis._steps_record(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
declare
  v_now    timestamptz := trellis.now();
  v_reply  record;
  v_outbox boolean := trellis._outbox_on();
  -- Whether any version declares hooks or event payloads (a probe of a partial index).
  v_declared boolean := exists (select 1 from trellis.workflows w where cardinality(w.hooks) > 0 or w.event_payloads);
  -- The versions whose events carry output and error, as name || chr(31) ||
  -- version, read only when some version declares them. The statement below
  -- gets them as a value: not a subquery, whose plan every checkpoint would
  -- set up (decision 0027), and not a function it calls per row, which a
  -- distributed planner runs on the shards, where it cannot read
  -- trellis.workflows ("cannot execute a distributed query from a query on
  -- a shard", docs/scaling.md).
  v_payloads text[];
  -- The events' transaction id, read here: Citus pushes the insert below down
  -- to the shards, where the column's default would give a worker node's
  -- transaction id (decision 0030).
  v_xid      xid8 := pg_catalog.pg_current_xact_id();
  v_meta     trellis.checkpoint_op[];
begin
  if v_declared then
    v_payloads := array(select w.name || pg_catalog.chr(31) || w.version from trellis.workflows w where w.event_payloads);
  end if;
  -- The metadata calls (ctx.setMetadata) this call records: not those a
  -- batch sent again after its commit carries (their call is recorded
  -- already), whose patches merged again would undo an operator's newer
  -- change of the same fields. Read before the upsert; the runs are locked,
  -- so no other writer records their calls meanwhile.
  if exists (select 1 from unnest(p_ops) o where o.op = 'step' and o.kind = 'metadata' and o.status = 'completed') then
    v_meta := array(select o from unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
                     where o.op = 'step' and o.kind = 'metadata' and o.status = 'completed'
                       and not exists (select 1 from trellis.steps s
                                        where s.bucket = r.bucket and s.run_id = o.run
                                          and s.execution = coalesce(o.execution, r.execution) and s.seq = o.seq));
  end if;
  with recorded as (
    insert into trellis.steps as s (bucket, run_id, execution, seq, name, kind, status, output, error, attempts,
                                    started_at, finished_at, delivered)
    select r.bucket, o.run, coalesce(o.execution, r.execution), o.seq, o.name, o.kind, o.status, o.output, o.error,
           coalesce(o.attempts, 1), v_now - make_interval(secs => coalesce(o.ms, 0) / 1000.0), v_now, o.delivered
      from unnest(p_ops) o join trellis.runs r on r.id = o.run and r.lease_token = o.token
     where o.op = 'step'
    on conflict (bucket, run_id, execution, seq) do update
       set status = excluded.status, output = excluded.output, error = excluded.error,
           attempts = excluded.attempts, started_at = excluded.started_at,
           finished_at = excluded.finished_at, delivered = excluded.delivered
     where s.status in ('running', 'waiting', 'retrying') and s.name = excluded.name
    returning s.bucket, s.run_id, s.execution, s.seq, s.name, s.kind, s.status, s.output, s.error, s.attempts)
  insert into trellis.events (bucket, run_id, workflow, version, key, kind, attempt, body, created_at, xid)
  select st.bucket, st.run_id, r.workflow, r.version, r.key, 'step_' || st.status, r.attempt,
         jsonb_build_object('seq', st.seq, 'name', st.name, 'attempts', st.attempts, 'execution', st.execution)
           || case when v_payloads is null or not (r.workflow || pg_catalog.chr(31) || r.version) = any (v_payloads)
                   then '{}'::jsonb
                   when st.status = 'completed' then jsonb_build_object('output', st.output)
                   else jsonb_build_object('error', st.error) end,
         v_now, v_xid
    from recorded st
    join trellis.runs r on r.bucket = st.bucket and r.id = st.run_id
   where v_outbox and st.kind = 'step' and st.status in ('completed', 'failed');

  -- A wait that consumed a signal marks it, so it is delivered once. (Only
  -- when an op carries one: the update, even of no row, opens the table and
  -- its indexes, which a one-run checkpoint pays alone: decision 0027.)
  if exists (select 1 from unnest(p_ops) o where o.op = 'step' and o.signal is not null) then
    update trellis.signals g set consumed_at = v_now, consumed_seq = o.seq
      from unnest(p_ops) o
     where o.op = 'step' and o.signal is not null and g.id = o.signal and g.run_id = o.run
       and g.consumed_at is null;
  end if;
  -- A reply (the value reply:<id>, ctx.reply: decision 0044) is kept on the
  -- request's signal row too, which outlives continue-as-new: the newest
  -- reply call of the history, as run_value reads it (the calls above are
  -- recorded by now), whatever order replies of one id were written in.
  -- Only when an op is one, as above.
  -- Run by run, each on its bucket: a function called inside the query
  -- would run on a distributed planner's shards, where it cannot query.
  if exists (select 1 from unnest(p_ops) o where o.op = 'step' and o.kind = 'value' and o.status = 'completed' and o.name like 'reply:%') then
    for v_reply in
      select r.bucket, r.id, array_agg(distinct substr(o.name, 7)) as ids
        from unnest(p_ops) o join trellis.runs r on r.id = o.run
       where o.op = 'step' and o.kind = 'value' and o.status = 'completed' and o.name like 'reply:%'
       group by r.bucket, r.id
    loop
      perform trellis._replies_kept(v_reply.bucket, v_reply.id, v_reply.ids);
    end loop;
  end if;
  -- Metadata set (ctx.setMetadata): merged into the runs' rows (sql/420_metadata.sql),
  -- only the calls recorded here (read before the upsert).
  if cardinality(v_meta) > 0 then
    perform trellis._runs_metadata_set(v_meta);
  end if;
  -- Values set (ctx.setValue): wake whoever waits for them (sql/410_values.sql).
  if exists (select 1 from unnest(p_ops) o where o.op = 'step' and o.kind in ('value', 'stream')) then
    perform trellis._notify_values(array(select distinct o.run from unnest(p_ops) o
                                          where o.op = 'step' and o.kind in ('value', 'stream') and o.status = 'completed'));
  end if;
end $$;
comment on function trellis._steps_record(trellis.checkpoint_op[]) is
  'The step ops of held runs: upsert their calls (a completed or failed one is never overwritten), append step_completed / step_failed events of durable steps, merge metadata calls into their runs'' metadata, mark consumed signals, notify trellis:run_value for values set and stream entries written (if watched).';

-- Child runs: started with the id the parent chose (a key already taken
-- attaches the parent to that run instead), and the parent's call waits on it.
create or replace function trellis._children_start(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
declare
  v_now      timestamptz := trellis.now();
  v_child    trellis.checkpoint_op;
  v_child_id uuid;
  v_bucket   integer;
  v_exec     integer;
begin
  for v_child in select * from unnest(p_ops) o where o.op = 'child' loop
    -- Already recorded (a retried batch whose first attempt committed): a no-op.
    select r.bucket, coalesce(v_child.execution, r.execution) into v_bucket, v_exec
      from trellis.runs r where r.id = v_child.run;
    continue when exists (select 1 from trellis.steps s
                           where s.bucket = v_bucket and s.run_id = v_child.run and s.execution = v_exec
                             and s.seq = v_child.seq);
    -- The id the parent's worker chose must be new: run ids are unique
    -- across buckets, which the primary key (id, bucket) alone does not hold.
    if exists (select 1 from trellis.runs r where r.id = v_child.child) then
      perform trellis._raise('TR001', format('child run id %s of run %s is already a run''s id', v_child.child, v_child.run));
    end if;
    v_child_id := trellis._run_start(v_child.workflow, v_child.input,
      jsonb_strip_nulls(jsonb_build_object('version', v_child.version, 'key', v_child.key, 'queue', v_child.queue,
                                           'metadata', v_child.metadata, 'deadline', v_child.deadline,
                                           'time_limit', v_child.time_limit)),
      v_child.child, v_child.run, v_child.seq, v_child.close, null, null, null);
    insert into trellis.steps as s (bucket, run_id, execution, seq, name, kind, status, output, attempts, started_at, finished_at)
    values (v_bucket, v_child.run, v_exec, v_child.seq, v_child.name, 'child', 'waiting',
            jsonb_build_object('child', v_child_id), 1, v_now, v_now)
    on conflict (bucket, run_id, execution, seq) do nothing;
  end loop;
end $$;
comment on function trellis._children_start(trellis.checkpoint_op[]) is
  'The child ops of held runs: start each child run (its id chosen by the parent''s worker) and record the parent''s waiting call.';

-- The unfinished runs that the runs of the batch's wait ops wait on (their
-- waiting child calls, recorded before or in this batch) and whose parent
-- is not one of those runs: what _runs_wait will lock to write watches.
-- Read without locks (the caller locks them); a run it misses (a parent
-- in the batch waiting on another's child) is locked by _runs_wait.
create or replace function trellis._awaited_runs(p_ops trellis.checkpoint_op[])
returns uuid[] language plpgsql as $$
declare
  v_waiters uuid[];
  v_kids    uuid[];
begin
  v_waiters := array(select distinct o.run from unnest(p_ops) o where o.op = 'wait');
  v_kids := array(
    select (s.output->>'child')::uuid
      from trellis.runs p
      join trellis.steps s on s.bucket = p.bucket and s.run_id = p.id and s.execution = p.execution
     where p.id = any (v_waiters) and s.status = 'waiting' and s.kind = 'child'
    union
    select (o.output->>'child')::uuid from unnest(p_ops) o
     where o.op = 'step' and o.kind = 'child' and o.status = 'waiting' and o.run = any (v_waiters));
  if cardinality(v_kids) = 0 then
    return '{}';
  end if;
  return array(select c.id from trellis.runs c
                where c.id = any (v_kids) and c.status not in ('completed', 'failed', 'cancelled')
                  and (c.parent_run_id is null or c.parent_run_id <> all (v_waiters)));
end $$;
comment on function trellis._awaited_runs(trellis.checkpoint_op[]) is
  'The unfinished runs the runs of wait ops wait on through child calls and that are not their children (decision 0039): checkpoint_apply locks them up front.';

-- Finished runs: wake the runs waiting on them as children, cancel their
-- own unfinished children (unless abandoned), and notify their ids.
create or replace function trellis._runs_finished(p_finished uuid[])
returns void language plpgsql as $$
begin
  if cardinality(p_finished) is null or cardinality(p_finished) = 0 then
    return;
  end if;
  -- Most finished runs have neither a parent nor children: two index probes
  -- then stand in for two calls (the latency of a one-run checkpoint, issue 18).
  if exists (select 1 from trellis.runs c where c.id = any (p_finished) and c.parent_run_id is not null)
     or exists (select 1 from trellis.run_watches w where w.run_id = any (p_finished)) then
    perform trellis._wake_child_waiters(p_finished);
  end if;
  if exists (select 1 from trellis.runs c where c.parent_run_id = any (p_finished)) then
    perform trellis._cancel_cascade(p_finished, 'parent run finished');
  end if;
  if cardinality(p_finished) = 1 then
    perform trellis._notify_finished(p_finished[1]::text);
    return;
  end if;
  perform trellis._notify_watched('trellis:run_finished', p_finished);
end $$;
comment on function trellis._runs_finished(uuid[]) is
  'After runs ended: wake their waiting parents and the runs that wait on them through run_watches, cancel their cancel-children, notify trellis:run_finished (ids in chunks of 200) if a session watches (_notify_finished).';

-- Wake the workers of queues that got a due run from these ops.
create or replace function trellis._runs_ready(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
declare
  v_queue text;
begin
  for v_queue in
    select distinct r.queue from unnest(p_ops) o join trellis.runs r on r.id = o.run
     where (o.op = 'release' and coalesce(o.delay_ms, 0) <= 0) or o.op = 'continue'
        or (o.op = 'wait' and r.status = 'pending')
    union
    select distinct c.queue from unnest(p_ops) o join trellis.runs c on c.id = o.child
     where o.op = 'child' and c.status = 'pending'
  loop
    perform pg_notify('trellis:run_ready', v_queue);
  end loop;
end $$;
comment on function trellis._runs_ready(trellis.checkpoint_op[]) is
  'Notify trellis:run_ready for each queue of a run these ops made due now (an immediate release, a continue, a wait that woke at once, a pending child).';

-- Runs waiting (as parents) on any of p_finished become pending now. Every
-- caller has already locked those parents (checkpoint_apply and run_cancel
-- lock them up front); the lock here is taken in id order all the same and
-- never skips: a parent locked by another transaction is waited for, not
-- missed. Only waiting calls of a parent's current execution count.
create or replace function trellis._wake_child_waiters(p_finished uuid[])
returns void language plpgsql as $$
declare
  v_now     timestamptz := trellis.now();
  v_parents uuid[];
  v_woken   uuid[];
  v_moves   trellis.run_move[];
  v_queue   text;
begin
  v_parents := array(select distinct c.parent_run_id from trellis.runs c
                      where c.id = any (p_finished) and c.parent_run_id is not null);
  -- And the runs that wait on them without being their parent (decision
  -- 0039): their watches end here. A watch written after the caller's
  -- up-front read (its writer held one of p_finished and committed before
  -- the caller's lock was granted) is read here too; its waiter is locked
  -- now, after the caller's locks: a cycle is a deadlock PostgreSQL breaks
  -- and the caller retries (never skipped: a waiter missed here would wait
  -- for ever).
  if exists (select 1 from trellis.run_watches w where w.run_id = any (p_finished)) then
    v_parents := array(select distinct x from unnest(v_parents || array(
                   select w.waiter_id from trellis.run_watches w where w.run_id = any (p_finished))) x);
    delete from trellis.run_watches w where w.run_id = any (p_finished);
  end if;
  if cardinality(v_parents) = 0 then
    return;
  end if;
  perform trellis._lock_runs(v_parents);
  -- The parents are found (runs joined to their own steps, by bucket), then
  -- moved: two statements, so a distributed planner runs the read on the
  -- parents' shards and the move as the one-bucket updates of _run_move.
  v_woken := array(
    select p.id from trellis.runs p
     where p.id = any (v_parents) and p.status = 'waiting'
       and exists (select 1 from trellis.steps w
                    where w.bucket = p.bucket and w.run_id = p.id and w.execution = p.execution
                      and w.status = 'waiting' and w.kind = 'child'
                      and (w.output->>'child')::uuid = any (p_finished)));
  if cardinality(v_woken) = 0 then
    return;
  end if;
  v_moves := array(
    select row(i, 'pending', 'resumed', v_now, null, null, null, null, null, null, null, null,
               null, null, null, null, null, '{"reason":"child"}')::trellis.run_move
      from unnest(v_woken) i);
  for v_queue in select distinct woken.queue from trellis._run_move(v_moves) woken loop
    perform pg_notify('trellis:run_ready', v_queue);
  end loop;
end $$;
comment on function trellis._wake_child_waiters(uuid[]) is
  'Make runs that wait (in their current execution) on any of the finished runs p_finished pending now: their parents and their watchers (run_watches, whose rows for p_finished are deleted). Locks them in id order; callers lock them first.';

-- Apply one op through the batch path (lock, fence, dispatch), raising
-- TR002/TR003/TR004 if it was refused.
create or replace function trellis._checkpoint_one(p_op trellis.checkpoint_op)
returns void language plpgsql as $$
begin
  if exists (select 1 from trellis._checkpoint_apply(array[p_op])) then
    perform trellis._raise_unheld(p_op.run, p_op.token);
  end if;
end $$;
comment on function trellis._checkpoint_one(trellis.checkpoint_op) is
  'Apply one checkpoint op, raising TR002/TR003/TR004 if it was refused.';

create or replace function trellis.step_record(
  p_run_id uuid, p_token uuid, p_seq integer, p_name text, p_status text,
  p_output jsonb default null, p_error jsonb default null, p_attempts integer default 1,
  p_kind text default 'step')
returns void language plpgsql as $$
declare
  v_op trellis.checkpoint_op;
begin
  if p_status is null or p_status not in ('running', 'waiting', 'completed', 'failed', 'retrying') then
    perform trellis._raise('TR001', format('step status %s is not running, waiting, completed, failed or retrying', trellis._quote(p_status)));
  end if;
  if p_kind is null or p_kind not in ('step', 'now', 'random', 'uuid', 'side_effect', 'sleep', 'signal', 'child', 'race', 'value', 'patch', 'stream', 'metadata') then
    perform trellis._raise('TR001', format('step kind %s is unknown', trellis._quote(p_kind)));
  end if;
  v_op.op := 'step'; v_op.run := p_run_id; v_op.token := p_token; v_op.seq := p_seq; v_op.name := p_name;
  v_op.kind := p_kind; v_op.status := p_status; v_op.output := p_output; v_op.error := p_error;
  v_op.attempts := p_attempts;
  perform trellis._checkpoint_one(v_op);
end $$;
comment on function trellis.step_record(uuid, uuid, integer, text, text, jsonb, jsonb, integer, text) is
  'Checkpoint call p_seq of the current execution of a run held under p_token: running (attempt p_attempts started), completed, failed or retrying. A completed or failed step is never overwritten.';

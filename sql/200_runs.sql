-- 200_runs: starting and claiming runs.
-- Owns: run_start (_run_start), run_start_claimed, run_claim (with _queue_pick of sql/230_queue_claim.sql for queues with flow control), run_next_due, run_heartbeat, run_heartbeat_many, run_requests.
-- Touches: trellis.runs (insert; status changes through _run_move), trellis.events
-- (a new run's event), trellis.run_deadlines (insert: a run started with a
-- deadline), trellis.queues (a start into a queue other than its version's
-- default inserts the queue's row on first use), trellis.workflows and
-- trellis.steps (read).
-- Lock order: the run, then a new queue row (a start inserts its queue's
-- row only once its run's insert went through: a repeated key writes
-- nothing), then its new deadline row; runs rows in id order (claims take
-- them with SKIP LOCKED).

-- The body of run_start, also used by checkpoint_apply to start child runs
-- (with an id chosen by the parent's worker and a link to the parent call)
-- and by run_start_claimed: with p_worker, a run due now is inserted already
-- leased to that worker under p_token (its attempt 1, as a claim would
-- make it) and no worker is notified.
create or replace function trellis._run_start(p_workflow text, p_input jsonb, p_options jsonb,
  p_id uuid, p_parent uuid, p_parent_seq integer, p_close text,
  p_worker text, p_token uuid, p_lease interval)
returns uuid language plpgsql as $$
declare
  -- A payload's JSON text, for its size and depth checks.
  v_text     text;
  v_now      timestamptz := trellis.now();
  v_options  jsonb := coalesce(p_options, '{}');
  v_bad      text;
  v_version  text := v_options->>'version';
  v_default  text;
  v_queue    text;
  v_key      text := v_options->>'key';
  v_policy   text := coalesce(v_options->>'key_policy', 'return');
  v_held     text;
  v_begun    boolean;
  v_try      integer;
  v_held_version   text;
  v_held_queue     text;
  v_held_execution integer;
  v_ckey     text := v_options->>'concurrency_key';
  v_priority integer := 0;
  v_run_at   timestamptz := v_now;
  v_deadline timestamptz;
  v_limit    interval;
  -- A JSON null for an option is the option not given (as for key,
  -- queue, version, concurrency_key, key_policy, deadline, time_limit).
  v_metadata jsonb := coalesce(nullif(v_options->'metadata', 'null'::jsonb), '{}');
  v_id       uuid;
  v_bucket   integer;
  v_expires  timestamptz;
  v_got      uuid;
  v_status   text;
  v_claim    boolean;
  v_qlimited boolean;
  v_new_q    boolean;
  -- The input shape of the version (sql/050_shapes.sql) is checked, and so
  -- read, only when needed: not for a child, whose input its parent's
  -- worker validated (its checkpoint must not fail here), nor with
  -- input_checked (the TypeScript client sets it when it has validated the
  -- input against the workflow's own schema), so those starts never
  -- detoast a large shape.
  v_check    boolean := p_parent is null and (v_options->'input_checked') is distinct from 'true'::jsonb;
  v_shape    jsonb;
  v_path     jsonpath;
  v_max      integer;
  v_buckets  integer;
  v_outbox   boolean;
  v_set      text[];
  v_late     text;
begin
  -- On the start path every statement counts (issue 18): checks are
  -- assignments and plain conditions, which PL/pgSQL evaluates without the
  -- executor start-up a PERFORM or a query pays; the slower statements run
  -- only to word an error.
  p_workflow := trellis._check_name(p_workflow, 'workflow');
  if p_worker is not null then
    if length(p_worker) = 0 or length(p_worker) > 200 then
      perform trellis._raise('TR001', 'worker id must be 1-200 characters');
    end if;
    perform trellis._check_lease(p_lease);
  end if;
  if jsonb_typeof(v_options) <> 'object' then
    perform trellis._raise('TR001', 'run_start options must be a JSON object');
  end if;
  if v_options - '{key,queue,priority,run_at,metadata,version,input_checked,coalesce_notify,concurrency_key,deadline,time_limit,key_policy}'::text[] <> '{}'::jsonb then
    select string_agg(k, ', ') into v_bad from jsonb_object_keys(v_options) as k
     where k not in ('key', 'queue', 'priority', 'run_at', 'metadata', 'version', 'input_checked', 'coalesce_notify', 'concurrency_key',
                     'deadline', 'time_limit', 'key_policy');
    perform trellis._raise('TR001', format('unknown run_start option(s): %s', trellis._quote(v_bad)));
  end if;
  if jsonb_typeof(v_options->'version') not in ('string', 'null') or jsonb_typeof(v_options->'queue') not in ('string', 'null') then
    perform trellis._raise('TR001', 'run_start options version and queue must be strings');
  end if;
  if v_version is not null then
    v_version := trellis._check_name(v_version, 'version');
    select queue, case when v_check then input_schema end, case when v_check then input_path end
      into v_default, v_shape, v_path from trellis.workflows where name = p_workflow and version = v_version;
    if not found then
      perform trellis._raise('TR002', format('unknown workflow %L version %L', p_workflow, v_version));
    end if;
  else
    select version, queue, case when v_check then input_schema end, case when v_check then input_path end
      into v_version, v_default, v_shape, v_path from trellis.workflows
     where name = p_workflow order by registered_at desc, version desc limit 1;
    if not found then
      perform trellis._raise('TR002', format('unknown workflow %L: no worker or client has registered it', p_workflow));
    end if;
  end if;
  v_queue := trellis._check_name(coalesce(v_options->>'queue', v_default), 'queue');
  if v_options ? 'key' and jsonb_typeof(v_options->'key') not in ('string', 'null') then
    perform trellis._raise('TR001', 'run key must be a string');
  end if;
  if v_key is not null and (length(v_key) = 0 or length(v_key) > 512) then
    perform trellis._raise('TR001', 'run key must be 1-512 characters');
  end if;
  -- What a start does with a key another run holds (decision 0036).
  if v_options ? 'key_policy' and (jsonb_typeof(v_options->'key_policy') not in ('string', 'null')
     or v_policy not in ('return', 'reuse', 'replace', 'supersede')) then
    perform trellis._raise('TR001', format('key_policy must be return, reuse, replace or supersede, not %s', trellis._quote(v_options->>'key_policy')));
  end if;
  if v_policy <> 'return' and v_key is null then
    perform trellis._raise('TR001', format('key_policy %s needs a key', v_policy));
  end if;
  if v_options ? 'concurrency_key' and (jsonb_typeof(v_options->'concurrency_key') not in ('string', 'null')
     or length(v_ckey) = 0 or length(v_ckey) > 200) then
    perform trellis._raise('TR001', 'concurrency_key must be a string of 1-200 characters');
  end if;
  if v_options ? 'priority' and jsonb_typeof(v_options->'priority') <> 'null' then
    if jsonb_typeof(v_options->'priority') <> 'number'
       or (v_options->>'priority')::numeric not between -32768 and 32767
       or (v_options->>'priority')::numeric <> trunc((v_options->>'priority')::numeric) then
      perform trellis._raise('TR001', 'priority must be an integer between -32768 and 32767');
    end if;
    -- Through numeric: a whole number may be written 1.0 (integer's own
    -- input refuses that, 22P02).
    v_priority := (v_options->>'priority')::numeric::integer;
  end if;
  if v_options ? 'run_at' and jsonb_typeof(v_options->'run_at') <> 'null' then
    begin
      v_run_at := (v_options->>'run_at')::timestamptz;
    exception when others then
      perform trellis._raise('TR001', format('run_at %s is not a timestamp', trellis._quote(v_options->>'run_at')));
    end;
    if v_run_at is null or not isfinite(v_run_at) or v_run_at > '275760-09-13T00:00:00Z' then
      perform trellis._raise('TR001', 'run_at must be a finite timestamp before 275760-09-13 (the last one JavaScript holds)');
    end if;
  end if;
  -- The run's deadline (decision 0031): a time, or a time limit from its
  -- start (run_at, or now for a run_at already past). A top-level start's
  -- deadline must come after that; a child's is taken as it is (its
  -- parent's checkpoint must not fail here: one already past is cancelled
  -- at the next look of the deadlines duty).
  if v_options ? 'deadline' or v_options ? 'time_limit' then
    if jsonb_typeof(v_options->'deadline') not in ('string', 'null') then
      perform trellis._raise('TR001', 'deadline must be a timestamp, as a string');
    end if;
    v_limit := trellis._time_limit(v_options->'time_limit');
    if v_options->>'deadline' is not null and v_limit is not null then
      perform trellis._raise('TR001', 'give a run either a deadline or a time_limit, not both');
    end if;
    begin
      v_deadline := coalesce(greatest(v_run_at, v_now) + v_limit, (v_options->>'deadline')::timestamptz);
    exception when others then
      perform trellis._raise('TR001', case when v_limit is null
                                           then format('deadline %s is not a timestamp', trellis._quote(v_options->>'deadline'))
                                           else format('time_limit %s ends past the last timestamp', trellis._quote(v_options->>'time_limit')) end);
    end;
    if not isfinite(v_deadline) or v_deadline > '275760-09-13T00:00:00Z' then
      perform trellis._raise('TR001', 'deadline must be a finite timestamp before 275760-09-13 (the last one JavaScript holds)');
    end if;
    -- Raised below, once the key's run is known: a start repeated with its
    -- key returns that run, even after the deadline it gave has passed.
    if p_parent is null and v_deadline <= greatest(v_run_at, v_now) then
      v_late := format('deadline %s is not after the run''s start at %s', v_deadline, greatest(v_run_at, v_now));
    end if;
  end if;
  if jsonb_typeof(v_metadata) <> 'object' then
    perform trellis._raise('TR001', 'metadata must be a JSON object');
  end if;
  if v_metadata ? 'foreign_id' then
    perform trellis._check_foreign_id_field(v_metadata, 'metadata');
  end if;
  -- The settings a start reads (the payload limit, the bucket count, the
  -- outbox), in one statement: _setting_int, _bucket_count and _outbox_on
  -- inlined (a function call and a query each, on every start). A stored
  -- limit that is not an integer is left to _setting_int to report (TR008).
  select array[max(s.value #>> '{}') filter (where s.key = 'max_payload_bytes'),
               max(s.value #>> '{}') filter (where s.key = 'buckets'),
               max(s.value #>> '{}') filter (where s.key = 'events')]
    into v_set from trellis.settings s where s.key in ('max_payload_bytes', 'buckets', 'events');
  v_max := case when v_set[1] is null then 1048576
                when v_set[1] ~ E'^\\s*[0-9]{1,9}\\s*$' then v_set[1]::integer
                else trellis._setting_int('max_payload_bytes', 1048576) end;
  v_buckets := coalesce(v_set[2]::numeric::integer, 64);  -- a stored 64.0 as 64 (_bucket_count)
  v_outbox := coalesce(v_set[3]::boolean, true);
  -- trellis._check_payload's tests, with the limit read once for both
  -- (the depth only of text long enough to be that deep).
  v_text := coalesce(p_input, 'null')::text;
  if octet_length(v_text) > v_max then
    perform trellis._check_payload(coalesce(p_input, 'null'), 'input');
  elsif octet_length(v_text) >= 2002 then
    perform trellis._check_json_depth(p_input, 'input', v_text);
  end if;
  v_text := v_metadata::text;
  if octet_length(v_text) > v_max then
    perform trellis._check_payload(v_metadata, 'metadata');
  elsif octet_length(v_text) >= 2002 then
    perform trellis._check_json_depth(v_metadata, 'metadata', v_text);
  end if;
  if v_options ? 'input_checked' and jsonb_typeof(v_options->'input_checked') not in ('boolean', 'null') then
    perform trellis._raise('TR001', 'input_checked must be true or false');
  end if;
  if v_options ? 'coalesce_notify' and jsonb_typeof(v_options->'coalesce_notify') not in ('boolean', 'null') then
    perform trellis._raise('TR001', 'coalesce_notify must be true or false');
  end if;
  -- v_shape is null unless v_check (see above).
  if v_shape is not null then
    v_bad := trellis._input_error(v_shape, v_path, coalesce(p_input, 'null'));
    if v_bad is not null then
      perform trellis._raise('TR001', format('input of %s version %s does not match its schema: %s',
                                             p_workflow, v_version, v_bad));
    end if;
  end if;
  -- The queue's row (sql/220_queues.sql). The default queue of the version
  -- has one from its registration (workflow_register), and a start into it
  -- reads nothing more, unless it is leased at once (p_worker: the row's
  -- flow control decides). Any other queue's row is made on first use with
  -- the defaults (no flow control): one primary-key probe per start, and
  -- the insert (after the run's, below) only while the queue has no row.
  -- (Scalars, not a row variable of trellis.queues's type: compiling one
  -- looks the type's columns up under a lock on the table, so a new
  -- session's first start would wait behind a lock on trellis.queues.)
  v_new_q := false;
  v_qlimited := false;
  if p_worker is not null or v_queue is distinct from v_default then
    select trellis._queue_limited_by(q.concurrency, q.key_concurrency, q.rate_limit, q.fair, q.paused)
      into v_qlimited from trellis.queues q where q.name = v_queue;
    v_new_q := not found;
  end if;
  -- A queue with flow control is entered only through its claim: a start
  -- into it is never leased at once.
  v_claim := p_worker is not null and v_run_at <= v_now and not coalesce(v_qlimited, false);

  -- The bucket (sql/000_support.sql _bucket): of the key, else the parent's,
  -- else of the id.
  v_id := coalesce(p_id, pg_catalog.gen_random_uuid());
  if v_key is not null then
    v_bucket := trellis._bucket(p_workflow, v_key, null, v_buckets);
  else
    if p_parent is not null then
      select p.bucket into v_bucket from trellis.runs p where p.id = p_parent;
    end if;
    v_bucket := coalesce(v_bucket, trellis._bucket(null, null, v_id, v_buckets));
  end if;
  if v_late is not null then
    if v_key is not null then
      select r.id, r.status into v_got, v_held from trellis.runs r where r.bucket = v_bucket and r.workflow = p_workflow and r.key = v_key;
      -- (A finished holder would give its key up to this start, and
      -- 'supersede' would cancel an unfinished one: it starts nothing.)
      if v_got is not null and (v_policy = 'return'
                                or (v_policy <> 'supersede' and v_held not in ('completed', 'failed', 'cancelled'))) then
        return v_got;
      end if;
    end if;
    perform trellis._raise('TR001', v_late);
  end if;

  -- A keyed start that finds its key held (decision 0036): 'return' (the
  -- default) returns the holder, whatever its status. 'reuse' takes the key
  -- of a finished holder (its key moves to former_key, under its row lock,
  -- and the insert is tried again; a holder retried meanwhile is no longer
  -- finished and is returned), and returns one that has not finished.
  -- 'replace' is 'reuse', and a holder that has not begun (pending and never
  -- claimed: started_at null, so not a run that continued as new either;
  -- not a fork) takes this start's input, run_at, priority and metadata.
  -- 'supersede' (cancel in progress) is 'reuse', and a holder that has not
  -- finished is cancelled (as run_cancel: its cancel-children too; one that
  -- has begun ends after its code sees CancelledError) and gives its key up
  -- at once, to this start.
  -- A start that moved the key holds the old row's lock until it commits,
  -- so no other start takes the key between its update and its insert; a
  -- round is lost only to a start that moved the key first and whose new
  -- run has finished again by the next look (a race lost to a run that
  -- ended meanwhile, each round), so the rounds are bounded generously.
  -- Superseding starts of one key take turns (a transaction advisory lock
  -- on the workflow and key) before they touch a run: each finds the
  -- holder the one before it left and cancels that run alone. Without the
  -- turn, a start that waited for another's holder (locked, cancelled,
  -- key moved) found the key on that start's new run in a second round
  -- and locked it too, holding the first run's lock: two run locks out of
  -- id order, which deadlocked with workers' checkpoints (an outside audit).
  if v_policy = 'supersede' then
    perform trellis._supersede_turn(p_workflow, v_key);
  end if;
  for v_try in 1 .. 100 loop
    insert into trellis.runs (bucket, id, workflow, version, key, concurrency_key, queue, priority, status, input, metadata,
                              run_at, created_at, updated_at, parent_run_id, parent_seq, parent_close,
                              attempt, lease_token, lease_owner, lease_expires_at, started_at, deadline_at)
    values (v_bucket, v_id, p_workflow, v_version, v_key, v_ckey, v_queue, v_priority,
            case when v_claim then 'running' else 'pending' end,
            coalesce(p_input, 'null'), v_metadata, v_run_at, v_now, v_now, p_parent, p_parent_seq,
            coalesce(p_close, 'cancel'),
            case when v_claim then 1 else 0 end,
            case when v_claim then p_token end,
            case when v_claim then p_worker end,
            case when v_claim then v_now + p_lease end,
            case when v_claim then v_now end, v_deadline)
    on conflict (bucket, workflow, key) where key is not null do nothing
    returning id into v_got;
    exit when v_got is not null;
    -- Another start with this key won (possibly concurrently: the insert
    -- waited for it to commit). Its run is returned, unless the policy says otherwise.
    select r.id, r.status, r.started_at is not null or r.forked_from is not null into v_got, v_held, v_begun
      from trellis.runs r where r.bucket = v_bucket and r.workflow = p_workflow and r.key = v_key;
    if v_got is null then
      continue;  -- the holder let the key go after the insert looked: try again
    end if;
    if v_policy = 'return' then
      return v_got;
    end if;
    if v_held in ('completed', 'failed', 'cancelled') then
      update trellis.runs set former_key = key, key = null
       where bucket = v_bucket and id = v_got and key = v_key and status in ('completed', 'failed', 'cancelled');
      v_got := null;
      continue;
    end if;
    if v_policy = 'supersede' then
      -- _run_cancel locks the holder, its parent, the runs its cancel
      -- reaches and its watchers in id order, up front, as run_cancel does.
      -- A holder that finished since the look above is not cancelled (TR004
      -- from a completed or failed run; TR002 if it was purged too): its key
      -- is free all the same.
      begin
        perform trellis._run_cancel(v_got, format('superseded by run %s (a start with key_policy supersede)', v_id), null);
      exception when sqlstate 'TR004' or sqlstate 'TR002' then
        null;
      end;
      update trellis.runs set former_key = key, key = null
       where bucket = v_bucket and id = v_got and key = v_key;
      v_got := null;
      continue;
    end if;
    if v_policy = 'replace' and v_held = 'pending' and not v_begun then
      update trellis.runs set input = coalesce(p_input, 'null'), run_at = v_run_at, priority = v_priority,
                              metadata = v_metadata, updated_at = v_now
       where bucket = v_bucket and id = v_got and status = 'pending' and started_at is null and forked_from is null
      returning version, queue, execution into v_held_version, v_held_queue, v_held_execution;
      if found then
        if v_outbox then
          insert into trellis.events (bucket, run_id, workflow, version, key, kind, attempt, body, created_at, xid)
          values (v_bucket, v_got, p_workflow, v_held_version, v_key, 'replaced', 0,
                  jsonb_build_object('from', 'pending', 'to', 'pending', 'execution', v_held_execution), v_now,
                  pg_catalog.pg_current_xact_id());
        end if;
        if v_run_at <= v_now then
          perform pg_notify('trellis:run_ready', v_held_queue);
        end if;
      end if;
    end if;
    return v_got;
  end loop;
  if v_got is null then
    -- Only under a churn of runs that end as soon as they start (see
    -- above); a serialization failure, which callers retry.
    raise exception 'trellis: the key of this start changed hands 100 times while it looked; start again'
      using errcode = '40001';
  end if;
  -- A new queue's row, once the run is in: a start whose key was taken
  -- writes nothing. Concurrent first starts of a queue both insert; the
  -- later waits for the earlier's transaction and then does nothing (or
  -- inserts, if that one rolled back). No cycle: a start waits on another's
  -- run only through its key, before it inserts a queue row of its own.
  if v_new_q then
    insert into trellis.queues (name, created_at, updated_at) values (v_queue, v_now, v_now)
    on conflict (name) do nothing;
  end if;
  -- A deadline for the duty to look at (sql/500_control.sql run_cancel_overdue).
  if v_deadline is not null then
    insert into trellis.run_deadlines (bucket, run_id, deadline_at) values (v_bucket, v_id, v_deadline);
  end if;
  -- The new run's first status, checked against the [*] transitions of
  -- trellis.run_transitions (sql/150_transitions.sql), and its event. A
  -- single-row insert of values (no INSERT ... SELECT from another table):
  -- on a distributed outbox it is routed to the run's bucket (docs/scaling.md).
  v_status := case when v_claim then 'running' else 'pending' end;
  if not exists (select 1 from trellis.run_transitions t
                  where t.from_status = '[*]' and t.to_status = v_status and t.event = 'started') then
    perform trellis._raise('TR004', format('illegal run transition: a new run cannot be %s', v_status));
  end if;
  if v_outbox then
    insert into trellis.events (bucket, run_id, workflow, version, key, kind, attempt, body, created_at, xid)
    values (v_bucket, v_id, p_workflow, v_version, v_key, 'started', case when v_claim then 1 else 0 end,
            jsonb_build_object('to', v_status, 'execution', 1), v_now, pg_catalog.pg_current_xact_id());
  end if;
  -- The wake-up gate (sql/210_wakeups.sql): a start that commits at once
  -- (coalesce_notify) holds its queue's gate shared and skips the NOTIFY
  -- while another run of the same queue, workflow and version is pending
  -- and due.
  if v_run_at <= v_now and not v_claim then
    if (v_options->'coalesce_notify') = 'true'::jsonb then
      perform pg_advisory_xact_lock_shared(1414679639, hashtext(v_queue));
      if exists (select 1 from trellis.runs r
                  where r.status = 'pending' and r.queue = v_queue and r.workflow = p_workflow
                    and r.version = v_version and r.run_at <= v_now and r.id <> v_id) then
        return v_id;
      end if;
    end if;
    perform pg_notify('trellis:run_ready', v_queue);
  end if;
  -- A leased start whose insert waited (on another transaction's start
  -- with the same key, which then rolled back) counts its lease from now,
  -- not from the transaction's start, so the worker gets all of it.
  -- (The expiry is computed first: no volatile function in an UPDATE of a
  -- run-scoped table, decision 0024.)
  if v_claim and pg_catalog.clock_timestamp() - pg_catalog.now() > interval '1 second' then
    v_expires := trellis.now() + (pg_catalog.clock_timestamp() - pg_catalog.now()) + p_lease;
    update trellis.runs set lease_expires_at = v_expires
     where bucket = v_bucket and id = v_id;
  end if;
  return v_id;
end $$;
comment on function trellis._run_start(text, jsonb, jsonb, uuid, uuid, integer, text, text, uuid, interval) is
  'run_start with an optional run id and parent link (child runs), and optionally leased at once to a worker (run_start_claimed).';

create or replace function trellis.run_start(p_workflow text, p_input jsonb, p_options jsonb default '{}')
returns uuid language plpgsql as $$
begin
  -- PL/pgSQL, not a SQL wrapper: a SQL function with a SET clause is never
  -- inlined, and is parsed and planned again on every call.
  return trellis._run_start(p_workflow, p_input, p_options, null, null, null, null, null, null, null);
end $$;
comment on function trellis.run_start(text, jsonb, jsonb) is
  'Start a run of a registered workflow. Options: key (idempotency per workflow), key_policy (what a start does with a key another run holds, decision 0036: return (default) returns that run; reuse takes the key of a finished run, whose key moves to former_key; replace is reuse, and a run that has not begun takes this start''s input, run_at, priority and metadata; supersede is reuse, and a run that has not finished is cancelled as run_cancel would and gives its key to this start at once), queue, concurrency_key (the run''s flow-control group in its queue, 1-200 characters, e.g. a tenant id), priority, run_at, metadata, version, deadline (a timestamp after run_at: the run and its cancel-children are cancelled if it has not finished by then, decision 0031) or time_limit (an interval: the deadline is run_at, or now if run_at is past, plus it), input_checked (skip the input shape check: the caller validated the input against the workflow''s schema), coalesce_notify (for a start that commits at once: skip the NOTIFY while a run of the same queue, workflow and version is already pending, sql/210_wakeups.sql). Raises TR001 for an input that does not match the registered input shape. Returns the run id (the holder''s for a key it keeps). Works inside any transaction.';

-- Many starts of one workflow in one call (client.startMany): each item
-- {"input": …, "options": {…}} is started as run_start starts it, in the
-- caller's transaction, so they all start or none does. Up to 1000 items a
-- call. The keyed items are started first, in the order of their keys, the
-- others after them: two calls whose keys overlap take the keys' index
-- entries in one order, so neither waits for a key the other holds while
-- holding one it wants (40P01). Rows come back in the items' order. An
-- error names the item it came from ("run 3: …") and keeps its SQLSTATE;
-- one block around the whole loop (one subtransaction, not one per item).
-- A superseding start's turn on key p_key of workflow p_workflow: a
-- transaction advisory lock (decision 0036's amendment).
create or replace function trellis._supersede_turn(p_workflow text, p_key text)
returns void language plpgsql as $$
begin
  perform pg_advisory_xact_lock(pg_catalog.hashtextextended('trellis.supersede:' || p_workflow || pg_catalog.chr(31) || p_key, 0));
end $$;
comment on function trellis._supersede_turn(text, text) is
  'Wait for and take the turn of superseding starts of key p_key of workflow p_workflow (a transaction advisory lock).';

-- The turns (_supersede_turn, in key
-- order) and then the unfinished holders of keys p_keys of workflow
-- p_workflow, with the runs their cancel takes (parents, cancel-children,
-- watchers: as _run_cancel locks), in one statement in id order: what
-- superseding starts of several keys in one transaction take, taken up
-- front in the orders every other caller uses.
create or replace function trellis._supersede_prelock(p_workflow text, p_keys text[])
returns void language plpgsql as $$
declare
  v_key     text;
  v_holders uuid[];
begin
  for v_key in select k from unnest(p_keys) k order by k loop
    perform trellis._supersede_turn(p_workflow, v_key);
  end loop;
  v_holders := array(select r.id from trellis.runs r
                      where r.workflow = p_workflow and r.key = any (p_keys)
                        and r.status not in ('completed', 'failed', 'cancelled'));
  if cardinality(v_holders) > 0 then
    perform trellis._lock_runs(array(select unnest(v_holders)
                                    union select p.parent_run_id from trellis.runs p where p.id = any (v_holders) and p.parent_run_id is not null
                                    union select trellis._cancel_reach(v_holders)
                                    union select w.waiter_id from trellis.run_watches w where w.run_id = any (v_holders)));
  end if;
end $$;
comment on function trellis._supersede_prelock(text, text[]) is
  'For run_start_many with supersede items of several keys: take their turns (advisory locks, key order), then lock the keys'' unfinished holders and the runs their cancel takes, in id order, up front.';

create or replace function trellis.run_start_many(p_workflow text, p_runs jsonb)
returns table (ordinality integer, id uuid) language plpgsql as $$
declare
  v_n    integer;
  v_i    integer := 0;
  v_item jsonb;
  v_ords integer[] := '{}';
  v_ids  uuid[] := '{}';
  v_keys text[];
begin
  if jsonb_typeof(p_runs) is distinct from 'array' then
    perform trellis._raise('TR001', 'run_start_many expects a JSON array of runs ({"input": …, "options": {…}})');
  end if;
  -- The workflow is the call's, not an item's: checked before any item.
  p_workflow := trellis._check_name(p_workflow, 'workflow');
  if not exists (select 1 from trellis.workflows w where w.name = p_workflow) then
    perform trellis._raise('TR002', format('unknown workflow %L: no worker or client has registered it', p_workflow));
  end if;
  v_n := jsonb_array_length(p_runs);
  if v_n > 1000 then
    perform trellis._raise('TR001', format('run_start_many takes at most 1000 runs a call, not %s', v_n));
  end if;
  -- Items that supersede several keys cancel several holders: their turns
  -- and their runs are taken up front, in one order (_supersede_prelock),
  -- not item by item (which held one holder's lock while it waited for the
  -- next: out of id order, deadlocking with workers' checkpoints).
  v_keys := array(select distinct x.e->'options'->>'key' from jsonb_array_elements(p_runs) as x(e)
                   where jsonb_typeof(x.e) = 'object' and jsonb_typeof(x.e->'options') = 'object'
                     and x.e->'options'->>'key_policy' = 'supersede' and jsonb_typeof(x.e->'options'->'key') = 'string'
                   order by 1);
  if cardinality(v_keys) > 1 then
    perform trellis._supersede_prelock(p_workflow, v_keys);
  end if;
  begin
    for v_item, v_i in
      select x.e, x.n::integer from jsonb_array_elements(p_runs) with ordinality as x(e, n)
       order by case when jsonb_typeof(x.e) = 'object' and jsonb_typeof(x.e->'options') = 'object'
                     then x.e->'options'->>'key' end nulls last, x.n
    loop
      if jsonb_typeof(v_item) <> 'object' or v_item - '{input,options}'::text[] <> '{}'::jsonb then
        perform trellis._raise('TR001', 'each run is an object of input and options');
      end if;
      v_ords := v_ords || v_i;
      v_ids := v_ids || trellis._run_start(p_workflow, v_item->'input', coalesce(v_item->'options', '{}'),
                                           null, null, null, null, null, null, null);
    end loop;
  exception when others then
    if sqlstate like 'TR%' or sqlstate like '22%' or sqlstate = '23514' then
      raise exception using errcode = sqlstate, message = format('run %s: %s', v_i, sqlerrm);
    end if;
    raise;
  end;
  return query select o, i from unnest(v_ords, v_ids) as r(o, i) order by o;
end $$;
comment on function trellis.run_start_many(text, jsonb) is
  'Start up to 1000 runs of workflow p_workflow, each item {"input", "options"} as run_start(p_workflow, input, options), in order and all in the caller''s transaction; returns (ordinality, id) per item (an existing run''s id for a repeated key). An error of an item is raised with its SQLSTATE and "run <n>: " before its message; nothing is started then.';

-- A start whose run goes straight to a worker in the caller's process: the
-- run is inserted leased to p_worker (status running, attempt 1) and nobody
-- is notified, so the run begins without a NOTIFY and a claim. It is the
-- same lease a claim would take: heartbeats keep it, and if the worker dies
-- it expires and another worker claims the run. claimed is false (and the
-- other columns but id null) when nothing was leased: a repeated key
-- returns the existing run, and a run_at in the future leaves the run
-- pending as run_start would. The transaction commits synchronously (the
-- start must be durable before its first step runs).
create or replace function trellis.run_start_claimed(p_workflow text, p_input jsonb, p_options jsonb,
  p_worker text, p_lease interval)
returns table (id uuid, claimed boolean, workflow text, version text, input jsonb, metadata jsonb,
               lease_token uuid, lease_expires_at timestamptz, now timestamptz, deadline_at timestamptz)
language plpgsql as $$
declare
  v_token uuid := pg_catalog.gen_random_uuid();
  v_id    uuid;
begin
  if p_worker is null then
    perform trellis._raise('TR001', 'run_start_claimed needs a worker id');
  end if;
  v_id := trellis._run_start(p_workflow, p_input, p_options, null, null, null, null, p_worker, v_token, p_lease);
  -- Leased here only if the row carries this call's token (a repeated key
  -- returns a run some earlier start made, with another token or none).
  return query
  select v_id, r.id is not null, r.workflow, r.version, r.input, r.metadata, r.lease_token, r.lease_expires_at, trellis.now(),
         r.deadline_at
    from (select 1) one
    left join trellis.runs r on r.id = v_id and r.lease_token = v_token;
end $$;
comment on function trellis.run_start_claimed(text, jsonb, jsonb, text, interval) is
  'run_start for a client whose process runs a worker of the workflow: a run due now is inserted leased to p_worker for p_lease (status running, attempt 1, no NOTIFY) and returned with its token, stored input, metadata and deadline, for that worker to execute at once. claimed is false for a repeated key (the existing run) or a future run_at (left pending). Raises as run_start does.';

-- What a claim returns with a run that resumes (attempt > 1): the step
-- history of its current execution (with the place of each result in the
-- delivery order, where set), and the ends of the children it waits on.
-- Also read by _claimed_by_bucket (sql/160_buckets.sql), by bucket.
-- Each is one value, and PostgreSQL builds no value over 256 MB (54000),
-- which failed the whole claim, and with it the claim of every other run,
-- for as long as the run stayed due. The handlers (a subtransaction of a
-- read, no transaction id, entered only for runs that resume):
-- - a history past that (270 step results of 1 MB) comes back as one call
--   of kind too_large: a worker fails the run with PayloadTooLargeError,
--   and a worker of an older release, which knows no such kind, fails it
--   at its first call (NonDeterminismError naming it), never crash-loops;
-- - children's ends past that come back one child at a time (the first
--   ended one): each execution records it and parks, and the next claim
--   brings the next, so the run goes on, or its history outgrows the
--   limit and it fails as above.
create or replace function trellis._run_history(p_bucket integer, p_run uuid, p_execution integer)
returns jsonb language plpgsql stable as $$
begin
  return (select jsonb_agg((jsonb_build_object('seq', s.seq, 'name', s.name, 'kind', s.kind,
                   'status', s.status, 'output', s.output, 'error', s.error, 'attempts', s.attempts)
                   || case when s.delivered is null then '{}'::jsonb
                           else jsonb_build_object('delivered', s.delivered) end)
                   order by s.seq)
            from trellis.steps s where s.bucket = p_bucket and s.run_id = p_run and s.execution = p_execution);
exception when program_limit_exceeded then
  return jsonb_build_array(jsonb_build_object('seq', 0, 'name', 'history too large to hand over', 'kind', 'too_large',
    'status', 'failed', 'output', null, 'attempts', 0, 'too_large', 'history',
    'error', jsonb_build_object('name', 'PayloadTooLargeError', 'code', 'payload_too_large', 'message', left(sqlerrm, 200))));
end $$;
comment on function trellis._run_history(integer, uuid, integer) is
  'The calls of execution p_execution of run p_run (in bucket p_bucket) as run_claim returns them: a JSON array in seq order, null if none; one call of kind too_large if PostgreSQL cannot build it as one value (over 256 MB).';

create or replace function trellis._run_children_ended(p_bucket integer, p_run uuid, p_execution integer)
returns jsonb language plpgsql stable as $$
declare
  v_ids   uuid[];
  v_ended jsonb;
  v_found uuid[];
begin
  v_ids := array(select (w.output->>'child')::uuid from trellis.steps w
                  where w.bucket = p_bucket and w.run_id = p_run and w.execution = p_execution
                    and w.status = 'waiting' and w.kind = 'child');
  if cardinality(v_ids) = 0 then
    return null;
  end if;
  -- The children may live in other buckets (a child with its own key).
  begin
    select jsonb_object_agg(c.id, jsonb_build_object('status', c.status, 'output', c.output, 'error', c.error))
      into v_ended
      from trellis.runs c where c.id = any (v_ids) and c.status in ('completed', 'failed', 'cancelled');
  exception when program_limit_exceeded then
    return (select jsonb_object_agg(c.id, jsonb_build_object('status', c.status, 'output', c.output, 'error', c.error))
              from (select c.id, c.status, c.output, c.error from trellis.runs c
                     where c.id = any (v_ids) and c.status in ('completed', 'failed', 'cancelled') order by c.id limit 1) c);
  end;
  -- An awaited run that does not exist (ctx.waitForRun of an unknown id, or
  -- one deleted by hand) is reported failed with code not_found.
  v_found := array(select c.id from trellis.runs c where c.id = any (v_ids));
  if exists (select 1 from unnest(v_ids) i where i <> all (v_found)) then
    select coalesce(v_ended, '{}') || jsonb_object_agg(g.id, jsonb_build_object('status', 'failed', 'output', null, 'error',
             jsonb_build_object('name', 'NotFoundError', 'code', 'not_found', 'message', 'run ' || g.id::text || ' does not exist')))
      into v_ended
      from (select distinct i as id from unnest(v_ids) i where i <> all (v_found)) g;
  end if;
  return v_ended;
end $$;
comment on function trellis._run_children_ended(integer, uuid, integer) is
  'The runs that execution p_execution of run p_run waits on (children, or runs awaited with ctx.waitForRun) and that have ended, as run_claim returns them: {run id: {status, output, error}} (one that does not exist: failed with code not_found), null if none; only the first of them if PostgreSQL cannot build them all as one value (over 256 MB).';

-- Claim up to p_limit due runs of the served (workflow, version) pairs.
-- Queues are tried in the order given; within a queue, priority then due time.
-- p_async_commit: commit this transaction without waiting for its WAL flush.
-- A claim lost in a server crash leaves its runs pending (their leases never
-- existed, so any write under them is refused), and the first checkpoint of
-- a claimed run is a synchronous commit that flushes the claim with it. Only
-- for a transaction that does nothing else: it applies to the whole of it.
create or replace function trellis.run_claim(
  p_worker text, p_queues text[], p_workflows text[], p_versions text[],
  p_limit integer, p_lease interval, p_async_commit boolean default false)
returns table (id uuid, workflow text, version text, input jsonb, metadata jsonb, attempt integer,
               failures integer, lease_token uuid, lease_expires_at timestamptz, history jsonb,
               execution integer, cancel_requested boolean, pause_requested boolean,
               signals jsonb, children jsonb, now timestamptz, deadline_at timestamptz, cancel_reason text)
language plpgsql as $$
declare
  v_now   timestamptz := trellis.now();
  v_queue text;
  v_left  integer := p_limit;
  v_got   integer;
  v_ids   uuid[];
  -- Lease tokens: one random value per claim, each run's token derived from
  -- it and the run id (trellis._lease_token), so no volatile function is
  -- evaluated per row of a run-scoped statement (decision 0024).
  v_batch uuid := pg_catalog.gen_random_uuid();
  -- On a distributed schema (sql/160_buckets.sql) rows are locked one bucket at a time.
  v_dist  boolean := trellis._distributed();
  v_pairs text[] := array(select s.w || pg_catalog.chr(31) || s.v from unnest(p_workflows, p_versions) as s(w, v));
  v_limited boolean;
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    perform trellis._raise('TR001', 'claim limit must be between 1 and 1000');
  end if;
  -- trellis._check_worker, inline (a claim loop's every call).
  if p_worker is null or length(p_worker) = 0 or length(p_worker) > 200 then
    perform trellis._raise('TR001', 'worker id must be 1-200 characters');
  end if;
  perform trellis._check_lease(p_lease);
  -- Pairs (workflow i, version i): arrays of different lengths would pair a workflow with no version.
  if cardinality(p_workflows) is distinct from cardinality(p_versions) then
    perform trellis._raise('TR001', 'run_claim takes as many versions as workflows (each workflow with its version)');
  end if;
  if p_async_commit then
    perform set_config('synchronous_commit', 'off', true);
  end if;
  -- Waiting runs whose timer is due become pending; runs whose lease
  -- expired become claimable again, or are parked when their leases keep
  -- expiring (both through _run_move, the one writer of runs.status, with
  -- their events).
  if v_dist then
    perform trellis._sweep_by_bucket(v_now);
  else
  -- One probe of runs_wait_idx decides whether there is a timer to move:
  -- most claims find none, and the call costs more than the probe (the
  -- queue path claims one run per NOTIFY, issue 18).
  if exists (select 1 from trellis.runs r where r.status = 'waiting' and r.run_at <= v_now) then
  perform trellis._run_move(array(
    select row(r.id, 'pending', 'resumed', null, null, null, null, null, null, null, null, null,
               null, null, null, null, null, '{"reason":"timer"}')::trellis.run_move
      from trellis.runs r
     where r.status = 'waiting' and r.run_at <= v_now
     order by r.run_at limit 1000
     for update skip locked));
  end if;
  -- Expired leases: released, or parked after max_lease_expiries in a row
  -- without progress (sql/250_recovery.sql).
  v_ids := array(
    select r.id from trellis.runs r
     where r.status = 'running' and r.lease_expires_at < v_now
     order by r.lease_expires_at limit 100
     for update skip locked);
  if cardinality(v_ids) > 0 then
    perform trellis._leases_expired(v_ids, v_now);
  end if;
  end if;

  foreach v_queue in array p_queues loop
    exit when v_left <= 0;
    -- One ordered probe of runs_claim_idx (queue, workflow, version, priority
    -- desc, run_at) per served pair, so pending runs of workflows or versions
    -- this worker does not serve (an old version draining, another service's
    -- workflows in the same queue) cost nothing. With several pairs, up to
    -- v_left runs of each are locked and the best v_left are taken; the rest
    -- are unlocked at commit. The ids are picked in a statement of their own
    -- so the update below is a primary-key probe per id under the generic
    -- plan (see 900_plans.sql): joined to the pick, it became a hash join
    -- over the whole table.
    -- A queue with flow control (sql/220_queues.sql) is claimed by
    -- _queue_pick under its row's lock instead. The lock-free pick is gated
    -- by a probe of the queue's row inside its own statement (a one-time
    -- filter: for a limited queue no run is read or locked), and the same
    -- statement says whether the queue is limited, so telling the two
    -- apart costs an index probe, not a statement. On a distributed schema
    -- (sql/160_buckets.sql) the pick locks one bucket at a time.
    if v_dist then
      v_limited := exists (select 1 from trellis.queues q where q.name = v_queue and trellis._queue_limited_by(q.concurrency, q.key_concurrency, q.rate_limit, q.fair, q.paused));
      if not v_limited then
        v_ids := trellis._pick_by_bucket(v_queue, v_pairs, v_left, v_now);
      end if;
    else
    select array(
      select c.id from unnest(p_workflows, p_versions) as s(w, v)
       cross join lateral (
         select r.id, r.priority, r.run_at from trellis.runs r
          where r.status = 'pending' and r.queue = v_queue and r.workflow = s.w and r.version = s.v
            and r.run_at <= v_now
            and not exists (select 1 from trellis.queues q where q.name = v_queue and trellis._queue_limited_by(q.concurrency, q.key_concurrency, q.rate_limit, q.fair, q.paused))
          order by r.priority desc, r.run_at
          limit v_left
          for update skip locked) c
       order by c.priority desc, c.run_at
       limit v_left),
           exists (select 1 from trellis.queues q where q.name = v_queue and trellis._queue_limited_by(q.concurrency, q.key_concurrency, q.rate_limit, q.fair, q.paused))
      into v_ids, v_limited;
    end if;
    if v_limited then
      v_ids := trellis._queue_pick(v_queue, p_workflows, p_versions, v_left, v_now);
    end if;
    continue when cardinality(v_ids) = 0;
    if v_dist then
      return query select * from trellis._claimed_by_bucket(v_ids, p_worker, v_batch, p_lease, v_now);
      get diagnostics v_got = row_count;
      v_left := v_left - v_got;
      continue;
    end if;
    -- The lease: attempt + 1, a fresh token, started_at (set by _run_move).
    return query
    select r.id, r.workflow, r.version, r.input, r.metadata, r.attempt, r.failures,
              r.lease_token, r.lease_expires_at,
              -- A first claim of an execution (attempt 1) has no history and no
              -- children yet, unless the run is a fork (run_fork copied calls
              -- into it). The reads are functions, not subqueries: a
              -- subquery's plan is set up when the statement starts, for every
              -- claim, read or not (decision 0027: ~25 µs of a one-run claim).
              case when r.attempt > 1 or r.forked_from is not null then trellis._run_history(r.bucket, r.id, r.execution) end,
              r.execution, r.cancel_requested_at is not null, r.pause_requested_at is not null,
              (select jsonb_agg(jsonb_build_object('id', g.id, 'name', g.name, 'payload', g.payload,
                        'signal_id', g.signal_id) order by g.id)
                 from trellis.signals g where g.bucket = r.bucket and g.run_id = r.id and g.consumed_at is null),
              case when r.attempt > 1 then trellis._run_children_ended(r.bucket, r.id, r.execution) end,
              v_now, r.deadline_at,
              -- The reason of a requested cancellation, for the CancelledError the code gets.
              case when r.cancel_requested_at is not null then r.error->>'message' end
      from trellis._run_move(array(
             select row(i, 'running', 'claimed', null, null, null, null, null, null, null, null, null,
                        null, null, trellis._lease_token(v_batch, i), p_worker, v_now + p_lease, null)::trellis.run_move
               from unnest(v_ids) i)) r;
    get diagnostics v_got = row_count;
    v_left := v_left - v_got;
  end loop;
end $$;
comment on function trellis.run_claim(text, text[], text[], text[], integer, interval, boolean) is
  'Lease up to p_limit due runs (FOR UPDATE SKIP LOCKED) of the served workflow/version pairs from p_queues, in queue order then priority then due time; returns each with its lease token, the step history of its current execution (with the delivery number of each result), its unconsumed signals, its finished children, the engine time, the run''s deadline (null if none) and the reason of a requested cancellation. Makes due waiting runs pending and reclaims expired leases first. p_async_commit makes the (whole) transaction commit without waiting for its WAL flush; workers pass true.';

create or replace function trellis.run_next_due(p_queues text[], p_workflows text[], p_versions text[])
returns timestamptz language plpgsql stable as $$
begin
  if trellis._distributed() then
    return trellis._next_due_by_bucket(p_queues, p_workflows, p_versions);
  end if;
  -- PL/pgSQL, not SQL, so its plan is cached (a SQL function is planned on
  -- every call, ~0.6 ms, and workers call this after every drained claim).
  return least(
    -- Per (queue, served pair), runs_claim_idx (queue, workflow, version,
    -- priority desc, run_at) read as a loose index scan: the first entry of
    -- each priority is its earliest run_at, so one probe per distinct
    -- priority among the pair's pending runs (usually one), where
    -- `queue = any (…)` or a plain min would read every pending run.
    -- A paused queue's pending runs are not due (its workers would poll it).
    (select min(d.run_at) from unnest(p_queues) as q(queue)
       cross join unnest(p_workflows, p_versions) as s(w, v)
       cross join lateral (
         with recursive by_priority (priority, run_at) as (
           (select r.priority, r.run_at from trellis.runs r
             where r.status = 'pending' and r.queue = q.queue and r.workflow = s.w and r.version = s.v
             order by r.priority desc, r.run_at limit 1)
           union all
           select n.priority, n.run_at from by_priority b
            cross join lateral (
              select r.priority, r.run_at from trellis.runs r
               where r.status = 'pending' and r.queue = q.queue and r.workflow = s.w and r.version = s.v
                 and r.priority < b.priority
               order by r.priority desc, r.run_at limit 1) n)
         select min(x.run_at) as run_at from by_priority x) d
      where not exists (select 1 from trellis.queues p where p.name = q.queue and p.paused)),
    (select min(r.run_at) from trellis.runs r
      where r.status = 'waiting' and r.queue = any (p_queues) and r.run_at < 'infinity'
        and exists (select 1 from unnest(p_workflows, p_versions) as s(w, v)
                     where s.w = r.workflow and s.v = r.version)),
    (select min(r.lease_expires_at) from trellis.runs r where r.status = 'running'));
end $$;
comment on function trellis.run_next_due(text[], text[], text[]) is
  'The earliest time a run of the served workflow/version pairs in p_queues becomes due, or a lease (any queue) expires; null if none.';

create or replace function trellis.run_heartbeat_many(p_run_ids uuid[], p_tokens uuid[], p_lease interval)
returns table (id uuid, cancel_requested boolean, pause_requested boolean) language plpgsql as $$
#variable_conflict use_column
declare
  v_now timestamptz := trellis.now();
begin
  perform trellis._check_lease(p_lease);
  if trellis._distributed() then
    return query select * from trellis._heartbeat_by_bucket(p_run_ids, p_tokens, p_lease, v_now);
    return;
  end if;
  -- Held = the token matches (only a running run has one, runs_row_check);
  -- no status condition, which a generic plan could answer by reading every
  -- running run (see the fence in sql/300_checkpoints.sql).
  return query
  with held as (
    select r.id from unnest(p_run_ids, p_tokens) as h(id, token)
      join trellis.runs r on r.id = h.id and r.lease_token = h.token
     order by r.id
     for no key update of r)
  update trellis.runs r set lease_expires_at = v_now + p_lease, updated_at = v_now
    from held where r.id = held.id
  returning r.id, r.cancel_requested_at is not null, r.pause_requested_at is not null;
end $$;
comment on function trellis.run_heartbeat_many(uuid[], uuid[], interval) is
  'Extend the leases of the runs still held under the given tokens; returns the ids still held (a missing id means the lease was lost) with their cancel/pause requests.';

-- Read-only: the poll fallback for cancel and pause NOTIFYs a worker missed.
-- PL/pgSQL: a distributed planner takes no parameters of a SQL function.
create or replace function trellis.run_requests(p_run_ids uuid[], p_tokens uuid[])
returns table (id uuid, cancel_requested boolean, pause_requested boolean, cancel_reason text) language plpgsql stable as $$
begin
  return query
  select r.id, r.cancel_requested_at is not null, r.pause_requested_at is not null,
         case when r.cancel_requested_at is not null then r.error->>'message' end
    from unnest(p_run_ids, p_tokens) as h(id, token)
    join trellis.runs r on r.id = h.id and r.lease_token = h.token
   where r.cancel_requested_at is not null or r.pause_requested_at is not null;
end $$;
comment on function trellis.run_requests(uuid[], uuid[]) is
  'The runs held under the given tokens that have a cancel or pause request pending, with a cancellation''s reason (read-only; workers call it on every poll tick, and on a run_control cancel for the reason).';

create or replace function trellis.run_heartbeat(p_run_id uuid, p_token uuid, p_lease interval)
returns timestamptz language plpgsql as $$
declare
  v_expires timestamptz;
begin
  perform trellis.run_heartbeat_many(array[p_run_id], array[p_token], p_lease);
  select lease_expires_at into v_expires from trellis.runs
   where id = p_run_id and lease_token = p_token;
  if not found then
    perform trellis._raise_unheld(p_run_id, p_token);
  end if;
  return v_expires;
end $$;
comment on function trellis.run_heartbeat(uuid, uuid, interval) is
  'Extend one lease; raises TR003 (stale token), TR004 (not running) or TR002 (no such run).';

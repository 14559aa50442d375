-- 730_models: state machines and step templates, compiled onto runs and steps.
-- Owns: machine_trigger_check, machine_trigger_keyed, machine_trigger, machine_callback,
-- machine_data_delete, the view machine_runs; template_set, template_get,
-- template_start (and _template_error); connector_cursor_lock,
-- connector_cursor_set.
-- Touches: trellis.connector_cursors (insert, update); trellis.runs (insert through run_start; payloads on data delete),
-- trellis.steps and trellis.signals (payloads on data delete),
-- trellis.templates (insert).
-- Lock order: a transaction-scoped advisory lock per (machine, foreign id),
-- then the run (through run_start / signal_send / _run_lock); template_set
-- takes an advisory lock per template name before its insert.
-- A state machine is an ordinary workflow whose runs carry metadata
-- {"foreign_id": …}; each transition is a completed step whose output is
-- {from, to, object, outcome} (docs/state-machines.md).

create or replace function trellis._check_foreign_id(p_foreign_id text)
returns text language plpgsql immutable as $$
begin
  if p_foreign_id is null or length(p_foreign_id) = 0 or length(p_foreign_id) > 512 then
    perform trellis._raise('TR001', 'foreign id must be a string of 1-512 characters');
  end if;
  return p_foreign_id;
end $$;
comment on function trellis._check_foreign_id(text) is
  'Return p_foreign_id if it is 1-512 characters, else raise TR001.';

-- The newest unfinished (pending, running, waiting or paused) run of a
-- machine for a foreign id; null when there is none.
-- PL/pgSQL: a distributed planner takes no parameters of a SQL function.
create or replace function trellis._machine_active(p_workflow text, p_foreign_id text)
returns uuid language plpgsql stable as $$
begin
  return (select id from trellis.runs
           where workflow = p_workflow and metadata ? 'foreign_id' and metadata->>'foreign_id' = p_foreign_id
             and status not in ('completed', 'failed', 'cancelled')
           order by created_at desc, id desc limit 1);
end $$;
comment on function trellis._machine_active(text, text) is
  'The newest unfinished run of machine p_workflow for foreign id p_foreign_id, or null.';

-- A trigger sees the runs other triggers committed only with a snapshot
-- taken after its lock: in READ COMMITTED each statement takes one. In
-- REPEATABLE READ or SERIALIZABLE the transaction's snapshot predates the
-- lock, so a trigger committed meanwhile would be missed and the foreign id
-- would get two unfinished runs: refused (TR001) before anything is
-- written.
create or replace function trellis._machine_trigger_isolation()
returns void language plpgsql as $$
begin
  if current_setting('transaction_isolation') <> 'read committed' then
    perform trellis._raise('TR001', format('a machine trigger needs a READ COMMITTED transaction, not %s: its check for an unfinished run of the foreign id must see the triggers that committed before it',
                                           upper(current_setting('transaction_isolation'))));
  end if;
end $$;
comment on function trellis._machine_trigger_isolation() is
  'TR001 unless the transaction is READ COMMITTED (a machine trigger''s check must see the triggers committed before its lock).';

create or replace function trellis.machine_trigger_check(p_workflow text, p_foreign_id text)
returns void language plpgsql as $$
declare
  v_run uuid;
begin
  perform trellis._check_name(p_workflow, 'workflow');
  perform trellis._check_foreign_id(p_foreign_id);
  perform trellis._machine_trigger_isolation();
  -- Two triggers of one foreign id serialise here until the first commits;
  -- the second then sees its run.
  perform pg_advisory_xact_lock(hashtextextended('trellis.machine:' || p_workflow || '/' || p_foreign_id, 0));
  v_run := trellis._machine_active(p_workflow, p_foreign_id);
  if v_run is not null then
    perform trellis._raise('TR004', format('machine %s already has an unfinished run %s for foreign id %s',
                                           p_workflow, v_run, quote_literal(left(p_foreign_id, 60))));
  end if;
end $$;
comment on function trellis.machine_trigger_check(text, text) is
  'Refuse (TR004) while machine p_workflow has an unfinished or paused run for p_foreign_id; holds a transaction advisory lock on the pair so a start in the same transaction cannot race another trigger. TR001 for a bad name or foreign id.';

-- A keyed trigger (a connector's event id, a request id) is idempotent: the
-- run a key already started is the answer, whatever its state, so a
-- redelivered event starts nothing (and is not refused while that run is
-- unfinished).
create or replace function trellis.machine_trigger_keyed(p_workflow text, p_foreign_id text, p_key text)
returns uuid language plpgsql as $$
declare
  v_run     uuid;
  v_foreign text;
begin
  perform trellis._check_name(p_workflow, 'workflow');
  perform trellis._check_foreign_id(p_foreign_id);
  if p_key is null or length(p_key) = 0 or length(p_key) > 512 then
    perform trellis._raise('TR001', 'a trigger key must be a string of 1-512 characters');
  end if;
  perform trellis._machine_trigger_isolation();
  perform pg_advisory_xact_lock(hashtextextended('trellis.machine:' || p_workflow || '/' || p_foreign_id, 0));
  select id, metadata->>'foreign_id' into v_run, v_foreign from trellis.runs where workflow = p_workflow and key = p_key;
  if v_run is not null then
    if v_foreign is distinct from p_foreign_id then
      perform trellis._raise('TR004', format('trigger key %s of machine %s was used for another foreign id', quote_literal(left(p_key, 60)), p_workflow));
    end if;
    return v_run;
  end if;
  perform trellis.machine_trigger_check(p_workflow, p_foreign_id);
  return null;
end $$;
comment on function trellis.machine_trigger_keyed(text, text, text) is
  'Before a keyed trigger of machine p_workflow for p_foreign_id: the run key p_key already started (nothing more to do), else null after the checks of machine_trigger_check (TR004 while the foreign id has an unfinished run). TR004 when the key started a run of another foreign id; TR001 a bad name, foreign id or key. Holds the pair''s advisory lock for the transaction.';

create or replace function trellis.machine_trigger(p_workflow text, p_foreign_id text, p_input jsonb,
  p_options jsonb default '{}')
returns uuid language plpgsql as $$
declare
  v_options jsonb := coalesce(p_options, '{}');
  v_run     uuid;
begin
  if jsonb_typeof(v_options) <> 'object' then
    perform trellis._raise('TR001', 'machine_trigger options must be a JSON object');
  end if;
  if v_options ? 'key' then
    if jsonb_typeof(v_options->'key') <> 'string' then
      perform trellis._raise('TR001', 'a trigger key must be a string');
    end if;
    v_run := trellis.machine_trigger_keyed(p_workflow, p_foreign_id, v_options->>'key');
    if v_run is not null then
      return v_run;
    end if;
  else
    perform trellis.machine_trigger_check(p_workflow, p_foreign_id);
  end if;
  if v_options ? 'metadata' and jsonb_typeof(v_options->'metadata') <> 'object' then
    perform trellis._raise('TR001', 'metadata must be a JSON object');
  end if;
  -- The input's `since` is what a continue-as-new carries (status_since of
  -- trellis.machine_runs): a trigger starts the machine, it does not set it.
  if jsonb_typeof(p_input) = 'object' and p_input ? 'since' then
    perform trellis._raise('TR001', 'a trigger''s input is {status, object}: since is set by the machine itself');
  end if;
  v_options := v_options || jsonb_build_object('metadata',
    coalesce(v_options->'metadata', '{}') || jsonb_build_object('foreign_id', p_foreign_id));
  v_run := trellis.run_start(p_workflow, p_input, v_options);
  -- Two keyed triggers with one key and different foreign ids hold
  -- different locks, so both pass the key's check: the second's start waits
  -- for the first and is answered with its run (the key's policy). Refused
  -- as one after the other would be (no lock of the key's own: one taken
  -- before the foreign id's would deadlock transactions that trigger twice).
  if v_options ? 'key'
     and (select r.metadata->>'foreign_id' from trellis.runs r where r.id = v_run) is distinct from p_foreign_id then
    perform trellis._raise('TR004', format('trigger key %s of machine %s was used for another foreign id',
                                           quote_literal(left(v_options->>'key', 60)), p_workflow));
  end if;
  return v_run;
end $$;
comment on function trellis.machine_trigger(text, text, jsonb, jsonb) is
  'Start a run of state machine p_workflow for foreign id p_foreign_id with input {status, object} (checked against the machine''s registered input shape); options as run_start (run_at, queue, priority, version, metadata, key). With a key the trigger is idempotent: the run that key started is returned and nothing is written. TR004 while the foreign id has an unfinished or paused run.';

create or replace function trellis.machine_callback(p_workflow text, p_foreign_id text, p_status text,
  p_payload jsonb, p_id text default null)
returns boolean language plpgsql as $$
declare
  v_run uuid;
begin
  perform trellis._check_name(p_workflow, 'workflow');
  perform trellis._check_foreign_id(p_foreign_id);
  perform trellis._check_name(p_status, 'status');
  -- The unfinished run, locked: a run found unfinished, then locked after
  -- the checkpoint that completed it, is not it (signal_send refused it
  -- with TR004 where the caller is told TR002). Looked for again then: the
  -- foreign id may have had its next run started meanwhile.
  for i in 1 .. 3 loop
    v_run := trellis._machine_active(p_workflow, p_foreign_id);
    exit when v_run is null;
    perform trellis._lock_runs(array[v_run]);
    exit when exists (select 1 from trellis.runs r where r.id = v_run and r.status not in ('completed', 'failed', 'cancelled'));
    v_run := null;
  end loop;
  if p_id is not null then
    -- A redelivery (at-least-once sources) of a callback an earlier run of
    -- the foreign id received is dropped, not refused, and never reaches
    -- the foreign id's next run (the unfinished run's own repeats are
    -- dropped by signal_send).
    if exists (select 1 from trellis.runs r join trellis.signals s on s.bucket = r.bucket and s.run_id = r.id
                where r.workflow = p_workflow and r.metadata ? 'foreign_id' and r.metadata->>'foreign_id' = p_foreign_id
                  and r.id is distinct from v_run and s.signal_id = p_id) then
      return false;
    end if;
  end if;
  if v_run is null then
    perform trellis._raise('TR002', format('machine %s has no unfinished run for foreign id %s',
                                           p_workflow, quote_literal(left(p_foreign_id, 60))));
  end if;
  -- The machine declares one signal per callback status: signal_send refuses
  -- (TR001) a status without a callback and a payload off its shape. A
  -- version that declares no signals takes any (a workflow that is not a
  -- machine): refused here.
  if not exists (select 1 from trellis.runs r join trellis.workflows w on w.name = r.workflow and w.version = r.version
                  where r.id = v_run and w.signal_schemas is not null and w.signal_schemas ? ('callback:' || p_status)) then
    perform trellis._raise('TR001', format('%s has no callback for status %s (a machine declares one per status with a callback)',
                                           p_workflow, quote_literal(left(p_status, 60))));
  end if;
  return trellis.signal_send(v_run, 'callback:' || p_status, p_payload, p_id);
end $$;
comment on function trellis.machine_callback(text, text, text, jsonb, text) is
  'Deliver an external payload to the callback of status p_status of the unfinished run of machine p_workflow for p_foreign_id (a signal named callback:<status>, buffered until the run is in that status; a repeated p_id is dropped: false, also after that run finished). TR002 no unfinished run, TR001 a status without a callback.';

create or replace function trellis.machine_data_delete(p_run_id uuid, p_object jsonb)
returns timestamptz language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
  v_run trellis.runs;
begin
  v_run := trellis._run_lock(p_run_id);
  if not (v_run.metadata ? 'foreign_id') and v_run.scrubbed_at is null then
    perform trellis._raise('TR001', format('run %s is not a state machine run', p_run_id));
  end if;
  if v_run.status not in ('completed', 'failed', 'cancelled') then
    perform trellis._raise('TR004', format('run %s is %s: only a finished machine run''s data can be deleted (cancel it first)',
                                           p_run_id, v_run.status));
  end if;
  if v_run.scrubbed_at is not null then
    return v_run.scrubbed_at;
  end if;
  perform trellis._check_payload(p_object, 'object');
  -- Every stored copy of the object becomes p_object; statuses, step names,
  -- kinds, outcomes and timestamps stay, so the recorded path is kept.
  update trellis.steps
     set output = case when kind = 'step' and jsonb_typeof(output) = 'object' and output ? 'to'
                       then output || jsonb_build_object('object', p_object)
                       when kind in ('sleep', 'child') then output
                       else null end,
         error = trellis._scrub_error(error)
   where bucket = v_run.bucket and run_id = p_run_id;
  update trellis.signals set payload = 'null' where bucket = v_run.bucket and run_id = p_run_id;
  update trellis.runs
     set input = case when jsonb_typeof(input) = 'object' then input || jsonb_build_object('object', p_object) else input end,
         output = case when jsonb_typeof(output) = 'object' then output || jsonb_build_object('object', p_object) else output end,
         error = trellis._scrub_error(error), scrubbed_at = v_now, updated_at = v_now
   where bucket = v_run.bucket and id = p_run_id;
  return v_now;
end $$;
comment on function trellis.machine_data_delete(uuid, jsonb) is
  'Delete the data of finished state machine run p_run_id (PII): every stored copy of its object becomes p_object (what the machine''s delete function made of it), callback payloads and other results are removed, error messages scrubbed; statuses and the recorded path stay. Marks the run scrubbed. Idempotent. TR002 unknown, TR004 not finished, TR001 not a machine run.';

-- The current status and object of every state machine run, readable at
-- every transition: the newest completed transition step of its current
-- execution, else the status and object it was triggered with.
create or replace view trellis.machine_runs as
select r.id as run_id, r.workflow as machine, r.version, r.metadata->>'foreign_id' as foreign_id,
       r.status as run_status,
       coalesce(t.output->>'to', r.input->>'status') as status,
       coalesce(t.output->'object', r.input->'object') as object,
       t.output->>'outcome' as last_outcome, t.seq as last_seq,
       -- After a continue-as-new: the `since` its input carries (an ISO time the worker wrote; plain SQL, no function to place on Citus nodes).
       coalesce(t.finished_at,
                case when r.input->>'since' ~ E'^\\d{4}-\\d\\d-\\d\\dT\\d\\d:\\d\\d:\\d\\d(\\.\\d+)?Z$' then (r.input->>'since')::timestamptz end,
                r.created_at) as status_since,
       r.created_at, r.updated_at, r.finished_at, r.scrubbed_at
  from trellis.runs r
  left join lateral (
    select s.output, s.seq, s.finished_at from trellis.steps s
     where s.bucket = r.bucket and s.run_id = r.id and s.execution = r.execution and s.kind = 'step' and s.status = 'completed'
       and jsonb_typeof(s.output) = 'object' and s.output ? 'to'
     order by s.seq desc limit 1) t on true
 where r.metadata ? 'foreign_id';
comment on view trellis.machine_runs is
  'State machine runs with their current status and object (the newest transition step, else the trigger input), foreign id and run status.';

-- Templates --------------------------------------------------------------

-- Why a template definition is not well formed (null when it is): the
-- structural rules SQL can check. The TypeScript side checks the same with
-- zod, plus that every step is registered.
create or replace function trellis._template_error(p_definition jsonb)
returns text language plpgsql immutable as $$
declare
  v_names  text[];
  v_steps  jsonb;
  v_step   jsonb;
  v_i      integer;
  v_at     integer;
  v_seen   integer[] := '{}';
  v_next   text;
  -- trellis._check_name's pattern (NAME_PATTERN in TypeScript).
  v_name   constant text := '^[A-Za-z0-9_](?:[A-Za-z0-9_.:@/ -]{0,126}[A-Za-z0-9_.:@/-])?$';
  -- The largest number a worker's JavaScript holds (a double), and the largest whole number it counts exactly.
  v_double constant numeric := 1.7976931348623157e308;
  v_whole  constant numeric := 9007199254740991;
begin
  if jsonb_typeof(p_definition) is distinct from 'object' then
    return 'a template must be a JSON object {steps: [...], hooks?}';
  end if;
  v_steps := p_definition->'steps';
  if jsonb_typeof(v_steps) is distinct from 'array' or jsonb_array_length(v_steps) = 0 then
    return 'steps must be a non-empty array';
  end if;
  if jsonb_array_length(v_steps) > 1000 then
    return 'a template has at most 1000 steps';
  end if;
  -- What the TypeScript schema (src/templates/schema.ts) refuses too, so a
  -- template stored from SQL cannot fail every run at its start: unknown
  -- keys, hooks that are not lists of names, a retry or timeout that is
  -- not one. (Whether the steps and hooks are registered only a worker knows.)
  if exists (select 1 from jsonb_object_keys(p_definition) k where k not in ('steps', 'hooks')) then
    return 'a template has only the keys steps and hooks';
  end if;
  if p_definition ? 'hooks' and (jsonb_typeof(p_definition->'hooks') <> 'object'
     or exists (select 1 from jsonb_each(p_definition->'hooks') h
                 where h.key not in ('beforeWorkflow', 'afterWorkflow', 'beforeStep', 'afterStep')
                    or jsonb_typeof(h.value) <> 'array' or jsonb_array_length(h.value) > 20
                    or exists (select 1 from jsonb_array_elements(h.value) n where jsonb_typeof(n) <> 'string' or (n #>> '{}') !~ v_name))) then
    return 'hooks must be an object of beforeWorkflow, afterWorkflow, beforeStep and afterStep, each a list of at most 20 hook names';
  end if;
  for v_step in select * from jsonb_array_elements(v_steps) loop
    if jsonb_typeof(v_step) <> 'object' or jsonb_typeof(v_step->'name') is distinct from 'string'
       or (v_step->>'name') !~ v_name then
      return format('step %s needs a valid name', left(v_step::text, 80));
    end if;
    if exists (select 1 from jsonb_object_keys(v_step) k where k not in ('name', 'step', 'retry', 'timeout', 'onFailure', 'compensate', 'next')) then
      return format('step %s has a key a step does not take (name, step, retry, timeout, onFailure, compensate, next)', quote_literal(v_step->>'name'));
    end if;
    if exists (select 1 from jsonb_each(v_step) f where f.key in ('step', 'compensate', 'next')
                  and (jsonb_typeof(f.value) <> 'string' or (f.value #>> '{}') !~ v_name)) then
      return format('step, compensate and next of step %s must be names', quote_literal(v_step->>'name'));
    end if;
    if v_step ? 'retry' and (jsonb_typeof(v_step->'retry') <> 'object'
       or exists (select 1 from jsonb_object_keys(v_step->'retry') k where k not in ('maxAttempts', 'backoff', 'initialDelay', 'factor', 'maxDelay', 'jitter', 'maxElapsed'))
       or (v_step->'retry' ? 'maxAttempts' and (jsonb_typeof(v_step->'retry'->'maxAttempts') <> 'number'
           or (v_step->'retry'->>'maxAttempts')::numeric not between 1 and v_whole
           or (v_step->'retry'->>'maxAttempts')::numeric <> trunc((v_step->'retry'->>'maxAttempts')::numeric)))
       or (v_step->'retry' ? 'backoff' and (v_step->'retry'->>'backoff') is distinct from 'exponential' and (v_step->'retry'->>'backoff') is distinct from 'constant')
       or (v_step->'retry' ? 'factor' and (jsonb_typeof(v_step->'retry'->'factor') <> 'number'
           or (v_step->'retry'->>'factor')::numeric not between 1 and v_double))
       or (v_step->'retry' ? 'jitter' and (jsonb_typeof(v_step->'retry'->'jitter') <> 'number'
           or (v_step->'retry'->>'jitter')::numeric not between 0 and 1))
       -- A delay in milliseconds (at most 1000 years, as the release op takes)
       -- or a duration text, which the workers parse.
       or exists (select 1 from jsonb_each(v_step->'retry') d where d.key in ('initialDelay', 'maxDelay', 'maxElapsed')
                     and not (jsonb_typeof(d.value) = 'number' and (d.value #>> '{}')::numeric between 0 and 31536000000000
                              or jsonb_typeof(d.value) = 'string' and length(d.value #>> '{}') between 1 and 40))
       -- A budget of nothing would stop every retry: more than zero.
       or (jsonb_typeof(v_step->'retry'->'maxElapsed') = 'number' and (v_step->'retry'->>'maxElapsed')::numeric <= 0)) then
      return format('retry of step %s must be a retry policy (maxAttempts a whole number from 1 to 2^53 - 1, backoff exponential or constant, factor a number of at least 1, jitter a number from 0 to 1, delays durations of at most 1000 years, maxElapsed one longer than 0)', quote_literal(v_step->>'name'));
    end if;
    if v_step ? 'timeout' and not (jsonb_typeof(v_step->'timeout') = 'number' and (v_step->>'timeout')::numeric > 0
                                   and (v_step->>'timeout')::numeric <= v_double
                                   or jsonb_typeof(v_step->'timeout') = 'string' and length(v_step->>'timeout') between 1 and 40) then
      return format('timeout of step %s must be a duration longer than 0', quote_literal(v_step->>'name'));
    end if;
    if v_step->>'name' = any (v_names) then
      return format('step name %s is used twice', quote_literal(v_step->>'name'));
    end if;
    v_names := v_names || (v_step->>'name');
    if v_step ? 'onFailure' and (v_step->>'onFailure') not in ('fail', 'continue', 'compensate') then
      return format('onFailure of step %s must be fail, continue or compensate', quote_literal(v_step->>'name'));
    end if;
  end loop;
  for v_step in select * from jsonb_array_elements(v_steps) loop
    if v_step ? 'next' and (v_step->>'next') <> 'end' and not ((v_step->>'next') = any (v_names)) then
      return format('next of step %s names no step of the template: %s', quote_literal(v_step->>'name'),
                    quote_literal(left(v_step->>'next', 60)));
    end if;
  end loop;
  -- Follow the path from the first step: visiting a step twice is a cycle.
  v_at := 1;
  while v_at is not null loop
    if v_at = any (v_seen) then
      return format('the steps form a cycle at %s', quote_literal(v_names[v_at]));
    end if;
    v_seen := v_seen || v_at;
    v_next := v_steps->(v_at - 1)->>'next';
    if v_next is null then
      v_at := case when v_at < array_length(v_names, 1) then v_at + 1 end;
    elsif v_next = 'end' then
      v_at := null;
    else
      v_at := array_position(v_names, v_next);
    end if;
  end loop;
  return null;
end $$;
comment on function trellis._template_error(jsonb) is
  'Why template definition p_definition is malformed (no steps, a bad or duplicate step name, a bad onFailure or next, a cycle), or null.';

create or replace function trellis.template_set(p_name text, p_definition jsonb)
returns integer language plpgsql as $$
declare
  v_error   text;
  v_latest  trellis.templates;
begin
  perform trellis._check_name(p_name, 'template');
  v_error := trellis._template_error(p_definition);
  if v_error is not null then
    perform trellis._raise('TR001', format('template %s: %s', p_name, v_error));
  end if;
  perform trellis._check_payload(p_definition, 'template');
  perform pg_advisory_xact_lock(hashtextextended('trellis.template:' || p_name, 0));
  select * into v_latest from trellis.templates where name = p_name order by version desc limit 1;
  if found and v_latest.definition = p_definition then
    return v_latest.version;
  end if;
  insert into trellis.templates (name, version, definition, created_at)
  values (p_name, coalesce(v_latest.version, 0) + 1, p_definition, trellis.now());
  return coalesce(v_latest.version, 0) + 1;
end $$;
comment on function trellis.template_set(text, jsonb) is
  'Store a new version of template p_name (a definition equal to the newest version stores nothing) and return its version. TR001 for a malformed definition (see _template_error).';

create or replace function trellis.template_get(p_name text, p_version integer default null)
returns trellis.templates language plpgsql stable as $$
declare
  v_row trellis.templates;
begin
  perform trellis._check_name(p_name, 'template');
  select * into v_row from trellis.templates
   where name = p_name and (p_version is null or version = p_version)
   order by version desc limit 1;
  if not found then
    perform trellis._raise('TR002', format('unknown template %s%s', p_name,
                                           case when p_version is null then '' else ' version ' || p_version end));
  end if;
  return v_row;
end $$;
comment on function trellis.template_get(text, integer) is
  'Template p_name at p_version (default the newest). TR002 when unknown.';

create or replace function trellis.template_start(p_name text, p_state jsonb default '{}',
  p_options jsonb default '{}')
returns uuid language plpgsql as $$
declare
  v_options jsonb := coalesce(p_options, '{}');
  v_tpl     trellis.templates;
begin
  if jsonb_typeof(v_options) <> 'object' then
    perform trellis._raise('TR001', 'template_start options must be a JSON object');
  end if;
  if jsonb_typeof(coalesce(p_state, '{}')) <> 'object' then
    perform trellis._raise('TR001', 'the state of a template run must be a JSON object');
  end if;
  if v_options ? 'template_version' and trellis._json_int(v_options->'template_version', 1, 2147483647) is null then
    perform trellis._raise('TR001', format('template_version must be a positive integer, not %s',
                                           trellis._quote(v_options->>'template_version')));
  end if;
  v_tpl := trellis.template_get(p_name, trellis._json_int(v_options->'template_version', 1, 2147483647));
  -- The run's input pins the template version it runs.
  return trellis.run_start('template:' || p_name,
    jsonb_build_object('state', coalesce(p_state, '{}'),
                       'template', jsonb_build_object('version', v_tpl.version, 'definition', v_tpl.definition)),
    v_options - 'template_version');
end $$;
comment on function trellis.template_start(text, jsonb, jsonb) is
  'Start a run of template p_name (its newest version, or options.template_version) with shared state p_state; the run is of workflow template:<name>, which a worker serving that template registers. Other options as run_start. TR002 unknown template or no worker registered it.';

-- Connectors --------------------------------------------------------------

create or replace function trellis.connector_cursor_lock(p_name text)
returns jsonb language plpgsql as $$
declare
  v_cursor jsonb;
begin
  perform trellis._check_name(p_name, 'connector');
  insert into trellis.connector_cursors (name, cursor, updated_at) values (p_name, null, trellis.now())
  on conflict (name) do nothing;
  select cursor into v_cursor from trellis.connector_cursors where name = p_name for update;
  return v_cursor;
end $$;
comment on function trellis.connector_cursor_lock(text) is
  'Lock connector p_name''s cursor row for the rest of the transaction (created on first use) and return its cursor (null: from the start). Two readers of one connector take turns.';

create or replace function trellis.connector_cursor_set(p_name text, p_cursor jsonb)
returns void language plpgsql as $$
begin
  perform trellis._check_name(p_name, 'connector');
  perform trellis._check_payload(p_cursor, 'connector cursor');
  update trellis.connector_cursors set cursor = p_cursor, updated_at = trellis.now() where name = p_name;
  if not found then
    perform trellis._raise('TR002', format('connector %s has no cursor: lock it first', p_name));
  end if;
end $$;
comment on function trellis.connector_cursor_set(text, jsonb) is
  'Move connector p_name''s cursor to p_cursor; call it in the transaction that handled the events and locked it (connector_cursor_lock). TR002 unknown connector.';

-- 000_support: the clock, settings, validation helpers and error raising.
-- Owns: trellis.now(), trellis._* helpers. Touches: trellis.settings (read).
-- Every other file depends on these; nothing here takes a lock.

-- The only clock engine SQL reads. The test kit replaces this body with one
-- that adds a shared offset, so sleeps and timeouts fire at once in tests.
-- pg_catalog.now(): a session whose search_path puts a schema of its own
-- before pg_catalog (set search_path = mine, pg_catalog) gets the server's
-- clock, not a now() of that schema. Still inlined by the planner.
create or replace function trellis.now() returns timestamptz
language sql stable parallel safe as $$ select pg_catalog.now() $$;
comment on function trellis.now() is
  'The engine clock. Every engine function reads time only through this function.';

-- Raise a Trellis error: SQLSTATE TRnnn, mapped to a TS error class in src/db/errors.ts.
create or replace function trellis._raise(p_code text, p_message text, p_detail text default null)
returns void language plpgsql as $$
begin
  if p_detail is null then
    raise exception using errcode = p_code, message = p_message;
  end if;
  raise exception using errcode = p_code, message = p_message, detail = p_detail;
end $$;
comment on function trellis._raise(text, text, text) is
  'Raise a Trellis error with SQLSTATE p_code (TR001 validation, TR002 not found, TR003 lease lost, TR004 illegal transition, TR005 payload too large, TR007 schema version).';

-- A bad value as error messages quote it: at most its first 100 characters.
create or replace function trellis._quote(p_value text)
returns text language sql immutable parallel safe as $$
  select coalesce(quote_literal(case when length(p_value) > 100 then left(p_value, 100) || '...' else p_value end), 'null')
$$;
comment on function trellis._quote(text) is
  'p_value quoted for an error message, cut to its first 100 characters (then ending in ...); null as null.';

-- Names of workflows, queues and steps: no quotes, no semicolons, no control
-- characters; mirrored by NAME_PATTERN in src/workflow/names.ts. The length
-- is tested apart from the pattern: a bounded repeat ({0,126}) makes the
-- regex engine build a state per repetition, which a new session compiled
-- on its first start (~0.25 ms of its backend CPU, issue 18).
create or replace function trellis._check_name(p_value text, p_what text)
returns text language plpgsql immutable as $$
begin
  if p_value is null or length(p_value) > 128
     or p_value !~ '^[A-Za-z0-9_]([A-Za-z0-9_.:@/ -]*[A-Za-z0-9_.:@/-])?$' then
    perform trellis._raise('TR001',
      format('invalid %s name %s: use 1-128 letters, digits, space or _ . : @ / - (not starting or ending with a space)',
             p_what, trellis._quote(p_value)));
  end if;
  return p_value;
end $$;
comment on function trellis._check_name(text, text) is
  'Return p_value if it is a valid workflow/queue/step name, else raise TR001.';

-- The row invariants of trellis.runs and trellis.steps: each table's one
-- CHECK constraint (runs_row_check, steps_row_check) calls one of these, so
-- a statement that writes the table reads and plans a short call instead of
-- the constraints' whole expressions, which PostgreSQL does for every such
-- statement (decision 0028, migration 000024). The lists mirror RUN_STATES
-- and FINISHED_STATES (src/db/tables.ts), STEP_KINDS and STEP_STATES
-- (src/protocol/history.ts); test/sql/parity.test.ts compares them. A
-- change to what they allow needs a migration that validates the
-- constraint again (create or replace here does not re-check stored rows).
create or replace function trellis._runs_row_ok(p_status text, p_finished boolean, p_leased boolean, p_close text)
returns boolean language plpgsql immutable parallel safe as $$
begin
  return p_status in ('pending', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled')
     and (p_status in ('completed', 'failed', 'cancelled')) = p_finished
     and (p_status = 'running') = p_leased
     and p_close in ('cancel', 'abandon');
end $$;
comment on function trellis._runs_row_ok(text, boolean, boolean, text) is
  'runs_row_check: a known status; finished_at set exactly when the run is completed, failed or cancelled; a lease token exactly while running; parent_close cancel or abandon.';

create or replace function trellis._steps_row_ok(p_kind text, p_status text)
returns boolean language plpgsql immutable parallel safe as $$
begin
  return p_kind in ('step', 'now', 'random', 'uuid', 'side_effect', 'sleep', 'signal', 'child', 'race', 'value', 'patch', 'stream', 'metadata')
     and p_status in ('running', 'waiting', 'completed', 'failed', 'retrying');
end $$;
comment on function trellis._steps_row_ok(text, text) is
  'steps_row_check: a known call kind and a known status.';

-- A whole JSON number from p_min to p_max as an integer, else null (the
-- caller words its own TR001). Integral values written with a fraction or an
-- exponent (1.0, 1e3: JSON encoders such as Python's write floats so) are
-- whole numbers too; the cast goes through numeric, as integer's own input
-- refuses '1.0' (22P02) and a value over its range is 22003.
create or replace function trellis._json_int(p_value jsonb, p_min integer, p_max integer)
returns integer language plpgsql immutable parallel safe as $$
declare
  v numeric;
begin
  if pg_catalog.jsonb_typeof(p_value) is distinct from 'number' then
    return null;
  end if;
  v := (p_value #>> '{}')::numeric;
  if v < p_min or v > p_max or v % 1 <> 0 then
    return null;
  end if;
  return v::integer;
end $$;
comment on function trellis._json_int(jsonb, integer, integer) is
  'p_value as an integer if it is a whole JSON number (1, 1.0, 1e3) from p_min to p_max, else null.';

-- PL/pgSQL rather than SQL: called from PL/pgSQL on every checkpoint and
-- start, where a SQL function would be planned anew on each call.
-- A stored value that is not an integer (written around setting_set) is a
-- configuration error, TR008, not PostgreSQL's own cast error (22P02 would
-- read as bad input of whatever start or checkpoint met it); checked by a
-- pattern, not an exception block (a subtransaction on every call). A whole
-- number with a zero fraction (64.0, which setting_set took before it
-- stored integers canonically) is read as that integer.
create or replace function trellis._setting_int(p_key text, p_default integer)
returns integer language plpgsql stable as $$
declare
  v_text text;
begin
  -- (The path's right side typed: the TypeScript side calls this helper
  -- directly, under the caller's search_path, where an untyped '{}' would
  -- let a planted #>>(jsonb, jsonb) match better than pg_catalog's.)
  select value #>> '{}'::text[] into v_text from trellis.settings where key = p_key;
  if v_text is null then
    return p_default;
  end if;
  if v_text ~ E'^\\s*[-+]?[0-9]{1,10}(\\.0*)?\\s*$' and v_text::numeric between -2147483648 and 2147483647 then
    return v_text::numeric::integer;
  end if;
  -- Raised here, not through _raise and _quote: a trellis_client login
  -- calls this function directly and may not execute those.
  raise exception using errcode = 'TR008',
    message = format('setting %s is not an integer: %s (fix it with trellis.setting_set)', p_key,
                     quote_literal(case when length(v_text) > 100 then left(v_text, 100) || '...' else v_text end));
end $$;
comment on function trellis._setting_int(text, integer) is
  'An integer engine setting from trellis.settings, or p_default (also for a NULL key); raises TR008 when the stored value is not an integer.';

-- JSON nested more than 1,000 arrays and objects deep is refused by every
-- writer (TR001), as by the TypeScript side (src/protocol/serialize.ts
-- MAX_JSON_DEPTH): JavaScript's JSON.stringify recurses, so a value some
-- thousands deep, which jsonb holds, breaks every TypeScript reader of it
-- (the worker that completes the run, the dashboard, the CLI). Cheap for
-- what is not that deep: 1,001 levels take at least 2,002 characters and
-- as many brackets; only text with both is walked (a container at level
-- 1,000 is the 1,001st). p_text: p_value's JSON text, when the caller has it.
-- p_wrapped: levels the engine puts around a caller's value (a signal
-- call's record of its payload, a stream entry's {"v": …}), which do not
-- count: checkpoint ops allow 16.
create or replace function trellis._check_json_depth(p_value jsonb, p_what text, p_text text default null,
  p_wrapped integer default 0)
returns void language plpgsql stable as $$
declare
  v_text text;
  v_max  integer := 1000 + p_wrapped;
begin
  if p_value is null then
    return;
  end if;
  v_text := coalesce(p_text, p_value::text);
  if octet_length(v_text) < 2 * v_max + 2
     or length(v_text) - length(pg_catalog.translate(v_text, '[{', '')) < v_max + 1 then
    return;
  end if;
  if jsonb_path_exists(p_value, format('strict $.**{%s} ? (@.type() == "array" || @.type() == "object")', v_max)::jsonpath) then
    perform trellis._raise('TR001', format('%s is nested more than 1000 arrays or objects deep', p_what));
  end if;
end $$;
comment on function trellis._check_json_depth(jsonb, text, text, integer) is
  'Raise TR001 if p_value nests more than 1,000 arrays or objects (p_what names it), not counting p_wrapped levels the engine put around it; p_text is its JSON text when the caller has it.';

-- Payload size is the bytes of the value's JSON text (jsonb's text form).
-- Workers and clients measure the same thing before they send a value
-- (src/protocol/serialize.ts), so a value one layer accepts the other does too;
-- the binary jsonb size can be several times the text (small numbers) or a
-- fraction of it, so it would not agree.
create or replace function trellis._check_payload(p_value jsonb, p_what text)
returns jsonb language plpgsql stable as $$
declare
  v_max integer := trellis._setting_int('max_payload_bytes', 1048576);
  v_text text := p_value::text;
  v_size integer := octet_length(v_text);
begin
  if v_size > v_max then
    perform trellis._raise('TR005',
      format('%s is %s bytes, over the limit of %s bytes (trellis.settings max_payload_bytes)', p_what, v_size, v_max));
  end if;
  if v_size >= 2002 then
    perform trellis._check_json_depth(p_value, p_what, v_text);
  end if;
  return p_value;
end $$;
comment on function trellis._check_payload(jsonb, text) is
  'Return p_value if its JSON text fits max_payload_bytes (octet_length(p_value::text)), else raise TR005; TR001 if it nests more than 1,000 arrays or objects (_check_json_depth).';

-- Explain why a run did not accept a fenced write: not found, not running, or
-- held under another token.
create or replace function trellis._raise_unheld(p_run_id uuid, p_token uuid)
returns void language plpgsql as $$
declare
  v_status text;
begin
  select status into v_status from trellis.runs where id = p_run_id;
  if not found then
    perform trellis._raise('TR002', format('run %s does not exist', coalesce(p_run_id::text, 'null')));
  elsif v_status <> 'running' then
    perform trellis._raise('TR004', format('run %s is %s, not running', p_run_id, v_status));
  else
    perform trellis._raise('TR003', format('lease token %s is stale for run %s', p_token, p_run_id));
  end if;
end $$;
create or replace function trellis._check_lease(p_lease interval)
returns interval language plpgsql immutable as $$
begin
  if p_lease is null or p_lease < interval '1 second' or p_lease > interval '1 day' then
    perform trellis._raise('TR001', format('lease must be between 1 second and 1 day, not %s', coalesce(p_lease::text, 'null')));
  end if;
  return p_lease;
end $$;
comment on function trellis._check_lease(interval) is
  'Return p_lease if it is between 1 second and 1 day, else raise TR001.';

-- Metadata's foreign_id is indexed (runs_foreign_id_idx, the lookups of a
-- state machine's runs by foreign id), and an index entry holds at most
-- ~2.7 kB: a longer value failed the write with SQLSTATE 54000, and a
-- run's own ctx.setMetadata with it failed its checkpoint again at every
-- claim. So it is a string of at most 512 characters (as a machine's
-- foreign ids), a number, a boolean or null. Mirrored by assertForeignIdField
-- in src/protocol/serialize.ts.
create or replace function trellis._check_foreign_id_field(p_metadata jsonb, p_what text)
returns void language plpgsql immutable as $$
begin
  if jsonb_typeof(p_metadata->'foreign_id') not in ('string', 'number', 'boolean', 'null')
     or length(p_metadata->>'foreign_id') > 512 then
    perform trellis._raise('TR001', format('the foreign_id of %s must be a string of at most 512 characters, a number, a boolean or null (it is indexed), not %s',
                                           p_what, trellis._quote(p_metadata->>'foreign_id')));
  end if;
end $$;
comment on function trellis._check_foreign_id_field(jsonb, text) is
  'Raise TR001 unless p_metadata''s foreign_id (when there) is a string of at most 512 characters, a number, a boolean or null (it is indexed); p_what names the metadata.';

-- Whether an interval given as text is a number with no unit ('1000',
-- ' 1.5 '): PostgreSQL reads it as seconds, the TypeScript durations read a
-- number as milliseconds, so where both meet such a text is refused.
create or replace function trellis._bare_number(p_text text)
returns boolean language sql immutable parallel safe as $$
  select p_text ~ E'^\\s*[-+]?([0-9]+\\.?[0-9]*|\\.[0-9]+)([eE][-+]?[0-9]+)?\\s*$'
$$;
comment on function trellis._bare_number(text) is
  'Whether p_text is a number with no unit (an interval PostgreSQL would read as seconds).';

-- A time limit option (run_start's and a schedule's time_limit, decision
-- 0031): an interval, as a JSON string, longer than zero and at most 1000
-- years (as a checkpoint op's delay); null (absent or JSON null) is none.
-- Returned as an exact duration (its seconds: a day 24 hours, a month 30
-- days, a year 365.25 days), as TypeScript's durations are: added as it was
-- written, '1 month' would be 28 to 31 days by the start's date, '1 day' 23
-- or 25 hours across a DST change in the session's time zone, and '1 mon
-- -29 days' (longer than zero as intervals compare) could end before the
-- start.
create or replace function trellis._time_limit(p_value jsonb)
returns interval language plpgsql stable as $$
declare
  v_limit interval;
  v_secs  numeric;
begin
  if p_value is null or jsonb_typeof(p_value) = 'null' then
    return null;
  end if;
  if jsonb_typeof(p_value) <> 'string' then
    perform trellis._raise('TR001', 'time_limit must be an interval, as a string');
  end if;
  if trellis._bare_number(p_value #>> '{}') then
    perform trellis._raise('TR001', format('time_limit %s needs a unit (''15 minutes''): a bare number is seconds in PostgreSQL and milliseconds in TypeScript',
                                           trellis._quote(p_value #>> '{}')));
  end if;
  begin
    v_limit := (p_value #>> '{}')::interval;
  exception when others then
    perform trellis._raise('TR001', format('time_limit %s is not an interval', trellis._quote(p_value #>> '{}')));
  end;
  v_secs := extract(epoch from v_limit);
  if v_secs <= 0 or v_secs > 31557600000 then
    perform trellis._raise('TR001', format('time_limit %s must be longer than zero and at most 1000 years',
                                           trellis._quote(p_value #>> '{}')));
  end if;
  return make_interval(secs => v_secs);
end $$;
comment on function trellis._time_limit(jsonb) is
  'A time_limit option read as an exact duration (null for none: a day 24 hours, a month 30 days); TR001 unless a string interval longer than zero and at most 1000 years.';

-- A worker id as leases record it (lease_owner): 1-200 characters. run_claim
-- and _run_start test the same inline (their hot path pays no call).
create or replace function trellis._check_worker(p_worker text)
returns text language plpgsql immutable as $$
begin
  if p_worker is null or length(p_worker) = 0 or length(p_worker) > 200 then
    perform trellis._raise('TR001', 'worker id must be 1-200 characters');
  end if;
  return p_worker;
end $$;
comment on function trellis._check_worker(text) is
  'Return p_worker if it is a worker id of 1-200 characters, else raise TR001.';

comment on function trellis._raise_unheld(uuid, uuid) is
  'Raise TR002, TR004 or TR003 for a fenced write that was refused.';

-- Buckets (decision 0024): a run's bucket is hash(workflow, key) for a keyed
-- run, else its parent's (a child without a key of its own), else hash(run
-- id), masked to the bucket count (a power of two, setting 'buckets', fixed
-- once runs exist). It leads every key of the run-scoped tables, so they can
-- be distributed by it.
create or replace function trellis._bucket(p_workflow text, p_key text, p_id uuid, p_count integer)
returns integer language sql immutable parallel safe as $$
  select (case when p_key is null then pg_catalog.uuid_hash_extended(p_id, 0)
               else pg_catalog.hashtextextended(p_workflow || pg_catalog.chr(31) || p_key, 0) end
          & (p_count - 1))::integer
$$;
comment on function trellis._bucket(text, text, uuid, integer) is
  'The bucket (0 to p_count - 1) of a keyed run (hash of workflow and key) or, with p_key null, of run id p_id (hash of the id). p_count is a power of two.';

-- A run's lease token from its claim's one random value and its id: as
-- unguessable as the batch value, distinct per run, and computed without a
-- volatile call per row (decision 0024).
create or replace function trellis._lease_token(p_batch uuid, p_run uuid)
returns uuid language sql immutable parallel safe as $$
  select pg_catalog.md5(p_batch::text || p_run::text)::uuid
$$;
comment on function trellis._lease_token(uuid, uuid) is
  'The lease token of run p_run in the claim whose random value is p_batch.';

-- trellis._queue_limited (sql/220_queues.sql) on the columns rather than the
-- row: a whole-row argument of a reference table's shard has the shard's row
-- type on Citus, which no function takes.
create or replace function trellis._queue_limited_by(p_concurrency integer, p_key_concurrency integer,
  p_rate_limit integer, p_fair boolean, p_paused boolean)
returns boolean language sql immutable parallel safe as $$
  select p_concurrency is not null or p_key_concurrency is not null or p_rate_limit is not null or p_fair or p_paused
$$;
comment on function trellis._queue_limited_by(integer, integer, integer, boolean, boolean) is
  'Whether a queue with these options has flow control (as trellis._queue_limited on its row).';

-- Through numeric: a stored 64.0 (setting_set took it before it stored
-- integers canonically) is 64.
create or replace function trellis._bucket_count()
returns integer language plpgsql stable parallel safe as $$
begin
  return coalesce((select (s.value #>> '{}')::numeric::integer from trellis.settings s where s.key = 'buckets'), 64);
end $$;
comment on function trellis._bucket_count() is
  'The number of buckets runs are spread over (setting buckets, a power of two, default 64).';

-- Validate a new bucket count: TR008 unless a power of two from 1 to 4096,
-- or when it differs from the current one while any run exists. The current
-- one is read as _json_int reads it, not through _bucket_count: a stored
-- value no start can read (written around setting_set) must not block its
-- own repair, and since no run can start under it, any valid count may
-- replace it.
create or replace function trellis._check_buckets(p_value jsonb)
returns void language plpgsql as $$
declare
  v_n   integer := trellis._json_int(p_value, 1, 4096);
  v_old jsonb;
  v_cur integer;
begin
  if v_n is null or (v_n & (v_n - 1)) <> 0 then
    perform trellis._raise('TR008', format('setting buckets must be a power of two from 1 to 4096, not %s',
                                           trellis._quote(p_value::text)));
  end if;
  select s.value into v_old from trellis.settings s where s.key = 'buckets';
  v_cur := case when v_old is null then 64 else trellis._json_int(v_old, 1, 4096) end;
  if v_n <> v_cur and exists (select 1 from trellis.runs) then
    perform trellis._raise('TR008', format('setting buckets cannot change from %s to %s: runs exist (the bucket count is fixed at install)',
                                           v_cur, v_n));
  end if;
end $$;
comment on function trellis._check_buckets(jsonb) is
  'Raise TR008 for a bucket count that is not a power of two from 1 to 4096, or that differs from the current one while runs exist.';

create or replace function trellis.setting_set(p_key text, p_value jsonb)
returns jsonb language plpgsql as $$
begin
  if p_key is null or p_key not in ('max_payload_bytes', 'max_history_steps', 'max_lease_expiries', 'events', 'buckets', 'distributed') then
    perform trellis._raise('TR001', format('unknown setting %s (max_payload_bytes, max_history_steps, max_lease_expiries, events, buckets, distributed)', trellis._quote(p_key)));
  end if;
  if p_key = 'buckets' then
    -- Serialised with starts of runs: none may begin between the check and the change.
    lock table trellis.runs in share mode;
    perform trellis._check_buckets(p_value);
  elsif p_key in ('events', 'distributed') and jsonb_typeof(p_value) is distinct from 'boolean' then
    perform trellis._raise('TR001', format('setting %s must be true or false', p_key));
  elsif p_key not in ('events', 'distributed') and trellis._json_int(p_value, 1, 2147483647) is null then
    perform trellis._raise('TR001', format('setting %s must be a positive integer', p_key));
  end if;
  -- An integer setting is stored as the integer (1048576.0 as 1048576):
  -- its readers (_setting_int, run_start) take the plain digits.
  if p_key not in ('events', 'distributed') then
    p_value := to_jsonb(trellis._json_int(p_value, 1, 2147483647));
  end if;
  insert into trellis.settings as s (key, value, updated_at) values (p_key, p_value, now())
  on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at;
  return p_value;
end $$;
comment on function trellis.setting_set(text, jsonb) is
  'Change an engine setting: max_payload_bytes (largest input, output, step result, signal payload) or max_history_steps (calls per execution), which workers read when they start; max_lease_expiries (a positive integer, default 5: a run whose lease expires that many times in a row without checkpoint progress, e.g. a step that crashes its worker, is parked instead of claimed again, and so is a hook delivery whose lease expired that many times); events (true/false: whether run transitions and step results append to the outbox trellis.events; read by every transaction); buckets (a power of two from 1 to 4096, default 64: how many buckets runs are spread over; only before the first run, TR008 otherwise); or distributed (true once the run-scoped tables are distributed by bucket, e.g. on Citus: row locks then go one bucket at a time, docs/scaling.md).';

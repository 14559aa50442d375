-- 000_support: the clock, settings, validation helpers and error raising.
-- Owns: trellis.now(), trellis._* helpers. Touches: trellis.settings (read).
-- Every other file depends on these; nothing here takes a lock.

-- The only clock engine SQL reads. The test kit replaces this body with one
-- that adds a shared offset, so sleeps and timeouts fire at once in tests.
create or replace function trellis.now() returns timestamptz
language sql stable parallel safe as $$ select now() $$;
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
-- characters; mirrored by NAME_PATTERN in src/workflow/names.ts.
create or replace function trellis._check_name(p_value text, p_what text)
returns text language plpgsql immutable as $$
begin
  if p_value is null
     or p_value !~ '^[A-Za-z0-9_](?:[A-Za-z0-9_.:@/ -]{0,126}[A-Za-z0-9_.:@/-])?$' then
    perform trellis._raise('TR001',
      format('invalid %s name %s: use 1-128 letters, digits, space or _ . : @ / - (not starting or ending with a space)',
             p_what, trellis._quote(p_value)));
  end if;
  return p_value;
end $$;
comment on function trellis._check_name(text, text) is
  'Return p_value if it is a valid workflow/queue/step name, else raise TR001.';

-- PL/pgSQL rather than SQL: called from PL/pgSQL on every checkpoint and
-- start, where a SQL function would be planned anew on each call.
create or replace function trellis._setting_int(p_key text, p_default integer)
returns integer language plpgsql stable as $$
begin
  return coalesce((select (value #>> '{}')::integer from trellis.settings where key = p_key), p_default);
end $$;
comment on function trellis._setting_int(text, integer) is
  'An integer engine setting from trellis.settings, or p_default.';

-- Payload size is the bytes of the value's JSON text (jsonb's text form).
-- Workers and clients measure the same thing before they send a value
-- (src/protocol/serialize.ts), so a value one layer accepts the other does too;
-- the binary jsonb size can be several times the text (small numbers) or a
-- fraction of it, so it would not agree.
create or replace function trellis._check_payload(p_value jsonb, p_what text)
returns jsonb language plpgsql stable as $$
declare
  v_max integer := trellis._setting_int('max_payload_bytes', 1048576);
  v_size integer := octet_length(p_value::text);
begin
  if v_size > v_max then
    perform trellis._raise('TR005',
      format('%s is %s bytes, over the limit of %s bytes (trellis.settings max_payload_bytes)', p_what, v_size, v_max));
  end if;
  return p_value;
end $$;
comment on function trellis._check_payload(jsonb, text) is
  'Return p_value if its JSON text fits max_payload_bytes (octet_length(p_value::text)), else raise TR005.';

-- Explain why a run did not accept a fenced write: not found, not running, or
-- held under another token.
create or replace function trellis._raise_unheld(p_run_id uuid, p_token uuid)
returns void language plpgsql as $$
declare
  v_status text;
begin
  select status into v_status from trellis.runs where id = p_run_id;
  if not found then
    perform trellis._raise('TR002', format('run %s does not exist', p_run_id));
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

comment on function trellis._raise_unheld(uuid, uuid) is
  'Raise TR002, TR004 or TR003 for a fenced write that was refused.';

create or replace function trellis.setting_set(p_key text, p_value jsonb)
returns jsonb language plpgsql as $$
begin
  if p_key is null or p_key not in ('max_payload_bytes', 'max_history_steps', 'events') then
    perform trellis._raise('TR001', format('unknown setting %s (max_payload_bytes, max_history_steps, events)', trellis._quote(p_key)));
  end if;
  if p_key = 'events' and jsonb_typeof(p_value) is distinct from 'boolean' then
    perform trellis._raise('TR001', 'setting events must be true or false');
  elsif p_key <> 'events' and (jsonb_typeof(p_value) is distinct from 'number' or (p_value #>> '{}')::numeric < 1
     or (p_value #>> '{}')::numeric > 2147483647 or (p_value #>> '{}')::numeric % 1 <> 0) then
    perform trellis._raise('TR001', format('setting %s must be a positive integer', p_key));
  end if;
  insert into trellis.settings as s (key, value, updated_at) values (p_key, p_value, now())
  on conflict (key) do update set value = excluded.value, updated_at = excluded.updated_at;
  return p_value;
end $$;
comment on function trellis.setting_set(text, jsonb) is
  'Change an engine setting: max_payload_bytes (largest input, output, step result, signal payload) or max_history_steps (calls per execution), which workers read when they start; or events (true/false: whether run transitions and step results append to the outbox trellis.events; read by every transaction).';

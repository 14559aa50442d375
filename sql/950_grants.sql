-- 950_grants: roles and privileges (docs/security.md).
-- Owns: the roles trellis_client, trellis_worker and trellis_reader (created
-- here when missing and this role may create roles) and every grant on the
-- trellis schema. Applied last, on every install: create or replace drops a
-- function's SECURITY DEFINER and settings, so they are set again here.
-- Touches: no rows. Takes no row locks.
--
-- EXECUTE on every trellis function is revoked from PUBLIC. The roles hold:
--   trellis_reader: SELECT on the tables, runs without lease_token.
--   trellis_client: the reader's rights and EXECUTE on the application
--     functions (start, signal, cancel, pause, resume, retry, scrub, purge,
--     retention, register, the event cursor and consumers, hook_retry, the
--     state machine, template and connector functions, schedule and
--     queue writes);
--     those that write are SECURITY DEFINER with a
--     pinned search_path, so the client role needs no write privilege on a
--     table: it cannot complete, fail or checkpoint a run, read a lease
--     token, or change trellis.runs directly.
--   trellis_worker: the engine: EXECUTE on every function but the test
--     kit's clock and setting_set, and SELECT/INSERT/UPDATE/DELETE on the
--     tables (the worker functions run with the caller's rights) but the
--     settings, the legal run transitions, the clock and the migration
--     records, which it only reads.
-- Grant them to the login roles of your applications:
--   grant trellis_client to app_web; grant trellis_worker to app_worker;

do $$
declare
  v_role text;
begin
  foreach v_role in array array['trellis_client', 'trellis_worker', 'trellis_reader'] loop
    if not exists (select 1 from pg_roles where rolname = v_role) then
      begin
        execute format('create role %I nologin', v_role);
      exception
        -- Another database of the cluster is being installed at the same time.
        when duplicate_object or unique_violation then null;
        when insufficient_privilege then
          raise notice 'trellis: cannot create role % (needs CREATEROLE); create it and install again to grant it', v_role;
      end;
    end if;
  end loop;
end $$;

revoke all on all functions in schema trellis from public;

-- Every other entry point (a PL/pgSQL function whose name has no leading
-- underscore: the workers' claim and checkpoint, the role and hook calls,
-- the admin calls) runs with the same pinned search_path as the SECURITY
-- DEFINER ones below. PostgreSQL keeps a cached plan only while the
-- search_path is the one it was planned under, so helpers that both kinds
-- call (_run_move, _outbox_on, _setting_int, _check_name, ...) were
-- analyzed and planned again each time a connection went from run_start,
-- signal_send or run_cancel (pinned path) to run_claim or checkpoint_apply
-- (the session's path) and back: a pool shared by a client and a worker did
-- so on every run (issue 18: 60-70 µs of backend CPU for one such helper
-- in each of run_start and run_claim). Helpers (a leading underscore) keep no
-- setting of their own: a SET clause costs every call a GUC save and
-- restore, and an SQL function with one is never inlined; they run under
-- their caller's path, which is now always this one.
do $$
declare
  f regprocedure;
begin
  for f in
    select p.oid::regprocedure from pg_proc p join pg_language l on l.oid = p.prolang
     where p.pronamespace = 'trellis'::regnamespace and l.lanname = 'plpgsql'
       and left(p.proname, 1) <> '_'
  loop
    execute format('alter function %s set search_path = pg_catalog, trellis, pg_temp', f);
  end loop;
end $$;

-- A helper the TypeScript side calls directly runs under the caller's
-- search_path, where another role's objects could stand in for what its
-- body names: a client's first start calls _workflow_stored, which gets
-- the pin too (it runs once per client; _setting_int, also called
-- directly, names nothing another role could stand in for).
alter function trellis._workflow_stored(jsonb, timestamptz) set search_path = pg_catalog, trellis, pg_temp;

-- The application functions that write run as their owner, with a pinned search_path.
do $$
declare
  f regprocedure;
begin
  for f in
    select p.oid::regprocedure from pg_proc p
     where p.pronamespace = 'trellis'::regnamespace
       and p.proname in ('run_start', 'run_start_many', 'workflow_register', 'workflow_input_error', 'signal_send', 'signal_with_start', 'request_send', 'run_cancel', 'run_pause',
                         'run_resume', 'run_retry', 'run_fork', 'run_scrub', 'run_purge', 'retention_set', 'retention',
                         'run_cancel_many', 'run_retry_many', 'run_pause_many', 'run_resume_many', 'run_control_preview', 'run_set_metadata',
                         'events_read', 'event_consumer_create', 'event_consumer_read', 'event_consumer_ack',
                         'event_consumer_drop', 'hook_retry', 'xact_horizon',
                         'machine_trigger_check', 'machine_trigger_keyed', 'machine_trigger', 'machine_callback', 'machine_data_delete',
                         'template_set', 'template_get', 'template_start', 'connector_cursor_lock', 'connector_cursor_set',
                         'schedule_set', 'schedule_pause', 'schedule_resume', 'schedule_delete', 'schedule_backfill', 'schedule_trigger',
                         'queue_set', 'queue_pause', 'queue_resume',
                         -- These write nothing; they read pg_locks through a helper
                         -- the client and reader roles hold no EXECUTE on.
                         'run_finished_watch', 'run_finished_unwatch')
  loop
    execute format('alter function %s security definer set search_path = pg_catalog, trellis, pg_temp', f);
  end loop;
end $$;

do $$
declare
  v_reader boolean := exists (select 1 from pg_roles where rolname = 'trellis_reader');
  v_client boolean := exists (select 1 from pg_roles where rolname = 'trellis_client');
  v_worker boolean := exists (select 1 from pg_roles where rolname = 'trellis_worker');
  v_columns text;
  f regprocedure;
begin
  -- Every column of runs but lease_token (new columns are picked up on the next install).
  select string_agg(quote_ident(attname), ', ' order by attnum) into v_columns
    from pg_attribute where attrelid = 'trellis.runs'::regclass and attnum > 0 and not attisdropped
     and attname <> 'lease_token';
  if v_reader then
    execute 'grant usage on schema trellis to trellis_reader';
    execute 'grant select on trellis.workflows, trellis.steps, trellis.signals, trellis.settings, trellis.retentions,
                            trellis.schema_info, trellis.migrations, trellis.run_transitions, trellis.events,
                            trellis.event_consumers, trellis.hook_deliveries, trellis.run_deadlines, trellis.run_watches, trellis.templates,
                            trellis.connector_cursors, trellis.machine_runs, trellis.roles, trellis.schedules,
                            trellis.queues, trellis.queue_stats to trellis_reader';
    execute 'grant execute on function trellis.events_read(text, integer, jsonb), trellis.run_finished_watch(),
                                       trellis.run_finished_unwatch(), trellis.run_value(uuid, text), trellis.run_request(uuid, text),
                                       trellis.run_values(uuid), trellis.run_stream(uuid, text, text, integer),
                                       trellis.run_control_preview(text, jsonb, integer, uuid) to trellis_reader';
    execute format('grant select (%s) on trellis.runs to trellis_reader', v_columns);
    execute 'grant execute on function trellis.now(), trellis._setting_int(text, integer), trellis._check_request_id(text) to trellis_reader';
  end if;
  if v_client then
    execute 'grant usage on schema trellis to trellis_client';
    execute 'grant select on trellis.workflows, trellis.steps, trellis.signals, trellis.settings, trellis.retentions,
                            trellis.schema_info, trellis.migrations, trellis.clock, trellis.run_transitions,
                            trellis.events, trellis.event_consumers, trellis.hook_deliveries, trellis.run_deadlines, trellis.run_watches, trellis.templates,
                            trellis.connector_cursors, trellis.machine_runs, trellis.roles, trellis.schedules,
                            trellis.queues, trellis.queue_stats to trellis_client';
    execute format('grant select (%s) on trellis.runs to trellis_client', v_columns);
    -- The input-shape helpers run only inside the owner-rights functions
    -- above (run_start, signal_send, workflow_input_error): a client login
    -- calling them itself met PostgreSQL's own errors (a malformed jsonpath
    -- argument, 42501 on the helpers they call), not typed ones. Granted
    -- before 5 December 2026, so taken back here on upgrade.
    execute 'revoke execute on function trellis._input_error(jsonb, jsonpath, jsonb), trellis._shape_error(jsonb, jsonb) from trellis_client';
    for f in
      select p.oid::regprocedure from pg_proc p
       where p.pronamespace = 'trellis'::regnamespace
         and p.proname in ('run_start', 'run_start_many', 'workflow_register', 'workflow_input_error', 'signal_send', 'signal_with_start', 'request_send', 'run_cancel',
                           'run_pause', 'run_resume', 'run_retry', 'run_fork', 'run_scrub', 'run_purge', 'retention_set',
                           'run_cancel_many', 'run_retry_many', 'run_pause_many', 'run_resume_many', 'run_control_preview', 'run_set_metadata',
                           'retention', 'now', '_setting_int', '_workflow_stored',
                           'events_read', 'event_consumer_create', 'event_consumer_read', 'event_consumer_ack',
                           'event_consumer_drop', 'hook_retry', 'xact_horizon',
                           'machine_trigger_check', 'machine_trigger_keyed', 'machine_trigger', 'machine_callback', 'machine_data_delete',
                           'template_set', 'template_get', 'template_start', 'connector_cursor_lock', 'connector_cursor_set',
                           'schedule_set', 'schedule_pause', 'schedule_resume', 'schedule_delete', 'schedule_backfill', 'schedule_trigger',
                           'queue_set', 'queue_pause', 'queue_resume', 'run_finished_watch', 'run_finished_unwatch',
                           'run_value', 'run_values', 'run_request', 'run_stream', '_check_request_id')
    loop
      execute format('grant execute on function %s to trellis_client', f);
    end loop;
  end if;
  if v_worker then
    execute 'grant usage on schema trellis to trellis_worker';
    execute 'grant select, insert, update, delete on all tables in schema trellis to trellis_worker';
    -- Settings change through setting_set and retention_set (the owner's),
    -- and the legal transitions with the schema: the worker reads them.
    execute 'revoke insert, update, delete, truncate on trellis.clock, trellis.migrations, trellis.schema_info, trellis.settings, trellis.run_transitions from trellis_worker';
    execute 'grant usage on all sequences in schema trellis to trellis_worker';
    for f in
      select p.oid::regprocedure from pg_proc p
       where p.pronamespace = 'trellis'::regnamespace
         and p.proname not in ('clock_use_virtual', 'clock_advance', 'setting_set')
    loop
      execute format('grant execute on function %s to trellis_worker', f);
    end loop;
  end if;
end $$;

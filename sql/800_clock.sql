-- 800_clock: the test kit's virtual clock.
-- Owns: clock_use_virtual, clock_advance. Touches: trellis.clock, and
-- replaces trellis.now() (sql/000_support.sql) in a test database.
-- Lock order: none (clock_use_virtual is DDL on trellis.now()).

-- The test kit's virtual clock. Production never calls these.
-- clock_use_virtual is DDL that changes the clock of every session of the
-- database, so it needs two opt-ins: the database was made by the test kit
-- (which sets trellis.test_database = 'on' on it with ALTER DATABASE, as a
-- production database never is), and the session sets
-- trellis.virtual_clock = 'allowed' (the test kit sets it in its connection
-- options; `set local` works too). No Trellis role may execute it
-- (950_grants.sql): only the schema owner can.
create or replace function trellis.clock_use_virtual()
returns void language plpgsql as $$
begin
  if current_setting('trellis.test_database', true) is distinct from 'on' then
    perform trellis._raise('TR004',
      'the virtual clock is only for databases the test kit created (they have trellis.test_database = on)');
  end if;
  if current_setting('trellis.virtual_clock', true) is distinct from 'allowed' then
    perform trellis._raise('TR004',
      'the virtual clock is for test databases: set trellis.virtual_clock = ''allowed'' in this session first '
      || '(the test kit does; by hand: set local trellis.virtual_clock = ''allowed'')');
  end if;
  insert into trellis.clock (singleton, "offset") values (true, '0') on conflict do nothing;
  create or replace function trellis.now() returns timestamptz
  language sql stable parallel safe as 'select pg_catalog.now() + coalesce((select "offset" from trellis.clock), interval ''0'')';
end $$;
comment on function trellis.clock_use_virtual() is
  'Test kit only: make trellis.now() read a shared offset from trellis.clock. TR004 unless the database was made by the test kit (trellis.test_database = on) and the session set trellis.virtual_clock = ''allowed''.';

create or replace function trellis.clock_advance(p_by interval)
returns timestamptz language plpgsql as $$
declare
  v_queue text;
begin
  if p_by is null or p_by < interval '0' then
    perform trellis._raise('TR001', 'the clock only moves forward');
  end if;
  update trellis.clock set "offset" = "offset" + p_by;
  if not found or (select prosrc from pg_proc where oid = 'trellis.now()'::regprocedure) not like '%trellis.clock%' then
    perform trellis._raise('TR004', 'the virtual clock is not in use (call trellis.clock_use_virtual())');
  end if;
  for v_queue in select distinct queue from trellis.runs where status in ('pending', 'waiting') loop
    perform pg_notify('trellis:run_ready', v_queue);
  end loop;
  return trellis.now();
end $$;
comment on function trellis.clock_advance(interval) is
  'Test kit only: move the virtual clock forward and wake workers, so due sleeps, timeouts and retries fire.';

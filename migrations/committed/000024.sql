--! Previous: sha1:0c8d99a3d7ce8e3a7389011c3c99667496a90fa0
--! Hash: sha1:70606f386227d0a42aa14a201dc1169dc467ba4f

-- Trellis: the CHECK constraints of trellis.runs (four) and trellis.steps
-- (two) become one each, through a PL/pgSQL function (decision 0028).
-- PostgreSQL reads every CHECK constraint of a table from its stored node
-- text and plans it again in each statement that writes the table; the
-- four of runs cost ~20 µs of backend CPU per start, claim and checkpoint
-- (issue 18, measured with test/bench/cycle-ab.ts). A call of a function
-- is a short text to read, and the function keeps its compiled body for
-- the session. The invariants are the same. sql/000_support.sql owns the
-- functions from now on; a change to what they allow needs a migration
-- that validates the constraint again.
create or replace function trellis._runs_row_ok(p_status text, p_finished boolean, p_leased boolean, p_close text)
returns boolean language plpgsql immutable parallel safe as $$
begin
  return p_status in ('pending', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled')
     and (p_status in ('completed', 'failed', 'cancelled')) = p_finished
     and (p_status = 'running') = p_leased
     and p_close in ('cancel', 'abandon');
end $$;

create or replace function trellis._steps_row_ok(p_kind text, p_status text)
returns boolean language plpgsql immutable parallel safe as $$
begin
  return p_kind in ('step', 'now', 'random', 'uuid', 'side_effect', 'sleep', 'signal', 'child', 'race')
     and p_status in ('running', 'waiting', 'completed', 'failed', 'retrying');
end $$;

-- Each new constraint reads its table once (every row is checked) under
-- the lock the migration holds: on a large runs table, a pause of writes
-- for that read.
alter table trellis.runs add constraint runs_row_check
  check (trellis._runs_row_ok(status, finished_at is not null, lease_token is not null, parent_close));
alter table trellis.runs drop constraint if exists runs_status_check, drop constraint if exists runs_lease_check,
  drop constraint if exists runs_finished_check, drop constraint if exists runs_parent_close_check;

alter table trellis.steps add constraint steps_row_check check (trellis._steps_row_ok(kind, status));
alter table trellis.steps drop constraint if exists steps_kind_check, drop constraint if exists steps_status_check;

-- _steps_record reads the versions whose events carry payloads once per
-- checkpoint, as a value (sql/300_checkpoints.sql): the per-row function
-- it called since migration 000023's round failed on a Citus cluster,
-- whose planner ran it on the shards.
drop function if exists trellis._event_payloads(text, text);

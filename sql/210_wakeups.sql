-- 210_wakeups: the wake-up gate, which lets concurrent starts skip the NOTIFY
-- that would serialise their commits, without delaying any run.
-- Owns: trellis.run_idle_check; the gate a start takes is in _run_start
-- (sql/200_runs.sql).
-- Touches: trellis.runs (read only); transaction-level advisory locks
-- (class 0x54524c57 'TRLW', object hashtext(queue)): starts take the queue's
-- gate shared, a worker going idle tries it exclusive.
--
-- Postgres holds one database-wide lock from queuing a NOTIFY until the
-- commit is flushed, so starts that each notify commit one at a time (no
-- group commit). A start made with coalesce_notify skips its NOTIFY when a
-- run of the same queue, workflow and version is already pending and due:
-- a worker serving those is then either claiming (its claim loop goes on
-- until a claim comes back short) or will close the gate before it idles.
-- Closing the gate (run_idle_check) succeeds only while no coalescing start
-- is in flight, and the due time it then reads sees every start that
-- committed before: a run whose start skipped its NOTIFY is claimed by the
-- worker's next look, not at the next poll. A start that takes the gate
-- after it was closed sees no pending run (the worker claimed or will claim
-- them all) and notifies. See docs/decisions/0021-wake-up-gate.md.

create or replace function trellis.run_idle_check(p_queues text[], p_workflows text[], p_versions text[])
returns table (next_due timestamptz, gate_busy boolean) language plpgsql as $$
declare
  v_queue text;
begin
  -- Exclusive try-locks, in name order; a worker never waits here (a start
  -- in the caller's own transaction may hold the gate for long).
  for v_queue in select distinct q from unnest(p_queues) q order by q loop
    if not pg_try_advisory_xact_lock(1414679639, hashtext(v_queue)) then
      return query select null::timestamptz, true;
      return;
    end if;
  end loop;
  -- A statement of its own, so its snapshot is taken after the locks.
  return query select trellis.run_next_due(p_queues, p_workflows, p_versions), false;
end $$;
comment on function trellis.run_idle_check(text[], text[], text[]) is
  'For a worker whose claim came back short, before it waits: close the wake-up gate of p_queues and return run_next_due (every start that skipped its NOTIFY before is visible to it); gate_busy (next_due null) when a coalescing start is in flight, and the worker should look again shortly.';

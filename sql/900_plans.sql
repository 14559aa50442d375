-- 900_plans: how the engine's hot PL/pgSQL functions are planned.
-- Owns: nothing new; sets plan_cache_mode on functions defined in 200-710.
-- Applied last, after every function exists (re-applied with sql/ on every
-- install, since create or replace drops a function's settings).
--
-- PL/pgSQL caches a plan per statement, but by default it keeps planning
-- anew for each call whenever a custom plan looks cheaper than the generic
-- one, and for these statements (lateral probes over unnest(parameters),
-- joins with unnest(v_ops)) it always does: an empty run_claim spent ~0.6 ms
-- of its ~0.7 ms planning. The generic plans are the index plans we want
-- (primary-key and partial-index probes), so force them. Measured with a
-- single connection on the embedded server: an empty claim 0.83 ms -> 0.33 ms
-- round trip; see docs/decisions/0011-generic-plans.md.
--
-- A generic plan is made once per session, at the first call, from the
-- statistics of that moment; on a new database (or a table autovacuum has
-- not analyzed yet) the planner sees a tiny table and picks sequential
-- scans, which the session then keeps until an ANALYZE invalidates the
-- plan: a completing checkpoint read the whole runs table five times,
-- 1.0 -> 1.9 ms as it grew from 1,000 to 2,500 rows, against a constant
-- 0.7 ms with index scans. Every statement in these functions is meant to
-- be an index probe, so sequential scans are off inside them (a table
-- with no usable index is still scanned; only the choice is taken away).
--
-- And no JIT: a sequential scan the planner must still make inside them (a
-- tiny table with no index, such as the test kit's trellis.clock, read by
-- its trellis.now()) carries enable_seqscan's disable cost of 1e10, far
-- over jit_above_cost, so where PostgreSQL has JIT (jit = on, the default
-- since 12, with llvmjit installed, as Debian's packages have it) every
-- such statement was compiled: 5-17 ms per call of the test kit's clock
-- (a configuration audit). These are index probes; JIT never pays here.

do $$
declare
  f regprocedure;
begin
  foreach f in array array[
    'trellis.run_claim(text, text[], text[], text[], integer, interval, boolean)',
    'trellis.checkpoint_apply(jsonb)',
    'trellis._run_start(text, jsonb, jsonb, uuid, uuid, integer, text, text, uuid, interval)',
    'trellis.run_start_claimed(text, jsonb, jsonb, text, interval)',
    'trellis.run_heartbeat_many(uuid[], uuid[], interval)',
    'trellis._wake_child_waiters(uuid[])',
    'trellis.signal_send(uuid, text, jsonb, text)',
    'trellis.run_next_due(text[], text[], text[])',
    'trellis.run_idle_check(text[], text[], text[])',
    -- Not hot, but a worker's purge session keeps its plans for as long.
    'trellis._purge_workflow(text, interval, integer)',
    -- The schedule ticker, every second on one worker: its reads are partial-index probes.
    'trellis.schedule_tick(bigint, integer)',
    'trellis.schedule_fire(bigint, jsonb)']::regprocedure[]
  loop
    -- Not on a distributed schema (sql/160_buckets.sql): a distributed
    -- planner needs the values of the parameters to plan a multi-shard read.
    if trellis._distributed() then
      execute format('alter function %s reset plan_cache_mode', f);
    else
      execute format('alter function %s set plan_cache_mode = force_generic_plan', f);
    end if;
    execute format('alter function %s set enable_seqscan = off', f);
    execute format('alter function %s set jit = off', f);
  end loop;
end $$;

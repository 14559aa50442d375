-- 900_plans: how the engine's hot PL/pgSQL functions are planned.
-- Owns: nothing new; sets plan_cache_mode on functions defined in 200-500.
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

alter function trellis.run_claim(text, text[], text[], text[], integer, interval, boolean)
  set plan_cache_mode = force_generic_plan;
alter function trellis.checkpoint_apply(jsonb) set plan_cache_mode = force_generic_plan;
alter function trellis._run_start(text, jsonb, jsonb, uuid, uuid, integer, text) set plan_cache_mode = force_generic_plan;
alter function trellis.run_heartbeat_many(uuid[], uuid[], interval) set plan_cache_mode = force_generic_plan;
alter function trellis._wake_child_waiters(uuid[]) set plan_cache_mode = force_generic_plan;
alter function trellis.signal_send(uuid, text, jsonb, text) set plan_cache_mode = force_generic_plan;
alter function trellis.run_next_due(text[], text[], text[]) set plan_cache_mode = force_generic_plan;

--! Previous: sha1:2df470968319645613115dfe71b2945dd491e772
--! Hash: sha1:679a4128e9908c68ce5da2cb3d2e548b492266c9

-- Trellis 000003: run_claim takes p_async_commit (the worker's claims commit
-- without waiting for the WAL flush: a claim lost in a crash only returns its
-- runs to pending). The function is recreated by sql/200_runs.sql.
drop function if exists trellis.run_claim(text, text[], text[], text[], integer, interval);

-- The hot tables churn (every run is updated two to four times): vacuum them
-- after 2% of their rows changed rather than 20%, without cost-based pauses.
alter table trellis.runs set (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.02,
                              autovacuum_vacuum_cost_delay = 0);
alter table trellis.steps set (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05,
                               autovacuum_vacuum_cost_delay = 0);

--! Previous: sha1:a7fa653e0130fdc21e798fb0ce7a92462a0aeef7
--! Hash: sha1:8e69e450094e37b41731fbeee58ca7346501b872

-- Trellis: poison runs that crash their worker are parked (issue 10, F10).
-- runs.lease_expiries counts the leases of a run that expired in a row
-- without any checkpoint progress (a step result, a wait, a release, a
-- child start, an end; not a step's attempt-started marker). run_claim's
-- sweep of expired leases adds one, checkpoint progress sets it back to 0,
-- and at the setting max_lease_expiries (default 5) the sweep parks the run
-- (paused, the dead letter) instead of releasing it (sql/200_runs.sql).
-- A column of runs, so it lives in the run's bucket like the rest of the
-- row (decision 0024); adding it with a constant default rewrites nothing.
alter table trellis.runs add column if not exists lease_expiries integer not null default 0;

--! Previous: sha1:d98c1eb09047262ffdfc648f5a747b9082854375
--! Hash: sha1:bb5293da8641e72902b5c62170340f2d1d1bb00e

-- Trellis: run deadlines (decision 0031). A run started with a deadline
-- (run_start options deadline or time_limit, a child's deadline or time_limit)
-- is cancelled, with its cancel-children, once the deadline passes and it
-- has not finished: the role-held duty trellis.deadlines calls
-- run_cancel_overdue, which finds the runs through runs_deadline_idx.
alter table trellis.runs add column if not exists deadline_at timestamptz;
-- Only runs that have a deadline and could still be cancelled by it: a
-- run without one (most runs) has no entry, and a run leaves the index
-- when it finishes or its cancellation is requested.
create index if not exists runs_deadline_idx on trellis.runs (deadline_at)
  where deadline_at is not null and finished_at is null and cancel_requested_at is null;
-- A schedule may give each tick's run a time limit (schedule_set's time_limit).
alter table trellis.schedules add column if not exists time_limit interval
  constraint schedules_time_limit_check check (time_limit > interval '0');
-- A child op may carry its run's deadline (a time) or time limit (from its start).
alter type trellis.checkpoint_op add attribute deadline timestamptz;
alter type trellis.checkpoint_op add attribute time_limit interval;

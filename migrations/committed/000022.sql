--! Previous: sha1:650958c72a0e065daf7313cbec2ca387b494b034
--! Hash: sha1:1632748251d9d1946d10c1112f2e1ce178f1224b

-- Trellis: no foreign key from steps to runs (issue 18; amends decision 0024).
--
-- Every step row is written by the engine under its run's held lease (the
-- checkpoint's fence joins the run) or with a child's start, so the key
-- never refused a row; but each step inserted ran its check, a query with a
-- KEY SHARE lock of the run's row (the run is already locked by the
-- checkpoint): about 15-20% of the server's CPU per ten-step workflow. A
-- purge (trellis._delete_runs, the one place runs are deleted) now deletes
-- a run's steps itself, as it already did its events and hook deliveries.
alter table trellis.steps drop constraint if exists steps_run_fkey;

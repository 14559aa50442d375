--! Previous: sha1:a1220f66defedfc8059dfc532dc1d6128ef63729
--! Hash: sha1:bc817230f60047e6285f74f9f044b2b459a5a2de

-- Trellis: forking a run (decision 0032). trellis.run_fork starts a new run
-- of a run's workflow with its current input and the settled results of its
-- calls before a given one; the new run records where it came from.
alter table trellis.runs add column if not exists forked_from uuid;
alter table trellis.runs add column if not exists forked_from_seq integer;
comment on column trellis.runs.forked_from is
  'The run this run was forked from (run_fork), null otherwise. Not a foreign key: the original may be purged first.';
comment on column trellis.runs.forked_from_seq is
  'With forked_from: the call of the original''s execution the fork runs again from (the calls before it kept their results).';
-- A cancellation's reason reaches the workflow code (its CancelledError and
-- the running step's abort): run_requests returns it as a last column, read
-- by a worker told of a cancel on trellis:run_control (which carries ids
-- only). run_claim returns it too (dropped by migration 29).
drop function if exists trellis.run_requests(uuid[], uuid[]);

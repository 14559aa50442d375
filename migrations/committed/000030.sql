--! Previous: sha1:a1220f66defedfc8059dfc532dc1d6128ef63729
--! Hash: sha1:3f18209f2c0ce91f773e79ed6aea261be9bba355

-- Trellis: forking a run (decision 0032). trellis.run_fork starts a new run
-- of a run's workflow with its current input and the settled results of its
-- calls before a given one; the new run records where it came from.
alter table trellis.runs add column if not exists forked_from uuid;
alter table trellis.runs add column if not exists forked_from_seq integer;
comment on column trellis.runs.forked_from is
  'The run this run was forked from (run_fork), null otherwise. Not a foreign key: the original may be purged first.';
comment on column trellis.runs.forked_from_seq is
  'With forked_from: the call of the original''s execution the fork runs again from (the calls before it kept their results).';

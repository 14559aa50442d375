--! Previous: sha1:16989f479da6ec1b617667f2b824e876c945a983
--! Hash: sha1:650958c72a0e065daf7313cbec2ca387b494b034

-- Trellis: one index for a run's identity (issue 18; amends decision 0024).
--
-- trellis.runs had two indexes on its identity: the primary key (bucket, id)
-- for the foreign keys of steps and signals, and runs_id_idx (id) for every
-- lookup by run id alone (locks, fences, moves, get). A status change of a
-- run is never a HOT update, so each version of a row (inserted, claimed,
-- finished: three for a one-step run) wrote an entry into both. A primary
-- key (id, bucket) serves both: its leading column answers a lookup by id,
-- and a foreign key may reference its columns in another order. So one-step
-- run writes 11 index entries instead of 14. Citus needs only that the
-- bucket is in the key, not that it leads it.
--
-- On a large table this migration builds the primary key again (writes to
-- runs, steps and signals wait for the build).
alter table trellis.steps drop constraint if exists steps_run_fkey;
alter table trellis.signals drop constraint if exists signals_run_fkey;
alter table trellis.runs drop constraint runs_pkey;
alter table trellis.runs add primary key (id, bucket);
drop index if exists trellis.runs_id_idx;
alter table trellis.steps add constraint steps_run_fkey foreign key (bucket, run_id)
  references trellis.runs (bucket, id) on delete cascade;
alter table trellis.signals add constraint signals_run_fkey foreign key (bucket, run_id)
  references trellis.runs (bucket, id) on delete cascade;

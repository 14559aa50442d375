--! Previous: sha1:8e69e450094e37b41731fbeee58ca7346501b872
--! Hash: sha1:16989f479da6ec1b617667f2b824e876c945a983

-- Trellis: fewer index entries per status change of a run (issue 18).
--
-- A status change of a run is never a HOT update (status is in the
-- predicates of the partial indexes), so every version of a runs row adds an
-- entry to each index whose predicate it meets: a one-step run (inserted
-- pending, claimed, completed) wrote 16 entries into the 14 indexes. Two go:
--
-- runs_due_idx (queue, workflow, version, run_at) where pending duplicated
-- runs_claim_idx (queue, workflow, version, priority desc, run_at) where
-- pending for one reader, run_next_due, which now reads runs_claim_idx one
-- probe per distinct priority of the pair's pending runs (sql/200_runs.sql).
--
-- runs_status_created_idx (listing newest first by status) no longer holds
-- running runs: a run is running for the seconds its steps take, and every
-- claim wrote an entry for it. Listing running runs reads runs_lease_idx
-- (partial on running, bounded by the workers' concurrency) and sorts.
--
-- On a large table this migration builds one index (writes to runs wait
-- for the build).
drop index if exists trellis.runs_due_idx;
drop index if exists trellis.runs_status_created_idx;
create index runs_status_created_idx on trellis.runs (status, created_at desc, id desc)
  where status <> 'running';

--! Previous: sha1:679a4128e9908c68ce5da2cb3d2e548b492266c9
--! Hash: sha1:11a8c81790ba74758c34d479e77d8d0a025f5d9d

-- Trellis 000004: the claim-path indexes lead with (queue, workflow, version),
-- so a claim or run_next_due probes only the pairs a worker serves: pending
-- runs of other workflows or versions in the same queue cost it nothing.
drop index trellis.runs_claim_idx;
create index runs_claim_idx on trellis.runs (queue, workflow, version, priority desc, run_at) where status = 'pending';
drop index trellis.runs_due_idx;
create index runs_due_idx on trellis.runs (queue, workflow, version, run_at) where status = 'pending';

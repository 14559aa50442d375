--! Previous: sha1:cd505d13b9d094faf76d3d021bdad52f638c96a3
--! Hash: sha1:b7d2feedf356cededa197051f6b3d09b5769604f

-- Trellis: every registered workflow's default queue has its row from the
-- registration on (workflow_register inserts it), so a start into its
-- workflow's default queue no longer probes trellis.queues (issue 18: one
-- statement and one table fewer per start). Rows for the default queues of
-- workflows registered before this migration and never started into:
insert into trellis.queues (name, created_at, updated_at)
select distinct w.queue, now(), now() from trellis.workflows w
on conflict (name) do nothing;

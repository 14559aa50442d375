--! Previous: sha1:fd85a02f9858400c44cfe807086b34ea9f47e19e
--! Hash: sha1:3ac9e709300595fef64e3d48534c5207cf809fce

-- The keyless runs of a queue with key_concurrency, behind more than 200
-- keyed runs whose keys are held (sql/230_queue_claim.sql _queue_pick): a
-- claim that finds none among the first entries of runs_claim_idx while it
-- has room left reads on, a page at a time, from where the last such read
-- stopped. The queue's row keeps that place: the claim position (priority,
-- due time) of the last page's last run, null to start from the front.
alter table trellis.queues add column if not exists keyless_priority integer;
alter table trellis.queues add column if not exists keyless_run_at timestamptz;
comment on column trellis.queues.keyless_priority is
  'Where _queue_pick''s read past held keyed runs for runs without a key goes on (with keyless_run_at): the priority of the last run it read; null: from the front.';
comment on column trellis.queues.keyless_run_at is
  'Where _queue_pick''s read past held keyed runs for runs without a key goes on (with keyless_priority): the due time of the last run it read.';

--! Previous: sha1:70606f386227d0a42aa14a201dc1169dc467ba4f
--! Hash: sha1:cd505d13b9d094faf76d3d021bdad52f638c96a3

-- Trellis: a hook delivery keeps the run's status and error as the
-- transition that wrote it left them (at_event: {"status", "error"}), so a
-- hook that runs after the run moved on (an onPause delivered after a
-- resume) still gets the pause's status and reason. hook_claim returns
-- them instead of the run's current ones when the row has them; rows
-- written before this migration have none and keep the old reading.
alter table trellis.hook_deliveries add column if not exists at_event jsonb;
comment on column trellis.hook_deliveries.at_event is
  'The run''s status and error when the transition that wrote this delivery committed: {"status": ..., "error": ...}; null for deliveries written before migration 000025.';

--! Previous: sha1:effe03909c2b84ee7001c7d3384f0121d6c0ac86
--! Hash: sha1:a34964f1bc09c92f6d52ef4be6e7829c898784eb

-- Trellis: messages that reach a run after its last look (decision 0043's
-- amendment). A signal that signal_with_start buffers for the key's running
-- run keeps the start it came with (start: {input, options}); when that run
-- completes or fails without having seen the signal, the checkpoint starts
-- the key's next run with that start and moves such signals to it. The
-- index holds only those signals while unconsumed: almost always empty.
alter table trellis.signals add column if not exists start jsonb;
comment on column trellis.signals.start is
  'For a signal signal_with_start buffered for a run it did not start: the start it came with ({input, options}), used to start the key''s next run if this run ends without having seen the signal. Null otherwise; removed by run_scrub.';
create index if not exists signals_late_idx on trellis.signals (run_id) where start is not null and consumed_at is null;

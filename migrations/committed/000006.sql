--! Previous: sha1:2180bccfef11a7ba3229c68f3ff6e8f16c9a615f
--! Hash: sha1:d997ea388dfb3de513de9f32aa55983572703c64

-- Trellis 000006: retention (sql/600_retention.sql).
-- Finished runs are purged oldest-finished first; a partial index keeps that
-- scan off the live rows, and an index on signals.run_id lets the cascade
-- that deletes a run's signals probe instead of scanning the table.
create index runs_finished_idx on trellis.runs (finished_at) where finished_at is not null;
create index signals_run_idx on trellis.signals (run_id);
-- Purges delete as many rows as the workers insert: vacuum signals as
-- eagerly as runs and steps.
alter table trellis.signals set (autovacuum_vacuum_scale_factor = 0.02, autovacuum_analyze_scale_factor = 0.05,
                                 autovacuum_vacuum_cost_delay = 0);

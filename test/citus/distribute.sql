-- Place an installed trellis schema on a Citus cluster (docs/scaling.md):
-- trellis.citus_distribute() (sql/160_buckets.sql) distributes the run-scoped
-- tables by bucket, co-located with trellis.runs, makes the others reference
-- tables, and switches the engine to its distributed paths. Run on the
-- coordinator after `trellis migrate`, before the first run.
select trellis.citus_distribute();

--! Previous: sha1:15b1dda44886e94030cc8a4c23149eef54c999e0
--! Hash: sha1:4e03380ba0f61d4192488c68247013e31e2b527e

-- Trellis 000008: scrubbing a finished run's payloads (sql/600_retention.sql
-- run_scrub). When it was scrubbed; a scrubbed run cannot be retried.
alter table trellis.runs add column scrubbed_at timestamptz;

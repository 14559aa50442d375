--! Previous: sha1:4e03380ba0f61d4192488c68247013e31e2b527e
--! Hash: sha1:e435abc6e2558e95916689898aada55c204a14a0

-- Trellis 000009: a start can lease its run to a worker in the caller's
-- process at once (sql/200_runs.sql run_start_claimed). _run_start takes
-- the worker, token and lease; the old signature is dropped and the new one
-- is created by sql/.
drop function if exists trellis._run_start(text, jsonb, jsonb, uuid, uuid, integer, text);

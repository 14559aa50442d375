--! Previous: sha1:85e881a2398d3d0308bc94054ba40b33cc60dd22
--! Hash: sha1:a1220f66defedfc8059dfc532dc1d6128ef63729

-- Trellis: a run's deadline reaches its workflow code (ctx.deadline). The
-- claim and the hand-off start return runs.deadline_at as a last column;
-- a function's result columns change only by dropping it (the bundled SQL
-- creates them anew after the migrations).
drop function if exists trellis.run_claim(text, text[], text[], text[], integer, interval, boolean);
drop function if exists trellis._claimed_by_bucket(uuid[], text, uuid, interval, timestamptz);
drop function if exists trellis.run_start_claimed(text, jsonb, jsonb, text, interval);

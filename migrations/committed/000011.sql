--! Previous: sha1:b09266d8e12d2ded8a41a00d0cda950735647a16
--! Hash: sha1:4889026363d48ed9fbc88328a5a5132f790d2194

-- Trellis 000011: a workflow version's input shape, the JSON Schema subset
-- of its input schema that run_start checks a start's input against, and
-- the jsonpath predicate compiled from it, which accepts almost every
-- matching input without the slower walk (sql/050_shapes.sql). Null: no
-- check (registered by an older Trellis, or a schema library other than zod).
alter table trellis.workflows add column if not exists input_schema jsonb;
alter table trellis.workflows add column if not exists input_path jsonpath;

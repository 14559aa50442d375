--! Previous: sha1:b09266d8e12d2ded8a41a00d0cda950735647a16
--! Hash: sha1:6b1618c1d9a18ee556ec1c58e3bd92c50dada6e4

-- Trellis 000011: a workflow version's input shape, the JSON Schema subset
-- of its input schema that run_start checks a start's input against, and
-- the jsonpath predicate compiled from it, which accepts almost every
-- matching input without the slower walk; and the shapes of the signals it
-- declares, which signal_send checks (sql/050_shapes.sql). Null: no check
-- (registered by an older Trellis, a schema library other than zod, or a
-- workflow that declares no signals).
alter table trellis.workflows add column if not exists input_schema jsonb;
alter table trellis.workflows add column if not exists input_path jsonpath;
alter table trellis.workflows add column if not exists signal_schemas jsonb;

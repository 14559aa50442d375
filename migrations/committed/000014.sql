--! Previous: sha1:4132efd6fb55fe7110d6cfde7262e8c90f8ee8f8
--! Hash: sha1:3f5bb80cf5237aaf64de000952cbacf640b9be35

-- Trellis: state machines and step templates, compiled onto the same runs
-- and steps (sql/700_models.sql, docs/state-machines.md, docs/templates.md).

-- A state machine's runs are keyed by a foreign id, kept in the run's
-- metadata ({"foreign_id": …}); machine_trigger finds a foreign id's
-- unfinished run through this index.
create index if not exists runs_foreign_id_idx on trellis.runs (workflow, (metadata->>'foreign_id'))
  where metadata ? 'foreign_id';

-- Step templates: a workflow defined as data, one row per (name, version).
-- definition: {steps: [{name, step, retry?, timeout?, onFailure?, compensate?, next?}], hooks?}
-- (validated by template_set's caller in TypeScript and again by its shape here).
create table if not exists trellis.templates (
  name        text not null,
  version     integer not null,
  definition  jsonb not null,
  created_at  timestamptz not null,
  primary key (name, version),
  constraint templates_version_check check (version >= 1),
  constraint templates_definition_check check (jsonb_typeof(definition) = 'object'
    and jsonb_typeof(definition->'steps') = 'array')
);

-- Connectors: how far each named connector has read its event source
-- (sql/700_models.sql connector_cursor_lock / connector_cursor_set). The
-- cursor is the connector's own JSON (for the built-in table connector:
-- the last transaction id and row id it handled).
create table if not exists trellis.connector_cursors (
  name       text primary key,
  cursor     jsonb,
  updated_at timestamptz not null
);

--! Previous: sha1:e435abc6e2558e95916689898aada55c204a14a0
--! Hash: sha1:b09266d8e12d2ded8a41a00d0cda950735647a16

-- Trellis 000010: per-workflow retention (sql/600_retention.sql). A
-- workflow's own retention wins over the default in trellis.settings.
create table trellis.retentions (
  workflow   text primary key,
  keep       interval not null check (keep >= interval '1 second'),
  updated_at timestamptz not null default now()
);
comment on table trellis.retentions is
  'Per-workflow retention of finished runs (retention_set with a workflow); workflows without a row use the default.';
-- retention_set and retention take an optional workflow now (re-created by sql/).
drop function if exists trellis.retention_set(interval);
drop function if exists trellis.retention();

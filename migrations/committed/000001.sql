--! Previous: -
--! Hash: sha1:f30ca02b5ef0018a624fc8edee88c211f9ae2010

-- Trellis 000001: the engine's tables.
-- Table DDL only; every function lives in sql/ and is re-applied on install.

create schema if not exists trellis;

-- Key/value settings read by the engine (payload limits and the like).
create table trellis.settings (
  key        text primary key,
  value      jsonb not null,
  updated_at timestamptz not null default now()
);
insert into trellis.settings (key, value) values
  ('max_payload_bytes', '1048576'),
  ('max_history_steps', '10000');

-- Workflow definitions known to the engine: registered by workers and clients.
create table trellis.workflows (
  name          text not null,
  version       text not null,
  queue         text not null,
  registered_at timestamptz not null,
  last_seen_at  timestamptz not null,
  primary key (name, version)
);

create table trellis.runs (
  id               uuid primary key,
  workflow         text not null,
  version          text not null,
  key              text,
  queue            text not null,
  priority         integer not null default 0,
  status           text not null,
  input            jsonb not null,
  output           jsonb,
  error            jsonb,
  metadata         jsonb not null default '{}',
  attempt          integer not null default 0,
  failures         integer not null default 0,
  run_at           timestamptz not null,
  lease_token      uuid,
  lease_owner      text,
  lease_expires_at timestamptz,
  created_at       timestamptz not null,
  started_at       timestamptz,
  finished_at      timestamptz,
  updated_at       timestamptz not null,
  constraint runs_status_check check (status in
    ('pending', 'running', 'waiting', 'paused', 'completed', 'failed', 'cancelled')),
  constraint runs_lease_check check ((status = 'running') = (lease_token is not null)),
  constraint runs_finished_check check
    ((status in ('completed', 'failed', 'cancelled')) = (finished_at is not null))
) with (fillfactor = 80);

-- Idempotent starts: one run per (workflow, key).
create unique index runs_workflow_key_idx on trellis.runs (workflow, key) where key is not null;
-- The claim path: only pending rows, in claim order.
create index runs_claim_idx on trellis.runs (queue, priority desc, run_at) where status = 'pending';
-- The next due time of a queue, for the worker's wake-up timer.
create index runs_due_idx on trellis.runs (queue, run_at) where status = 'pending';
-- Expired leases are found without touching finished runs.
create index runs_lease_idx on trellis.runs (lease_expires_at) where status = 'running';
-- Listing newest first, by workflow and by status.
create index runs_workflow_created_idx on trellis.runs (workflow, created_at desc, id desc);
create index runs_status_created_idx on trellis.runs (status, created_at desc, id desc);

create table trellis.steps (
  run_id      uuid not null references trellis.runs (id) on delete cascade,
  seq         integer not null,
  name        text not null,
  kind        text not null,
  status      text not null,
  output      jsonb,
  error       jsonb,
  attempts    integer not null default 1,
  started_at  timestamptz not null,
  finished_at timestamptz not null,
  primary key (run_id, seq),
  constraint steps_kind_check check (kind in ('step', 'now', 'random', 'uuid', 'side_effect')),
  constraint steps_status_check check (status in ('running', 'completed', 'failed', 'retrying'))
);

-- One op of trellis.checkpoint_apply (the batched, fenced write path).
create type trellis.checkpoint_op as (
  op       text,
  run      uuid,
  token    uuid,
  seq      integer,
  name     text,
  kind     text,
  status   text,
  output   jsonb,
  error    jsonb,
  attempts integer,
  ms       bigint,
  delay_ms bigint,
  failure  boolean
);

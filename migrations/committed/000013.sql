--! Previous: sha1:0dce2e1e7fbe06488aa1e082c3a63e09c9c21037
--! Hash: sha1:4132efd6fb55fe7110d6cfde7262e8c90f8ee8f8

-- Trellis 000013: one run state machine and its outbox (decision 0019).
--
-- trellis.run_transitions is the single table of legal run transitions
-- (the diagram in docs/architecture.md is drawn from it, and a test compares
-- the two). Every change of runs.status goes through trellis._run_move
-- (sql/150_transitions.sql), which checks each (from, to, event) against it.
-- from_status '[*]' is a new run. recorded: whether the transition appends
-- an event (claims do not: they are the hot path and say nothing new).
create table if not exists trellis.run_transitions (
  from_status text    not null,
  to_status   text    not null,
  event       text    not null,
  recorded    boolean not null default true,
  via         text    not null,
  primary key (from_status, to_status, event)
);
insert into trellis.run_transitions (from_status, to_status, event, recorded, via) values
  ('[*]',     'pending',   'started',   true,  'run_start'),
  ('[*]',     'running',   'started',   true,  'run_start_claimed, the local hand-off'),
  ('pending', 'running',   'claimed',   false, 'run_claim, lease and token'),
  ('running', 'completed', 'completed', true,  'complete'),
  ('running', 'failed',    'failed',    true,  'fail, incl. non-determinism'),
  ('running', 'cancelled', 'cancelled', true,  'cancelled, after CancelledError reached the code'),
  ('running', 'pending',   'released',  true,  'release: step retry backoff, shutdown, lease expiry'),
  ('running', 'pending',   'retried',   true,  'release with failure: workflow retry'),
  ('running', 'pending',   'resumed',   true,  'wait that found a signal, a finished child or a cancel request'),
  ('running', 'pending',   'continued', true,  'continue-as-new, execution + 1'),
  ('running', 'waiting',   'waiting',   true,  'wait: timer, signal, child'),
  ('running', 'paused',    'paused',    true,  'pause: requested, or pauseAfter failed attempts'),
  ('waiting', 'pending',   'resumed',   true,  'timer due, signal_send, child finished, run_cancel'),
  ('pending', 'paused',    'paused',    true,  'run_pause'),
  ('waiting', 'paused',    'paused',    true,  'run_pause'),
  ('paused',  'pending',   'resumed',   true,  'run_resume, run_cancel'),
  ('failed',  'pending',   'retried',   true,  'run_retry'),
  ('pending', 'cancelled', 'cancelled', true,  'run_cancel of a run that never started'),
  ('paused',  'cancelled', 'cancelled', true,  'run_cancel of a run that never started')
on conflict do nothing;

-- One change of one run, as _run_move takes it (null fields keep the column).
create type trellis.run_move as (
  run              uuid,
  to_status        text,
  event            text,
  run_at           timestamptz,
  output           jsonb,
  set_output       boolean,
  error            jsonb,
  set_error        boolean,
  input            jsonb,
  execution        integer,
  attempt          integer,
  failures         integer,
  clear_pause      boolean,
  request_cancel   boolean,
  lease_token      uuid,
  lease_owner      text,
  lease_expires_at timestamptz,
  body             jsonb
);

-- The outbox: one row per run transition and step completion or failure,
-- written in the transaction that made it. Readers order by (xid, id) and
-- read only below the oldest running transaction (the visibility horizon),
-- so an event committed late is never skipped. The primary key leads with
-- the transaction id; a bucket column can lead it later (issue 17).
create table if not exists trellis.events (
  xid        xid8        not null default pg_current_xact_id(),
  id         bigint      generated always as identity,
  run_id     uuid        not null,
  workflow   text        not null,
  version    text        not null,
  key        text,
  kind       text        not null,
  attempt    integer     not null,
  body       jsonb       not null default '{}',
  created_at timestamptz not null,
  primary key (xid, id)
) with (autovacuum_vacuum_scale_factor = 0.02, vacuum_truncate = false);
-- Events go with their run when it is purged.
create index if not exists events_run_idx on trellis.events (run_id);

-- Durable named consumers of the outbox: the position (xid, id) of the last
-- event each acknowledged.
create table if not exists trellis.event_consumers (
  name       text        primary key,
  after_xid  xid8        not null,
  after_id   bigint      not null,
  created_at timestamptz not null,
  updated_at timestamptz not null
);

-- What a version declares: which lifecycle hooks it has (onComplete, onFail,
-- onCancel, onPause) and whether its events carry output and error.
alter table trellis.workflows add column if not exists hooks text[];
alter table trellis.workflows add column if not exists event_payloads boolean not null default false;

-- One delivery of one lifecycle hook for one run transition, written with
-- the transition. Workers serving the workflow claim due ones with SKIP
-- LOCKED; a delivery that keeps failing is parked (hook_retry makes it
-- pending again). Delivered ones are deleted.
create table if not exists trellis.hook_deliveries (
  id               bigint      generated always as identity primary key,
  run_id           uuid        not null,
  workflow         text        not null,
  version          text        not null,
  hook             text        not null,
  event            text        not null,
  status           text        not null default 'pending',
  attempts         integer     not null default 0,
  run_at           timestamptz not null,
  lease_owner      text,
  lease_expires_at timestamptz,
  last_error       jsonb,
  created_at       timestamptz not null,
  updated_at       timestamptz not null,
  constraint hook_deliveries_status_check check (status in ('pending', 'running', 'parked'))
) with (autovacuum_vacuum_scale_factor = 0.02, vacuum_truncate = false);
create index if not exists hook_deliveries_due_idx on trellis.hook_deliveries (workflow, version, run_at)
  where status = 'pending';
create index if not exists hook_deliveries_lease_idx on trellis.hook_deliveries (lease_expires_at)
  where status = 'running';
create index if not exists hook_deliveries_run_idx on trellis.hook_deliveries (run_id);

-- _checkpoint_one takes a checkpoint_op now (sql/300_checkpoints.sql).
drop function if exists trellis._checkpoint_one(jsonb);

-- Whether any version declares hooks or event payloads, read on every run
-- transition: a probe of this partial index (empty when none does).
create index if not exists workflows_declared_idx on trellis.workflows (name)
  where cardinality(hooks) > 0 or event_payloads;

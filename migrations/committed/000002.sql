--! Previous: sha1:f30ca02b5ef0018a624fc8edee88c211f9ae2010
--! Hash: sha1:2df470968319645613115dfe71b2945dd491e772

-- Trellis 000002: durable waiting and composition.
-- Timers, signals, child runs, cancellation, pause/resume and continue-as-new.

-- Child runs point at the parent call that started them.
alter table trellis.runs
  add column parent_run_id       uuid references trellis.runs (id) on delete set null,
  add column parent_seq          integer,
  add column parent_close        text not null default 'cancel',
  -- continue-as-new starts a new execution of the same run (same id, same key).
  add column execution           integer not null default 1,
  add column cancel_requested_at timestamptz,
  add column pause_requested_at  timestamptz,
  add constraint runs_parent_close_check check (parent_close in ('cancel', 'abandon'));

-- Parents waiting on a finished child are found through their waiting call.
create index runs_parent_idx on trellis.runs (parent_run_id) where parent_run_id is not null;
-- Waiting runs whose timer is due are made pending by the claim.
create index runs_wait_idx on trellis.runs (run_at) where status = 'waiting';

-- Steps belong to one execution of the run.
alter table trellis.steps add column execution integer not null default 1;
alter table trellis.steps drop constraint steps_pkey;
alter table trellis.steps add primary key (run_id, execution, seq);
alter table trellis.steps drop constraint steps_kind_check;
alter table trellis.steps add constraint steps_kind_check
  check (kind in ('step', 'now', 'random', 'uuid', 'side_effect', 'sleep', 'signal', 'child', 'race'));
alter table trellis.steps drop constraint steps_status_check;
alter table trellis.steps add constraint steps_status_check
  check (status in ('running', 'waiting', 'completed', 'failed', 'retrying'));

-- Signals sent to a run; buffered until a wait consumes them.
create table trellis.signals (
  id            bigint generated always as identity primary key,
  run_id        uuid not null references trellis.runs (id) on delete cascade,
  name          text not null,
  payload       jsonb not null,
  signal_id     text,
  created_at    timestamptz not null,
  consumed_at   timestamptz,
  consumed_seq  integer
);
create unique index signals_dedupe_idx on trellis.signals (run_id, signal_id) where signal_id is not null;
create index signals_pending_idx on trellis.signals (run_id, id) where consumed_at is null;

-- The virtual clock of the test kit (trellis/testing). trellis.now() in
-- production never reads it; the test kit swaps in a now() that does.
create table trellis.clock (
  singleton boolean primary key default true check (singleton),
  "offset"  interval not null default '0'
);

-- New fields of checkpoint ops.
alter type trellis.checkpoint_op
  add attribute execution integer,
  add attribute child     uuid,
  add attribute workflow  text,
  add attribute version   text,
  add attribute input     jsonb,
  add attribute key       text,
  add attribute queue     text,
  add attribute close     text,
  add attribute signal    bigint,
  add attribute keep      boolean,
  add attribute seen_cancel boolean;

-- Waiting child calls, by the child they wait on.
create index steps_child_wait_idx on trellis.steps (((output->>'child')::uuid))
  where status = 'waiting' and kind = 'child';

-- Return types changed (re-created by sql/).
drop function if exists trellis.run_claim(text, text[], text[], text[], integer, interval);
drop function if exists trellis.run_heartbeat_many(uuid[], uuid[], interval);
drop function if exists trellis.run_next_due(text[]);
drop function if exists trellis.run_next_due(text[], text[], text[]);

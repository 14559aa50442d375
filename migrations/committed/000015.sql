--! Previous: sha1:3f5bb80cf5237aaf64de000952cbacf640b9be35
--! Hash: sha1:1a56e5f92a22757a6ff6d50a01d214c87ee5a6bb

-- Trellis: role leases and cron schedules (sql/740_roles.sql, sql/750_schedules.sql).
--
-- trellis.roles: one row per singleton duty (the engine's own, named
-- trellis.*, and any role a user runs with worker.role). The holder keeps
-- it until expires_at by renewing; token is the fencing token, which grows
-- by one on every new acquisition, so a write checked with role_check under
-- an older token is refused. last_run_at / last_outcome / last_error tell
-- what the duty did the last time it ran.
create table if not exists trellis.roles (
  name         text primary key,
  holder       text,
  token        bigint not null default 0,
  acquired_at  timestamptz,
  renewed_at   timestamptz,
  expires_at   timestamptz,
  last_run_at  timestamptz,
  last_outcome text check (last_outcome in ('ok', 'failed')),
  last_error   text,
  updated_at   timestamptz not null default now()
);

-- trellis.schedules: cron schedules that start runs. next_at is the next
-- tick, computed in TypeScript (croner) and stored; null with next_from set
-- means it is still to be computed (a schedule set from SQL, or resumed)
-- from next_from; null with next_from null means the schedule has ended.
-- Each tick starts its run with the key schedule:<name>:<tick>, so a tick
-- fired twice (a failover) starts one run.
create table if not exists trellis.schedules (
  name          text primary key,
  cron          text not null,
  time_zone     text not null,
  workflow      text not null,
  input         jsonb not null default 'null',
  overlap       text not null default 'skip'
                check (overlap in ('skip', 'allow', 'buffer_one', 'cancel_previous')),
  catch_up      integer not null default 0 check (catch_up between 0 and 1000),
  jitter        interval not null default '0',
  ends_at       timestamptz,
  paused        boolean not null default false,
  next_at       timestamptz,
  next_from     timestamptz,
  buffered_at   timestamptz,
  last_tick_at  timestamptz,
  last_run_id   uuid,
  fired         bigint not null default 0,
  skipped       bigint not null default 0,
  last_error    text,
  created_at    timestamptz not null default now(),
  updated_at    timestamptz not null default now()
);
create index if not exists schedules_due_idx on trellis.schedules (next_at) where not paused;
-- The ticker's other two reads, so a tick costs what is due, not a scan of
-- every schedule: schedules whose next tick is still to be computed, and
-- ticks held back by the buffer_one policy.
create index if not exists schedules_compute_idx on trellis.schedules (name) where next_at is null and next_from is not null;
create index if not exists schedules_buffered_idx on trellis.schedules (name) where buffered_at is not null;

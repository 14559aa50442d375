--! Previous: sha1:1a56e5f92a22757a6ff6d50a01d214c87ee5a6bb
--! Hash: sha1:3364fc69b5ec40ef1d12bb2273c4ceea63847894

-- Trellis 000016: queues and flow control (decision 0022, sql/220_queues.sql).
--
-- A queue's row holds its limits: global concurrency (runs in status running
-- across all workers), per-key concurrency (running runs per concurrency_key),
-- a rate limit (claims per fixed window of rate_period), fair rotation across
-- keys, and paused. A queue without a row, or whose row sets none of them,
-- keeps the lock-free SKIP LOCKED claim. The rate window, its count and the
-- rotation cursor are the claim's own state, written under the row's lock.
create table if not exists trellis.queues (
  name            text        primary key,
  concurrency     integer     check (concurrency > 0),
  key_concurrency integer     check (key_concurrency > 0),
  rate_limit      integer     check (rate_limit > 0),
  rate_period     interval    check (rate_period >= interval '1 millisecond'),
  fair            boolean     not null default false,
  paused          boolean     not null default false,
  rate_window     timestamptz,
  rate_count      integer     not null default 0,
  cursor_key      text,
  created_at      timestamptz not null,
  updated_at      timestamptz not null,
  constraint queues_rate_check check ((rate_limit is null) = (rate_period is null))
);
comment on table trellis.queues is
  'Queues and their flow control (queue_set, queue_pause, queue_resume); a queue without a row or without options is unlimited.';

-- The flow-control group of a run within its queue (e.g. a tenant id), set per start.
alter table trellis.runs add column if not exists concurrency_key text;
-- Running keyed runs per queue and key: what a claim under key_concurrency
-- counts. Partial on a key, so a claim of a run without one (every claim of
-- a queue without flow control) maintains no entry in it; a queue's running
-- runs as a whole are counted through runs_lease_idx.
create index if not exists runs_running_key_idx on trellis.runs (queue, concurrency_key)
  where status = 'running' and concurrency_key is not null;
-- Pending keyed runs in claim order per key: the rotation's probes. Partial
-- on a key, so runs started without one pay nothing for it.
create index if not exists runs_key_claim_idx on trellis.runs (queue, concurrency_key, priority desc, run_at)
  where status = 'pending' and concurrency_key is not null;

-- 210_wakeups: the wake-up gate, which lets concurrent starts skip the NOTIFY
-- that would serialise their commits, without delaying any run; and the
-- result watchers, which let run ends skip trellis:run_finished while nobody
-- waits for it.
-- Owns: trellis.run_idle_check, run_finished_watch, run_finished_unwatch
-- (_notify_finished); the gate a start takes is in _run_start
-- (sql/200_runs.sql).
-- Touches: trellis.runs (read only); transaction-level advisory locks
-- (class 0x54524c57 'TRLW', object hashtext(queue)): starts take the queue's
-- gate shared, a worker going idle tries it exclusive; advisory locks of
-- class 0x54524c52 'TRLR', objects 0-7: watchers hold them shared for their
-- session, a transaction that ends runs tries its shard exclusive.
--
-- Postgres holds one database-wide lock from queuing a NOTIFY until the
-- commit is flushed, so starts that each notify commit one at a time (no
-- group commit). A start made with coalesce_notify skips its NOTIFY when a
-- run of the same queue, workflow and version is already pending and due:
-- a worker serving those is then either claiming (its claim loop goes on
-- until a claim comes back short) or will close the gate before it idles.
-- Closing the gate (run_idle_check) succeeds only while no coalescing start
-- is in flight, and the due time it then reads sees every start that
-- committed before: a run whose start skipped its NOTIFY is claimed by the
-- worker's next look, not at the next poll. A start that takes the gate
-- after it was closed sees no pending run (the worker claimed or will claim
-- them all) and notifies. See docs/decisions/0021-wake-up-gate.md.

create or replace function trellis.run_idle_check(p_queues text[], p_workflows text[], p_versions text[])
returns table (next_due timestamptz, gate_busy boolean) language plpgsql as $$
declare
  v_queue text;
begin
  -- Exclusive try-locks, in name order; a worker never waits here (a start
  -- in the caller's own transaction may hold the gate for long).
  for v_queue in select distinct q from unnest(p_queues) q order by q loop
    if not pg_try_advisory_xact_lock(1414679639, hashtext(v_queue)) then
      return query select null::timestamptz, true;
      return;
    end if;
  end loop;
  -- A statement of its own, so its snapshot is taken after the locks.
  return query select trellis.run_next_due(p_queues, p_workflows, p_versions), false;
end $$;
comment on function trellis.run_idle_check(text[], text[], text[]) is
  'For a worker whose claim came back short, before it waits: close the wake-up gate of p_queues and return run_next_due (every start that skipped its NOTIFY before is visible to it); gate_busy (next_due null) when a coalescing start is in flight, and the worker should look again shortly.';

-- Result watchers (docs/decisions/0029-finished-only-while-watched.md):
-- trellis:run_finished is sent only while a session watches for it.
-- Every NOTIFY wakes every listening backend of the database, whatever its
-- channels, and each woken backend reads the queue in a transaction of its
-- own; and the notifying commit takes PostgreSQL's database-wide NOTIFY
-- lock. A fleet of workers that nobody waits on paid both on every
-- checkpoint that ended runs (issue 18: 9% of the server's CPU per
-- one-step workflow with four worker processes).
--
-- A watcher (client.result()'s waiter, or a SQL session that LISTENs)
-- holds session-level advisory locks, class 0x54524c52 'TRLR', objects 0-7,
-- shared. A transaction that ends runs tries the lock of its backend's
-- shard (pg_backend_pid() % 8) exclusively for the rest of the
-- transaction: it notifies only when that fails (someone watches, or
-- another transaction of the shard holds it). When the try succeeds no
-- NOTIFY is sent, and a watcher that arrives before this transaction ends
-- waits for its commit before run_finished_watch returns; so a watcher
-- that reads a run's status after run_finished_watch returned and after
-- its LISTEN never misses that run's end: the end committed before the
-- read, or notifies.

create or replace function trellis._notify_finished(p_ids text)
returns void language plpgsql as $$
begin
  if pg_try_advisory_xact_lock(1414679634, pg_backend_pid() % 8) then
    return;
  end if;
  perform pg_notify('trellis:run_finished', p_ids);
end $$;
comment on function trellis._notify_finished(text) is
  'NOTIFY trellis:run_finished with p_ids if a session watches (run_finished_watch); otherwise hold this backend''s watch shard exclusively to commit, so a watcher arriving meanwhile waits for this transaction.';

-- The same for many ids on any channel of the watch (run_finished,
-- run_value): comma-separated, 200 ids a notification (NOTIFY payloads are
-- at most 8000 bytes). One try of the shard: a transaction that holds it
-- holds it for every later try too.
create or replace function trellis._notify_watched(p_channel text, p_ids uuid[])
returns void language plpgsql as $$
declare
  v_ids text;
begin
  if cardinality(p_ids) is null or cardinality(p_ids) = 0 or pg_try_advisory_xact_lock(1414679634, pg_backend_pid() % 8) then
    return;
  end if;
  for v_ids in
    select string_agg(f.id::text, ',')
      from (select f.id, (row_number() over () - 1) / 200 as chunk from unnest(p_ids) as f(id)) f
     group by f.chunk
  loop
    perform pg_notify(p_channel, v_ids);
  end loop;
end $$;
comment on function trellis._notify_watched(text, uuid[]) is
  'NOTIFY p_channel with p_ids in chunks of 200 if a session watches (run_finished_watch); otherwise hold this backend''s watch shard exclusively to commit, as _notify_finished does.';

create or replace function trellis._finished_watched(p_shard integer)
returns boolean language sql stable as $$
  select exists (select 1 from pg_catalog.pg_locks l
                  where l.locktype = 'advisory' and l.pid = pg_catalog.pg_backend_pid() and l.classid = 1414679634
                    and l.objid = p_shard and l.objsubid = 2 and l.mode = 'ShareLock' and l.granted)
$$;
comment on function trellis._finished_watched(integer) is
  'Whether this session holds watch shard p_shard (run_finished_watch).';

create or replace function trellis.run_finished_watch()
returns void language plpgsql as $$
declare
  v_missing integer[];
  k integer;
begin
  -- Idempotent: the shards this session holds already are skipped. Free
  -- shards are taken at once; a shard that a transaction ending runs holds
  -- is waited for last, so the others are watched meanwhile.
  for k in 0..7 loop
    continue when trellis._finished_watched(k);
    if not pg_try_advisory_lock_shared(1414679634, k) then
      v_missing := v_missing || k;
    end if;
  end loop;
  foreach k in array coalesce(v_missing, '{}') loop
    perform pg_advisory_lock_shared(1414679634, k);
  end loop;
end $$;
comment on function trellis.run_finished_watch() is
  'Watch for trellis:run_finished in this session (decision 0029): NOTIFY trellis:run_finished is sent only while some session watches. Takes session-level shared advisory locks (class 1414679634, objects 0-7), waiting for transactions that ended runs unwatched to commit; idempotent. LISTEN first, call this, then read the statuses you wait for: every later end notifies. Held until run_finished_unwatch or the session ends.';

create or replace function trellis.run_finished_unwatch()
returns boolean language plpgsql as $$
declare
  v_held boolean := false;
  k integer;
begin
  for k in 0..7 loop
    while trellis._finished_watched(k) loop
      perform pg_advisory_unlock_shared(1414679634, k);
      v_held := true;
    end loop;
  end loop;
  return v_held;
end $$;
comment on function trellis.run_finished_unwatch() is
  'Stop watching for trellis:run_finished in this session (run_finished_watch); false if it did not watch.';

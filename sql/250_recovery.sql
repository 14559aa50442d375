-- 250_recovery: a worker giving back leases it holds but does not know of;
-- expired leases released, or parked when they keep expiring.
-- Owns: run_release_owned, _leases_expired.
-- Touches: trellis.runs (status through _run_move; lease_expiries).
-- Lock order: the runs it releases, in id order (FOR NO KEY UPDATE), as every
-- other engine call takes runs; it waits for no other lock.
--
-- A claim whose COMMIT outcome is unknown (the connection died while it
-- committed) may have leased runs to a worker that never saw them; so may a
-- previous process of a worker started again with the same stable id. Such
-- runs would wait for their lease to expire. The worker lists the runs it
-- does hold, and the rest of its leases are given back at once.

create or replace function trellis.run_release_owned(p_worker text, p_keep uuid[])
returns integer language plpgsql as $$
declare
  v_now   timestamptz := trellis.now();
  v_ids   uuid[];
  v_queue text;
begin
  perform trellis._check_worker(p_worker);
  if trellis._distributed() then
    v_ids := array(select r.id from trellis.runs r
                    where r.status = 'running' and r.lease_owner = p_worker
                      and r.id <> all (coalesce(p_keep, '{}')));
    perform trellis._lock_runs(v_ids);
    v_ids := array(select r.id from trellis.runs r
                    where r.id = any (v_ids) and r.status = 'running' and r.lease_owner = p_worker order by r.id);
  else
  v_ids := array(select r.id from trellis.runs r
                  where r.status = 'running' and r.lease_owner = p_worker
                    and r.id <> all (coalesce(p_keep, '{}'))
                  order by r.id
                    for no key update);
  end if;
  if cardinality(v_ids) = 0 then
    return 0;
  end if;
  -- A lease its worker does not know of ended as an expired one does (the
  -- previous process with this id died holding it, maybe killed by the
  -- run's own step): counted, and parked at max_lease_expiries, by
  -- _leases_expired below, through _run_move (the one writer of
  -- runs.status: it clears the lease and appends the event).
  perform trellis._leases_expired(v_ids, v_now, 'lease unknown to its worker');
  for v_queue in select distinct r.queue from trellis.runs r where r.id = any (v_ids) loop
    perform pg_notify('trellis:run_ready', v_queue);
  end loop;
  return cardinality(v_ids);
end $$;
comment on function trellis.run_release_owned(text, uuid[]) is
  'Make the running runs leased to p_worker pending again now, except p_keep (the runs that worker knows it holds); returns how many. For a worker after a claim with an unknown outcome, or started again under the same id.';

-- Expired leases (run_claim's sweep, and run_release_owned's leases of a
-- worker's previous process; the caller holds the runs' locks).
-- A step that kills its process (process.exit, SIGKILL, out of memory)
-- records nothing, so a worker's failure count cannot bound it: each claim
-- would run it again and kill the next worker. The claim is what notices:
-- runs.lease_expiries counts the leases that expired in a row without
-- checkpoint progress (any checkpoint op but a step's attempt-started
-- marker sets it back to 0, sql/300_checkpoints.sql). Each expiry adds
-- one; below the setting max_lease_expiries (default 5) the run is released
-- (pending now), at it the run is parked (paused, the dead letter, as
-- pauseAfter parks a failing step) with a LeaseExpiredError. A healthy run
-- heartbeats, so its lease does not expire; a worker killed once or twice
-- under it costs it an expiry each, and its next checkpoint clears them.
create or replace function trellis._leases_expired(p_ids uuid[], p_now timestamptz,
  p_reason text default 'lease expired')
returns void language plpgsql as $$
declare
  v_max  integer := trellis._setting_int('max_lease_expiries', 5);
  v_ids  uuid[];
  v_n    integer[];
  v_kept jsonb[];
begin
  if cardinality(p_ids) is null or cardinality(p_ids) = 0 then
    return;
  end if;
  with counted as (
    update trellis.runs r set lease_expiries = r.lease_expiries + 1
     where r.id = any (p_ids)
    returning r.id, r.lease_expiries,
              case when r.cancel_requested_at is not null and r.error->>'code' = 'cancelled' then r.error end as kept)
  select array_agg(c.id order by c.id), array_agg(c.lease_expiries order by c.id), array_agg(c.kept order by c.id)
    into v_ids, v_n, v_kept from counted c;
  -- A run parked while a cancellation is requested keeps the cancellation's
  -- error (so it ends with that reason once resumed), the LeaseExpiredError
  -- as its cause.
  perform trellis._run_move(array(
    select case when x.n < v_max then
             row(x.id, 'pending', 'released', p_now, null, null, null, null, null, null, null, null,
                 null, null, null, null, null, jsonb_build_object('reason', p_reason, 'expiries', x.n))::trellis.run_move
           else
             row(x.id, 'paused', 'paused', null, null, null,
                 case when x.kept is not null then x.kept || jsonb_build_object('cause', x.lease_error)
                      else x.lease_error end,
                 true, null, null, null, null, null, null, null, null, null,
                 jsonb_build_object('reason', p_reason, 'expiries', x.n))::trellis.run_move
           end
      from (select u.id, u.n, u.kept, jsonb_build_object('name', 'LeaseExpiredError',
                     'message', format('lease expired %s times without progress: the step may crash its worker', u.n),
                     'details', jsonb_build_object('expiries', u.n, 'max_lease_expiries', v_max)) as lease_error
              from unnest(v_ids, v_n, v_kept) as u(id, n, kept)) x));
end $$;
comment on function trellis._leases_expired(uuid[], timestamptz, text) is
  'For run_claim''s sweep and run_release_owned (p_reason in the event): the locked runs p_ids, whose leases expired or were lost with their worker, count one more expiry without progress (runs.lease_expiries); each is released (pending now) or, at the setting max_lease_expiries (default 5), parked (paused) with a LeaseExpiredError.';

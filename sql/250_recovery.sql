-- 250_recovery: a worker giving back leases it holds but does not know of.
-- Owns: run_release_owned.
-- Touches: trellis.runs (through _run_move).
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
  if p_worker is null or length(p_worker) = 0 or length(p_worker) > 200 then
    perform trellis._raise('TR001', 'worker id must be 1-200 characters');
  end if;
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
  -- Through _run_move, the one writer of runs.status (it clears the lease
  -- and appends the 'released' event).
  perform trellis._run_move(array(
    select row(r.id, 'pending', 'released', v_now, null, null, null, null, null, null, null, null,
               null, null, null, null, null, '{"reason":"lease unknown to its worker"}')::trellis.run_move
      from trellis.runs r
     where r.id = any (v_ids)
     order by r.id));
  for v_queue in select distinct r.queue from trellis.runs r where r.id = any (v_ids) loop
    perform pg_notify('trellis:run_ready', v_queue);
  end loop;
  return cardinality(v_ids);
end $$;
comment on function trellis.run_release_owned(text, uuid[]) is
  'Make the running runs leased to p_worker pending again now, except p_keep (the runs that worker knows it holds); returns how many. For a worker after a claim with an unknown outcome, or started again under the same id.';

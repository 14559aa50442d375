-- 710_hooks: durable lifecycle hook deliveries (onComplete, onFail, onCancel, onPause).
-- Owns: hook_claim, hook_done, hook_failed, hook_retry, _hooks_expired.
-- Touches: trellis.hook_deliveries (written with the run's transition by
-- _run_move, sql/150_transitions.sql), trellis.runs (read).
-- Lock order: hook_deliveries rows only (claims: FOR UPDATE SKIP LOCKED); no
-- run lock, so a hook never blocks a run and a run never waits for a hook.
-- On a distributed schema deliveries are read without a lock and locked one
-- bucket at a time (_lock_hooks, sql/160_buckets.sql).
--
-- A delivery is pending (due at run_at), running (claimed by a worker until
-- lease_expires_at; attempts counts claims) or parked (it kept failing:
-- last_error says why; hook_retry makes it pending again). A delivered one
-- is deleted. A worker that dies holding one leaves it to expire and be
-- claimed again: at least once.

-- Deliveries p_ids (locked by the caller, running, their lease expired:
-- the worker stopped while delivering them) count one more expiry; each is
-- pending again now or, at the setting max_lease_expiries (default 5),
-- parked with a LeaseExpiredError: a hook that kills its worker (or always
-- outlives its lease) is not claimed for ever (decision 0019's amendment).
create or replace function trellis._hooks_expired(p_ids bigint[], p_now timestamptz)
returns void language plpgsql as $$
declare
  v_max integer := trellis._setting_int('max_lease_expiries', 5);
begin
  -- Two statements, and the error as text cast to jsonb, not jsonb_build_object
  -- or format in a CASE: Citus refuses a non-immutable function over a
  -- column in an UPDATE of a distributed table, and every claim that met an
  -- expired lease failed there (hooks stopped on a cluster).
  update trellis.hook_deliveries d
     set lease_expiries = d.lease_expiries + 1, status = 'parked',
         last_error = ('{"name": "LeaseExpiredError", "code": "lease_lost", "message": "the lease of this delivery expired '
                       || (d.lease_expiries + 1)::text || ' times: the hook may stop its worker, or outlive its lease", "details": {"expiries": '
                       || (d.lease_expiries + 1)::text || ', "max_lease_expiries": ' || v_max::text || '}}')::jsonb,
         lease_owner = null, lease_expires_at = null, run_at = p_now, updated_at = p_now
   where d.id = any (p_ids) and d.lease_expiries + 1 >= v_max;
  update trellis.hook_deliveries d
     set lease_expiries = d.lease_expiries + 1, status = 'pending',
         lease_owner = null, lease_expires_at = null, run_at = p_now, updated_at = p_now
   where d.id = any (p_ids) and d.lease_expiries + 1 < v_max;
end $$;
comment on function trellis._hooks_expired(bigint[], timestamptz) is
  'For hook_claim: locked running deliveries p_ids whose lease expired count one more expiry; pending again now, or parked with a LeaseExpiredError at the setting max_lease_expiries (default 5).';

create or replace function trellis.hook_claim(p_worker text, p_workflows text[], p_versions text[],
                                              p_limit integer, p_lease interval)
returns table (id bigint, run_id uuid, workflow text, version text, hook text, event text, attempts integer,
               key text, status text, input jsonb, output jsonb, error jsonb, metadata jsonb, now timestamptz)
language plpgsql as $$
#variable_conflict use_column
declare
  v_now timestamptz := trellis.now();
  v_ids bigint[];
begin
  if p_limit is null or p_limit < 1 or p_limit > 1000 then
    perform trellis._raise('TR001', 'hook claim limit must be between 1 and 1000');
  end if;
  -- A delivery leased to no one (a NULL owner) could never be finished.
  perform trellis._check_worker(p_worker);
  perform trellis._check_lease(p_lease);
  if trellis._distributed() then
    -- Found on every node, then locked one bucket at a time (sql/160_buckets.sql).
    select coalesce(array_agg(x.id order by x.lease_expires_at), '{}') into v_ids
      from (select x.id, x.lease_expires_at from trellis.hook_deliveries x
             where x.status = 'running' and x.lease_expires_at < v_now
             order by x.lease_expires_at limit 100) x;
    v_ids := trellis._lock_hooks(v_ids, 'running', v_now);
    if cardinality(v_ids) > 0 then
      perform trellis._hooks_expired(v_ids, v_now);
    end if;
    select coalesce(array_agg(x.id order by x.run_at), '{}') into v_ids
      from (select d.id, d.run_at from trellis.hook_deliveries d
             where d.status = 'pending' and d.run_at <= v_now
               and d.workflow || pg_catalog.chr(31) || d.version
                   = any (array(select s.w || pg_catalog.chr(31) || s.v from unnest(p_workflows, p_versions) as s(w, v)))
             order by d.run_at limit p_limit) x;
    v_ids := trellis._lock_hooks(v_ids, 'pending', v_now);
  else
  -- Deliveries whose worker died (or whose hook outlived its lease) are due
  -- again, or parked after max_lease_expiries (_hooks_expired).
  v_ids := array(select x.id from trellis.hook_deliveries x
                  where x.status = 'running' and x.lease_expires_at < v_now
                  order by x.lease_expires_at limit 100 for update skip locked);
  if cardinality(v_ids) > 0 then
    perform trellis._hooks_expired(v_ids, v_now);
  end if;
  v_ids := array(
    select c.id from unnest(p_workflows, p_versions) as s(w, v)
     cross join lateral (
       select d.id, d.run_at from trellis.hook_deliveries d
        where d.status = 'pending' and d.workflow = s.w and d.version = s.v and d.run_at <= v_now
        order by d.run_at limit p_limit
        for update skip locked) c
     order by c.run_at limit p_limit);
  end if;
  return query
  update trellis.hook_deliveries d
     set status = 'running', attempts = d.attempts + 1, lease_owner = p_worker,
         lease_expires_at = v_now + p_lease, updated_at = v_now
    from trellis.runs r
   where d.id = any (v_ids) and r.bucket = d.bucket and r.id = d.run_id
  -- The status and error as the transition left them (at_event), not as
  -- they are now: an onPause delivered after a resume still gets the pause.
  returning d.id, d.run_id, d.workflow, d.version, d.hook, d.event, d.attempts,
            r.key, coalesce(d.at_event->>'status', r.status), r.input, r.output,
            case when d.at_event is null then r.error else nullif(d.at_event->'error', 'null'::jsonb) end,
            r.metadata, v_now;
end $$;
comment on function trellis.hook_claim(text, text[], text[], integer, interval) is
  'Lease up to p_limit due hook deliveries (FOR UPDATE SKIP LOCKED) of the served workflow/version pairs to p_worker for p_lease, with their run''s key, input, output and metadata, and its status and error as the transition that wrote the delivery left them (at_event; the run''s current ones for a delivery written before migration 000025); deliveries whose lease expired are due again first. attempts counts claims. TR001 a worker id that is not 1-200 characters, a limit outside 1-1000 or a bad lease.';

create or replace function trellis.hook_done(p_id bigint, p_worker text, p_attempt integer)
returns boolean language plpgsql as $$
begin
  delete from trellis.hook_deliveries
   where id = p_id and status = 'running' and lease_owner = p_worker and attempts = p_attempt;
  return found;
end $$;
comment on function trellis.hook_done(bigint, text, integer) is
  'The hook of delivery p_id returned: delete it, if p_worker still holds that attempt (false otherwise: it expired and was claimed again).';

create or replace function trellis.hook_failed(p_id bigint, p_worker text, p_attempt integer, p_error jsonb,
                                               p_retry_in interval)
returns text language plpgsql as $$
declare
  v_now    timestamptz := trellis.now();
  -- Computed first: timestamptz + interval is not immutable, and Citus
  -- refuses a non-immutable function inside a CASE of an UPDATE of a
  -- distributed table (decision 0024).
  v_at     timestamptz := case when p_retry_in is null then null else v_now + greatest(p_retry_in, interval '0') end;
  v_status text;
begin
  -- Kept in last_error: a payload (workers send a bounded one, serializeError).
  perform trellis._check_payload(p_error, 'hook error');
  update trellis.hook_deliveries
     set status = case when p_retry_in is null then 'parked' else 'pending' end,
         run_at = coalesce(v_at, run_at),
         last_error = p_error, lease_owner = null, lease_expires_at = null, updated_at = v_now
   where id = p_id and status = 'running' and lease_owner = p_worker and attempts = p_attempt
  returning status into v_status;
  return v_status;
end $$;
comment on function trellis.hook_failed(bigint, text, integer, jsonb, interval) is
  'The hook of delivery p_id threw or timed out: pending again after p_retry_in, or parked when p_retry_in is null (the error kept in last_error). Returns the new status, null if p_worker no longer held that attempt. TR005 an error over max_payload_bytes.';

create or replace function trellis.hook_retry(p_id bigint)
returns text language plpgsql as $$
declare
  v_now    timestamptz := trellis.now();
  v_bucket integer;
  v_status text;
begin
  -- The bucket first, then the lock by the whole key: on a distributed
  -- schema a row lock of a query that may reach every shard is refused
  -- ("could not run distributed query with FOR UPDATE/SHARE commands").
  select d.bucket into v_bucket from trellis.hook_deliveries d where d.id = p_id;
  select status into v_status from trellis.hook_deliveries
   where bucket = v_bucket and id = p_id for update;
  if not found then
    perform trellis._raise('TR002', format('hook delivery %s does not exist (delivered ones are deleted)', coalesce(p_id::text, 'null')));
  elsif v_status <> 'parked' then
    perform trellis._raise('TR004', format('hook delivery %s is %s, not parked', p_id, v_status));
  end if;
  update trellis.hook_deliveries
     set status = 'pending', run_at = v_now, attempts = 0, lease_expiries = 0, updated_at = v_now
   where bucket = v_bucket and id = p_id;
  return 'pending';
end $$;
comment on function trellis.hook_retry(bigint) is
  'Make parked hook delivery p_id pending again with a fresh count of attempts (workers claim it at their next hook poll, hookDelivery.interval). TR002 unknown, TR004 not parked.';

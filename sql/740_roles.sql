-- 740_roles: role leases, for duties one replica does at a time (the
-- schedule ticker, the retention purge, a user's worker.role).
-- Owns: role_acquire, role_renew, role_release, role_check, role_record (_check_role_ttl).
-- Touches: trellis.roles (insert, update).
-- Lock order: role_acquire takes a transaction-level advisory lock on the
-- role's name (classid 1414679636, hashtext(name)), which serialises
-- acquirers of one role and the first insert of its row, then the row
-- FOR UPDATE. role_check takes the row FOR KEY SHARE: a renew by the holder
-- (a plain update, FOR NO KEY UPDATE) does not wait for a fenced write, but
-- a takeover (FOR UPDATE) waits until every transaction that checked the old
-- token has ended, so no write fenced by an old token commits after a new
-- holder got its token. Transaction-scoped locks only: the functions work
-- through PgBouncer in transaction mode.
--
-- The fencing token grows by one on every acquisition (never on a renew),
-- and never goes back: a released or expired role keeps its last token.
-- Time is trellis.now(), so the test kit's virtual clock expires leases too.

create or replace function trellis._check_role_ttl(p_ttl interval)
returns interval language plpgsql immutable as $$
begin
  if p_ttl is null or p_ttl < interval '200 milliseconds' or p_ttl > interval '1 hour' then
    perform trellis._raise('TR001', format('role ttl must be from 200 milliseconds to 1 hour, not %s',
                                           coalesce(left(p_ttl::text, 40), 'null')));
  end if;
  return p_ttl;
end $$;
comment on function trellis._check_role_ttl(interval) is
  'Return p_ttl if it is from 200 milliseconds to 1 hour, else raise TR001.';

create or replace function trellis._check_holder(p_holder text)
returns text language plpgsql immutable as $$
begin
  if p_holder is null or length(p_holder) = 0 or length(p_holder) > 200 then
    perform trellis._raise('TR001', 'role holder must be 1-200 characters');
  end if;
  return p_holder;
end $$;
comment on function trellis._check_holder(text) is
  'Return p_holder if it is 1-200 characters, else raise TR001.';

-- Returns the token when p_holder holds the role afterwards (a new token if
-- it was free or expired, the same one if p_holder already held it: then it
-- is a renew), null while another holder's lease runs.
create or replace function trellis.role_acquire(p_name text, p_holder text, p_ttl interval)
returns bigint language plpgsql as $$
declare
  v_now  timestamptz := trellis.now();
  v_role trellis.roles;
begin
  perform trellis._check_name(p_name, 'role');
  perform trellis._check_holder(p_holder);
  perform trellis._check_role_ttl(p_ttl);
  perform pg_advisory_xact_lock(1414679636, hashtext(p_name));
  insert into trellis.roles (name, updated_at) values (p_name, v_now) on conflict (name) do nothing;
  select * into v_role from trellis.roles where name = p_name for update;
  if v_role.holder = p_holder and v_role.expires_at > v_now then
    update trellis.roles set renewed_at = v_now, expires_at = v_now + p_ttl, updated_at = v_now where name = p_name;
    return v_role.token;
  end if;
  if v_role.holder is not null and v_role.expires_at > v_now then
    return null;
  end if;
  update trellis.roles
     set holder = p_holder, token = v_role.token + 1, acquired_at = v_now, renewed_at = v_now,
         expires_at = v_now + p_ttl, updated_at = v_now
   where name = p_name;
  return v_role.token + 1;
end $$;
comment on function trellis.role_acquire(text, text, interval) is
  'Take role p_name for p_holder for p_ttl (200 ms to 1 hour) if it is free or its lease expired: returns the new fencing token (one more than the last). If p_holder holds it already, extends the lease and returns the same token; null while another holder''s lease runs. Serialised per role by a transaction-level advisory lock.';

create or replace function trellis.role_renew(p_name text, p_holder text, p_token bigint, p_ttl interval)
returns timestamptz language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
  v_expires timestamptz;
begin
  perform trellis._check_name(p_name, 'role');
  perform trellis._check_role_ttl(p_ttl);
  update trellis.roles
     set renewed_at = v_now, expires_at = v_now + p_ttl, updated_at = v_now
   where name = p_name and holder = p_holder and token = p_token and expires_at > v_now
  returning expires_at into v_expires;
  if v_expires is null then
    perform trellis._raise('TR003', format('role %s: token %s of %s is no longer the lease (released, expired or taken over)',
                                           p_name, p_token, left(p_holder, 200)));
  end if;
  return v_expires;
end $$;
comment on function trellis.role_renew(text, text, bigint, interval) is
  'Extend p_holder''s lease of role p_name under p_token to now + p_ttl; returns the new expiry. TR003 if the lease was released, expired or taken over (the holder must stop the duty).';

create or replace function trellis.role_release(p_name text, p_holder text, p_token bigint)
returns boolean language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
begin
  perform trellis._check_name(p_name, 'role');
  update trellis.roles
     set holder = null, expires_at = null, updated_at = v_now
   where name = p_name and holder = p_holder and token = p_token;
  return found;
end $$;
comment on function trellis.role_release(text, text, bigint) is
  'Give role p_name up at once (a worker stopping), so another replica takes it without waiting for the lease to expire. The token stays, so the next holder''s is higher. False if p_holder no longer held it under p_token.';

create or replace function trellis.role_check(p_name text, p_token bigint)
returns boolean language plpgsql as $$
declare
  v_role trellis.roles;
begin
  perform trellis._check_name(p_name, 'role');
  select * into v_role from trellis.roles where name = p_name for key share;
  if not found or v_role.token is distinct from p_token or v_role.holder is null
     or v_role.expires_at <= trellis.now() then
    perform trellis._raise('TR003', format('role %s: fencing token %s is stale (the role is at token %s%s)',
                                           p_name, coalesce(p_token::text, 'null'), coalesce(v_role.token, 0),
                                           case when v_role.holder is null then ', not held' else '' end));
  end if;
  return true;
end $$;
comment on function trellis.role_check(text, bigint) is
  'The fence of a write done under role p_name: true if p_token is the current lease''s token and the lease runs, else TR003. Call it in the transaction of the write; it locks the role row (FOR KEY SHARE) until that transaction ends, so a takeover waits for the write and no stale write commits after it.';

create or replace function trellis.role_record(p_name text, p_token bigint, p_ok boolean, p_error text default null)
returns void language plpgsql as $$
begin
  perform trellis._check_name(p_name, 'role');
  update trellis.roles
     set last_run_at = trellis.now(), last_outcome = case when p_ok then 'ok' else 'failed' end,
         last_error = case when p_ok then null else left(p_error, 2000) end
   where name = p_name and token = p_token;
end $$;
comment on function trellis.role_record(text, bigint, boolean, text) is
  'Record when the duty of role p_name last ran and how it went (ok, or failed with p_error, first 2000 characters). Ignored unless p_token is the role''s current token.';

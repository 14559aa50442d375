--! Previous: sha1:208ae9aea6df5dc2454db9d40c5012b36fda43c9
--! Hash: sha1:10994aced7d22f5b226519537f30105e49992fd7

-- Trellis: a hook delivery whose worker dies in it is not claimed for ever
-- (decision 0019's amendment). hook_deliveries.lease_expiries counts the
-- leases of a delivery that expired (its worker stopped in the hook); at
-- the setting max_lease_expiries (default 5) the delivery is parked, as a
-- run whose step crashes its worker is, instead of being claimed again.
alter table trellis.hook_deliveries add column if not exists lease_expiries integer not null default 0;
comment on column trellis.hook_deliveries.lease_expiries is
  'How many leases of this delivery expired (its worker stopped while delivering it); parked at the setting max_lease_expiries. Reset by hook_retry.';

--! Previous: sha1:eed5c9fed672dd27fd897daec8e4d253c82f7401
--! Hash: sha1:a7fa653e0130fdc21e798fb0ce7a92462a0aeef7

-- Trellis: a bucket in every run-scoped table (issue 17, decision 0024).
--
-- A fixed number of buckets is chosen at install (setting 'buckets', a power
-- of two from 1 to 4096, default 64; trellis.setting_set refuses a change
-- once runs exist, TR008). A run's bucket is hash(workflow, key) for a keyed
-- run, else the bucket of its parent (a child without a key of its own),
-- else hash(run id) (sql/000_support.sql trellis._bucket). It is stored on
-- every row of the run-scoped tables (runs, steps, signals, events,
-- hook_deliveries; a run's timers are its run_at), never updated, and leads
-- every primary, unique and foreign key of those tables, so they can be
-- distributed by it (Citus: create_distributed_table(…, 'bucket')). Lookups
-- by run id alone keep working on one node through runs_id_idx and the
-- existing run_id indexes. The parent link (runs.parent_run_id) crosses
-- buckets when a child has its own key, so it is no longer a foreign key:
-- _delete_runs clears the link of a purged parent's children itself.
insert into trellis.settings (key, value) values ('buckets', '64') on conflict (key) do nothing;

alter table trellis.steps drop constraint if exists steps_run_id_fkey;
alter table trellis.signals drop constraint if exists signals_run_id_fkey;
alter table trellis.runs drop constraint if exists runs_parent_run_id_fkey;

-- runs: the bucket of each existing run (its own hash, then a keyless child
-- takes its parent's, level by level).
alter table trellis.runs add column bucket integer;
update trellis.runs r set bucket = (case when r.key is null then pg_catalog.uuid_hash_extended(r.id, 0)
    else pg_catalog.hashtextextended(r.workflow || pg_catalog.chr(31) || r.key, 0) end
  & ((select (s.value #>> '{}')::bigint from trellis.settings s where s.key = 'buckets') - 1))::integer;
do $$
begin
  loop
    update trellis.runs c set bucket = p.bucket
      from trellis.runs p
     where c.parent_run_id = p.id and c.key is null and c.bucket <> p.bucket;
    exit when not found;
  end loop;
end $$;
alter table trellis.runs alter column bucket set not null;
alter table trellis.runs drop constraint runs_pkey;
alter table trellis.runs add primary key (bucket, id);
-- Lookups by id alone (every API takes a run id) on one node.
create index runs_id_idx on trellis.runs (id);
drop index trellis.runs_workflow_key_idx;
create unique index runs_workflow_key_idx on trellis.runs (bucket, workflow, key) where key is not null;

-- steps
alter table trellis.steps add column bucket integer;
update trellis.steps s set bucket = r.bucket from trellis.runs r where r.id = s.run_id;
alter table trellis.steps alter column bucket set not null;
alter table trellis.steps drop constraint steps_pkey;
alter table trellis.steps add primary key (bucket, run_id, execution, seq);
alter table trellis.steps add constraint steps_run_fkey foreign key (bucket, run_id)
  references trellis.runs (bucket, id) on delete cascade;

-- signals
alter table trellis.signals add column bucket integer;
update trellis.signals g set bucket = r.bucket from trellis.runs r where r.id = g.run_id;
alter table trellis.signals alter column bucket set not null;
alter table trellis.signals drop constraint signals_pkey;
alter table trellis.signals add primary key (bucket, id);
drop index trellis.signals_dedupe_idx;
create unique index signals_dedupe_idx on trellis.signals (bucket, run_id, signal_id) where signal_id is not null;
alter table trellis.signals add constraint signals_run_fkey foreign key (bucket, run_id)
  references trellis.runs (bucket, id) on delete cascade;

-- events: the primary key leads with the bucket and the run (it replaces
-- events_run_idx); outbox readers keep their (xid, id) order through
-- events_xid_idx. Events of runs already purged take their run id's hash.
alter table trellis.events add column bucket integer;
update trellis.events e set bucket = coalesce((select r.bucket from trellis.runs r where r.id = e.run_id),
  (pg_catalog.uuid_hash_extended(e.run_id, 0)
   & ((select (s.value #>> '{}')::bigint from trellis.settings s where s.key = 'buckets') - 1))::integer);
alter table trellis.events alter column bucket set not null;
alter table trellis.events drop constraint events_pkey;
alter table trellis.events add primary key (bucket, run_id, xid, id);
create index events_xid_idx on trellis.events (xid, id);
drop index trellis.events_run_idx;

-- hook_deliveries (hook_retry and the claim find a delivery by id).
alter table trellis.hook_deliveries add column bucket integer;
update trellis.hook_deliveries h set bucket = coalesce((select r.bucket from trellis.runs r where r.id = h.run_id),
  (pg_catalog.uuid_hash_extended(h.run_id, 0)
   & ((select (s.value #>> '{}')::bigint from trellis.settings s where s.key = 'buckets') - 1))::integer);
alter table trellis.hook_deliveries alter column bucket set not null;
alter table trellis.hook_deliveries drop constraint hook_deliveries_pkey;
alter table trellis.hook_deliveries add primary key (bucket, id);
create index hook_deliveries_id_idx on trellis.hook_deliveries (id);

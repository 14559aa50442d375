--! Previous: sha1:3364fc69b5ec40ef1d12bb2273c4ceea63847894
--! Hash: sha1:eed5c9fed672dd27fd897daec8e4d253c82f7401

-- Trellis: every queue has a row in trellis.queues (issue 14). A start
-- into a queue without a row now inserts it with the defaults (no flow
-- control, sql/200_runs.sql); this gives a row to every queue that runs or
-- registered workflows already use.
insert into trellis.queues (name, created_at, updated_at)
select q.queue, now(), now()
  from (select distinct queue from trellis.runs union select queue from trellis.workflows) q
on conflict (name) do nothing;

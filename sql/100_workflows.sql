-- 100_workflows: the registry of workflow definitions (name, version, queue).
-- Owns: trellis.workflow_register. Touches: trellis.workflows.

create or replace function trellis.workflow_register(p_workflows jsonb)
returns void language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
  v_item jsonb;
begin
  if jsonb_typeof(p_workflows) is distinct from 'array' then
    perform trellis._raise('TR001', 'workflow_register expects a JSON array of {name, version, queue}');
  end if;
  for v_item in select * from jsonb_array_elements(p_workflows) loop
    perform trellis._check_name(v_item->>'name', 'workflow');
    perform trellis._check_name(v_item->>'version', 'version');
    perform trellis._check_name(coalesce(v_item->>'queue', 'default'), 'queue');
  end loop;
  insert into trellis.workflows as w (name, version, queue, registered_at, last_seen_at)
  select distinct on (i->>'name', i->>'version')
         i->>'name', i->>'version', coalesce(i->>'queue', 'default'), v_now, v_now
    from jsonb_array_elements(p_workflows) as i
  on conflict (name, version) do update
    set queue = excluded.queue, last_seen_at = excluded.last_seen_at
    -- Avoid rewriting the row (and blocking concurrent starters) on every boot.
    where w.queue is distinct from excluded.queue
       or w.last_seen_at < excluded.last_seen_at - interval '1 minute';
end $$;
comment on function trellis.workflow_register(jsonb) is
  'Register workflow definitions [{name, version, queue}]. The most recently first-registered version is the default for starts that name no version.';

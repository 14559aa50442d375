-- 100_workflows: the registry of workflow definitions (name, version, queue,
-- input shape).
-- Owns: trellis.workflow_register, trellis.workflow_input_error. Touches: trellis.workflows.

create or replace function trellis.workflow_register(p_workflows jsonb)
returns void language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
  v_item jsonb;
begin
  if jsonb_typeof(p_workflows) is distinct from 'array' then
    perform trellis._raise('TR001', 'workflow_register expects a JSON array of {name, version, queue, input_schema?}');
  end if;
  for v_item in select * from jsonb_array_elements(p_workflows) loop
    perform trellis._check_name(v_item->>'name', 'workflow');
    perform trellis._check_name(v_item->>'version', 'version');
    perform trellis._check_name(coalesce(v_item->>'queue', 'default'), 'queue');
    if v_item ? 'input_schema' then
      if jsonb_typeof(v_item->'input_schema') not in ('object', 'boolean', 'null') then
        perform trellis._raise('TR001', format('input_schema of workflow %L must be a JSON object, true or null', v_item->>'name'));
      end if;
      if octet_length((v_item->'input_schema')::text) > 1048576 then
        perform trellis._raise('TR001', format('input_schema of workflow %L is over 1 MB', v_item->>'name'));
      end if;
      if trellis._shape_depth(v_item->'input_schema', 128) > 128 then
        perform trellis._raise('TR001', format('input_schema of workflow %L nests deeper than 128 levels', v_item->>'name'));
      end if;
    end if;
  end loop;
  -- An item without input_schema (an older Trellis) keeps the stored shape;
  -- JSON null stores no shape (SQL then checks nothing).
  insert into trellis.workflows as w (name, version, queue, registered_at, last_seen_at, input_schema, input_path)
  select distinct on (i->>'name', i->>'version')
         i->>'name', i->>'version', coalesce(i->>'queue', 'default'), v_now, v_now,
         i->'input_schema', trellis._shape_jsonpath(i->'input_schema')
    from jsonb_array_elements(p_workflows) as i
  on conflict (name, version) do update
    set queue = excluded.queue, last_seen_at = excluded.last_seen_at,
        input_schema = coalesce(excluded.input_schema, w.input_schema),
        input_path = case when excluded.input_schema is null then w.input_path else excluded.input_path end
    -- Avoid rewriting the row (and blocking concurrent starters) on every boot.
    where w.queue is distinct from excluded.queue
       or (excluded.input_schema is not null and w.input_schema is distinct from excluded.input_schema)
       or w.last_seen_at < excluded.last_seen_at - interval '1 minute';
end $$;
comment on function trellis.workflow_register(jsonb) is
  'Register workflow definitions [{name, version, queue, input_schema?}]. input_schema is the input shape run_start checks inputs against (sql/050_shapes.sql); an item without it keeps the stored one. The most recently first-registered version is the default for starts that name no version.';

create or replace function trellis.workflow_input_error(p_workflow text, p_input jsonb, p_version text default null)
returns text language plpgsql stable as $$
declare
  v_shape jsonb;
  v_path  jsonpath;
begin
  perform trellis._check_name(p_workflow, 'workflow');
  if p_version is not null then
    perform trellis._check_name(p_version, 'version');
  end if;
  select input_schema, input_path into v_shape, v_path from trellis.workflows
   where name = p_workflow and (p_version is null or version = p_version)
   order by registered_at desc, version desc limit 1;
  if not found then
    perform trellis._raise('TR002', format('unknown workflow %L%s', p_workflow,
                                           coalesce(format(' version %L', p_version), '')));
  end if;
  return trellis._input_error(v_shape, v_path, coalesce(p_input, 'null'));
end $$;
comment on function trellis.workflow_input_error(text, jsonb, text) is
  'Why run_start would refuse p_input for the workflow (at p_version, or the version a start without one gets): the first mismatch with its input shape, as ''$.path: what'', or null if it would accept it. Raises TR002 for an unknown workflow or version.';

-- 100_workflows: the registry of workflow definitions (name, version, queue,
-- input shape, declared signals, lifecycle hooks, whether its events carry payloads).
-- Owns: trellis.workflow_register, trellis.workflow_input_error, trellis._check_shape_size.
-- Touches: trellis.workflows; trellis.queues (the row of a registered version's
-- default queue, inserted when missing; the last lock it takes).

-- A registered shape (or object of shapes) is at most 1 MB and nests at
-- most p_levels deep (the walk recurses once per level).
create or replace function trellis._check_shape_size(p_value jsonb, p_what text, p_levels integer)
returns void language plpgsql immutable as $$
begin
  if octet_length(p_value::text) > 1048576 then
    perform trellis._raise('TR001', format('%s is over 1 MB', p_what));
  end if;
  if trellis._shape_depth(p_value, p_levels) > p_levels then
    perform trellis._raise('TR001', format('%s nests deeper than %s levels', p_what, p_levels));
  end if;
end $$;
comment on function trellis._check_shape_size(jsonb, text, integer) is
  'Raise TR001 if the registered shape p_value is over 1 MB or nests deeper than p_levels.';

-- Whether registration item p_item ({name, version, queue, input_schema?,
-- signals?, hooks?, event_payloads?}, as workflow_register takes it) is
-- stored as it is and was seen within a minute of p_now: registering it
-- again would change nothing. SQL, not PL/pgSQL: a client's first start
-- asks it in its own statement (src/db/runs.ts runStartFirst), and a fresh
-- session then compiles no registration code for a known workflow.
create or replace function trellis._workflow_stored(p_item jsonb, p_now timestamptz)
returns boolean language sql stable as $$
  select exists (
    select 1 from trellis.workflows s
     where s.name = p_item->>'name' and s.version = p_item->>'version'
       and s.queue is not distinct from coalesce(p_item->>'queue', 'default')
       and (p_item->'input_schema' is null or s.input_schema is not distinct from p_item->'input_schema')
       and (p_item->'signals' is null or s.signal_schemas is not distinct from p_item->'signals')
       and (jsonb_typeof(p_item->'hooks') is distinct from 'array'
            or s.hooks is not distinct from array(select jsonb_array_elements_text(p_item->'hooks')))
       and s.event_payloads is not distinct from coalesce((p_item->>'event_payloads')::boolean, false)
       and s.last_seen_at >= p_now - interval '1 minute')
$$;
comment on function trellis._workflow_stored(jsonb, timestamptz) is
  'Whether workflow_register item p_item is stored as it is and was seen within a minute of p_now (registering it again would write nothing).';

create or replace function trellis.workflow_register(p_workflows jsonb)
returns void language plpgsql as $$
declare
  v_now timestamptz := trellis.now();
  v_item jsonb;
  v_paths   jsonpath[];
  v_changed bigint[];
begin
  if jsonb_typeof(p_workflows) is distinct from 'array' then
    perform trellis._raise('TR001', 'workflow_register expects a JSON array of {name, version, queue, input_schema?, signals?}');
  end if;
  for v_item in select * from jsonb_array_elements(p_workflows) loop
    if jsonb_typeof(v_item) is distinct from 'object' then
      perform trellis._raise('TR001', 'workflow_register expects a JSON array of {name, version, queue, input_schema?, signals?}');
    end if;
    -- A misspelt key (Queue) would be dropped in silence, and the version's queue reset to default.
    if exists (select 1 from jsonb_object_keys(v_item) k
                where k not in ('name', 'version', 'queue', 'input_schema', 'signals', 'hooks', 'event_payloads')) then
      perform trellis._raise('TR001', format('unknown key(s) %s in the registration of workflow %s: it takes name, version, queue, input_schema, signals, hooks, event_payloads',
                                             (select string_agg(trellis._quote(left(k, 40)), ', ') from jsonb_object_keys(v_item) k
                                               where k not in ('name', 'version', 'queue', 'input_schema', 'signals', 'hooks', 'event_payloads')),
                                             trellis._quote(v_item->>'name')));
    end if;
    perform trellis._check_name(v_item->>'name', 'workflow');
    perform trellis._check_name(v_item->>'version', 'version');
    perform trellis._check_name(coalesce(v_item->>'queue', 'default'), 'queue');
    -- Strings, as run_start takes them: ->> would turn 5 into '5'.
    if jsonb_typeof(v_item->'name') <> 'string' or jsonb_typeof(v_item->'version') <> 'string'
       or jsonb_typeof(v_item->'queue') not in ('string', 'null') then
      perform trellis._raise('TR001', format('name, version and queue of workflow %s must be strings',
                                             trellis._quote(v_item->>'name')));
    end if;
    if v_item ? 'input_schema' then
      -- Not false: a shape that accepts no input would refuse every start.
      if jsonb_typeof(v_item->'input_schema') not in ('object', 'null') and v_item->'input_schema' <> 'true'::jsonb then
        perform trellis._raise('TR001', format('input_schema of workflow %L must be a JSON object, true or null', v_item->>'name'));
      end if;
      perform trellis._check_shape_size(v_item->'input_schema', format('input_schema of workflow %L', v_item->>'name'), 128);
    end if;
    if v_item ? 'signals' then
      if jsonb_typeof(v_item->'signals') not in ('object', 'null') then
        perform trellis._raise('TR001', format('signals of workflow %L must be a JSON object of signal name to shape, or null', v_item->>'name'));
      end if;
      perform trellis._check_name(k, 'signal') from jsonb_object_keys(case when jsonb_typeof(v_item->'signals') = 'object' then v_item->'signals' end) k;
      if exists (select 1 from jsonb_each(case when jsonb_typeof(v_item->'signals') = 'object' then v_item->'signals' end) e
                  where jsonb_typeof(e.value) <> 'object' and e.value <> 'true'::jsonb) then
        perform trellis._raise('TR001', format('each signal shape of workflow %L must be a JSON object or true', v_item->>'name'));
      end if;
      -- One level more: the object of names around the shapes.
      perform trellis._check_shape_size(v_item->'signals', format('signals of workflow %L', v_item->>'name'), 129);
    end if;
    if v_item ? 'hooks' and (jsonb_typeof(v_item->'hooks') not in ('array', 'null')
       or exists (select 1 from jsonb_array_elements(case when jsonb_typeof(v_item->'hooks') = 'array' then v_item->'hooks' end) h
                   where h not in ('"onComplete"', '"onFail"', '"onCancel"', '"onPause"'))) then
      perform trellis._raise('TR001', format('hooks of workflow %L must be an array of onComplete, onFail, onCancel, onPause', v_item->>'name'));
    end if;
    if v_item ? 'event_payloads' and jsonb_typeof(v_item->'event_payloads') <> 'boolean' then
      perform trellis._raise('TR001', format('event_payloads of workflow %L must be true or false', v_item->>'name'));
    end if;
  end loop;
  -- A definition stored as it is (the upsert below would change nothing) is
  -- left out before the upsert, which locks the row even when its WHERE
  -- then leaves it alone: that lock takes a transaction id, and the commit
  -- a WAL flush, on every client's first start (issue 18, cold start).
  -- The input shapes' jsonpaths are compiled first, in a statement of their
  -- own: _shape_jsonpath's exception block is a savepoint, and on Citus a
  -- savepoint after this transaction read the workflows (a reference table)
  -- failed with "another command is already in progress" on the connection
  -- to a worker node.
  v_paths := array(select trellis._shape_jsonpath(x.i->'input_schema')
                     from jsonb_array_elements(p_workflows) with ordinality as x(i, n) order by x.n);
  v_changed := array(select x.n from jsonb_array_elements(p_workflows) with ordinality as x(i, n)
                      where not trellis._workflow_stored(x.i, v_now));
  if cardinality(v_changed) = 0 then
    return;
  end if;
  -- An item without input_schema or signals (an older Trellis) keeps what
  -- is stored; JSON null stores nothing (SQL then checks nothing).
  with item as (
    select distinct on (i->>'name', i->>'version')
           i->>'name' as name, i->>'version' as version, coalesce(i->>'queue', 'default') as queue,
           i->'input_schema' as input_schema, i->'signals' as signal_schemas,
           case when jsonb_typeof(i->'hooks') = 'array' then array(select jsonb_array_elements_text(i->'hooks')) end as hooks,
           coalesce((i->>'event_payloads')::boolean, false) as event_payloads, v_paths[n] as input_path
      from jsonb_array_elements(p_workflows) with ordinality as x(i, n)
     where n = any (v_changed))
  insert into trellis.workflows as w (name, version, queue, registered_at, last_seen_at,
                                      input_schema, input_path, signal_schemas, hooks, event_payloads)
  select item.name, item.version, item.queue, v_now, v_now,
         item.input_schema, item.input_path, item.signal_schemas, item.hooks, item.event_payloads
    from item
  on conflict (name, version) do update
    set queue = excluded.queue, last_seen_at = excluded.last_seen_at,
        input_schema = coalesce(excluded.input_schema, w.input_schema),
        input_path = case when excluded.input_schema is null then w.input_path else excluded.input_path end,
        signal_schemas = coalesce(excluded.signal_schemas, w.signal_schemas),
        hooks = coalesce(excluded.hooks, w.hooks),
        event_payloads = excluded.event_payloads
    -- Avoid rewriting the row (and blocking concurrent starters) on every boot.
    where w.queue is distinct from excluded.queue
       or (excluded.input_schema is not null and w.input_schema is distinct from excluded.input_schema)
       or (excluded.signal_schemas is not null and w.signal_schemas is distinct from excluded.signal_schemas)
       or (excluded.hooks is not null and w.hooks is distinct from excluded.hooks)
       or w.event_payloads is distinct from excluded.event_payloads
       -- (timestamptz - timestamptz is immutable, timestamptz - interval only stable:
       -- Citus takes only immutable functions in an ON CONFLICT's WHERE.)
       or excluded.last_seen_at - w.last_seen_at > interval '1 minute';
  -- Each registered version's default queue has its row from here on
  -- (migration 000026 made the rows of earlier registrations): a start into
  -- its workflow's default queue then never needs to probe for it
  -- (sql/200_runs.sql). After the workflows' upsert, as a start inserts its
  -- queue's row after its run: a queue row is the last lock either takes.
  insert into trellis.queues (name, created_at, updated_at)
  select distinct coalesce(x.i->>'queue', 'default'), v_now, v_now
    from jsonb_array_elements(p_workflows) with ordinality as x(i, n)
   where x.n = any (v_changed)
  on conflict (name) do nothing;
end $$;
comment on function trellis.workflow_register(jsonb) is
  'Register workflow definitions [{name, version, queue, input_schema?, signals?, hooks?, event_payloads?}]. hooks: the lifecycle hooks the version declares (onComplete, onFail, onCancel, onPause), delivered durably (sql/710_hooks.sql); event_payloads: its events carry output and error. input_schema is the input shape run_start checks inputs against, signals the object of signal name to payload shape signal_send checks against (sql/050_shapes.sql); an item without either keeps the stored one. The most recently first-registered version is the default for starts that name no version.';

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
                                           -- (format's %L writes NULL for null: no coalesce here.)
                                           case when p_version is not null then format(' version %L', p_version) else '' end));
  end if;
  return trellis._input_error(v_shape, v_path, coalesce(p_input, 'null'));
end $$;
comment on function trellis.workflow_input_error(text, jsonb, text) is
  'Why run_start would refuse p_input for the workflow (at p_version, or the version a start without one gets): the first mismatch with its input shape, as ''$.path: what'', or null if it would accept it. Raises TR002 for an unknown workflow or version.';

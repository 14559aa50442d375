-- 050_shapes: checking a JSON value against an input shape, the JSON Schema
-- subset a worker or client derives from a workflow's zod schema and
-- registers with it (src/workflow/input-shape.ts). A shape may accept more
-- than the schema, never less: what it cannot express is left to the worker.
-- Owns: trellis._js_number, _shape_error, _shape_key, _shape_depth,
-- _shape_predicate, _shape_jsonpath, _input_error. Touches nothing.
--
-- Keywords: type (a name or a list: string, number, integer, boolean, null,
-- object, array), enum, anyOf, allOf, minimum, maximum, exclusiveMinimum,
-- exclusiveMaximum, minLength/maxLength (see below for how a length is
-- counted), items, prefixItems, minItems, maxItems,
-- properties, required, additionalProperties (false or a shape). Others are
-- ignored, as are keywords whose value has the wrong JSON type. Numbers are
-- compared as the double a JavaScript worker parses them into.

-- The double JSON.parse makes of a jsonb number, or null where PostgreSQL's
-- float8 would raise rather than round (beyond the range of a double, or
-- below its smallest normal magnitude): checks are then skipped.
create or replace function trellis._js_number(p_value jsonb)
returns float8 language plpgsql immutable parallel safe as $$
declare
  v_num numeric := (p_value #>> '{}')::numeric;
begin
  if abs(v_num) > 1.7976931348623157e308 or (v_num <> 0 and abs(v_num) < 2.3e-308) then
    return null;
  end if;
  return v_num::float8;
end $$;
comment on function trellis._js_number(jsonb) is
  'The float8 a JavaScript worker would parse a jsonb number into, or null outside the normal range of a double.';

-- An error reads '<path>: <what>', the path relative to p_value ('' for
-- p_value itself, '.key', '[0]', '["a key"]', nested); callers put '$' in
-- front. Paths are built only on the way back from a mismatch.
create or replace function trellis._shape_error(p_shape jsonb, p_value jsonb)
returns text language plpgsql immutable parallel safe as $$
declare
  v_kind  text := jsonb_typeof(p_value);
  v_types jsonb := p_shape->'type';
  v_num   float8;
  v_bound float8;
  v_len   integer;
  v_err   text;
  v_key   text;
  v_sub   jsonb;
  v_at    bigint;
  v_found boolean;
begin
  if p_shape is null or jsonb_typeof(p_shape) <> 'object' then
    -- true, {} or JSON null accept anything; false accepts nothing.
    if p_shape = 'false'::jsonb then
      return ': not allowed here';
    end if;
    return null;
  end if;

  if jsonb_typeof(v_types) = 'string' then
    v_types := jsonb_build_array(v_types);
  end if;
  if jsonb_typeof(v_types) = 'array' and not v_types ? v_kind
     and not (v_kind = 'number' and v_types ? 'integer') then
    return format(': expected %s, got %s',
                  (select string_agg(t, ' or ') from jsonb_array_elements_text(v_types) t), v_kind);
  end if;

  if jsonb_typeof(p_shape->'enum') = 'array' then
    v_found := false;
    for v_sub in select * from jsonb_array_elements(p_shape->'enum') loop
      if v_sub = p_value or (v_kind = 'number' and jsonb_typeof(v_sub) = 'number'
                             and trellis._js_number(v_sub) = trellis._js_number(p_value)) then
        v_found := true;
        exit;
      end if;
    end loop;
    if not v_found then
      return format(': expected one of %s', left((p_shape->'enum')::text, 200));
    end if;
  end if;

  if v_kind = 'number' then
    v_num := trellis._js_number(p_value);
    if v_num is not null then
      if jsonb_typeof(v_types) = 'array' and not v_types ? 'number' and v_num <> trunc(v_num) then
        return format(': expected an integer, got %s', p_value);
      end if;
      if jsonb_typeof(p_shape->'minimum') = 'number' then
        v_bound := trellis._js_number(p_shape->'minimum');
        if v_num < v_bound then
          return format(': %s is less than the minimum %s', p_value, p_shape->'minimum');
        end if;
      end if;
      if jsonb_typeof(p_shape->'maximum') = 'number' then
        v_bound := trellis._js_number(p_shape->'maximum');
        if v_num > v_bound then
          return format(': %s is more than the maximum %s', p_value, p_shape->'maximum');
        end if;
      end if;
      if jsonb_typeof(p_shape->'exclusiveMinimum') = 'number' then
        v_bound := trellis._js_number(p_shape->'exclusiveMinimum');
        if v_num <= v_bound then
          return format(': %s must be more than %s', p_value, p_shape->'exclusiveMinimum');
        end if;
      end if;
      if jsonb_typeof(p_shape->'exclusiveMaximum') = 'number' then
        v_bound := trellis._js_number(p_shape->'exclusiveMaximum');
        if v_num >= v_bound then
          return format(': %s must be less than %s', p_value, p_shape->'exclusiveMaximum');
        end if;
      end if;
    end if;
  elsif v_kind = 'string' and (p_shape ? 'minLength' or p_shape ? 'maxLength') then
    -- zod 4.6 counts a string's length in code points (as length() does),
    -- earlier zod 4 releases in UTF-16 code units, where a character outside
    -- the Basic Multilingual Plane counts twice. Lenient under both: a
    -- maximum is checked in code points (never more than the units), a
    -- minimum in UTF-16 units (never fewer than the code points).
    v_len := length(p_value #>> '{}');
    if jsonb_typeof(p_shape->'maxLength') = 'number' and v_len > (p_shape->>'maxLength')::numeric then
      return format(': length %s, over the maximum length %s', v_len, p_shape->'maxLength');
    end if;
    if jsonb_typeof(p_shape->'minLength') = 'number' and v_len < (p_shape->>'minLength')::numeric then
      if getdatabaseencoding() = 'UTF8' then
        v_len := v_len + length(regexp_replace(p_value #>> '{}', E'[^\\U00010000-\\U0010FFFF]', '', 'g'));
      end if;
      if v_len < (p_shape->>'minLength')::numeric then
        return format(': length %s, under the minimum length %s', length(p_value #>> '{}'), p_shape->'minLength');
      end if;
    end if;
  elsif v_kind = 'array' then
    v_len := jsonb_array_length(p_value);
    if jsonb_typeof(p_shape->'minItems') = 'number' and v_len < (p_shape->>'minItems')::numeric then
      return format(': %s items, under the minimum of %s', v_len, p_shape->'minItems');
    end if;
    if jsonb_typeof(p_shape->'maxItems') = 'number' and v_len > (p_shape->>'maxItems')::numeric then
      return format(': %s items, over the maximum of %s', v_len, p_shape->'maxItems');
    end if;
    if jsonb_typeof(p_shape->'prefixItems') = 'array' then
      for v_sub, v_at in select * from jsonb_array_elements(p_shape->'prefixItems') with ordinality loop
        exit when v_at > v_len;
        v_err := trellis._shape_error(v_sub, p_value->(v_at::integer - 1));
        if v_err is not null then
          return format('[%s]', v_at - 1) || v_err;
        end if;
      end loop;
    end if;
    if p_shape ? 'items' and p_shape->'items' <> '{}'::jsonb and p_shape->'items' <> 'true'::jsonb then
      for v_sub, v_at in select * from jsonb_array_elements(p_value) with ordinality loop
        continue when jsonb_typeof(p_shape->'prefixItems') = 'array'
                  and v_at <= jsonb_array_length(p_shape->'prefixItems');
        v_err := trellis._shape_error(p_shape->'items', v_sub);
        if v_err is not null then
          return format('[%s]', v_at - 1) || v_err;
        end if;
      end loop;
    end if;
  elsif v_kind = 'object' then
    if jsonb_typeof(p_shape->'required') = 'array' then
      select k into v_key from jsonb_array_elements_text(p_shape->'required') k
       where not p_value ? k limit 1;
      if found then
        return trellis._shape_key(v_key) || ': required';
      end if;
    end if;
    if jsonb_typeof(p_shape->'properties') = 'object' then
      for v_key, v_sub in select * from jsonb_each(p_shape->'properties') loop
        continue when not p_value ? v_key;
        v_err := trellis._shape_error(v_sub, p_value->v_key);
        if v_err is not null then
          return trellis._shape_key(v_key) || v_err;
        end if;
      end loop;
    end if;
    if p_shape ? 'additionalProperties' then
      for v_key, v_sub in
        select e.key, e.value from jsonb_each(p_value) e
         where jsonb_typeof(p_shape->'properties') is distinct from 'object' or not (p_shape->'properties') ? e.key
      loop
        v_err := trellis._shape_error(p_shape->'additionalProperties', v_sub);
        if v_err is not null then
          return trellis._shape_key(v_key) || v_err;
        end if;
      end loop;
    end if;
  end if;

  if jsonb_typeof(p_shape->'allOf') = 'array' then
    for v_sub in select * from jsonb_array_elements(p_shape->'allOf') loop
      v_err := trellis._shape_error(v_sub, p_value);
      if v_err is not null then
        return v_err;
      end if;
    end loop;
  end if;
  if jsonb_typeof(p_shape->'anyOf') = 'array' and jsonb_array_length(p_shape->'anyOf') > 0 then
    v_err := null;
    for v_sub in select * from jsonb_array_elements(p_shape->'anyOf') loop
      v_err := trellis._shape_error(v_sub, p_value);
      exit when v_err is null;
    end loop;
    if v_err is not null then
      return format(': matches none of %s alternatives; the last: %s',
                    jsonb_array_length(p_shape->'anyOf'), regexp_replace(v_err, '^: ', ''));
    end if;
  end if;
  return null;
end $$;
comment on function trellis._shape_error(jsonb, jsonb) is
  'Why p_value does not match the input shape p_shape, as ''<relative path>: <what>'' (the first mismatch), or null if it matches.';

create or replace function trellis._shape_key(p_key text)
returns text language sql immutable parallel safe as $$
  select case when p_key ~ '^[A-Za-z_$][A-Za-z0-9_$]*$' then '.' || p_key
              else '[' || to_jsonb(p_key)::text || ']' end
$$;
comment on function trellis._shape_key(text) is
  'The path step for key p_key: .name, or ["a key"] when the key is not an identifier.';

-- How deeply a JSON value nests (a scalar is 1), counted up to p_limit + 1.
create or replace function trellis._shape_depth(p_value jsonb, p_limit integer)
returns integer language sql immutable parallel safe as $$
  with recursive t(v, d) as (
    select p_value, 1
    union all
    select c.value, t.d + 1 from t
     cross join lateral (
       select e.value from jsonb_each(case when jsonb_typeof(t.v) = 'object' then t.v end) e
       union all
       select a.value from jsonb_array_elements(case when jsonb_typeof(t.v) = 'array' then t.v end) a) c
     where t.d <= p_limit)
  select max(d) from t
$$;
comment on function trellis._shape_depth(jsonb, integer) is
  'The nesting depth of a JSON value, counted up to p_limit + 1 (registration refuses deeper input shapes).';

-- The fast path: a shape compiled into one jsonpath predicate over the
-- current item @, evaluated in C by jsonb_path_match. It is built so that
-- it is true only for values the walk above accepts: every comparison is
-- guarded by a type test (so none is unknown), and a sub-value whose check
-- is unknown counts as a mismatch. When it is not true, run_start walks the
-- shape, which has the last word (and says why). What a predicate cannot
-- say exactly (a string length over 63,750, an enum of objects) makes it
-- false for the values concerned, so those always take the walk.
create or replace function trellis._shape_predicate(p_shape jsonb)
returns text language plpgsql immutable parallel safe as $$
declare
  v_parts text[] := '{}';
  v_alts  text[];
  v_types jsonb := p_shape->'type';
  v_sub   jsonb;
  v_key   text;
  v_n     integer;
  v_known text;
begin
  if p_shape is null or jsonb_typeof(p_shape) <> 'object' then
    return case when p_shape = 'false'::jsonb then '(1 == 0)' else '(1 == 1)' end;
  end if;
  if jsonb_typeof(v_types) = 'string' then
    v_types := jsonb_build_array(v_types);
  end if;
  if jsonb_typeof(v_types) = 'array' then
    select coalesce(string_agg(case when t = 'integer' then '(@.type() == "number" && @.floor() == @)'
                                    else format('@.type() == %s', to_jsonb(t)::text) end, ' || '), '1 == 0')
      into v_known from jsonb_array_elements_text(v_types) t;
    v_parts := v_parts || ('(' || v_known || ')');
  end if;
  if jsonb_typeof(p_shape->'enum') = 'array' then
    select coalesce(string_agg(case jsonb_typeof(e)
             when 'null' then '@.type() == "null"'
             when 'string' then format('(@.type() == "string" && @ == %s)', e::text)
             when 'number' then format('(@.type() == "number" && @ == %s)', e::text)
             when 'boolean' then format('(@.type() == "boolean" && @ == %s)', e::text)
             else '1 == 0' end, ' || '), '1 == 0')
      into v_known from jsonb_array_elements(p_shape->'enum') e;
    v_parts := v_parts || ('(' || v_known || ')');
  end if;
  -- Numbers.
  foreach v_key in array array['minimum:>=', 'maximum:<=', 'exclusiveMinimum:>', 'exclusiveMaximum:<'] loop
    if jsonb_typeof(p_shape->split_part(v_key, ':', 1)) = 'number' then
      v_parts := v_parts || format('(@.type() != "number" || @ %s %s)', split_part(v_key, ':', 2),
                                   (p_shape->split_part(v_key, ':', 1))::text);
    end if;
  end loop;
  -- Strings: like_regex counts code points; a repeat count is at most 255,
  -- so lengths are written as repeats of 250 characters.
  if jsonb_typeof(p_shape->'maxLength') = 'number' then
    v_n := least(greatest((p_shape->>'maxLength')::numeric, 0), 2147483647)::integer;
    v_parts := v_parts || case when v_n > 63750 then '(@.type() != "string")'
      else format('(@.type() != "string" || @ like_regex %s flag "s")',
                  to_jsonb(format('^(?:.{0,250}){0,%s}.{0,%s}$', v_n / 250, v_n % 250))::text) end;
  end if;
  if jsonb_typeof(p_shape->'minLength') = 'number' then
    v_n := least(greatest((p_shape->>'minLength')::numeric, 0), 2147483647)::integer;
    v_parts := v_parts || case when v_n > 63750 then '(@.type() != "string")'
      else format('(@.type() != "string" || @ like_regex %s flag "s")',
                  to_jsonb(format('^(?:.{250}){%s}.{%s}', v_n / 250, v_n % 250))::text) end;
  end if;
  -- Arrays.
  if jsonb_typeof(p_shape->'minItems') = 'number' then
    v_parts := v_parts || format('(@.type() != "array" || @.size() >= %s)', (p_shape->'minItems')::text);
  end if;
  if jsonb_typeof(p_shape->'maxItems') = 'number' then
    v_parts := v_parts || format('(@.type() != "array" || @.size() <= %s)', (p_shape->'maxItems')::text);
  end if;
  v_n := 0;
  if jsonb_typeof(p_shape->'prefixItems') = 'array' then
    select coalesce(string_agg(format('(@.size() <= %s || exists(@[%s] ? (%s)))', n - 1, n - 1,
                                      trellis._shape_predicate(s)), ' && '), '1 == 1'), count(*)
      into v_known, v_n from jsonb_array_elements(p_shape->'prefixItems') with ordinality as x(s, n);
    v_parts := v_parts || ('(@.type() != "array" || (' || v_known || '))');
  end if;
  if p_shape ? 'items' then
    v_parts := v_parts || format('(@.type() != "array" || @.size() <= %s || !exists(@[%s to last] ? (!exists(@ ? (%s)))))',
                                 v_n, v_n, trellis._shape_predicate(p_shape->'items'));
  end if;
  -- Objects. A required key is read directly (a missing one is an error
  -- in strict mode, which makes the whole predicate fail: the walk then
  -- decides); optional and other keys in one pass over the entries.
  v_alts := '{}';
  v_known := null;
  if jsonb_typeof(p_shape->'required') = 'array' then
    select string_agg(case when jsonb_typeof(p_shape->'properties'->k) is not null
                           then format('exists(@.%s ? (%s))', to_jsonb(k)::text, trellis._shape_predicate(p_shape->'properties'->k))
                           else format('exists(@.%s)', to_jsonb(k)::text) end, ' && ')
      into v_known from jsonb_array_elements_text(p_shape->'required') k;
  end if;
  if jsonb_typeof(p_shape->'properties') = 'object' then
    for v_key, v_sub in select * from jsonb_each(p_shape->'properties') loop
      continue when jsonb_typeof(p_shape->'required') = 'array' and (p_shape->'required') ? v_key;
      v_alts := v_alts || format('(@.key == %s && !exists(@.value ? (%s)))', to_jsonb(v_key)::text, trellis._shape_predicate(v_sub));
    end loop;
  end if;
  if p_shape ? 'additionalProperties' then
    select coalesce(string_agg(format('@.key != %s', to_jsonb(k)::text), ' && '), '1 == 1') into v_key
      from jsonb_object_keys(case when jsonb_typeof(p_shape->'properties') = 'object' then p_shape->'properties' else '{}' end) k;
    v_alts := v_alts || format('(%s && !exists(@.value ? (%s)))', v_key, trellis._shape_predicate(p_shape->'additionalProperties'));
  end if;
  if cardinality(v_alts) > 0 then
    v_known := concat_ws(' && ', v_known, '!exists(@.keyvalue() ? (' || array_to_string(v_alts, ' || ') || '))');
  end if;
  if v_known is not null then
    v_parts := v_parts || ('(@.type() != "object" || (' || v_known || '))');
  end if;
  if jsonb_typeof(p_shape->'allOf') = 'array' then
    select string_agg(trellis._shape_predicate(s), ' && ') into v_known from jsonb_array_elements(p_shape->'allOf') s;
    if v_known is not null then
      v_parts := v_parts || ('(' || v_known || ')');
    end if;
  end if;
  if jsonb_typeof(p_shape->'anyOf') = 'array' and jsonb_array_length(p_shape->'anyOf') > 0 then
    select string_agg(trellis._shape_predicate(s), ' || ') into v_known from jsonb_array_elements(p_shape->'anyOf') s;
    v_parts := v_parts || ('(' || v_known || ')');
  end if;
  if cardinality(v_parts) = 0 then
    return '(1 == 1)';
  end if;
  return '(' || array_to_string(v_parts, ' && ') || ')';
end $$;
comment on function trellis._shape_predicate(jsonb) is
  'The input shape p_shape as a jsonpath predicate over @, true only for values _shape_error accepts (run_start''s fast path).';

create or replace function trellis._shape_jsonpath(p_shape jsonb)
returns jsonpath language plpgsql immutable parallel safe as $$
begin
  if p_shape is null or p_shape = 'null'::jsonb then
    return null;
  end if;
  return ('strict exists($ ? ' || trellis._shape_predicate(p_shape) || ')')::jsonpath;
exception when others then
  -- A shape the compiler cannot write (a bug, or one too deep for the
  -- jsonpath parser) is still checked, by the walk alone.
  return null;
end $$;
comment on function trellis._shape_jsonpath(jsonb) is
  'The jsonpath run_start matches an input against before it walks the shape (null: no shape, or none could be compiled).';

-- Why p_input does not match p_shape (with a leading $), or null: the
-- compiled p_path first, then the walk.
create or replace function trellis._input_error(p_shape jsonb, p_path jsonpath, p_input jsonb)
returns text language plpgsql immutable parallel safe as $$
begin
  if p_shape is null or (p_path is not null and coalesce(jsonb_path_match(p_input, p_path, '{}', true), false)) then
    return null;
  end if;
  return '$' || trellis._shape_error(p_shape, p_input);
end $$;
comment on function trellis._input_error(jsonb, jsonpath, jsonb) is
  'Why p_input does not match the input shape p_shape, as ''$.path: what'', or null; tries the compiled predicate p_path first.';

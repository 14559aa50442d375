-- 420_metadata: a run's metadata changed after its start (decision 0041):
-- by its own code (ctx.setMetadata, a call of kind 'metadata' written by
-- checkpoint_apply under the run's lease) or by an operator
-- (run_set_metadata). Both merge a patch into trellis.runs.metadata at the
-- top level: a field given a value is set, a field given JSON null is
-- removed. So the fields a run sets as it goes (an order's state, a
-- customer's tier) are searchable like its start's (metadata @> ..., the
-- index recipes of docs/operations.md).
-- Owns: run_set_metadata, _metadata_merge, _runs_metadata_set.
-- Touches: trellis.runs (metadata, updated_at).
-- Lock order: _runs_metadata_set runs inside checkpoint_apply, whose runs are
-- already locked; run_set_metadata locks its one run (_run_lock).

-- p_metadata with p_patch merged in: its fields set, its null fields
-- removed. TR001 for a patch that is not a JSON object, names an empty
-- field, or names a field tracing keeps (traceparent, tracestate), or a
-- foreign_id that cannot be indexed (_check_foreign_id_field); TR005 for a
-- result over max_payload_bytes and larger than p_metadata (p_what names it).
create or replace function trellis._metadata_merge(p_metadata jsonb, p_patch jsonb, p_what text)
returns jsonb language plpgsql stable as $$
declare
  v_merged jsonb;
begin
  if p_patch is null or jsonb_typeof(p_patch) <> 'object' then
    perform trellis._raise('TR001', format('a metadata patch of %s must be a JSON object, not %s', p_what,
                                           coalesce(jsonb_typeof(p_patch), 'null')));
  end if;
  if p_patch ? '' or p_patch ?| array['traceparent', 'tracestate'] then
    perform trellis._raise('TR001', format('a metadata patch of %s names an empty field or one tracing keeps (traceparent, tracestate)', p_what));
  end if;
  if p_patch ? 'foreign_id' then
    perform trellis._check_foreign_id_field(p_patch, format('a metadata patch of %s', p_what));
  end if;
  -- Also when it does not grow the metadata (below).
  perform trellis._check_json_depth(p_patch, format('a metadata patch of %s', p_what));
  v_merged := (coalesce(p_metadata, '{}') || p_patch)
              - array(select e.key from jsonb_each(p_patch) e where e.value = 'null'::jsonb);
  -- Over the limit only if it grew: a patch that removes or shortens
  -- fields of metadata already over a lowered limit is taken.
  if octet_length(v_merged::text) > octet_length(coalesce(p_metadata, '{}')::text) then
    perform trellis._check_payload(v_merged, format('the metadata of %s', p_what));
  end if;
  return v_merged;
end $$;
comment on function trellis._metadata_merge(jsonb, jsonb, text) is
  'p_metadata with the fields of patch p_patch set (a JSON null removes the field); TR001 for a patch that is not an object or names an empty field, traceparent or tracestate; TR005 if the result is over max_payload_bytes and larger than p_metadata.';

-- The completed metadata calls of held runs that checkpoint_apply records
-- now (already locked and fenced; _steps_record passes only calls not
-- recorded before, so a batch sent again after its commit merges nothing
-- twice): each run's patches in call order.
create or replace function trellis._runs_metadata_set(p_ops trellis.checkpoint_op[])
returns void language plpgsql as $$
declare
  v_now    timestamptz := trellis.now();
  v_run    uuid;
  v_bucket integer;
  v_meta   jsonb;
  v_patch  jsonb;
begin
  for v_run in select distinct x.run from unnest(p_ops) x
                where x.op = 'step' and x.kind = 'metadata' and x.status = 'completed' order by x.run loop
    select r.bucket, r.metadata into v_bucket, v_meta from trellis.runs r where r.id = v_run;
    for v_patch in select x.output from unnest(p_ops) x
                    where x.op = 'step' and x.kind = 'metadata' and x.status = 'completed' and x.run = v_run
                    order by coalesce(x.execution, 0), x.seq loop
      v_meta := trellis._metadata_merge(v_meta, v_patch, format('run %s', v_run));
    end loop;
    update trellis.runs r set metadata = v_meta, updated_at = v_now where r.bucket = v_bucket and r.id = v_run;
  end loop;
end $$;
comment on function trellis._runs_metadata_set(trellis.checkpoint_op[]) is
  'checkpoint_apply''s completed metadata calls (ctx.setMetadata): merge each run''s patches into its metadata in call order (_metadata_merge).';

-- An operator's change of a run's metadata (client.setMetadata, trellis
-- metadata): any run but a scrubbed one, in any status; the run's own
-- ctx.setMetadata calls merge into what this leaves, and this into what
-- they left (the newest write of a field wins).
create or replace function trellis.run_set_metadata(p_run_id uuid, p_patch jsonb)
returns jsonb language plpgsql as $$
declare
  v_run trellis.runs;
  v_meta jsonb;
begin
  v_run := trellis._run_lock(p_run_id);
  if v_run.scrubbed_at is not null then
    perform trellis._raise('TR004', format('run %s was scrubbed: it keeps no metadata', p_run_id));
  end if;
  v_meta := trellis._metadata_merge(v_run.metadata, p_patch, format('run %s', p_run_id));
  update trellis.runs r set metadata = v_meta, updated_at = trellis.now()
   where r.bucket = v_run.bucket and r.id = p_run_id;
  return v_meta;
end $$;
comment on function trellis.run_set_metadata(uuid, jsonb) is
  'Merge p_patch into run p_run_id''s metadata (a field given a value is set, one given JSON null removed) and return the result. TR002 unknown run, TR004 scrubbed, TR001 a patch that is not a JSON object or names an empty field, traceparent or tracestate, TR005 a result over max_payload_bytes that is larger than the metadata before. Works inside any transaction.';

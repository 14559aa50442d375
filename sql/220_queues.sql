-- 220_queues: queues and flow control (decision 0022).
-- Owns: queue_set, queue_pause, queue_resume, _queue_limited, _queue_pick
-- (the claim of a queue with flow control, called by run_claim), the view
-- queue_stats.
-- Touches: trellis.queues (insert, update), trellis.runs (read; the picked
-- runs are locked FOR UPDATE SKIP LOCKED and moved to running by run_claim).
-- Lock order: the queue row (FOR UPDATE), then runs rows (SKIP LOCKED).
--
-- A queue with flow control is a row of trellis.queues with any of
-- concurrency, key_concurrency, rate_limit, fair or paused. Its claims take
-- the row's lock, so claims of that queue by all workers are serialised and
-- every limit is checked against the runs as they are in that transaction:
-- running runs are counted (an expired lease is reclaimed by run_claim
-- before the count, so a dead worker's slot comes back), the rate window
-- and its count are on the row. Nothing is counted in a worker. A queue
-- without options is claimed as before, lock-free. Every queue gets its row
-- on first use, with the defaults: a workflow version's default queue when
-- the version is registered (sql/100_workflows.sql), any other queue when a
-- start first names it (sql/200_runs.sql), so queue_set is needed only to
-- set limits.

-- Whether claims of queue p_name go through _queue_pick.
create or replace function trellis._queue_limited(q trellis.queues)
returns boolean language sql immutable as $$
  select q.concurrency is not null or q.key_concurrency is not null or q.rate_limit is not null
      or q.fair or q.paused
$$;
comment on function trellis._queue_limited(trellis.queues) is
  'Whether a queue has flow control (any of concurrency, key_concurrency, rate_limit, fair, paused): its claims lock its row and go through _queue_pick.';

-- A positive integer option (a whole number, also written 5.0), or null
-- (clear it).
create or replace function trellis._queue_int(p_options jsonb, p_key text)
returns integer language plpgsql immutable as $$
declare
  v jsonb := p_options->p_key;
  n integer;
begin
  if v is null or jsonb_typeof(v) = 'null' then
    return null;
  end if;
  n := trellis._json_int(v, 1, 1000000);
  if n is null then
    perform trellis._raise('TR001', format('queue option %s must be an integer between 1 and 1000000, or null', p_key));
  end if;
  return n;
end $$;
comment on function trellis._queue_int(jsonb, text) is
  'The integer option p_key of queue_set (1-1000000), null for absent or null; raises TR001 otherwise.';

create or replace function trellis.queue_set(p_name text, p_options jsonb default '{}')
returns trellis.queues language plpgsql as $$
declare
  v_options jsonb := coalesce(p_options, '{}');
  v_bad     text;
  v_row     trellis.queues;
  v_period  interval;
  v_rate    jsonb;
begin
  perform trellis._check_name(p_name, 'queue');
  if jsonb_typeof(v_options) <> 'object' then
    perform trellis._raise('TR001', 'queue_set options must be a JSON object');
  end if;
  select string_agg(left(k, 64), ', ') into v_bad from jsonb_object_keys(v_options) as k
   where k not in ('concurrency', 'key_concurrency', 'rate', 'fair', 'paused');
  if v_bad is not null then
    perform trellis._raise('TR001', format('unknown queue option(s): %s (concurrency, key_concurrency, rate, fair, paused)', left(v_bad, 200)));
  end if;
  insert into trellis.queues (name, created_at, updated_at) values (p_name, trellis.now(), trellis.now())
  on conflict (name) do nothing;
  select * into v_row from trellis.queues where name = p_name for update;
  if v_options ? 'concurrency' then
    v_row.concurrency := trellis._queue_int(v_options, 'concurrency');
  end if;
  if v_options ? 'key_concurrency' then
    v_row.key_concurrency := trellis._queue_int(v_options, 'key_concurrency');
  end if;
  if v_options ? 'rate' then
    v_rate := v_options->'rate';
    if jsonb_typeof(v_rate) = 'null' then
      v_row.rate_limit := null;
      v_row.rate_period := null;
    elsif jsonb_typeof(v_rate) <> 'object' or not (v_rate ? 'limit' and v_rate ? 'period') or v_rate - '{limit,period}'::text[] <> '{}'::jsonb then
      perform trellis._raise('TR001', 'queue option rate must be {"limit": n, "period": interval} or null');
    else
      v_row.rate_limit := trellis._queue_int(v_rate, 'limit');
      if v_row.rate_limit is null then
        perform trellis._raise('TR001', 'queue option rate.limit must be an integer between 1 and 1000000');
      end if;
      -- A bare number is refused, as a JSON number or as text ('1000'):
      -- PostgreSQL reads '1000' as seconds, TypeScript reads 1000 as milliseconds.
      if jsonb_typeof(v_rate->'period') <> 'string' or trellis._bare_number(v_rate->>'period') then
        perform trellis._raise('TR001', format('queue option rate.period must be an interval with a unit, as text (''1 second'', ''500 milliseconds''), not %s',
          left((v_rate->'period')::text, 64)));
      end if;
      begin
        v_period := (v_rate->>'period')::interval;
      exception when others then
        perform trellis._raise('TR001', format('queue option rate.period %s is not an interval', quote_literal(left(v_rate->>'period', 64))));
      end;
      if v_period is null or v_period < interval '1 millisecond' or v_period > interval '1 day' then
        perform trellis._raise('TR001', 'queue option rate.period must be between 1 millisecond and 1 day');
      end if;
      -- Windows are multiples of the period: the same period keeps the
      -- current window's count (options applied again at every replica's
      -- boot must not let another full limit through), a new one starts afresh.
      if v_row.rate_period is distinct from v_period then
        v_row.rate_window := null;
        v_row.rate_count := 0;
      end if;
      v_row.rate_period := v_period;
    end if;
  end if;
  -- null removes fair or paused as it does the other options: false, their default.
  if v_options ? 'fair' then
    if jsonb_typeof(v_options->'fair') not in ('boolean', 'null') then
      perform trellis._raise('TR001', 'queue option fair must be true, false or null');
    end if;
    v_row.fair := coalesce((v_options->>'fair')::boolean, false);
  end if;
  if v_options ? 'paused' then
    if jsonb_typeof(v_options->'paused') not in ('boolean', 'null') then
      perform trellis._raise('TR001', 'queue option paused must be true, false or null');
    end if;
    v_row.paused := coalesce((v_options->>'paused')::boolean, false);
  end if;
  v_row.updated_at := trellis.now();
  update trellis.queues set concurrency = v_row.concurrency, key_concurrency = v_row.key_concurrency,
         rate_limit = v_row.rate_limit, rate_period = v_row.rate_period, rate_window = v_row.rate_window,
         rate_count = v_row.rate_count, fair = v_row.fair, paused = v_row.paused, updated_at = v_row.updated_at
   where name = p_name;
  -- Limits may have loosened or the queue resumed: workers look again.
  perform pg_notify('trellis:run_ready', p_name);
  return v_row;
end $$;
comment on function trellis.queue_set(text, jsonb) is
  'Create a queue or change its options: concurrency (at most n runs running across all workers), key_concurrency (at most n running per concurrency_key), rate ({"limit": n, "period": "1 second"}: at most n claims per fixed window of period), fair (rotate claims across concurrency keys), paused. An absent option is kept, null clears it. Raises TR001 for a bad name or option, writing nothing. Returns the row.';

create or replace function trellis.queue_pause(p_name text)
returns trellis.queues language sql as $$
  select trellis.queue_set(p_name, '{"paused": true}')
$$;
comment on function trellis.queue_pause(text) is
  'Stop claims of a queue on every worker. Runs already running keep their lease until their execution ends or suspends (a wait, a retry backoff); they are not claimed again until queue_resume.';

create or replace function trellis.queue_resume(p_name text)
returns trellis.queues language sql as $$
  select trellis.queue_set(p_name, '{"paused": false}')
$$;
comment on function trellis.queue_resume(text) is
  'Let claims of a paused queue go on (and wake the workers of the queue).';

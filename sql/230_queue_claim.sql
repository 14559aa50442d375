-- 230_queue_claim: the claim of a queue with flow control, and queue stats.
-- Owns: _queue_pick (called by run_claim for a queue whose row has flow
-- control), the view queue_stats.
-- Touches: trellis.queues (update of the rate window and rotation cursor),
-- trellis.runs (read; picked runs locked FOR UPDATE SKIP LOCKED).
-- Lock order: the queue row (FOR UPDATE), then runs rows (SKIP LOCKED); the
-- caller (run_claim) moves the picked runs to running in the same transaction.
--
-- The pick, under the queue row's lock:
-- 1. paused: nothing.
-- 2. room = the claim's limit, at most concurrency minus the queue's running
--    runs, at most rate_limit minus the claims of the current rate window
--    (fixed windows of rate_period aligned to the epoch).
-- 3. Rotation: keys are visited in key order starting after the row's
--    cursor, wrapping around; runs without a key are one more group, visited
--    first in every pass. The first pass takes one run per group; later
--    passes take room / groups served in the pass before (at least one), so
--    a key with 10,000 pending runs and one with 10 are served alike, and a
--    queue with one key is not taken one run per probe. Within a key, runs
--    go by priority then due time. A key at key_concurrency (its running
--    runs plus those picked here) is skipped. At most 1,000 key visits per
--    claim; the cursor keeps the place for the next claim.

create or replace function trellis._queue_pick(p_queue text, p_workflows text[], p_versions text[],
  p_limit integer, p_now timestamptz)
returns uuid[] language plpgsql as $$
declare
  q         trellis.queues;
  v_left    integer := p_limit;
  v_running integer;
  v_window  timestamptz;
  v_ids     uuid[] := '{}';
  v_keys    text[] := '{}';
  v_got     uuid[];
  v_take    integer := 1;
  v_key     text;
  v_pos     text;
  v_first   text;
  v_groups  integer := 0;
  v_passgot integer := 0;
  v_visits  integer := 0;
  v_cap     integer;
  v_new_pass boolean := true;
begin
  select * into q from trellis.queues where name = p_queue for update;
  if not found or q.paused then
    return v_ids;
  end if;
  if q.concurrency is not null then
    select count(*) into v_running from trellis.runs r where r.status = 'running' and r.queue = p_queue;
    v_left := least(v_left, q.concurrency - v_running);
  end if;
  if q.rate_limit is not null then
    v_window := to_timestamp(floor(extract(epoch from p_now) / extract(epoch from q.rate_period))
                             * extract(epoch from q.rate_period));
    if q.rate_window is distinct from v_window then
      q.rate_window := v_window;
      q.rate_count := 0;
    end if;
    v_left := least(v_left, q.rate_limit - q.rate_count);
  end if;
  v_pos := q.cursor_key;
  while v_left > 0 and v_visits < 1000 loop
    if v_new_pass then
      -- The group of runs without a key, once per pass.
      v_new_pass := false;
      v_first := null;
      v_got := array(
        select c.id from unnest(p_workflows, p_versions) as s(w, v)
         cross join lateral (
           select r.id, r.priority, r.run_at from trellis.runs r
            where r.status = 'pending' and r.queue = p_queue and r.workflow = s.w and r.version = s.v
              and r.run_at <= p_now and r.concurrency_key is null and r.id <> all (v_ids)
            order by r.priority desc, r.run_at
            limit v_take
            for update skip locked) c
         order by c.priority desc, c.run_at
         limit v_take);
      if cardinality(v_got) > 0 then
        v_ids := v_ids || v_got;
        v_keys := v_keys || array_fill(null::text, array[cardinality(v_got)]);
        v_left := v_left - cardinality(v_got);
        v_passgot := v_passgot + cardinality(v_got);
        v_groups := v_groups + 1;
      end if;
      continue;
    end if;
    v_visits := v_visits + 1;
    -- The next key after v_pos (wrapping to the first).
    select min(r.concurrency_key) into v_key from trellis.runs r
     where r.status = 'pending' and r.queue = p_queue and r.concurrency_key is not null
       and (v_pos is null or r.concurrency_key > v_pos);
    if v_key is null and v_pos is not null then
      select min(r.concurrency_key) into v_key from trellis.runs r
       where r.status = 'pending' and r.queue = p_queue and r.concurrency_key is not null;
    end if;
    if v_key is null or v_key = v_first then
      -- Around once (or no keys at all): the pass is over.
      exit when v_passgot = 0;
      v_take := greatest(1, v_left / greatest(v_groups, 1));
      v_passgot := 0;
      v_groups := 0;
      v_new_pass := true;
      continue;
    end if;
    v_first := coalesce(v_first, v_key);
    v_pos := v_key;
    v_cap := v_take;
    if q.key_concurrency is not null then
      select count(*) into v_running from trellis.runs r
       where r.status = 'running' and r.queue = p_queue and r.concurrency_key = v_key;
      v_cap := least(v_cap, q.key_concurrency - v_running - coalesce(cardinality(array_positions(v_keys, v_key)), 0));
    end if;
    v_cap := least(v_cap, v_left);
    continue when v_cap <= 0;
    v_got := array(
      select r.id from trellis.runs r
       where r.status = 'pending' and r.queue = p_queue and r.concurrency_key = v_key and r.run_at <= p_now
         and (r.workflow, r.version) in (select * from unnest(p_workflows, p_versions))
         and r.id <> all (v_ids)
       order by r.priority desc, r.run_at
       limit v_cap
       for update skip locked);
    if cardinality(v_got) > 0 then
      v_ids := v_ids || v_got;
      v_keys := v_keys || array_fill(v_key, array[cardinality(v_got)]);
      v_left := v_left - cardinality(v_got);
      v_passgot := v_passgot + cardinality(v_got);
      v_groups := v_groups + 1;
    end if;
  end loop;
  update trellis.queues set rate_window = q.rate_window,
         rate_count = q.rate_count + cardinality(v_ids), cursor_key = v_pos
   where name = p_queue;
  return v_ids;
end $$;
comment on function trellis._queue_pick(text, text[], text[], integer, timestamptz) is
  'For run_claim: under the queue row''s lock, the ids of up to p_limit due pending runs of the served pairs that the queue''s flow control allows now (paused, concurrency, rate window, key_concurrency), rotating across concurrency keys from the row''s cursor; locked FOR UPDATE SKIP LOCKED, counted in the rate window. The caller moves them to running.';

-- Per queue: every queue with a row or a registered workflow.
create or replace view trellis.queue_stats as
select n.name as queue,
       coalesce(q.paused, false) as paused,
       (select count(*) from trellis.runs r where r.status = 'pending' and r.queue = n.name) as pending,
       (select count(*) from trellis.runs r where r.status = 'pending' and r.queue = n.name
           and r.run_at <= trellis.now()) as due,
       (select count(*) from trellis.runs r where r.status = 'running' and r.queue = n.name) as running,
       (select count(*) from trellis.runs r where r.status = 'waiting' and r.queue = n.name) as waiting,
       (select count(*) from trellis.runs r where r.status = 'paused' and r.queue = n.name) as paused_runs,
       (select trellis.now() - min(r.run_at) from trellis.runs r where r.status = 'pending' and r.queue = n.name
           and r.run_at <= trellis.now()) as lag,
       (select count(*) from trellis.runs r where r.finished_at > trellis.now() - interval '1 minute'
           and r.queue = n.name) as finished_last_minute,
       q.concurrency,
       q.key_concurrency,
       (select max(k.n) from (select count(*) as n from trellis.runs r where r.status = 'running'
           and r.queue = n.name and r.concurrency_key is not null group by r.concurrency_key) k) as key_running_max,
       q.rate_limit,
       q.rate_period,
       case when q.rate_window is not null and q.rate_window + q.rate_period > trellis.now()
            then q.rate_count else 0 end as rate_used,
       coalesce(q.fair, false) as fair
  from (select name from trellis.queues union select queue from trellis.workflows) n
  left join trellis.queues q on q.name = n.name;
comment on view trellis.queue_stats is
  'Per queue (every queue with a row in trellis.queues or a registered workflow): pending, due, running, waiting and paused runs, lag (how long the oldest due pending run has waited), runs finished in the last minute, the limits and their use (running against concurrency, the busiest key''s running runs against key_concurrency, the current rate window''s claims against rate_limit).';

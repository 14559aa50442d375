-- 230_queue_claim: the claim of a queue with flow control, and queue stats.
-- Owns: _queue_pick (called by run_claim for a queue whose row has flow
-- control), the view queue_stats.
-- Touches: trellis.queues (update of the rate window and rotation cursor),
-- trellis.runs (read; picked runs locked FOR UPDATE SKIP LOCKED).
-- Lock order: the queue row (FOR UPDATE), then runs rows (SKIP LOCKED); the
-- caller (run_claim) moves the picked runs to running in the same transaction.
-- On a distributed schema runs are read without a lock and locked one bucket
-- at a time (_lock_due, sql/160_buckets.sql), keys are read with select
-- distinct (no recursive query over distributed tables) and picked key by key.
--
-- The pick, under the queue row's lock:
-- 1. paused: nothing.
-- 2. room = the claim's limit, at most concurrency minus the queue's running
--    runs, at most rate_limit minus the claims of the current rate window
--    (fixed windows of rate_period aligned to the epoch; a claim whose
--    transaction began in a window older than the row's gets no room).
-- 3. Rotation, in passes. A pass takes the next keys in key order after the
--    row's cursor, wrapping around (at most room keys, found by one loose
--    scan of runs_key_claim_idx), and takes from each key up to its share:
--    one run in the first pass, then room / keys served in the pass before
--    (at least one), so a key with 10,000 pending runs and one with 10 are
--    served alike, and a queue with one key is not taken one run per pass.
--    Runs without a key are one more group, probed first in each pass
--    through runs_claim_idx (reading at most 200 entries of it past the
--    keyed runs there, so a queue of keyed runs pays little for the probe).
--    When the passes leave room, the queue has key_concurrency and no pass
--    found a run without a key, those runs may sit behind more than 200
--    keyed runs whose keys are held: the claim reads on, 1,000 entries of
--    runs_claim_idx per served pair, from the place the queue's row keeps
--    (keyless_priority, keyless_run_at; the front when null), and takes the
--    runs without a key it meets. The place moves past a page only when the
--    page gave none (a page's runs left for want of room are read again),
--    and back to the front once every pair's page came back short, so every
--    due run without a key is reached within a few claims whatever the
--    backlog of held keys. (A page starts at its place's own claim position
--    again, so runs that share it are read again; a page that ends where it
--    began moves past that position: only a run past more than 1,000 held
--    runs that all share one position with it, such as runs started by one
--    statement, waits for the keys to free or the next round from the front.)
--    Keys are 1-200 characters, so '' sorts before every key.
--    Within a key, runs go by priority then due time. A key at
--    key_concurrency (its running runs plus those picked here) gets no
--    share (the cursor still moves past it). At most 50 passes per claim.
-- Each pass is a few set-based statements whatever the number of keys.

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
  v_gotkeys text[];
  v_pass    text[];
  v_caps    integer[];
  v_take    integer := 1;
  v_groups  integer;
  v_passes  integer := 0;
  v_idle    text;
  -- On a distributed schema (sql/160_buckets.sql) runs are read without a
  -- lock and then locked one bucket at a time.
  v_dist    boolean := trellis._distributed();
  v_pairs   text[] := array(select s.w || pg_catalog.chr(31) || s.v from unnest(p_workflows, p_versions) as s(w, v));
  v_key     text;
  v_cap     integer;
  v_one     uuid[];
  -- The read past held keys (above): whether a pass found a run without a
  -- key, and per served pair its page.
  v_keyless boolean := false;
  v_w       text;
  v_v       text;
  v_page    uuid[];
  v_read    integer;
  v_lp      integer;
  v_lt      timestamptz;
  v_full    boolean;
  v_np      integer;
  v_nt      timestamptz;
  -- The row as read: a claim that leases nothing and moves nothing writes
  -- no new version of it.
  v_was     trellis.queues;
begin
  select * into q from trellis.queues where name = p_queue for update;
  if not found or q.paused then
    return v_ids;
  end if;
  v_was := q;
  if q.concurrency is not null then
    select count(*) into v_running from trellis.runs r where r.status = 'running' and r.queue = p_queue;
    v_left := least(v_left, q.concurrency - v_running);
  end if;
  if q.rate_limit is not null then
    v_window := to_timestamp(floor(extract(epoch from p_now) / extract(epoch from q.rate_period))
                             * extract(epoch from q.rate_period));
    -- The row holds the count of one window, the newest a claim opened.
    -- Transaction times do not follow the order the row's lock is granted
    -- in: a claim whose transaction began before a window that a claim
    -- holding the lock before it opened is stale, and claims nothing (its
    -- worker looks again with a fresh time). Opening its older window again
    -- would count from zero a window whose runs were already claimed. A
    -- window ahead of the engine's clock (the server's clock was set back)
    -- is left for the current one.
    if q.rate_window is null or v_window > q.rate_window
       or q.rate_window > p_now + (pg_catalog.clock_timestamp() - pg_catalog.now()) then
      q.rate_window := v_window;
      q.rate_count := 0;
    elsif v_window < q.rate_window then
      v_left := 0;
    end if;
    v_left := least(v_left, q.rate_limit - q.rate_count);
  end if;
  while v_left > 0 and v_passes < 50 loop
    v_passes := v_passes + 1;
    v_groups := 0;
    -- The group of runs without a key.
    -- Candidates in claim order from runs_claim_idx, each locked only if
    -- it has no key, in that order, until v_take are locked (no sort
    -- between the scan and the lock, so no run past those is locked).
    if v_dist then
      -- Read without a lock, then locked one bucket at a time (sql/160_buckets.sql).
      select coalesce(array_agg(x.id order by x.priority desc, x.run_at), '{}') into v_got
        from (select r.id, r.priority, r.run_at from trellis.runs r
               where r.status = 'pending' and r.queue = p_queue and r.concurrency_key is null
                 and r.workflow || pg_catalog.chr(31) || r.version = any (v_pairs)
                 and r.run_at <= p_now and r.id <> all (v_ids)
               order by r.priority desc, r.run_at
               limit least(v_take, v_left)) x;
      v_got := trellis._lock_due(v_got, 'pending', p_now);
    else
      v_got := array(
        select c.id from unnest(p_workflows, p_versions) as s(w, v)
         cross join lateral (
           select l.id, l.priority, l.run_at
             from (select p.id from trellis.runs p
                    where p.status = 'pending' and p.queue = p_queue and p.workflow = s.w and p.version = s.v
                      and p.run_at <= p_now
                    order by p.priority desc, p.run_at
                    limit 200 + v_take) cand
            cross join lateral (
              select r.id, r.priority, r.run_at from trellis.runs r
               where r.id = cand.id and r.status = 'pending' and r.concurrency_key is null and r.id <> all (v_ids)
               for update skip locked) l
            limit v_take) c
         order by c.priority desc, c.run_at
         limit least(v_take, v_left));
    end if;
    if cardinality(v_got) > 0 then
      v_ids := v_ids || v_got;
      v_keys := v_keys || array_fill(null::text, array[cardinality(v_got)]);
      v_left := v_left - cardinality(v_got);
      v_groups := 1;
      v_keyless := true;
    end if;
    exit when v_left <= 0;
    -- The keys of this pass: up to v_left after the cursor, then from the
    -- first key on (not past the cursor) if there are fewer.
    if v_dist then
      -- (A distributed planner runs no recursive query over distributed
      -- tables: the distinct keys of the queue's pending runs instead.)
      select coalesce(array_agg(x.key order by x.key), '{}') into v_pass
        from (select distinct r.concurrency_key as key from trellis.runs r
               where r.status = 'pending' and r.queue = p_queue
                 and r.concurrency_key > coalesce(q.cursor_key, '')
               order by 1 limit v_left) x;
      if cardinality(v_pass) < v_left and q.cursor_key is not null then
        select v_pass || coalesce(array_agg(x.key order by x.key), '{}') into v_pass
          from (select distinct r.concurrency_key as key from trellis.runs r
                 where r.status = 'pending' and r.queue = p_queue and r.concurrency_key <= q.cursor_key
                 order by 1 limit v_left - cardinality(v_pass)) x;
      end if;
    else
      v_pass := array(
        with recursive k(key) as (
          (select min(r.concurrency_key) from trellis.runs r
            where r.status = 'pending' and r.queue = p_queue
              and r.concurrency_key > coalesce(q.cursor_key, ''))
          union all
          select (select min(r.concurrency_key) from trellis.runs r
                   where r.status = 'pending' and r.queue = p_queue and r.concurrency_key > k.key)
            from k where k.key is not null)
        select k.key from k where k.key is not null limit v_left);
      if cardinality(v_pass) < v_left and q.cursor_key is not null then
        v_pass := v_pass || array(
          with recursive k(key) as (
            (select min(r.concurrency_key) from trellis.runs r
              where r.status = 'pending' and r.queue = p_queue and r.concurrency_key is not null)
            union all
            select (select min(r.concurrency_key) from trellis.runs r
                     where r.status = 'pending' and r.queue = p_queue and r.concurrency_key > k.key)
              from k where k.key is not null and k.key < q.cursor_key)
          select k.key from k where k.key is not null and k.key <= q.cursor_key
           limit v_left - cardinality(v_pass));
      end if;
    end if;
    if v_dist then
      -- Each key's share (v_take, less what key_concurrency leaves it),
      -- then its runs read without a lock, key by key, and locked one
      -- bucket at a time (sql/160_buckets.sql).
      v_caps := array_fill(v_take, array[cardinality(v_pass)]);
      if q.key_concurrency is not null then
        select coalesce(array_agg(greatest(0, least(v_take, q.key_concurrency - coalesce(n.running, 0)::integer
                 - coalesce(cardinality(array_positions(v_keys, k.key)), 0))) order by k.ord), '{}')
          into v_caps
          from unnest(v_pass) with ordinality as k(key, ord)
          left join (select r.concurrency_key as key, count(*) as running from trellis.runs r
                      where r.status = 'running' and r.queue = p_queue and r.concurrency_key = any (v_pass)
                      group by r.concurrency_key) n on n.key = k.key;
      end if;
      v_got := '{}';
      v_gotkeys := '{}';
      for v_key, v_cap in select k.key, k.cap from unnest(v_pass, v_caps) with ordinality as k(key, cap, ord)
                           where k.cap > 0 order by k.ord loop
        exit when cardinality(v_got) >= v_left;
        select coalesce(array_agg(x.id order by x.priority desc, x.run_at), '{}') into v_one
          from (select r.id, r.priority, r.run_at from trellis.runs r
                 where r.status = 'pending' and r.queue = p_queue and r.concurrency_key = v_key
                   and r.run_at <= p_now and r.id <> all (v_ids)
                   and r.workflow || pg_catalog.chr(31) || r.version = any (v_pairs)
                 order by r.priority desc, r.run_at
                 limit least(v_cap, v_left - cardinality(v_got))) x;
        v_one := trellis._lock_due(v_one, 'pending', p_now);
        v_got := v_got || v_one;
        v_gotkeys := v_gotkeys || array_fill(v_key, array[cardinality(v_one)]);
      end loop;
    else
      -- Each key's share: v_take, less what key_concurrency leaves it.
      if q.key_concurrency is null then
        v_caps := array_fill(v_take, array[cardinality(v_pass)]);
      else
        v_caps := array(
          select greatest(0, least(v_take, q.key_concurrency
                   - (select count(*) from trellis.runs r
                       where r.status = 'running' and r.queue = p_queue and r.concurrency_key = k.key)::integer
                   - coalesce(cardinality(array_positions(v_keys, k.key)), 0)))
            from unnest(v_pass) with ordinality as k(key, ord) order by k.ord);
      end if;
      select coalesce(array_agg(c.id order by c.ord, c.priority desc, c.run_at), '{}'),
             coalesce(array_agg(c.key order by c.ord, c.priority desc, c.run_at), '{}')
        into v_got, v_gotkeys
        from (select x.id, x.key, x.ord, x.priority, x.run_at from (
                select k.ord, k.key, c.id, c.priority, c.run_at
                  from unnest(v_pass, v_caps) with ordinality as k(key, cap, ord)
                 cross join lateral (
                   select r.id, r.priority, r.run_at from trellis.runs r
                    where r.status = 'pending' and r.queue = p_queue and r.concurrency_key = k.key
                      and r.run_at <= p_now and r.id <> all (v_ids)
                      and (r.workflow, r.version) in (select * from unnest(p_workflows, p_versions))
                    order by r.priority desc, r.run_at
                    limit k.cap
                    for update skip locked) c
                 where k.cap > 0) x
              order by x.ord, x.priority desc, x.run_at
              limit v_left) c;
    end if;
    -- The cursor: past every key of the pass (served or at its limit),
    -- unless the room ran out first, then at the last key served.
    if cardinality(v_got) >= v_left then
      q.cursor_key := v_gotkeys[cardinality(v_gotkeys)];
    elsif cardinality(v_pass) > 0 then
      q.cursor_key := v_pass[cardinality(v_pass)];
    end if;
    if cardinality(v_got) > 0 then
      v_ids := v_ids || v_got;
      v_keys := v_keys || v_gotkeys;
      v_groups := v_groups + (select count(distinct g) from unnest(v_gotkeys) g)::integer;
    end if;
    -- Nothing served: done if the pass saw every key, or if an earlier
    -- pass that served nothing started at a key this one saw (around once
    -- with every key at its limit); else the next pass goes on after them.
    if v_groups = 0 then
      exit when cardinality(v_pass) < v_left;
      if v_idle is null then
        v_idle := v_pass[1];
      elsif v_idle = any (v_pass) then
        exit;
      end if;
    else
      v_idle := null;
    end if;
    v_left := v_left - cardinality(v_got);
    v_take := greatest(1, v_left / greatest(v_groups, 1));
  end loop;
  -- Runs without a key behind more than 200 held keyed runs (above).
  if v_left > 0 and not v_keyless and not v_dist and q.key_concurrency is not null then
    v_full := false;
    v_np := null;
    v_nt := null;
    v_got := '{}';
    for v_w, v_v in select s.w, s.v from unnest(p_workflows, p_versions) as s(w, v) loop
      -- The page: the place's own priority first (from its due time on),
      -- then the lower priorities (every priority from the front), each in
      -- index order; Append reads the branches in turn, so the page keeps
      -- claim order. (Priorities are at most 32767.)
      select coalesce(array_agg(x.id order by x.n) filter (where x.keyless), '{}'), count(*)::integer,
             (array_agg(x.priority order by x.n desc))[1], (array_agg(x.run_at order by x.n desc))[1]
        into v_page, v_read, v_lp, v_lt
        from (select p.id, p.priority, p.run_at, p.keyless, row_number() over () as n
                from ((select r.id, r.priority, r.run_at, r.concurrency_key is null as keyless from trellis.runs r
                        where r.status = 'pending' and r.queue = p_queue and r.workflow = v_w and r.version = v_v
                          and q.keyless_priority is not null
                          and r.priority = q.keyless_priority and r.run_at >= q.keyless_run_at and r.run_at <= p_now
                        order by r.run_at limit 1000)
                      union all
                      (select r.id, r.priority, r.run_at, r.concurrency_key is null from trellis.runs r
                        where r.status = 'pending' and r.queue = p_queue and r.workflow = v_w and r.version = v_v
                          and r.priority < coalesce(q.keyless_priority, 2147483647) and r.run_at <= p_now
                        order by r.priority desc, r.run_at limit 1000)
                      limit 1000) p) x;
      if v_read >= 1000 then
        v_full := true;
        -- The place for the next claim: the earliest page end in claim order.
        if v_np is null or v_lp > v_np or (v_lp = v_np and v_lt < v_nt) then
          v_np := v_lp;
          v_nt := v_lt;
        end if;
      end if;
      if cardinality(v_page) > 0 and cardinality(v_got) < v_left then
        v_got := v_got || array(
          select r.id from trellis.runs r
           where r.id = any (v_page) and r.status = 'pending' and r.concurrency_key is null
             and r.run_at <= p_now and r.id <> all (v_ids) and r.id <> all (v_got)
           order by r.priority desc, r.run_at
           limit v_left - cardinality(v_got)
           for update skip locked);
      end if;
    end loop;
    if cardinality(v_got) > 0 then
      v_ids := v_ids || v_got;
      v_left := v_left - cardinality(v_got);
    elsif v_full then
      -- A page that ends where it began (more than 1,000 runs share that
      -- position) moves on past the position.
      if v_np = q.keyless_priority and v_nt = q.keyless_run_at then
        v_nt := v_nt + interval '1 microsecond';
      end if;
      q.keyless_priority := v_np;
      q.keyless_run_at := v_nt;
    else
      q.keyless_priority := null;
      q.keyless_run_at := null;
    end if;
  end if;
  if cardinality(v_ids) > 0
     or (q.rate_window, q.rate_count, q.cursor_key, q.keyless_priority, q.keyless_run_at)
        is distinct from (v_was.rate_window, v_was.rate_count, v_was.cursor_key, v_was.keyless_priority, v_was.keyless_run_at) then
    update trellis.queues set rate_window = q.rate_window,
           rate_count = q.rate_count + cardinality(v_ids), cursor_key = q.cursor_key,
           keyless_priority = q.keyless_priority, keyless_run_at = q.keyless_run_at
     where name = p_queue;
  end if;
  return v_ids;
end $$;
comment on function trellis._queue_pick(text, text[], text[], integer, timestamptz) is
  'For run_claim: under the queue row''s lock, the ids of up to p_limit due pending runs of the served pairs that the queue''s flow control allows now (paused, concurrency, rate window, key_concurrency), rotating across concurrency keys from the row''s cursor; locked FOR UPDATE SKIP LOCKED, counted in the rate window. The caller moves them to running.';

-- Per queue: every queue with a row or a registered workflow. Two forms of
-- one view, the same columns: on one node, a count per queue and state
-- through the partial indexes (correlated subqueries); on a distributed
-- schema (sql/160_buckets.sql), where Citus refuses those ("complex joins
-- are only supported when all distributed tables are co-located"), the
-- live runs grouped by queue once. citus_distribute switches to the second.
create or replace function trellis._queue_stats_view(p_distributed boolean)
returns void language plpgsql as $f$
declare
  -- The columns both forms end with (the queue's row and its limits).
  v_tail text := $t$
       q.concurrency,
       q.key_concurrency,
       %s as key_running_max,
       q.rate_limit,
       q.rate_period,
       case when q.rate_window is not null and q.rate_window + q.rate_period > %s
            then q.rate_count else 0 end as rate_used,
       coalesce(q.fair, false) as fair
  from (select name from trellis.queues union select queue from trellis.workflows) n
  left join trellis.queues q on q.name = n.name$t$;
begin
  if not p_distributed then
    execute $v$create or replace view trellis.queue_stats as
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
           and r.queue = n.name) as finished_last_minute,$v$
      || format(v_tail, $k$(select max(k.n) from (select count(*) as n from trellis.runs r where r.status = 'running'
           and r.queue = n.name and r.concurrency_key is not null group by r.concurrency_key) k)$k$, 'trellis.now()');
  else
    execute $v$create or replace view trellis.queue_stats as
with engine_time as materialized (
  -- The engine time read once, on the coordinator: the test kit's clock
  -- reads a reference table, which a query Citus pushes to the shards may
  -- not ("cannot execute a distributed query from a query on a shard").
  select trellis.now() as t),
live as (
  select r.queue,
         count(*) filter (where r.status = 'pending') as pending,
         count(*) filter (where r.status = 'pending' and r.run_at <= c.t) as due,
         count(*) filter (where r.status = 'running') as running,
         count(*) filter (where r.status = 'waiting') as waiting,
         count(*) filter (where r.status = 'paused') as paused_runs,
         min(r.run_at) filter (where r.status = 'pending' and r.run_at <= c.t) as oldest_due
    from trellis.runs r cross join engine_time c
   where r.status in ('pending', 'running', 'waiting', 'paused')
   group by r.queue),
finished as (
  select r.queue, count(*) as n from trellis.runs r cross join engine_time c
   where r.finished_at > c.t - interval '1 minute'
   group by r.queue),
keys as (
  select k.queue, max(k.n) as n
    from (select r.queue, count(*) as n from trellis.runs r
           where r.status = 'running' and r.concurrency_key is not null
           group by r.queue, r.concurrency_key) k
   group by k.queue)
select n.name as queue,
       coalesce(q.paused, false) as paused,
       coalesce((select l.pending from live l where l.queue = n.name), 0) as pending,
       coalesce((select l.due from live l where l.queue = n.name), 0) as due,
       coalesce((select l.running from live l where l.queue = n.name), 0) as running,
       coalesce((select l.waiting from live l where l.queue = n.name), 0) as waiting,
       coalesce((select l.paused_runs from live l where l.queue = n.name), 0) as paused_runs,
       (select c.t - l.oldest_due from live l cross join engine_time c where l.queue = n.name) as lag,
       coalesce((select f.n from finished f where f.queue = n.name), 0) as finished_last_minute,$v$
      || format(v_tail, '(select k.n from keys k where k.queue = n.name)', '(select c.t from engine_time c)');
  end if;
end $f$;
comment on function trellis._queue_stats_view(boolean) is
  'Create trellis.queue_stats in its one-node form, or (p_distributed) in the form a Citus cluster can plan: the same columns either way.';

select trellis._queue_stats_view(trellis._distributed());
comment on view trellis.queue_stats is
  'Per queue (every queue with a row in trellis.queues or a registered workflow): pending, due, running, waiting and paused runs, lag (how long the oldest due pending run has waited), runs finished in the last minute, the limits and their use (running against concurrency, the busiest key''s running runs against key_concurrency, the current rate window''s claims against rate_limit).';

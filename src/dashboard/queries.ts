/**
 * The dashboard's reads: plain SELECTs over the documented read contract
 * (trellis.runs, steps, signals, workflows; docs/sql-api.md), so a role with
 * SELECT on those tables is all the dashboard needs to show everything. Time
 * comes from trellis.now(), like every engine read. No writes here.
 */
import { decodeCursor, encodeCursor } from '../client/cursor.ts';
import { UUID_PATTERN as UUID } from '../workflow/names.ts';
import { type Queryable, queryRows } from '../db/queryable.ts';
import { RUN_COLUMNS, RUN_STATES, type RunState } from '../db/tables.ts';
import { ValidationError } from '../errors.ts';
import { parseExactJson } from '../protocol/serialize.ts';

/** Row of the runs list. */
export interface RunRow {
  id: string;
  workflow: string;
  version: string;
  key: string | null;
  queue: string;
  status: RunState;
  attempt: number;
  metadata: Record<string, unknown>;
  error: { name?: string | undefined; message?: string | undefined } | null;
  created_at: Date;
  finished_at: Date | null;
  created_at_text: string;
}

export interface RunSearch {
  workflow?: string | undefined;
  status?: string | undefined;
  /** Key prefix, or a whole run id. */
  key?: string | undefined;
  /** `name=value` pairs separated by commas, or a JSON object the metadata contains. */
  metadata?: string | undefined;
  cursor?: string | undefined;
  limit?: number | undefined;
}

const MAX_TEXT = 512;

function bounded(text: string, what: string): string {
  if (text.length > MAX_TEXT) throw new ValidationError(`${what} is longer than ${MAX_TEXT} characters`);
  return text;
}

/** Parse the metadata search into SQL conditions on `metadata`. */
function metadataConditions(text: string, values: unknown[]): string[] {
  const trimmed = bounded(text.trim(), 'metadata search');
  if (trimmed.startsWith('{')) {
    let parsed: unknown;
    try {
      parsed = parseExactJson(trimmed);
    } catch (error) {
      throw new ValidationError(`metadata search ${JSON.stringify(trimmed.slice(0, 40))} is not a JSON object JavaScript reads exactly: ${(error as Error).message.slice(0, 120)}`);
    }
    if (typeof parsed !== 'object' || parsed === null || Array.isArray(parsed)) throw new ValidationError('metadata search must be a JSON object');
    values.push(JSON.stringify(parsed));
    return [`r.metadata @> $${values.length}::jsonb`];
  }
  return trimmed.split(',').map((pair) => pair.trim()).filter(Boolean).map((pair) => {
    const eq = pair.indexOf('=');
    if (eq <= 0) throw new ValidationError(`metadata search ${JSON.stringify(pair.slice(0, 40))} is not name=value`);
    values.push(pair.slice(0, eq).trim(), pair.slice(eq + 1).trim());
    return `r.metadata ->> $${values.length - 1}::text = $${values.length}::text`;
  });
}

/**
 * A page of runs, newest first, with the cursor of the next page.
 *
 * @example
 * const { runs, next } = await searchRuns(pool, { workflow: 'signup', metadata: 'plan=pro', limit: 20 });
 */
export async function searchRuns(db: Queryable, search: RunSearch): Promise<{ runs: RunRow[]; next: string | undefined }> {
  const where: string[] = [];
  const values: unknown[] = [];
  if (search.workflow) {
    values.push(bounded(search.workflow, 'workflow'));
    where.push(`r.workflow = $${values.length}`);
  }
  if (search.status) {
    if (!RUN_STATES.includes(search.status as RunState)) throw new ValidationError(`unknown run status ${JSON.stringify(search.status.slice(0, 40))}`);
    values.push(search.status);
    where.push(`r.status = $${values.length}`);
  }
  if (search.key) {
    const key = bounded(search.key.trim(), 'key');
    values.push(`${key.replace(/[\\%_]/g, (c) => `\\${c}`)}%`);
    const byKey = `r.key like $${values.length}`;
    if (UUID.test(key)) {
      values.push(key);
      where.push(`(${byKey} or r.id = $${values.length}::uuid)`);
    } else {
      where.push(byKey);
    }
  }
  if (search.metadata) where.push(...metadataConditions(search.metadata, values));
  if (search.cursor) {
    const c = decodeCursor(search.cursor);
    values.push(c.createdAt, c.id);
    where.push(`(r.created_at, r.id) < ($${values.length - 1}::timestamptz, $${values.length}::uuid)`);
  }
  const limit = search.limit ?? 50;
  values.push(limit + 1);
  const rows = await queryRows<RunRow>(db, `
    select r.id, r.workflow, r.version, r.key, r.queue, r.status, r.attempt, r.metadata, r.error,
           r.created_at, r.finished_at, r.created_at::text as created_at_text
      from trellis.runs r
     ${where.length ? `where ${where.join(' and ')}` : ''}
     order by r.created_at desc, r.id desc
     limit $${values.length}`, values);
  const runs = rows.slice(0, limit);
  const last = runs.at(-1);
  return { runs, next: rows.length > limit && last ? encodeCursor(last.created_at_text, last.id) : undefined };
}

/** Workflow names known to the registry, for the filter. */
export async function workflowNames(db: Queryable): Promise<string[]> {
  const rows = await queryRows<{ name: string }>(db, 'select distinct name from trellis.workflows order by name limit 500');
  return rows.map((r) => r.name);
}

/** One bucket of the overview charts. */
export interface Bucket {
  /** When the bucket ends. */
  end: Date;
  completed: number;
  failed: number;
  cancelled: number;
  /** Start-to-finish time of the runs that finished in it, in ms (null: none finished). */
  p50: number | null;
  p95: number | null;
}

/**
 * Runs finished per bucket over the last `rangeSeconds` (as of trellis.now()), with latency percentiles.
 *
 * @example
 * const { buckets } = await throughput(pool, 3600, 60); // the last hour, per minute
 */
export async function throughput(db: Queryable, rangeSeconds: number, buckets: number): Promise<{ now: Date; buckets: Bucket[] }> {
  const width = rangeSeconds / buckets;
  const rows = await queryRows<{ i: number; completed: number; failed: number; cancelled: number; p50: number | null; p95: number | null }>(db, `
    with s as (select trellis.now() as now, trellis.now() - pg_catalog.make_interval(secs => $1) as start)
    select least(pg_catalog.floor(extract(epoch from r.finished_at - s.start) / $2)::int, $3 - 1) as i,
           pg_catalog.count(*) filter (where r.status = 'completed')::int as completed,
           pg_catalog.count(*) filter (where r.status = 'failed')::int as failed,
           pg_catalog.count(*) filter (where r.status = 'cancelled')::int as cancelled,
           pg_catalog.percentile_cont(0.5) within group (order by extract(epoch from r.finished_at - r.created_at) * 1000) as p50,
           pg_catalog.percentile_cont(0.95) within group (order by extract(epoch from r.finished_at - r.created_at) * 1000) as p95
      from trellis.runs r, s
     where r.finished_at > s.start and r.finished_at <= s.now
     group by 1`, [rangeSeconds, width, buckets]);
  const [clock] = await queryRows<{ now: Date }>(db, 'select trellis.now() as now');
  const now = clock!.now;
  const out: Bucket[] = [];
  for (let i = 0; i < buckets; i++) {
    out.push({ end: new Date(now.getTime() - (buckets - 1 - i) * width * 1000), completed: 0, failed: 0, cancelled: 0, p50: null, p95: null });
  }
  for (const r of rows) {
    const b = out[r.i];
    if (b) Object.assign(b, { completed: r.completed, failed: r.failed, cancelled: r.cancelled, p50: r.p50, p95: r.p95 });
  }
  return { now, buckets: out };
}

/** How many runs are in each status. */
export async function statusCounts(db: Queryable): Promise<Record<RunState, number>> {
  const rows = await queryRows<{ status: RunState; n: number }>(db, 'select status, pg_catalog.count(*)::int as n from trellis.runs group by status');
  const counts = Object.fromEntries(RUN_STATES.map((s) => [s, 0])) as Record<RunState, number>;
  for (const r of rows) counts[r.status] = r.n;
  return counts;
}

/**
 * The shortest retention in force (the default or a workflow's own), in
 * ms, or null when none is set: finished runs older than it may have been
 * purged, so counts and charts over a longer range miss them.
 */
export async function shortestRetentionMs(db: Queryable): Promise<number | null> {
  // The default read from trellis.settings as trellis.retention() reads it:
  // a reader login (trellis_reader, a read-only dashboard) may not call that function.
  const rows = await queryRows<{ ms: number | null }>(db, `
    select (extract(epoch from least(
              (select (s.value #>> '{}'::text[])::interval from trellis.settings s where s.key = 'retention'),
              (select pg_catalog.min(r.keep) from trellis.retentions r))) * 1000)::float8 as ms`);
  return rows[0]?.ms ?? null;
}

/** Per queue: due and scheduled pending runs, running runs, and the age of the oldest due run. */
export interface QueueDepth {
  queue: string;
  due: number;
  scheduled: number;
  running: number;
  oldest_due_ms: number | null;
}

export async function queueDepths(db: Queryable): Promise<QueueDepth[]> {
  return queryRows<QueueDepth>(db, `
    select r.queue,
           pg_catalog.count(*) filter (where r.status = 'pending' and r.run_at <= n.now)::int as due,
           pg_catalog.count(*) filter (where r.status = 'pending' and r.run_at > n.now)::int as scheduled,
           pg_catalog.count(*) filter (where r.status = 'running')::int as running,
           (extract(epoch from n.now - pg_catalog.min(r.run_at) filter (where r.status = 'pending' and r.run_at <= n.now)) * 1000)::float8 as oldest_due_ms
      from trellis.runs r, (select trellis.now() as now) n
     where r.status in ('pending', 'running')
     group by r.queue, n.now order by r.queue limit 200`);
}

/** The most recently failed runs. */
export async function recentFailures(db: Queryable, limit = 10): Promise<RunRow[]> {
  return queryRows<RunRow>(db, `
    select r.id, r.workflow, r.version, r.key, r.queue, r.status, r.attempt, r.metadata, r.error,
           r.created_at, r.finished_at, r.created_at::text as created_at_text
      from trellis.runs r where r.finished_at is not null and r.status = 'failed'
     order by r.finished_at desc limit $1`, [limit]);
}

/** The id if it is a UUID, else a ValidationError (quoting at most 40 characters). */
export function assertUuid(id: string): string {
  if (!UUID.test(id)) throw new ValidationError(`run id ${JSON.stringify(id.slice(0, 40))} is not a UUID`);
  return id;
}

/** A signal row of a run. */
export interface SignalRow {
  id: string;
  name: string;
  payload: unknown;
  signal_id: string | null;
  created_at: Date;
  consumed_at: Date | null;
  consumed_seq: number | null;
  /** A request's answer (decision 0044): `{ value }` or `{ error }`; null while unanswered or not a request. */
  reply: { value?: unknown; error?: { message?: string; code?: string } } | null;
  replied_at: Date | null;
}

/**
 * Rows of a run's list, the newest `limit` of them in order, and how many
 * there are in all (`total` is counted only when some are left out).
 */
export interface Listed<T> {
  rows: T[];
  total: number;
}

/** The newest `limit` rows of `newestFirst` (its query orders newest first and takes limit + 1), oldest first; counts all if there are more. */
async function newest<T>(db: Queryable, newestFirst: string, count: string, runId: string, limit: number): Promise<Listed<T>> {
  const rows = await queryRows<T>(db, `${newestFirst} limit ${limit + 1}`, [runId]);
  if (rows.length <= limit) return { rows: rows.reverse(), total: rows.length };
  const [{ n }] = await queryRows<{ n: number }>(db, count, [runId]) as [{ n: number }];
  return { rows: rows.slice(0, limit).reverse(), total: Number(n) };
}

/**
 * A run's signals in the order they were sent (the newest 500).
 *
 * @example
 * const buffered = (await runSignals(pool, id)).rows.filter((s) => s.consumed_at === null);
 */
export async function runSignals(db: Queryable, runId: string, limit = 500): Promise<Listed<SignalRow>> {
  return newest<SignalRow>(db, `
    select id::text, name, payload, signal_id, created_at, consumed_at, consumed_seq, reply, replied_at
      from trellis.signals where run_id = $1 order by id desc`,
  'select pg_catalog.count(*) as n from trellis.signals where run_id = $1', runId, limit);
}

/** An event of the outbox (trellis.events). */
export interface EventRow {
  kind: string;
  attempt: number;
  body: Record<string, unknown>;
  created_at: Date;
}

/** A run's events from the outbox, in commit order (the newest 500). */
export async function runEvents(db: Queryable, runId: string, limit = 500): Promise<Listed<EventRow>> {
  return newest<EventRow>(db, `
    select kind, attempt, body, created_at
      from trellis.events where bucket in (select bucket from trellis.runs where id = $1) and run_id = $1
      order by xid desc, id desc`,
  'select pg_catalog.count(*) as n from trellis.events where bucket in (select bucket from trellis.runs where id = $1) and run_id = $1', runId, limit);
}

/** A run's child runs in call order (the newest 500). */
export async function runChildren(db: Queryable, runId: string, limit = 500): Promise<Listed<RunRow>> {
  return newest<RunRow>(db, `
    select r.id, r.workflow, r.version, r.key, r.queue, r.status, r.attempt, r.metadata, r.error,
           r.created_at, r.finished_at, r.created_at::text as created_at_text
      from trellis.runs r where r.parent_run_id = $1 order by r.parent_seq desc, r.created_at desc`,
  'select pg_catalog.count(*) as n from trellis.runs where parent_run_id = $1', runId, limit);
}

/** A run waiting on another one without being its child (trellis.run_watches, decision 0039). */
export interface WatcherRow {
  id: string;
  workflow: string;
  status: string;
  created_at: Date;
}

/**
 * The runs waiting on run `runId` through trellis.run_watches (ctx.waitForRun,
 * a shared child key), newest first, at most `limit` (the waiter's runs row
 * found by id: it lives in another bucket than the watch).
 *
 * @example
 * const waiting = (await runWatchers(pool, id)).rows.map((w) => w.id);
 */
export async function runWatchers(db: Queryable, runId: string, limit = 500): Promise<Listed<WatcherRow>> {
  return newest<WatcherRow>(db, `
    select r.id, r.workflow, r.status, r.created_at
      from trellis.runs r where r.id in (select w.waiter_id from trellis.run_watches w where w.run_id = $1) order by r.created_at desc`,
  'select pg_catalog.count(*) as n from trellis.run_watches where run_id = $1', runId, limit);
}

/** The whole run row (every documented column but the lease token, which trellis_reader cannot read), or undefined. */
export async function runRow(db: Queryable, runId: string): Promise<Record<string, any> | undefined> {
  const [row] = await queryRows<Record<string, any>>(db, `select ${RUN_COLUMNS.join(', ')} from trellis.runs where id = $1`, [assertUuid(runId)]);
  return row;
}

/** A recorded call of a run. */
export interface StepRow {
  execution: number;
  seq: number;
  name: string;
  kind: string;
  status: string;
  output: unknown;
  error: unknown;
  attempts: number;
  started_at: Date;
  finished_at: Date;
}

/** A run's recorded calls, by execution and seq (the newest 2000). */
export async function runSteps(db: Queryable, runId: string, limit = 2000): Promise<Listed<StepRow>> {
  return newest<StepRow>(db, `
    select execution, seq, name, kind, status, output, error, attempts, started_at, finished_at
      from trellis.steps where bucket in (select bucket from trellis.runs where id = $1) and run_id = $1
      order by execution desc, seq desc`,
  'select pg_catalog.count(*) as n from trellis.steps where bucket in (select bucket from trellis.runs where id = $1) and run_id = $1', runId, limit);
}

/** `trellis stats`: queues (depth, lag), workers (runs held), workflows (last served). */
import { JSON_OPTION, type Command } from '../command.ts';
import { formatDuration, formatTime, table, toJson } from '../format.ts';

const QUEUES = `
select queue,
       pg_catalog.count(*) filter (where status = 'pending' and run_at <= trellis.now())::int as ready,
       pg_catalog.count(*) filter (where status = 'pending' and run_at > trellis.now())::int as scheduled,
       pg_catalog.count(*) filter (where status = 'running')::int as running,
       pg_catalog.count(*) filter (where status = 'waiting')::int as waiting,
       pg_catalog.count(*) filter (where status = 'paused')::int as paused,
       (extract(epoch from trellis.now() - pg_catalog.min(run_at) filter (where status = 'pending' and run_at <= trellis.now())) * 1000)::float8 as lag_ms
  from trellis.runs
 where status in ('pending', 'running', 'waiting', 'paused')
 group by queue order by queue`;

const WORKERS = `
select lease_owner as worker, pg_catalog.count(*)::int as runs, pg_catalog.min(lease_expires_at) as lease_expires_at,
       pg_catalog.array_agg(distinct queue order by queue) as queues
  from trellis.runs
 where status = 'running' and lease_owner is not null
 group by lease_owner order by lease_owner`;

const WORKFLOWS = `
select name, version, queue, last_seen_at from trellis.workflows order by name, version`;

interface QueueRow { queue: string; ready: number; scheduled: number; running: number; waiting: number; paused: number; lag_ms: number | null }
interface WorkerRow { worker: string; runs: number; lease_expires_at: Date; queues: string[] }
interface WorkflowRow { name: string; version: string; queue: string; last_seen_at: Date }

export const stats: Command = {
  name: 'stats',
  summary: 'show queues (ready, scheduled, running, lag), workers holding runs, and when each workflow version was last served',
  description: 'lag: how long the oldest run that is due has been waiting for a worker. A worker shows here while it holds runs.',
  options: { ...JSON_OPTION },
  async run({ client, readPool, options, io }) {
    await client();
    const db = readPool();
    const [queues, workers, workflows] = await Promise.all([
      db.query<QueueRow>(QUEUES), db.query<WorkerRow>(WORKERS), db.query<WorkflowRow>(WORKFLOWS),
    ]);
    if (options.json) {
      // camelCase, as every other command's JSON (the client's rows).
      io.out(toJson({
        queues: queues.rows.map(({ lag_ms, ...q }) => ({ ...q, lagMs: lag_ms })),
        workers: workers.rows.map(({ lease_expires_at, ...w }) => ({ ...w, leaseExpiresAt: lease_expires_at })),
        workflows: workflows.rows.map(({ last_seen_at, ...w }) => ({ ...w, lastSeenAt: last_seen_at })),
      }));
      return;
    }
    io.out('queues\n');
    io.out(queues.rows.length
      ? table(['queue', 'ready', 'scheduled', 'running', 'waiting', 'paused', 'lag'], queues.rows.map((q) => [
        q.queue, String(q.ready), String(q.scheduled), String(q.running), String(q.waiting), String(q.paused), formatDuration(q.lag_ms),
      ]))
      : 'no unfinished runs\n');
    io.out('\nworkers\n');
    io.out(workers.rows.length
      ? table(['worker', 'runs', 'queues', 'lease until'], workers.rows.map((w) => [
        w.worker, String(w.runs), w.queues.join(','), formatTime(w.lease_expires_at),
      ]))
      : 'no worker holds a run\n');
    io.out('\nworkflows\n');
    io.out(workflows.rows.length
      ? table(['workflow', 'queue', 'last served'], workflows.rows.map((w) => [`${w.name}@${w.version}`, w.queue, formatTime(w.last_seen_at)]))
      : 'none registered\n');
  },
};

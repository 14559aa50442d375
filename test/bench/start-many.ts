/**
 * `npx tsx test/bench/start-many.ts`: what `client.startMany` buys over
 * `client.start` called once per run, on one connection, one server,
 * repetitions interleaved (one, many, many, one, ...). Per repetition and
 * side: N runs (10,000) started, each start (or each batch of BATCH, 500)
 * its own transaction; starts/s, and the server's and this process's CPU
 * per run, with the cores other processes used meanwhile (a shared
 * machine's noise). REPS (4), N, BATCH.
 */
import pg from 'pg';
import { z } from 'zod';
import { createClient } from '../../src/client/client.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { cpuBetween, postmasterPid, readCpu } from './cpu.ts';
import { startServer } from './server.ts';
import { fmt, median } from './stats.ts';

const REPS = Number(process.env.REPS ?? 4);
const N = Number(process.env.N ?? 10_000);
const BATCH = Number(process.env.BATCH ?? 500);
const wf = defineWorkflow({ name: 'bench-many', input: z.object({ i: z.number() }) }, async (ctx, { i }) => ctx.step('noop', () => i));

const server = await startServer();
const url = await server.createDatabase('trellis_start_many', { trellis: true });
const pool = new pg.Pool({ connectionString: url, max: 1 });
pool.on('error', () => undefined);
const client = createClient({ pool, logger: silentLogger, handoff: false });
const admin = new pg.Client({ connectionString: url });
await admin.connect();
const postmaster = await postmasterPid(admin);
try {
  await client.start(wf, { i: -1 }, { queue: 'nobody' }); // registers, learns the payload limit
  type Rep = { rate: number; server: number; self: number; others: number };
  const sides: Record<'one' | 'many', Rep[]> = { one: [], many: [] };
  const run = async (side: 'one' | 'many') => {
    const a = readCpu(postmaster);
    if (side === 'one') {
      for (let i = 0; i < N; i++) await client.start(wf, { i }, { queue: 'nobody' });
    } else {
      for (let i = 0; i < N; i += BATCH) {
        await client.startMany(wf, Array.from({ length: Math.min(BATCH, N - i) }, (_, j) => ({ input: { i: i + j }, queue: 'nobody' })));
      }
    }
    const d = cpuBetween(a, readCpu(postmaster));
    sides[side].push({ rate: N / d.seconds, server: (d.server ?? NaN) * 1e6 / N, self: d.self * 1e6 / N, others: d.otherCores ?? NaN });
    await admin.query('truncate trellis.runs, trellis.events, trellis.run_deadlines, trellis.steps, trellis.signals, trellis.hook_deliveries');
  };
  for (let r = 0; r < REPS; r++) {
    const order: ('one' | 'many')[] = r % 2 ? ['many', 'one'] : ['one', 'many'];
    for (const side of order) await run(side);
  }
  for (const side of ['one', 'many'] as const) {
    const s = sides[side];
    console.log(`${side === 'one' ? 'client.start ×1     ' : `client.startMany ×${BATCH}`}: ${fmt(median(s.map((x) => x.rate)))} runs/s, server ${fmt(median(s.map((x) => x.server)))} µs/run, client ${fmt(median(s.map((x) => x.self)))} µs/run (reps ${s.map((x) => fmt(x.rate)).join(', ')}; other processes ${s.map((x) => x.others.toFixed(2)).join(', ')} cores)`);
  }
} finally {
  await admin.end();
  await client.close();
  await pool.end();
  await server.stop();
}

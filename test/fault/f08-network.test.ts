/**
 * F8: the network between the worker processes and PostgreSQL fails (a TCP
 * proxy in this process stands in for it): the LISTEN connections cut; a
 * silent partition (every connection and every new one frozen: no data, no
 * FIN) longer than 3 s; the server unreachable (connections cut and new
 * ones refused) longer than 3 s. Runs are started directly during each
 * fault and right after it. Figure: the longest wait from recovery (or the
 * start, if later) to the run's first step body, against poll + 1 s. Poll
 * 1 s (the default); query and connect timeouts 2 s, listener check 1 s.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { startProxy, throughProxy, type TcpProxy } from '../helpers/tcp-proxy.ts';
import { Harness, scale, sleep } from './harness/harness.ts';
import { assertClean, checkInvariants } from './harness/invariants.ts';

const POLL_MS = 1000;
const FAULT_MS = scale(3500, 5000);
const ROUNDS = scale(1, 3);

let db: TestDatabase;
let proxy: TcpProxy;
let h: Harness;
before(async () => {
  db = await freshDatabase();
  const u = new URL(db.url);
  proxy = await startProxy({ host: u.hostname, port: Number(u.port) });
  h = new Harness(db.url, db.pool, { env: {
    DATABASE_URL: throughProxy(db.url, proxy.port), LEDGER_URL: db.url, LEASE_MS: '10000', POLL_MS: String(POLL_MS),
    QUERY_TIMEOUT_MS: '2000', CONNECT_TIMEOUT_MS: '2000', LISTENER_CHECK_MS: '1000',
  } });
  await h.setUp();
});
after(async () => {
  await h?.close();
  await proxy?.close();
  await db?.close();
});

/** From max(recovery, start) to the first step body, per run started since `since`. */
async function claimDelays(since: Date, recovery: Date): Promise<number[]> {
  const { rows } = await db.pool.query<{ ms: number }>(`select extract(epoch from (
      (select min(e.at) from public.effects e where e.run_id = r.id) - greatest(r.created_at, $2))) * 1000 as ms
    from trellis.runs r where r.created_at >= $1`, [since, recovery]);
  return rows.map((r) => Math.max(0, Math.round(Number(r.ms)))).sort((a, b) => b - a);
}

const faults: Record<string, { begin(p: TcpProxy): void; end(p: TcpProxy): void }> = {
  'listener killed': {
    begin: (p) => p.of('trellis-worker-listener').forEach((pipe) => pipe.cut()),
    end: () => undefined,
  },
  'silent partition': {
    begin: (p) => {
      p.freezingNew = true;
      for (const pipe of p.pipes) pipe.frozen = true;
    },
    end: (p) => void (p.freezingNew = false),
  },
  'server unreachable': {
    begin: (p) => {
      p.refusing = true;
      for (const pipe of p.pipes) pipe.cut();
    },
    end: (p) => void (p.refusing = false),
  },
};

describe('F8: listener killed, silent partition, server unreachable', () => {
  it('claims every run soon after the network recovers', async () => {
    await Promise.all([h.spawn(), h.spawn()]);
    const lines: string[] = [];
    let worst = 0;
    for (let round = 0; round < ROUNDS; round++) {
      for (const [name, fault] of Object.entries(faults)) {
        const { rows: [t0] } = await db.pool.query<{ at: Date }>('select clock_timestamp() as at');
        fault.begin(proxy);
        const during = h.startPaced('fh-steps', 10, (n) => ({ n }), 10_000 / (name === 'listener killed' ? 1000 : FAULT_MS));
        if (name !== 'listener killed') await sleep(FAULT_MS);
        await during;
        fault.end(proxy);
        const { rows: [up] } = await db.pool.query<{ at: Date }>('select clock_timestamp() as at');
        await h.startMany('fh-steps', 10, (n) => ({ n: 100 + n }));
        await h.waitAllEnded({ timeout: 60_000, what: `every run to end after ${name}` });
        const delays = await claimDelays(t0!.at, up!.at);
        worst = Math.max(worst, delays[0] ?? 0);
        lines.push(`${name}: ${delays.length} runs, longest ${delays[0]} ms, over poll + 1 s: ${delays.filter((d) => d > POLL_MS + 1000).length}`);
      }
    }
    const report = await checkInvariants(db.pool);
    console.log(`# F8 ${scale('quick', 'full')}: ${ROUNDS} round(s), faults of ${FAULT_MS} ms; ${lines.join('; ')}; report ${JSON.stringify(report)}`);
    assertClean(report, 'F8');
    assert.deepEqual(h.crashed(), [], 'no worker process died');
    assert.ok(worst >= 0);
  });
});

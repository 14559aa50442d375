/**
 * One run at a time through run_start, run_claim and a completing
 * checkpoint_apply (its step and its end), each statement its own
 * transaction on one connection, with the backend's CPU of each phase
 * (/proc/<pid>/schedstat): the path a single run takes at low load (the
 * hand-off, the queue path, a pool shared by a client and a worker). Used by
 * cycle-ab.ts and shared-pool-cycle.ts. Needs workflow 'p' version '1' in
 * queue 'default' registered, and no other run pending in it.
 */
import pg from 'pg';
import { processCpuPrecise } from './cpu.ts';

/**
 * The connection a cycle runs on: `url`'s database with workflow 'p'
 * version '1' registered in queue 'default', and no WAL flush wait per
 * commit (durability is not what the cycle measures: the flush's CPU is
 * the same for both sides of an A/B and the noisiest part). Its backend's
 * pid is what `oneRunCycle` reads the CPU of.
 */
export async function cycleSession(url: string): Promise<{ c: pg.Client; pid: number }> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const pid = (await c.query('select pg_backend_pid() as p')).rows[0].p as number;
  await c.query(`select trellis.workflow_register('[{"name":"p","version":"1","queue":"default"}]')`);
  await c.query('set synchronous_commit = off');
  return { c, pid };
}

export interface PhaseCpu {
  start: number;
  claim: number;
  checkpoint: number;
}

export interface OneRunCycle {
  /** CPU seconds per phase summed over the measured runs since the last reset. */
  readonly cpu: PhaseCpu;
  reset(): void;
  /** One run; measured into `cpu` unless `measure` is false (a warm-up). */
  run(measure?: boolean): Promise<void>;
}

/** `startOptions`: the run_start options (JSON text) every start sends. */
export function oneRunCycle(c: pg.Client, pid: number, startOptions = '{}'): OneRunCycle {
  const cpu: PhaseCpu = { start: 0, claim: 0, checkpoint: 0 };
  const now = () => processCpuPrecise(pid)!;
  return {
    cpu,
    reset() {
      cpu.start = cpu.claim = cpu.checkpoint = 0;
    },
    async run(measure = true) {
      const a = now();
      await c.query({ name: 'one_run_start', text: 'select trellis.run_start($1, $2::jsonb, $3::jsonb)', values: ['p', '{}', startOptions] });
      const b = now();
      const { rows } = await c.query<{ id: string; lease_token: string }>({ name: 'one_run_claim',
        text: `select id, lease_token from trellis.run_claim('w', '{default}', '{p}', '{1}', 10, '30 seconds', true)` });
      const d = now();
      const ops = rows.flatMap((x) => [
        { op: 'step', run: x.id, token: x.lease_token, seq: 0, name: 'first', kind: 'step', status: 'completed', output: null },
        { op: 'complete', run: x.id, token: x.lease_token, output: null }]);
      const refused = await c.query({ name: 'one_run_checkpoint', text: 'select * from trellis.checkpoint_apply($1::jsonb)', values: [JSON.stringify(ops)] });
      const e = now();
      // A cycle that claimed nothing (or had its ops refused) would measure the wrong thing.
      if (rows.length !== 1 || refused.rows.length) throw new Error(`claimed ${rows.length}, refused ${refused.rows.length}`);
      if (measure) {
        cpu.start += b - a;
        cpu.claim += d - b;
        cpu.checkpoint += e - d;
      }
    },
  };
}

/**
 * A peer's worker in its own process (protocol in ../procs.ts).
 * env: BENCH_PEER = graphile-worker | pg-boss | dbos, BENCH_URL, BENCH_CONFIG (peer-specific).
 */
import { onCommand } from '../procs.ts';

export interface PeerChild {
  /** Processing runs from here on. */
  go(): Promise<void>;
  /** Shut down; returns counters to print. */
  stop(): Promise<unknown>;
}

const peer = process.env.BENCH_PEER;
const url = process.env.BENCH_URL as string;
const config = process.env.BENCH_CONFIG ?? 'default';
const index = Number(process.env.BENCH_INDEX ?? 0);
let child: PeerChild;
if (peer === 'graphile-worker') child = (await import('./graphile-worker.ts')).graphileChild(url, config);
else if (peer === 'pg-boss') child = (await import('./pg-boss.ts')).pgBossChild(url, config);
else if (peer === 'dbos') child = await (await import('./dbos.ts')).dbosChild(url, config, index);
else throw new Error(`unknown BENCH_PEER ${peer}`);

process.stdout.write('ready\n');
onCommand({
  async go() {
    await child.go();
    process.stdout.write('started\n');
  },
  async stop() {
    const stats = await child.stop();
    process.stdout.write(`stats ${JSON.stringify(stats ?? {})}\n`);
    process.exit(0);
  },
});

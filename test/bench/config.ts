/**
 * Benchmark options from flags and environment.
 *   npm run bench                       full run (< 15 min on 2 cores)
 *   BENCH_QUICK=1 npm run bench         quick run (~2-3 min), or --quick
 *   npm run bench -- --only=throughput,peers   some families (comma list)
 *   npm run bench -- --sustain-minutes=10      longer sustained-load test
 *   npm run bench -- --retention=off           sustained load without purging (default: 60 s retention)
 *   npm run bench -- --reps=5 --svg=docs/performance-throughput.svg
 * Families: pgbench, starts, cold (the first start of fresh clients), probe (the SKIP LOCKED ceiling with no engine; throughput prints ratios to it), throughput, peers, latency, levers, backlog, inputs, roles, sustained, outbox
 * (throughput with the outbox on and off), models, flow (queue flow control: the unlimited claim
 * against the base commit's, a global limit of 50, claim cost by number of keys).
 *   BENCH_NO_WAIT=1 npm run bench ...   do not wait for a quiet machine (record the load beside the figures)
 */
export const FAMILIES = ['pgbench', 'starts', 'cold', 'probe', 'throughput', 'peers', 'latency', 'levers', 'backlog', 'inputs', 'roles', 'sustained', 'outbox', 'models', 'flow'] as const;
export type Family = (typeof FAMILIES)[number];

export interface BenchConfig {
  quick: boolean;
  only: Set<Family>;
  reps: number;
  /** Runs enqueued per throughput repetition. */
  runs1: number;
  runs10: number;
  /** Runs per peer repetition (peers are much slower). */
  peerRuns1: number;
  peerRuns10: number;
  procs: number[];
  sustainMinutes: number;
  /** Retention of finished runs during the sustained run, in seconds (null: none, nothing is purged). */
  retentionSeconds: number | null;
  /** Finished-run backlogs to measure claim latency with (the last one also with pending runs). */
  backlogs: number[];
  claimReps: number;
  svg: string;
  out: string;
}

function flag(name: string): string | undefined {
  const prefix = `--${name}=`;
  const hit = process.argv.find((a) => a === `--${name}` || a.startsWith(prefix));
  if (!hit) return undefined;
  return hit.startsWith(prefix) ? hit.slice(prefix.length) : 'true';
}

export function readConfig(): BenchConfig {
  const quick = flag('quick') !== undefined || process.env.BENCH_QUICK === '1';
  const onlyText = flag('only') ?? process.env.BENCH_ONLY;
  const only = new Set<Family>();
  for (const name of (onlyText ?? FAMILIES.join(',')).split(',').map((s) => s.trim()).filter(Boolean)) {
    if (!(FAMILIES as readonly string[]).includes(name)) throw new Error(`unknown family ${name}; known: ${FAMILIES.join(', ')}`);
    only.add(name as Family);
  }
  const num = (name: string, fallback: number) => {
    const v = flag(name);
    if (v === undefined) return fallback;
    const n = Number(v);
    if (!Number.isFinite(n) || n <= 0) throw new Error(`--${name} must be a positive number`);
    return n;
  };
  return {
    quick,
    only,
    reps: num('reps', quick ? 1 : 3),
    runs1: num('runs1', quick ? 10_000 : 20_000),
    runs10: num('runs10', quick ? 2_000 : 4_000),
    peerRuns1: num('peer-runs1', quick ? 2_000 : 4_000),
    peerRuns10: num('peer-runs10', quick ? 500 : 1_000),
    procs: [1, 2, 4],
    sustainMinutes: num('sustain-minutes', quick ? 1 : 3),
    retentionSeconds: flag('retention') === 'off' ? null : num('retention', 60),
    backlogs: quick ? [0, 100_000] : [0, 100_000, 1_000_000],
    claimReps: num('claim-reps', quick ? 10 : 30),
    svg: flag('svg') ?? 'bench-results/throughput.svg',
    out: flag('out') ?? 'bench-results',
  };
}

/** Result shapes shared by the measurement families and the report. */
import type { RunMeasurement } from './procs.ts';
import { medianBy } from './stats.ts';
import type { Kind } from './workflows.ts';

/** Figures of one throughput repetition. */
export interface RepFigures {
  seconds: number;
  items: number;
  /** Workflows (or jobs) per second. */
  wfs: number;
  stepsPerS: number;
  xactPerWf: number;
  xactPerStep: number;
  walBytesPerStep: number;
  walSyncsPerStep: number;
  walSyncsPerS: number;
  /** Checkpoint ops per grouped transaction (Trellis workers only). */
  opsPerFlush?: number | undefined;
  /** Runs per claim statement (Trellis workers only; the whole run, start-up and drain included). */
  runsPerClaim?: number | undefined;
  /** Core-µs per workflow inside the window: every server process, and the worker processes (whole window, start-up included). */
  pgCpuUsPerWf?: number | undefined;
  nodeCpuUsPerWf?: number | undefined;
  /** Mean cores busy with other processes on the machine during the window. */
  otherCores?: number | undefined;
}

export interface ThroughputRow {
  system: string;
  /** Configuration label (e.g. "default", "maxBatch=1", "batched"). */
  config: string;
  kind: Kind;
  procs: number;
  variant: 'prefilled' | 'enqueue-while-running';
  /** The median repetition (by wf/s). */
  median: RepFigures;
  reps: RepFigures[];
}

export interface Skipped {
  system: string;
  skipped: string;
}

export function figures(m: RunMeasurement, steps: number): RepFigures {
  const stepCount = m.items * steps;
  let flushes = 0;
  let ops = 0;
  let claims = 0;
  let claimed = 0;
  for (const s of m.childStats) {
    const w = s as { claims?: number | undefined; claimed?: number | undefined } | null;
    claims += w?.claims ?? 0;
    claimed += w?.claimed ?? 0;
    const c = (s as { committer?: { flushes: number; ops: number } | undefined } | null)?.committer;
    if (c) {
      flushes += c.flushes;
      ops += c.ops;
    }
  }
  return {
    seconds: m.seconds,
    items: m.items,
    wfs: m.rate,
    stepsPerS: m.rate * steps,
    xactPerWf: m.xacts / m.items,
    xactPerStep: m.xacts / stepCount,
    walBytesPerStep: m.walBytes / stepCount,
    walSyncsPerStep: m.walSyncs / stepCount,
    walSyncsPerS: m.walSyncs / m.seconds,
    opsPerFlush: flushes ? ops / flushes : undefined,
    runsPerClaim: claims ? claimed / claims : undefined,
    pgCpuUsPerWf: m.cpu?.server === undefined ? undefined : (m.cpu.server * 1e6) / m.items,
    nodeCpuUsPerWf: m.cpu?.procs === undefined ? undefined : (m.cpu.procs * 1e6) / m.items,
    otherCores: m.cpu?.otherCores,
  };
}

export function row(system: string, config: string, kind: Kind, procs: number, reps: RepFigures[],
  variant: ThroughputRow['variant'] = 'prefilled'): ThroughputRow {
  return { system, config, kind, procs, variant, reps, median: medianBy(reps, (r) => r.wfs) as RepFigures };
}

export interface BenchResults {
  meta: Record<string, unknown>;
  pgbench?: { tps: number; clients: number; seconds: number; walSyncsPerS?: number | undefined } | Skipped | undefined;
  throughput: ThroughputRow[];
  peers: Skipped[];
  latency: LatencyRow[];
  levers: ThroughputRow[];
  backlog?: unknown;
  /** The models family: code workflow, state machine and template, 10 steps each. */
  models?: ThroughputRow[] | undefined;
  inputs?: unknown;
  starts?: unknown;
  /** The first start of fresh clients (family cold). */
  cold?: unknown;
  /** The SKIP LOCKED probe (family probe) and Trellis's ratios to it. */
  probe?: unknown;
  roles?: unknown;
  flow?: unknown;
  sustained?: unknown;
  errors: { family: string; error: string }[];
}

/** The system name of Trellis measured with a client that does not hand starts to its process's worker. */
export const NO_HANDOFF = 'trellis (handoff: false)';

export interface LatencyRow {
  system: string;
  load: string;
  /** Starts per second offered (or achieved, for closed loop). */
  rate: number;
  firstStep: { n: number; p50: number; p95: number; p99: number; max: number };
  result?: { n: number; p50: number; p95: number; p99: number; max: number } | undefined;
  /** Low load only: each round's percentiles (the row's are their medians) and all rounds' samples together. */
  rounds?: { firstStep: LatencyRow['firstStep']; result?: LatencyRow['firstStep'] | undefined }[] | undefined;
  pooled?: { firstStep: LatencyRow['firstStep']; result?: LatencyRow['firstStep'] | undefined } | undefined;
}

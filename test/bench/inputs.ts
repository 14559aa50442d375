/**
 * The cost of SQL's input check (decision 0016): microseconds per
 * `trellis.run_start` from SQL, 5,000 starts in one statement, for two
 * inputs (a one-key object, the bench's own; a nested order of 4 keys and 3
 * items) with no shape, with the shape and its compiled predicate, with the
 * shape walked alone (no predicate), and with `input_checked` (what the
 * TypeScript client sends after zod). The median of the repetitions.
 */
import pg from 'pg';
import { z } from 'zod';
import { inputShape } from '../../src/workflow/input-shape.ts';
import type { BenchConfig } from './config.ts';
import type { BenchServer } from './server.ts';
import { fmt, median } from './stats.ts';

export interface InputCheckRow {
  input: string;
  mode: 'no shape' | 'predicate' | 'walk only' | 'input_checked';
  usPerStart: number;
}

const small = z.object({ i: z.number().optional() }).passthrough();
const order = z.object({
  orderId: z.string().min(1),
  items: z.array(z.object({ sku: z.string(), qty: z.int().positive() })).min(1),
  email: z.email(),
  note: z.string().max(500).optional(),
});
const INPUTS = [
  { input: 'one key', schema: small, value: { i: 1 } },
  { input: 'order (4 keys, 3 items)', schema: order, value: { orderId: 'o-1', items: [{ sku: 'a', qty: 1 }, { sku: 'b', qty: 2 }, { sku: 'c', qty: 3 }], email: 'a@b.co' } },
];
const STARTS = 5_000;

export async function inputChecks(server: BenchServer, cfg: BenchConfig): Promise<InputCheckRow[]> {
  const url = await server.createDatabase('bench_inputs', { trellis: true });
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  const rows: InputCheckRow[] = [];
  try {
    for (const { input, schema, value } of INPUTS) {
      const shape = JSON.stringify(inputShape(schema));
      await c.query(`select trellis.workflow_register($1)`, [JSON.stringify([
        { name: 'plain', version: '1', queue: 'bench-inputs' },
        { name: 'shaped', version: '1', queue: 'bench-inputs', input_schema: JSON.parse(shape) },
        { name: 'walked', version: '1', queue: 'bench-inputs', input_schema: JSON.parse(shape) },
      ])]);
      await c.query(`update trellis.workflows set input_path = null where name = 'walked'`);
      const modes: Array<[InputCheckRow['mode'], string, string]> = [
        ['no shape', 'plain', '{}'], ['predicate', 'shaped', '{}'], ['walk only', 'walked', '{}'], ['input_checked', 'shaped', '{"input_checked": true}'],
      ];
      const samples = new Map<string, number[]>();
      for (let rep = 0; rep < cfg.reps; rep++) {
        // Interleaved, so a slow moment of the machine hits every mode alike.
        for (const [mode, workflow, options] of modes) {
          const t = performance.now();
          await c.query(`select trellis.run_start($1, $2::jsonb, $3::jsonb) from generate_series(1, ${STARTS})`, [workflow, JSON.stringify(value), options]);
          const us = ((performance.now() - t) * 1000) / STARTS;
          samples.set(mode, [...(samples.get(mode) ?? []), us]);
          await c.query('truncate trellis.signals, trellis.steps, trellis.runs');
        }
      }
      for (const [mode] of modes) {
        const row = { input, mode, usPerStart: median(samples.get(mode)!) };
        rows.push(row);
        console.log(`  ${input.padEnd(24)} ${mode.padEnd(14)} ${fmt(row.usPerStart, 1)} µs per start`);
      }
    }
  } finally {
    await c.end();
    await server.dropDatabase('bench_inputs');
  }
  return rows;
}

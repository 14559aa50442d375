/**
 * History assertions of the test kit: compare a run's recorded calls with an
 * expected list, on the fields the expectation names, and fail with a diff
 * of the two lists.
 */
import { ValidationError } from '../errors.ts';
import { AssertionError } from 'node:assert/strict';
import { inspect, isDeepStrictEqual } from 'node:util';
import type { Step } from '../client/runs.ts';
import type { StepKind, StepState } from '../protocol/history.ts';

/**
 * One expected call of a run's history. Only the fields given are compared,
 * so `{ name: 'charge' }` checks the name alone and
 * `{ kind: 'step', name: 'charge', status: 'completed', attempts: 2 }` checks
 * four fields.
 */
export interface ExpectedStep {
  execution?: number | undefined;
  seq?: number | undefined;
  kind?: StepKind | undefined;
  name?: string | undefined;
  status?: StepState | undefined;
  attempts?: number | undefined;
  output?: unknown;
  error?: unknown;
}

/** The fields of an `ExpectedStep`, in the order they are shown in a diff. */
const FIELDS = ['execution', 'seq', 'kind', 'name', 'status', 'attempts', 'output', 'error'] as const;

/** Compared for calls beyond the expected list when no expectation names a field. */
const DEFAULT_FIELDS: readonly (typeof FIELDS)[number][] = ['seq', 'kind', 'name', 'status'];

function pick(source: Step | ExpectedStep, fields: readonly (typeof FIELDS)[number][]): ExpectedStep {
  const out: Record<string, unknown> = {};
  for (const f of fields) out[f] = (source as Record<string, unknown>)[f];
  return out as ExpectedStep;
}

const fieldsOf = (e: ExpectedStep) => FIELDS.filter((f) => Object.hasOwn(e, f));

/**
 * Throw an `AssertionError` unless `steps` (a run's history, in order) match
 * `expected` one for one, comparing each call on the fields its expectation
 * names (calls beyond the list on the fields named anywhere in it). The
 * message names the run and shows the diff of both lists.
 */
export function assertSteps(label: string, steps: readonly Step[], expected: readonly ExpectedStep[]): void {
  for (const e of expected) {
    const unknown = Object.keys(e).filter((k) => !(FIELDS as readonly string[]).includes(k));
    if (unknown.length) throw new ValidationError(`assertHistory: unknown field(s) ${unknown.join(', ')} (use ${FIELDS.join(', ')})`);
  }
  const named = FIELDS.filter((f) => expected.some((e) => Object.hasOwn(e, f)));
  const extra = named.length ? named : DEFAULT_FIELDS;
  const actual = steps.map((s, i) => pick(s, expected[i] ? fieldsOf(expected[i]) : extra));
  const wanted = expected.map((e) => pick(e, fieldsOf(e)));
  if (isDeepStrictEqual(actual, wanted)) return;
  // One line per call, so the diff lines up call by call.
  const line = (e: ExpectedStep) => inspect(e, { breakLength: Infinity, depth: Infinity });
  const error = new AssertionError({ actual: actual.map(line), expected: wanted.map(line), operator: 'deepStrictEqual' });
  error.message = `history of ${label} does not match (${steps.length} call(s), ${expected.length} expected):\n${error.message}`;
  throw error;
}

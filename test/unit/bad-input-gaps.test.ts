/**
 * TypeScript entry points with bad input: a numeric queue or version, a
 * worker id that is empty or huge, and error messages about a
 * 10,000-character value, which quote at most a bounded prefix of it.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { quoteValue, ValidationError } from '../../src/errors.ts';
import { createWorker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { toMs } from '../../src/protocol/duration.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { assertName } from '../../src/workflow/names.ts';

const HUGE = 'x'.repeat(10_000);
const wf = defineWorkflow({ name: 'bad-input-gaps', input: z.object({}) }, async () => 1);

function refuses(fn: () => unknown, what: string): ValidationError {
  try {
    fn();
  } catch (error) {
    assert.ok(error instanceof ValidationError, `${what}: ${String(error)}`);
    assert.ok(error.message.length < 400, `${what}: a message of ${error.message.length} characters`);
    return error;
  }
  assert.fail(`${what} was accepted`);
}

describe('bad input in TypeScript', () => {
  it('quoteValue keeps at most a prefix and marks the cut', () => {
    assert.equal(quoteValue('abc'), '"abc"');
    assert.equal(quoteValue(HUGE).length, 103);
    assert.ok(quoteValue(HUGE).endsWith('...'));
    const cyclic: Record<string, unknown> = {};
    cyclic.self = cyclic;
    assert.equal(quoteValue(cyclic), '[object Object]');
  });

  it('refuses a numeric queue or version rather than coercing it', () => {
    refuses(() => defineWorkflow({ name: 'n', version: 2 as unknown as string, input: z.object({}) }, async () => 1), 'numeric version');
    refuses(() => defineWorkflow({ name: 'n', queue: 5 as unknown as string, input: z.object({}) }, async () => 1), 'numeric queue');
    refuses(() => createWorker({ connectionString: 'postgres://x@127.0.0.1/x', workflows: [wf], queues: [5 as unknown as string], logger: silentLogger }), 'numeric worker queue');
  });

  it('refuses an empty or huge worker id', () => {
    for (const id of ['', 'w'.repeat(100_000), 7 as unknown as string]) {
      refuses(() => createWorker({ connectionString: 'postgres://x@127.0.0.1/x', workflows: [wf], id, logger: silentLogger }), `worker id ${String(id).length}`);
    }
  });

  it('quotes at most a prefix of a huge name or duration', () => {
    refuses(() => assertName(HUGE, 'queue'), 'name');
    refuses(() => toMs(HUGE as never, 'timeout'), 'duration');
  });
});

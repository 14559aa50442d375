/**
 * Options are resolved once, at construction, into one frozen object; an
 * out-of-range or mistyped option is a ValidationError there (client and
 * worker alike), with the bounds SQL has where SQL checks the same value.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { CLIENT_OPTION_BOUNDS, resolveClientOptions } from '../../src/client/resolved-options.ts';
import { TIMEOUT_BOUNDS } from '../../src/db/connection.ts';
import { Pool } from '../../src/db/pg.ts';
import { ValidationError } from '../../src/errors.ts';
import { resolveWorkerOptions, WORKER_OPTION_BOUNDS, type WorkerOptions } from '../../src/worker/options.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';

const pool = new Pool({ connectionString: 'postgres://nobody@127.0.0.1:1/none' }); // never connects
const wf = defineWorkflow({ name: 'opts', input: z.object({}) }, async () => 1);
const refused = (fn: () => unknown, message: RegExp) =>
  assert.throws(fn, (e) => e instanceof ValidationError && message.test(e.message), String(message));

describe('client options', () => {
  it('resolve to one frozen object with the defaults', () => {
    const o = resolveClientOptions({ pool });
    assert.ok(Object.isFrozen(o));
    assert.equal(o.resultPollMs, 5000);
    assert.equal(o.handoff, true);
    assert.equal(o.preparedStatements, 'auto');
    assert.equal(o.tracing, undefined);
    assert.deepEqual(resolveClientOptions({ pool, tracing: true }).tracing, {});
  });

  it('refuse out-of-range and mistyped values with a ValidationError', () => {
    const [min, max] = CLIENT_OPTION_BOUNDS.resultPollMs;
    refused(() => resolveClientOptions({ pool, resultPollInterval: min - 1 }), /resultPollInterval must be from 10ms to 1 hour/);
    refused(() => resolveClientOptions({ pool, resultPollInterval: max + 1 }), /resultPollInterval/);
    refused(() => resolveClientOptions({}), /needs a pool or a connectionString/);
    refused(() => resolveClientOptions({ connectionString: '' }), /connectionString must be a non-empty string/);
    refused(() => resolveClientOptions({ pool: {} as never }), /pool must be a pg Pool/);
    refused(() => resolveClientOptions({ pool, handoff: 'no' as never }), /handoff must be true or false/);
    refused(() => resolveClientOptions({ pool, tracing: 'on' as never }), /tracing must be/);
    refused(() => resolveClientOptions({ pool, preparedStatements: 'yes' as never }), /preparedStatements/);
    refused(() => resolveClientOptions({ pool, listenUrl: 42 as never }), /listenUrl/);
  });

  it('bound the connection timeouts to 1 ms .. 1 day (a longer timer would fire at once)', () => {
    assert.equal(TIMEOUT_BOUNDS.queryMs[1], 86_400_000);
    refused(() => resolveClientOptions({ pool, connectTimeout: 0 }), /connectTimeout must be from 1ms to 1 day/);
    refused(() => resolveClientOptions({ pool, queryTimeout: '30 days' }), /queryTimeout must be from 1ms to 1 day/);
    refused(() => resolveClientOptions({ pool, keepAlive: '2 days' }), /keepAlive/);
    assert.equal(resolveClientOptions({ pool, queryTimeout: false }).timeouts.queryMs, undefined);
  });
});

describe('worker options', () => {
  const worker = (o: Partial<WorkerOptions>) => resolveWorkerOptions({ pool, workflows: [wf], ...o });

  it('resolve to one frozen object with the defaults', () => {
    const o = worker({});
    assert.ok(Object.isFrozen(o));
    assert.deepEqual([o.concurrency, o.claimBatch, o.maxBatch, o.pollMs, o.leaseMs], [200, 100, 500, 1000, 30_000]);
    assert.equal(o.link, undefined);
  });

  it('refuse what SQL would refuse at every claim: a lease over a day, a claim batch over 1000', () => {
    assert.deepEqual(WORKER_OPTION_BOUNDS.leaseMs, [1000, 86_400_000]); // trellis._check_lease
    refused(() => worker({ leaseDuration: '2 days' }), /leaseDuration must be from 1s to 1 day/);
    refused(() => worker({ leaseDuration: '500ms' }), /leaseDuration/);
    refused(() => worker({ claimBatch: 1001 }), /claimBatch must be an integer from 1 to 1000/);
  });

  it('refuse values that would stall the worker: maxBatch 0, concurrency 0, fractions', () => {
    refused(() => worker({ maxBatch: 0 }), /maxBatch must be an integer from 1/);
    refused(() => worker({ concurrency: 0 }), /concurrency/);
    refused(() => worker({ concurrency: 1.5 }), /concurrency/);
    refused(() => worker({ pollInterval: 0 }), /pollInterval/);
    refused(() => worker({ queryTimeout: '30 days' }), /queryTimeout/);
  });
});

describe('misspelt options', () => {
  it('are refused by createClient, createWorker (hookDelivery too), defineWorkflow (its hooks too) and defineActivity, naming the key', async () => {
    const { defineActivity } = await import('../../src/workflow/define.ts');
    refused(() => resolveClientOptions({ pool, resultPollIntervall: '1s' } as never), /createClient options has unknown option\(s\) resultPollIntervall/);
    refused(() => resolveWorkerOptions({ pool, workflows: [wf], concurency: 5 } as never), /createWorker options has unknown option\(s\) concurency/);
    refused(() => resolveWorkerOptions({ pool, workflows: [wf], hookDelivery: { intervall: 5 } } as never), /hookDelivery has unknown option\(s\) intervall/);
    refused(() => defineWorkflow({ name: 'typo', input: z.object({}), pauseAftr: 3 } as never, async () => 1), /workflow typo has unknown option\(s\) pauseAftr/);
    // A misspelt hook would never run: refused, with the names it takes.
    refused(() => defineWorkflow({ name: 'typo', input: z.object({}), hooks: { onFailure: async () => undefined } } as never, async () => 1),
      /hooks has unknown option\(s\) onFailure \(it takes onComplete, onFail, onCancel, onPause, retry, timeout\)/);
    refused(() => defineActivity({ name: 'ocr', queue: 'gpu', input: z.string(), timout: '5s' } as never, async () => 1), /activity ocr has unknown option\(s\) timout/);
    // Every documented option is still taken.
    resolveWorkerOptions({ pool, workflows: [wf], hookDelivery: { interval: '1s', concurrency: 2 }, purge: false, resumes: false });
    defineWorkflow({ name: 'ok', input: z.object({}), hooks: { onFail: async () => undefined, retry: { maxAttempts: 2 }, timeout: '5s' } }, async () => 1);
  });

  it('are refused by createTestEnv before it makes a server or a database', async () => {
    const { createTestEnv } = await import('../../src/testing/env.ts');
    await assert.rejects(createTestEnv({ workflows: [wf], serverURL: 'postgres://nobody@127.0.0.1:1/none' } as never),
      (e) => e instanceof ValidationError && /createTestEnv options has unknown option\(s\) serverURL/.test(e.message));
  });
});

/**
 * A run whose history PostgreSQL cannot build as one value (over 256 MB:
 * 270 step results of 1 MB, well within max_payload_bytes and
 * max_history_steps) is failed with PayloadTooLargeError by the worker that
 * claims it; the claim's other runs go on. Before, every claim that picked
 * the run failed as a whole ("total size of jsonb array elements exceeds
 * the maximum"), for as long as the run stayed due: the queue stalled and
 * its cancel could never be carried out.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { WorkflowFailedError } from '../../src/errors.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { adminUrl } from '../helpers/db.ts';

const big = defineWorkflow({ name: 'big-history', input: z.object({}) }, async (ctx) => {
  for (let i = 0; i < 270; i++) await ctx.step(`s${i}`, () => 'x'.repeat(1_000_000));
  return 'replayed';
});
const small = defineWorkflow({ name: 'small-history', input: z.object({}) }, async (ctx) => {
  await ctx.step('one', () => 1);
  await ctx.sleep('nap', '1 hour');
  return 'done';
});

let env: TestEnv;
before(async () => {
  env = await createTestEnv({ workflows: [big, small], serverUrl: adminUrl(), claimBatch: 10 });
});
after(() => env.close());

describe('a history too large to hand over as one value', () => {
  it('fails that run with PayloadTooLargeError, and the claim that picked it still hands over its other runs', async () => {
    // Its 270 results are written under a lease taken by hand, from a queue
    // no worker serves; then the run moves to the served queue, due.
    const sql = (text: string, values: unknown[] = []) => env.pool.query(text, values);
    const [{ id }] = (await sql(`select trellis.run_start('big-history', '{}', '{"queue": "held"}') as id`)).rows;
    const [{ lease_token: token }] = (await sql(`select lease_token from trellis.run_claim('by-hand', '{held}', '{big-history}', $1, 1, '1 hour')`, [[big.version]])).rows;
    for (let from = 0; from < 270; from += 90) {
      await sql(`select trellis.checkpoint_apply((select jsonb_agg(jsonb_build_object('op', 'step', 'run', $1::uuid, 'token', $2::uuid, 'seq', i,
                   'name', 's' || i, 'kind', 'step', 'status', 'completed', 'output', to_jsonb(repeat('x', 1000000)), 'attempts', 1))
                   from generate_series($3::int, $3::int + 89) i))`, [id, token, from]);
    }
    // The other run parks after its step, so its next claim reads a history too.
    const other = await env.start(small, {});
    await env.waitFor(other.id, 'waiting');
    await sql(`update trellis.runs set queue = 'default' where id = $1`, [id]);
    await sql(`select trellis.checkpoint_apply($1)`, [JSON.stringify([{ op: 'release', run: id, token, delay_ms: 0, failure: false }])]);
    await env.advance('2 hours');

    await assert.rejects(env.client.result(id, { timeout: '60s' }), (error: WorkflowFailedError & { details?: { error?: { code?: string; message?: string } } }) => {
      assert.ok(error instanceof WorkflowFailedError);
      assert.equal(error.details?.error?.code, 'payload_too_large', String(error.details?.error?.message));
      assert.match(error.details?.error?.message ?? '', /history cannot be handed to a worker as one value/);
      return true;
    });
    assert.equal(await other.result({ timeout: '60s' }), 'done');
    // Nothing of it was replayed: no step beyond the 270 written by hand.
    const [{ n }] = (await sql(`select count(*)::int as n from trellis.steps where run_id = $1`, [id])).rows;
    assert.equal(n, 270);
  });

  it('the ends of its children likewise: the claim reads a marker the worker fails the run with, not an error', async () => {
    const sql = (text: string, values: unknown[] = []) => env.pool.query(text, values);
    const [{ id }] = (await sql(`select trellis.run_start('big-history', '{}', '{"queue": "held-parent"}') as id`)).rows;
    const [parent] = (await sql(`select c.lease_token, r.bucket from trellis.run_claim('by-hand', '{held-parent}', '{big-history}', $1, 1, '1 hour') c
                                 join trellis.runs r using (id)`, [[big.version]])).rows;
    // 270 children, each ended with a 1 MB output, that the parent waits on.
    await sql(`select trellis.checkpoint_apply((select jsonb_agg(jsonb_build_object('op', 'child', 'run', $1::uuid, 'token', $2::uuid, 'seq', i,
                 'name', 'c' || i, 'child', gen_random_uuid(), 'workflow', 'small-history', 'version', $3::text, 'input', '{}'::jsonb, 'queue', 'held-kids'))
                 from generate_series(0, 269) i))`, [id, parent.lease_token, small.version]);
    const kids = (await sql(`select id, lease_token from trellis.run_claim('by-hand', '{held-kids}', '{small-history}', $1, 1000, '1 hour')`, [[small.version]])).rows;
    assert.equal(kids.length, 270);
    for (let from = 0; from < 270; from += 90) {
      const batch = kids.slice(from, from + 90);
      await sql(`select trellis.checkpoint_apply((select jsonb_agg(jsonb_build_object('op', 'complete', 'run', k.id, 'token', k.token, 'output', to_jsonb(repeat('y', 1000000))))
                   from unnest($1::uuid[], $2::uuid[]) k(id, token)))`, [batch.map((k) => k.id), batch.map((k) => k.lease_token)]);
    }
    // All 270 ends are over what PostgreSQL builds as one value: the claim
    // hands them over one at a time (each execution records one and parks).
    const [{ ended }] = (await sql(`select trellis._run_children_ended($1, $2, 1) as ended`, [parent.bucket, id])).rows;
    assert.deepEqual(Object.keys(ended), [[...kids.map((k) => k.id as string)].sort()[0]]);
    assert.equal(Object.values(ended as Record<string, { status: string; output: string }>)[0]?.status, 'completed');
    assert.equal(Object.values(ended as Record<string, { status: string; output: string }>)[0]?.output.length, 1_000_000);
  });
});

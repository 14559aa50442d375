/**
 * Flow control across worker processes (sql/230_queue_claim.sql): the limits
 * live in the claim transaction, so they hold however many workers claim
 * (a SIGKILLed worker's slot: test/fault/queue-lease-kill.test.ts).
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFlowFixture } from '../helpers/flow-workers.ts';
import { waitFor } from '../helpers/wait.ts';

const flow = useFlowFixture();
const { startJobs, count, stopAll } = flow;
const spawnWorker = flow.spawn;

describe('a global concurrency limit across worker processes', () => {
  it('three workers with two slots each (six in all) never run more than 3 runs of a queue limited to 3, and reach 3 only together', async () => {
    await flow.client.setQueue('three', { concurrency: 3 });
    // Two slots each: no worker reaches the limit alone, so the limit is
    // reached only by runs of two processes at once. (With ten slots each,
    // one worker that re-claims each slot it frees could run them all.)
    const two = { CONCURRENCY: '2' };
    await Promise.all([spawnWorker('three', two), spawnWorker('three', two), spawnWorker('three', two)]);
    // 30 runs of 150 ms through 3 slots: at least 1.5 s of sampling.
    await startJobs('three', 30, 150);
    let most = 0;
    let samples = 0;
    await waitFor(async () => {
      const running = await count('three', 'running');
      most = Math.max(most, running);
      samples++;
      return (await count('three', 'completed')) === 30;
    }, { what: '30 runs completed', interval: 5, timeout: 60_000 });
    assert.ok(most <= 3, `at most 3 running, saw ${most}`);
    assert.equal(most, 3, 'the limit is reached (by two processes at once: none has three slots)');
    assert.ok(samples > 10, `sampled ${samples} times`);
    const { rows } = await flow.db.pool.query(`select count(distinct (output #>> '{}'))::int as n from trellis.runs where queue = 'three'`);
    assert.ok(rows[0].n >= 2, `runs finished on ${rows[0].n} worker processes`);
    await stopAll();
  });
});

describe('a rate limit across worker processes', () => {
  it('two workers claim at most 5 runs per 1s window of a queue limited to 5 per second', async () => {
    // Every claim of the queue, with the engine time of its transaction.
    await flow.db.pool.query(`create table public.claims (run_id uuid, at timestamptz)`);
    await flow.db.pool.query(`create function public.log_claim() returns trigger language plpgsql as $$
      begin insert into public.claims values (new.id, trellis.now()); return new; end $$`);
    await flow.db.pool.query(`create trigger log_claim after update of status on trellis.runs for each row
      when (new.status = 'running' and old.status <> 'running' and new.queue = 'rated') execute function public.log_claim()`);
    await flow.client.setQueue('rated', { rate: { limit: 5, period: '1s' } });
    await Promise.all([spawnWorker('rated'), spawnWorker('rated')]);
    await startJobs('rated', 16, 0);
    await waitFor(async () => (await count('rated', 'completed')) === 16, { what: '16 runs completed', timeout: 60_000 });
    const { rows } = await flow.db.pool.query(`select floor(extract(epoch from at))::bigint as w, count(*)::int as n
                                            from public.claims group by 1 order by 1`);
    assert.ok(rows.every((r) => r.n <= 5), `claims per window: ${rows.map((r) => r.n).join(', ')}`);
    assert.ok(rows.length >= 4, `16 claims at 5 per second take at least 4 windows, took ${rows.length}`);
    await stopAll();
  });
});

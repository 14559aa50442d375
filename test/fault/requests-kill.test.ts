/**
 * Requests across dead worker processes (decision 0044): callers withdraw
 * from a few account runs (each answers with the new balance or refuses,
 * and continues as new every 10 requests) while worker processes are
 * SIGKILLed and started again. A caller whose wait times out asks again
 * with the same id. At the end every request got one answer; a repeat of
 * an answered id got the same answer; each request was delivered once;
 * and each account's final balance is its opening balance less the
 * withdrawals it accepted, never below zero.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { RequestRejectedError, TimeoutError } from '../../src/errors.ts';
import { useDatabase } from '../helpers/database-fixture.ts';
import { killableWorkers, killIfRunning, type ReadyProcess, spawnReady } from './harness/ready-process.ts';
import { scale } from './harness/harness.ts';

const children: ChildProcess[] = [];
// Registered before useDatabase's after(), so it runs first: no worker process outlives the database.
after(() => children.forEach(killIfRunning));
const fx = useDatabase();

const ACCOUNTS = ['acct-0', 'acct-1', 'acct-2'];
const OPENING = 500;
const PER_ACCOUNT = scale(20, 80);
const KILLS = scale(2, 5);

const spawnWorker = (): Promise<ReadyProcess> =>
  spawnReady('test/fault/requests-process.ts', { DATABASE_URL: fx.db.url }, { what: 'account worker ready', timeout: 30_000, into: children });

type Answer = { balance: number } | { refused: number };

describe('requests while worker processes are SIGKILLed', () => {
  it('every request is answered once, a repeat gets the same answer, and balances add up', async () => {
    const workers = killableWorkers(spawnWorker);
    await workers.start(2);
    for (const key of ACCOUNTS) await fx.client.start('fault-account', { balance: OPENING }, { key });
    // Amounts 1..60, the same in every run of the test.
    const requests = ACCOUNTS.flatMap((key, a) => Array.from({ length: PER_ACCOUNT }, (_, i) => ({ key, id: `${key}/${i}`, amount: ((a * 97 + i * 37) % 60) + 1 })));
    const answers = new Map<string, Answer>();
    let repeats = 0;
    let retriedAfterTimeout = 0;
    const ask = async (r: { key: string; id: string; amount: number }): Promise<Answer> => {
      for (;;) {
        try {
          const out = await fx.client.request<{ balance: number }>({ workflow: 'fault-account', key: r.key }, 'withdraw', { amount: r.amount }, { id: r.id, timeout: '1s' });
          return { balance: out.balance };
        } catch (error) {
          if (error instanceof RequestRejectedError) return { refused: (error.details.error as { details: { balance: number } }).details.balance };
          if (!(error instanceof TimeoutError)) throw error;
          retriedAfterTimeout++; // a dead worker held the run (its 2 s lease): ask again with the same id
        }
      }
    };
    let next = 0;
    let sent = 0;
    const send = async () => {
      while (next < requests.length) {
        const r = requests[next++]!;
        answers.set(r.id, await ask(r));
        // Now and then, a repeat of an answered request: the same answer, nothing applied.
        if (sent % 5 === 0) {
          repeats++;
          assert.deepEqual(await ask(r), answers.get(r.id), `a repeat of ${r.id} got the first answer`);
        }
        if (++sent % Math.ceil(requests.length / (KILLS + 1)) === 0) await workers.killOldest();
      }
    };
    await Promise.all(Array.from({ length: 6 }, send));
    assert.equal(answers.size, requests.length, 'every request answered');

    for (const key of ACCOUNTS) {
      const mine = requests.filter((r) => r.key === key);
      const accepted = mine.filter((r) => 'balance' in answers.get(r.id)!);
      const { balance } = await fx.client.request<{ balance: number }>({ workflow: 'fault-account', key }, 'balance', null, { timeout: '30s' });
      assert.equal(balance, OPENING - accepted.reduce((sum, r) => sum + r.amount, 0), `${key}: the balance is the opening less the accepted withdrawals`);
      assert.ok(balance >= 0, `${key}: never below zero`);
      const reported = accepted.map((r) => (answers.get(r.id) as { balance: number }).balance);
      assert.equal(new Set(reported).size, reported.length, `${key}: each accepted withdrawal answered with its own balance`);
      for (const r of mine.filter((x) => 'refused' in answers.get(x.id)!)) {
        assert.ok(r.amount > (answers.get(r.id) as { refused: number }).refused, `${key}: ${r.id} refused only when short`);
      }
    }
    const { rows } = await fx.db.pool.query<{ signal_id: string; answered: boolean }>(
      `select s.signal_id, s.replied_at is not null as answered from trellis.signals s
         join trellis.runs r on r.bucket = s.bucket and r.id = s.run_id where r.workflow = 'fault-account' and s.name = 'withdraw'`);
    assert.equal(rows.length, requests.length, 'each request delivered once');
    assert.ok(rows.every((s) => s.answered), 'each answer kept on its request');
    console.log(`# requests: ${requests.length} over ${ACCOUNTS.length} accounts, ${KILLS} SIGKILLs, ${repeats} repeats, ${retriedAfterTimeout} asked again after a timeout`);
    await workers.stop();
  });
});

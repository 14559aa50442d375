/**
 * Signal with start across dead worker processes (decision 0043 and its
 * amendment): senders deliver messages to a few entity keys while worker
 * processes are SIGKILLed and started again; each entity run reads three
 * messages and returns, leaving the rest unread, which go on to the key's
 * next run. At the end every delivered message was read by exactly one
 * run, or waits on its key's one unfinished run; none is left on a run that
 * ended; a key never has two unfinished runs.
 */
import assert from 'node:assert/strict';
import type { ChildProcess } from 'node:child_process';
import { after, describe, it } from 'node:test';
import { useDatabase } from '../helpers/database-fixture.ts';
import { waitFor } from '../helpers/wait.ts';
import { killableWorkers, killIfRunning, type ReadyProcess, spawnReady } from './harness/ready-process.ts';
import { scale } from './harness/harness.ts';

const children: ChildProcess[] = [];
// Registered before useDatabase's after(), so it runs first: no worker process outlives the database.
after(() => children.forEach(killIfRunning));
const fx = useDatabase();

const KEYS = ['e-0', 'e-1', 'e-2', 'e-3'];
const PER_KEY = scale(15, 60);
const KILLS = scale(2, 5);

const spawnWorker = (): Promise<ReadyProcess> =>
  spawnReady('test/fault/sws-process.ts', { DATABASE_URL: fx.db.url }, { what: 'entity worker ready', timeout: 30_000, into: children });

describe('signal with start while worker processes are SIGKILLed', () => {
  it('every delivered message is read once or waits on its key\'s one unfinished run; none is left on an ended run', async () => {
    const workers = killableWorkers(spawnWorker);
    await workers.start(2);
    const messages = KEYS.flatMap((key) => Array.from({ length: PER_KEY }, (_, i) => ({ key, id: `${key}/${i}` })));
    let twoUnfinished = 0;
    let sampling = true;
    const sampler = (async () => {
      while (sampling) {
        const { rows } = await fx.db.pool.query(`select key from trellis.runs where workflow = 'fault-entity' and key is not null
          and status not in ('completed', 'failed', 'cancelled') group by key having count(*) > 1`);
        twoUnfinished += rows.length;
        await new Promise((r) => setTimeout(r, 50));
      }
    })();
    // Senders: ten at a time; workers are killed and started again as they go.
    let next = 0;
    let sent = 0;
    const delivered: string[] = [];
    const send = async () => {
      while (next < messages.length) {
        const m = messages[next++]!;
        const out = await fx.client.signalWithStart('fault-entity', { key: m.key }, 'msg', m.id, { key: m.key, signalId: m.id });
        if (out.delivered) delivered.push(m.id);
        if (++sent % Math.ceil(messages.length / (KILLS + 1)) === 0) await workers.killOldest();
      }
    };
    await Promise.all(Array.from({ length: 10 }, send));
    assert.equal(delivered.length, messages.length, 'each message delivered once (ids are distinct)');

    // Settled: no run of the entities pending or running (the last of each key waits for more).
    await waitFor(async () => {
      const { rows: [r] } = await fx.db.pool.query(`select count(*)::int as n from trellis.runs
        where workflow = 'fault-entity' and status in ('pending', 'running')`);
      return r.n === 0;
    }, { what: 'every entity run to end or wait', timeout: scale(60_000, 180_000) });
    sampling = false;
    await sampler;

    const { rows: signals } = await fx.db.pool.query<{ signal_id: string; consumed: boolean; status: string }>(
      `select s.signal_id, s.consumed_at is not null as consumed, r.status from trellis.signals s join trellis.runs r on r.id = s.run_id
        where r.workflow = 'fault-entity'`);
    const ids = signals.map((s) => s.signal_id);
    assert.equal(new Set(ids).size, ids.length, 'no message stored twice');
    assert.deepEqual([...ids].sort(), [...delivered].sort(), 'every delivered message is there');
    const leftOnEnded = signals.filter((s) => !s.consumed && s.status !== 'waiting');
    assert.deepEqual(leftOnEnded, [], 'no message left unread on a run that ended');
    const { rows: outputs } = await fx.db.pool.query<{ output: string[] }>(`select output from trellis.runs where workflow = 'fault-entity' and status = 'completed'`);
    const read = outputs.flatMap((r) => r.output);
    assert.equal(new Set(read).size, read.length, 'no message read twice');
    assert.equal(read.length, signals.filter((s) => s.consumed && s.status === 'completed').length);
    const { rows: waiting } = await fx.db.pool.query(`select key, count(*)::int as n from trellis.runs where workflow = 'fault-entity'
      and status not in ('completed', 'failed', 'cancelled') group by key`);
    assert.ok(waiting.every((w) => w.n === 1), 'one unfinished run per key at the end');
    assert.equal(twoUnfinished, 0, 'a key never had two unfinished runs');
    console.log(`# signal with start: ${messages.length} messages over ${KEYS.length} keys, ${KILLS} SIGKILLs; ${read.length} read by ${outputs.length} completed runs, ${signals.length - read.length} waiting on the keys' last runs`);
    await workers.stop();
  });
});

/**
 * examples/cron-report run the way a user runs it, against its own database:
 * a daily schedule's next fire time stored, a 2-second schedule's ticks
 * become runs, a user role's fenced writes and a stale token refused, the
 * engine's duties listed as roles.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { createDatabase } from '../helpers/db.ts';
import { runExample } from '../helpers/examples.ts';


describe('examples/cron-report', () => {
  let db: { url: string; drop(): Promise<void> };
  before(async () => {
    db = await createDatabase('trellis_ex');
  });
  after(() => db.drop());

  it('shows the next daily tick, fires a 2-second schedule twice, backfills and triggers, fences the role, lists the roles, and exits 0', async () => {
    const { code, stdout, stderr } = await runExample('examples/cron-report/main.ts', db.url);
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stdout, /^daily-report next fires at 07:00 Europe\/Berlin$/m);
    assert.match(stdout, /^select \* from trellis.schedules: daily-report \| 0 7 \* \* \* \| Europe\/Berlin \| next_at stored: true$/m);
    const ticks = [...stdout.matchAll(/^tick (\S+) -> sales: 35 orders$/gm)].map((m) => new Date(m[1] as string).getTime());
    assert.equal(ticks.length, 2);
    assert.equal((ticks[1] as number) - (ticks[0] as number), 2000, 'two consecutive 2-second ticks');
    for (const t of ticks) assert.equal(t % 2000, 0);
    const fired = /^paused: true, fired: (\d+)$/m.exec(stdout);
    assert.ok(fired && Number(fired[1]) >= 2, 'paused after at least two ticks');
    const filled = /^backfill of the last 10 s: (\d+) ticks had run, (\d+) started now$/m.exec(stdout);
    assert.ok(filled, 'the backfill printed');
    assert.ok(Number(filled[1]) >= 2, 'the ticks that ran were found, not run again');
    assert.ok([5, 6].includes(Number(filled[1]) + Number(filled[2])), 'one result per 2-second tick of 10 seconds');
    assert.match(stdout, /^daily-report triggered: started -> ops: 21 orders$/m);
    assert.match(stdout, /^report-mailer held with token \d+, fenced writes: some$/m);
    assert.match(stdout, /^stale token refused: TR003$/m);
    assert.match(stdout, /^role report-mailer: held true, by this worker true$/m);
    assert.match(stdout, /^role trellis.purge: held true, by this worker true$/m);
    assert.match(stdout, /^role trellis.schedules: held true, by this worker true$/m);
  });
});

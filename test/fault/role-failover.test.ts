/**
 * Role leases under induced failovers: three worker processes take part in
 * role `soak` and in the schedule ticker; the holder is SIGKILLed, has its
 * connections terminated (pg_terminate_backend, again and again, past the
 * TTL), or is SIGSTOPped past the TTL, in turn. Measured from the holders'
 * own fenced records: no two holders overlap; every superseded token is
 * refused; an every-second schedule fired each tick once, with no gap,
 * across the failovers of its ticker; and runs started meanwhile with a
 * short time limit (on a queue nobody serves) were each cancelled for
 * their deadline, across the failovers of the deadlines duty.
 * ROLE_FAILOVERS (default 20) sets how many; `npm run test:roles-soak` runs 100.
 */
import assert from 'node:assert/strict';
import { type ChildProcess, spawn } from 'node:child_process';
import { once } from 'node:events';
import { after, before, describe, it } from 'node:test';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { waitFor } from '../helpers/wait.ts';

const FAILOVERS = Number(process.env.ROLE_FAILOVERS ?? 20);
const TTL_MS = 600;
let db: TestDatabase;
const procs = new Set<ChildProcess>();

/** The login role of each process (by pid): a lost connection is one that cannot come back (NOLOGIN). */
const loginOf = new Map<number, string>();
const logins: string[] = [];

async function spawnProc(): Promise<ChildProcess> {
  const login = `role_proc_${crypto.randomUUID().replaceAll('-', '').slice(0, 12)}`;
  const password = crypto.randomUUID();
  await sql(`create role ${login} login superuser password '${password}'`);
  logins.push(login);
  const url = new URL(db.url);
  url.username = login;
  url.password = password;
  const child = spawn(process.execPath, ['--import', 'tsx', 'test/fault/role-process.ts'], {
    env: { ...process.env, DATABASE_URL: url.toString(), ROLE_TTL_MS: String(TTL_MS) },
    stdio: ['ignore', 'pipe', 'inherit'],
  });
  procs.add(child);
  child.on('exit', () => procs.delete(child));
  let out = '';
  child.stdout?.on('data', (d) => (out += d));
  await waitFor(() => out.includes('ready'), { what: 'role process ready', timeout: 60_000 });
  loginOf.set(child.pid as number, login);
  return child;
}

const sql = async (text: string, values: unknown[] = []) => (await db.pool.query(text, values)).rows;

async function holderOf(role: string): Promise<{ pid: number; token: number } | undefined> {
  const [row] = await sql(`select holder, token::int from trellis.roles where name = $1 and holder is not null and expires_at > trellis.now()`, [role]);
  return row ? { pid: Number(String(row.holder).slice('proc-'.length)), token: row.token } : undefined;
}

before(async () => {
  db = await freshDatabase();
  await sql('create table public.role_log (token bigint, pid int, at timestamptz)');
  await sql('create table public.role_refused (token bigint, pid int, at timestamptz default clock_timestamp())');
});
after(async () => {
  for (const p of procs) p.kill('SIGKILL');
  for (const login of logins) {
    await sql(`select pg_terminate_backend(pid) from pg_stat_activity where usename = $1`, [login]).catch(() => undefined);
    await sql(`drop owned by ${login}`).catch(() => undefined);
    await sql(`drop role if exists ${login}`).catch(() => undefined);
  }
  await db.close();
});

describe(`${FAILOVERS} induced failovers of a role holder`, () => {
  it('never two holders at once, stale tokens refused, an every-second schedule fires each tick once, every deadline is enforced', async (t) => {
    const byPid = new Map<number, ChildProcess>();
    for (let i = 0; i < 3; i++) {
      const p = await spawnProc();
      byPid.set(p.pid as number, p);
    }
    await sql(`select trellis.schedule_set('every-second', '{"cron": "* * * * * *", "workflow": "tick-job", "input": {}, "overlap": "allow", "catch_up": 100}')`);
    // Runs that no worker serves, each with a 300 ms time limit, started
    // every 100 ms while the holders fail over: the deadlines duty
    // (trellis.deadlines, with the others) must cancel every one of them.
    let starting = true;
    const deadlined: string[] = [];
    const starter = (async () => {
      while (starting) {
        const [row] = await sql(`select trellis.run_start('tick-job', '{}', '{"queue": "nobody-serves", "time_limit": "300 milliseconds"}') as id`);
        deadlined.push(row.id);
        await new Promise((r) => setTimeout(r, 100));
      }
    })();
    const kinds = ['SIGKILL', 'terminate', 'SIGSTOP'] as const;
    const takeovers: Record<(typeof kinds)[number], number[]> = { SIGKILL: [], terminate: [], SIGSTOP: [] };
    for (let i = 0; i < FAILOVERS; i++) {
      const kind = kinds[i % kinds.length] as (typeof kinds)[number];
      const held = await waitFor(() => holderOf('soak'), { what: 'a holder of soak' });
      // Fault a holder only once it has written under its token (its lease is in use).
      await waitFor(async () => (await sql('select 1 from public.role_log where token = $1 limit 1', [held.token])).length > 0,
        { what: `a write under token ${held.token}`, interval: 10 });
      const victim = byPid.get(held.pid);
      assert.ok(victim, `holder ${held.pid} is one of ours`);
      const started = Date.now();
      const nextHolder = () => waitFor(async () => {
        const h = await holderOf('soak');
        return h && h.token > held.token ? h : undefined;
      }, { what: `a new holder after ${kind} of ${held.pid}`, interval: 10, timeout: 30_000 });
      if (kind === 'SIGKILL') {
        victim.kill('SIGKILL');
        await nextHolder();
        takeovers[kind].push(Date.now() - started);
        byPid.delete(held.pid);
        const p = await spawnProc();
        byPid.set(p.pid as number, p);
      } else if (kind === 'SIGSTOP') {
        victim.kill('SIGSTOP');
        await nextHolder();
        takeovers[kind].push(Date.now() - started);
        victim.kill('SIGCONT');
      } else {
        // The holder loses its connections and cannot open new ones (its
        // login is disabled): a process that merely reconnects keeps its
        // lease, as it should; one that stays cut off loses it.
        const login = loginOf.get(held.pid) as string;
        await sql(`alter role ${login} nologin`);
        let done = false;
        const cutter = (async () => {
          while (!done) {
            await sql(`select pg_terminate_backend(pid) from pg_stat_activity where application_name = $1`, [`role-proc-${held.pid}`]);
            await new Promise((r) => setTimeout(r, 20));
          }
        })();
        await nextHolder().finally(() => (done = true));
        await cutter;
        takeovers[kind].push(Date.now() - started);
        await sql(`alter role ${login} login`);
      }
    }
    starting = false;
    await starter;
    // Every deadline looked at (the duty runs every second while held).
    await waitFor(async () => (await sql('select count(*)::int as n from trellis.run_deadlines'))[0].n === 0,
      { what: 'every deadline looked at', timeout: 30_000 });
    // Let the resumed and reconnected processes settle, then stop everyone.
    await new Promise((r) => setTimeout(r, TTL_MS));
    await Promise.all([...procs].map(async (p) => {
      p.kill('SIGTERM');
      await once(p, 'exit');
    }));

    // The holders' own records: each token's fenced writes span an interval; they never overlap.
    const spans = await sql(`select token::int, min(at) as from_at, max(at) as to_at, count(distinct pid)::int as pids, count(*)::int as n
                               from public.role_log group by token order by token`);
    assert.ok(spans.length >= FAILOVERS + 1, `${spans.length} leases wrote, for ${FAILOVERS} failovers`);
    assert.ok(spans.every((s, i) => i === 0 || s.token > spans[i - 1].token), 'tokens only grow');
    for (let i = 1; i < spans.length; i++) {
      assert.ok(spans[i - 1].to_at < spans[i].from_at, `token ${spans[i - 1].token} wrote until ${spans[i - 1].to_at.toISOString()}, after token ${spans[i].token} began at ${spans[i].from_at.toISOString()}`);
    }
    for (const s of spans) assert.equal(s.pids, 1, `token ${s.token} was written by one process`);
    // Every superseded token is refused for a fenced write.
    const [{ token: last }] = await sql(`select token::int from trellis.roles where name = 'soak'`);
    for (const s of spans.filter((x) => x.token < last)) {
      await assert.rejects(sql(`select trellis.role_check('soak', $1)`, [s.token]), { code: 'TR003' });
    }
    const [refused] = await sql('select count(*)::int as n from public.role_refused r where exists (select 1 from public.role_log l where l.token = r.token and l.at > r.at)');
    assert.equal(refused.n, 0, 'no write refused for a token that then wrote again');

    // The schedule: one run per tick, no gap, across the ticker's failovers.
    const [ticker] = await sql(`select token::int from trellis.roles where name = 'trellis.schedules'`);
    assert.ok(ticker.token >= 2, 'the ticker failed over at least once');
    const runs = await sql(`select key from trellis.runs where metadata->>'schedule' = 'every-second' order by key`);
    const ticks = runs.map((r) => new Date(String(r.key).slice('schedule:every-second:'.length)).getTime());
    assert.ok(ticks.length >= 5, `${ticks.length} ticks fired`);
    for (let i = 1; i < ticks.length; i++) assert.equal((ticks[i] as number) - (ticks[i - 1] as number), 1000, `no gap or double between ticks ${i - 1} and ${i}`);
    const [{ fired }] = await sql(`select fired::int from trellis.schedules where name = 'every-second'`);
    assert.equal(fired, ticks.length, 'each tick started one run');
    // Deadlines: every run started with one was cancelled for it, once.
    const [deadlines] = await sql(`select token::int from trellis.roles where name = 'trellis.deadlines'`);
    assert.ok(deadlines.token >= 2, 'the deadlines duty failed over at least once');
    assert.ok(deadlined.length >= 10, `${deadlined.length} runs started with a deadline`);
    const ends = await sql(`select status, (error->>'message') ~ '^deadline .* passed$' as for_deadline, count(*)::int as n
                              from trellis.runs where id = any ($1) group by 1, 2`, [deadlined]);
    assert.deepEqual(ends.map((e) => [e.status, e.for_deadline, e.n]), [['cancelled', true, deadlined.length]]);
    const [cancelEvents] = await sql(`select count(*)::int as n from trellis.events where run_id = any ($1) and kind = 'cancelled'`, [deadlined]);
    assert.equal(cancelEvents.n, deadlined.length, 'one cancelled event per run');
    const [stale] = await sql('select count(*)::int as n from public.role_refused');
    const max = (xs: number[]) => (xs.length ? Math.max(...xs) : 0);
    t.diagnostic(`takeover ms (max): SIGKILL ${max(takeovers.SIGKILL)}, terminate ${max(takeovers.terminate)}, SIGSTOP ${max(takeovers.SIGSTOP)}; bound TTL + renew = ${TTL_MS + TTL_MS / 3} ms after the last renew; stale fenced writes refused: ${stale.n}; leases: ${spans.length}; ticks: ${ticks.length}; deadlines enforced: ${deadlined.length} (duty token ${deadlines.token})`);
  });
});

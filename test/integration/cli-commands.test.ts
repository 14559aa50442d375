/**
 * Every `trellis` command run in-process (main() with a captured Io) against
 * real PostgreSQL, with a worker serving test/fixtures/cli-workflows.ts:
 * output, exit codes, and bad arguments that change nothing.
 */
import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { before, describe, it } from 'node:test';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { waitFor } from '../helpers/wait.ts';
import { approval, broken, greet, more } from '../fixtures/cli-workflows.ts';
import { useEngine } from '../helpers/engine.ts';
import { createDatabase } from '../helpers/db.ts';

const fx = useEngine({ workflows: [greet, approval, broken, ...more] });

/** Run the CLI on the test database; returns the exit code and what it wrote. */
async function cli(...args: string[]) {
  const io = captureIo({ DATABASE_URL: fx.db.url });
  const code = await main(args, io);
  return { code, out: io.stdout, err: io.stderr };
}

const UUID = /^[0-9a-f]{8}-[0-9a-f-]{27}$/;
const statusOf = async (id: string) => (await fx.engine.client.get(id))?.status;

describe('trellis start, signal and the control commands', () => {
  it('start prints the run id; --wait prints the output', async () => {
    const started = await cli('start', 'cli-greet', '{"name":"Ada"}', '--key', 'ada');
    assert.equal(started.code, 0, started.err);
    const id = started.out.trim();
    assert.match(id, UUID);
    assert.deepEqual(await fx.engine.client.result(id, { timeout: '20s' }), { text: 'Hello, Ada!' });
    const again = await cli('start', 'cli-greet', '{"name":"Bob"}', '--key', 'ada');
    assert.equal(again.out.trim(), id, 'a repeated key returns the first run');
    const waited = await cli('start', 'cli-greet', '{"name":"Cy"}', '--wait', '--timeout', '20s');
    assert.equal(waited.code, 0, waited.err);
    assert.deepEqual(JSON.parse(waited.out.trim().split('\n')[1] as string), { text: 'Hello, Cy!' });
  });

  it('start --key-policy reuse gives a finished run\'s key to a new run; bad values change nothing', async () => {
    const first = await cli('start', 'cli-greet', '{"name":"Kay"}', '--key', 'kay', '--wait', '--timeout', '20s');
    assert.equal(first.code, 0, first.err);
    const id = first.out.trim().split('\n')[0] as string;
    const reused = await cli('start', 'cli-greet', '{"name":"Kim"}', '--key', 'kay', '--key-policy', 'reuse', '--wait', '--timeout', '20s');
    assert.equal(reused.code, 0, reused.err);
    const [next, output] = reused.out.trim().split('\n') as [string, string];
    assert.notEqual(next, id);
    assert.deepEqual(JSON.parse(output), { text: 'Hello, Kim!' });
    assert.equal((await fx.engine.client.get(id))?.formerKey, 'kay');
    for (const [args, message] of [
      [['--key', 'kay', '--key-policy', 'sometimes'], /--key-policy must be return, reuse, replace or supersede/],
      [['--key-policy', 'reuse'], /--key-policy needs --key/],
    ] as const) {
      const bad = await cli('start', 'cli-greet', '{"name":"Bad"}', ...args);
      assert.equal(bad.code, 2);
      assert.match(bad.err, message);
    }
    const { runs } = await fx.engine.client.list({ workflow: 'cli-greet', key: 'kay' });
    assert.deepEqual(runs.map((r) => r.id), [next]);
  });

  it('start --run-at 1h stores a run_at an hour from now (a duration means from now), and an ISO time as given', async () => {
    const t0 = Date.now();
    const later = await cli('start', 'cli-greet', '{"name":"Later"}', '--run-at', '1h');
    assert.equal(later.code, 0, later.err);
    const run = await fx.engine.client.get(later.out.trim());
    assert.equal(run?.status, 'pending');
    const ms = (run?.runAt?.getTime() ?? 0) - t0;
    assert.ok(ms > 3_590_000 && ms < 3_700_000, `run_at ${run?.runAt?.toISOString()} is an hour from ${new Date(t0).toISOString()}`);
    const at = await cli('start', 'cli-greet', '{"name":"At"}', '--run-at', '2099-01-31T12:00Z');
    assert.equal((await fx.engine.client.get(at.out.trim()))?.runAt?.toISOString(), '2099-01-31T12:00:00.000Z');
    const bad = await cli('start', 'cli-greet', '{"name":"Bad"}', '--run-at', 'soon');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--run-at must be an ISO time \(2026-01-31T12:00Z\) or a duration from now/);
    for (const id of [later.out.trim(), at.out.trim()]) await fx.engine.client.cancel(id);
  });

  it('start --deadline takes an ISO time as the deadline and a duration as a time limit; show prints it', async () => {
    const byTime = await cli('start', 'cli-greet', '{"name":"Dee"}', '--run-at', '1h', '--deadline', '2099-01-31T17:00Z');
    assert.equal(byTime.code, 0, byTime.err);
    assert.equal((await fx.engine.client.get(byTime.out.trim()))?.deadline?.toISOString(), '2099-01-31T17:00:00.000Z');
    const byLimit = await cli('start', 'cli-greet', '{"name":"Lim"}', '--run-at', '2099-01-31T12:00Z', '--deadline', '90m');
    assert.equal(byLimit.code, 0, byLimit.err);
    assert.equal((await fx.engine.client.get(byLimit.out.trim()))?.deadline?.toISOString(), '2099-01-31T13:30:00.000Z', '90 minutes from its run_at');
    const shown = await cli('show', byLimit.out.trim());
    assert.match(shown.out, /^deadline  2099-01-31.*\(in /m);
    const bad = await cli('start', 'cli-greet', '{"name":"Bad"}', '--deadline', 'whenever');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--deadline must be a duration/);
    // A bare number has no unit (it was read as milliseconds: the run was cancelled at once).
    const bare = await cli('start', 'cli-greet', '{"name":"Bare"}', '--deadline', '5');
    assert.equal(bare.code, 2);
    assert.match(bare.err, /--deadline needs a unit: 30s, 15m, 2h or 7 days \("5" has none\)/);
    const noSuchDay = await cli('start', 'cli-greet', '{"name":"Feb"}', '--deadline', '2099-02-30');
    assert.equal(noSuchDay.code, 2);
    assert.match(noSuchDay.err, /--deadline "2099-02-30" is not an ISO time/);
    // A bad --timeout is refused before the run is started (exit 2 changes nothing).
    const count = async () => (await fx.engine.client.list({ workflow: 'cli-greet', limit: 1000 })).runs.length;
    const before = await count();
    const badTimeout = await cli('start', 'cli-greet', '{"name":"Tim"}', '--wait', '--timeout', '5');
    assert.equal(badTimeout.code, 2);
    assert.match(badTimeout.err, /--timeout needs a unit/);
    assert.equal((await cli('fork', byTime.out.trim(), '--wait', '--timeout', 'soon')).code, 2);
    assert.equal(await count(), before, 'nothing started or forked');
    for (const id of [byTime.out.trim(), byLimit.out.trim()]) await fx.engine.client.cancel(id);
  });

  it('start refuses bad input with exit 2 and starts nothing', async () => {
    const before = (await fx.engine.client.list({ workflow: 'cli-greet', limit: 1000 })).runs.length;
    const badJson = await cli('start', 'cli-greet', '{name:');
    assert.equal(badJson.code, 2);
    assert.match(badJson.err, /^trellis start: input is not valid JSON/);
    // A number JavaScript cannot hold is refused, not stored changed (1e999 would be null).
    const inexact = await cli('start', 'cli-greet', '{"name":"x","n":1e999}');
    assert.equal(inexact.code, 2);
    assert.match(inexact.err, /^trellis start: input is not valid JSON \(the number 1e999 is out of JavaScript's range\)/);
    const badShape = await cli('start', 'cli-greet', '{"name":42}');
    assert.equal(badShape.code, 2);
    assert.match(badShape.err, /\[validation\].*name/);
    assert.equal(badShape.err.trim().split('\n').length, 1, 'one line, no stack');
    const unknown = await cli('start', 'no-such-workflow', '{}');
    assert.notEqual(unknown.code, 0);
    assert.equal((await cli('start')).code, 2);
    assert.equal((await fx.engine.client.list({ workflow: 'cli-greet', limit: 1000 })).runs.length, before);
  });

  it('signal by id and by workflow and key; a repeated --id is a duplicate', async () => {
    const id = (await cli('start', 'cli-approval', '{}', '--key', 'order-1')).out.trim();
    await waitFor(async () => (await statusOf(id)) === 'waiting', { what: 'the run to wait' });
    const bad = await cli('signal', id, 'approved', '{"by":7}');
    assert.equal(bad.code, 2, 'the declared schema refuses the payload');
    const sent = await cli('signal', '--workflow', 'cli-approval', '--key', 'order-1', 'approved', '{"by":"ada"}', '--id', 'm1');
    assert.equal(sent.code, 0, sent.err);
    assert.equal(sent.out, 'sent\n');
    assert.equal((await cli('signal', id, 'approved', '{"by":"ada"}', '--id', 'm1')).out, 'duplicate\n');
    assert.deepEqual(await fx.engine.client.result(id, { timeout: '20s' }), { by: 'ada' });
    const missing = await cli('signal', '--workflow', 'cli-approval', '--key', 'nope', 'approved', '{"by":"x"}');
    assert.equal(missing.code, 3);
  });

  it('signal --start signals the key\'s run or starts one with the input; bad use changes nothing', async () => {
    const started = await cli('signal', '--workflow', 'cli-approval', '--key', 'sws-1', '--start', '{}', 'approved', '{"by":"ada"}', '--id', 'm1');
    assert.equal(started.code, 0, started.err);
    const [word, id] = started.out.trim().split(' ') as [string, string];
    assert.equal(word, 'started');
    assert.match(id, UUID);
    assert.deepEqual(await fx.engine.client.result(id, { timeout: '20s' }), { by: 'ada' });
    // The key's run has finished: a repeated id starts nothing; another id starts the key's next run.
    assert.equal((await cli('signal', '--workflow', 'cli-approval', '--key', 'sws-1', '--start', '{}', 'approved', '{"by":"ada"}', '--id', 'm1')).out,
      `duplicate ${id}\n`);
    const waiting = (await cli('start', 'cli-approval', '{}', '--key', 'sws-2')).out.trim();
    await waitFor(async () => (await statusOf(waiting)) === 'waiting', { what: 'the run to wait' });
    assert.equal((await cli('signal', '--workflow', 'cli-approval', '--key', 'sws-2', '--start', '{}', 'approved', '{"by":"bo"}')).out, `sent ${waiting}\n`);
    assert.deepEqual(await fx.engine.client.result(waiting, { timeout: '20s' }), { by: 'bo' });
    const before = (await fx.engine.client.list({ workflow: 'cli-approval', limit: 1000 })).runs.length;
    assert.equal((await cli('signal', '--start', '{}', 'approved', '{"by":"x"}')).code, 2, 'needs --workflow and --key');
    assert.equal((await cli('signal', '--workflow', 'cli-approval', '--key', 'sws-3', '--start', '{bad', 'approved')).code, 2);
    const refused = await cli('signal', '--workflow', 'cli-approval', '--key', 'sws-3', '--start', '{}', 'approved', '{"by":7}');
    assert.equal(refused.code, 2, 'the declared schema refuses the payload');
    assert.equal((await fx.engine.client.list({ workflow: 'cli-approval', limit: 1000 })).runs.length, before);
  });

  it('request prints the run\'s answer; a refusal exits 1, a run that ended without answering 3, bad use 2 with nothing sent', async () => {
    const id = (await cli('start', 'cli-doubler', '{}', '--key', 'dbl-1')).out.trim();
    const asked = await cli('request', id, 'ask', '{"n":21}', '--id', 'q1', '--timeout', '20s');
    assert.equal(asked.code, 0, asked.err);
    assert.deepEqual(JSON.parse(asked.out), { doubled: 42 });
    const again = await cli('request', '--workflow', 'cli-doubler', '--key', 'dbl-1', 'ask', '{"n":21}', '--id', 'q1');
    assert.deepEqual(JSON.parse(again.out), { doubled: 42 }, 'a repeated --id prints the same answer');
    const refused = await cli('request', id, 'ask', '{"n":-1}', '--timeout', '20s');
    assert.equal(refused.code, 1);
    assert.match(refused.err, /cannot double -1/);
    const signals = async () => Number((await fx.db.pool.query('select count(*) from trellis.signals where run_id = $1', [id])).rows[0].count);
    const sent = await signals();
    assert.equal(sent, 2);
    for (const args of [['ask', '{"n":1}', '--timeout', '5'], ['ask', '{bad'], ['ask', '{"n":1}', '--id', 'x'.repeat(123)], []]) {
      assert.equal((await cli('request', id, ...args)).code, 2, args.join(' '));
    }
    assert.equal(await signals(), sent, 'bad use sent nothing');
    const started = await cli('request', '--workflow', 'cli-doubler', '--key', 'dbl-2', '--start', '{}', 'ask', '{"n":5}', '--id', 's1', '--timeout', '20s');
    assert.equal(started.code, 0, started.err);
    assert.deepEqual(JSON.parse(started.out), { doubled: 10 }, 'request with start: the key\'s run was started and answered');
    assert.equal((await cli('request', id, 'ask', '{"n":1}', '--start', '{}')).code, 2, '--start needs --workflow and --key');
    const shown = (await cli('show', id)).out;
    assert.match(shown, /signals \(2\)\n.*answered/);
    assert.match(shown, /q1 +\S.*\d/, 'the answered request shows when it was answered');
    assert.match(shown, /\(refused\)/);
    const ended = await cli('request', id, 'ask', '{"n":0}', '--timeout', '20s');
    assert.equal(ended.code, 3, ended.err);
    assert.match(ended.err, /completed without answering request/);
  });

  it('pause, resume and cancel print the new status; a refused transition exits 4', async () => {
    const id = (await cli('start', 'cli-approval', '{}')).out.trim();
    await waitFor(async () => (await statusOf(id)) === 'waiting', { what: 'the run to wait' });
    assert.deepEqual(await cli('pause', id, '--reason', 'checking'), { code: 0, out: 'paused\n', err: '' });
    const resumed = await cli('resume', id);
    assert.equal(resumed.code, 0, resumed.err);
    assert.equal(resumed.out, 'pending\n', 'a resumed run goes back to its queue');
    await waitFor(async () => (await statusOf(id)) === 'waiting', { what: 'the run to wait again' });
    const again = await cli('resume', id);
    assert.equal(again.code, 4, again.err);
    assert.match(again.err, /^trellis resume: \[illegal_transition\]/);
    // A waiting run goes back to a worker to run its cancellation (cleanup code), or is cancelled at once.
    assert.match((await cli('cancel', id, '--reason', 'no longer needed')).out, /^(cancelled|pending)\n$/);
    await waitFor(async () => (await statusOf(id)) === 'cancelled', { what: 'the run to be cancelled' });
  });

  it('retry runs a failed run again; a run id that is not a UUID or does not exist exits 2 or 3', async () => {
    const id = (await cli('start', 'cli-broken', '{}')).out.trim();
    await waitFor(async () => (await statusOf(id)) === 'failed', { what: 'the run to fail' });
    const retried = await cli('retry', id);
    assert.equal(retried.code, 0, retried.err);
    assert.match(retried.out, /^(pending|running|failed)\n$/);
    const notUuid = await cli('cancel', 'abc');
    assert.equal(notUuid.code, 2);
    assert.match(notUuid.err, /^trellis cancel: run id "abc" is not a UUID/);
    const gone = await cli('cancel', '00000000-0000-4000-8000-000000000000');
    assert.equal(gone.code, 3);
    assert.equal((await cli('cancel', id, '--workflow', 'cli-broken')).code, 2, 'an id and --workflow at once');
  });
});

describe('trellis fork', () => {
  it('forks a run from a call: prints the new run\'s id, show names the original; bad input exits 2 or 3', async () => {
    const id = (await cli('start', 'cli-greet', '{"name":"Fay"}', '--key', 'fay')).out.trim();
    assert.deepEqual(await fx.engine.client.result(id, { timeout: '20s' }), { text: 'Hello, Fay!' });
    const forked = await cli('fork', '--workflow', 'cli-greet', '--key', 'fay', '--from', '1', '--wait', '--timeout', '20s');
    assert.equal(forked.code, 0, forked.err);
    const [newId, output] = forked.out.trim().split('\n') as [string, string];
    assert.match(newId, UUID);
    assert.notEqual(newId, id);
    assert.deepEqual(JSON.parse(output), { text: 'Hello, Fay!' });
    const shown = await cli('show', newId);
    assert.match(shown.out, new RegExp(`^forked    from ${id} at call #1$`, 'm'));
    const before = (await fx.engine.client.list({ workflow: 'cli-greet' })).runs.length;
    assert.equal((await cli('fork', id, '--from', 'two')).code, 2);
    assert.equal((await cli('fork', id, '--timeout', '1s')).code, 2);
    assert.equal((await cli('fork', '00000000-0000-4000-8000-000000000000')).code, 3);
    assert.equal((await cli('fork', id, '--version', 'nine')).code, 3);
    assert.equal((await fx.engine.client.list({ workflow: 'cli-greet' })).runs.length, before, 'nothing started');
  });
});

describe('trellis ls, show, diagram and stats', () => {
  let parentId: string;
  let brokenId: string;
  before(async () => {
    parentId = (await cli('start', 'cli-parent', '{"name":"Kid"}', '--metadata', '{"team":"a"}')).out.trim();
    brokenId = (await cli('start', 'cli-broken', '{}')).out.trim();
    await fx.engine.client.result(parentId, { timeout: '20s' });
    await waitFor(async () => (await statusOf(brokenId)) === 'failed', { what: 'the run to fail' });
  });

  it('ls filters by workflow and status, pages with a cursor, and prints JSON', async () => {
    const listed = await cli('ls', '--workflow', 'cli-parent');
    assert.equal(listed.code, 0, listed.err);
    assert.match(listed.out, /^id\s+workflow\s+status/);
    assert.match(listed.out, new RegExp(`${parentId}\\s+cli-parent@1\\s+completed`));
    const failed = await cli('ls', '--status', 'failed,cancelled', '--json');
    const runs = JSON.parse(failed.out).runs as { id: string; status: string }[];
    assert.ok(runs.some((r) => r.id === brokenId));
    assert.ok(runs.every((r) => r.status === 'failed' || r.status === 'cancelled'));
    const first = await cli('ls', '--limit', '1', '--json');
    const page = JSON.parse(first.out) as { runs: { id: string }[]; nextCursor: string };
    assert.equal(page.runs.length, 1);
    const second = JSON.parse((await cli('ls', '--limit', '1', '--json', '--cursor', page.nextCursor)).out) as typeof page;
    assert.notEqual(second.runs[0]?.id, page.runs[0]?.id);
    assert.match((await cli('ls', '--limit', '1')).err, /^more: add --cursor \S+\n$/);
    assert.equal(JSON.parse((await cli('ls', '--since', '1h', '--until', '2000-01-01', '--json')).out).runs.length, 0);
    for (const bad of [['--status', 'done'], ['--limit', '0'], ['--since', 'yesterday'], ['--cursor', 'zzz'], ['extra']]) {
      const r = await cli('ls', ...bad);
      assert.equal(r.code, 2, `${bad.join(' ')}: ${r.err}`);
      assert.equal(r.err.trim().split('\n').length, 1);
    }
  });

  it('show prints the step timeline, the child and the error', async () => {
    const shown = await cli('show', parentId);
    assert.equal(shown.code, 0, shown.err);
    assert.match(shown.out, /status\s+completed/);
    assert.match(shown.out, /steps \(1\)/);
    assert.match(shown.out, /child\s+cli-greet\s+completed\s+1\s+\+\S+\s+\S+\s+→ [0-9a-f-]{36} \(completed\)/);
    assert.match(shown.out, /children \(1\)\n.*\n[0-9a-f-]{36}\s+cli-greet\s+completed\s+#0/);
    const failed = await cli('show', brokenId);
    assert.match(failed.out, /explode\s+failed/);
    assert.match(failed.out, /error\s+.*the <bad> "thing" broke/);
    const json = JSON.parse((await cli('show', brokenId, '--json')).out);
    assert.deepEqual(json.steps.map((s: { name: string }) => s.name), ['fine', 'explode']);
  });

  it('show of a run not finished says so, with how long since it started (no "took")', async () => {
    const run = await fx.engine.client.start(approval, {});
    await waitFor(async () => (await statusOf(run.id)) === 'waiting', { what: 'the approval waiting for its signal' });
    const shown = await cli('show', run.id);
    assert.equal(shown.code, 0, shown.err);
    assert.match(shown.out, /^finished  -  \(not yet: \S+ since it started\)$/m);
    await fx.engine.client.cancel(run.id);
    await fx.engine.client.result(run.id, { timeout: '20s' }).catch(() => undefined);
    assert.match((await cli('show', run.id)).out, /^finished  \d{4}-\d\d-\d\d \S+  \(took \S+\)$/m);
  });

  it('show lists received signals', async () => {
    const id = (await cli('start', 'cli-approval', '{}')).out.trim();
    await cli('signal', id, 'approved', '{"by":"eve"}', '--id', 'sig-9');
    await fx.engine.client.result(id, { timeout: '20s' });
    const shown = await cli('show', id);
    assert.match(shown.out, /signals \(1\)\n.*\napproved\s+\S+ \S+\s+\S+ \S+\s+#1\s+sig-9/);
  });

  it('diagram draws the recorded path as Mermaid, labels escaped', async () => {
    const drawn = await cli('diagram', brokenId);
    assert.equal(drawn.code, 0, drawn.err);
    const lines = drawn.out.split('\n');
    assert.equal(lines[0], 'flowchart TD');
    assert.ok(lines.includes('  start --> s0') && lines.includes('  s0 --> s1') && lines.includes('  s1 --> now'));
    assert.match(drawn.out, /s1\["step: explode<br\/>failed · \S+<br\/>NonRetryableError: the #60;bad#62; #34;thing#34; broke"\]/);
    assert.match(drawn.out, /class s1,now failed/);
    const child = await cli('diagram', parentId, '--markdown');
    assert.match(child.out, /^```mermaid\nflowchart TD\n[^]*s0 -\.-> c0[^]*```\n$/);
    assert.equal((await cli('diagram', '00000000-0000-4000-8000-000000000000')).code, 3);
  });

  it('diagram --template draws a stored template as a Mermaid flowchart', async () => {
    await fx.db.pool.query(`select trellis.template_set('cli-pipeline', $1)`,
      [JSON.stringify({ steps: [{ name: 'fetch', retry: { maxAttempts: 3 } }, { name: 'store' }] })]);
    const drawn = await cli('diagram', '--template', 'cli-pipeline');
    assert.equal(drawn.code, 0, drawn.err);
    assert.equal(drawn.out, [
      'flowchart TB', '  start(((start)))', '  finish(((end)))', '  e0["fetch<br/>3 attempts"]', '  e1["store"]',
      '  start --> e0', '  e0 --> e1', '  e1 --> finish', '',
    ].join('\n'));
    assert.equal((await cli('diagram', '--template', 'cli-pipeline', '--template-version', '9')).code, 3, 'an unknown version');
    assert.equal((await cli('diagram')).code, 2, 'neither a run nor a template');
  });

  it('diagram --machine draws the state machine a module exports, as its README shows', async () => {
    const module = fileURLToPath(new URL('../../examples/onboarding/machine.ts', import.meta.url));
    const readme = await readFile(new URL('../../examples/onboarding/README.md', import.meta.url), 'utf8');
    const expected = /```mermaid\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(expected?.startsWith('stateDiagram-v2\n'), 'the README shows the machine');
    const drawn = await cli('diagram', '--machine', 'onboarding', '--module', module);
    assert.equal(drawn.code, 0, drawn.err);
    assert.equal(drawn.out, expected);
    // No database is needed for a definition.
    const io = captureIo({});
    assert.equal(await main(['diagram', '--machine', 'onboarding', '--module', module, '--markdown'], io), 0, io.stderr);
    assert.equal(io.stdout, `\`\`\`mermaid\n${expected}\`\`\`\n`);
  });

  it('diagram --machine refuses a bad module or name with exit 2 and one line', async () => {
    const module = fileURLToPath(new URL('../../examples/onboarding/machine.ts', import.meta.url));
    const fixtures = fileURLToPath(new URL('../fixtures/', import.meta.url));
    const refused = async (args: string[], message: RegExp) => {
      const r = await cli('diagram', ...args);
      assert.equal(r.code, 2, `${args.join(' ')}: ${r.err}`);
      assert.equal(r.out, '');
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
      assert.match(r.err, message);
      return r.err;
    };
    await refused(['--machine', 'onboarding', '--module', 'no/such/module.ts'], /^trellis diagram: module "no\/such\/module\.ts" does not exist/);
    await refused(['--machine', 'onboarding', '--module', fixtures], /is not a JavaScript or TypeScript module/);
    // A file that does not parse as a module (a syntax error, JSON): exit 2, naming it, not node's exit 1.
    const { mkdtemp, writeFile } = await import('node:fs/promises');
    const dir = await mkdtemp(`${(await import('node:os')).tmpdir()}/trellis-cli-`);
    await writeFile(`${dir}/broken.mjs`, 'export const x = {;\n');
    await refused(['--machine', 'onboarding', '--module', `${dir}/broken.mjs`], /broken\.mjs" is not a module it can load/);
    await (await import('node:fs/promises')).rm(dir, { recursive: true, force: true });
    await refused(['--machine', 'onboarding', '--module', `${fixtures}cli-workflows.ts`],
      /exports no state machine named "onboarding" \(it exports none/);
    await refused(['--machine', "x'; drop table trellis.runs; --\"", '--module', module],
      /exports no state machine named "x'; drop table trellis\.runs; --\\"" \(it exports "onboarding"\)/);
    const long = await refused(['--machine', 'm'.repeat(5000), '--module', module], /named "m{60}…"/);
    assert.ok(long.length < 400 + module.length, 'a bounded prefix of the name');
    await refused(['--machine', 'onboarding'], /--machine and --module go together/);
    await refused(['--module', module], /give one of a run id, --template NAME or --machine NAME/);
    await refused(['--machine', 'onboarding', '--module', module, '--template', 'cli-pipeline'], /give one of/);
    assert.equal((await fx.db.pool.query(`select to_regclass('trellis.runs') is not null as ok`)).rows[0].ok, true);
  });

  it('stats shows queues and workflows; --json has the numbers', async () => {
    const text = await cli('stats');
    assert.equal(text.code, 0, text.err);
    assert.match(text.out, /^queues\n/);
    assert.match(text.out, /workflows\n.*\ncli-approval@1\s+default/);
    const json = JSON.parse((await cli('stats', '--json')).out);
    assert.ok(Array.isArray(json.queues) && Array.isArray(json.workers));
    const greet = json.workflows.find((w: { name: string }) => w.name === 'cli-greet');
    // camelCase, as every other command's JSON.
    assert.deepEqual(Object.keys(greet).sort(), ['lastSeenAt', 'name', 'queue', 'version']);
    assert.ok(!Number.isNaN(Date.parse(greet.lastSeenAt)));
  });

  it('status counts runs by status', async () => {
    const json = JSON.parse((await cli('status', '--json')).out);
    assert.ok(json.runs.completed >= 2 && json.runs.failed >= 1);
  });
});

describe('trellis output and terminal control characters', () => {
  it('ls, show and events write a key or an error message with escape sequences or bidirectional controls as visible escapes, never raw', async () => {
    const key = 'k\u001b]0;pwned\u0007\u001b[2J\u001b[31mFAKE\rOVER\u009b\u202eevil\u2066';
    const run = await fx.engine.client.start(approval, {}, { key });
    await fx.engine.client.cancel(run.id, 'why\u001b[2J');
    await waitFor(async () => (await statusOf(run.id)) === 'cancelled', { what: 'the run cancelled' });
    for (const args of [['ls', '--workflow', 'cli-approval'], ['show', run.id], ['events', '--workflow', 'cli-approval'], ['ls', '--json', '--workflow', 'cli-approval']]) {
      const out = await cli(...args);
      assert.equal(out.code, 0, `${args.join(' ')}: ${out.err}`);
      assert.ok(!/[\u0000-\u0008\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/.test(out.out), `${args.join(' ')} wrote a raw control character`);
    }
    const shown = await cli('show', run.id);
    assert.ok(shown.out.includes('k\\u001b]0;pwned\\u0007'), 'the key is shown, escaped');
    assert.ok(shown.out.includes('\\u202eevil\\u2066'), 'a bidirectional override is shown as its escape');
    // --json is still JSON, and reads back as the stored key.
    const listed = JSON.parse((await cli('ls', '--json', '--workflow', 'cli-approval')).out) as { runs: { key: string | null }[] };
    assert.ok(listed.runs.some((r) => r.key === key));
  });

  it('a newline or tab in a key or signal id is written as its escape: it cannot forge a row of ls or a line of show', async () => {
    const forged = 'x\n00000000-1111-4000-8000-000000000000  cli-approval@1  completed\tadmin-approved';
    const run = await fx.engine.client.start(approval, {}, { key: forged });
    await fx.engine.client.signal(run.id, 'approved', { by: 'x' }, { id: 'id\nwith a line' });
    const rows = (await cli('ls', '--workflow', 'cli-approval', '--limit', '200')).out.split('\n');
    assert.ok(!rows.some((l) => l.startsWith('00000000-1111-4000-8000-000000000000')), 'no forged row');
    assert.ok(rows.some((l) => l.includes('x\\n00000000-1111') && l.includes('\\tadmin-approved')), 'the key, escaped, on its run\'s row');
    const shown = (await cli('show', run.id)).out;
    assert.ok(shown.includes(`key ${forged.replaceAll('\n', '\\n').replaceAll('\t', '\\t')}`), shown);
    assert.ok(shown.includes('id\\nwith a line'), 'the signal id, escaped');
  });

  it('times without a zone are UTC, as the CLI prints them; an empty --status and a dash value are refused, not read otherwise', async () => {
    const run = await fx.engine.client.start(greet, { name: 'Utc' });
    const printed = (await cli('ls', '--workflow', 'cli-greet', '--limit', '1')).out.split('\n')[1]!;
    const created = /\d{4}-\d{2}-\d{2} \d{2}:\d{2}:\d{2}\.\d{3}/.exec(printed)![0];
    // Pasted back as --since on a machine in another zone, it is the same instant: the run is listed.
    const zone = process.env.TZ;
    process.env.TZ = 'America/New_York';
    try {
      const since = await cli('ls', '--workflow', 'cli-greet', '--since', created, '--json');
      assert.ok((JSON.parse(since.out) as { runs: { id: string }[] }).runs.some((r) => r.id === run.id), since.err);
      const later = new Date(`${created.replace(' ', 'T')}Z`).getTime() + 1;
      const after = await cli('ls', '--workflow', 'cli-greet', '--since', new Date(later).toISOString().replace('T', ' ').replace('Z', ''), '--json');
      assert.ok(!(JSON.parse(after.out) as { runs: { id: string }[] }).runs.some((r) => r.id === run.id), 'a millisecond later: not listed');
    } finally {
      if (zone === undefined) delete process.env.TZ;
      else process.env.TZ = zone;
    }
    const before = (await fx.engine.client.list({ limit: 1000 })).runs.filter((r) => r.status !== 'cancelled').length;
    for (const status of ['', ',', ' , ']) {
      const r = await cli('cancel', '--all', '--status', status, '--dry-run');
      assert.equal(r.code, 2, `--status ${JSON.stringify(status)}: ${r.out}`);
      assert.match(r.err, /--status needs one or more of/);
    }
    assert.equal((await fx.engine.client.list({ limit: 1000 })).runs.filter((r) => r.status !== 'cancelled').length, before, 'nothing cancelled');
    const dashed = await cli('start', 'cli-greet', '{"name":"x"}', '--priority', '-5');
    assert.equal(dashed.code, 2);
    assert.match(dashed.err, /--priority takes a value starting with "-" only as --priority=VALUE/);
    const far = await cli('ls', '--since', '1000000000000 days');
    assert.equal(far.code, 2);
    assert.match(far.err, /--since must be an ISO time .* or a duration ago/);
    assert.doesNotMatch(far.err, /NaN|DeprecationWarning/);
  });
});

describe('trellis purge', () => {
  it('deletes finished runs older than --older-than in batches and says how many', async () => {
    const r = await cli('purge', '--older-than', '0s', '--workflow', 'cli-greet', '--batch', '1');
    assert.equal(r.code, 0, r.err);
    const n = Number(/^purged (\d+) runs?\n$/.exec(r.out)?.[1]);
    assert.ok(n >= 1);
    assert.equal(r.err.trim().split('\n').length, n, 'a plain line per batch when stderr is not a terminal');
    assert.match(r.err, new RegExp(`^purged ${n} of ${n}$`, 'm'));
    assert.equal((await fx.engine.client.list({ workflow: 'cli-greet', status: 'completed' })).runs.length, 0);
    assert.equal((await cli('purge')).code, 2, '--older-than is required');
    assert.equal((await cli('purge', '--older-than', 'soon')).code, 2);
  });
});

describe('trellis usage errors', () => {
  it('unknown commands and options, a missing database: one line on stderr, exit 2', async () => {
    for (const args of [['frobnicate'], ['ls', '--frobnicate'], ['--frobnicate'], ['sql', '--from', 'x'], ['show']]) {
      const r = await cli(...args);
      assert.equal(r.code, 2, args.join(' '));
      assert.equal(r.err.trim().split('\n').length, 1, r.err);
      assert.equal(r.out, '');
    }
    const io = captureIo({});
    assert.equal(await main(['ls'], io), 2);
    assert.equal(io.stderr, 'trellis ls: set DATABASE_URL or pass --database-url; see trellis ls --help\n');
    // Text pg would read as the name of a database on a host called "base".
    const notUrl = captureIo({});
    assert.equal(await main(['ls', '--database-url', 'notaurl'], notUrl), 2);
    assert.match(notUrl.stderr, /--database-url is not a connection string/);
    // URLs pg cannot read (new URL throws): 2 as well, and the password is never printed.
    for (const url of ['postgres://u:pw@[zz/db', 'postgres://u:pw@h:5432:99/db', 'postgres://u:pw@h:notaport/db']) {
      const bad = captureIo({});
      assert.equal(await main(['ls', '--database-url', url], bad), 2, url);
      assert.match(bad.stderr, /--database-url is not a connection string pg can read/);
      assert.doesNotMatch(bad.stderr, /pw/);
    }
    const badEnv = captureIo({ DATABASE_URL: 'postgres://u:pw@[zz/db' });
    assert.equal(await main(['ls'], badEnv), 2);
    assert.match(badEnv.stderr, /DATABASE_URL is not a connection string pg can read/);
  });

  it('events --workflow with a name no workflow can have exits 2, as ls does', async () => {
    for (const name of ["it's", 'x'.repeat(5000)]) {
      assert.equal((await cli('events', '--workflow', name)).code, 2);
      assert.equal((await cli('ls', '--workflow', name)).code, 2);
    }
  });

  it('dashboard: a port in use exits 1 (not 5, the database\'s code); a database without the schema exits 6 before it listens', async () => {
    const busy = createServer();
    await new Promise<void>((resolve) => busy.listen(0, '127.0.0.1', resolve));
    try {
      const port = String((busy.address() as AddressInfo).port);
      const r = await cli('dashboard', '--port', port);
      assert.equal(r.code, 1, r.err);
      assert.match(r.err, /EADDRINUSE/);
    } finally {
      await new Promise((resolve) => busy.close(resolve));
    }
    const empty = await createDatabase('trellis_cli_empty');
    try {
      const io = captureIo({ DATABASE_URL: empty.url });
      assert.equal(await main(['dashboard', '--port', '0'], io), 6, io.stderr);
      assert.equal(io.stdout, '', 'it never said it was serving');
    } finally {
      await empty.drop();
    }
  });

  it('an option that takes one value, given twice, is refused; a repeatable one is not', async () => {
    const twice = await cli('ls', '--limit', '5', '--limit', '50');
    assert.equal(twice.code, 2);
    assert.equal(twice.err, 'trellis ls: --limit is given more than once (it takes one value); see trellis ls --help\n');
    assert.equal((await cli('ls', '--limit=5', '--workflow', 'x', '--limit=6')).code, 2, 'in either spelling');
    const repeated = await cli('ls', '--status', 'completed', '--status', 'failed', '--json');
    assert.equal(repeated.code, 0, repeated.err);
    assert.equal((await cli('ls', '--json', '--json')).code, 0, 'a flag twice is harmless');
  });

  it('migrate and worker take --database-url alone (they open their own connections and only write)', async () => {
    for (const name of ['migrate', 'worker']) {
      const help = (await cli(name, '--help')).out;
      assert.match(help, /--database-url URL/);
      assert.doesNotMatch(help, /--read-url|--query-timeout/, name);
      const refused = await cli(name, '--read-url', 'postgres://x@127.0.0.1/db');
      assert.equal(refused.code, 2, name);
      assert.match(refused.err, /Unknown option '--read-url'/);
    }
    assert.match((await cli('ls', '--help')).out, /--read-url URL[\s\S]*--query-timeout DURATION/);
  });

  it('every command has --help, and --version prints the version', async () => {
    for (const name of ['migrate', 'sql', 'status', 'worker', 'start', 'signal', 'cancel', 'pause', 'resume', 'retry', 'fork', 'ls', 'show', 'stats', 'purge', 'diagram']) {
      const r = await cli(name, '--help');
      assert.equal(r.code, 0);
      assert.match(r.out, new RegExp(`^usage: trellis ${name}`));
    }
    const { SCHEMA_MIGRATION, SCHEMA_SQL_REVISION } = await import('../../src/protocol/schema-version.generated.ts');
    assert.equal((await cli('--version')).out.replace(/^\d+\.\d+\.\d+ /, ''), `(schema migration ${SCHEMA_MIGRATION}, SQL revision ${SCHEMA_SQL_REVISION})\n`);
  });
});

describe('trellis schedules and roles', () => {
  it('schedules lists, pauses, resumes and deletes; an unknown name exits 3 and a bad action 2', async () => {
    await fx.engine.client.schedules.set('cli-hourly', { cron: '0 * * * *', timeZone: 'Europe/Berlin', workflow: greet, input: { name: 'Cron' } });
    const listed = await cli('schedules');
    assert.equal(listed.code, 0, listed.err);
    assert.match(listed.out, /cli-hourly\s+0 \* \* \* \*\s+Europe\/Berlin\s+cli-greet/);
    const json = JSON.parse((await cli('schedules', '--json')).out) as { name: string; paused: boolean }[];
    assert.deepEqual(json.map((s) => [s.name, s.paused]), [['cli-hourly', false]]);
    assert.match((await cli('schedules', 'pause', 'cli-hourly')).out, /^cli-hourly: paused$/m);
    assert.equal((await fx.engine.client.schedules.get('cli-hourly'))?.paused, true);
    // The next tick at once, before the ticker has stored it (an hourly cron: a whole hour, Berlin or UTC).
    assert.match((await cli('schedules', 'resume', 'cli-hourly')).out, /^cli-hourly: active, next \d{4}-\d\d-\d\d \d\d:00:00\.000$/m);
    assert.equal((await cli('schedules', 'pause', 'no-such-schedule')).code, 3);
    assert.equal((await cli('schedules', 'frobnicate', 'cli-hourly')).code, 2);
    assert.equal((await cli('schedules', 'pause')).code, 2);
    assert.equal((await cli('schedules', 'delete', 'cli-hourly')).code, 0);
    assert.equal(await fx.engine.client.schedules.get('cli-hourly'), undefined);
    assert.equal((await cli('schedules', 'delete', 'cli-hourly')).code, 3);
  });

  it('schedules trigger starts a run now and backfill the ticks of a range that have none; bad options exit 2', async () => {
    await fx.engine.client.schedules.set('cli-every-hour', { cron: '0 * * * *', workflow: greet, input: { name: 'Tick' }, overlap: 'allow', paused: true });
    const triggered = await cli('schedules', 'trigger', 'cli-every-hour', '--json');
    assert.equal(triggered.code, 0, triggered.err);
    const [tick] = JSON.parse(triggered.out) as { tick: string; runId: string; outcome: string }[];
    assert.equal(tick?.outcome, 'started');
    assert.equal((await fx.engine.client.get(tick!.runId))?.workflow, greet.name);
    const to = new Date();
    const range = ['--from', new Date(to.getTime() - 3 * 3_600_000).toISOString(), '--to', to.toISOString()];
    const filled = await cli('schedules', 'backfill', 'cli-every-hour', ...range);
    assert.equal(filled.code, 0, filled.err);
    assert.equal(filled.out.match(/ started /g)?.length, 3, filled.out);
    const again = await cli('schedules', 'backfill', 'cli-every-hour', ...range);
    assert.equal(again.out.match(/ existing /g)?.length, 3, 'the ticks that ran are found, not run again');
    assert.equal((await cli('schedules', 'backfill', 'cli-every-hour', '--from', '2h')).code, 0, 'a duration ago');
    assert.equal((await cli('schedules', 'backfill', 'cli-every-hour')).code, 2, 'backfill needs --from');
    assert.equal((await cli('schedules', 'trigger', 'cli-every-hour', '--overlap', 'sometimes')).code, 2);
    assert.equal((await cli('schedules', 'pause', 'cli-every-hour', '--from', '1h')).code, 2);
    assert.equal((await cli('schedules', 'trigger', 'no-such-schedule')).code, 3);
    await fx.engine.client.schedules.delete('cli-every-hour');
  });

  it('roles shows the engine duties the running worker holds', async () => {
    await waitFor(async () => (await fx.engine.client.roles.list()).some((r) => r.held), { what: 'a worker to hold a duty' });
    const shown = await cli('roles');
    assert.equal(shown.code, 0, shown.err);
    assert.match(shown.out, /trellis\.(purge|schedules)\s+\S+\s+\d+\s+yes/);
    const json = JSON.parse((await cli('roles', '--json')).out) as { name: string; held: boolean }[];
    assert.ok(json.some((r) => r.held && r.name.startsWith('trellis.')));
  });
});

describe('trellis --query-timeout: no command waits unbounded', () => {
  it('a statement that waits on a held row lock, or on a connection that went silent, fails with exit 5 and changes nothing', async () => {
    const started = await cli('start', 'cli-greet', '{"name":"Held"}', '--run-at', '1h');
    const id = started.out.trim();
    const holder = await fx.db.pool.connect();
    try {
      await holder.query('begin');
      await holder.query('select 1 from trellis.runs where id = $1 for update', [id]);
      const t0 = Date.now();
      const paused = await cli('pause', id, '--query-timeout', '300ms');
      assert.equal(paused.code, 5, paused.err);
      assert.match(paused.err, /Query read timeout \(no answer within --query-timeout; a statement that was waiting on a lock may still complete/);
      assert.ok(Date.now() - t0 < 10_000, 'bounded by the timeout');
      assert.equal(await statusOf(id), 'pending', 'nothing changed while the lock was held');
    } finally {
      await holder.query('rollback');
      holder.release();
    }

    const { startProxy } = await import('../helpers/tcp-proxy.ts');
    const url = new URL(fx.db.url);
    const proxy = await startProxy({ host: url.hostname, port: Number(url.port) });
    try {
      proxy.freezingNew = true;
      url.port = String(proxy.port);
      const io = captureIo({ DATABASE_URL: url.toString() });
      const code = await main(['ls', '--query-timeout', '300ms'], io);
      assert.equal(code, 5, io.stderr);
    } finally {
      await proxy.close();
    }
    const bad = await cli('ls', '--query-timeout', '5');
    assert.equal(bad.code, 2);
    assert.match(bad.err, /--query-timeout needs a unit/);
    await fx.engine.client.cancel(id);
  });
});

describe('trellis replay-check', () => {
  it('replays the waiting runs against the module\'s code: exit 0 when they replay, 1 with a line per run that would break', async () => {
    const run = await fx.engine.client.start(approval, {});
    await waitFor(async () => (await statusOf(run.id)) === 'waiting', { what: 'the approval waiting for its signal' });
    const same = fileURLToPath(new URL('../fixtures/cli-workflows.ts', import.meta.url));
    const changed = fileURLToPath(new URL('../fixtures/cli-workflows-changed.ts', import.meta.url));
    const ok = await cli('replay-check', same, '--workflow', 'cli-approval');
    assert.equal(ok.code, 0, ok.err);
    assert.match(ok.out, /^checked [1-9]\d* runs? of cli-approval@1: all replay$/m);
    const bad = await cli('replay-check', changed);
    assert.equal(bad.code, 1, bad.err);
    assert.match(bad.out, new RegExp(`^${run.id} cli-approval@1 waiting: .*call #0 is step "request" but the history has step "ask"`, 'm'));
    assert.match(bad.out, /^checked [1-9]\d* runs? of cli-approval@1: [1-9]\d* would break$/m);
    const usage = await cli('replay-check', same, '--status', 'sleeping');
    assert.equal(usage.code, 2);
    assert.match(usage.err, /unknown status "sleeping" \(one of pending, running, waiting, paused, completed, failed, cancelled\)/);
    // Comma-separated, as every other --status.
    const listed = await cli('replay-check', same, '--workflow', 'cli-approval', '--status', 'waiting,paused');
    assert.equal(listed.code, 0, listed.err);
    assert.match(listed.out, /^checked [1-9]\d* runs? of cli-approval@1: all replay$/m);
    assert.equal((await cli('replay-check', same, '--status', ',')).code, 2, 'an empty list is refused');
    const none = await cli('replay-check', same, '--workflow', 'no-such');
    assert.equal(none.code, 2);
    assert.equal(await statusOf(run.id), 'waiting', 'nothing changed');
    await fx.engine.client.cancel(run.id);
  });
});

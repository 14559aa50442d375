import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { NotFoundError, ValidationError, WorkflowFailedError } from '../../src/errors.ts';
import { connectTemplates } from '../../src/templates/client.ts';
import { templateWorkflow } from '../../src/templates/compile.ts';
import { createStepRegistry } from '../../src/templates/registry.ts';
import { createTestEnv, type TestEnv } from '../../src/testing/env.ts';
import { deferred } from '../helpers/engine.ts';

const calls: string[] = [];
const steps = createStepRegistry()
  .registerStep('add', (state) => { state.n = (state.n as number) + 1; })
  .registerStep('double', (state) => { state.n = (state.n as number) * 2; })
  .registerStep('stop-if-big', (state, ctx) => ((state.n as number) > 10 ? ctx.end() : undefined))
  .registerStep('boom', () => { throw new Error('boom'); }, { retry: { maxAttempts: 1 } })
  .registerStep('reserve', (state) => { state.reserved = true; })
  .registerStep('release', (state) => { state.reserved = false; state.released = true; })
  .registerHook('trace', (e) => { calls.push(`${e.entry ?? 'run'}${e.compensation ? ' compensate' : ''}${e.error ? ' (failed)' : ''}`); })
  .registerHook('start', () => { calls.push('before workflow'); })
  .registerHook('finish', (e) => { calls.push(`after workflow n=${String(e.state.n)}`); })
  .registerStep('charge', (state) => { charges++; state.charged = true; })
  .registerHook('audit-down', () => { throw new Error('audit sink down'); })
  .registerHook('meddle', (e) => { e.state.n = 1000; e.state.meddled = true; })
  // A body that heeds no signal: it returns when the test lets it.
  .registerStep('slow', async (state) => { await slowGate.promise; state.late = true; }, { retry: { maxAttempts: 1 } });
let charges = 0;
let slowGate = deferred();

describe('step templates', () => {
  let env: TestEnv;
  const templates = () => connectTemplates(env.client, steps);
  before(async () => {
    env = await createTestEnv({ workflows: ['calc', 'early', 'careful', 'saga', 'sql-made', 'hooked', 'long', 'timed'].map((name) => templateWorkflow(name, steps))
      .concat(templateWorkflow('queued', steps, { queue: 'tpl-q' })) });
  });
  after(async () => env?.close());

  it('runs the entries in order on one shared state, persisted after each step, hooks in order', async () => {
    const version = await templates().set('calc', {
      steps: [{ name: 'add' }, { name: 'double' }, { name: 'add again', step: 'add' }],
      hooks: { beforeWorkflow: ['start'], beforeStep: ['trace'], afterStep: ['trace'], afterWorkflow: ['finish'] },
    });
    assert.equal(version, 1);
    calls.length = 0;
    const run = await templates().start('calc', { n: 1 });
    const out = await run.result({ timeout: '20s' });
    assert.deepEqual(out, { state: { n: 5 }, endedEarly: false, failed: [] });
    assert.deepEqual(calls, ['before workflow', 'add', 'add', 'double', 'double', 'add again', 'add again', 'after workflow n=5']);
    await env.assertHistory(run, [
      { kind: 'step', name: 'add', status: 'completed', output: { state: { n: 2 }, end: false } },
      { kind: 'step', name: 'double', status: 'completed', output: { state: { n: 4 }, end: false } },
      { kind: 'step', name: 'add again', status: 'completed', output: { state: { n: 5 }, end: false } },
    ]);
    const row = await env.client.get(run.id);
    assert.equal(row?.workflow, 'template:calc');
  });

  it('stores versions; a run keeps the version it started on', async () => {
    const t = templates();
    assert.equal(await t.set('calc', { steps: [{ name: 'add' }, { name: 'double' }, { name: 'add again', step: 'add' }],
      hooks: { beforeWorkflow: ['start'], beforeStep: ['trace'], afterStep: ['trace'], afterWorkflow: ['finish'] } }), 1, 'unchanged: same version');
    assert.equal(await t.set('calc', { steps: [{ name: 'double' }] }), 2);
    const v1 = await t.start('calc', { n: 1 }, { templateVersion: 1 });
    const v2 = await t.start('calc', { n: 1 });
    assert.equal((await v1.result({ timeout: '20s' })).state.n, 5);
    assert.equal((await v2.result({ timeout: '20s' })).state.n, 2);
  });

  it('is started by name from SQL, and a step can end the run early', async () => {
    await templates().set('early', { steps: [{ name: 'double' }, { name: 'stop-if-big' }, { name: 'add' }] });
    const { rows } = await env.pool.query(`select trellis.template_start('early', '{"n": 6}') as id`);
    const done = await env.drive(rows[0].id);
    assert.equal(done.status, 'completed');
    assert.deepEqual(done.output, { state: { n: 12 }, endedEarly: true, failed: [] });
    const small = await env.pool.query(`select trellis.template_start('early', '{"n": 1}') as id`);
    assert.deepEqual((await env.drive(small.rows[0].id)).output, { state: { n: 3 }, endedEarly: false, failed: [] });
  });

  it('takes a run\'s deadline or time limit, from TS and from SQL; a bad one is refused and nothing is written', async () => {
    await templates().set('early', { steps: [{ name: 'double' }, { name: 'stop-if-big' }, { name: 'add' }] });
    const at = new Date((await env.now()).getTime() + 3_600_000);
    const fromTs = await templates().start('early', { n: 1 }, { deadline: at });
    assert.equal((await env.client.get(fromTs.id))?.deadline?.getTime(), at.getTime());
    assert.deepEqual((await fromTs.result({ timeout: '20s' })).state, { n: 3 });
    // Nobody serves this queue: the run is still pending when its time limit runs out.
    const { rows } = await env.pool.query(
      `select trellis.template_start('early', '{"n": 1}', '{"queue": "nobody-serves-this", "time_limit": "10 minutes"}') as id`);
    await env.advance('11 minutes');
    const late = await env.client.get(rows[0].id);
    assert.equal(late?.status, 'cancelled');
    assert.match((late?.error as { message: string }).message, /^deadline .* passed$/);
    const before = (await env.pool.query('select count(*)::int as n from trellis.runs')).rows[0].n;
    await assert.rejects(templates().start('early', { n: 1 }, { timeLimit: 'a while' as never }), ValidationError);
    await assert.rejects(env.pool.query(`select trellis.template_start('early', '{}', '{"time_limit": "-5 minutes"}')`),
      (e: { code?: string | undefined }) => e.code === 'TR001');
    assert.equal((await env.pool.query('select count(*)::int as n from trellis.runs')).rows[0].n, before);
  });

  it('continues past a failed entry marked continue, and compensates before failing on one marked compensate', async () => {
    await templates().set('careful', { steps: [{ name: 'add' }, { name: 'boom', onFailure: 'continue' }, { name: 'double' }] });
    const careful = await templates().start('careful', { n: 1 });
    assert.deepEqual(await careful.result({ timeout: '20s' }), { state: { n: 4 }, endedEarly: false, failed: ['boom'] });

    await templates().set('saga', { steps: [{ name: 'reserve', compensate: 'release' }, { name: 'add' }, { name: 'boom', onFailure: 'compensate' }],
      hooks: { afterStep: ['trace'], afterWorkflow: ['finish'] } });
    calls.length = 0;
    const saga = await templates().start('saga', { n: 0 });
    await assert.rejects(saga.result({ timeout: '20s' }), WorkflowFailedError);
    // The compensating step is told apart from its entry; afterWorkflow of a failed run gets
    // the state as the run left it (compensated), not its input.
    assert.deepEqual(calls, ['reserve', 'add', 'boom (failed)', 'reserve compensate', 'after workflow n=1']);
    const history = await env.history(saga.id);
    assert.deepEqual(history.map((s) => [s.name, s.status]), [
      ['reserve', 'completed'], ['add', 'completed'], ['boom', 'failed'], ['reserve compensate', 'completed'],
    ]);
    assert.deepEqual((history[3]?.output as { state: unknown }).state, { n: 1, reserved: false, released: true });
  });

  it('refuses bad templates with a typed error and stores nothing', async () => {
    const t = templates();
    await assert.rejects(t.set('bad', { steps: [{ name: 'nope' }] }), /step nope is not registered/);
    await assert.rejects(t.set('bad', { steps: [{ name: 'add' }, { name: 'add' }] }), /used twice/);
    await assert.rejects(t.set('bad', { steps: [{ name: 'add', next: 'double' }, { name: 'double', next: 'add' }] }), /cycle/);
    await assert.rejects(t.set('bad', { steps: [{ name: 'add', retry: { maxAttempts: 0 } }] }), ValidationError);
    // The limits of a step's own retry policy (each such step failed every run at run time).
    await assert.rejects(t.set('bad', { steps: [{ name: 'add', retry: { initialDelay: '2000 years' } }] }), /initialDelay must be at most 1000 years/);
    await assert.rejects(t.set('bad', { steps: [{ name: 'add', retry: { maxDelay: 4e13 } }] }), /maxDelay must be at most 1000 years/);
    assert.throws(() => createStepRegistry().registerStep('x', () => undefined, { retry: { maxAttempts: 0 } }), /retry of step x: maxAttempts/);
    assert.throws(() => createStepRegistry().registerStep('x', () => undefined, { retry: { initialDelay: '2000 years' } }), /at most 1000 years/);
    assert.throws(() => createStepRegistry().registerStep('x', () => undefined, { timout: '1s' } as never), /defaults of step x has unknown option\(s\) timout/);
    await assert.rejects(t.set('bad', { steps: [{ name: 'add', timeout: 'soon' as never }] }), ValidationError);
    await assert.rejects(t.set('bad', { steps: [{ name: 'add', timeout: 0 }] }), /timeout longer than 0/);
    await assert.rejects(t.set('bad', { steps: [{ name: 'add', retry: { maxElapsed: '0s' } }] }), /maxElapsed must be a duration longer than 0/);
    assert.throws(() => createStepRegistry().registerStep('x', () => undefined, { timeout: 0 }), /timeout of step x must be longer than 0/);
    await assert.rejects(t.set('bad', { steps: [{ name: 'add' }], hooks: { beforeStep: ['missing'] } }), ValidationError);
    for (const definition of ['{"steps": []}', '{"steps": [{"name": "a"}, {"name": "a"}]}',
      '{"steps": [{"name": "a", "next": "b"}, {"name": "b", "next": "a"}]}', '{"steps": [{"name": "a", "next": "zz"}]}',
      // What zod refuses, SQL refuses too (each stored version failed every run at its start).
      '{"steps": [{"name": "a", "retry": {"maxAttempts": 0}}]}', '{"steps": [{"name": "a", "retry": {"maxAttempts": 1.5}}]}',
      '{"steps": [{"name": "a", "retry": {"tries": 3}}]}', '{"steps": [{"name": "a", "retry": 3}]}',
      '{"steps": [{"name": "a", "retry": {"backoff": "linear"}}]}', '{"steps": [{"name": "a", "retry": {"factor": 0.5}}]}',
      '{"steps": [{"name": "a", "retry": {"jitter": 2}}]}', '{"steps": [{"name": "a", "retry": {"initialDelay": 40000000000000}}]}',
      '{"steps": [{"name": "a", "retry": {"maxDelay": true}}]}', '{"steps": [{"name": "a", "retry": {"initialDelay": -1}}]}',
      '{"steps": [{"name": "a", "timeout": 0}]}', '{"steps": [{"name": "a", "timeout": true}]}', '{"steps": [{"name": "a", "extra": 1}]}',
      '{"steps": [{"name": "a", "retry": {"maxElapsed": 0}}]}', '{"steps": [{"name": "a", "retry": {"maxElapsed": false}}]}',
      '{"steps": [{"name": "a", "step": 7}]}', '{"steps": [{"name": "a"}], "hooks": "garbage"}', '{"steps": [{"name": "a"}], "hooks": {"onWhatever": []}}',
      '{"steps": [{"name": "a"}], "hooks": {"beforeStep": [1]}}', '{"steps": [{"name": "a"}], "owner": "me"}',
      // Names with quotes, and numbers a worker's JavaScript cannot hold (each failed every run at its start).
      '{"steps": [{"name": "a"}], "hooks": {"beforeStep": ["x\'y"]}}', '{"steps": [{"name": "a", "step": "x\'y"}]}',
      '{"steps": [{"name": "a", "compensate": "; drop table x"}]}', '{"steps": [{"name": "a", "retry": {"maxAttempts": 1e20}}]}',
      '{"steps": [{"name": "a", "retry": {"factor": 1e400}}]}', '{"steps": [{"name": "a", "timeout": 1e400}]}']) {
      await assert.rejects(env.pool.query('select trellis.template_set($1, $2)', ['bad', definition]), (e: { code?: string | undefined }) => e.code === 'TR001');
    }
    assert.equal((await env.pool.query(`select count(*)::int as n from trellis.templates where name = 'bad'`)).rows[0].n, 0);
    await assert.rejects(t.start('never-stored', {}), NotFoundError);
    for (const templateVersion of [0, -1, 1.5, Number.NaN, '1' as never]) {
      await assert.rejects(t.start('calc', {}, { templateVersion }), /templateVersion must be a positive integer/, String(templateVersion));
    }
  });

  it('a step hook that throws is logged and ignored: the step runs once and the run goes on', async () => {
    await templates().set('hooked', { steps: [{ name: 'charge' }, { name: 'add' }], hooks: { beforeStep: ['audit-down'], afterStep: ['audit-down'] } });
    charges = 0;
    const run = await templates().start('hooked', { n: 1 });
    assert.deepEqual(await run.result({ timeout: '20s' }), { state: { n: 2, charged: true }, endedEarly: false, failed: [] });
    assert.equal(charges, 1, 'the step body ran once');
    assert.deepEqual((await env.history(run.id)).map((h) => [h.name, h.status, h.attempts]), [['charge', 'completed', 1], ['add', 'completed', 1]]);
  });

  it('a workflow hook that throws does not stop the rest of its list, nor the run', async () => {
    await templates().set('hooked', { steps: [{ name: 'add' }], hooks: { beforeWorkflow: ['audit-down', 'start'], afterWorkflow: ['audit-down', 'finish'] } });
    calls.length = 0;
    const run = await templates().start('hooked', { n: 1 });
    assert.deepEqual(await run.result({ timeout: '20s' }), { state: { n: 2 }, endedEarly: false, failed: [] });
    assert.deepEqual(calls, ['before workflow', 'after workflow n=2'], 'the hooks after the one that threw ran');
  });

  it('a hook that changes the state it is handed changes neither the step\'s state nor what is saved', async () => {
    await templates().set('hooked', { steps: [{ name: 'add' }, { name: 'double' }],
      hooks: { beforeWorkflow: ['meddle'], beforeStep: ['meddle'], afterStep: ['meddle'] } });
    const run = await templates().start('hooked', { n: 1 });
    assert.deepEqual(await run.result({ timeout: '20s' }), { state: { n: 4 }, endedEarly: false, failed: [] });
  });

  it('afterStep of an attempt that times out gets the TimeoutError when it times out, before afterWorkflow, and never a late success', async () => {
    slowGate = deferred();
    await templates().set('timed', { steps: [{ name: 'slow', timeout: 300 }], hooks: { beforeStep: ['trace'], afterStep: ['trace'], afterWorkflow: ['finish'] } });
    calls.length = 0;
    const run = await templates().start('timed', { n: 1 });
    await assert.rejects(run.result({ timeout: '20s' }), WorkflowFailedError);
    assert.deepEqual(calls, ['slow', 'slow (failed)', 'after workflow n=1']);
    // The body returns at last: no afterStep for it.
    slowGate.resolve();
    for (let i = 0; i < 5; i++) await new Promise((resolve) => setImmediate(resolve));
    assert.deepEqual(calls, ['slow', 'slow (failed)', 'after workflow n=1']);
  });

  it('takes a per-attempt timeout longer than a timer holds (24.8 days)', async () => {
    await templates().set('long', { steps: [{ name: 'add', timeout: '30 days' }, { name: 'double', timeout: '7 years' }] });
    const run = await templates().start('long', { n: 1 });
    assert.deepEqual(await run.result({ timeout: '20s' }), { state: { n: 4 }, endedEarly: false, failed: [] });
  });

  it('a start from TypeScript keeps the queue the workers registered the template on', async () => {
    await templates().set('queued', { steps: [{ name: 'add' }] });
    const run = await templates().start('queued', { n: 1 });
    assert.equal((await env.client.get(run.id))?.queue, 'tpl-q');
    assert.deepEqual(await run.result({ timeout: '20s' }), { state: { n: 2 }, endedEarly: false, failed: [] });
    const { rows } = await env.pool.query(`select queue from trellis.workflows where name = 'template:queued'`);
    assert.deepEqual(rows, [{ queue: 'tpl-q' }], 'not registered again on the default queue');
    const fromSql = (await env.pool.query(`select trellis.template_start('queued', '{"n": 5}') as id`)).rows[0].id as string;
    assert.equal((await env.client.get(fromSql))?.queue, 'tpl-q');
    assert.equal((await env.drive(fromSql)).status, 'completed');
  });

  it('fails a run of a template stored from SQL that names a step this worker lacks, naming it', async () => {
    await env.pool.query(`select trellis.template_set('sql-made', '{"steps": [{"name": "add"}, {"name": "mystery"}]}')`);
    const { rows } = await env.pool.query(`select trellis.template_start('sql-made', '{"n": 1}') as id`);
    const done = await env.drive(rows[0].id);
    assert.equal(done.status, 'failed');
    assert.match(String((done.error as { message: string }).message), /step mystery is not registered/);
    assert.equal((await env.history(rows[0].id)).length, 0, 'checked before any step ran');
  });
});

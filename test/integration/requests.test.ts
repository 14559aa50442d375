/**
 * Requests (decision 0044): client.request sends a signal under the
 * request's id and waits for the run's reply (ctx.reply / ctx.replyError),
 * stored as the run's value reply:<id>. A repeat with the same id delivers
 * nothing and gets the same answer; a refusal is RequestRejectedError and
 * the run goes on; a run that ends without answering, a timeout and bad
 * input each get their typed error, and bad input writes nothing.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import { z } from 'zod';
import { createClient, type Client } from '../../src/client/client.ts';
import { IllegalTransitionError, NotFoundError, RequestRejectedError, TimeoutError, ValidationError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { createWorker, type Worker } from '../../src/worker/worker.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { defineSignal } from '../../src/workflow/signal.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';
import { deferred } from '../helpers/engine.ts';
import { backendId, waiterPid } from '../helpers/lock-wait.ts';
import { waitFor } from '../helpers/wait.ts';

const withdraw = defineSignal('withdraw', z.object({ amount: z.number().positive() }));

const account = defineWorkflow({ name: 'requests-account', input: z.object({ balance: z.number() }), signals: [withdraw] },
  async (ctx, { balance }) => {
    for (;;) {
      const ask = await ctx.waitForSignal(withdraw);
      if (ask.timedOut) continue;
      if (ask.payload.amount === 999) return balance; // ends without answering
      if (ask.payload.amount > balance) {
        await ctx.replyError(ask, { message: 'insufficient funds', code: 'funds', details: { balance } });
        continue;
      }
      balance -= ask.payload.amount;
      await ctx.reply(ask, { balance });
    }
  });

// A request whose answer has a schema: ctx.reply checks it (and stores what it returns), client.request is typed by it.
const price = defineSignal('price', z.object({ qty: z.number().int() }), { reply: z.object({ total: z.number(), currency: z.string().default('EUR') }) });
const pricer = defineWorkflow({ name: 'requests-pricer', input: z.object({}), signals: [price] }, async (ctx) => {
  const refused: string[] = [];
  for (;;) {
    const ask = await ctx.waitForSignal(price);
    if (ask.timedOut) continue;
    if (ask.payload.qty === 0) return refused;
    if (ask.payload.qty < 0) {
      // A bad answer is the code's ValidationError, recorded nothing; it can still answer.
      try {
        await ctx.reply(ask, { total: 'lots' } as never);
      } catch (error) {
        refused.push(error instanceof ValidationError ? error.message : String(error));
      }
      await ctx.replyError(ask, 'no negative quantities');
      continue;
    }
    await ctx.reply(ask, { total: ask.payload.qty * 3 }); // currency filled in by the schema
  }
});

const counted = defineSignal('counted', z.object({ n: z.number() }), { reply: z.object({ ok: z.number() }) });
const raced = defineWorkflow({ name: 'requests-raced', input: z.object({}), signals: [counted] }, async (ctx) => {
  // A race a sleep wins: the losing wait for a { reply } signal takes nothing (the next request goes to the next wait).
  const first = await ctx.race({ ask: ctx.waitForSignal(counted), late: ctx.sleep('deadline', '1ms') });
  const order: string[] = [first.key];
  for (;;) {
    const ask = await ctx.waitForSignal(counted);
    if (ask.timedOut) continue;
    if (ask.payload.n === 0) return order;
    // The reply and a step in one turn: the reply takes its number first, as a reply without an answer schema does.
    await Promise.all([ctx.reply(ask, { ok: ask.payload.n }), ctx.step(`log-${ask.payload.n}`, () => ask.payload.n)]);
  }
});

let gate = deferred();
const slow = defineWorkflow({ name: 'requests-slow', input: z.object({}) }, async (ctx) => {
  const ask = await ctx.waitForSignal<{ n: number }>('ask');
  await ctx.step('gate', () => gate.promise);
  await ctx.reply(ask, ask.timedOut ? 0 : ask.payload.n * 2);
  await ctx.sleep('after', '20ms'); // a replay after the reply must not write it again
  return 'done';
});

const misuse = defineWorkflow({ name: 'requests-misuse', input: z.object({}) }, async (ctx) => {
  const timedOut = await ctx.waitForSignal('never', { timeout: '1ms' });
  const plain = await ctx.waitForSignal<number>('plain');
  const odd = await ctx.waitForSignal<number>('plain');
  // Messages no request can have sent (no id; an id a request cannot carry): nothing recorded, the run goes on.
  const unanswered = [await ctx.reply(plain, 1), await ctx.replyError(odd, 'not a request')];
  const errors: string[] = [];
  const attempts = [
    () => ctx.reply(timedOut, 1),
    () => ctx.reply(odd, () => 1), // a reply it could not store is refused all the same
    () => ctx.reply('ends with space ', 1),
    () => ctx.reply('x'.repeat(123), 1),
    () => ctx.reply({ payload: 1 } as never, 1),
    () => ctx.reply('r1', () => 1),
    () => ctx.reply('r1', { a: () => 1 }),
    () => ctx.reply('r1', { at: new Date(0) }),
    () => ctx.reply('r1', [Number.NaN]),
    () => ctx.reply('r1', { gone: undefined }),
    () => ctx.reply('', 1),
    () => ctx.setValue('reply:r1', 'forged'),
    () => ctx.replyError('r1', 42 as never),
    () => ctx.replyError('r1', { message: 'm', code: 7 as never }),
    () => ctx.replyError('r1', { message: 'm', details: { at: new Date(0) } as never }),
  ];
  for (const attempt of attempts) {
    try {
      await attempt();
      errors.push('accepted');
    } catch (error) {
      errors.push((error as Error).constructor.name);
    }
  }
  await ctx.reply('r1', errors); // by the request id alone
  return { errors, unanswered };
});

/** Reads one request per execution, answers it unless n < 0, then continues as new (keeping its history or not). */
const rolling = defineWorkflow({ name: 'requests-rolling', input: z.object({ keep: z.boolean(), served: z.number() }) }, async (ctx, { keep, served }) => {
  const ask = await ctx.waitForSignal<{ n: number }>('ask');
  if (!ask.timedOut && ask.payload.n >= 0) await ctx.reply(ask, { n: ask.payload.n, served: served + 1 });
  return ctx.continueAsNew({ keep, served: served + 1 }, { keepHistory: keep });
});

/** A tab per key: each request adds to it and is answered with the total; the tab closes at 10. */
const tab = defineWorkflow({ name: 'requests-tab', input: z.object({ owner: z.string() }) }, async (ctx, { owner }) => {
  let total = 0;
  for (;;) {
    const ask = await ctx.waitForSignal<{ add: number }>('add');
    if (ask.timedOut) continue;
    total += ask.payload.add;
    await ctx.reply(ask, { owner, total });
    if (total >= 10) return total;
  }
});

let retried = deferred();
/**
 * Catches a failed step, then serves requests; the run fails once after two of them (when told to: their answers
 * are taken back then) and is retried (its retry policy).
 * Which attempt it is in is read from durable state only (the run's 'retried' event; the first attempt's ledger
 * entries): a step body may run more than once and workflow code is replayed, so process memory cannot tell.
 */
const flaky = defineWorkflow({ name: 'requests-flaky', input: z.object({}), retry: { maxAttempts: 2, initialDelay: '10ms' } }, async (ctx) => {
  try {
    await ctx.step('flaky', () => { throw new Error('down'); }, { retry: { maxAttempts: 1 } });
  } catch { /* handled: the run goes on */ }
  for (let i = 0; ; i++) {
    const ask = await ctx.waitForSignal<number>('ask');
    if (ask.timedOut) continue;
    const entry = await ctx.step('ledger', async () => {
      // (count, not exists (select from …): Citus cannot plan a subquery without columns.)
      const { rows: [{ n }] } = await db.pool.query(`select count(*)::int as n from trellis.events where run_id = $1 and kind = 'retried'`, [ctx.runId]);
      const again = n > 0;
      if (again) await retried.promise; // the retry's ledger steps wait for the test
      return `${again ? 'retried' : 'first'}:${ask.payload}`;
    });
    await ctx.reply(ask, { entry });
    if (i === 1 && entry.startsWith('first:')) {
      await ctx.waitForSignal('fail'); // once the test has read the answer the retry takes back
      throw new Error('fails once after two requests');
    }
    if (i === 1) return 'done';
  }
});

let db: TestDatabase;
let worker: Worker;
let client: Client;
before(async () => {
  db = await freshDatabase();
  worker = createWorker({ pool: db.pool, workflows: [account, slow, misuse, rolling, tab, flaky, pricer, raced], pollInterval: 50, logger: silentLogger });
  await worker.start();
  // Waiters poll hourly: only the trellis:run_value NOTIFY can settle a request within a test's bounds.
  client = createClient({ pool: db.pool, logger: silentLogger, resultPollInterval: '1h' });
});
after(async () => {
  gate.resolve();
  retried.resolve();
  await client?.close();
  await worker?.stop({ timeout: 2000 });
  await db?.close();
});

const signalRows = async (runId: string) =>
  (await db.pool.query(`select name, signal_id, payload from trellis.signals where run_id = $1 order by id`, [runId])).rows;
const replyRows = async (runId: string) =>
  (await db.pool.query(`select name, output from trellis.steps where run_id = $1 and kind = 'value' order by seq`, [runId])).rows;

describe('client.request', () => {
  it('returns the run\'s reply; a repeat with the same id delivers nothing and gets the same answer', async () => {
    const run = await client.start(account, { balance: 100 }, { key: 'acct-1' });
    const first = await client.request<{ balance: number }>(run.id, withdraw, { amount: 30 }, { id: 'w-1', timeout: '20s' });
    assert.deepEqual(first, { balance: 70 });
    const again = await client.request<{ balance: number }>({ workflow: 'requests-account', key: 'acct-1' }, withdraw, { amount: 30 }, { id: 'w-1', timeout: '20s' });
    assert.deepEqual(again, { balance: 70 }, 'the repeat is answered by the first reply, not withdrawn twice');
    const next = await client.request<{ balance: number }>({ workflow: account, key: 'acct-1' }, withdraw, { amount: 20 }, { timeout: '20s' });
    assert.deepEqual(next, { balance: 50 });
    const signals = await signalRows(run.id);
    assert.equal(signals.length, 2, 'one message per request id');
    assert.equal(signals[0].signal_id, 'w-1');
    assert.match(signals[1].signal_id, /^[0-9a-f-]{36}$/, 'a request without an id gets a UUID');
    const { rows } = await db.pool.query(`select value as v from trellis.run_value($1, 'reply:w-1')`, [run.id]);
    assert.deepEqual(rows[0].v, { value: { balance: 70 } }, 'the reply is the run value reply:<id>, readable from SQL');
  });

  it('a signal defined with { reply }: the answer is checked by the run against its schema, stored as the schema returns it, and typed for the caller', async () => {
    const run = await client.start(pricer, {});
    const answer = await client.request(run.id, price, { qty: 4 }, { timeout: '20s' });
    assert.deepEqual(answer, { total: 12, currency: 'EUR' }, 'the schema\'s output (its default filled in)');
    const total: number = answer.total; // typed by the reply schema
    assert.equal(total, 12);
    await assert.rejects(client.request(run.id, price, { qty: -1 }, { id: 'neg-1', timeout: '20s' }), /no negative quantities/);
    const values = (await replyRows(run.id)).filter((r) => r.name === 'reply:neg-1');
    assert.equal(values.length, 1, 'the bad answer recorded nothing; the refusal is the one value');
    assert.deepEqual(await client.request(run.id, price, { qty: 0 }, { id: 'end', timeout: '20s' }).catch((e: unknown) => e instanceof Error && e.name), 'NotFoundError');
    const refused = await run.result({ timeout: '20s' });
    assert.equal(refused.length, 1);
    assert.match(refused[0]!, /ctx\.reply's answer.*total/);
    assert.throws(() => defineSignal('bad-reply', z.object({}), { reply: 'not a schema' } as never), ValidationError);
    assert.throws(() => defineSignal('bad-option', z.object({}), { reply: z.number(), replies: z.number() } as never), ValidationError);
  });

  it('a { reply } signal in ctx.race (the losing wait takes nothing), and a reply in a turn with a step takes its number first', async () => {
    const run = await client.start(raced, {});
    await waitFor(async () => (await replyRows(run.id)).length === 0 && (await client.history(run.id)).some((h) => h.kind === 'signal' && h.status === 'waiting' && h.seq > 1),
      { what: 'the race decided by the sleep, the run waiting for its next request' });
    assert.deepEqual(await client.request(run.id, counted, { n: 7 }, { timeout: '20s' }), { ok: 7 }, 'the next wait got it, not the race\'s loser');
    // The answer can reach the caller before the step of its turn is recorded: wait for both.
    const calls = await waitFor(async () => {
      const found = (await client.history(run.id)).filter((h) => h.kind === 'value' || h.name === 'log-7').map((h) => [h.seq, h.kind]);
      return found.length === 2 ? found : undefined;
    }, { what: 'the reply and the step of its turn recorded' });
    assert.deepEqual(calls.map((c) => c[1]), ['value', 'step'], 'the reply took its number before the step of its turn');
    // The next request makes the run replay that turn: the same calls in the same order.
    assert.deepEqual(await client.request(run.id, counted, { n: 8 }, { timeout: '20s' }), { ok: 8 });
    await client.signal(run.id, counted, { n: 0 });
    assert.deepEqual(await run.result({ timeout: '20s' }), ['late']);
  });

  it('a refusal is RequestRejectedError with the code and details the run gave; the run goes on', async () => {
    const run = await client.start(account, { balance: 10 });
    await assert.rejects(client.request(run.id, withdraw, { amount: 50 }, { id: 'big', timeout: '20s' }), (error: unknown) => {
      assert.ok(error instanceof RequestRejectedError);
      assert.equal(error.code, 'request_rejected');
      assert.equal(error.message, 'insufficient funds');
      assert.equal(error.runId, run.id);
      assert.equal(error.requestId, 'big');
      assert.deepEqual(error.details.error, { message: 'insufficient funds', code: 'funds', details: { balance: 10 } });
      return true;
    });
    assert.deepEqual(await client.request(run.id, withdraw, { amount: 4 }, { timeout: '20s' }), { balance: 6 });
    assert.notEqual((await client.get(run.id))?.status, 'failed');
  });

  it('a run that ends without answering is NotFoundError; an ended run refuses a new request and still answers a repeat', async () => {
    const run = await client.start(account, { balance: 5 });
    assert.deepEqual(await client.request(run.id, withdraw, { amount: 1 }, { id: 'before-end', timeout: '20s' }), { balance: 4 });
    await assert.rejects(client.request(run.id, withdraw, { amount: 999 }, { id: 'ending', timeout: '20s' }), (error: unknown) => {
      assert.ok(error instanceof NotFoundError);
      assert.match(error.message, /completed without answering request ending/);
      assert.deepEqual(error.details, { runId: run.id, requestId: 'ending', status: 'completed' });
      return true;
    });
    assert.equal(await run.result({ timeout: '20s' }), 4);
    await assert.rejects(client.request(run.id, withdraw, { amount: 1 }, { id: 'after-end', timeout: '20s' }), IllegalTransitionError);
    assert.deepEqual(await client.request(run.id, withdraw, { amount: 1 }, { id: 'before-end', timeout: '20s' }), { balance: 4 },
      'a repeat of an answered request is answered after the run ended');
    assert.equal((await signalRows(run.id)).length, 2, 'nothing was delivered to the ended run');
  });

  it('a timeout leaves the request delivered: asking again with its id waits for the answer, which a replay does not write again', async () => {
    gate = deferred();
    const run = await client.start(slow, {});
    await assert.rejects(client.request(run.id, 'ask', { n: 21 }, { id: 'slow-1', timeout: '150ms' }), (error: unknown) => {
      assert.ok(error instanceof TimeoutError);
      assert.match(error.message, /did not answer request slow-1 within 150 ms; it may still answer/);
      return true;
    });
    const answer = client.request<number>(run.id, 'ask', { n: 21 }, { id: 'slow-1', timeout: '20s' });
    gate.resolve();
    assert.equal(await answer, 42);
    assert.equal(await run.result({ timeout: '20s' }), 'done');
    assert.deepEqual((await replyRows(run.id)).map((r) => r.name), ['reply:slow-1'], 'one reply call, though the run was replayed after its sleep');
    assert.equal((await signalRows(run.id)).length, 1);
  });

  it('an answer outlives continue-as-new (a repeat reads it); a request read and dropped by continue-as-new is NotFoundError at once', async () => {
    for (const keep of [true, false]) {
      const run = await client.start(rolling, { keep, served: 0 });
      assert.deepEqual(await client.request(run.id, 'ask', { n: 1 }, { id: 'first', timeout: '20s' }), { n: 1, served: 1 });
      assert.deepEqual(await client.request(run.id, 'ask', { n: 2 }, { id: 'second', timeout: '20s' }), { n: 2, served: 2 });
      assert.deepEqual(await client.request(run.id, 'ask', { n: 1 }, { id: 'first', timeout: '20s' }), { n: 1, served: 1 },
        `keepHistory ${keep}: the repeat is answered after two continue-as-new`);
      // Read and not answered, then the execution that read it is gone (or kept: then the run may still answer).
      const dropped = client.request(run.id, 'ask', { n: -1 }, { id: 'dropped', timeout: keep ? '300ms' : undefined });
      if (keep) {
        await assert.rejects(dropped, TimeoutError, 'a kept execution may still answer: the caller waits');
      } else {
        // No timeout: without the lost check this wait would never end.
        await assert.rejects(dropped, (error: unknown) => {
          assert.ok(error instanceof NotFoundError);
          assert.match(error.message, /read request dropped but no wait of its history holds it \(continue-as-new discarded/);
          return true;
        });
      }
      await client.cancel(run.id);
    }
  });

  it('a request with start starts the key\'s run when it has none, else asks the one it has; a repeat starts nothing', async () => {
    const ref = { workflow: tab, key: 'tab-1' };
    const ask = (add: number, id: string, owner = 'ada') => client.request<{ owner: string; total: number }>(ref, 'add', { add }, { id, timeout: '20s', start: { input: { owner } } });
    assert.deepEqual(await ask(3, 'a-1'), { owner: 'ada', total: 3 });
    assert.deepEqual(await ask(5, 'a-2', 'not used'), { owner: 'ada', total: 8 }, 'the key\'s unfinished run is asked');
    assert.deepEqual(await ask(3, 'a-1'), { owner: 'ada', total: 3 }, 'a repeat: the same answer, nothing added');
    const runs = async () => (await db.pool.query(`select id, status from trellis.runs where workflow = 'requests-tab' and coalesce(key, former_key) = 'tab-1' order by created_at`)).rows;
    assert.equal((await runs()).length, 1);
    assert.deepEqual(await ask(2, 'a-3'), { owner: 'ada', total: 10 }); // the tab closes
    const [first] = await runs();
    assert.equal(await client.result(first.id, { timeout: '20s' }), 10);
    assert.deepEqual(await ask(1, 'b-1', 'bo'), { owner: 'bo', total: 1 }, 'the key\'s next run, started with this input');
    assert.deepEqual(await ask(2, 'a-3', 'cy'), { owner: 'ada', total: 10 }, 'a repeat of what the finished run received starts nothing');
    const both = await runs();
    assert.equal(both.length, 2, 'one new run, no more');
    assert.equal(both[0].status, 'completed');
    // By key without start: a repeat goes to the run of the key that received it, not to the key's next run.
    assert.deepEqual(await client.request(ref, 'add', { add: 2 }, { id: 'a-2', timeout: '20s' }), { owner: 'ada', total: 8 });
    assert.deepEqual(await client.request(ref, 'add', { add: 2 }, { id: 'b-2', timeout: '20s' }), { owner: 'bo', total: 3 });
    const signals = (await db.pool.query(`select g.signal_id from trellis.signals g join trellis.runs r on r.bucket = g.bucket and r.id = g.run_id
                                           where r.workflow = 'requests-tab' and coalesce(r.key, r.former_key) = 'tab-1' order by g.id`)).rows;
    assert.deepEqual(signals.map((g) => g.signal_id), ['a-1', 'a-2', 'a-3', 'b-1', 'b-2'], 'each request delivered once, to one run');
    await assert.rejects(client.request((await runs())[1].id, 'add', { add: 1 }, { start: { input: { owner: 'x' } } }), /names its run by \{ workflow, key \}/);
    await assert.rejects(client.request({ workflow: tab, key: 'tab-2' }, 'add', { add: 1 }, { start: { input: { owner: 7 } as never } }), ValidationError);
    await assert.rejects(client.request({ workflow: tab, key: 'tab-2' }, 'add', { add: 1 }, { start: { input: {}, keyPolicy: 'replace' } as never }), ValidationError);
    assert.equal((await db.pool.query(`select count(*)::int as n from trellis.runs where key = 'tab-2'`)).rows[0].n, 0, 'bad starts wrote nothing');
  });

  it('a workflow retry that forgets answered requests takes their answers back: every reader then agrees on the new one', async () => {
    const run = await client.start(flaky, {});
    assert.deepEqual(await client.request(run.id, 'ask', 1, { id: 'f-1', timeout: '20s' }), { entry: 'first:1' });
    assert.deepEqual(await client.request(run.id, 'ask', 2, { id: 'f-2', timeout: '20s' }), { entry: 'first:2' });
    await client.signal(run.id, 'fail', null);
    const look = async (id: string) => (await db.pool.query(`select reply from trellis.run_request($1, $2)`, [run.id, id])).rows[0].reply;
    // The run failed and was retried: the retry forgot the calls from the failed step on, replies
    // included, so until it answers again the requests have no answer (not the forgotten ones).
    await waitFor(async () => (await look('f-1')) === null && (await look('f-2')) === null, { what: 'the forgotten answers taken back' });
    retried.resolve();
    assert.equal(await client.result(run.id, { timeout: '20s' }), 'done');
    const value = async (id: string) => (await db.pool.query(`select value from trellis.run_value($1, $2)`, [run.id, `reply:${id}`])).rows[0].value;
    for (const [id, entry] of [['f-1', 'retried:1'], ['f-2', 'retried:2']] as const) {
      assert.deepEqual(await look(id), { value: { entry } }, `${id}: the signal row holds the newest answer`);
      assert.deepEqual(await value(id), { value: { entry } }, `${id}: as run_value does`);
      assert.deepEqual(await client.request(run.id, 'ask', 0, { id, timeout: '20s' }), { entry }, `${id}: and a repeat reads it`);
    }
  });

  it('the newest of several replies to one id is the answer, whatever order they were written in; a scrubbed answer is NotFoundError', async () => {
    const many = defineWorkflow({ name: 'requests-many-replies', input: z.object({}) }, async (ctx) => {
      const ask = await ctx.waitForSignal('ask');
      await Promise.all([ctx.reply(ask, 'first'), ctx.reply(ask, 'second'), ctx.reply(ask, 'third')]);
      return 'done';
    });
    const local = createWorker({ pool: db.pool, workflows: [many], pollInterval: 50, logger: silentLogger });
    await local.start();
    try {
      const run = await client.start(many, {});
      await client.signal(run.id, 'ask', null, { id: 'p-1' });
      assert.equal(await client.result(run.id, { timeout: '20s' }), 'done');
      assert.equal(await client.request(run.id, 'ask', null, { id: 'p-1', timeout: '20s' }), 'third');
      assert.deepEqual((await db.pool.query(`select value from trellis.run_value($1, 'reply:p-1')`, [run.id])).rows[0].value, { value: 'third' });
      await db.pool.query('select trellis.run_scrub($1)', [run.id]);
      await assert.rejects(client.request(run.id, 'ask', null, { id: 'p-1', timeout: '20s' }), /answered request p-1, but its data was scrubbed/);
    } finally {
      await local.stop({ timeout: 2000 });
    }
  });

  it('a send whose connection is lost is sent again (a request by id, by key, with start; a signal with an id): each delivered once', async () => {
    const run = await client.start(account, { balance: 100 }, { key: 'acct-lost' });
    const paths = [
      ['signal_send', () => client.request<{ balance: number }>(run.id, withdraw, { amount: 1 }, { id: 'lost-1', timeout: '20s' })],
      ['request_send', () => client.request<{ balance: number }>({ workflow: account, key: 'acct-lost' }, withdraw, { amount: 2 }, { id: 'lost-2', timeout: '20s' })],
      ['signal_with_start', () => client.request<{ balance: number }>({ workflow: account, key: 'acct-lost' }, withdraw, { amount: 3 },
        { id: 'lost-3', timeout: '20s', start: { input: { balance: 0 } } })],
      ['signal_send', () => client.signal(run.id, withdraw, { amount: 4 }, { id: 'lost-4' })], // a plain signal with an id too
    ] as const;
    const expected = [{ balance: 99 }, { balance: 97 }, { balance: 94 }, true];
    for (const [i, [fn, ask]] of paths.entries()) {
      // Hold the run's row: the send waits on it, and its backend is terminated there (a lost connection, 57P01).
      const blocker = await db.pool.connect();
      try {
        await blocker.query('begin');
        // By bucket too: Citus locks rows of a distributed table only in a query routed to one shard.
        const { rows: [{ bucket }] } = await blocker.query('select bucket from trellis.runs where id = $1', [run.id]);
        await blocker.query('select 1 from trellis.runs where bucket = $2 and id = $1 for update', [run.id, bucket]);
        const holder = await backendId(blocker);
        const answer = ask();
        answer.catch(() => undefined); // awaited below
        const pid = await waitFor(() => waiterPid(db.pool, holder), { what: `the ${fn} send waiting on the run's row` });
        await db.pool.query('select pg_terminate_backend($1::int)', [pid]);
        await blocker.query('commit');
        assert.deepEqual(await answer, expected[i], `${fn}: sent again after the lost connection (${i})`);
      } finally {
        await blocker.query('rollback').catch(() => undefined); // never back to the pool inside a transaction
        blocker.release();
      }
    }
    assert.deepEqual((await signalRows(run.id)).map((g) => g.signal_id), ['lost-1', 'lost-2', 'lost-3', 'lost-4'], 'each message delivered once, to the one run');
    assert.deepEqual(await client.request(run.id, withdraw, { amount: 5 }, { id: 'lost-5', timeout: '20s' }), { balance: 85 }, 'the signal was read once');
    await client.cancel(run.id);
  });

  it('bad input is refused before anything is sent', async () => {
    const run = await client.start(account, { balance: 1 });
    await assert.rejects(client.request(run.id, withdraw, { amount: -1 } as never), ValidationError);
    await assert.rejects(client.request(run.id, withdraw, { amount: 1 }, { id: 'x'.repeat(123) }), /request id must be 1-122 letters/);
    await assert.rejects(client.request(run.id, withdraw, { amount: 1 }, { id: 'it"; drop table trellis.runs; --' }), ValidationError);
    await assert.rejects(client.request(run.id, withdraw, { amount: 1 }, { id: 'trailing ' }), ValidationError);
    await assert.rejects(client.request(run.id, withdraw, { amount: 1 }, { id: 7 as never }), ValidationError);
    await assert.rejects(client.request(run.id, withdraw, { amount: 1 }, { id: null as never }), ValidationError);
    await assert.rejects(client.request(run.id, withdraw, { amount: 1 }, { timout: '1s' } as never), /unknown option\(s\) timout/);
    await assert.rejects(client.request(run.id, withdraw, { amount: 1 }, { timeout: 'soon' as never }), ValidationError);
    await assert.rejects(client.request('not-a-uuid', withdraw, { amount: 1 }), ValidationError);
    await assert.rejects(client.request({ workflow: account, key: 'no-such-key' }, withdraw, { amount: 1 }), NotFoundError);
    assert.deepEqual(await signalRows(run.id), [], 'nothing was delivered');
    await client.cancel(run.id);
  });
});

describe('ctx.reply', () => {
  it('refuses a message that timed out, a bad id and a reply it cannot store, recording nothing; a message no request sent is not answered (false); a request id alone is answered', async () => {
    const run = await client.start(misuse, {});
    await client.signal(run.id, 'plain', 5); // no id: not a request (buffered until the run waits for it)
    await client.signal(run.id, 'plain', 6, { id: "odd'; id" }); // an id only a plain signal can have: no request can wait for it
    const { errors, unanswered } = await run.result({ timeout: '20s' }) as { errors: string[]; unanswered: boolean[] };
    assert.deepEqual(errors, Array(15).fill('ValidationError'));
    assert.deepEqual(unanswered, [false, false], 'ctx.reply and ctx.replyError to them resolve false and the run goes on');
    assert.deepEqual(await client.waitForValue(run.id, 'reply:r1', { timeout: '20s' }), { value: errors });
    assert.deepEqual((await replyRows(run.id)).map((r) => r.name), ['reply:r1'], 'the refused replies recorded nothing');
  });
});

import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createDatabase } from '../helpers/db.ts';
import { runExample as runPath } from '../helpers/examples.ts';

const EXAMPLES = ['approval', 'fan-out', 'cancellation', 'deadlines', 'fork', 'bulk-start', 'payment-link', 'order-saga', 'continue-as-new', 'retention', 'transactions', 'replay-check', 'key-policies', 'bulk-control', 'dead-letter', 'wait-for-run', 'patching', 'streams', 'run-metadata', 'step-progress', 'signal-with-start', 'requests'] as const;
type Example = (typeof EXAMPLES)[number];
interface Outcome { code: number | null; stdout: string; stderr: string; timedOut: boolean; url: string }

/** Run an example the way a user would, against its own database at `url`. */
async function runExample(name: Example, url: string): Promise<Outcome> {
  return { ...(await runPath(`examples/${name}/main.ts`, url, 45_000)), url };
}

/** The JSON after `prefix` on the first stdout line that starts with it. */
function jsonAfter(stdout: string, prefix: string): unknown {
  const line = stdout.split('\n').find((l) => l.startsWith(prefix));
  assert.ok(line, `no line starting with ${JSON.stringify(prefix)} in:\n${stdout}`);
  return JSON.parse(line.slice(prefix.length));
}

/** The lines of stdout that start with `prefix`, in order. */
function linesStarting(stdout: string, prefix: string): string[] {
  return stdout.split('\n').filter((l) => l.startsWith(prefix));
}

async function query<R extends pg.QueryResultRow>(url: string, text: string, values: unknown[] = []): Promise<R[]> {
  const client = new pg.Client({ connectionString: url });
  await client.connect();
  try {
    return (await client.query<R>(text, values)).rows;
  } finally {
    await client.end();
  }
}

describe('wait, child, cancellation, deadline, saga, continue-as-new and retention examples', () => {
  const databases: { drop(): Promise<void> }[] = [];
  const runs = new Map<Example, Promise<Outcome>>();

  // The examples are independent (each has its own database), so they run
  // side by side, at most RUNNING at once (22 processes starting together on
  // a loaded 2-core machine did not print a line within the timeout); each
  // test awaits its own.
  const RUNNING = 6;
  before(async () => {
    let slots = RUNNING;
    const waiting: (() => void)[] = [];
    const slot = async () => {
      if (slots > 0) slots--;
      else await new Promise<void>((r) => waiting.push(r));
    };
    const free = () => {
      const next = waiting.shift();
      if (next) next();
      else slots++;
    };
    for (const name of EXAMPLES) {
      const db = await createDatabase('trellis_ex');
      databases.push(db);
      const outcome = slot().then(() => runExample(name, db.url)).finally(free);
      outcome.catch(() => undefined);
      runs.set(name, outcome);
    }
  });
  after(async () => {
    await Promise.allSettled([...runs.values()]);
    for (const db of databases) await db.drop();
  });

  async function finished(name: Example): Promise<Outcome> {
    const outcome = await (runs.get(name) as Promise<Outcome>);
    assert.equal(outcome.code, 0, `${name} ${outcome.timedOut ? 'was killed at the timeout' : `exited ${outcome.code}`}\nstdout:\n${outcome.stdout}\nstderr:\n${outcome.stderr}`);
    return outcome;
  }

  it('approval: a typed decision signal is deduplicated by its id, and an unanswered expense times out after 3 days', async () => {
    const { stdout } = await finished('approval');
    assert.match(stdout, /^exp-1001 after 1 day: waiting$/m);
    assert.match(stdout, /^malformed decision refused: ValidationError$/m);
    assert.match(stdout, /^from SQL: TR001 payload of signal expense-decision does not match its schema: \$\.approved: expected boolean, got string$/m);
    assert.match(stdout, /^first delivery of mail-msg-42: true$/m);
    assert.match(stdout, /^repeat delivery of mail-msg-42: false$/m);
    const approved = jsonAfter(stdout, 'exp-1001 result: ') as Record<string, unknown>;
    assert.equal(approved.status, 'reimbursed');
    assert.equal(approved.by, 'grace');
    assert.equal(approved.signalId, 'mail-msg-42');
    assert.match(stdout, /^exp-1001 finished 2\.\d\d days after it started$/m);
    assert.match(stdout, /^exp-1001 signals stored: 1$/m);
    assert.deepEqual(jsonAfter(stdout, 'exp-1002 result: '), { expenseId: 'exp-1002', status: 'expired' });
    assert.match(stdout, /^ {2}exp-1002 step 1 signal expense-decision: completed \{"timedOut":true\}$/m);
    assert.match(stdout, /^ {2}exp-1002 step 2 step escalate-to-finance: completed /m);
  });

  it('fan-out: children run in parallel, a failed child is reported as missing, and the reports worker runs the activity', async () => {
    const { stdout, url } = await finished('fan-out');
    assert.deepEqual(jsonAfter(stdout, 'result: '), { report: 'amer=1000, apac=312, emea=245', grandTotal: 1557, missing: ['mars'] });
    assert.deepEqual(linesStarting(stdout, 'child '), [
      'child region-total emea on queue default: completed',
      'child region-total apac on queue default: completed',
      'child region-total mars on queue default: failed (step "fetch-ledger" failed after 1 attempt(s): no ledger for region mars)',
      'child region-total amer on queue default: completed',
      'child build-report on queue reports: completed',
    ]);
    assert.match(stdout, /^main-worker completed 4 runs; reports-worker completed 1$/m);
    assert.match(stdout, /^ {2}parent step 2 child total-mars: failed$/m);
    const rows = await query(url, `select status, queue from trellis.runs where workflow = 'build-report'`);
    assert.deepEqual(rows, [{ status: 'completed', queue: 'reports' }]);
  });

  it('cancellation: the running step is aborted, cleanup runs non-cancellable, and a parent takes its sleeping children with it', async () => {
    const { stdout, url } = await finished('cancellation');
    assert.match(stdout, /^cancel requested; run status: running$/m);
    assert.match(stdout, /^result threw CancelledError: run [0-9a-f-]{36} was cancelled$/m);
    assert.match(stdout, /^step signal fired: CancelledError after page \d+$/m);
    assert.match(stdout, /^export-job status: cancelled$/m);
    assert.deepEqual(linesStarting(stdout, '  step '), [
      '  step 0 open-export-file: completed',
      '  step 1 export-rows: failed',
      '  step 2 delete-partial-export: completed',
    ]);
    assert.match(stdout, /^nightly-batch result threw CancelledError$/m);
    assert.match(stdout, /^nightly-batch: cancelled$/m);
    assert.match(stdout, /^batch-shard 1: cancelled$/m);
    assert.match(stdout, /^batch-shard 2: cancelled$/m);
    const rows = await query<{ workflow: string; status: string }>(url,
      `select workflow, status from trellis.runs order by workflow, parent_seq nulls first`);
    assert.deepEqual(rows.map((r) => `${r.workflow}:${r.status}`),
      ['batch-shard:cancelled', 'batch-shard:cancelled', 'export-job:cancelled', 'nightly-batch:cancelled']);
  });

  it('deadlines: an unpaid checkout is cancelled at its deadline with its cleanup, a paid one completes, a child\'s time limit falls back', async () => {
    const { stdout, url } = await finished('deadlines');
    assert.match(stdout, /^cart-1 deadline: 1000 ms after its start$/m);
    assert.match(stdout, /^cart-1 result threw CancelledError$/m);
    assert.match(stdout, /^cart-1: cancelled, reason: deadline <time> passed$/m);
    assert.match(stdout, /^stock released for: cart-1$/m);
    assert.match(stdout, /^cart-2: shipped cart-2 for 42 with 60 minutes left$/m);
    assert.deepEqual(jsonAfter(stdout, 'quote: '), { sku: 'kettle', price: 12, fallback: true });
    assert.match(stdout, /^sql start: deadline 30 minutes after its run_at$/m);
    const rows = await query<{ workflow: string; status: string; reason: string | null }>(url,
      `select workflow, status, error->>'message' as reason from trellis.runs order by workflow, input->>'cart'`);
    assert.deepEqual(rows.map((r) => `${r.workflow}:${r.status}:${/^deadline .* passed$/.test(r.reason ?? '') ? 'deadline' : (r.reason ?? '')}`), [
      'checkout:cancelled:deadline', 'checkout:completed:', 'checkout:cancelled:example done',
      'quote:completed:', 'supplier-quote:cancelled:deadline',
    ]);
  });

  it('fork: a completed run forked from its price call onto fixed code keeps the recorded fetch; a keyed SQL fork is made once', async () => {
    const { stdout, url } = await finished('fork');
    assert.match(stdout, /^original: invoice o-17: 190\.00$/m);
    assert.match(stdout, /^original calls: 0 fetch-order, 1 price, 2 send$/m);
    assert.match(stdout, /^fork: invoice o-17: 119\.00$/m);
    assert.match(stdout, /^fork: version 2, forked from the original at call 1: true$/m);
    assert.match(stdout, /^orders fetched: 1 \(the fork kept the recorded fetch\)$/m);
    assert.match(stdout, /^sql fork: invoice o-17: 119\.00; made once: true$/m);
    const rows = await query<{ version: string; forked: boolean; output: string }>(url,
      `select version, forked_from is not null as forked, output #>> '{}' as output from trellis.runs order by created_at`);
    assert.deepEqual(rows.map((r) => `${r.version}:${r.forked}:${r.output}`),
      ['1:false:invoice o-17: 190.00', '2:true:invoice o-17: 119.00', '2:true:invoice o-17: 119.00']);
  });

  it('transactions: a transfer and its ledger row commit with the step once (the failed first attempt rolled back); the receipt run is started once', async () => {
    const { stdout, url } = await finished('transactions');
    assert.match(stdout, /^move: attempt 1 wrote ledger row 1$/m);
    assert.match(stdout, /^move: attempt 2 wrote ledger row 2$/m);
    assert.match(stdout, /^receipt: receipt for transfer 2 sent$/m);
    assert.match(stdout, /^balances: ada 7500, lin 2500$/m);
    assert.match(stdout, /^ledger rows: 1$/m);
    assert.match(stdout, /^receipt runs: 1$/m);
    assert.match(stdout, /^move step: completed after 2 attempts$/m);
    const rows = await query<{ source: string; target: string; cents: string }>(url, 'select source, target, cents from wallet_ledger');
    assert.deepEqual(rows, [{ source: 'ada', target: 'lin', cents: '2500' }]);
  });

  it('dead-letter: a parked run is resumed by itself once its resumeAfter passed; an operator\'s pause holds another', async () => {
    const { stdout, url } = await finished('dead-letter');
    assert.deepEqual(stdout.trim().split('\n'), [
      'parked: paused, error "partner unavailable (503)", resumed about 2 s later',
      'resumed by itself: account 7 synced',
      'held by the operator: paused, resumeAt null',
      'resumed by the operator: account 8 synced',
      'capped: paused after 2 automatic resumes, resumeAt null',
    ]);
    const rows = await query<{ status: string; resume_at: Date | null; auto_resumes: number }>(url,
      `select status, resume_at, auto_resumes from trellis.runs order by created_at`);
    assert.deepEqual(rows, [{ status: 'completed', resume_at: null, auto_resumes: 1 }, { status: 'completed', resume_at: null, auto_resumes: 0 },
      { status: 'cancelled', resume_at: null, auto_resumes: 2 }]);
  });

  it('bulk-control: failed imports retried after the fix, a queue paused and resumed, the rest cancelled by filter', async () => {
    const { stdout, url } = await finished('bulk-control');
    assert.deepEqual(stdout.trim().split('\n'), [
      'imports: 20 of 40 failed',
      'imports: a dry run would retry 20',
      'imports: 20 retried, 20 completed',
      'partner: 5 paused',
      'partner: 5 resumed',
      'partner: 2 called after the resume',
      'cancelled: 3; results all CancelledError',
      'sql: 0 failed imports left to retry',
    ]);
    const rows = await query<{ status: string; n: number }>(url,
      `select status, count(*)::int as n from trellis.runs group by status order by status`);
    assert.deepEqual(rows, [{ status: 'cancelled', n: 3 }, { status: 'completed', n: 42 }]);
  });

  it('wait-for-run: a run waits for runs it did not start, with their outputs, failures, unknown ids and a time limit', async () => {
    const { stdout } = await finished('wait-for-run');
    assert.deepEqual(linesStarting(stdout, 'fulfil:'), [
      'fulfil: waiting, holding no worker; 1 row in trellis.run_watches',
      'fulfil: A-1: shipped with rcpt-A-1',
    ]);
    assert.deepEqual(linesStarting(stdout, 'report:'), [
      'report: sales report over 1200 rows', 'report: stock report over 1200 rows', 'report: returns report over 1200 rows',
    ]);
    const failures = linesStarting(stdout, 'failure:');
    assert.match(failures[0] ?? '', /^failure: B-2: not shipped \(run [0-9a-f-]{36} failed: card declined for B-2\)$/);
    assert.equal(failures[1], 'failure: C-3: not shipped (no such payment)');
    assert.deepEqual(linesStarting(stdout, 'limit:'), ['limit: D-4: payment timed out', 'limit: audit not settled within 2 seconds']);
  });

  it('signal-with-start: messages start a cart run or reach it, repeats are dropped, a finished cart gives its key up', async () => {
    const { stdout, url } = await finished('signal-with-start');
    assert.deepEqual(linesStarting(stdout, 'cart:'), [
      'cart: m-1 started the cart run', 'cart: m-2 reached the cart run', 'cart: m-2 dropped (a repeat)',
      'cart: m-3 reached the cart run', 'cart: m-4 reached the cart run', 'cart: order for ada: 3 x tea, 1 x mug',
    ]);
    assert.deepEqual(linesStarting(stdout, 'after:'), [
      'after: m-4 again started nothing (delivered: false)',
      'after: m-5 started the next cart run; the first run\'s formerKey is cart-ada',
      'after: order for ada: 1 x pot',
    ]);
    assert.deepEqual(linesStarting(stdout, 'burst:'), ['burst: 1 run started, 1 run signalled, 10 messages delivered', 'burst: order for bo: 10 x pen']);
    assert.deepEqual(linesStarting(stdout, 'sql:'), ['sql: started true, then started false (same run: true)', 'sql: order for cy: 3 x ink']);
    const rows = await query<{ key: string | null; former_key: string | null; status: string }>(url,
      `select key, former_key, status from trellis.runs where workflow = 'cart' order by created_at, id`);
    assert.deepEqual(rows.map((r) => [r.key ?? r.former_key, r.status]),
      [['cart-ada', 'completed'], ['cart-ada', 'completed'], ['cart-bo', 'completed'], ['cart-cy', 'completed']]);
  });

  it('requests: a run answers withdrawals or refuses them, a repeated id gets the same answer once, replies are run values', async () => {
    const { stdout, url } = await finished('requests');
    assert.deepEqual(linesStarting(stdout, 'withdraw'), [
      'withdraw 30: balance 70', 'withdraw 500: refused (insufficient-funds): insufficient funds: 70 left',
      'withdraw 30 again (w-1): balance 70; then withdraw 20: balance 50',
    ]);
    assert.deepEqual(linesStarting(stdout, 'sql:'), [
      'sql: reply:w-1 = {"value":{"balance":70}}',
      'sql: reply:w-2 = {"error":{"code":"insufficient-funds","details":{"balance":70},"message":"insufficient funds: 70 left"}}',
      'sql: reply:w-3 = {"value":{"balance":50}}',
      'sql: 2 ledger entries for 4 requests (one refused, one a repeat)',
    ]);
    assert.deepEqual(linesStarting(stdout, 'result:'), ['result: {"closedWith":50}']);
    assert.deepEqual(linesStarting(stdout, 'after the end:'), ['after the end: w-3 again: balance 50', 'after the end: w-4: IllegalTransitionError']);
    const rows = await query<{ signal_id: string }>(url, `select signal_id from trellis.signals where name = 'withdraw' order by id`);
    assert.deepEqual(rows.map((r) => r.signal_id), ['w-1', 'w-2', 'w-3'], 'one message per request id');
  });

  it('patching: a run past the patch point keeps the old path, a run before it and a new run take the new one', async () => {
    const { stdout } = await finished('patching');
    assert.deepEqual(linesStarting(stdout, 'v1:'), ['v1: receipts ["email for A-1"]']);
    assert.deepEqual(linesStarting(stdout, 'check:'), ['check: 2 of 2 runs replay through the patched code']);
    assert.deepEqual(linesStarting(stdout, 'patched:'), [
      'patched: A-1: done (email)', 'patched: B-2: done (sms)', 'patched: C-3: done (sms)',
      'patched: receipts ["email for A-1","sms for B-2","sms for C-3"]',
    ]);
    assert.deepEqual(linesStarting(stdout, 'history:'), [
      'history: signal paid, step email-receipt, signal delivered',
      'history: signal paid, patch sms-receipt, step sms-receipt, signal delivered',
    ]);
  });

  it('streams: a reader follows the entries as they commit and stops at the close; another resumes after a cursor; SQL reads them', async () => {
    const { stdout } = await finished('streams');
    assert.deepEqual(linesStarting(stdout, 'live:'), [
      'live: #0 the quick brown...', 'live: #1 a stitch in...', 'live: #2 all that glitters...', 'live: #3 fortune favours the...',
      'live: closed; the run published 4 summaries',
    ]);
    assert.deepEqual(linesStarting(stdout, 'resumed:'), ['resumed: docs [2,3]']);
    assert.deepEqual(linesStarting(stdout, 'sql:'), ['sql: #0 #1 #2 #3 closed']);
  });

  it('run-metadata: runs record their stage in their metadata; list, SQL and a bulk cancel find them by it; an operator marks one', async () => {
    const { stdout } = await finished('run-metadata');
    assert.deepEqual(linesStarting(stdout, 'o-1'), ['o-1: shipped with dhl', 'o-1 metadata: {"stage":"shipped","tenant":"acme","carrier":"dhl"}']);
    assert.deepEqual(linesStarting(stdout, 'acme, paid'), ['acme, paid, not shipped: o-2']);
    assert.deepEqual(linesStarting(stdout, 'sql, shipped:'), ['sql, shipped: o-1 by dhl']);
    assert.deepEqual(linesStarting(stdout, 'marked:'), ['marked: {"stage":"paid","tenant":"globex","escalated":"OPS-17"}']);
    assert.deepEqual(linesStarting(stdout, 'cancelled:'), ['cancelled: 2 orders']);
  });

  it('step-progress: the retry of a long step starts at the page its failed attempt saved; no page is imported twice', async () => {
    const { stdout } = await finished('step-progress');
    assert.deepEqual(linesStarting(stdout, 'attempt'), ['attempt 1: starting at page 0', 'attempt 2: starting at page 6']);
    assert.deepEqual(linesStarting(stdout, 'imported:'), ['imported: 0 1 2 3 4 5 6 7 8 9']);
    assert.deepEqual(linesStarting(stdout, 'step:'), ['step: completed after 2 attempts']);
  });

  it('key-policies: a repeated key is one run; reuse starts a new run once the first finished; replace runs a burst once with its last input; supersede cancels the run under way', async () => {
    const { stdout, url } = await finished('key-policies');
    assert.deepEqual(linesStarting(stdout, 'idempotent:'), ['idempotent: same run true; invoice for order 7']);
    assert.deepEqual(linesStarting(stdout, 'singleton:'), [
      'singleton: synced account 42 (signup)',
      'singleton: a new run after the first finished true; synced account 42 (plan change)',
      'singleton: the first run\'s key null, formerKey "account-42"',
    ]);
    assert.deepEqual(linesStarting(stdout, 'debounce:'), [
      'debounce: 1 run for 5 starts; indexed handbook at revision 5',
      'debounce: revisions indexed [5]',
      'debounce: events replaced x4, started x1',
    ]);
    assert.deepEqual(linesStarting(stdout, 'supersede:'), [
      'supersede: request 1 cleans up',
      'supersede: the older run cancelled; the key\'s run is the newer true',
      'supersede: profile rebuilt for request 2',
    ]);
    assert.deepEqual(linesStarting(stdout, 'sql:'), ['sql: a new run true; invoice for order 7', 'sql: invoice runs [[null,"invoice-7"],["invoice-7",null]]']);
    const rows = await query<{ n: number }>(url, `select count(*)::int as n from trellis.runs where workflow = 'reindex'`);
    assert.equal(rows[0]!.n, 1);
  });

  it('replay-check: a fix inside a step body replays every sleeping run; a step inserted before the sleep would break all three', async () => {
    const { stdout } = await finished('replay-check');
    assert.match(stdout, /^runs asleep: 3$/m);
    assert.match(stdout, /^body fix: 3 checked, 0 would break$/m);
    assert.match(stdout, /^new step: 3 checked, 3 would break$/m);
    assert.match(stdout, /^new step: run … \(subscription@1\): call #1 is step "send-welcome" but the history has sleep "until-renewal"/m);
    assert.match(stdout, /^recorded calls: 6 \(2 per run, nothing written by the checks\)$/m);
  });

  it('bulk-start: 500 runs started with the app\'s own insert in one transaction, keyed, all completed; a bad batch starts nothing', async () => {
    const { stdout, url } = await finished('bulk-start');
    assert.match(stdout, /^started 500 runs with the import$/m);
    assert.match(stdout, /^the same keys again: the same runs$/m);
    assert.match(stdout, /^completed 500; first: ord-1: 1 packed; last: ord-500: 2 packed$/m);
    assert.match(stdout, /^refused: ValidationError: run 2: input of fulfil is invalid/m);
    assert.match(stdout, /^runs started by the refused batch: 0$/m);
    const [row] = await query<{ runs: number; done: number; imports: number; top: number }>(url,
      `select count(*)::int as runs, count(*) filter (where status = 'completed')::int as done,
              (select count(*)::int from imports) as imports, count(*) filter (where priority = 10)::int as top from trellis.runs`);
    assert.deepEqual(row, { runs: 500, done: 500, imports: 1, top: 166 });
  });

  it('payment-link: the URL is read while the run waits for the payment, the state moves on, a key never set is NotFoundError', async () => {
    const { stdout, url } = await finished('payment-link');
    assert.match(stdout, /^pay at: https:\/\/pay\.example\/session\/cs_o-1001$/m);
    assert.match(stdout, /^run finished before the payment: no$/m);
    assert.match(stdout, /^result: shipped$/m);
    assert.match(stdout, /^state: shipped$/m);
    assert.match(stdout, /^from SQL: payment-url="https:\/\/pay\.example\/session\/cs_o-1001" state="shipped"$/m);
    assert.match(stdout, /^refund-id: NotFoundError: run <run> completed without setting value refund-id$/m);
    const rows = await query<{ name: string; n: number }>(url,
      `select name, count(*)::int as n from trellis.steps where kind = 'value' group by name order by name`);
    assert.deepEqual(rows, [{ name: 'payment-url', n: 1 }, { name: 'state', n: 3 }], 'each setValue recorded once');
  });

  it('order-saga: an invalid address fails ship for good and the compensations run in reverse order', async () => {
    const { stdout, url } = await finished('order-saga');
    assert.deepEqual(jsonAfter(stdout, 'ord-1: '), { orderId: 'ord-1', status: 'shipped', tracking: 'TRK-ord-1' });
    const bad = jsonAfter(stdout, 'ord-2: ') as { status: string; reason: string };
    assert.equal(bad.status, 'compensated');
    assert.match(bad.reason, /address invalid/);
    assert.match(stdout, /^stock of sku-kettle: 3 /m);
    assert.match(stdout, /^open charges: 59\.9 /m);
    const history = stdout.slice(stdout.indexOf('history of ord-2 (completed):'));
    assert.deepEqual(history.split('\n').slice(1, 6).map((l) => l.split(' ').slice(2, 5).join(' ')), [
      '0 reserve-inventory: completed',
      '1 charge-payment: completed',
      '2 ship: failed',
      '3 refund-payment: completed',
      '4 release-inventory: completed',
    ]);
    const rows = await query<{ name: string; status: string }>(url,
      `select s.name, s.status from trellis.steps s join trellis.runs r on r.id = s.run_id
        where r.input->>'orderId' = 'ord-2' order by s.seq`);
    assert.deepEqual(rows.map((r) => r.name), ['reserve-inventory', 'charge-payment', 'ship', 'refund-payment', 'release-inventory']);
  });

  it('continue-as-new: one run and key across five executions, a small history, and the final count', async () => {
    const { stdout, url } = await finished('continue-as-new');
    assert.deepEqual(jsonAfter(stdout, 'result: '), { cursor: 23, processed: 23, sum: 2760 });
    assert.match(stdout, /^runs with key feed-poller-[0-9a-f]{8}: 1; same id as started: true; status: completed$/m);
    assert.match(stdout, /^execution: 5, /m);
    assert.match(stdout, /^steps kept: 5:fetch-batch, 5:process-batch$/m);
    assert.deepEqual(jsonAfter(stdout, 'keepHistory result: '), { cursor: 23, processed: 23, sum: 2760 });
    assert.match(stdout, /^keepHistory steps per execution: 1=3, 2=3, 3=3, 4=3, 5=2$/m);
    const rows = await query<{ execution: number; status: string }>(url,
      `select execution, status from trellis.runs where workflow = 'feed-poller'`);
    assert.deepEqual(rows, [{ execution: 5, status: 'completed' }, { execution: 5, status: 'completed' }]);
  });

  it('retention: finished runs are purged after the retention, a waiting one is kept, on-demand purges from TS and SQL, and a scrub', async () => {
    const { stdout, url } = await finished('retention');
    assert.match(stdout, /^retention: send-receipt 2000 ms, audit-log: 220903200000 ms$/m);
    assert.deepEqual(linesStarting(stdout, 'receipt for '), ['receipt for A-1 sent', 'receipt for A-2 sent', 'receipt for A-3 sent']);
    assert.match(stdout, /^receipts kept right after finishing: 3$/m);
    assert.match(stdout, /^receipts purged after at least 2 s$/m);
    assert.match(stdout, /^waiting invoice kept: waiting$/m);
    assert.match(stdout, /^audit log kept: completed$/m);
    assert.match(stdout, /^purged from TS: 3$/m);
    assert.match(stdout, /^A-7 paid 42$/m);
    assert.match(stdout, /^purged from SQL: 1$/m);
    assert.match(stdout, /^runs left: 0$/m);
    assert.match(stdout, /^scrubbed run: status completed, input null, output null, steps email:completed:null$/m);
    const rows = await query<{ steps: number; signals: number; runs: number; scrubbed: number }>(url,
      `select (select count(*) from trellis.steps)::int as steps, (select count(*) from trellis.signals)::int as signals,
              (select count(*) from trellis.runs)::int as runs, (select count(*) from trellis.runs where scrubbed_at is not null)::int as scrubbed`);
    assert.deepEqual(rows, [{ steps: 1, signals: 0, runs: 1, scrubbed: 1 }], 'steps and signals went with their runs; the scrubbed run and its step stay');
  });
});

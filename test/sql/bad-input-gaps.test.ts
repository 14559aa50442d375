/**
 * Bad input the SQL entry points used to take or answer badly: numeric queue
 * and version options (coerced to text), a NULL setting key (a NOT NULL
 * violation instead of TR001), a NULL, empty or huge worker id in run_claim,
 * and error messages that echoed a whole 10,000-character bad value. Each
 * is TR001 with a message that quotes at most a bounded prefix, and writes
 * nothing.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"default"}]')`) });

const HUGE = 'x'.repeat(10_000);
/** Longest message allowed for an error about a 10,000-character value. */
const BOUND = 400;

async function refused(text: string, values: unknown[], code = 'TR001'): Promise<string> {
  const before = await counts();
  const error = await fx.db.pool.query(text, values).then(() => undefined, (e: { code?: string | undefined; message: string }) => e);
  assert.ok(error, `${text} was accepted`);
  assert.equal(error.code, code, `${text}: ${error.message}`);
  assert.ok(error.message.length < BOUND, `message of ${error.message.length} characters: ${error.message.slice(0, 200)}`);
  assert.deepEqual(await counts(), before, 'nothing written');
  return error.message;
}

/** Tables a refused call must leave as they were, each as a digest of its rows. */
const TABLES = ['runs', 'steps', 'settings', 'workflows', 'queues', 'schedules', 'retentions', 'hook_deliveries', 'templates'];

async function counts(): Promise<Record<string, string>> {
  const { rows } = await fx.db.pool.query(`select ${TABLES.map((t) =>
    `(select count(*) || ':' || coalesce(md5(string_agg(x::text, ',' order by x::text)), '') from trellis.${t} x) as ${t}`).join(', ')}`);
  return rows[0];
}

async function one(text: string, values: unknown[] = []): Promise<unknown> {
  const { rows } = await fx.db.pool.query(text, values);
  return Object.values(rows[0] ?? {})[0];
}

describe('run_start options', () => {
  it('refuses a numeric queue or version instead of coercing it', async () => {
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', '{"queue": 5}']);
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', '{"version": 1}']);
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', '{"queue": ["default"]}']);
  });

  it('quotes at most a prefix of a huge queue, version, option name or run_at', async () => {
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ queue: HUGE })]);
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ version: HUGE })]);
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ [HUGE]: 1 })]);
    await refused('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ run_at: HUGE })]);
    const message = await refused('select trellis.run_start($1, $2, $3)', [HUGE, '{}', '{}']);
    assert.match(message, /'x{100}\.\.\.'/, 'the prefix, marked as cut');
  });
});

describe('setting_set', () => {
  it('refuses a NULL key with TR001, not a NOT NULL violation', async () => {
    await refused('select trellis.setting_set(null, $1)', ['100']);
  });

  it('quotes at most a prefix of a huge unknown key', async () => {
    await refused('select trellis.setting_set($1, $2)', [HUGE, '100']);
  });
});

describe('integer settings written as whole numbers with a fraction (1048576.0)', () => {
  for (const [key, written, stored] of [['max_payload_bytes', '1048576.0', 1048576], ['max_lease_expiries', '5.0', 5],
    ['max_history_steps', '1e4', 10000], ['buckets', '64.0', 64]] as const) {
    it(`setting_set stores ${key} ${written} as the integer ${stored}, and starts go on`, async () => {
      assert.deepEqual(await one('select trellis.setting_set($1, $2)', [key, written]), stored);
      assert.equal(await one(`select value::text from trellis.settings where key = $1`, [key]), String(stored));
      assert.ok(await one(`select trellis.run_start('w', '{}')`));
      assert.equal(await one('select trellis._setting_int($1, 0)', [key]), stored);
    });
  }

  it('refuses a fraction that is not whole: TR001 for a limit, TR008 for buckets', async () => {
    await refused('select trellis.setting_set($1, $2)', ['max_payload_bytes', '1048576.5']);
    await refused('select trellis.setting_set($1, $2)', ['max_lease_expiries', '0.5']);
    await refused('select trellis.setting_set($1, $2)', ['max_history_steps', '1e10']);
    await refused('select trellis.setting_set($1, $2)', ['buckets', '64.5'], 'TR008');
  });

  it('a bucket count stored as 64.0 (as setting_set once stored it) is read as 64 and can be set again', async () => {
    await fx.db.pool.query(`update trellis.settings set value = '64.0' where key = 'buckets'`);
    assert.ok(await one(`select trellis.run_start('w', '{}')`), 'a start reads 64.0');
    assert.equal(await one(`select trellis.setting_set('buckets', '64')`), 64);
    assert.equal(await one(`select value::text from trellis.settings where key = 'buckets'`), '64');
    await refused(`select trellis.setting_set('buckets', '128')`, [], 'TR008');
  });

  it('a bucket count no start can read does not block its repair through setting_set', async () => {
    await fx.db.pool.query(`update trellis.settings set value = '"sixty-four"' where key = 'buckets'`);
    assert.equal(await one(`select trellis.setting_set('buckets', '64')`), 64);
    assert.ok(await one(`select trellis.run_start('w', '{}')`));
  });

  it('a limit stored as 1048576.0 is read as 1048576 by starts and checkpoints', async () => {
    await fx.db.pool.query(`update trellis.settings set value = '1048576.0' where key = 'max_payload_bytes'`);
    assert.ok(await one(`select trellis.run_start('w', '{"a": 1}')`));
    assert.equal(await one(`select trellis._setting_int('max_payload_bytes', 0)`), 1048576);
    await fx.db.pool.query(`select trellis.setting_set('max_payload_bytes', '1048576')`);
  });
});

describe('integer options written as whole numbers with a fraction (1.0)', () => {
  it('run_start takes priority 1.0, 10.00 and -0.0 as 1, 10 and 0, and refuses 1.5 and 1e10 with TR001', async () => {
    for (const [written, priority] of [['1.0', 1], ['10.00', 10], ['-0.0', 0], ['3e2', 300]] as const) {
      const id = await one(`select trellis.run_start('w', '{}', $1)`, [`{"priority": ${written}}`]);
      assert.equal(await one('select priority from trellis.runs where id = $1', [id]), priority);
    }
    await refused(`select trellis.run_start('w', '{}', '{"priority": 1.5}')`, []);
    await refused(`select trellis.run_start('w', '{}', '{"priority": 1e10}')`, []);
  });

  it('machine_trigger takes priority 2.0', async () => {
    const id = await one(`select trellis.machine_trigger('w', 'f1', '{}', '{"priority": 2.0}')`);
    assert.equal(await one('select priority from trellis.runs where id = $1', [id]), 2);
  });

  it('queue_set takes concurrency, key_concurrency and rate.limit 5.0, and refuses 5.5 and 1e10 with TR001', async () => {
    const row = await fx.db.pool.query(`select * from trellis.queue_set('q1', '{"concurrency": 5.0, "key_concurrency": 2.0, "rate": {"limit": 3.0, "period": "1 second"}}')`);
    assert.deepEqual([row.rows[0].concurrency, row.rows[0].key_concurrency, row.rows[0].rate_limit], [5, 2, 3]);
    for (const options of [{ concurrency: 5.5 }, { key_concurrency: 1e10 }, { rate: { limit: 2.5, period: '1 second' } }]) {
      await refused('select trellis.queue_set($1, $2)', ['q1', JSON.stringify(options)]);
    }
  });

  it('schedule_set takes catch_up 2.0, and refuses 2.5 and 1e10 with TR001', async () => {
    assert.equal(await one(`select catch_up from trellis.schedule_set('s1', '{"cron": "* * * * *", "workflow": "w", "catch_up": 2.0}')`), 2);
    await refused(`select trellis.schedule_set('s2', '{"cron": "* * * * *", "workflow": "w", "catch_up": 2.5}')`, []);
    await refused(`select trellis.schedule_set('s2', '{"cron": "* * * * *", "workflow": "w", "catch_up": 1e10}')`, []);
  });

  it('schedule_set refuses a jitter without a unit (seconds to PostgreSQL, milliseconds to TypeScript) with TR001, as time_limit', async () => {
    for (const jitter of [30000, '3600', ' 1.5 ', true]) {
      const message = await refused('select trellis.schedule_set($1, $2)', ['s-j', JSON.stringify({ cron: '* * * * *', workflow: 'w', jitter })]);
      assert.match(message, /jitter must be an interval with a unit/);
    }
    assert.equal(await one(`select jitter::text from trellis.schedule_set('s-j', '{"cron": "* * * * *", "workflow": "w", "jitter": "30 seconds"}')`), '00:00:30');
    assert.equal(await one(`select jitter::text from trellis.schedule_set('s-j', '{"cron": "* * * * *", "workflow": "w", "jitter": null}')`), '00:00:00');
  });

  it('template_start takes template_version 1.0, and refuses 1.5 and 1e10 with TR001', async () => {
    await fx.db.pool.query(`select trellis.template_set('t1', '{"steps":[{"name":"a"}]}')`);
    await fx.db.pool.query(`select trellis.workflow_register('[{"name":"template:t1","version":"1","queue":"default"}]')`);
    assert.ok(await one(`select trellis.template_start('t1', '{}', '{"template_version": 1.0}')`));
    await refused(`select trellis.template_start('t1', '{}', '{"template_version": 1.5}')`, []);
    await refused(`select trellis.template_start('t1', '{}', '{"template_version": 1e10}')`, []);
  });
});

describe('payloads kept from a control call or a hook', () => {
  const big = 'x'.repeat(1_048_577);

  it('run_cancel and run_pause refuse a reason over max_payload_bytes with TR005 and change nothing', async () => {
    const id = await one(`select trellis.run_start('w', '{}')`);
    await refused('select trellis.run_cancel($1, $2)', [id, big], 'TR005');
    await refused('select trellis.run_pause($1, $2)', [id, big], 'TR005');
    assert.equal(await one(`select trellis.run_pause($1, 'maintenance')`, [id]), 'paused', 'a short reason is taken');
  });

  it('hook_failed refuses an error over max_payload_bytes with TR005 and leaves the delivery running', async () => {
    await fx.db.pool.query(`select trellis.workflow_register('[{"name":"h","version":"1","hooks":["onComplete"]}]')`);
    await fx.db.pool.query(`select trellis.run_start('h', '{}', '{"queue":"hq"}')`);
    await fx.db.pool.query(`select trellis.run_complete(id, lease_token, '1') from trellis.run_claim('x', '{hq}', '{h}', '{1}', 1, '1 minute')`);
    const { rows: [hook] } = await fx.db.pool.query(`select id, attempts from trellis.hook_claim('hw', '{h}', '{1}', 1, '1 minute')`);
    assert.ok(hook, 'a delivery was claimed');
    await refused(`select trellis.hook_failed($1, 'hw', $2, $3, '1 second')`, [hook.id, hook.attempts, JSON.stringify({ message: big })], 'TR005');
    assert.equal(await one(`select trellis.hook_failed($1, 'hw', $2, '{"message":"boom"}', '1 second')`, [hook.id, hook.attempts]), 'pending');
  });
});

describe('schedule_set time zones', () => {
  for (const zone of ['UTC+3', 'Foo-3', 'EST5', 'Mars/Olympus']) {
    it(`refuses ${zone}, which is no IANA name, with TR001`, async () => {
      await refused('select trellis.schedule_set($1, $2)', ['tz', JSON.stringify({ cron: '0 7 * * *', workflow: 'w', time_zone: zone })]);
    });
  }

  it('takes IANA names', async () => {
    for (const zone of ['UTC', 'Europe/Berlin', 'America/Argentina/Buenos_Aires', 'Etc/GMT+3']) {
      assert.equal(await one('select time_zone from trellis.schedule_set($1, $2)', ['tz-ok', JSON.stringify({ cron: '0 7 * * *', workflow: 'w', time_zone: zone })]), zone);
    }
  });
});

describe('workflow_register', () => {
  for (const [what, item] of [
    ['an input_schema of false', { name: 'nf', version: '1', input_schema: false }],
    ['a signal shape of false', { name: 'nf', version: '1', signals: { go: false } }],
    ['a numeric name', { name: 5, version: '1' }],
    ['a numeric version', { name: 'nf', version: 1 }],
    ['a numeric queue', { name: 'nf', version: '1', queue: 7 }],
  ] as const) {
    it(`refuses ${what} with TR001 and registers nothing`, async () => {
      await refused('select trellis.workflow_register($1)', [JSON.stringify([item])]);
    });
  }

  it('takes an input_schema and signal shapes of true, and a null queue as default', async () => {
    await fx.db.pool.query('select trellis.workflow_register($1)', [JSON.stringify([{ name: 'nt', version: '1', queue: null, input_schema: true, signals: { go: true } }])]);
    assert.equal(await one(`select queue from trellis.workflows where name = 'nt'`), 'default');
  });
});

describe('run_claim', () => {
  for (const [what, worker] of [['NULL', null], ['empty', ''], ['100,000-character', 'w'.repeat(100_000)]] as const) {
    it(`refuses a ${what} worker id`, async () => {
      await fx.db.pool.query(`select trellis.run_start('w', '{}', '{"queue":"claimq"}')`);
      const message = await refused(`select * from trellis.run_claim($1, array['claimq'], '{w}', '{1}', 10, '30 seconds')`, [worker]);
      assert.match(message, /worker id/);
      const { rows } = await fx.db.pool.query(`select count(*)::int as n from trellis.runs where queue = 'claimq' and status = 'running'`);
      assert.equal(rows[0].n, 0, 'nothing claimed');
    });
  }

  it('refuses workflows and versions of different lengths (they pair up) with TR001, and leases nothing', async () => {
    await fx.db.pool.query(`select trellis.run_start('w', '{}', '{"queue":"claimq2"}')`);
    for (const [workflows, versions] of [['{w,w}', '{1}'], ['{w}', '{1,1}'], ['{w}', null]] as const) {
      const message = await refused(`select * from trellis.run_claim('wk', array['claimq2'], $1::text[], $2::text[], 10, '30 seconds')`, [workflows, versions]);
      assert.match(message, /as many versions as workflows/);
    }
    const { rows } = await fx.db.pool.query(`select count(*)::int as n from trellis.runs where queue = 'claimq2' and status = 'running'`);
    assert.equal(rows[0].n, 0, 'nothing claimed');
  });
});

describe('hook_claim', () => {
  for (const [what, worker] of [['NULL', null], ['empty', ''], ['100,000-character', 'w'.repeat(100_000)]] as const) {
    it(`refuses a ${what} worker id, as run_claim does, and leases nothing`, async () => {
      await fx.db.pool.query(`select trellis.workflow_register('[{"name":"hc","version":"1","hooks":["onComplete"]}]')`);
      await fx.db.pool.query(`select trellis.run_start('hc', '{}', '{"queue":"hcq"}')`);
      await fx.db.pool.query(`select trellis.run_complete(id, lease_token, '1') from trellis.run_claim('x', '{hcq}', '{hc}', '{1}', 1, '1 minute')`);
      const message = await refused(`select * from trellis.hook_claim($1, '{hc}', '{1}', 10, '1 minute')`, [worker]);
      assert.match(message, /worker id/);
      assert.equal(await one(`select count(*)::int from trellis.hook_deliveries where workflow = 'hc' and status = 'running'`), 0);
    });
  }
});

describe('messages about a NULL id or version', () => {
  for (const call of ['run_cancel($1)', 'run_pause($1)', 'run_resume($1)', 'run_retry($1)', 'run_scrub($1)',
    `run_set_metadata($1, '{}')`, `signal_send($1, 'a', '{}')`, `run_heartbeat($1::uuid, $1::uuid, '30 seconds')`]) {
    it(`${call.replace(/\(.*/, '')} of a NULL run says run null, not an empty id`, async () => {
      const message = await refused(`select trellis.${call}`, [null], 'TR002');
      assert.match(message, /^run null does not exist/);
    });
  }

  it('hook_retry of a NULL id says hook delivery null', async () => {
    assert.match(await refused('select trellis.hook_retry(null)', [], 'TR002'), /^hook delivery null does not exist/);
  });

  it('workflow_input_error and schedule_set name no version NULL for an unknown workflow', async () => {
    assert.equal(await refused(`select trellis.workflow_input_error('nope', '{}')`, [], 'TR002'), `unknown workflow 'nope'`);
    const message = await refused(`select trellis.schedule_set('s-nope', '{"cron": "* * * * *", "workflow": "nope"}')`, [], 'TR002');
    assert.doesNotMatch(message, /NULL/);
  });
});

describe('queue_set fair and paused null', () => {
  it('removes them as null removes the other options (false, the default)', async () => {
    await fx.db.pool.query(`select trellis.queue_set('qf', '{"fair": true, "paused": true}')`);
    const { rows: [row] } = await fx.db.pool.query(`select * from trellis.queue_set('qf', '{"fair": null, "paused": null}')`);
    assert.deepEqual([row.fair, row.paused], [false, false]);
    await refused(`select trellis.queue_set('qf', '{"fair": "yes"}')`, []);
  });
});

describe('other entry points with a huge value', () => {
  it('step_record, workflow_register and signal_send quote at most a prefix', async () => {
    const run = '00000000-0000-0000-0000-000000000000';
    await refused('select trellis.step_record($1, $1, 0, $2, $3)', [run, 'a', HUGE]);
    await refused(`select trellis.step_record($1, $1, 0, 'a', 'completed', null, null, 1, $2)`, [run, HUGE]);
    await refused('select trellis.step_record($1, $1, 0, $2, $3)', [run, HUGE, 'completed']);
    await refused('select trellis.workflow_register($1)', [JSON.stringify([{ name: HUGE, version: '1' }])]);
    await refused('select trellis.workflow_register($1)', [JSON.stringify([{ name: 'w2', version: HUGE }])]);
    await refused(`select trellis.signal_send($1, $2, '{}')`, [run, HUGE]);
  });
});

/** A run of its own queue, claimed: its id and lease token. */
async function held(): Promise<{ id: string; token: string }> {
  const queue = `wp${Math.random().toString(36).slice(2, 8)}`;
  await fx.db.pool.query('select trellis.run_start($1, $2, $3)', ['w', '{}', JSON.stringify({ queue })]);
  const { rows: [row] } = await fx.db.pool.query(`select id, lease_token as token from trellis.run_claim('w1', array[$1], '{w}', '{1}', 1, '30 seconds')`, [queue]);
  return row as { id: string; token: string };
}

describe('worker-protocol bounds', () => {
  const state = async (id: string) =>
    (await fx.db.pool.query('select status, run_at, lease_token from trellis.runs where id = $1', [id])).rows[0];
  const apply = (ops: unknown) => fx.db.pool.query('select * from trellis.checkpoint_apply($1)', [JSON.stringify(ops)]);

  it('run_release refuses a delay that is negative, infinite or over 1000 years with TR001 and keeps the lease', async () => {
    const run = await held();
    const before = await state(run.id);
    for (const delay of ['-1 day', '300000 years']) {
      await assert.rejects(fx.db.pool.query('select trellis.run_release($1, $2, $3::interval)', [run.id, run.token, delay]),
        { code: 'TR001', message: /release delay must be from zero to 1000 years/ });
    }
    if (Number((await fx.db.pool.query(`select current_setting('server_version_num') as v`)).rows[0].v) >= 170000) {
      await assert.rejects(fx.db.pool.query(`select trellis.run_release($1, $2, 'infinity')`, [run.id, run.token]), { code: 'TR001' });
    }
    assert.deepEqual(await state(run.id), before);
    await fx.db.pool.query(`select trellis.run_release($1, $2, '1 hour')`, [run.id, run.token]);
    assert.equal((await state(run.id)).status, 'pending');
  });

  it('checkpoint_apply refuses delay_ms over 1000 years and a child close other than cancel or abandon with TR001', async () => {
    const run = await held();
    const before = await state(run.id);
    for (const op of [{ op: 'release', delay_ms: 1e16 }, { op: 'wait', delay_ms: 1e16 },
      { op: 'child', seq: 0, name: 'c', child: crypto.randomUUID(), workflow: 'w', close: 'explode' }]) {
      await assert.rejects(apply([{ ...op, run: run.id, token: run.token }]), { code: 'TR001', message: /malformed checkpoint op/ });
    }
    assert.deepEqual(await state(run.id), before);
  });

  it('checkpoint_apply refuses a child whose id is already a run\'s id with TR001, and starts nothing', async () => {
    const other = await held();
    const run = await held();
    const runs = Number((await fx.db.pool.query('select count(*) from trellis.runs')).rows[0].count);
    await assert.rejects(apply([{ op: 'child', run: run.id, token: run.token, seq: 0, name: 'c', child: other.id, workflow: 'w' }]),
      { code: 'TR001', message: /already a run's id/ });
    assert.equal(Number((await fx.db.pool.query('select count(*) from trellis.runs')).rows[0].count), runs);
    assert.equal((await fx.db.pool.query('select count(*)::int as n from trellis.steps where run_id = $1', [run.id])).rows[0].n, 0);
  });
});

describe('worker-protocol values PostgreSQL cannot read', () => {
  it('checkpoint_apply refuses an op whose fields are not of their types with TR001, naming the field, and writes nothing', async () => {
    const run = await held();
    const step = { op: 'step', run: run.id, token: run.token, seq: 0, name: 's', kind: 'step', status: 'completed', output: 1 };
    const cases: [Record<string, unknown>, RegExp][] = [
      [{ ...step, run: 'not-a-uuid' }, /not-a-uuid/],
      [{ ...step, token: 'x' }, /malformed checkpoint op/],
      [{ ...step, seq: 1.5 }, /1\.5/],
      [{ ...step, seq: 'first' }, /first/],
      [{ ...step, seq: 1e12 }, /malformed checkpoint op/],
      [{ ...step, attempts: true }, /malformed checkpoint op/],
      [{ ...step, status: 'exploded' }, /malformed checkpoint op/],
      [{ ...step, kind: 'magic' }, /malformed checkpoint op/],
      [{ ...step, seq: 1.000001 }, /1\.000001/],
      [{ op: 'release', run: run.id, token: run.token, delay_ms: 'soon' }, /soon/],
      [{ op: 'fail', run: run.id, token: run.token, error: { message: 'x' }, failure: 'maybe' }, /maybe/],
      [{ op: 'release', run: run.id, token: run.token, delay_ms: 0, begun: 5 }, /boolean/],
      [{ op: 'release', run: run.id, token: run.token, delay_ms: 0, begun: { not: 'a boolean' } }, /boolean/],
    ];
    for (const [op, message] of cases) {
      const text = await refused('select * from trellis.checkpoint_apply($1)', [JSON.stringify([op])]);
      assert.match(text, /malformed checkpoint op/);
      assert.match(text, message);
    }
    for (const notOps of ['[1]', '["x"]', '[[]]']) await refused('select * from trellis.checkpoint_apply($1)', [notOps]);
    // Whole numbers written with a fraction are numbers all the same.
    await one('select count(*) from trellis.checkpoint_apply($1)', [JSON.stringify([{ ...step, seq: 0.0, attempts: 1.0 }])]);
    assert.equal(await one('select count(*)::int from trellis.steps where run_id = $1 and seq = 0', [run.id]), 1);
  });

  it('checkpoint_apply refuses a waiting child step whose child id is not a uuid with TR001', async () => {
    const run = await held();
    const text = await refused('select * from trellis.checkpoint_apply($1)', [JSON.stringify([{ op: 'step', run: run.id, token: run.token,
      seq: 0, name: 'c', kind: 'child', status: 'waiting', output: { child: 'nope' } }])]);
    assert.match(text, /child/);
    // step_record, the one-op form, the same.
    await refused(`select trellis.step_record($1, $2, 0, 'c', 'waiting', '{"child": "nope"}', null, 1, 'child')`, [run.id, run.token]);
  });

  it('schedule_tick and schedule_fire refuse a negative limit and malformed fires with TR001 and write nothing', async () => {
    const token = await one(`select trellis.role_acquire('trellis.schedules', 'wp-test', '1 minute')`);
    try {
      await one(`select trellis.schedule_set('wp-s', '{"cron": "0 0 1 1 *", "workflow": "w"}')`);
      await refused('select * from trellis.schedule_tick($1, -1)', [token]);
      await refused('select * from trellis.schedule_tick($1, null)', [token]);
      for (const fires of ['{}', '[1]', '[{"name": "wp-s", "next_at": "soon"}]', '[{"name": "wp-s", "skipped": "x"}]',
        '[{"name": "wp-s", "ticks": "now"}]', '[{"name": "wp-s", "ticks": ["yesterday-ish"]}]', '[{"name": "wp-s", "next": "later"}]']) {
        const text = await refused('select trellis.schedule_fire($1, $2)', [token, fires]);
        assert.match(text, /schedule_fire/);
      }
    } finally {
      await fx.db.pool.query(`select trellis.schedule_delete('wp-s')`);
      await fx.db.pool.query(`select trellis.role_release('trellis.schedules', 'wp-test', $1)`, [token]);
    }
  });
});

describe('JSON nested more than 1,000 arrays or objects deep', () => {
  // n nested arrays, the innermost empty: 1,000 is taken, 1,001 refused.
  const nest = (n: number) => `${'['.repeat(n)}${']'.repeat(n)}`;
  const inObject = (n: number) => `{"d": ${nest(n - 1)}}`;

  it('every writer refuses it with TR001 and writes nothing; 1,000 deep is taken', async () => {
    const run = await one(`select trellis.run_start('w', '{}', '{}')`) as string;
    const cases: [string, (deep: string) => [string, unknown[]]][] = [
      ['run_start input', (d) => [`select trellis.run_start('w', $1::jsonb, '{}')`, [d]]],
      ['run_start metadata', (d) => [`select trellis.run_start('w', '{}', jsonb_build_object('metadata', $1::jsonb))`, [d]]],
      ['run_set_metadata', (d) => [`select trellis.run_set_metadata($1, $2::jsonb)`, [run, d]]],
      ['signal_send', (d) => [`select trellis.signal_send($1, 'go', $2::jsonb)`, [run, d]]],
      ['machine_trigger', (d) => [`select trellis.machine_trigger('w', 'f-deep', $1::jsonb, '{}')`, [d]]],
      ['schedule_set input', (d) => [`select trellis.schedule_set('deep', jsonb_build_object('cron', '* * * * *', 'workflow', 'w', 'input', $1::jsonb))`, [d]]],
    ];
    for (const [what, call] of cases) {
      const message = await refused(...call(what.includes('metadata') ? inObject(1001) : nest(1001)));
      assert.match(message, /nested more than 1000 arrays or objects deep/, what);
    }
    // At the bound: taken (those with a shape of their own aside).
    await one(`select trellis.run_start('w', $1::jsonb, jsonb_build_object('metadata', $2::jsonb))`, [nest(1000), inObject(1000)]);
    await one(`select trellis.run_set_metadata($1, $2::jsonb)`, [run, inObject(1000)]);
  });

  it('a checkpoint refuses a step output nested more than 1,016 deep (TR001: 16 levels for the engine\'s records around a value), and takes one 1,016 deep', async () => {
    const run = await one(`select trellis.run_start('w', '{}', '{"queue": "deep-q"}')`) as string;
    const { rows: [claimed] } = await fx.db.pool.query(`select id, lease_token from trellis.run_claim('deep-worker', '{deep-q}', '{w}', '{1}', 1, '1 minute')`);
    assert.equal(claimed.id, run);
    const step = (output: string) => JSON.stringify([{ op: 'step', run, token: claimed.lease_token, seq: 0, name: 's', kind: 'step', status: 'completed', output: '@' }])
      .replace('"@"', output);
    const error = await fx.db.pool.query('select * from trellis.checkpoint_apply($1::jsonb)', [step(nest(1017))]).then(() => undefined, (e: { code?: string; message: string }) => e);
    assert.equal(error?.code, 'TR001');
    assert.match(error!.message, /the output of step of run .* is nested more than 1000 arrays or objects deep/);
    await fx.db.pool.query('select * from trellis.checkpoint_apply($1::jsonb)', [step(nest(1016))]);
    assert.equal(await one(`select jsonb_typeof(output) from trellis.steps where run_id = $1 and seq = 0`, [run]), 'array');
  });
});

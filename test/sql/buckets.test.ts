/**
 * Buckets (docs/scaling.md, decision 0024): every run-scoped row carries its
 * run's bucket, the bucket leads every key of those tables, the bucket count
 * is a power of two fixed once runs exist, and no UPDATE of a run-scoped
 * table evaluates a volatile function.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { readdirSync, readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { ConfigurationError } from '../../src/errors.ts';
import { migrate } from '../../src/schema/install.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { freshDatabase } from '../helpers/db.ts';

const RUN_SCOPED = ['runs', 'steps', 'signals', 'events', 'hook_deliveries', 'run_deadlines', 'run_watches'];

const fx = useFreshDatabase({ setUp: (db) => db.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"bq"},
  {"name":"kid","version":"1","queue":"bq-kids"}]')`) });

const sql = async (text: string, values: unknown[] = []) => (await fx.db.pool.query(text, values)).rows;
const bucketOf = async (id: string) => Number((await sql('select bucket from trellis.runs where id = $1', [id]))[0].bucket);
const sqlState = (code: string) => (e: unknown) => (e as { code?: string | undefined }).code === code;

describe('bucket keys', () => {
  it('every table with a run_id column is run-scoped, and each has a bucket column', async () => {
    const rows = await sql(`select c.relname from pg_attribute a join pg_class c on c.oid = a.attrelid
      join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'trellis' and c.relkind = 'r' and a.attname = 'run_id' and not a.attisdropped`);
    const withRunId = rows.map((r) => r.relname as string).sort();
    assert.deepEqual(withRunId, RUN_SCOPED.filter((t) => t !== 'runs').sort());
    const bucketed = (await sql(`select c.relname from pg_attribute a join pg_class c on c.oid = a.attrelid
      join pg_namespace n on n.oid = c.relnamespace
     where n.nspname = 'trellis' and c.relkind = 'r' and a.attname = 'bucket' and a.attnotnull`)).map((r) => r.relname);
    assert.deepEqual(bucketed.sort(), [...RUN_SCOPED].sort());
  });

  it('the bucket is in every primary key, unique index and foreign key of the run-scoped tables, and leads all but the primary key of runs', async () => {
    const keys = await sql(`
      select c.relname as tbl, i.relname as name, 'index' as kind,
             (select a.attname from pg_attribute a where a.attrelid = x.indrelid and a.attnum = x.indkey[0]) as first,
             exists (select 1 from pg_attribute a where a.attrelid = x.indrelid and a.attnum = any (x.indkey::int2[])
                        and a.attname = 'bucket') as has_bucket
        from pg_index x join pg_class c on c.oid = x.indrelid join pg_class i on i.oid = x.indexrelid
        join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = 'trellis' and c.relname = any ($1) and (x.indisunique or x.indisprimary)
      union all
      select c.relname, k.conname, 'foreign key',
             (select a.attname from pg_attribute a where a.attrelid = k.conrelid and a.attnum = k.conkey[1]),
             exists (select 1 from pg_attribute a where a.attrelid = k.conrelid and a.attnum = any (k.conkey)
                        and a.attname = 'bucket')
        from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = 'trellis' and c.relname = any ($1) and k.contype = 'f'`, [RUN_SCOPED]);
    assert.ok(keys.length >= RUN_SCOPED.length + 2, `keys found: ${keys.length}`);
    assert.deepEqual(keys.filter((k) => !k.has_bucket).map((k) => `${k.tbl}.${k.name} (${k.kind})`), []);
    // runs' primary key is (id, bucket): one index serves lookups by id and
    // the foreign keys (migration 000021, decision 0024's amendment).
    const bad = keys.filter((k) => k.first !== (k.name === 'runs_pkey' ? 'id' : 'bucket'))
      .map((k) => `${k.tbl}.${k.name} (${k.kind}) leads with ${k.first}`);
    assert.deepEqual(bad, []);
    // No foreign key between a run-scoped table and another table, or across buckets.
    const refs = await sql(`select k.conname, k.confrelid::regclass::text as target,
        (select a.attname from pg_attribute a where a.attrelid = k.confrelid and a.attnum = k.confkey[1]) as target_first
        from pg_constraint k join pg_class c on c.oid = k.conrelid join pg_namespace n on n.oid = c.relnamespace
       where n.nspname = 'trellis' and c.relname = any ($1) and k.contype = 'f'`, [RUN_SCOPED]);
    for (const r of refs) assert.equal(r.target_first, 'bucket', `${r.conname} references ${r.target}`);
  });
});

describe('a run and its rows share one bucket', () => {
  it('a keyed run lands in hash(workflow, key) (the same for a repeated start); a keyless one in the hash of its id', async () => {
    const count = Number((await sql(`select (value #>> '{}')::int as n from trellis.settings where key = 'buckets'`))[0].n);
    assert.equal(count, 64);
    const key = `order-${randomUUID()}`;
    const [a] = await sql(`select trellis.run_start('w', '{}', $1) as id`, [JSON.stringify({ key })]);
    const [again] = await sql(`select trellis.run_start('w', '{}', $1) as id`, [JSON.stringify({ key })]);
    assert.equal(again.id, a.id);
    const [want] = await sql('select trellis._bucket($1, $2, null, 64) as b', ['w', key]);
    assert.equal(await bucketOf(a.id), want.b);
    const [plain] = await sql(`select trellis.run_start('w', '{}') as id`);
    const [byId] = await sql('select trellis._bucket(null, null, $1, 64) as b', [plain.id]);
    assert.equal(await bucketOf(plain.id), byId.b);
    // Buckets spread: 200 keyless runs use many of the 64.
    const [spread] = await sql(`select count(distinct trellis._bucket(null, null, gen_random_uuid(), 64)) as n
                                  from generate_series(1, 200)`);
    assert.ok(Number(spread.n) > 40, `distinct buckets: ${spread.n}`);
  });

  it('steps, signals and events carry the run\'s bucket; a keyless child inherits its parent\'s, a keyed child has its own', async () => {
    const key = `parent-${randomUUID()}`;
    const [p] = await sql(`select trellis.run_start('w', '{}', $1) as id`, [JSON.stringify({ key, queue: 'bq-p' })]);
    const [held] = await sql(`select id, lease_token from trellis.run_claim('t', '{bq-p}', '{w}', '{1}', 1, '30 seconds')`);
    assert.equal(held.id, p.id);
    const plainChild = randomUUID();
    const keyedChild = randomUUID();
    const childKey = `kid-${randomUUID()}`;
    await sql('select * from trellis.checkpoint_apply($1)', [JSON.stringify([
      { op: 'step', run: p.id, token: held.lease_token, seq: 0, name: 'a', kind: 'step', status: 'completed', output: 1 },
      { op: 'child', run: p.id, token: held.lease_token, seq: 1, name: 'c1', child: plainChild, workflow: 'kid', input: {} },
      { op: 'child', run: p.id, token: held.lease_token, seq: 2, name: 'c2', child: keyedChild, workflow: 'kid', input: {}, key: childKey },
      { op: 'wait', run: p.id, token: held.lease_token, delay_ms: null },
    ])]);
    await sql(`select trellis.signal_send($1, 'go', '1', 'sig-1')`, [p.id]);
    const parentBucket = await bucketOf(p.id);
    assert.equal(await bucketOf(plainChild), parentBucket);
    const [own] = await sql('select trellis._bucket($1, $2, null, 64) as b', ['kid', childKey]);
    assert.equal(await bucketOf(keyedChild), own.b);
    for (const table of ['steps', 'signals', 'events']) {
      const rows = await sql(`select distinct bucket from trellis.${table} where run_id = $1`, [p.id]);
      assert.deepEqual(rows.map((r) => Number(r.bucket)), [parentBucket], table);
    }
    // The bucket is never updated: no function of the engine writes it after the insert.
    const bodies = await sql(`select p.proname, p.prosrc from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'trellis'`);
    const setClauses = bodies.flatMap((b) => [...(b.prosrc as string).matchAll(/update\s+trellis\.\w+[^;]*?\bset\b([^;]*?)(\bwhere\b|\bfrom\b|\breturning\b|;)/gi)]
      .map((m) => ({ fn: b.proname as string, set: m[1] as string })));
    assert.ok(setClauses.length > 10, `updates found: ${setClauses.length}`);
    assert.deepEqual(setClauses.filter((u) => /(^|[\s,(])bucket\s*=/i.test(u.set)).map((u) => u.fn), []);
  });
});

describe('the bucket count', () => {
  it('refuses a count that is not a power of two from 1 to 4096 (TR008), changing nothing', async () => {
    for (const bad of ['100', '0', '8192', '-4', '2.5', '"64"', 'null']) {
      await assert.rejects(sql(`select trellis.setting_set('buckets', $1::jsonb)`, [bad]), sqlState('TR008'), bad);
    }
    const [row] = await sql(`select value from trellis.settings where key = 'buckets'`);
    assert.equal(row.value, 64);
  });

  it('refuses a change once runs exist (TR008), and accepts the same count again', async () => {
    assert.ok(Number((await sql('select count(*) from trellis.runs'))[0].count) > 0);
    await assert.rejects(sql(`select trellis.setting_set('buckets', '128')`), sqlState('TR008'));
    await sql(`select trellis.setting_set('buckets', '64')`);
    assert.equal((await sql(`select value from trellis.settings where key = 'buckets'`))[0].value, 64);
  });

  it('is chosen at install: migrate({ buckets }) sets it on an empty database; a bad one is a ConfigurationError', async () => {
    const fresh = await freshDatabase();
    try {
      await assert.rejects(migrate(fresh.url, { buckets: 48 }), ConfigurationError);
      assert.equal((await fresh.pool.query(`select value from trellis.settings where key = 'buckets'`)).rows[0].value, 64);
      await migrate(fresh.url, { buckets: 256 });
      await fresh.pool.query(`select trellis.workflow_register('[{"name":"w","version":"1","queue":"q"}]')`);
      const ids = (await fresh.pool.query(`select trellis.run_start('w', '{}') as id from generate_series(1, 300)`)).rows;
      const buckets = (await fresh.pool.query('select max(bucket) as hi, count(distinct bucket) as n from trellis.runs')).rows[0];
      assert.equal(ids.length, 300);
      assert.ok(Number(buckets.hi) < 256 && Number(buckets.n) > 64, `max ${buckets.hi}, distinct ${buckets.n}`);
      await assert.rejects(migrate(fresh.url, { buckets: 64 }), ConfigurationError);
    } finally {
      await fresh.close();
    }
  });
});

describe('citus_distribute', () => {
  it('refuses without the citus extension (TR001) and changes nothing', async () => {
    await assert.rejects(sql('select trellis.citus_distribute()'), sqlState('TR001'));
    assert.deepEqual(await sql(`select value from trellis.settings where key = 'distributed'`), []);
  });
});

describe('planner-safe SQL (decision 0024)', () => {
  const files = readdirSync(new URL('../../sql/', import.meta.url)).filter((f) => f.endsWith('.sql'));
  const text = files.map((f) => readFileSync(new URL(`../../sql/${f}`, import.meta.url), 'utf8').replace(/--[^\n]*/g, '')).join('\n');

  it('no UPDATE of a run-scoped table calls a volatile function', () => {
    const updates = [...text.matchAll(/update\s+trellis\.(runs|steps|signals|events|hook_deliveries|run_deadlines|run_watches)\b[^;]*;/gi)].map((m) => m[0]);
    assert.ok(updates.length > 10, `updates found: ${updates.length}`);
    const bad = updates.filter((u) => /gen_random_uuid|\brandom\s*\(|clock_timestamp|timeofday|statement_timestamp|nextval/i.test(u));
    assert.deepEqual(bad.map((u) => u.slice(0, 120)), []);
  });

  it('no UPDATE of an engine table calls a volatile trellis function (Citus refuses one, reference tables included)', async () => {
    const volatile = (await sql(`select distinct proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'trellis' and p.provolatile = 'v' and p.prokind = 'f'`)).map((r) => r.proname as string);
    assert.ok(volatile.includes('_schedule_start'), volatile.join(', '));
    const updates = [...text.matchAll(/update\s+trellis\.\w+\b[^;]*;/gi)].map((m) => m[0]);
    const bad = updates.filter((u) => volatile.some((f) => new RegExp(`trellis\\.${f}\\s*\\(`).test(u)));
    assert.deepEqual(bad.map((u) => u.slice(0, 160)), []);
  });

  it('no SQL-language function passes a parameter into a query of a run-scoped table (Citus: "could not create distributed plan")', async () => {
    // _awaited is called only on the one-node path of the purges (sql/600_retention.sql).
    const fns = await sql(`select p.proname from pg_proc p join pg_namespace n on n.oid = p.pronamespace join pg_language l on l.oid = p.prolang
      where n.nspname = 'trellis' and l.lanname = 'sql' and p.pronargs > 0
        and p.prosrc ~ 'trellis\\.(runs|steps|signals|events|hook_deliveries|run_deadlines|run_watches)\\M' order by 1`);
    assert.deepEqual(fns.map((r) => r.proname), ['_awaited']);
  });

  it('every engine object a function names is schema-qualified (trellis.…)', () => {
    const tables = 'runs|steps|signals|events|hook_deliveries|run_deadlines|run_watches|settings|workflows|queues|roles|schedules|templates|retentions|clock|run_transitions|event_consumers|connector_cursors';
    const unqualified = [...text.matchAll(new RegExp(`\\b(from|join|update|into|table)\\s+(${tables})\\b`, 'gi'))].map((m) => m[0]);
    assert.deepEqual(unqualified, []);
    const calls = [...text.replace(/'[^']*'/g, "''").matchAll(/(^|[^.\w])(_[a-z_]+)\s*\(/g)].map((m) => m[2]);
    assert.deepEqual(calls, []);
  });

  it('lease tokens and buckets come from immutable functions; a claim\'s tokens differ per run', async () => {
    const vol = await sql(`select proname, provolatile from pg_proc p join pg_namespace n on n.oid = p.pronamespace
      where n.nspname = 'trellis' and proname in ('_lease_token', '_bucket') order by proname`);
    assert.deepEqual(vol.map((r) => `${r.proname}:${r.provolatile}`), ['_bucket:i', '_lease_token:i']);
    await sql(`select trellis.run_start('w', '{}', '{"queue":"bq-tokens"}') from generate_series(1, 3)`);
    const held = await sql(`select lease_token from trellis.run_claim('t', '{bq-tokens}', '{w}', '{1}', 3, '30 seconds')`);
    assert.equal(held.length, 3);
    assert.equal(new Set(held.map((r) => r.lease_token)).size, 3);
  });
});

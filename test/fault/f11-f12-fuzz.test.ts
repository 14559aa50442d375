/**
 * F11/F12: bad payloads and injection in every name, key and option,
 * through the client (TypeScript) and through every SQL entry point a
 * trellis_client login may execute (its public functions and the internal
 * helpers it may call, _setting_int, called with typed parameters holding
 * hostile values), and through the input-shape helpers (_input_error,
 * _shape_error) reached from workflow_input_error: hostile inputs checked
 * against registered shapes with odd values (ODD_SHAPES). Invariants: rows written 0 and catalog changes 0 (row
 * counts of every table and a catalog fingerprint before and after); every
 * error typed (a TrellisError in TypeScript, a TRxxx SQLSTATE in SQL).
 * Quick: 1,000 cases; full: 10,000.
 */
import assert from 'node:assert/strict';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { createClient, type Client } from '../../src/client/client.ts';
import { isTrellisError } from '../../src/errors.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { freshDatabase, type TestDatabase, testPool } from '../helpers/db.ts';
import { scale } from './harness/harness.ts';
import { fingerprint, hostileJson, hostileString, ODD_SHAPES, rng } from './harness/fuzz.ts';

const CASES = scale(1000, 10_000);
const login = `tr_fuzz_${crypto.randomUUID().replaceAll('-', '').slice(0, 10)}`;

let db: TestDatabase;
let client: Client;
let asClient: pg.Pool;
before(async () => {
  db = await freshDatabase();
  await db.pool.query(`create role ${login} login password 'pw' in role trellis_client`);
  const url = new URL(db.url);
  url.username = login;
  url.password = 'pw';
  asClient = testPool({ connectionString: url.toString(), max: 4 });
  asClient.on('error', () => undefined);
  client = createClient({ pool: asClient, logger: silentLogger, handoff: false });
  // Workflows with odd (accepted) input shapes, registered before the fingerprint.
  await db.pool.query('select trellis.workflow_register($1::jsonb)',
    [JSON.stringify(ODD_SHAPES.map((shape, k) => ({ name: `odd-${k}`, version: '1', input_schema: shape })))]);
});
after(async () => {
  await client?.close();
  await asClient?.end();
  await db?.close();
  const admin = new pg.Client({ connectionString: db.url.replace(/\/[^/]*$/, '/postgres') });
  await admin.connect();
  await admin.query(`drop role if exists ${login}`);
  await admin.end();
});

/** One TypeScript entry point called with hostile values. */
function tsCase(r: () => number): () => Promise<unknown> {
  const s = () => hostileString(r);
  const id = () => (r() < 0.5 ? s() : crypto.randomUUID());
  const cases: (() => Promise<unknown>)[] = [
    () => client.start(s(), hostileJson(r) as never),
    () => client.start(s(), {} as never, { key: s(), queue: s(), version: s(), priority: r() < 0.5 ? 1e12 : NaN, metadata: hostileJson(r) as never }),
    () => client.start(s(), {} as never, { runAt: s() as never, key: 7 as never }),
    () => client.signal(id(), s(), hostileJson(r) as never, { id: s() }),
    () => client.signal({ workflow: s(), key: s() }, s(), hostileJson(r) as never),
    () => client.cancel(id(), s()),
    () => client.pause(id()),
    () => client.resume(id()),
    () => client.retry(id()),
    () => client.get(id()),
    () => client.setRetention(s() as never, { workflow: s() }),
  ];
  return cases[Math.floor(r() * cases.length)]!;
}

interface SqlFunction {
  name: string;
  signature: string;
  types: string[];
}

function sqlValue(type: string, r: () => number): unknown {
  if (type.endsWith('[]')) return Array.from({ length: Math.floor(r() * 3) }, () => sqlValue(type.slice(0, -2), r));
  switch (type) {
    case 'uuid': return crypto.randomUUID();
    case 'integer': case 'bigint': case 'smallint': return [0, -1, 2147483647, -2147483648, 1000001][Math.floor(r() * 5)];
    case 'boolean': return r() < 0.5;
    case 'jsonb': case 'json': return JSON.stringify(hostileJson(r)).replaceAll('\\u0000', "'"); // NUL is refused by the type itself
    case 'interval': return ['-1 day', '1000 years', '0', '1 microsecond'][Math.floor(r() * 4)];
    case 'timestamp with time zone': return ['infinity', '-infinity', '1970-01-01', '9999-12-31'][Math.floor(r() * 4)];
    case 'double precision': case 'numeric': case 'real': return [NaN, -1, 1e300][Math.floor(r() * 3)];
    default: return hostileString(r).replaceAll('\u0000', "'"); // text: PostgreSQL refuses NUL before any function sees it
  }
}

describe('F11/F12: fuzzed bad payloads and injection', () => {
  it(`writes no row, changes no catalog entry and types every error (${CASES} cases)`, async () => {
    const { rows: fns } = await db.pool.query<SqlFunction>(`
      select p.proname as name, p.oid::regprocedure::text as signature,
             array(select format_type(t, null) from unnest(p.proargtypes) t) as types
        from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = 'trellis' and p.prokind = 'f' and has_function_privilege($1, p.oid, 'execute')
       order by 1`, [login]);
    assert.ok(fns.length > 5, 'the client role may execute functions');
    const before = await fingerprint(db.pool);
    const r = rng(Number(process.env.FUZZ_SEED ?? 10));
    const untyped: string[] = [];
    let errors = 0;
    let sqlCases = 0;
    let shapeCases = 0;
    for (let i = 0; i < CASES; i++) {
      let where = 'ts';
      try {
        const pick = r();
        if (pick < 0.4) {
          await tsCase(r)();
        } else if (pick < 0.5) {
          // The shape helpers, reached through a public function.
          where = 'workflow_input_error (odd shape)';
          shapeCases++;
          const k = Math.floor(r() * ODD_SHAPES.length);
          const input = JSON.stringify(hostileJson(r)).replaceAll('\\u0000', "'");
          await asClient.query('select trellis.workflow_input_error($1, $2::jsonb)', [`odd-${k}`, input]);
        } else {
          const fn = fns[Math.floor(r() * fns.length)]!;
          where = fn.name;
          sqlCases++;
          const params = fn.types.map((t) => sqlValue(t, r));
          await asClient.query(`select * from trellis.${fn.name}(${fn.types.map((t, k) => `$${k + 1}::${t}`).join(', ')})`, params);
        }
      } catch (error) {
        errors++;
        const code = (error as { code?: string | undefined }).code;
        const typed = isTrellisError(error) || (typeof code === 'string' && /^TR\d{3}$/.test(code));
        if (!typed && untyped.length < 20) untyped.push(`${where}: ${code ?? ''} ${String(error).slice(0, 160)}`);
        else if (!typed) untyped.push('');
      }
    }
    const afterPrint = await fingerprint(db.pool);
    const changedRows = Object.keys({ ...before.rows, ...afterPrint.rows }).filter((t) => before.rows[t] !== afterPrint.rows[t]);
    console.log(`# F11/F12 ${scale('quick', 'full')}: ${CASES} cases (${sqlCases} SQL over ${fns.length} functions, ${shapeCases} through the shape helpers, ${CASES - sqlCases - shapeCases} TypeScript), ` +
      `${errors} refused, untyped errors ${untyped.length}, tables with rows written ${changedRows.length}, catalog changed ${before.catalog !== afterPrint.catalog}` +
      (untyped.length ? `; untyped: ${JSON.stringify([...new Set(untyped.filter(Boolean))].slice(0, 8))}` : ''));
    for (const t of changedRows) console.log(`# rows written to ${t}: ${JSON.stringify((await db.pool.query(`select * from ${t}`)).rows).slice(0, 600)}`);
    assert.deepEqual(changedRows, [], 'rows written');
    assert.equal(afterPrint.catalog, before.catalog, 'catalog unchanged');
    assert.deepEqual(untyped, [], 'every error typed');
  });
});

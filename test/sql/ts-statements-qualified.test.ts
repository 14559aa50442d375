/**
 * The statements the TypeScript side sends run under the caller's own
 * search_path (only the PL/pgSQL functions pin theirs, docs/security.md). A
 * role that can create objects in a schema on that path could otherwise
 * define a function that matches better than PostgreSQL's own (to_jsonb of
 * a Trellis row type, percentile_cont of numeric, array_agg of text…) and
 * have it run with the rights of whoever runs a worker, the CLI or the
 * dashboard. So every PostgreSQL function those statements call is named
 * by its schema, pg_catalog. This test reads every SQL text in src/ and
 * lists the calls of a pg_catalog function that are not; a second test
 * plants such functions and runs the statements that called them.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { captureIo } from '../../src/cli/io.ts';
import { main } from '../../src/cli/main.ts';
import { createClient } from '../../src/client/client.ts';
import { silentLogger } from '../../src/protocol/logger.ts';
import { defineWorkflow } from '../../src/workflow/define.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase();

// Syntax that looks like a call but is the grammar's (or is qualified by it).
const GRAMMAR = new Set(['coalesce', 'greatest', 'least', 'nullif', 'exists', 'in', 'any', 'all', 'some', 'values', 'row', 'array',
  'cast', 'extract', 'position', 'substring', 'trim', 'overlay', 'normalize', 'over', 'filter', 'within', 'grouping', 'using',
  'on', 'and', 'or', 'not', 'as', 'from', 'where', 'select', 'returning', 'into', 'set', 'by', 'when', 'then', 'else', 'is',
  'lateral', 'join', 'with', 'union', 'do', 'conflict', 'table', 'if', 'default', 'check', 'references', 'key', 'unique',
  'primary', 'constraint', 'index', 'include', 'partition', 'rows', 'range', 'window', 'limit', 'offset', 'order', 'group',
  'having', 'distinct', 'recursive', 'materialized', 'of', 'for', 'only', 'like', 'between', 'interval', 'time', 'timestamp',
  'numeric', 'decimal', 'varchar', 'char', 'character', 'bit', 'float', 'precision', 'collate', 'language', 'returns']);

/** The SQL texts of a TypeScript file: string and template literals that read as SQL (all of them: `sql` false), with `${…}` taken out. */
function sqlTexts(source: string, sql = true): { text: string; line: number }[] {
  const out: { text: string; line: number }[] = [];
  for (const m of source.matchAll(/`((?:[^`\\]|\\.)*)`|'((?:[^'\\\n]|\\.)*)'|"((?:[^"\\\n]|\\.)*)"/g)) {
    let text = m[1] ?? m[2] ?? m[3] ?? '';
    // Interpolations (one level of nested braces is enough for src/); a
    // parameter number made by one (`$${n}`) stays a parameter.
    text = text.replace(/\$\$\{(?:[^{}]|\{[^{}]*\})*\}/g, '$9').replace(/\$\{(?:[^{}]|\{[^{}]*\})*\}/g, ' ');
    if (sql && !/\b(select|insert\s+into|update\s+\S+\s+set|delete\s+from|create\s+(table|index|or replace)|alter\s+table)\b/i.test(text)) continue;
    out.push({ text, line: source.slice(0, m.index).split('\n').length });
  }
  return out;
}

describe('statements sent from TypeScript', () => {
  it('name every pg_catalog function they call by its schema', async () => {
    const { rows } = await fx.db.pool.query<{ name: string }>(
      `select distinct p.proname as name from pg_catalog.pg_proc p where p.pronamespace = 'pg_catalog'::regnamespace`);
    const builtins = new Set(rows.map((r) => r.name));
    const files = execFileSync('git', ['ls-files', 'src/*.ts'], { encoding: 'utf8' }).split('\n')
      .filter((f) => f && !f.endsWith('.generated.ts'));
    const bare: string[] = [];
    for (const file of files) {
      // Comments are left out: their examples are the reader's statements.
      const source = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' '));
      for (const { text, line } of sqlTexts(source)) {
        for (const m of text.matchAll(/(?<![.\w$:"'])([a-z_][a-z0-9_]*)\s*\(/gi)) {
          const name = m[1]!.toLowerCase();
          if (GRAMMAR.has(name) || !builtins.has(name)) continue;
          bare.push(`${file}:${line + text.slice(0, m.index).split('\n').length - 1}: ${name}(`);
        }
      }
    }
    assert.deepEqual(bare, [], 'calls to write as pg_catalog.<name>(…)');
  });

  it('give a type to what the jsonb operators whose right side is not jsonb take (a literal or parameter cast)', () => {
    // `value #>> '{}'`: an untyped right side takes the left side's type
    // (jsonb) while PostgreSQL resolves the operator, so a planted
    // public.#>>(jsonb, jsonb) would be an exact match and win over
    // pg_catalog's (jsonb, text[]); cast it ('{}'::text[]) and only
    // pg_catalog's matches exactly.
    const files = execFileSync('git', ['ls-files', 'src/*.ts'], { encoding: 'utf8' }).split('\n')
      .filter((f) => f && !f.endsWith('.generated.ts'));
    const untyped: string[] = [];
    for (const file of files) {
      const source = readFileSync(file, 'utf8').replace(/\/\*[\s\S]*?\*\//g, (c) => c.replace(/[^\n]/g, ' '));
      // The arrows in every literal (a fragment of SQL, a WHERE term, is
      // made on its own); ? and @ only in SQL texts (JavaScript's ternaries).
      for (const [sql, operators] of [[false, /(->>|->|#>>|#>|#-)/], [true, /(@\?|@@|\?\||\?&|\?)/]] as const) {
        const pattern = new RegExp(`${operators.source}\\s*('(?:[^']|'')*'|\\$\\d+)(?!\\s*::)`, 'g');
        for (const { text, line } of sqlTexts(source, sql)) {
          for (const m of text.matchAll(pattern)) untyped.push(`${file}:${line + text.slice(0, m.index).split('\n').length - 1}: ${m[0]}`);
        }
      }
    }
    assert.deepEqual(untyped, [], 'right sides to cast (::text, ::text[], ::jsonpath)');
  });
});

describe('a function planted in public by a role that may create there', () => {
  it('does not stand in for PostgreSQL\'s in what a client and the CLI send', async () => {
    const pool = fx.db.pool;
    // Roles are the cluster's: a name of this run's own. (A login role: on
    // Citus the coordinator creates its functions on the workers as it.)
    const planter = `planter_${process.pid}_${Date.now()}`;
    await pool.query(`select trellis.workflow_register($1)`, [JSON.stringify([{ name: 'held', version: '1', queue: 'planted-q' }])]);
    await pool.query(`select trellis.run_start('held', '{}', '{}')`);
    assert.equal((await pool.query(`select * from trellis.run_claim('planted-worker', '{planted-q}', '{held}', '{1}', 1, '1 hour')`)).rows.length, 1);
    await pool.query(`create role ${planter} login; grant create, usage on schema public to ${planter}; grant trellis_reader to ${planter};
      create table public.planted_calls (who text, what text); grant insert on public.planted_calls to public`);
    // The planter's better matches: to_jsonb of the schema-info row (the
    // schema check a client, a worker and every CLI command run first),
    // array_agg of text (trellis stats' workers), and #>> and ->> of jsonb
    // and jsonb (the payload limit's setting, the schema check).
    await pool.query(`set role ${planter};
      create function public.to_jsonb(trellis.schema_info) returns jsonb language sql as
        $$ insert into public.planted_calls values (current_user, 'to_jsonb'); select '{"sql_revision": 1}'::jsonb $$;
      create function public.planted_append(text[], text) returns text[] language sql as
        $$ insert into public.planted_calls values (current_user, 'array_agg'); select $1 || $2 $$;
      create aggregate public.array_agg(text) (sfunc = public.planted_append, stype = text[]);
      create function public.planted_op(jsonb, jsonb) returns text language sql as
        $$ insert into public.planted_calls values (current_user, 'operator'); select '1' $$;
      create operator public.#>> (leftarg = jsonb, rightarg = jsonb, function = public.planted_op);
      create operator public.->> (leftarg = jsonb, rightarg = jsonb, function = public.planted_op);
      reset role`);
    const client = createClient({ pool, logger: silentLogger });
    try {
      const run = await client.start(defineWorkflow({ name: 'planted-check', input: z.object({}) }, async () => 'ok'), {});
      assert.ok(run.id);
      const io = captureIo({ DATABASE_URL: fx.db.url });
      assert.equal(await main(['stats', '--json'], io), 0, io.stderr);
      const workers = (JSON.parse(io.stdout) as { workers: { worker: string; queues: string[] }[] }).workers;
      assert.deepEqual(workers.map((w) => [w.worker, w.queues]), [['planted-worker', ['planted-q']]]);
      const { rows: calls } = await pool.query('select who, what from public.planted_calls');
      assert.deepEqual(calls, []);
    } finally {
      await client.close();
      await pool.query(`drop operator public.#>> (jsonb, jsonb); drop operator public.->> (jsonb, jsonb); drop function public.planted_op(jsonb, jsonb);
        drop aggregate public.array_agg(text); drop function public.planted_append(text[], text);
        drop function public.to_jsonb(trellis.schema_info); drop table public.planted_calls;
        revoke all on schema public from ${planter}; revoke trellis_reader from ${planter}; drop role ${planter}`);
    }
  });
});

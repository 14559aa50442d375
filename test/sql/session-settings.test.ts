/**
 * Session settings an existing app may have on its role or database that
 * change how SQL text is read: with standard_conforming_strings = off a
 * backslash in a plain '…' literal is an escape, and PL/pgSQL compiles a
 * function under the calling session's setting, so regular expressions
 * written '^\s*…' were read as '^s*…' (a configuration audit: every valid
 * cron refused, numbers with spaces, the UTF-16 length of a string). Every
 * literal with a backslash is an E'…' literal, read alike under both.
 */
import assert from 'node:assert/strict';
import { readdir, readFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, it } from 'node:test';
import pg from 'pg';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase();

/** What a session with `standard_conforming_strings = off` (its first calls: each function compiled under it) answers. */
async function offSession<T>(fn: (c: pg.Client) => Promise<T>): Promise<T> {
  const c = new pg.Client({ connectionString: fx.db.url, options: '-c standard_conforming_strings=off' });
  await c.connect();
  try {
    assert.equal((await c.query('show standard_conforming_strings')).rows[0].standard_conforming_strings, 'off');
    return await fn(c);
  } finally {
    await c.end();
  }
}

describe('standard_conforming_strings = off in the calling session', () => {
  it('the engine\'s checks read their patterns as written: cron, bare numbers, integer settings, UTF-16 lengths', async () => {
    await offSession(async (c) => {
      const one = async (sql: string, values: unknown[] = []) => Object.values((await c.query(sql, values)).rows[0])[0];
      assert.equal(await one(`select trellis._check_cron('*/5 * * * * *')`), '*/5 * * * * *');
      assert.equal(await one(`select trellis._check_cron(' 0 9 * * 1-5 ')`), ' 0 9 * * 1-5 ');
      assert.equal(await one(`select trellis._bare_number(' 1000 ')`), true);
      assert.equal(await one(`select trellis._bare_number('1 hour')`), false);
      await c.query(`insert into trellis.settings (key, value, updated_at) values ('max_history_steps', '" 64 "', now())
                     on conflict (key) do update set value = excluded.value`);
      assert.equal(await one(`select trellis._setting_int('max_history_steps', 10)`), 64);
      // Two characters outside the Basic Multilingual Plane: four UTF-16 units, at least minLength 4 there.
      assert.equal(await one(`select trellis._shape_error('{"type":"string","minLength":4}', to_jsonb($1::text))`, ['😀😀']), null);
      assert.match(String(await one(`select trellis._shape_error('{"type":"string","minLength":5}', to_jsonb($1::text))`, ['😀😀'])), /under the minimum length 5/);
      await c.query(`delete from trellis.settings where key = 'max_history_steps'`);
    });
  });

  it('no plain \'…\' literal in sql/ holds a backslash (an E\'…\' literal reads the same under both settings)', async () => {
    const dir = join(import.meta.dirname, '..', '..', 'sql');
    const found: string[] = [];
    for (const file of (await readdir(dir)).filter((f) => f.endsWith('.sql'))) {
      const lines = (await readFile(join(dir, file), 'utf8')).split('\n');
      lines.forEach((line, i) => {
        const code = line.replace(/--.*$/, '');
        for (const m of code.matchAll(/(^|[^A-Za-z0-9_])([Ee]?)'((?:[^']|'')*)'/g)) {
          if (m[3]!.includes('\\') && m[2] === '') found.push(`${file}:${i + 1}: ${m[0].trim()}`);
        }
      });
    }
    assert.deepEqual(found, []);
  });
});

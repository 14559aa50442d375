/**
 * jsonbText (src/protocol/jsonb-text.ts) against PostgreSQL's own output of
 * `$1::jsonb::text`: a result() in the process whose worker completed the run
 * parses this text instead of reading the row, so the two must be identical.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { jsonbText } from '../../src/protocol/jsonb-text.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';
import { prng } from '../helpers/prng.ts';

const fx = useFreshDatabase();

async function pgText(texts: string[]): Promise<string[]> {
  const { rows } = await fx.db.pool.query<{ t: string }>(
    'select t::jsonb::text as t from unnest($1::text[]) with ordinality as u(t, i) order by i', [texts]);
  return rows.map((r) => r.t);
}

const KEYS = ['a', 'b', 'aa', 'B', '10', '2', 'é', 'z', 'ß', '😀', '\uffff', 'key', 'ab', 'A b', '"q"', '', '__proto__', 'x\ny'];
const STRINGS = ['', 'plain', 'a"b\\c', 'line\nbreak\ttab', '\u0001\u001f\u007f', 'é😀\u2028', '<&>', "it's"];
const NUMBERS = [0, -0, 1, -1, 0.1, 1.5, 123.456, 1e21, 1.2345e21, -2.5e30, 1e-7, 1.5e-7, 9.87e-15, 5e-324, 1e300,
  Number.MAX_SAFE_INTEGER, 2 ** 64, 0.000001, 1e20, -1e-10];

function value(rand: () => number, depth: number): unknown {
  const pick = <T>(xs: readonly T[]): T => xs[Math.floor(rand() * xs.length)] as T;
  const kind = Math.floor(rand() * (depth > 3 ? 4 : 6));
  switch (kind) {
    case 0: return pick([null, true, false]);
    case 1: return pick(NUMBERS) * (rand() < 0.5 ? 1 : rand() * 1000);
    case 2: return pick(STRINGS);
    case 3: return pick(NUMBERS);
    case 4: return Array.from({ length: Math.floor(rand() * 4) }, () => value(rand, depth + 1));
    default: {
      const out: Record<string, unknown> = {};
      for (let i = Math.floor(rand() * 6); i > 0; i--) out[pick(KEYS)] = value(rand, depth + 1);
      return out;
    }
  }
}

describe('jsonbText', () => {
  it('is PostgreSQL\'s text for key order, spacing, escapes, unicode and numbers with exponents', async () => {
    const fixed: unknown[] = [
      null, true, 0, 'x', [], {}, [0, 0, 0], { b: 1, aa: 2, a: 3, 10: 4, 2: 5 }, { é: 1, z: 2, ß: 3, '😀': 4, '\uffff': 5 },
      1e21, 1.5e-7, -2.5e30, 5e-324, { 'k,:': ['e+5', 1e22, -1e-10, true, false, null] }, 'a"b\\c\n\t\u0001é😀',
      { nested: { deeper: [{ b: [], a: {} }] } },
    ];
    const texts = fixed.map((v) => JSON.stringify(v));
    assert.deepEqual(texts.map(jsonbText), await pgText(texts));
  });

  it('keeps the last of repeated keys, as jsonb does', async () => {
    const text = '{"a":1,"b":2,"a":{"c":3,"c":4}}';
    assert.deepEqual([jsonbText(text)], await pgText([text]));
  });

  it('agrees with PostgreSQL on 2,000 generated values (seed 18)', async () => {
    const rand = prng(18);
    const texts = Array.from({ length: 2000 }, () => JSON.stringify(value(rand, 0)));
    const expected = await pgText(texts);
    for (let i = 0; i < texts.length; i++) assert.equal(jsonbText(texts[i] as string), expected[i], texts[i]);
  });
});

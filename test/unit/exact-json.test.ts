/**
 * JSON text a person types (dashboard forms, CLI flags) is read exactly or
 * refused: JavaScript would read 1e999 as Infinity (stored as null),
 * 9007199254740993 as 9007199254740992 and 1e-400 as 0, without a word.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { parseExactJson } from '../../src/protocol/serialize.ts';

describe('parseExactJson', () => {
  it('reads JSON JavaScript holds exactly as JSON.parse does', () => {
    for (const text of ['{"amount": 30}', '[1, -2.5, 1e21, 0.1, 0, -0, 1e-300, 9007199254740992.0, -9007199254740992, 18014398509481984]', '"9007199254740993"', '{"n": 9007199254740991, "m": -9007199254740991}',
      '{"text": "1e999 and 9007199254740993 inside a string", "esc": "\\"9007199254740993\\""}', 'null', 'true', '0.000']) {
      assert.deepEqual(parseExactJson(text), JSON.parse(text), text);
    }
  });

  it('refuses a number JavaScript would change, naming it', () => {
    for (const [text, message] of [['1e999', /out of JavaScript's range/], ['{"x": -1e400}', /-1e400 is out/], ['{"amount": 9007199254740993}', /beyond ±\(2\^53 − 1\).*as a string/],
      ['[-9007199254740993]', /-9007199254740993/], ['{"big": 2e53}', /2e53/], ['{"tiny": 1e-400}', /too small/], ['{"a": ["ok", {"b": 123456789012345678901234567890}]}', /123456789012345678901234567890/],
      ['{"n": 9007199254740993.0}', /9007199254740993\.0/], ['{"n": 9.007199254740993e15}', /9\.007199254740993e15/], ['{"n": 90071992547409930e-1}', /beyond/]] as const) {
      assert.throws(() => parseExactJson(text), (e: unknown) => e instanceof SyntaxError && message.test(e.message), text);
    }
  });

  it('still refuses text that is not JSON', () => {
    assert.throws(() => parseExactJson('{name:'), SyntaxError);
  });
});

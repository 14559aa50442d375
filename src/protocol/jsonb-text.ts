/**
 * PostgreSQL's text output of a `jsonb` value, computed in the process from
 * the JSON text a worker wrote (issue 18). A `result()` waiting in the
 * process whose worker completed the run hands this text to the pool's own
 * jsonb parser, so it gets exactly what reading `trellis.runs.output` would
 * have given, one round trip sooner.
 *
 * `jsonb` stores a parsed value, and its text output differs from the text
 * it was given in three ways, all reproduced here:
 *  - object keys in jsonb's order: shorter (in UTF-8 bytes) first, equal
 *    lengths by their bytes; a repeated key keeps its last value;
 *  - `", "` and `": "` between items;
 *  - numbers as `numeric` prints them: never with an exponent (`1e+21` is
 *    `1000000000000000000000`, `1.5e-7` is `0.00000015`).
 *
 * The input is JSON text from `JSON.stringify` (as `encodeJson` makes it):
 * its numbers are doubles that print back as they parse, and its strings
 * escape exactly the characters jsonb's output escapes.
 * test/sql/jsonb-text.test.ts compares the output with PostgreSQL's own.
 */

/** The text `select $1::jsonb::text` returns for JSON text `json` written by `JSON.stringify`. */
export function jsonbText(json: string): string {
  return render(JSON.parse(json));
}

function render(value: unknown): string {
  if (value === null) return 'null';
  switch (typeof value) {
    case 'boolean':
      return value ? 'true' : 'false';
    case 'number':
      return numericText(String(value));
    case 'string':
      return JSON.stringify(value);
    default:
      break;
  }
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i ? ', ' : '') + render(value[i]);
    return out + ']';
  }
  const object = value as Record<string, unknown>;
  const keys = jsonbKeyOrder(Object.keys(object));
  let out = '{';
  for (let i = 0; i < keys.length; i++) {
    const key = keys[i] as string;
    out += (i ? ', ' : '') + JSON.stringify(key) + ': ' + render(object[key]);
  }
  return out + '}';
}

/** Keys in jsonb's order: by UTF-8 length, then bytewise. */
export function jsonbKeyOrder(keys: string[]): string[] {
  // Only ASCII: UTF-16 length and comparison are UTF-8's.
  if (keys.every((k) => /^[\x00-\x7f]*$/.test(k))) {
    return keys.sort((a, b) => a.length - b.length || (a < b ? -1 : a > b ? 1 : 0));
  }
  const bytes = new Map(keys.map((k) => [k, Buffer.from(k, 'utf8')]));
  return keys.sort((a, b) => {
    const x = bytes.get(a) as Buffer;
    const y = bytes.get(b) as Buffer;
    return x.length - y.length || Buffer.compare(x, y);
  });
}

/** A number's text as `numeric` prints it: `String(n)` with any exponent written out. */
export function numericText(text: string): string {
  const e = text.indexOf('e');
  if (e < 0) return text;
  const negative = text.startsWith('-');
  const mantissa = text.slice(negative ? 1 : 0, e);
  const exponent = Number(text.slice(e + 1));
  const dot = mantissa.indexOf('.');
  const digits = dot < 0 ? mantissa : mantissa.slice(0, dot) + mantissa.slice(dot + 1);
  // Where the decimal point falls in `digits` once the exponent is applied.
  const point = (dot < 0 ? mantissa.length : dot) + exponent;
  let plain: string;
  if (point <= 0) plain = '0.' + '0'.repeat(-point) + digits;
  else if (point >= digits.length) plain = digits + '0'.repeat(point - digits.length);
  else plain = digits.slice(0, point) + '.' + digits.slice(point);
  return (negative ? '-' : '') + plain;
}

/**
 * Input shapes (src/workflow/input-shape.ts, sql/050_shapes.sql): SQL checks
 * a start's input against the shape derived from the zod schema. The rule
 * under test: SQL never refuses a value zod accepts (every schema against
 * every value of a common pool and of its own), and it does refuse the
 * plain mistakes, naming where they are.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { z } from 'zod';
import { inputShape } from '../../src/workflow/input-shape.ts';
import { useFreshDatabase } from '../helpers/database-fixture.ts';

const fx = useFreshDatabase();

/** The compiled predicate's verdict on each (shape, value): true means accepted without the walk. */
async function fastVerdicts(pairs: Array<[unknown, unknown]>): Promise<Array<boolean | null>> {
  const { rows } = await fx.db.pool.query<{ ok: boolean | null }>(
    `select jsonb_path_match(v, trellis._shape_jsonpath(s), '{}', true) as ok
       from unnest($1::jsonb[], $2::jsonb[]) with ordinality as t(s, v, n) order by n`,
    [pairs.map(([s]) => JSON.stringify(s)), pairs.map(([, v]) => JSON.stringify(v))]);
  return rows.map((r) => r.ok);
}

/** SQL's verdict on each (shape, value): null, or '$<path>: <what>'. */
async function sqlErrors(pairs: Array<[unknown, unknown]>): Promise<Array<string | null>> {
  const { rows } = await fx.db.pool.query<{ e: string | null }>(
    `select '$' || trellis._shape_error(s, v) as e from unnest($1::jsonb[], $2::jsonb[]) with ordinality as t(s, v, n) order by n`,
    [pairs.map(([s]) => JSON.stringify(s)), pairs.map(([, v]) => JSON.stringify(v))]);
  return rows.map((r) => r.e);
}

const COMMON: unknown[] = [
  null, true, false, 0, -1, 1, 1.5, 2 ** 31, 2 ** 53, 1e300, -1e-300, '', 'a', 'abc', 'ABC', 'a@b.co', '😀', '😀😀',
  'x'.repeat(10), [], [1], ['a', 1], [1, 2, 3, 4], {}, { a: 1 }, { n: 1 }, { n: '1' }, { n: 1, extra: true },
  { type: 'a', x: 1 }, { type: 'b' }, { type: 'c' }, { a: 'x', b: 2 }, { v: 1, kids: [] }, { v: 1, kids: [{ v: 2, kids: [] }] },
  { v: 1, kids: [{ v: 'no' }] }, { k: 'x' }, { k: 'z' }, { s: null }, { 'odd key': 1 }, [null], [[]], { n: null },
];

enum Native { A = 1, B = 'b' }
const Node: z.ZodType = z.object({ v: z.number(), get kids() { return z.array(Node); } });

/** Schemas with values zod refuses that SQL must refuse too (the shape's own checks). */
const CASES: Array<{ name: string; schema: z.ZodType; more?: unknown[] | undefined; refused?: unknown[] | undefined }> = [
  { name: 'object', schema: z.object({ n: z.number() }), refused: [{}, { n: '1' }, [], null, 'x', [{ n: 1 }]] },
  { name: 'strict', schema: z.strictObject({ n: z.number() }), refused: [{ n: 1, extra: true }] },
  { name: 'loose', schema: z.looseObject({ n: z.number() }), more: [{ n: 1, any: [1] }] },
  { name: 'catchall', schema: z.object({ n: z.number() }).catchall(z.string()), more: [{ n: 1, x: 's' }], refused: [{ n: 1, x: 2 }] },
  { name: 'optional keys', schema: z.object({ a: z.string().optional(), b: z.number().default(1), c: z.any(), d: z.unknown(), e: z.string().nullish(), f: z.literal(undefined), g: z.union([z.string(), z.undefined()]) }), more: [{}, { e: null }], refused: [{ a: 1 }, { b: 'x' }] },
  { name: 'nullable', schema: z.object({ s: z.string().nullable() }), more: [{ s: 'x' }], refused: [{}, { s: 1 }] },
  { name: 'int', schema: z.object({ n: z.int() }), more: [{ n: 3 }, { n: 3.0 }], refused: [{ n: 1.5 }, { n: 2 ** 53 }] },
  { name: 'int32', schema: z.int32(), refused: [2 ** 31, 1.5] },
  { name: 'uint32', schema: z.uint32(), refused: [-1] },
  { name: 'bounds', schema: z.number().min(1).max(3), more: [1, 3, 2.5], refused: [0.999, 3.0001] },
  { name: 'exclusive', schema: z.number().gt(1).lt(3), more: [1.0001], refused: [1, 3] },
  { name: 'positive int', schema: z.number().int().positive(), refused: [0, -1, 1.5] },
  { name: 'multipleOf (not checked)', schema: z.number().multipleOf(0.1), more: [0.3, 0.7] },
  // zod 4.6 counts code points; SQL's minimum counts UTF-16 units (what earlier zod 4 releases counted).
  { name: 'string lengths', schema: z.string().min(2).max(3), more: ['ab', '😀😀😀', 'a😀'], refused: ['a', 'abcd', '😀😀😀😀'] },
  { name: 'length', schema: z.string().length(2), more: ['😀😀', 'a😀'], refused: ['a', 'abc'] },
  { name: 'trim then max', schema: z.string().trim().max(2), more: ['  ab  '] },
  { name: 'lowercase', schema: z.string().toLowerCase().min(1), more: ['ABC'] },
  { name: 'regex with a flag (not checked)', schema: z.string().regex(/^a+$/i), more: ['AAA'] },
  { name: 'email (format not checked)', schema: z.email(), refused: [1] },
  { name: 'uuid', schema: z.uuid(), more: ['00000000-0000-0000-0000-000000000000'] },
  { name: 'datetime', schema: z.iso.datetime(), more: ['2026-12-01T10:00:00Z'] },
  { name: 'literal', schema: z.literal(['a', 1, null]), more: [1.0], refused: ['b', 2, true] },
  { name: 'enum', schema: z.object({ k: z.enum(['x', 'y']) }), refused: [{ k: 'z' }] },
  { name: 'native enum', schema: z.enum(Native), more: ['b'], refused: ['c', 2] },
  { name: 'union', schema: z.union([z.string(), z.object({ n: z.number() })]), refused: [1, { n: 'x' }] },
  { name: 'discriminated', schema: z.discriminatedUnion('type', [z.object({ type: z.literal('a'), x: z.number() }), z.object({ type: z.literal('b') })]), refused: [{ type: 'c' }, { type: 'a' }] },
  { name: 'intersection', schema: z.intersection(z.object({ a: z.string() }), z.object({ b: z.number() })), refused: [{ a: 'x' }, { b: 2 }] },
  { name: 'array', schema: z.array(z.number()).min(1).max(3), refused: [[], [1, 2, 3, 4], ['a']] },
  { name: 'nonempty', schema: z.array(z.string()).nonempty(), refused: [[]] },
  { name: 'tuple', schema: z.tuple([z.string(), z.number()]), more: [['a', 1]], refused: [['a', 'b'], ['a', 1, 2]] },
  { name: 'tuple optional', schema: z.tuple([z.string(), z.number().optional()]), more: [['a']] },
  { name: 'tuple rest', schema: z.tuple([z.string()], z.number()), more: [['a', 1, 2]], refused: [['a', 'b']] },
  { name: 'record', schema: z.record(z.string(), z.number()), more: [{ a: 1, b: 2 }], refused: [{ a: 'x' }, []] },
  { name: 'enum record', schema: z.record(z.enum(['a', 'b']), z.number()), more: [{ a: 1, b: 2 }] },
  { name: 'partial record', schema: z.partialRecord(z.enum(['a']), z.number()), more: [{ a: 1 }] },
  { name: 'recursive', schema: Node, refused: [{ v: 1 }] },
  { name: 'lazy', schema: z.lazy(() => z.object({ n: z.number() })), refused: [{ n: 'x' }] },
  { name: 'json', schema: z.json() },
  { name: 'pipe', schema: z.string().pipe(z.string().min(3)), refused: [1] },
  { name: 'transform', schema: z.string().transform((s) => s.length), refused: [1] },
  { name: 'preprocess', schema: z.preprocess((v) => (typeof v === 'string' ? Number(v) : v), z.number()), more: ['12'] },
  { name: 'coerce', schema: z.coerce.number(), more: ['12', true] },
  { name: 'stringbool', schema: z.stringbool(), more: ['yes', 'FALSE'] },
  { name: 'catch', schema: z.number().catch(0) },
  { name: 'default top level', schema: z.object({ n: z.number() }).default({ n: 1 }), refused: [{ n: 'x' }] },
  { name: 'readonly', schema: z.object({ n: z.number() }).readonly(), refused: [{}] },
  { name: 'refine (not checked)', schema: z.object({ n: z.number() }).refine((v) => v.n > 100), refused: [{ n: 'x' }] },
  { name: 'template literal', schema: z.templateLiteral(['a', z.number()]), more: ['a1'], refused: [1] },
  { name: 'odd key', schema: z.object({ 'odd key': z.number() }), refused: [{ 'odd key': 'x' }] },
  { name: 'anything', schema: z.any() },
  { name: 'date (never from JSON)', schema: z.date() },
  { name: 'null', schema: z.null(), refused: [0] },
  { name: 'boolean', schema: z.boolean(), refused: ['true'] },
];

describe('input shapes', () => {
  it('never refuse a value the zod schema accepts', async () => {
    const pairs: Array<[unknown, unknown]> = [];
    const meta: Array<{ name: string; value: unknown }> = [];
    for (const c of CASES) {
      const shape = inputShape(c.schema);
      assert.notEqual(shape, null, `${c.name}: a zod schema has a shape`);
      for (const value of [...COMMON, ...(c.more ?? []), ...(c.refused ?? [])]) {
        if (!c.schema.safeParse(value).success) continue;
        pairs.push([shape, value]);
        meta.push({ name: c.name, value });
      }
    }
    const errors = await sqlErrors(pairs);
    const wrong = errors.map((e, i) => ({ e, ...meta[i]! })).filter((r) => r.e !== null);
    assert.deepEqual(wrong, [], 'SQL refused values zod accepts');
    assert.ok(pairs.length > 250, `${pairs.length} accepted pairs checked`);
  });

  it('refuse what zod refuses where the shape can tell', async () => {
    const pairs: Array<[unknown, unknown]> = [];
    const meta: Array<{ name: string; value: unknown }> = [];
    for (const c of CASES) {
      for (const value of c.refused ?? []) {
        assert.equal(c.schema.safeParse(value).success, false, `${c.name}: zod refuses ${JSON.stringify(value)}`);
        pairs.push([inputShape(c.schema), value]);
        meta.push({ name: c.name, value });
      }
    }
    const errors = await sqlErrors(pairs);
    const missed = errors.map((e, i) => ({ e, ...meta[i]! })).filter((r) => r.e === null);
    assert.deepEqual(missed, [], 'SQL accepted values the shape can refuse');
  });

  it('the compiled predicate accepts only what the walk accepts, and most of it', async () => {
    const pairs: Array<[unknown, unknown]> = [];
    for (const c of CASES) {
      for (const value of [...COMMON, ...(c.more ?? []), ...(c.refused ?? [])]) pairs.push([inputShape(c.schema), value]);
    }
    // Shapes written by hand: lengths past one repeat count, tuples with rest, odd keys, enums of every kind.
    const long = 'x'.repeat(600);
    pairs.push(
      [{ type: 'string', maxLength: 300 }, 'x'.repeat(100)], [{ type: 'string', maxLength: 300 }, 'x'.repeat(300)],
      [{ type: 'string', maxLength: 300 }, 'x'.repeat(301)], [{ type: 'string', minLength: 300 }, 'x'.repeat(299)],
      [{ type: 'string', minLength: 300 }, long], [{ type: 'string', maxLength: 100000 }, long],
      [{ type: 'string', maxLength: 2 }, 'a\nb'], [{ type: 'string', maxLength: 3 }, 'a\nb'],
      [{ type: 'array', prefixItems: [{ type: 'string' }], items: { type: 'number' } }, ['a', 1, 'b']],
      [{ type: 'array', prefixItems: [{ type: 'string' }], items: { type: 'number' } }, ['a', 1, 2]],
      [{ type: 'array', prefixItems: [{ type: 'string' }], items: { type: 'number' } }, ['a']],
      [{ type: 'object', properties: { 'a "quoted" key': { type: 'number' } } }, { 'a "quoted" key': 'x' }],
      [{ type: 'object', properties: { 'a "quoted" key': { type: 'number' } } }, { 'a "quoted" key': 1 }],
      [{ type: 'object', properties: { 'a "quoted\\ key': { type: 'number' } }, required: ['a "quoted\\ key'] }, { 'a "quoted\\ key': 1 }],
      [{ type: 'object', properties: { 'a "quoted\\ key': { type: 'number' } }, required: ['a "quoted\\ key'] }, { 'a "quoted\\ key': '1' }],
      [{ type: 'object', properties: { 'a "quoted\\ key': { type: 'number' } }, required: ['a "quoted\\ key'] }, {}],
      [{ type: 'object', required: ['only'] }, { only: null }], [{ type: 'object', required: ['only'] }, { other: 1 }],
      [{ type: 'object', properties: { a: { type: 'number' } }, required: ['a'], additionalProperties: false }, { a: 1 }],
      [{ type: 'object', properties: { a: { type: 'number' } }, required: ['a'], additionalProperties: false }, { a: 1, b: 2 }],
      [{ enum: [{ a: 1 }, [1], null, true, 1.5, 's'] }, { a: 1 }], [{ enum: [null, true, 1.5, 's'] }, 1.5],
      [{ enum: [null, true, 1.5, 's'] }, false], [{ type: ['integer', 'null'] }, 2], [{ type: ['integer', 'null'] }, 2.5],
      [false, 1], [true, 1], [{ allOf: [{ type: 'number' }, { minimum: 3 }] }, 2], [{ allOf: [{ type: 'number' }, { minimum: 3 }] }, 3],
    );
    const [fast, walk] = await Promise.all([fastVerdicts(pairs), sqlErrors(pairs)]);
    const wrong = pairs.filter((_, i) => fast[i] === true && walk[i] !== null);
    assert.deepEqual(wrong, [], 'the predicate accepted what the walk refuses');
    const accepted = walk.filter((e) => e === null).length;
    const fastAccepted = fast.filter((f) => f === true).length;
    assert.ok(fastAccepted >= accepted * 0.9, `the predicate accepts ${fastAccepted} of the ${accepted} the walk accepts`);
  });

  it('says where and what', async () => {
    const schema = z.object({
      user: z.object({ name: z.string().min(1), tags: z.array(z.string()).max(2) }),
      'odd key': z.number().optional(),
      mode: z.enum(['a', 'b']),
      count: z.int().nullable(),
    });
    const good = { user: { name: 'x', tags: [] }, mode: 'a', count: null };
    const shape = inputShape(schema);
    const errors = await sqlErrors([
      [shape, good],
      [shape, { ...good, user: { name: 'x', tags: ['a', 1] } }],
      [shape, { ...good, user: { tags: [] } }],
      [shape, { ...good, user: { name: '', tags: [] } }],
      [shape, { ...good, user: { name: 'x', tags: ['a', 'b', 'c'] } }],
      [shape, { ...good, 'odd key': 'x' }],
      [shape, { ...good, mode: 'c' }],
      [shape, { ...good, count: 1.5 }],
      [shape, 'text'],
      // A minimum counts UTF-16 units: one emoji is two.
      [{ type: 'string', minLength: 2 }, '😀'],
      [{ type: 'string', minLength: 3 }, '😀'],
      [{ type: 'string', maxLength: 1 }, '😀'],
    ]);
    assert.deepEqual(errors, [
      null,
      '$.user.tags[1]: expected string, got number',
      '$.user.name: required',
      '$.user.name: length 0, under the minimum length 1',
      '$.user.tags: 3 items, over the maximum of 2',
      '$["odd key"]: expected number, got string',
      '$.mode: expected one of ["a", "b"]',
      '$.count: matches none of 2 alternatives; the last: expected an integer, got 1.5',
      '$: expected object, got string',
      null,
      '$: length 1, under the minimum length 3',
      null,
    ]);
  });

  it('has no shape for a schema that is not zod, and cuts off deep or cyclic schemas', () => {
    const standard = { '~standard': { version: 1 as const, vendor: 'other', validate: (value: unknown) => ({ value }) } };
    assert.equal(inputShape(standard), null);
    let deep: z.ZodType = z.number();
    for (let i = 0; i < 60; i++) deep = z.object({ a: deep });
    const json = JSON.stringify(inputShape(deep));
    assert.ok(json.length < 2000, `cut off: ${json.length} characters`);
    // A schema that builds new lazy schemas on every visit doubles at each level: cut off by a node budget.
    const tree = (): z.ZodType => z.object({ left: z.lazy(tree).optional(), right: z.lazy(tree).optional(), v: z.number() });
    const started = performance.now();
    const treeShape = JSON.stringify(inputShape(tree()));
    assert.ok(performance.now() - started < 2000, `converted in ${Math.round(performance.now() - started)} ms`);
    assert.ok(treeShape.length < 5_000_000, `${treeShape.length} characters`);
    // z.json() refers to itself: below the first level it accepts anything.
    assert.match(JSON.stringify(inputShape(z.json())), /"items":true/);
  });
});

/**
 * The input shape: a JSON Schema subset that SQL checks a start's input
 * against (trellis._shape_error), derived from the workflow's zod schema and
 * stored with its registration. See docs/decisions/0016-input-shapes.md.
 *
 * The one rule: the shape may accept more than the schema, never less. SQL
 * refuses a start only when the worker's own validation would certainly
 * fail the run, so whatever the shape cannot express (refinements, regex
 * patterns, formats, transforms, coercion, multipleOf, ...) is left out and
 * still checked by the worker. Schemas from other Standard Schema libraries
 * have no shape: SQL accepts any input for them, as before.
 */
import type { StandardSchemaV1 } from './standard-schema.ts';

/** The keywords SQL understands; `true` accepts anything. */
export type InputShape =
  | true
  | {
      type?: string | string[] | undefined;
      enum?: unknown[] | undefined;
      anyOf?: InputShape[] | undefined;
      allOf?: InputShape[] | undefined;
      minimum?: number | undefined;
      maximum?: number | undefined;
      exclusiveMinimum?: number | undefined;
      exclusiveMaximum?: number | undefined;
      /** Checked in UTF-16 code units (zod before 4.6 counts those; 4.6 counts code points, never more). */
      minLength?: number | undefined;
      /** Checked in code points (zod 4.6 counts those; earlier releases UTF-16 units, never fewer). */
      maxLength?: number | undefined;
      items?: InputShape | undefined;
      prefixItems?: InputShape[] | undefined;
      minItems?: number | undefined;
      maxItems?: number | undefined;
      properties?: Record<string, InputShape> | undefined;
      required?: string[] | undefined;
      additionalProperties?: InputShape | false | undefined;
    };

/** Deeper schemas are cut off (accept anything below); SQL refuses shapes nested deeper than its own limit. */
const MAX_DEPTH = 24;
/** A shape whose JSON is larger is not stored (no SQL check), well under SQL's limit of 1 MB. */
const MAX_BYTES = 256 * 1024;
/**
 * Schema nodes converted at most, so a schema that builds new lazy schemas
 * on every visit (two branches each: 2^24 nodes within the depth limit)
 * cannot stall a registration; the rest accepts anything.
 */
const MAX_NODES = 10_000;

// zod 4's definitions, read structurally (zod is not imported at run time).
interface ZodDef {
  type: string;
  coerce?: boolean | undefined;
  checks?: Array<{ _zod: { def: Record<string, unknown> & { check: string } } }> | undefined;
  format?: string | undefined;
  [key: string]: unknown;
}
type ZodLike = { _zod: { def: ZodDef; optin?: string | undefined } };

function zodOf(schema: unknown): ZodLike | undefined {
  const z = (schema as { _zod?: { def?: { type?: unknown } | undefined } | undefined } | null)?._zod;
  return typeof z?.def?.type === 'string' ? (schema as ZodLike) : undefined;
}

const cache = new WeakMap<object, InputShape | null>();

/**
 * The shape of a workflow's input schema, or null when there is none to
 * check (not a zod 4 schema, or too large to store).
 */
export function inputShape(schema: StandardSchemaV1): InputShape | null {
  let shape = cache.get(schema);
  if (shape === undefined) {
    const z = zodOf(schema);
    shape = z ? convert(z, { seen: new Set(), nodes: 0 }, 0) : null;
    if (shape !== null && Buffer.byteLength(JSON.stringify(shape)) > MAX_BYTES) shape = null;
    cache.set(schema, shape);
  }
  return shape;
}

/** JSON values a literal or enum can match (others never arrive in JSON). */
function jsonValues(values: unknown[]): unknown[] {
  return values.filter((v) => typeof v === 'string' || typeof v === 'boolean' || v === null
    || (typeof v === 'number' && Number.isFinite(v)));
}

const FORMAT_RANGES: Record<string, [number, number, boolean]> = {
  safeint: [Number.MIN_SAFE_INTEGER, Number.MAX_SAFE_INTEGER, true],
  int32: [-2147483648, 2147483647, true],
  uint32: [0, 4294967295, true],
  float32: [-3.4028234663852886e38, 3.4028234663852886e38, false],
  float64: [-Number.MAX_VALUE, Number.MAX_VALUE, false],
};

/** The schemas being converted (a cycle accepts anything) and how many nodes so far. */
interface Walk {
  seen: Set<ZodLike>;
  nodes: number;
}

function convert(schema: ZodLike, walk: Walk, depth: number): InputShape {
  if (depth > MAX_DEPTH || walk.seen.has(schema) || ++walk.nodes > MAX_NODES) return true;
  const def = schema._zod.def;
  // Coercion accepts values of other types.
  if (def.coerce) return true;
  const inner = (s: unknown) => {
    const z = zodOf(s);
    if (!z) return true;
    walk.seen.add(schema);
    try {
      return convert(z, walk, depth + 1);
    } finally {
      walk.seen.delete(schema);
    }
  };
  switch (def.type) {
    case 'string':
      return withChecks({ type: 'string' }, def, 'minLength', 'maxLength');
    case 'template_literal':
      return { type: 'string' };
    case 'number':
      return numberShape(def);
    case 'boolean':
      return { type: 'boolean' };
    case 'null':
      return { type: 'null' };
    case 'literal': {
      const values = def.values as unknown[];
      // A literal that is not a JSON value (undefined, a bigint) matches nothing SQL sees, but stay safe.
      return values.length === jsonValues(values).length ? { enum: values } : true;
    }
    case 'enum':
      return { enum: jsonValues(Object.values(def.entries as Record<string, unknown>)) };
    case 'array':
      return withChecks({ type: 'array', items: inner(def.element) }, def, 'minItems', 'maxItems');
    case 'tuple': {
      // Only the elements present are checked, and an upper bound without a rest element.
      const items = def.items as unknown[];
      const shape: Shape = { type: 'array', prefixItems: items.map(inner) };
      if (def.rest) shape.items = inner(def.rest);
      else shape.maxItems = items.length;
      return shape;
    }
    case 'object':
      return objectShape(def, inner);
    case 'record': {
      // Every value is checked against the value schema whatever its key;
      // only plain string keys are safe to leave unchecked.
      const key = zodOf(def.keyType)?._zod.def;
      const plainKeys = key?.type === 'string' && !key.checks?.length && !key.format && Object.keys(def).every((k) => ['type', 'keyType', 'valueType'].includes(k));
      return plainKeys ? { type: 'object', additionalProperties: inner(def.valueType) } : { type: 'object' };
    }
    case 'union':
      return anyOf((def.options as unknown[]).map(inner));
    case 'intersection': {
      const parts = [inner(def.left), inner(def.right)].filter((s) => s !== true);
      return parts.length === 0 ? true : parts.length === 1 ? parts[0]! : { allOf: parts };
    }
    case 'nullable':
      return anyOf([{ type: 'null' }, inner(def.innerType)]);
    // A present value must pass the inner schema (absence is handled by `required`).
    case 'optional':
    case 'default':
    case 'prefault':
    case 'nonoptional':
    case 'readonly':
      return inner(def.innerType);
    case 'pipe':
      return inner(def.in);
    case 'lazy':
      return inner((def.getter as () => unknown)());
    default:
      // any, unknown, catch, transform, custom, date, bigint, undefined, void, never, ...
      return true;
  }
}

function anyOf(options: InputShape[]): InputShape {
  return options.some((o) => o === true) ? true : { anyOf: options };
}

/** Length checks (of a string or an array), unless a check rewrites the value first. */
function withChecks(shape: Shape, def: ZodDef, min: 'minLength' | 'minItems', max: 'maxLength' | 'maxItems'): InputShape {
  const checks = (def.checks ?? []).map((c) => c._zod.def);
  if (checks.some((c) => c.check === 'overwrite')) return shape;
  for (const c of checks) {
    if (c.check === 'min_length') tighten(shape, min, c.minimum, Math.max);
    else if (c.check === 'max_length') tighten(shape, max, c.maximum, Math.min);
    else if (c.check === 'length_equals') {
      tighten(shape, min, c.length, Math.max);
      tighten(shape, max, c.length, Math.min);
    }
  }
  return shape;
}

type Shape = Exclude<InputShape, true>;
type Bound = 'minimum' | 'maximum' | 'exclusiveMinimum' | 'exclusiveMaximum' | 'minLength' | 'maxLength' | 'minItems' | 'maxItems';

/** Set a bound, or keep the tighter of the two when one is set already. */
function tighten(shape: Shape, key: Bound, value: unknown, pick: (a: number, b: number) => number): void {
  if (typeof value !== 'number' || !Number.isFinite(value)) return;
  const old = shape[key];
  shape[key] = old === undefined ? value : pick(old, value);
}

function numberShape(def: ZodDef): InputShape {
  const shape: Shape = { type: 'number' };
  const formats: string[] = [];
  if (def.check === 'number_format' && typeof def.format === 'string') formats.push(def.format);
  const checks = (def.checks ?? []).map((c) => c._zod.def);
  for (const c of checks) {
    if (c.check === 'number_format' && typeof c.format === 'string') formats.push(c.format);
    else if (c.check === 'greater_than' && typeof c.value === 'number') {
      if (c.inclusive) tighten(shape, 'minimum', c.value, Math.max);
      else tighten(shape, 'exclusiveMinimum', c.value, Math.max);
    } else if (c.check === 'less_than' && typeof c.value === 'number') {
      if (c.inclusive) tighten(shape, 'maximum', c.value, Math.min);
      else tighten(shape, 'exclusiveMaximum', c.value, Math.min);
    }
  }
  for (const f of formats) {
    const range = FORMAT_RANGES[f];
    if (!range) continue;
    if (range[2]) shape.type = 'integer';
    tighten(shape, 'minimum', range[0], Math.max);
    tighten(shape, 'maximum', range[1], Math.min);
  }
  return shape;
}

function objectShape(def: ZodDef, inner: (s: unknown) => InputShape): InputShape {
  const shape: Shape & { properties: Record<string, InputShape> } = { type: 'object', properties: {} };
  const required: string[] = [];
  for (const [key, value] of Object.entries(def.shape as Record<string, unknown>)) {
    shape.properties[key] = inner(value);
    if (rejectsUndefined(value, 0)) required.push(key);
  }
  if (required.length) shape.required = required;
  const catchall = zodOf(def.catchall);
  // No catchall: unknown keys are stripped. never: strict. Otherwise each extra value is checked.
  if (catchall) shape.additionalProperties = catchall._zod.def.type === 'never' ? false : inner(def.catchall);
  if (shape.additionalProperties === true) delete shape.additionalProperties;
  return shape;
}

/** True only when `schema` certainly refuses `undefined` (a missing key): then the key is required. */
function rejectsUndefined(schema: unknown, depth: number): boolean {
  const z = zodOf(schema);
  if (!z || depth > MAX_DEPTH) return false;
  const def = z._zod.def;
  if (def.coerce) return false;
  switch (def.type) {
    case 'string': case 'number': case 'boolean': case 'null': case 'object': case 'array':
    case 'tuple': case 'record': case 'enum': case 'template_literal':
      return true;
    case 'literal':
      return !(def.values as unknown[]).includes(undefined);
    case 'nonoptional':
      return true;
    case 'nullable': case 'readonly':
      return rejectsUndefined(def.innerType, depth + 1);
    case 'pipe':
      return rejectsUndefined(def.in, depth + 1);
    case 'union':
      return (def.options as unknown[]).every((o) => rejectsUndefined(o, depth + 1));
    case 'intersection':
      return rejectsUndefined(def.left, depth + 1) || rejectsUndefined(def.right, depth + 1);
    default:
      return false;
  }
}

/**
 * Hostile values for F11/F12: injection attempts, oversized and odd
 * strings (every one is an invalid name: it holds a character names do not
 * allow, or is empty or far too long; see trellis._check_name), hostile JSON, and a fingerprint of a
 * database's rows and catalog to prove a fuzz run changed nothing.
 */
import type pg from 'pg';

const INJECTIONS = [
  `x'); drop table trellis.runs; --`, `"; create table public.pwned (x int); --`, `' or '1'='1`, `$$; delete from trellis.runs; $$`,
  `a\\'; select pg_sleep(10); --`, `trellis.runs; truncate trellis.steps`, `%s%s%s%n`, `\${process.exit()}`, `<script>alert(1)</script>`,
  `../../etc/passwd`, ` leading space`, `tab\there`, `line\nbreak`, `nul\u0000byte`, `\u202Eevil`, `😀 emoji`, `é`, ` `, `'`, `"`, `;`, `\\`,
];

/**
 * Input shapes that workflow_register accepts but that hold odd values
 * (a non-numeric bound, an invalid regular expression, a zero multipleOf,
 * a huge or negative limit, the wrong JSON type where a keyword expects
 * another): the shape helpers (_input_error, _shape_error) must still
 * answer or raise a TRxxx code for any input checked against them.
 */
export const ODD_SHAPES: unknown[] = [
  { type: 'string', maxLength: 'abc' }, { type: 'string', pattern: '(' }, { type: 'string', pattern: '\\' }, { enum: 5 },
  { type: 'array', items: 5 }, { type: 'object', properties: [] }, { type: 'object', required: 'x' },
  { type: 'number', multipleOf: 0 }, { type: 'number', multipleOf: 'x' }, { type: 'array', minItems: -1 },
  { type: 'integer', maximum: 1e308 }, { anyOf: 5 }, { oneOf: [] }, { const: {} }, { type: 'string', format: 'email' },
  { type: 'number', minimum: 'abc' }, { type: 'nope' }, { type: [] }, { additionalProperties: 5, type: 'object' },
  { type: 'object', properties: { a: { type: 'array', items: { type: 'object', required: ['b'], properties: { b: { type: 'integer', minimum: 1 } } } } } },
  { type: 'string', minLength: 2147483648 }, { type: 'array', maxItems: 1.5 }, { not: {} }, { allOf: [{ type: 'number' }, false] },
];

/** A deterministic pseudo-random source (a failure can be replayed by its seed). */
export function rng(seed: number): () => number {
  let s = seed >>> 0 || 1;
  return () => ((s = (Math.imul(s ^ (s >>> 15), 0x2c1b3c6d) + 0x6d2b79f5) >>> 0) / 2 ** 32);
}

export function hostileString(r: () => number): string {
  const pick = r();
  if (pick < 0.05) return '';
  if (pick < 0.1) return `x${"'".repeat(1 + Math.floor(r() * 20_000))}`;
  const base = INJECTIONS[Math.floor(r() * INJECTIONS.length)]!;
  return r() < 0.5 ? base : `${base}${Math.floor(r() * 1e6)}`;
}

export function hostileJson(r: () => number): unknown {
  const pick = r();
  if (pick < 0.2) return hostileString(r);
  if (pick < 0.3) return { [hostileString(r)]: hostileString(r) };
  if (pick < 0.4) return JSON.parse(`${'['.repeat(3000)}${']'.repeat(3000)}`);
  if (pick < 0.5) return { big: 'x'.repeat(2_000_000) };
  if (pick < 0.6) return [Number.MAX_SAFE_INTEGER, -0, 1e308];
  if (pick < 0.7) return null;
  return { n: hostileString(r), nested: { deeper: [hostileString(r)] } };
}

/** Row counts of every table in the trellis schema and public.effects, and an md5 of the catalog. */
export async function fingerprint(pool: pg.Pool): Promise<{ rows: Record<string, number>; catalog: string }> {
  const { rows: tables } = await pool.query<{ name: string }>(
    `select format('%I.%I', schemaname, relname) as name from pg_stat_user_tables order by 1`);
  const rows: Record<string, number> = {};
  for (const t of tables) rows[t.name] = (await pool.query<{ n: number }>(`select count(*)::int as n from ${t.name}`)).rows[0]!.n;
  const { rows: [c] } = await pool.query<{ md5: string }>(`select md5(string_agg(x, ',' order by x)) as md5 from (
      select format('class %s.%s %s', n.nspname, c.relname, c.relkind) as x from pg_class c join pg_namespace n on n.oid = c.relnamespace
       where n.nspname not in ('pg_catalog', 'information_schema', 'pg_toast') and n.nspname not like 'pg_temp%'
      union all select format('proc %s %s', p.oid::regprocedure, md5(p.prosrc)) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname not in ('pg_catalog', 'information_schema')
      union all select format('role %s', rolname) from pg_roles where rolname like 'trellis%'
      union all select format('acl %s %s', p.oid::regprocedure, p.proacl) from pg_proc p join pg_namespace n on n.oid = p.pronamespace
       where n.nspname = 'trellis') t`);
  return { rows, catalog: c!.md5 };
}

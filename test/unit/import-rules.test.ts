/**
 * The import rules of src/, written once in docs/architecture.md ("Source
 * layout": the layer table and the driver table) and checked here against
 * every import in src/: static `import` / `export … from` (type-only too)
 * and dynamic `import()`.
 */
import assert from 'node:assert/strict';
import { readdirSync, readFileSync } from 'node:fs';
import { dirname, join, relative, resolve } from 'node:path';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';

const root = fileURLToPath(new URL('../..', import.meta.url));
const src = join(root, 'src');

interface Rules {
  /** Layer → the layers it may import ('*': any). */
  layers: Map<string, Set<string>>;
  /** npm package → the files or folders (ending in /) that may import it. */
  packages: Map<string, string[]>;
}

/** The rows of the markdown table between `<!-- name:start -->` and `<!-- name:end -->`. */
function tableRows(doc: string, name: string): string[][] {
  const start = doc.indexOf(`<!-- ${name}:start -->`);
  const end = doc.indexOf(`<!-- ${name}:end -->`);
  assert.ok(start >= 0 && end > start, `docs/architecture.md has the ${name} table`);
  return doc.slice(start, end).split('\n')
    .filter((line) => line.startsWith('|') && !/^\|\s*-/.test(line))
    .slice(1)
    .map((line) => line.split('|').slice(1, -1).map((cell) => cell.trim()));
}

/** The backquoted names in a cell, without a trailing `/` or `.ts`. */
const names = (cell: string) => [...cell.matchAll(/`([^`]+)`/g)].map((m) => (m[1] as string).replace(/(\/|\.ts)$/, ''));

export function readRules(doc: string): Rules {
  const layers = new Map<string, Set<string>>();
  for (const [folders = '', , imports = ''] of tableRows(doc, 'import-rules')) {
    const allowed = new Set(imports === 'any' ? ['*'] : names(imports));
    for (const folder of names(folders)) layers.set(folder, allowed);
  }
  const packages = new Map<string, string[]>();
  for (const [pkg = '', where = ''] of tableRows(doc, 'driver-rules')) {
    packages.set(names(pkg)[0] as string, [...where.matchAll(/`([^`]+)`/g)].map((m) => m[1] as string));
  }
  return { layers, packages };
}

/** Every import specifier in a TS source text (comments stripped first, so examples in TSDoc do not count). */
export function importsOf(text: string): string[] {
  const code = text.replace(/\/\*[\s\S]*?\*\//g, '').replace(/(^|[^:'"`])\/\/.*$/gm, '$1');
  const out: string[] = [];
  const re = /\b(?:import|export)\s+(?:type\s+)?(?:[\w*{}\s,$]+?\s+from\s+)?['"]([^'"]+)['"]|\bimport\(\s*['"]([^'"]+)['"]\s*\)/g;
  for (const m of code.matchAll(re)) out.push((m[1] ?? m[2]) as string);
  return out;
}

/** The layer of a path under src/: its top folder, or the file name for a top-level file. */
export function layerOf(pathInSrc: string): string {
  const [head = '', ...rest] = pathInSrc.split('/');
  return rest.length ? head : head.replace(/\.ts$/, '');
}

/** The imports of `file` (a path under src/) that the rules do not allow, as "file: import (why)". */
export function breaches(rules: Rules, file: string, specifiers: readonly string[]): string[] {
  const from = layerOf(file);
  const allowed = rules.layers.get(from);
  const out: string[] = [];
  if (!allowed) return [`${file}: the layer "${from}" is not in the table of docs/architecture.md`];
  for (const spec of specifiers) {
    if (spec.startsWith('.')) {
      const target = relative(src, resolve(src, dirname(file), spec)).split('\\').join('/');
      const to = layerOf(target);
      if (to === from || allowed.has('*') || allowed.has(to)) continue;
      out.push(`${file}: imports ${spec} (${from}/ may not import ${to})`);
    } else if (!spec.startsWith('node:')) {
      const pkg = spec.startsWith('@') ? spec.split('/').slice(0, 2).join('/') : (spec.split('/')[0] as string);
      const where = rules.packages.get(pkg);
      if (where && !where.some((w) => (w.endsWith('/') ? file.startsWith(w) : file === w))) {
        out.push(`${file}: imports ${spec} (only ${where.join(', ')} may)`);
      }
    }
  }
  return out;
}

function sourceFiles(dir: string): string[] {
  return readdirSync(dir, { withFileTypes: true }).flatMap((e) => {
    const path = join(dir, e.name);
    if (e.isDirectory()) return sourceFiles(path);
    return e.name.endsWith('.ts') ? [relative(src, path).split('\\').join('/')] : [];
  });
}

const rules = readRules(readFileSync(join(root, 'docs/architecture.md'), 'utf8'));

describe('import rules of src/ (docs/architecture.md, Source layout)', () => {
  it('every import in src/ is allowed by the layer table and the driver table', () => {
    const found = sourceFiles(src).flatMap((file) => breaches(rules, file, importsOf(readFileSync(join(src, file), 'utf8'))));
    assert.deepEqual(found, [], `imports the table does not allow:\n${found.join('\n')}`);
  });

  it('the table names every folder and top-level file of src/', () => {
    const layers = new Set(sourceFiles(src).map(layerOf));
    assert.deepEqual([...layers].filter((l) => !rules.layers.has(l)), []);
    assert.deepEqual([...rules.layers.keys()].filter((l) => !layers.has(l)), [], 'no row for a layer that does not exist');
  });

  it('reports a forbidden layer arrow with the file and the import', () => {
    assert.deepEqual(breaches(rules, 'db/runs.ts', importsOf("import type { X } from '../replay/executor.ts';")),
      ['db/runs.ts: imports ../replay/executor.ts (db/ may not import replay)']);
    assert.deepEqual(breaches(rules, 'client/client.ts', importsOf("const m = await import('../worker/worker.ts');")),
      ['client/client.ts: imports ../worker/worker.ts (client/ may not import worker)']);
    assert.deepEqual(breaches(rules, 'db/runs.ts', importsOf("export { x } from './queryable.ts';\nimport '../errors.ts';")), []);
  });

  it('reports a driver import outside the files the driver table allows', () => {
    assert.deepEqual(breaches(rules, 'worker/worker.ts', importsOf("import pg from 'pg';")),
      ['worker/worker.ts: imports pg (only db/pg.ts may)']);
    assert.deepEqual(breaches(rules, 'db/pg.ts', importsOf("import pg from 'pg';")), []);
  });

  it('ignores imports quoted in comments (TSDoc examples)', () => {
    assert.deepEqual(importsOf("/**\n * @example\n * import pg from 'pg';\n */\n// import x from '../worker/x.ts';\nimport { a } from './a.ts';"), ['./a.ts']);
  });
});

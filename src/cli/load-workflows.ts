/**
 * `trellis worker <module>`: import the user's module and collect the
 * workflows it exports. A .ts module needs a TypeScript loader: when the
 * import fails for that reason, tsx is registered from the module's own
 * project (its devDependency), never from Trellis.
 */
import { existsSync, readFileSync } from 'node:fs';
import { createRequire } from 'node:module';
import { dirname, extname, join, resolve } from 'node:path';
import { pathToFileURL } from 'node:url';
import type { WorkflowDefinition } from '../workflow/define.ts';
import { quote } from './args.ts';
import { UsageError } from './exit-codes.ts';

const TS = new Set(['.ts', '.mts', '.cts', '.tsx']);

const isWorkflow = (value: unknown): value is WorkflowDefinition =>
  typeof value === 'object' && value !== null && (value as { kind?: unknown }).kind === 'trellis.workflow'
  && typeof (value as { fn?: unknown }).fn === 'function';

/**
 * Register tsx from the project of `path`, for both module systems (as the
 * `tsx` command does): its ESM hooks, and its CommonJS ones, which compile a
 * .ts file of a CommonJS project that a `require` reaches (with only the
 * ESM hooks, node's own require of ES modules took it and failed). False
 * when tsx is not installed there.
 */
async function registerTsx(path: string): Promise<boolean> {
  let apis: string[];
  try {
    // The ESM entries of tsx/esm/api and tsx/cjs/api, found from the module's folder (require.resolve would give the CommonJS ones).
    const manifest = createRequire(path).resolve('tsx/package.json');
    const pkg = JSON.parse(readFileSync(manifest, 'utf8')) as { exports: Record<string, { import: { default: string } }> };
    apis = ['./esm/api', './cjs/api'].map((entry) => join(dirname(manifest), pkg.exports[entry]?.import.default ?? ''));
  } catch {
    return false;
  }
  for (const api of apis) {
    const { register } = (await import(pathToFileURL(api).href)) as { register(): unknown };
    register();
  }
  return true;
}

/**
 * Import the user's module `module` (relative to `cwd`): its namespace. A
 * missing file, or a .ts one without tsx in its project, is a UsageError.
 *
 * @example
 * const namespace = await importModule('dist/workflows.js');
 */
export async function importModule(module: string, cwd = process.cwd()): Promise<Record<string, unknown>> {
  const path = resolve(cwd, module);
  if (!existsSync(path)) throw new UsageError(`module ${quote(module)} does not exist`);
  const url = pathToFileURL(path).href;
  // TypeScript: tsx is registered before the first import. Imported first
  // and failing, the module stayed half-loaded in node's module cache, and
  // in a CommonJS project (npm init's "type": "commonjs") tsx's require of
  // it then failed ("Cannot require() ES Module ... not yet fully loaded").
  const ts = TS.has(extname(path)) && await registerTsx(path);
  try {
    return await import(url);
  } catch (error) {
    const code = (error as { code?: string | undefined }).code;
    if (code === 'ERR_UNSUPPORTED_DIR_IMPORT' || (code === 'ERR_UNKNOWN_FILE_EXTENSION' && !TS.has(extname(path)))) {
      throw new UsageError(`${quote(module)} is not a JavaScript or TypeScript module`);
    }
    if (TS.has(extname(path)) && !ts && code === 'ERR_UNKNOWN_FILE_EXTENSION') {
      throw new UsageError(`${quote(module)} is TypeScript: install tsx in its project (npm install -D tsx) or compile it to JavaScript`);
    }
    // Text that does not parse as a module (a syntax error, a JSON file, a file that is no code at all).
    if (error instanceof SyntaxError || code === 'ERR_IMPORT_ATTRIBUTE_MISSING' || code === 'ERR_IMPORT_ASSERTION_TYPE_MISSING') {
      throw new UsageError(`${quote(module)} is not a module it can load (${String((error as Error).message).split('\n')[0]?.slice(0, 120)})`);
    }
    throw error;
  }
}

/**
 * The workflow definitions `module` exports: each exported definition, and
 * each one in an exported array (a default export included), once.
 *
 * @example
 * const workflows = await loadWorkflows('dist/workflows.js');
 * await createWorker({ connectionString, workflows }).start();
 */
export async function loadWorkflows(module: string, cwd = process.cwd()): Promise<WorkflowDefinition[]> {
  const namespace = await importModule(module, cwd);
  const found = new Set<WorkflowDefinition>();
  const collect = (values: unknown[]) => {
    for (const value of values) {
      if (isWorkflow(value)) found.add(value);
      else if (Array.isArray(value)) for (const item of value) if (isWorkflow(item)) found.add(item);
    }
  };
  collect(Object.values(namespace));
  // A CommonJS module (a .ts file of a "type": "commonjs" project, which tsx
  // compiles to CommonJS) arrives as { default: module.exports }: its exports
  // are the default export's own values.
  const exported = namespace.default;
  if (typeof exported === 'object' && exported !== null && !Array.isArray(exported) && !isWorkflow(exported)) {
    collect(Object.values(exported));
  }
  const workflows = [...found];
  if (!workflows.length) {
    throw new UsageError(`${quote(module)} exports no workflows (export what defineWorkflow returns, or an array of them)`);
  }
  const seen = new Set<string>();
  for (const w of workflows) {
    const id = `${w.name}@${w.version}`;
    if (seen.has(id)) throw new UsageError(`${quote(module)} exports two definitions of ${id}`);
    seen.add(id);
  }
  return workflows;
}

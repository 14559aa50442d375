/**
 * Generate src/schema/bundle.generated.ts from migrations/committed/*.sql and
 * sql/*.sql, so the installer ships its SQL as a module (survives bundlers),
 * and append a line to sql/revisions.txt when the functions changed.
 *   npm run sql:bundle            write the module
 *   npm run sql:bundle -- --check exit 1 if the module is stale
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { renderBundle } from '../src/schema/sources.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const target = `${root}src/schema/bundle.generated.ts`;
const next = await renderBundle(root, !process.argv.includes('--check'));
const current = await readFile(target, 'utf8').catch(() => '');
if (process.argv.includes('--check')) {
  if (current !== next) {
    console.error('src/schema/bundle.generated.ts is stale: run `npm run sql:bundle`');
    process.exit(1);
  }
  console.log('bundle is up to date');
} else if (current !== next) {
  await writeFile(target, next);
  console.log(`wrote ${target}`);
}

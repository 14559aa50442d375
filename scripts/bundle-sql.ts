/**
 * Generate src/schema/bundle.generated.ts from migrations/committed/*.sql and
 * sql/*.sql, so the installer ships its SQL as a module (survives bundlers),
 * and append a line to sql/revisions.txt when the functions changed. Also
 * writes src/protocol/schema-version.generated.ts (the newest migration), which
 * clients and workers check without loading the bundled SQL.
 *   npm run sql:bundle            write the modules
 *   npm run sql:bundle -- --check exit 1 if a module is stale
 */
import { readFile, writeFile } from 'node:fs/promises';
import { fileURLToPath } from 'node:url';
import { renderBundle, renderSchemaVersion } from '../src/schema/sources.ts';

const root = fileURLToPath(new URL('..', import.meta.url));
const check = process.argv.includes('--check');
const targets: [string, string][] = [
  [`${root}src/schema/bundle.generated.ts`, await renderBundle(root, !check)],
  [`${root}src/protocol/schema-version.generated.ts`, await renderSchemaVersion(root)],
];
let stale = false;
for (const [target, next] of targets) {
  const current = await readFile(target, 'utf8').catch(() => '');
  if (current === next) continue;
  if (check) {
    console.error(`${target.slice(root.length)} is stale: run \`npm run sql:bundle\``);
    stale = true;
  } else {
    await writeFile(target, next);
    console.log(`wrote ${target}`);
  }
}
if (check && stale) process.exit(1);
if (check) console.log('bundle is up to date');

#!/usr/bin/env node
// The `trellis` command: the compiled CLI (dist/cli/main.js) in this node
// process, no TypeScript loader. Only in a checkout of Trellis itself, where
// dist/ is not built, it runs the sources through tsx (a devDependency there).
import { existsSync } from 'node:fs';

const compiled = new URL('../dist/cli/main.js', import.meta.url);
const args = process.argv.slice(2);
if (existsSync(compiled)) {
  const { run } = await import(compiled.href);
  await run(args);
} else {
  let tsx;
  try {
    tsx = await import('tsx/esm/api');
  } catch {
    process.stderr.write('trellis: dist/cli/main.js is missing (run `npm run build`)\n');
    process.exit(70);
  }
  tsx.register();
  const { run } = await import(new URL('../src/cli/main.ts', import.meta.url).href);
  await run(args);
}

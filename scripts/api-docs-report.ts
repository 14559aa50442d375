/** Print what the API docs check would fail on (a helper while writing TSDoc; the test is test/unit/api-docs.test.ts). */
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { allExamples, generateApiDocs, publicApi, typecheckExamples } from './api-docs.ts';

const out = await mkdtemp(join(tmpdir(), 'trellis-api-'));
try {
  const project = await generateApiDocs(out);
  const missing = publicApi(project).filter((d) => !d.examples.length).map((d) => d.where);
  console.log(`without @example (${missing.length}):\n  ${missing.join('\n  ')}`);
  const errors = await typecheckExamples(allExamples(project));
  console.log(`example errors (${errors.length}):\n  ${errors.join('\n  ')}`);
} finally {
  await rm(out, { recursive: true, force: true });
}

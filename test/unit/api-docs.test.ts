/**
 * The API reference (docs/api, `npm run docs:api`) is current, and the TSDoc
 * behind it keeps its promise: every public function, method and option has
 * an `@example`, and every example typechecks against the real API.
 * TypeDoc converts the sources once for all three checks.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import type { ProjectReflection } from 'typedoc';
import { allExamples, generateApiDocs, publicApi, readTree, root, typecheckExamples } from '../../scripts/api-docs.ts';

let out: string;
let project: ProjectReflection;
before(async () => {
  out = await mkdtemp(join(tmpdir(), 'trellis-api-'));
  project = await generateApiDocs(out);
});
after(() => rm(out, { recursive: true, force: true }));

describe('the API reference', () => {
  it('in docs/api is what `npm run docs:api` generates from the current TSDoc', async () => {
    const [fresh, committed] = [await readTree(out), await readTree(join(root, 'docs', 'api'))];
    assert.deepEqual([...committed.keys()].sort(), [...fresh.keys()].sort(), 'the same files (run `npm run docs:api`)');
    const stale = [...fresh].filter(([path, text]) => committed.get(path) !== text).map(([path]) => path);
    assert.deepEqual(stale, [], 'stale pages: run `npm run docs:api` and commit docs/api');
  });

  it('has an @example on every public function, method and option', () => {
    const api = publicApi(project);
    assert.ok(api.length > 100, `found only ${api.length} public functions, methods and options`);
    assert.deepEqual(api.filter((d) => !d.examples.length).map((d) => d.where), []);
  });

  it('has only examples that typecheck against the public API', async () => {
    const examples = allExamples(project);
    assert.ok(examples.length > 100, `found only ${examples.length} examples`);
    assert.deepEqual(await typecheckExamples(examples), []);
  });
});

import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { after, before, describe, it } from 'node:test';
import { runExample } from '../helpers/examples.ts';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';



describe('examples of the models', () => {
  let db: TestDatabase;
  before(async () => {
    db = await freshDatabase();
  });
  after(() => db.close());

  it('onboarding drives users through a callback and timeouts, prints the diagram its README shows, and exits 0', async () => {
    const { code, stdout, stderr } = await runExample('examples/onboarding/main.ts', db.url);
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    const readme = await readFile(new URL('../../examples/onboarding/README.md', import.meta.url), 'utf8');
    const diagram = /```mermaid\n([\s\S]*?)```/.exec(readme)?.[1];
    assert.ok(diagram && stdout.startsWith(diagram), `README diagram differs from the printed one:\n${stdout.slice(0, 400)}`);
    assert.match(stdout, /^second sign-up refused: IllegalTransitionError \(TR004\)$/m);
    assert.match(stdout, /^ada: welcomed \["verify","welcome"\]$/m);
    assert.match(stdout, /^bo after 2 days: reminded$/m);
    assert.match(stdout, /^bo after 7 days: abandoned$/m);
    assert.match(stdout, /^sql: user-ada welcomed completed ada@example.com$/m);
    assert.match(stdout, /^bo deleted: abandoned deleted@invalid true$/m);
    assert.match(stdout, /^bo path: created>emailed emailed>reminded reminded>abandoned$/m);
    assert.match(stdout, /^hook: user-ada completed in welcomed$/m);
    assert.match(stdout, /^cy: started by the form, emailed with code CY$/m);
    assert.match(stdout, /^sql: user-cy abandoned completed cy@example.com$/m); // the 7 days passed for her too
  });

  it('template-pipeline stores and starts a pipeline from psql, continues past a failing step, and exits 0', async () => {
    const { code, stdout, stderr } = await runExample('examples/template-pipeline/main.ts', db.url);
    assert.equal(code, 0, `exit ${code}\nstdout:\n${stdout}\nstderr:\n${stderr}`);
    assert.match(stdout, /^version \d+$/m);
    assert.match(stdout, /^completed\|report 2026-12-03: 3 sales, 245 total\|\["notify"\]$/m);
    assert.match(stdout, /^0\|extract\|completed\n1\|transform\|completed\n2\|load\|completed\n3\|notify\|failed$/m);
    assert.match(stdout, /^cycle: TR001 template loop: the steps form a cycle at 'a'$/m);
    assert.match(stdout, /^hook: notify failed$/m);
  });
});

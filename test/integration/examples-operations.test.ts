/** examples/operations runs as a user would run it: a `trellis worker` process driven by CLI commands. */
import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { after, before, describe, it } from 'node:test';
import { freshDatabase, type TestDatabase } from '../helpers/db.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));

describe('examples/operations', () => {
  let db: TestDatabase;
  before(async () => {
    db = await freshDatabase();
  });
  after(() => db.close());

  it('serves, signals, shows and stops a worker gracefully from the CLI; ctx.log lines appear once', () => {
    const env: NodeJS.ProcessEnv = { ...process.env, DATABASE_URL: db.url };
    delete env.NODE_OPTIONS;
    const r = spawnSync(process.execPath, ['--import', 'tsx', 'examples/operations/main.ts'], { cwd: root, env, encoding: 'utf8', timeout: 120_000 });
    assert.equal(r.status, 0, `stdout:\n${r.stdout}\nstderr:\n${r.stderr}`);
    const out = r.stdout;
    assert.match(out, /^\$ trellis signal --workflow expense --key exp-\d+ approved '\{"by":"ada"\}' --id mail-1\nsent\n\(exit 0\)$/m);
    assert.match(out, /^\(stderr\) trellis start: \[validation\] input of expense version 1 does not match its schema: \$\.id: required\n\(exit 2\)$/m);
    assert.match(out, /^\{"by":"ada","paid":true\}\n\(exit 0\)$/m);
    assert.match(out, /^the same key gives the same run: true$/m);
    assert.match(out, /^1 +signal +approved +completed/m);
    assert.match(out, /^approved +\S+ \S+ +\S+ \S+ +#1 +mail-1$/m);
    assert.match(out, /^ +class s0,s1,s2,now done$/m);
    assert.match(out, /^\(exit 4\)$/m);
    assert.match(out, /^worker exit code after SIGTERM: 0$/m);
    const log = out.slice(out.indexOf('worker log:\n') + 'worker log:\n'.length).trim().split('\n').map((l) => JSON.parse(l) as { message: string });
    const messages = log.map((l) => l.message);
    assert.deepEqual(messages.filter((m) => m.startsWith('expense ')), ['expense submitted', 'expense approved'], 'each ctx.log line once');
    assert.deepEqual(messages.filter((m) => m.startsWith('run ')), ['run started', 'run resumed', 'run completed']);
    assert.equal(messages.at(-1), 'worker stopped');
  });
});

import assert from 'node:assert/strict';
import { spawnSync } from 'node:child_process';
import { cpSync, mkdtempSync, rmSync, symlinkSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, it } from 'node:test';
import pg from 'pg';
import { main } from '../../src/cli/main.ts';
import { latestMigration } from '../../src/schema/install.ts';
import { createDatabase } from '../helpers/db.ts';

let database: Awaited<ReturnType<typeof createDatabase>>;
before(async () => {
  database = await createDatabase('trellis_cli');
});
after(() => database.drop());

const capture = async (args: string[]) => {
  let text = '';
  const code = await main(args, (s) => (text += s));
  return { code, text };
};

describe('trellis CLI', () => {
  it('migrate installs the schema, then reports it is up to date', async () => {
    const first = await capture(['migrate', '--database-url', database.url]);
    assert.equal(first.code, 0);
    assert.match(first.text, new RegExp(`applied migrations 1, .*schema at ${latestMigration()}`));
    const again = await capture(['migrate', '--database-url', database.url]);
    assert.equal(again.code, 0);
    assert.match(again.text, new RegExp(`schema already at ${latestMigration()}`));
    const status = await capture(['status', '--database-url', database.url]);
    assert.equal(status.code, 0);
    assert.match(status.text, new RegExp(`schema at migration ${latestMigration()}`));
  });

  it('sql prints a script that installs a working schema', async () => {
    const { code, text } = await capture(['sql']);
    assert.equal(code, 0);
    const fresh = await createDatabase('trellis_cli_sql');
    const client = new pg.Client({ connectionString: fresh.url });
    await client.connect();
    try {
      await client.query(text);
      await client.query(`select trellis.workflow_register('[{"name":"w","version":"1"}]')`);
      const { rows } = await client.query(`select trellis.run_start('w', '{}') as id`);
      assert.match(rows[0].id, /^[0-9a-f-]{36}$/);
    } finally {
      await client.end();
      await fresh.drop();
    }
  });

  it('refuses bad usage with exit code 2 and changes nothing', async () => {
    assert.equal((await capture(['frobnicate'])).code, 2);
    assert.equal((await capture(['sql', '--from', 'x'])).code, 2);
    const saved = process.env.DATABASE_URL;
    delete process.env.DATABASE_URL;
    try {
      assert.equal((await capture(['migrate'])).code, 2);
    } finally {
      if (saved !== undefined) process.env.DATABASE_URL = saved;
    }
  });

  it('the bin script runs the CLI', () => {
    const result = spawnSync(process.execPath, ['bin/trellis.mjs', 'sql', '--from', '1'], { encoding: 'utf8' });
    assert.equal(result.status, 0, result.stderr);
    assert.match(result.stdout, /create or replace function trellis.run_start/);
    assert.doesNotMatch(result.stdout, /create table trellis.runs/);
  });

  it('runs from a directory whose name has a space, as a copy and through a symlink', () => {
    const repo = new URL('../..', import.meta.url).pathname;
    const dir = mkdtempSync(join(tmpdir(), 'trellis cli '));
    try {
      // A copy: import.meta.url spells the space %20, process.argv[1] does not.
      const copy = join(dir, 'with space');
      cpSync(join(repo, 'src'), join(copy, 'src'), { recursive: true });
      cpSync(join(repo, 'package.json'), join(copy, 'package.json'));
      symlinkSync(join(repo, 'node_modules'), join(copy, 'node_modules'));
      // A symlink: node runs the real file, argv[1] names the link.
      const link = join(dir, 'linked repo');
      symlinkSync(repo, link);
      for (const cli of [join(copy, 'src/cli/main.ts'), join(link, 'src/cli/main.ts')]) {
        const result = spawnSync(process.execPath, ['--import', 'tsx', cli, 'sql', '--from', '1'], { cwd: repo, encoding: 'utf8' });
        assert.equal(result.status, 0, `${cli}: ${result.stderr}`);
        assert.match(result.stdout, /create or replace function trellis.run_start/, cli);
      }
    } finally {
      rmSync(dir, { recursive: true, force: true });
    }
  });
});

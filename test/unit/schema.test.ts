import assert from 'node:assert/strict';
import { readFile } from 'node:fs/promises';
import { describe, it } from 'node:test';
import { fileURLToPath } from 'node:url';
import { calculateHash } from 'graphile-migrate/dist/hash.js';
import { SchemaVersionError } from '../../src/errors.ts';
import { BUNDLE } from '../../src/schema/bundle.generated.ts';
import { type BundledMigration, functionsHash, migrationHash, parseMigration, parseRevisions, verifyChain } from '../../src/schema/migrations.ts';
import { renderBundle, renderSchemaVersion } from '../../src/schema/sources.ts';
import { SCHEMA_MIGRATION } from '../../src/protocol/schema-version.generated.ts';

const root = fileURLToPath(new URL('../..', import.meta.url));

/** A migration that correctly follows `previous` in the chain. */
function follow(previous: BundledMigration, body = 'create table trellis.extra (id integer);\n'): BundledMigration {
  const id = previous.id + 1;
  return { id, filename: `${String(id).padStart(6, '0')}.sql`, previousHash: previous.hash, hash: migrationHash(body, previous.hash), body };
}

const first = BUNDLE.migrations[0] as BundledMigration;
const rejects = (migrations: BundledMigration[], message: RegExp) =>
  assert.throws(() => verifyChain(migrations), (error) => error instanceof SchemaVersionError && message.test(error.message));

describe('verifyChain', () => {
  it('accepts the bundled migrations', () => {
    assert.ok(BUNDLE.migrations.length >= 1);
    verifyChain(BUNDLE.migrations);
  });

  it('accepts a correctly linked longer chain', () => {
    const second = follow(first);
    verifyChain([first, second, follow(second)]);
  });

  it('rejects a body edited after commit', () => {
    rejects([{ ...first, body: `${first.body}\ncreate table trellis.sneaky (id integer);\n` }], /edited after commit/);
    rejects([first, { ...follow(first), body: 'drop table trellis.runs;\n' }], /edited after commit/);
  });

  it('rejects a broken previous link, even when the hash matches the body', () => {
    const orphan = follow({ ...first, hash: 'sha1:0000000000000000000000000000000000000000' });
    rejects([first, orphan], /does not follow/);
    rejects([{ ...first, previousHash: orphan.hash, hash: migrationHash(first.body, orphan.hash) }], /does not follow/);
  });

  it('rejects an out-of-sequence id', () => {
    rejects([first, { ...follow(first), id: 3 }], /out of sequence/);
    rejects([{ ...first, id: 2 }], /out of sequence/);
    const second = follow(first);
    rejects([second, first], /out of sequence/);
  });
});

describe('migrationHash', () => {
  it("matches graphile-migrate's calculateHash", () => {
    const bodies = [first.body, 'select 1;', '\n\n  select 1;  \n\n', '-- only a comment\n', '', 'select $$\n  x\n$$;\n'];
    for (const previous of [null, first.hash, 'sha1:abc']) {
      for (const body of bodies) {
        assert.equal(migrationHash(body, previous), calculateHash(body, previous), JSON.stringify({ body, previous }));
      }
    }
  });

  it('reproduces the hash in the header of every committed migration', async () => {
    for (const m of BUNDLE.migrations) {
      const text = await readFile(`${root}migrations/committed/${m.filename}`, 'utf8');
      const parsed = parseMigration(m.filename, text);
      assert.equal(parsed.hash, m.hash);
      assert.equal(calculateHash(parsed.body, parsed.previousHash), parsed.hash);
    }
  });
});

describe('the generated bundle', () => {
  it('is up to date with migrations/committed and sql/ (run `npm run sql:bundle`)', async () => {
    const current = await readFile(`${root}src/schema/bundle.generated.ts`, 'utf8');
    assert.equal(current, await renderBundle(root));
  });

  it('is matched by src/protocol/schema-version.generated.ts, the migration clients and workers require (run `npm run sql:bundle`)', async () => {
    const current = await readFile(`${root}src/protocol/schema-version.generated.ts`, 'utf8');
    assert.equal(current, await renderSchemaVersion(root));
    assert.equal(SCHEMA_MIGRATION, BUNDLE.migrations.at(-1)?.id);
  });

  it('carries the last revision of sql/revisions.txt, whose hash is that of the bundled functions', async () => {
    const revisions = parseRevisions(await readFile(`${root}sql/revisions.txt`, 'utf8'));
    const last = revisions.at(-1);
    assert.ok(last, 'sql/revisions.txt has a line');
    assert.equal(BUNDLE.sqlRevision, last.revision);
    assert.equal(functionsHash(BUNDLE), last.hash);
  });

  it('parseRevisions refuses lines out of order or malformed', () => {
    const h = 'a'.repeat(64);
    assert.deepEqual(parseRevisions(`# comment\n1 ${h}\n2 ${h}\n`), [{ revision: 1, hash: h }, { revision: 2, hash: h }]);
    for (const bad of [`2 ${h}`, `1 ${h}\n3 ${h}`, '1 abc', `1 ${h} extra`]) assert.throws(() => parseRevisions(bad), /revisions\.txt/, bad);
  });
});

describe('SCHEMA_COMPATIBLE_FROM (decision 0034)', () => {
  it('is a migration this release ships, at most its newest, and never below the first release that records it (31)', async () => {
    const { SCHEMA_COMPATIBLE_FROM } = await import('../../src/protocol/schema-compat.ts');
    assert.ok(Number.isInteger(SCHEMA_COMPATIBLE_FROM));
    assert.ok(SCHEMA_COMPATIBLE_FROM <= SCHEMA_MIGRATION, `${SCHEMA_COMPATIBLE_FROM} <= ${SCHEMA_MIGRATION}`);
    // Code before migration 31 does not read compatible_from: declaring it compatible would change nothing for it.
    assert.ok(SCHEMA_COMPATIBLE_FROM >= 31);
  });

  it('schemaAhead: a newer schema is refused unless it declares this code\'s migration compatible', async () => {
    const { schemaAhead } = await import('../../src/db/schema-check.ts');
    assert.equal(schemaAhead(31, null, 31), undefined, 'the same migration');
    assert.equal(schemaAhead(30, null, 31), undefined, 'behind is another check');
    assert.equal(schemaAhead(33, 31, 31), undefined, 'declared compatible');
    assert.equal(schemaAhead(33, 30, 31), undefined);
    assert.match(schemaAhead(33, 32, 31) ?? '', /migration 33, newer than this code \(31\), and works with code from migration 32 on/);
    assert.match(schemaAhead(33, null, 31) ?? '', /migration 33, newer than this code \(31\): upgrade/);
  });
});

/**
 * Committed migrations in graphile-migrate's format: `--! Previous:` and
 * `--! Hash:` headers, a blank line, the body. The hash chains each body to
 * the previous hash exactly as graphile-migrate computes it, so a migration
 * edited after commit is detected.
 */
import { createHash } from 'node:crypto';
import { SchemaVersionError } from '../errors.ts';

export interface BundledMigration {
  id: number;
  filename: string;
  hash: string;
  previousHash: string | null;
  body: string;
}

export interface BundledSql {
  migrations: BundledMigration[];
  functions: { filename: string; text: string }[];
  /**
   * The revision of sql/ (sql/revisions.txt): it grows whenever the
   * functions change, so the installer can tell older code from newer when
   * both have the same migrations.
   */
  sqlRevision?: number | undefined;
}

/** The hash of sql/ as installed (filenames and texts, in order). */
export function functionsHash(bundle: Pick<BundledSql, 'functions'>): string {
  const hash = createHash('sha256');
  for (const f of bundle.functions) hash.update(f.filename).update('\0').update(f.text).update('\0');
  return hash.digest('hex');
}

/**
 * Parse sql/revisions.txt: one `<revision> <functions hash>` per line,
 * revisions increasing by one from 1. Throws on anything else.
 */
export function parseRevisions(text: string): { revision: number; hash: string }[] {
  const out: { revision: number; hash: string }[] = [];
  for (const line of text.split('\n').map((l) => l.trim()).filter((l) => l && !l.startsWith('#'))) {
    const match = /^(\d+) ([0-9a-f]{64})$/.exec(line);
    if (!match || Number(match[1]) !== out.length + 1) throw new SchemaVersionError(`sql/revisions.txt: bad line ${JSON.stringify(line)}`);
    out.push({ revision: Number(match[1]), hash: match[2] as string });
  }
  return out;
}

/** graphile-migrate's hash: sha1 over the previous hash, a newline and the trimmed body. */
export function migrationHash(body: string, previousHash: string | null): string {
  const digest = createHash('sha1')
    .update(`${`${previousHash ?? ''}\n${body.trim()}`.trim()}\n`)
    .digest('hex');
  return `sha1:${digest}`;
}

export function parseMigration(filename: string, text: string): Omit<BundledMigration, 'id' | 'filename'> {
  const lines = text.split('\n');
  const headers: Record<string, string> = {};
  let index = 0;
  for (; index < lines.length; index++) {
    const match = /^--! ([A-Z][a-zA-Z0-9_]*)(?::(.*))?$/.exec(lines[index] ?? '');
    if (!match) break;
    headers[match[1] as string] = (match[2] ?? '').trim();
  }
  const previous = headers.Previous;
  const hash = headers.Hash;
  if (previous === undefined || !hash) {
    throw new SchemaVersionError(`migration ${filename} lacks its --! Previous / --! Hash headers`);
  }
  const body = `${lines.slice(index).join('\n').trim()}\n`;
  return { hash, previousHash: previous === '-' ? null : previous, body };
}

/** Check that every migration's hash matches its body and links to the one before. */
export function verifyChain(migrations: readonly BundledMigration[]): void {
  let previous: string | null = null;
  migrations.forEach((m, i) => {
    if (m.id !== i + 1) throw new SchemaVersionError(`migration ${m.filename} is out of sequence (expected ${i + 1})`);
    if (m.previousHash !== previous) {
      throw new SchemaVersionError(`migration ${m.filename} does not follow ${previous ?? 'the start'} in the hash chain`);
    }
    const actual = migrationHash(m.body, m.previousHash);
    if (actual !== m.hash) {
      throw new SchemaVersionError(`migration ${m.filename} was edited after commit (hash ${actual}, header ${m.hash})`);
    }
    previous = m.hash;
  });
}

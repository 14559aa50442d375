/**
 * The [databases] entry the PgBouncer tests write for their server
 * (test/helpers/pgbouncer.ts). With DATABASE_URL=postgres://postgres@host:port/db
 * (no password) it wrote `password=` with nothing after it, which PgBouncer
 * refuses ("syntax error in connection string"): every PgBouncer test failed
 * against such a server.
 */
import assert from 'node:assert/strict';
import { describe, it } from 'node:test';
import { serverEntry } from '../helpers/pgbouncer.ts';

describe('serverEntry', () => {
  it('leaves out a password the URL does not have', () => {
    assert.equal(serverEntry(new URL('postgres://postgres@127.0.0.1:55432/app'), 'app'),
      `host='127.0.0.1' port='55432' dbname='app' user='postgres'`);
  });

  it('gives the default port when the URL names none', () => {
    assert.match(serverEntry(new URL('postgres://u:p@db.internal/app'), 'app'), /port='5432'/);
  });

  it('quotes values as PgBouncer reads them: spaces kept, a quote doubled, percent-encoding decoded', () => {
    assert.equal(serverEntry(new URL(`postgres://ad%20min:it's%20a%40secret@127.0.0.1:5433/app`), 'app'),
      `host='127.0.0.1' port='5433' dbname='app' user='ad min' password='it''s a@secret'`);
  });

  it('takes an IPv6 address without its brackets', () => {
    assert.match(serverEntry(new URL('postgres://u:p@[::1]:5433/app'), 'app'), /^host='::1' /);
  });
});

/** Helpers of the dashboard tests: a read-only Postgres role, and a session held across fetches. */
import pg from 'pg';
import { adminUrl, type TestDatabase } from './db.ts';

export interface ReadOnlyRole {
  name: string;
  /** A pool that logs in as the role (SELECT on trellis tables, nothing else). */
  pool: pg.Pool;
  drop(): Promise<void>;
}

async function admin<T>(fn: (c: pg.Client) => Promise<T>, url = adminUrl()): Promise<T> {
  const c = new pg.Client({ connectionString: url });
  await c.connect();
  try {
    return await fn(c);
  } finally {
    await c.end();
  }
}

/** A login role that is a member of trellis_reader (read-only: docs/security.md), and nothing else. */
export async function readOnlyRole(db: TestDatabase): Promise<ReadOnlyRole> {
  const name = `trellis_ro_${crypto.randomUUID().replaceAll('-', '').slice(0, 10)}`;
  const password = crypto.randomUUID();
  await admin((c) => c.query(`create role ${name} login password '${password}'`));
  await admin((c) => c.query(`grant trellis_reader to ${name}`));
  const url = new URL(db.url);
  url.username = name;
  url.password = password;
  const pool = new pg.Pool({ connectionString: url.toString(), max: 4 });
  pool.on('error', () => undefined);
  return {
    name,
    pool,
    async drop() {
      await pool.end();
      await admin((c) => c.query(`drop owned by ${name}`), db.url);
      await admin((c) => c.query(`drop role if exists ${name}`));
    },
  };
}

/** Cookies kept across fetch calls, like a browser (one cookie jar per instance). */
export class Session {
  private cookies = new Map<string, string>();
  constructor(readonly origin: string) {}

  async fetch(path: string, init: RequestInit = {}): Promise<Response> {
    const headers = new Headers(init.headers);
    if (this.cookies.size) headers.set('cookie', [...this.cookies].map(([k, v]) => `${k}=${v}`).join('; '));
    const res = await fetch(new URL(path, this.origin), { ...init, headers, redirect: 'manual' });
    for (const line of res.headers.getSetCookie()) {
      const [pair] = line.split(';');
      const eq = pair!.indexOf('=');
      const value = pair!.slice(eq + 1);
      if (value === '' || /max-age=0/i.test(line)) this.cookies.delete(pair!.slice(0, eq));
      else this.cookies.set(pair!.slice(0, eq), value);
    }
    return res;
  }

  /** POST a form as a same-origin browser would (Origin header set). */
  post(path: string, fields: Record<string, string>, headers: Record<string, string> = {}): Promise<Response> {
    return this.fetch(path, { method: 'POST', body: new URLSearchParams(fields), headers: { origin: this.origin, ...headers } });
  }
}

/** The CSRF token in a page's forms. */
export function csrfOf(page: string): string {
  const match = page.match(/name="_csrf" value="([^"]+)"/);
  if (!match) throw new Error('no CSRF field on the page');
  return match[1]!;
}

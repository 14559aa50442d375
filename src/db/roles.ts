/**
 * Wrappers of sql/740_roles.sql. Durations cross as milliseconds, fencing
 * tokens as decimal strings (bigint in SQL).
 */
import { type Queryable, queryRows } from './queryable.ts';

const ttl = `$3::float8 * interval '1 millisecond'`;

/** trellis.role_acquire: the token if `holder` holds the role now, else null. */
export async function roleAcquire(db: Queryable, name: string, holder: string, ttlMs: number): Promise<string | null> {
  const rows = await queryRows<{ t: string | null }>(db, `select trellis.role_acquire($1, $2, ${ttl})::text as t`, [name, holder, ttlMs]);
  return rows[0]?.t ?? null;
}

/** trellis.role_renew (LeaseLostError when the lease is gone). */
export async function roleRenew(db: Queryable, name: string, holder: string, token: string, ttlMs: number): Promise<void> {
  await queryRows(db, `select trellis.role_renew($1, $2, $4::bigint, ${ttl})`, [name, holder, ttlMs, token]);
}

/** trellis.role_release: false if `holder` no longer held it under `token`. */
export async function roleRelease(db: Queryable, name: string, holder: string, token: string): Promise<boolean> {
  const rows = await queryRows<{ ok: boolean }>(db, 'select trellis.role_release($1, $2, $3::bigint) as ok', [name, holder, token]);
  return rows[0]?.ok ?? false;
}

/** trellis.role_record: the outcome of one run of the duty. */
export async function roleRecord(db: Queryable, name: string, token: string, error: string | null): Promise<void> {
  await queryRows(db, 'select trellis.role_record($1, $2::bigint, $3, $4)', [name, token, error === null, error]);
}

/** A row of trellis.roles, as `client.roles()` returns it. */
export interface RoleRow {
  name: string;
  holder: string | null;
  /** The fencing token of the current (or last) lease. */
  token: string;
  acquiredAt: Date | null;
  renewedAt: Date | null;
  expiresAt: Date | null;
  /** Whether the lease runs now (engine time). */
  held: boolean;
  lastRunAt: Date | null;
  lastOutcome: 'ok' | 'failed' | null;
  lastError: string | null;
}

/** Every role, by name. */
export async function roleList(db: Queryable): Promise<RoleRow[]> {
  const rows = await queryRows<Record<string, never>>(db, `
    select name, holder, token::text as token, acquired_at, renewed_at, expires_at,
           coalesce(holder is not null and expires_at > trellis.now(), false) as held,
           last_run_at, last_outcome, last_error
      from trellis.roles order by name`);
  return rows.map((r: Record<string, any>) => ({
    name: r.name, holder: r.holder, token: r.token, acquiredAt: r.acquired_at, renewedAt: r.renewed_at,
    expiresAt: r.expires_at, held: r.held, lastRunAt: r.last_run_at, lastOutcome: r.last_outcome, lastError: r.last_error,
  }));
}

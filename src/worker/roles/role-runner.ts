/**
 * The roles a worker takes part in: the engine's duties (duties.ts) and the
 * user's `worker.role(name, fn)`. Each is a RoleLease (role-lease.ts) that
 * every replica runs; the database lets one of them hold it at a time.
 */
import type { Queryable } from '../../db/queryable.ts';
import { ValidationError } from '../../errors.ts';
import { type Duration, toMs } from '../../protocol/duration.ts';
import type { Logger } from '../../protocol/logger.ts';
import { assertName } from '../../workflow/names.ts';
import { type RoleFunction, RoleLease } from './role-lease.ts';

export type { RoleContext, RoleFunction } from './role-lease.ts';

/**
 * Options of `worker.role`.
 *
 * @example
 * worker.role('hourly-sync', async ({ name, token }) => {
 *   await pool.query('select app.sync_inventory($1, $2)', [name, token]); // fenced with trellis.role_check
 * }, { every: '1 hour', ttl: '30s' });
 */
export interface RoleOptions {
  /**
   * Lease length (default: the worker's `roles.ttl`, 15s; 200ms to 1 hour). The
   * lease is renewed every third of it; after the holder dies another
   * replica takes over within TTL + one renew interval.
   */
  ttl?: Duration | undefined;
  /** Call the function again every this long while the role is held (default: once per lease). */
  every?: Duration | undefined;
}

/**
 * The worker option `roles`.
 *
 * @example
 * createWorker({ connectionString, workflows, roles: { ttl: '10s' } }); // failover within 10 s + 3.3 s
 */
export interface WorkerRoleOptions {
  /** Default lease length of roles, the engine's duties included (default 15s, 200ms to 1 hour). */
  ttl?: Duration | undefined;
}

/** Check a TTL (ValidationError naming the option). */
export function roleTtlMs(ttl: Duration | undefined, what: string, fallback = 15_000): number {
  const ms = ttl === undefined ? fallback : toMs(ttl, what);
  if (ms < 200 || ms > 3_600_000) throw new ValidationError(`${what} must be from 200ms to 1 hour`);
  return ms;
}

export interface RoleRunnerOptions {
  db: Queryable;
  holder: string;
  log: Logger;
  ttlMs: number;
}

export class RoleRunner {
  private readonly leases = new Map<string, RoleLease>();
  private started = false;

  constructor(private readonly o: RoleRunnerOptions) {}

  /** Take part in role `name`; `internal` allows the engine's trellis.* names. */
  add(name: string, run: RoleFunction, options: { ttlMs?: number | undefined; everyMs?: number | undefined } = {}, internal = false): void {
    assertName(name, 'role');
    if (!internal && name.startsWith('trellis.')) throw new ValidationError(`role names starting with "trellis." are the engine's: ${JSON.stringify(name.slice(0, 60))}`);
    if (this.leases.has(name)) throw new ValidationError(`role ${JSON.stringify(name)} is added twice`);
    if (typeof run !== 'function') throw new ValidationError(`role ${name} needs a function`);
    const ttlMs = options.ttlMs ?? this.o.ttlMs;
    const renewMs = Math.max(100, Math.floor(ttlMs / 3));
    const lease = new RoleLease({ name, run, ttlMs, renewMs, ...(options.everyMs === undefined ? {} : { everyMs: options.everyMs }) }, this.o);
    this.leases.set(name, lease);
    if (this.started) lease.start();
  }

  /** The token this worker holds `name` under, if it does. */
  token(name: string): string | undefined {
    return this.leases.get(name)?.token;
  }

  /** Per role: leases taken and lost, duty runs and failures. */
  stats(): Record<string, RoleLease['stats']> {
    return Object.fromEntries([...this.leases].map(([name, lease]) => [name, lease.stats]));
  }

  start(): void {
    this.started = true;
    for (const lease of this.leases.values()) lease.start();
  }

  /** Abort every duty, wait for them (at most `waitMs`) and release the leases. */
  async stop(waitMs = Infinity): Promise<void> {
    this.started = false;
    await Promise.all([...this.leases.values()].map((l) => l.stop(waitMs)));
  }
}

/**
 * Whether a server (PostgreSQL, PgBouncer) accepts connections: one probe
 * (connect, at most 1 s, and `select 1`), or probes until one succeeds.
 */
import pg from 'pg';

/** One probe of `url`: undefined when it connected and answered `select 1`, else why not. */
export async function connectError(url: string): Promise<Error | undefined> {
  const c = new pg.Client({ connectionString: url, connectionTimeoutMillis: 1000 });
  c.on('error', () => undefined);
  try {
    await c.connect();
    await c.query('select 1');
    return undefined;
  } catch (error) {
    return error instanceof Error ? error : new Error(String(error));
  } finally {
    await c.end().catch(() => undefined);
  }
}

/** Whether the server at `url` accepts a connection and answers `select 1` now (one probe). */
export async function accepting(url: string): Promise<boolean> {
  return (await connectError(url)) === undefined;
}

/**
 * Probe `url` every `interval` ms until it accepts a connection; throws after
 * `timeout` ms (with the last probe's error), or as soon as `check` throws
 * (say, the server's process has exited).
 */
export async function untilAccepting(
  url: string,
  { timeout, interval, what, check }: { timeout: number; interval: number; what: string; check?: (() => void) | undefined },
): Promise<void> {
  const deadline = Date.now() + timeout;
  for (;;) {
    check?.();
    const error = await connectError(url);
    if (!error) return;
    if (Date.now() > deadline) throw new Error(`timed out after ${timeout} ms waiting for ${what}: ${error.message}`);
    await new Promise((r) => setTimeout(r, interval));
  }
}

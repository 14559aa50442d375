/**
 * Sessions, the token and CSRF for the dashboard, without server-side state
 * (so replicas behind a load balancer agree): a session cookie is a random id
 * and an expiry signed with HMAC-SHA256 under a key derived from the token
 * (a random key per dashboard when there is no token), and the CSRF token of
 * a session is the HMAC of its id. Changing the token ends every session.
 */
import { createHash, createHmac, randomBytes, timingSafeEqual } from 'node:crypto';

/** How long a session lasts. */
export const SESSION_MS = 12 * 60 * 60 * 1000;
/** The session cookie's name (its path is the dashboard's base path). */
export const SESSION_COOKIE = 'trellis_session';

/**
 * Issues and checks session cookies and their CSRF tokens.
 *
 * @example
 * const sessions = new Sessions(token);
 * const id = sessions.verify(cookie);
 * if (id && sessions.checkCsrf(id, form._csrf)) act();
 */
export class Sessions {
  private readonly key: Buffer;
  private readonly tokenDigest: Buffer | undefined;

  constructor(token: string | undefined, private readonly nowMs: () => number = Date.now) {
    this.key = token === undefined ? randomBytes(32) : createHash('sha256').update(`trellis-dashboard-session\0${token}`).digest();
    this.tokenDigest = token === undefined ? undefined : createHash('sha256').update(token).digest();
  }

  /** Whether a token is required at all. */
  get protected(): boolean {
    return this.tokenDigest !== undefined;
  }

  /** Whether `candidate` is the token (constant time). */
  checkToken(candidate: string | undefined): boolean {
    if (!this.tokenDigest || typeof candidate !== 'string') return false;
    return timingSafeEqual(createHash('sha256').update(candidate).digest(), this.tokenDigest);
  }

  private mac(text: string): string {
    return createHmac('sha256', this.key).update(text).digest('base64url');
  }

  /** A new session cookie value. */
  issue(): string {
    const body = `${randomBytes(16).toString('base64url')}.${this.nowMs() + SESSION_MS}`;
    return `${body}.${this.mac(body)}`;
  }

  /** The session id of a valid, unexpired cookie value, else undefined. */
  verify(cookie: string | undefined): string | undefined {
    if (!cookie || cookie.length > 200) return undefined;
    const parts = cookie.split('.');
    if (parts.length !== 3) return undefined;
    const [id, expires, mac] = parts as [string, string, string];
    if (!equal(mac, this.mac(`${id}.${expires}`))) return undefined;
    if (!(Number(expires) > this.nowMs())) return undefined;
    return id;
  }

  /** The CSRF token of a session. */
  csrf(sessionId: string): string {
    return this.mac(`csrf.${sessionId}`);
  }

  checkCsrf(sessionId: string, candidate: unknown): boolean {
    return typeof candidate === 'string' && equal(candidate, this.csrf(sessionId));
  }
}

function equal(a: string, b: string): boolean {
  const x = Buffer.from(a);
  const y = Buffer.from(b);
  return x.length === y.length && timingSafeEqual(x, y);
}

/**
 * Whether a state-changing request comes from a page of this host: its
 * Origin (or, without one, its Referer) must name the host the request was
 * sent to. A request with neither is refused.
 */
export function sameOrigin(headers: { get(name: string): string | null }, requestUrl: string): boolean {
  const host = headers.get('host') ?? new URL(requestUrl).host;
  const source = headers.get('origin') ?? headers.get('referer');
  if (!source || source === 'null') return false;
  try {
    return new URL(source).host === host;
  } catch {
    return false;
  }
}

/** The bearer token of an `Authorization` header, if any. */
export function bearer(header: string | null | undefined): string | undefined {
  const match = header?.match(/^Bearer\s+(.+)$/i);
  return match?.[1]?.trim();
}

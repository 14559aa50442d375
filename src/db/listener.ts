/**
 * The LISTEN connection, through pg-listen configured to reconnect forever
 * (its defaults give up after 3 s). Every (re)connect calls `onConnect` so the
 * owner can catch up on anything it missed; NOTIFY is a hint, never the truth.
 *
 * A connection can also die silently (a network partition, a NAT or firewall
 * dropping an idle flow: no FIN, no RST), and then nothing ever arrives on
 * it. So every `healthCheckMs` pg-listen sends `select pg_backend_pid()`, and
 * the query times out after `healthCheckMs` (`query_timeout`), which makes
 * pg-listen drop the connection and reconnect; connecting times out the same
 * way. A dead listener is replaced within about twice the interval.
 */
import type { ClientConfig } from './pg.ts';
import * as pgListen from 'pg-listen';
import type { Options, Subscriber } from 'pg-listen';

// pg-listen is CommonJS with `exports.default`; under ESM the default import
// is the module object, so take `.default` wherever it sits.
type CreateSubscriber = (config: ClientConfig, options: Options) => Subscriber;
const mod = pgListen as unknown as { default: CreateSubscriber | { default: CreateSubscriber } };
const createSubscriber: CreateSubscriber = typeof mod.default === 'function' ? mod.default : mod.default.default;
import { randomUUID } from 'node:crypto';
import { toTrellisError } from './errors.ts';
import type { Logger } from '../protocol/logger.ts';

/** The channel of a listener's check that a NOTIFY reaches it (each sends a token of its own). */
const ECHO_CHANNEL = 'trellis:listener_echo';
/** How long the check waits for it. */
const ECHO_MS = 5000;

export interface ListenerOptions {
  connection: ClientConfig;
  channels: readonly string[];
  onNotify: (channel: string, payload: string) => void;
  onConnect: () => void;
  log: Logger;
  /** application_name of the LISTEN connection, visible in pg_stat_activity. */
  applicationName: string;
  /**
   * Sends the start's check NOTIFY (channel, payload) on another connection
   * (the owner's pool). Through a pooler in transaction mode, one sent on
   * the listener's own connection would most often run on the server
   * connection that ran its LISTEN, and come back to it.
   */
  echoVia?: ((channel: string, payload: string) => Promise<unknown>) | undefined;
  /** Check the connection this often; a check or a connect with no answer within it reconnects (default 10s). */
  healthCheckMs?: number | undefined;
}

export class Listener {
  private readonly subscriber: Subscriber;
  private closed = false;
  /** How many times the connection has been (re)established. */
  connects = 0;

  constructor(private readonly o: ListenerOptions) {
    const checkMs = o.healthCheckMs ?? 10_000;
    this.subscriber = createSubscriber(
      {
        ...o.connection,
        application_name: o.applicationName,
        query_timeout: checkMs,
        connectionTimeoutMillis: checkMs,
        keepAlive: true,
        keepAliveInitialDelayMillis: checkMs,
      },
      {
        retryLimit: Number.POSITIVE_INFINITY,
        retryTimeout: Number.POSITIVE_INFINITY,
        // pg-listen's reconnect loop does not look at close(): throwing here
        // ends it (else a listener closed while reconnecting would retry for
        // ever, keeping the process alive once the server is gone).
        retryInterval: (attempt: number) => {
          if (this.closed) throw new Error('listener closed');
          return Math.min(100 * 2 ** attempt, 5000);
        },
        paranoidChecking: checkMs,
        parse: (text: string) => text,
        serialize: (value: unknown) => String(value),
      },
    );
    this.subscriber.events.on('notification', (n) => {
      if (n.channel === ECHO_CHANNEL) {
        if (n.payload !== undefined && String(n.payload) === this.echoToken) {
          this.echoed = true;
          clearTimeout(this.echoTimer);
        }
        return;
      }
      o.onNotify(n.channel, String(n.payload ?? ''));
    });
    this.subscriber.events.on('connected', () => {
      // A reconnect that finished after close(): end that connection too.
      if (this.closed) {
        void this.subscriber.close().catch(() => undefined);
        return;
      }
      this.connects++;
      if (this.connects > 1) o.log.info('listener reconnected');
      o.onConnect();
    });
    this.subscriber.events.on('reconnect', (attempt) => o.log.warn('listener reconnecting', { attempt }));
    this.subscriber.events.on('error', (error) => {
      // A reconnect that failed after close() (its LISTEN refused, say) left
      // its connection's health check scheduled: close that one too.
      if (this.closed) {
        void this.subscriber.close().catch(() => undefined);
        return;
      }
      o.log.error('listener error', { error: String(error) });
    });
  }

  /**
   * Connect and LISTEN; on failure nothing keeps reconnecting in the
   * background. Then, without holding up the caller, one NOTIFY is sent to
   * it (`echoVia`): one that does not arrive within `ECHO_MS` means
   * this LISTEN hears nothing (through a pooler in transaction mode, its
   * LISTEN ended with its transaction), which is logged once, as everything
   * then waits for its poll.
   */
  async start(): Promise<void> {
    try {
      await this.subscriber.connect();
      for (const channel of [...this.o.channels, ECHO_CHANNEL]) await this.subscriber.listenTo(channel);
    } catch (error) {
      await this.close();
      throw toTrellisError(error);
    }
    void this.echo();
  }

  /** Whether the check's NOTIFY came back (undefined until it has, or the check gave up). */
  echoed: boolean | undefined;
  private echoToken: string | undefined;
  private echoTimer: NodeJS.Timeout | undefined;

  private async echo(): Promise<void> {
    const token = randomUUID();
    this.echoToken = token;
    try {
      await (this.o.echoVia ? this.o.echoVia(ECHO_CHANNEL, token) : this.subscriber.notify(ECHO_CHANNEL, token));
    } catch {
      return; // a connection lost meanwhile: nothing to conclude
    }
    if (this.closed || this.echoed) return;
    this.echoTimer = setTimeout(() => {
      if (this.closed || this.echoed) return;
      this.echoed = false;
      this.o.log.warn('LISTEN hears nothing on this connection: a NOTIFY sent to it did not arrive within '
        + `${ECHO_MS / 1000} s. Through a pooler in transaction mode (PgBouncer) a LISTEN ends with its transaction: `
        + 'give the worker or client a direct connection for it (listenUrl). Until then every wake-up waits for a poll.',
        { applicationName: this.o.applicationName });
    }, ECHO_MS);
    this.echoTimer.unref();
  }

  async close(): Promise<void> {
    this.closed = true;
    clearTimeout(this.echoTimer);
    await this.subscriber.close().catch(() => undefined);
  }
}

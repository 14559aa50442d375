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
import { toTrellisError } from './errors.ts';
import type { Logger } from '../protocol/logger.ts';

export interface ListenerOptions {
  connection: ClientConfig;
  channels: readonly string[];
  onNotify: (channel: string, payload: string) => void;
  onConnect: () => void;
  log: Logger;
  /** application_name of the LISTEN connection, visible in pg_stat_activity. */
  applicationName: string;
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
      },
    );
    this.subscriber.events.on('notification', (n) => o.onNotify(n.channel, String(n.payload ?? '')));
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

  /** Connect and LISTEN; on failure nothing keeps reconnecting in the background. */
  async start(): Promise<void> {
    try {
      await this.subscriber.connect();
      for (const channel of this.o.channels) await this.subscriber.listenTo(channel);
    } catch (error) {
      await this.close();
      throw toTrellisError(error);
    }
  }

  async close(): Promise<void> {
    this.closed = true;
    await this.subscriber.close().catch(() => undefined);
  }
}

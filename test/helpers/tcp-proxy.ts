/**
 * TCP fault injection on 127.0.0.1 for fault tests: a proxy to a Postgres
 * server whose connections can be cut (both sockets destroyed: the client
 * sees "Connection terminated unexpectedly") or frozen (data dropped both
 * ways, nothing closed: a silent partition), and a black hole that accepts
 * connections and never answers.
 */
import net from 'node:net';

export interface Pipe {
  /** The first bytes the client sent: the startup message, with application_name in it. */
  startup: string;
  frozen: boolean;
  /** While true, what the server sends is dropped (the client's statements still reach it: a reply lost on the way). */
  dropReplies?: boolean | undefined;
  client: net.Socket;
  upstream: net.Socket;
  cut(): void;
}

export interface TcpProxy {
  port: number;
  pipes: Pipe[];
  /** Pipes whose startup message names this application_name. */
  of(applicationName: string): Pipe[];
  /** While true, new connections are accepted and dropped at once (a server that is down). */
  refusing: boolean;
  /** While true, new connections are accepted and frozen at once (a silent partition). */
  freezingNew: boolean;
  /** Connections accepted so far (refused ones included). */
  accepted: number;
  /**
   * Says, for each new connection (its startup message), whether its backend
   * is terminated just as the connection becomes ready: a FATAL 57P01 in the
   * same chunk as the ReadyForQuery that ends the startup, then the close
   * (what pg_terminate_backend does to a backend killed at that moment,
   * delivered in one read).
   */
  fatalAtReady?: ((startup: string) => boolean) | undefined;
  close(): Promise<void>;
}

/** An ErrorResponse FATAL 57P01, as a terminated backend sends it. */
function fatal57P01(): Buffer {
  const field = (t: string, v: string) => Buffer.from(`${t}${v}\0`, 'latin1');
  const body = Buffer.concat([field('S', 'FATAL'), field('V', 'FATAL'), field('C', '57P01'),
    field('M', 'terminating connection due to administrator command'), Buffer.from([0])]);
  const length = Buffer.alloc(4);
  length.writeInt32BE(body.length + 4);
  return Buffer.concat([Buffer.from('E', 'latin1'), length, body]);
}
const READY_FOR_QUERY = Buffer.from([0x5a, 0, 0, 0, 5]);

export async function startProxy(target: { host: string; port: number }): Promise<TcpProxy> {
  const pipes: Pipe[] = [];
  const proxy: TcpProxy = {
    port: 0,
    pipes,
    refusing: false,
    freezingNew: false,
    accepted: 0,
    of: (name) => pipes.filter((p) => p.startup.includes(name)),
    async close() {
      for (const p of pipes) p.cut();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
  const server = net.createServer((client) => {
    proxy.accepted++;
    if (proxy.refusing) {
      client.destroy();
      return;
    }
    const upstream = net.connect(target.port, target.host);
    const p: Pipe = {
      startup: '',
      frozen: proxy.freezingNew,
      client,
      upstream,
      cut: () => {
        client.destroy();
        upstream.destroy();
      },
    };
    pipes.push(p);
    client.on('data', (d: Buffer) => {
      if (!p.startup) p.startup = d.toString('latin1');
      if (!p.frozen) upstream.write(d);
    });
    let started = false;
    upstream.on('data', (d: Buffer) => {
      if (!started && d.includes(READY_FOR_QUERY)) {
        started = true;
        if (proxy.fatalAtReady?.(p.startup)) {
          client.end(Buffer.concat([d, fatal57P01()]));
          upstream.destroy();
          return;
        }
      }
      if (!p.frozen && !p.dropReplies) client.write(d);
    });
    client.on('close', () => upstream.destroy());
    upstream.on('close', () => client.destroy());
    client.on('error', () => undefined);
    upstream.on('error', () => undefined);
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  proxy.port = (server.address() as net.AddressInfo).port;
  return proxy;
}

/** A server that accepts TCP connections and never sends a byte. */
export async function startBlackHole(): Promise<{ port: number; url: string; close(): Promise<void> }> {
  const sockets = new Set<net.Socket>();
  const server = net.createServer((socket) => {
    sockets.add(socket);
    socket.on('error', () => undefined);
    socket.on('close', () => sockets.delete(socket));
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  const port = (server.address() as net.AddressInfo).port;
  return {
    port,
    url: `postgres://nobody:secret@127.0.0.1:${port}/nothing`,
    async close() {
      for (const s of sockets) s.destroy();
      await new Promise<void>((resolve) => server.close(() => resolve()));
    },
  };
}

/** `url` with its host and port replaced by the proxy's. */
export function throughProxy(url: string, port: number): string {
  const u = new URL(url);
  u.hostname = '127.0.0.1';
  u.port = String(port);
  return u.toString();
}

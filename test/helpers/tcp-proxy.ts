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
  close(): Promise<void>;
}

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
    upstream.on('data', (d: Buffer) => {
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

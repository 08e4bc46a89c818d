/**
 * HTTPS listeners and graceful shutdown: stop accepting, let in-flight downloads finish within a grace
 * period, then cut what is left.
 */
import { once } from 'node:events';
import { createServer } from 'node:https';
import type { Server, ServerOptions } from 'node:https';
import { Server as NetServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import type { TLSSocket } from 'node:tls';
import type { RequestListener, ServerResponse } from 'node:http';
import type { HostPort } from '../config/config.ts';

/** Timeouts that keep slow or idle clients from holding sockets forever; downloads themselves are not capped. */
const TIMEOUTS = {
  // A TLS handshake or a request head that never completes must not pin a socket.
  handshakeTimeout: 10_000,
  headersTimeout: 20_000,
  // Node checks the two timeouts above only this often (default 30 s): a slowloris would live 50 s.
  connectionsCheckingInterval: 1_000,
  requestTimeout: 0, // a 1 GiB download over a slow link is legitimate
  keepAliveTimeout: 65_000,
};

interface Tracked {
  /** Open TLS connections. */
  sockets: Set<TLSSocket>;
  /** Responses in progress. */
  active: Set<ServerResponse>;
}

const tracked = new WeakMap<Server, Tracked>();

export async function listenHttps(app: RequestListener, tls: ServerOptions, at: HostPort): Promise<Server> {
  const server = createServer({ ...tls, ...TIMEOUTS }, app);
  const t: Tracked = { sockets: new Set(), active: new Set() };
  tracked.set(server, t);
  server.on('secureConnection', (socket: TLSSocket) => {
    t.sockets.add(socket);
    socket.once('close', () => t.sockets.delete(socket));
  });
  server.on('request', (_req, res: ServerResponse) => {
    t.active.add(res);
    res.once('close', () => t.active.delete(res));
  });
  server.listen(at.port, at.host);
  await once(server, 'listening');
  return server;
}

export function addressOf(server: Server): HostPort {
  const a = server.address() as AddressInfo;
  return { host: a.address, port: a.port };
}

/**
 * Closes the servers gracefully: no new connections; a connection with no response in progress is
 * ended; one with a response in progress is ended when that response finishes; after `graceMs`
 * whatever is left is destroyed. Resolves when every connection is closed.
 *
 * Connections are ended, never destroyed, inside the grace period: a response Node calls finished may
 * still sit in socket buffers (megabytes on a fast link to a slow reader), and destroying the socket
 * would cut it short. That is also why this bypasses http.Server#close, which destroys every
 * connection it considers idle.
 */
export async function shutdown(servers: Server[], graceMs: number): Promise<{ forced: boolean }> {
  const closed = servers.map(
    // net.Server#close: stop listening and wait for the connections, without http's idle sweep.
    (s) => new Promise<void>((resolve) => NetServer.prototype.close.call(s, () => resolve())),
  );
  for (const s of servers) {
    const t = tracked.get(s);
    if (!t) continue;
    const busy = new Set<unknown>();
    for (const res of t.active) {
      if (res.writableFinished) continue;
      busy.add(res.socket);
      if (!res.headersSent) res.setHeader('Connection', 'close');
      res.once('finish', () => res.socket?.end());
    }
    for (const socket of t.sockets) if (!busy.has(socket)) socket.end();
    // A request that still arrives on a kept-alive connection is served, then its connection ends.
    s.on('request', (_req, res: ServerResponse) => {
      res.setHeader('Connection', 'close');
    });
  }
  let forced = false;
  const timer = setTimeout(() => {
    forced = true;
    for (const s of servers) for (const socket of tracked.get(s)?.sockets ?? []) socket.destroy();
  }, graceMs);
  await Promise.all(closed);
  clearTimeout(timer);
  return { forced };
}

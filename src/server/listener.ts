/**
 * HTTPS listeners and graceful shutdown: stop accepting, let in-flight downloads finish within a grace
 * period, then cut what is left. Every connection has a bound: a handshake, a request head and a whole
 * request must arrive in time; a response whose client stops reading is cut after a stall deadline;
 * connections over the listener's cap, or over one client's cap, are closed before their handshake.
 * Plain HTTP sent to an HTTPS port gets a plain-text 400 saying so, not an empty reply.
 */
import { once } from 'node:events';
import { createServer } from 'node:https';
import type { Server, ServerOptions } from 'node:https';
import { Server as NetServer } from 'node:net';
import type { AddressInfo, BlockList, Socket } from 'node:net';
import type { Duplex } from 'node:stream';
import type { TLSSocket } from 'node:tls';
import type { IncomingMessage, RequestListener, ServerResponse } from 'node:http';
import type { HostPort } from '../config/config.ts';
import { isTrustedProxy } from './client-address.ts';
import { ConnectionCounter, connectionKey } from './limits.ts';
import { statusBody } from './status.ts';

/** Timeouts that keep slow or idle clients from holding sockets forever; downloads themselves are not capped. */
const TIMEOUTS = {
  // A TLS handshake or a request head that never completes must not pin a socket.
  handshakeTimeout: 10_000,
  headersTimeout: 20_000,
  // Node checks the header and request timeouts only this often (default 30 s): a slowloris would live 50 s.
  connectionsCheckingInterval: 1_000,
  keepAliveTimeout: 65_000,
};

/** Bounds of one listener; each unset one is its default (caps: none). */
export interface ListenerLimits {
  /**
   * The whole request, head and body, must have arrived this long after its first byte, or the client
   * gets 408 and the connection is closed (Node's `requestTimeout`, default 30 s). Node stops this
   * clock when the request is complete (its parser leaves the active list in on_message_complete), so
   * it never limits how long a response (a download) takes.
   */
  requestTimeoutMs?: number;
  /**
   * A connection whose response bytes wait in its buffers with no progress at all (nothing new
   * accepted by the kernel, nothing new written) for this long is reset: its client stopped reading.
   * Default 60 s (nginx's send_timeout).
   */
  sendStallTimeoutMs?: number;
  /** Open connections on this listener at most; more are closed on accept (net.Server#maxConnections). */
  maxConnections?: number;
  /**
   * Open connections from one client address (an IPv6 /64) at most; more are closed on accept, before
   * the TLS handshake. Peers in `trustedProxies` are exempt: they carry many clients.
   */
  maxConnectionsPerClient?: number;
  /** Proxies (`--trusted-proxies`), exempt from the per-client cap. */
  trustedProxies?: BlockList;
  /** Told of each connection refused by a cap and each stalled connection reset (metrics). */
  onLimit?: (limit: 'max-connections' | 'max-connections-per-client' | 'send-stall') => void;
}

export const DEFAULT_REQUEST_TIMEOUT_MS = 30_000;
export const DEFAULT_SEND_STALL_TIMEOUT_MS = 60_000;

interface Tracked {
  /** Open TLS connections. */
  sockets: Set<TLSSocket>;
}

/**
 * The responses in progress on a connection (one, or more when requests are pipelined), kept on the
 * connection itself. Not a Set of every response in progress: adding and deleting a response per
 * request made V8 rehash that Set's table again and again, and a replaced table keeps pointing at the
 * entries it held and at its successor (for iterators that may still walk it). That is the likely
 * mechanism; what was measured is that without the Set the promotion went away. Once one such table
 * had reached the old generation, every later response stayed reachable through the chain of
 * replaced tables until the next full collection: each small download's objects (~2-6 KB) were
 * promoted, the old generation grew ~25 MB/s under small-auth's load and every scavenge copied far
 * more (bench/README.md, "Why no Set holds the responses in progress"). An array per connection holds
 * its one or two entries and lets them go on close.
 */
const ACTIVE = Symbol('responses in progress');
type WithActive = { [ACTIVE]?: ServerResponse[] };

const tracked = new WeakMap<Server, Tracked>();

/** What the stall watchdog last saw of a connection with bytes waiting to go out. */
interface Pending {
  /** socket.bytesWritten (grows with every write accepted) and socket.writableLength (shrinks as writes complete). */
  written: number;
  buffered: number;
  since: number;
}

const peerKey = (s: { remoteAddress?: string | undefined; remotePort?: number | undefined }): string => `${s.remoteAddress ?? ''}|${s.remotePort ?? ''}`;

export async function listenHttps(app: RequestListener, tls: ServerOptions, at: HostPort, limits: ListenerLimits = {}): Promise<Server> {
  const requestTimeout = limits.requestTimeoutMs ?? DEFAULT_REQUEST_TIMEOUT_MS;
  const server = createServer({ ...tls, ...TIMEOUTS, headersTimeout: Math.min(TIMEOUTS.headersTimeout, requestTimeout), requestTimeout }, app);
  const t: Tracked = { sockets: new Set() };
  tracked.set(server, t);
  // Taken over before the caps' listener is prepended: that one must still run first, on accept.
  const deadlines = plainHttpAnswered(server);

  // The TCP connection under each TLS one, by peer address and port: a stalled one is reset through it.
  const raw = new Map<string, Socket>();
  if (limits.maxConnections !== undefined) {
    // Checked by net.Server on accept, before any JavaScript object exists for the connection.
    server.maxConnections = limits.maxConnections;
    server.on('drop', () => limits.onLimit?.('max-connections'));
  }
  const perClient = limits.maxConnectionsPerClient === undefined ? undefined : new ConnectionCounter(limits.maxConnectionsPerClient);
  // Prepended: runs before the TLS server wraps the socket, so a refused one never reads a ClientHello.
  server.prependListener('connection', (socket: Socket) => {
    const peer = socket.remoteAddress;
    if (peer === undefined) {
      socket.destroy();
      return;
    }
    if (perClient && !isTrustedProxy(peer, limits.trustedProxies)) {
      const key = connectionKey(peer);
      if (!perClient.tryOpen(key)) {
        socket.destroy();
        limits.onLimit?.('max-connections-per-client');
        return;
      }
      socket.once('close', () => perClient.close(key));
    }
    const k = peerKey(socket);
    raw.set(k, socket);
    socket.once('close', () => {
      if (raw.get(k) === socket) raw.delete(k);
    });
  });
  server.on('secureConnection', (socket: TLSSocket) => {
    // The handshake completed within its deadline, which counted from the accept.
    const tcp = raw.get(peerKey(socket));
    if (tcp) clearTimeout(deadlines.get(tcp));
    t.sockets.add(socket);
    socket.once('close', () => t.sockets.delete(socket));
  });
  server.on('clientError', answerClientError);
  server.on('request', (req: IncomingMessage, res: ServerResponse) => {
    const active = ((req.socket as WithActive)[ACTIVE] ??= []);
    active.push(res);
    res.on('close', () => {
      const i = active.indexOf(res);
      if (i >= 0) active.splice(i, 1);
    });
  });

  // The stall watchdog: one timer per listener, over the connections it tracks. A connection is
  // stalled when bytes wait in its buffers and neither a write was accepted nor one completed since
  // the last look, continuously for the deadline. It is reset (RST), as nginx's
  // reset_timedout_connection does: its client sees a broken transfer at once, never a short complete
  // one, and the kernel drops the unsent bytes instead of keeping them for a reader that is not there.
  const stallMs = limits.sendStallTimeoutMs ?? DEFAULT_SEND_STALL_TIMEOUT_MS;
  const seen = new WeakMap<TLSSocket, Pending>();
  const watchdog = setInterval(
    () => {
      const now = performance.now();
      for (const socket of t.sockets) {
        const buffered = socket.writableLength;
        if (buffered === 0 || socket.destroyed) {
          seen.delete(socket);
          continue;
        }
        const written = socket.bytesWritten;
        const last = seen.get(socket);
        if (last === undefined || last.written !== written || last.buffered !== buffered) {
          seen.set(socket, { written, buffered, since: now });
          continue;
        }
        if (now - last.since < stallMs) continue;
        seen.delete(socket);
        const tcp = raw.get(peerKey(socket));
        if (tcp && !tcp.destroyed) tcp.resetAndDestroy();
        socket.destroy();
        limits.onLimit?.('send-stall');
      }
    },
    // First seen at most one tick after the stall began: cut between stallMs and stallMs + tick.
    Math.min(1000, Math.max(50, Math.floor(stallMs / 4))),
  );
  watchdog.unref();
  server.once('close', () => clearInterval(watchdog));

  server.listen(at.port, at.host);
  await once(server, 'listening');
  return server;
}

/** Statuses for requests Node's parser refuses (as Node's own answers); anything else is a 400. */
const CLIENT_ERROR_STATUS: Record<string, [code: number, text: string, reason: string, message: string]> = {
  HPE_HEADER_OVERFLOW: [431, 'Request Header Fields Too Large', 'RequestEntityTooLarge', 'the request head is too large'],
  HPE_CHUNK_EXTENSIONS_OVERFLOW: [413, 'Payload Too Large', 'RequestEntityTooLarge', 'a chunk extension is too large'],
};
/** A request too slow to arrive is cut at once, with Node's own answer: the client is not reading fast anyway. */
const TIMED_OUT = 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n';
const MALFORMED: [number, string, string, string] = [400, 'Bad Request', 'BadRequest', 'the request is malformed'];
/** How long a refused request's remaining bytes are read and dropped after the answer, at most. */
const CLIENT_ERROR_LINGER_MS = 2_000;
const answered = new WeakSet<Duplex>();

/**
 * A request Node's HTTP parser refuses (malformed, a head over the limit) gets its answer with a
 * Status body, then the connection ends gracefully: what the client still sends is read and
 * dropped for a short while. Node's default writes the answer and destroys the socket at once, and a
 * close with unread bytes is a reset that can discard the answer before the client reads it (seen
 * with large heads on fresh connections). Called again for each later chunk: answered once.
 */
function answerClientError(err: NodeJS.ErrnoException, socket: Duplex): void {
  if (answered.has(socket)) return;
  answered.add(socket);
  // A reset by the peer, or a response already under way, cannot take an answer.
  const inFlight = (socket as Duplex & { _httpMessage?: { headersSent?: boolean } })._httpMessage;
  if (err.code === 'ECONNRESET' || !socket.writable || inFlight?.headersSent) {
    socket.destroy();
    return;
  }
  if (err.code === 'ERR_HTTP_REQUEST_TIMEOUT') {
    socket.write(TIMED_OUT);
    socket.destroy();
    return;
  }
  const [code, text, reason, message] = CLIENT_ERROR_STATUS[err.code ?? ''] ?? MALFORMED;
  const body = JSON.stringify(statusBody(code, reason, message));
  socket.end(`HTTP/1.1 ${code} ${text}\r\nContent-Type: application/json\r\nContent-Length: ${Buffer.byteLength(body)}\r\nConnection: close\r\n\r\n${body}`);
  socket.on('error', () => socket.destroy());
  socket.resume();
  setTimeout(() => socket.destroy(), CLIENT_ERROR_LINGER_MS).unref();
}

/** What a client that speaks plain HTTP to an HTTPS port reads instead of an empty reply (nginx answers so too). */
const PLAIN_HTTP_BODY = 'This is an HTTPS port: use https:// instead of http://.\n';
const PLAIN_HTTP_REPLY = Buffer.from(
  `HTTP/1.1 400 Bad Request\r\nContent-Type: text/plain; charset=utf-8\r\nContent-Length: ${Buffer.byteLength(PLAIN_HTTP_BODY)}\r\nConnection: close\r\n\r\n${PLAIN_HTTP_BODY}`,
);
/** The first byte of every TLS connection: a handshake record (ClientHello). */
const TLS_HANDSHAKE_RECORD = 0x16;

/**
 * Puts a look at each connection's first bytes in front of the TLS server: a TLS record goes on to
 * the handshake (Node's TLS socket takes the bytes already read with it), anything else gets the
 * fixed plain-text 400 above and is closed. Reachable by anyone who can connect; nothing of what the
 * client sent is read beyond its first byte or echoed, and nothing is logged. The connection caps
 * (per listener on accept, per client in the listener before this one) still come first, and the
 * handshake deadline counts from the accept: a client that sends nothing, or sends plain text and
 * never closes, is destroyed when it passes, and a TLS client must have finished its handshake by
 * then (the 'secureConnection' listener clears it through the map returned).
 */
function plainHttpAnswered(server: Server): WeakMap<Socket, NodeJS.Timeout> {
  const deadlines = new WeakMap<Socket, NodeJS.Timeout>();
  const tlsListeners = server.listeners('connection') as ((socket: Socket) => void)[];
  for (const l of tlsListeners) server.removeListener('connection', l);
  server.on('connection', (socket: Socket) => {
    if (socket.destroyed) return; // refused by a cap
    const deadline = setTimeout(() => socket.destroy(), TIMEOUTS.handshakeTimeout).unref();
    deadlines.set(socket, deadline);
    socket.once('close', () => clearTimeout(deadline));
    // Until the TLS socket owns it, a reset by the peer must not become an uncaught error.
    const onError = (): void => void socket.destroy();
    socket.on('error', onError);
    socket.once('data', (first: Buffer) => {
      socket.pause();
      if (first[0] === TLS_HANDSHAKE_RECORD) {
        socket.removeListener('error', onError);
        socket.unshift(first);
        for (const l of tlsListeners) l.call(server, socket);
        return;
      }
      socket.end(PLAIN_HTTP_REPLY);
      // The rest of the request is read and dropped: closing with unread bytes would send a reset,
      // which can discard the reply before the client reads it.
      socket.resume();
    });
  });
  return deadlines;
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
    for (const socket of t.sockets) {
      const busy = ((socket as WithActive)[ACTIVE] ?? []).filter((res) => !res.writableFinished);
      for (const res of busy) {
        if (!res.headersSent) res.setHeader('Connection', 'close');
        res.once('finish', () => res.socket?.end());
      }
      if (busy.length === 0) socket.end();
    }
    // A request that still arrives on a kept-alive connection (or was pipelined behind one in
    // progress) is served, then its connection ends. Put before the app: a route that answers at once
    // has sent its headers by the time a later listener runs, and setting one then throws.
    s.prependListener('request', (_req, res: ServerResponse) => {
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

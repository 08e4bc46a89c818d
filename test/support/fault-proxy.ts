/**
 * One fault proxy for every network store's conformance run: a plain-HTTP reverse proxy placed between
 * an adapter and its emulator (s3rver, Azurite, the GCS double) that forwards requests unchanged (Host
 * and signatures included) and, when told, breaks the answer the way real stores and networks do:
 * - `throttle`: every request is answered 429 with Retry-After, without reaching the emulator;
 * - `serverErrors(n)`: the next n requests are answered 500;
 * - `stallAfter(bytes)`: a body sends `bytes` and then nothing, its connection left open;
 * - `truncateAfter(bytes)`: a body sends `bytes` and then the connection ends cleanly (FIN), short
 *   of the Content-Length it announced;
 * - `resetAfter(bytes)`: a body sends `bytes` and then the connection is reset (RST).
 * Body faults apply to answers with more than `bytes` bytes of body; HEAD answers pass untouched.
 */
import { createServer, request as httpRequest } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import { request as httpsRequest } from 'node:https';
import type { AddressInfo, Socket } from 'node:net';
import { once } from 'node:events';

/** The switches a conformance run flips; each is off again after `clear()`. */
export interface Faults {
  throttle(retryAfterSeconds: number): void;
  serverErrors(count: number): void;
  stallAfter(bytes: number): void;
  truncateAfter(bytes: number): void;
  resetAfter(bytes: number): void;
  /** Everything back to plain forwarding; the request count back to zero. */
  clear(): void;
  /** Requests the proxy received since the last `clear()`. */
  readonly requests: number;
}

/** Timeouts for a store behind the proxy: a stall is noticed in half a second, a slow answer is not. */
export const FAULT_TIMEOUTS = { connectMs: 5_000, requestMs: 10_000, socketIdleMs: 500 };

type BodyFault = { kind: 'stall' | 'truncate' | 'reset'; after: number };

export class FaultProxy implements Faults {
  readonly #server: Server;
  readonly #upstream: URL;
  readonly #sockets = new Set<Socket>();
  readonly #stalled = new Set<Socket>();
  #throttle: number | undefined;
  #serverErrors = 0;
  #body: BodyFault | undefined;
  #requests = 0;

  private constructor(upstream: URL) {
    this.#upstream = upstream;
    this.#server = createServer((req, res) => this.#handle(req, res));
    this.#server.on('connection', (socket) => {
      this.#sockets.add(socket);
      socket.once('close', () => this.#sockets.delete(socket));
    });
  }

  /** A proxy in front of `upstream` (`http://` or `https://`; an https emulator's certificate is not checked). */
  static async start(upstream: string): Promise<FaultProxy> {
    const proxy = new FaultProxy(new URL(upstream));
    proxy.#server.listen(0, '127.0.0.1');
    await once(proxy.#server, 'listening');
    return proxy;
  }

  /** `http://127.0.0.1:<port>` followed by the upstream's path (an Azurite account, say). */
  get url(): string {
    const path = this.#upstream.pathname.replace(/\/+$/, '');
    return `http://127.0.0.1:${(this.#server.address() as AddressInfo).port}${path}`;
  }

  get requests(): number {
    return this.#requests;
  }

  throttle(retryAfterSeconds: number): void {
    this.#throttle = retryAfterSeconds;
  }

  serverErrors(count: number): void {
    this.#serverErrors = count;
  }

  stallAfter(bytes: number): void {
    this.#body = { kind: 'stall', after: bytes };
  }

  truncateAfter(bytes: number): void {
    this.#body = { kind: 'truncate', after: bytes };
  }

  resetAfter(bytes: number): void {
    this.#body = { kind: 'reset', after: bytes };
  }

  clear(): void {
    this.#throttle = undefined;
    this.#serverErrors = 0;
    this.#body = undefined;
    this.#requests = 0;
    // Stalled answers hold their connections: let them go.
    for (const socket of this.#stalled) socket.destroy();
    this.#stalled.clear();
  }

  async close(): Promise<void> {
    for (const socket of this.#sockets) socket.destroy();
    this.#server.close();
    await once(this.#server, 'close');
  }

  #handle(req: IncomingMessage, res: ServerResponse): void {
    this.#requests++;
    if (this.#throttle !== undefined) {
      res.writeHead(429, { 'retry-after': String(this.#throttle), 'content-length': 0 }).end();
      req.resume();
      return;
    }
    if (this.#serverErrors > 0) {
      this.#serverErrors--;
      res.writeHead(500, { 'content-length': 0 }).end();
      req.resume();
      return;
    }
    const send = this.#upstream.protocol === 'https:' ? httpsRequest : httpRequest;
    const out = send(
      {
        host: this.#upstream.hostname,
        port: this.#upstream.port,
        method: req.method,
        path: req.url,
        headers: req.headers,
        rejectUnauthorized: false,
      },
      (answer) => this.#answer(req, answer, res),
    );
    out.on('error', () => res.socket?.destroy());
    req.pipe(out);
  }

  #answer(req: IncomingMessage, answer: IncomingMessage, res: ServerResponse): void {
    res.writeHead(answer.statusCode ?? 502, answer.rawHeaders);
    const fault = this.#body;
    const length = Number(answer.headers['content-length'] ?? NaN);
    if (fault === undefined || req.method === 'HEAD' || !(length > fault.after)) {
      answer.pipe(res);
      return;
    }
    let sent = 0;
    answer.on('data', (chunk: Buffer) => {
      if (sent >= fault.after) return;
      const part = chunk.subarray(0, fault.after - sent);
      sent += part.length;
      res.write(part);
      if (sent < fault.after) return;
      answer.destroy();
      const socket = res.socket;
      if (socket === null) return;
      if (fault.kind === 'stall') this.#stalled.add(socket);
      else if (fault.kind === 'truncate') socket.end();
      // After the bytes written so far have left: a reset discards what is still queued.
      else if (fault.kind === 'reset') socket.write('', () => socket.resetAndDestroy());
    });
  }
}

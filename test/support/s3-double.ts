/**
 * A TEST DOUBLE of an S3 endpoint, for reliability tests only: a small node:https server (test CA)
 * speaking just enough S3 for the gateway's adapter: path-style HeadObject and GetObject, with a
 * single `Range: bytes=a-b`. Signed requests are accepted without verifying the signature. Faults
 * can be injected per method and key: reset the connection (before the headers or mid-object), stall
 * (stop sending, connection kept open), answer an error status with an S3 XML error body (500, 503,
 * SlowDown with Retry-After), or announce a Content-Length and send fewer bytes before a clean close.
 *
 * ```ts
 * const s3 = await startS3Double({ pki });
 * s3.put('prod/backups/b/b.tar.gz', bytes);
 * s3.faults.push({ method: 'GET', key: 'prod/backups/b/b.tar.gz', fault: { kind: 'reset-mid' }, times: 1 });
 * s3.count({ method: 'GET' }); await s3.dropConnections(); await s3.close();
 * ```
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import type { TestPki } from './test-ca.ts';

export type S3Fault =
  /** Response headers and `afterBytes` of the body, then the TCP connection is reset. */
  | { kind: 'reset-mid'; afterBytes?: number }
  /** The connection is reset before any byte of the response. */
  | { kind: 'reset-before-headers' }
  /** Response headers and `afterBytes` of the body, then nothing more; the connection stays open. */
  | { kind: 'stall-mid'; afterBytes?: number }
  /** Nothing is ever answered; the connection stays open. */
  | { kind: 'stall-before-headers' }
  /** An S3 error: `status`, the XML `<Code>`, and a Retry-After header when given. */
  | { kind: 'status'; status: number; code: string; retryAfter?: string }
  /** Headers announce the whole length; `afterBytes` are sent, then the connection is closed cleanly. */
  | { kind: 'short'; afterBytes?: number };

export interface S3FaultRule {
  method?: 'GET' | 'HEAD';
  /** The object key (without the bucket); default: every key. */
  key?: string;
  fault: S3Fault;
  /** Apply to this many matching requests, then retire (default: always). */
  times?: number;
  /** Matching requests this rule applied to so far. */
  hits?: number;
}

export interface S3Call {
  method: string;
  key: string;
  range: string | undefined;
  /** The fault applied, if any. */
  fault: S3Fault['kind'] | undefined;
  /** True once the connection that carried this request has closed. */
  closed: boolean;
}

export interface S3Double {
  /** e.g. https://127.0.0.1:40123 (use with s3ForcePathStyle). */
  endpoint: string;
  bucket: string;
  put(key: string, bytes: Buffer): void;
  /** Fault rules, tried in order; the first live match applies. */
  faults: S3FaultRule[];
  calls: S3Call[];
  count(m: { method?: string; key?: string }): number;
  /** Connections open now (from the gateway's point of view: its pooled and in-use sockets to us). */
  readonly openConnections: number;
  /** Destroys every open connection (stalled ones included). */
  dropConnections(): Promise<void>;
  close(): Promise<void>;
}

const DEFAULT_MID = 256 * 1024;

function xmlError(code: string): string {
  return `<?xml version="1.0" encoding="UTF-8"?>\n<Error><Code>${code}</Code><Message>injected by the S3 test double</Message><RequestId>TESTDOUBLE0001</RequestId></Error>`;
}

/** A hard reset where the socket allows it (RST), else an abrupt destroy (no TLS close_notify). */
function reset(socket: Socket): void {
  try {
    socket.resetAndDestroy();
  } catch {
    socket.destroy();
  }
}

export async function startS3Double(opts: { pki: TestPki; bucket?: string }): Promise<S3Double> {
  const bucket = opts.bucket ?? 'velero-backups';
  const objects = new Map<string, { bytes: Buffer; etag: string; modified: Date }>();
  const faults: S3FaultRule[] = [];
  const calls: S3Call[] = [];
  const sockets = new Set<Socket>();
  const callsOn = new WeakMap<Socket, S3Call[]>();

  const takeFault = (method: string, key: string): S3Fault | undefined => {
    const rule = faults.find((r) => (r.method === undefined || r.method === method) && (r.key === undefined || r.key === key) && (r.times === undefined || (r.hits ?? 0) < r.times));
    if (!rule) return undefined;
    rule.hits = (rule.hits ?? 0) + 1;
    return rule.fault;
  };

  const handler = (req: IncomingMessage, res: ServerResponse): void => {
    const url = new URL(req.url ?? '/', 'https://double');
    const parts = url.pathname.split('/');
    const key = parts.length > 2 && parts[1] === bucket ? decodeURIComponent(parts.slice(2).join('/')) : '';
    const method = req.method ?? '';
    const fault = takeFault(method, key);
    const socket = req.socket;
    const call: S3Call = { method, key, range: req.headers.range, fault: fault?.kind, closed: socket.destroyed };
    calls.push(call);
    callsOn.get(socket)?.push(call);

    if (fault?.kind === 'reset-before-headers') return reset(socket);
    if (fault?.kind === 'stall-before-headers') return;
    if (fault?.kind === 'status') {
      res.writeHead(fault.status, { 'Content-Type': 'application/xml', ...(fault.retryAfter && { 'Retry-After': fault.retryAfter }) });
      res.end(method === 'HEAD' ? undefined : xmlError(fault.code));
      return;
    }
    const obj = objects.get(key);
    if ((method !== 'GET' && method !== 'HEAD') || !obj) {
      res.writeHead(method === 'GET' || method === 'HEAD' ? 404 : 405, { 'Content-Type': 'application/xml' });
      res.end(method === 'HEAD' ? undefined : xmlError(method === 'GET' ? 'NoSuchKey' : 'MethodNotAllowed'));
      return;
    }
    const size = obj.bytes.length;
    let start = 0;
    let end = size - 1;
    let status = 200;
    const m = /^bytes=(\d+)-(\d*)$/.exec(req.headers.range ?? '');
    if (m && method === 'GET') {
      start = Number(m[1]);
      end = m[2] === '' ? size - 1 : Math.min(Number(m[2]), size - 1);
      if (start >= size) {
        res.writeHead(416, { 'Content-Type': 'application/xml', 'Content-Range': `bytes */${size}` });
        res.end(xmlError('InvalidRange'));
        return;
      }
      status = 206;
    }
    const headers: Record<string, string> = {
      'Content-Type': 'application/octet-stream',
      'Content-Length': String(end - start + 1),
      ETag: obj.etag,
      'Last-Modified': obj.modified.toUTCString(),
      'Accept-Ranges': 'bytes',
      ...(status === 206 && { 'Content-Range': `bytes ${start}-${end}/${size}` }),
    };
    const body = obj.bytes.subarray(start, end + 1);
    if (method === 'HEAD') {
      res.writeHead(200, { ...headers, 'Content-Length': String(size) });
      res.end();
      return;
    }
    if (fault === undefined) {
      res.writeHead(status, headers);
      res.end(body);
      return;
    }
    // Mid-object faults: the response is written by hand so that exactly these bytes go out.
    const sent = body.subarray(0, Math.min(fault.afterBytes ?? DEFAULT_MID, Math.max(0, body.length - 1)));
    const head = [`HTTP/1.1 ${status} ${status === 206 ? 'Partial Content' : 'OK'}`, ...Object.entries(headers).map(([k, v]) => `${k}: ${v}`), '', ''].join('\r\n');
    socket.write(head);
    socket.write(sent, () => {
      // Give the bytes a moment to leave before the connection breaks, so the gateway has started streaming.
      setTimeout(() => {
        if (fault.kind === 'reset-mid') reset(socket);
        else if (fault.kind === 'short') socket.end();
        // stall-mid: nothing more, ever.
      }, 100);
    });
  };

  const server: Server = createServer({ key: opts.pki.key, cert: opts.pki.cert, keepAliveTimeout: 60_000 }, handler);
  server.on('secureConnection', (s: Socket) => {
    sockets.add(s);
    callsOn.set(s, []);
    s.once('close', () => {
      sockets.delete(s);
      for (const c of callsOn.get(s) ?? []) c.closed = true;
    });
  });
  server.on('tlsClientError', () => undefined);
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const { port } = server.address() as AddressInfo;

  const dropConnections = async (): Promise<void> => {
    const closing = [...sockets].map((s) => (s.destroyed ? Promise.resolve() : once(s, 'close').then(() => undefined)));
    for (const s of sockets) s.destroy();
    await Promise.all(closing);
  };

  return {
    endpoint: `https://127.0.0.1:${port}`,
    bucket,
    put(key, bytes) {
      objects.set(key, { bytes, etag: `"${createHash('md5').update(bytes).digest('hex')}"`, modified: new Date(Math.floor(Date.now() / 1000) * 1000) });
    },
    faults,
    calls,
    count: (m) => calls.filter((c) => (m.method === undefined || c.method === m.method) && (m.key === undefined || c.key === m.key)).length,
    get openConnections() {
      return sockets.size;
    },
    dropConnections,
    async close() {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      await dropConnections();
      await closed;
    },
  };
}

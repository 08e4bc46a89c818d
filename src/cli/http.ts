/**
 * One HTTP GET over a socket this module connects and, for HTTPS, verifies itself before a single
 * byte of the request (and so the bearer token) is written: trust is "a CA verified the chain and the
 * host name" or "the leaf certificate has a pinned SHA-256 fingerprint" (Kopia's pinning), which
 * Node's own `rejectUnauthorized` cannot express. Redirects are never followed.
 */
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { request } from 'node:http';
import type { IncomingMessage } from 'node:http';
import { connect as netConnect, isIP } from 'node:net';
import type { LookupFunction, Socket } from 'node:net';
import { connect as tlsConnect } from 'node:tls';
import { TimeoutError, UntrustedCertificateError } from './errors.ts';

/** How a server's certificate is judged. */
export interface Trust {
  /** CA certificates (PEM) the chain must lead to; undefined: Node's default roots. */
  ca?: string[];
  /** Accept a certificate whose chain (and host name) verifies against `ca`; false when only pins count. */
  chain: boolean;
  /** SHA-256 fingerprints (lower-case hex of the DER) accepted whatever the chain and host name. */
  pins: string[];
  /** Accept any certificate. */
  insecure: boolean;
}

export interface GetOptions {
  /** GET unless said: HEAD asks for the headers (the size) alone. */
  method?: 'GET' | 'HEAD';
  headers?: Record<string, string>;
  /** Required for https: URLs. */
  trust?: Trust;
  /** Limit for connecting, the TLS handshake and the response headers; also the longest silence while reading. */
  timeoutMs: number;
  signal: AbortSignal;
  /** Name resolution (default: the system's, as for every Node socket). */
  lookup?: LookupFunction;
}

/** SHA-256 of a DER certificate as lower-case hex: the fingerprint format of `--server-cert-fingerprint`. */
export function fingerprintOf(der: Buffer): string {
  return createHash('sha256').update(der).digest('hex');
}

function verify(socket: ReturnType<typeof tlsConnect>, host: string, trust: Trust): void {
  const peer = socket.getPeerCertificate();
  const fingerprint = peer?.raw ? fingerprintOf(peer.raw) : '';
  if (trust.insecure) return;
  if (trust.chain && socket.authorized) return;
  if (fingerprint && trust.pins.includes(fingerprint)) return;
  const reason = trust.chain ? String(socket.authorizationError ?? 'not verified') : 'its fingerprint is not the pinned one';
  throw new UntrustedCertificateError(host, reason, fingerprint);
}

/**
 * Connects, verifies, sends `GET url` and resolves with the response once its headers are in (any
 * status). Rejects with a TimeoutError, an UntrustedCertificateError, a system error (ECONNREFUSED,
 * ENOTFOUND, ...) or the signal's AbortError.
 */
export async function httpGet(url: URL, opts: GetOptions): Promise<IncomingMessage> {
  const secure = url.protocol === 'https:';
  if (!secure && url.protocol !== 'http:') throw new Error(`unsupported URL scheme ${url.protocol}`);
  if (secure && !opts.trust) throw new Error('https needs a trust policy');
  const host = url.hostname.replace(/^\[(.*)\]$/, '$1');
  const port = Number(url.port) || (secure ? 443 : 80);

  const phase = new AbortController();
  const timer = setTimeout(
    () => phase.abort(new TimeoutError(`no answer from ${url.host} within ${Math.round(opts.timeoutMs / 100) / 10} s`)),
    opts.timeoutMs,
  );
  const signal = AbortSignal.any([opts.signal, phase.signal]);
  let socket: Socket | undefined;
  try {
    if (secure) {
      const s = tlsConnect({
        host,
        port,
        ...(isIP(host) === 0 && { servername: host }),
        ...(opts.trust!.ca && { ca: opts.trust!.ca }),
        // Verified by hand below, after the handshake and before any request byte is written.
        rejectUnauthorized: false,
        minVersion: 'TLSv1.2',
        ALPNProtocols: ['http/1.1'],
        ...(opts.lookup && { lookup: opts.lookup }),
      });
      socket = s;
      await once(s, 'secureConnect', { signal });
      verify(s, url.host, opts.trust!);
    } else {
      const s = netConnect({ host, port, ...(opts.lookup && { lookup: opts.lookup }) });
      socket = s;
      await once(s, 'connect', { signal });
    }
    const connected = socket;
    const req = request({
      host,
      port,
      method: opts.method ?? 'GET',
      path: `${url.pathname}${url.search}`,
      // Host exactly as in the URL (no default port): pre-signed URLs sign it.
      headers: { ...opts.headers, Host: url.host },
      setHost: false,
      createConnection: () => connected,
    });
    req.end();
    const [res] = (await once(req, 'response', { signal })) as [IncomingMessage];
    // From here a broken connection is the response's error (aborted / ECONNRESET), which the reader
    // handles; the request's copy of it must not go unhandled.
    req.on('error', () => {});
    return res;
  } catch (err) {
    socket?.destroy();
    // once() rejects with an AbortError whose cause is the reason; report the reason itself.
    const reason: unknown = phase.signal.aborted && !opts.signal.aborted ? phase.signal.reason : undefined;
    throw reason ?? err;
  } finally {
    clearTimeout(timer);
    if (socket && !socket.destroyed) {
      // From here the same limit bounds silence while the body streams in: a stalled transfer fails
      // (and can resume) instead of hanging.
      const s = socket;
      s.setTimeout(opts.timeoutMs, () => s.destroy(new TimeoutError(`the transfer from ${url.host} stalled for ${Math.round(opts.timeoutMs / 100) / 10} s`)));
      const onAbort = (): void => void s.destroy(opts.signal.reason instanceof Error ? opts.signal.reason : new Error('aborted'));
      opts.signal.addEventListener('abort', onAbort, { once: true });
      s.once('close', () => opts.signal.removeEventListener('abort', onAbort));
    }
  }
}

/** The body of an error response, at most `max` bytes, as text. */
export async function readSmallBody(res: IncomingMessage, max = 64 * 1024): Promise<string> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      chunks.push(chunk);
      size += chunk.length;
      if (size >= max) break;
    }
  } catch {
    // A broken error body still has a status worth reporting.
  } finally {
    res.destroy();
  }
  return Buffer.concat(chunks).subarray(0, max).toString('utf8');
}

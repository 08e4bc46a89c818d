import { execFile } from 'node:child_process';
import { mkdtemp, rename, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:https';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import { promisify } from 'node:util';
import { startKubeApiServer } from '../support/kube-apiserver/index.ts';
import type { KubeApiServer } from '../support/kube-apiserver/index.ts';

/** Async on purpose: a synchronous child would block the event loop of a server living in this process. */
export const execFileAsync = promisify(execFile);

export async function tempDir(): Promise<string> {
  return mkdtemp(join(tmpdir(), 'vds-tls-'));
}

export async function removeDir(dir: string): Promise<void> {
  await rm(dir, { recursive: true, force: true });
}

/** Replaces a file the way a careful operator (or cert-manager) does: temp file, then rename. */
export async function replaceFile(file: string, data: string | Buffer): Promise<void> {
  const tmp = `${file}.${process.pid}.${Math.random().toString(16).slice(2)}.tmp`;
  await writeFile(tmp, data);
  await rename(tmp, file);
}

export function portOf(server: Server): number {
  return (server.address() as AddressInfo).port;
}

export async function listen(server: Server): Promise<number> {
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
  return portOf(server);
}

export async function closeServer(server: Server): Promise<void> {
  server.closeAllConnections();
  await new Promise<void>((resolve) => server.close(() => resolve()));
}

/** Opens a verified TLS connection to 127.0.0.1:port; rejects on any handshake or verification error. */
export function openTls(port: number, opts: ConnectionOptions): Promise<TLSSocket> {
  return new Promise((resolve, reject) => {
    const socket = connect({ host: '127.0.0.1', port, ...opts }, () => resolve(socket));
    socket.once('error', reject);
  });
}

/** The peer certificate's SHA-256 fingerprint as reported by Node's TLS stack, in the pinning format. */
export function peerFingerprint(socket: TLSSocket): string {
  return socket.getPeerCertificate().fingerprint256.replaceAll(':', '').toLowerCase();
}

/** Connects, reads the served certificate's fingerprint and disconnects. */
export async function servedFingerprint(port: number, opts: ConnectionOptions): Promise<string> {
  const socket = await openTls(port, opts);
  try {
    return peerFingerprint(socket);
  } finally {
    socket.destroy();
  }
}

/** Sends one keep-alive HTTP/1.1 GET over an open socket and resolves with the response body. */
export function httpGetOver(socket: TLSSocket, path: string): Promise<string> {
  return new Promise((resolve, reject) => {
    let data = '';
    const onData = (chunk: Buffer): void => {
      data += chunk.toString('utf8');
      const head = data.indexOf('\r\n\r\n');
      const m = /content-length: *(\d+)/i.exec(data);
      if (head >= 0 && m && data.length >= head + 4 + Number(m[1])) {
        socket.off('data', onData);
        socket.off('error', reject);
        resolve(data.slice(head + 4, head + 4 + Number(m[1])));
      }
    };
    socket.on('data', onData);
    socket.once('error', reject);
    socket.write(`GET ${path} HTTP/1.1\r\nHost: 127.0.0.1\r\nConnection: keep-alive\r\n\r\n`);
  });
}

/** Polls `probe` until it returns a value satisfying `done`, or fails after `timeoutMs`. */
export async function waitFor<T>(what: string, probe: () => Promise<T> | T, done: (v: T) => boolean, timeoutMs = 5000): Promise<T> {
  const deadline = Date.now() + timeoutMs;
  let last: T | undefined;
  let lastErr: unknown;
  for (;;) {
    try {
      last = await probe();
      if (done(last)) return last;
    } catch (err) {
      lastErr = err;
    }
    if (Date.now() > deadline) {
      throw new Error(`timed out after ${timeoutMs} ms waiting for ${what}; last value ${JSON.stringify(last)}`, { cause: lastErr });
    }
    await new Promise((r) => setTimeout(r, 25));
  }
}

export function sleep(ms: number): Promise<void> {
  return new Promise((r) => setTimeout(r, ms));
}

/** The Kubernetes API test double without Velero, a temp dir, and a kubeconfig of the gateway's service account in `namespace`. */
export async function startSecretsApi(namespace: string): Promise<{ api: KubeApiServer; dir: string; kubeconfigFile: string }> {
  const api = await startKubeApiServer({ velero: false, bookmarkIntervalMs: 200 });
  const dir = await tempDir();
  const kubeconfigFile = await api.writeKubeconfig(join(dir, 'kubeconfig'), api.kubeconfig(api.tokens.serviceAccount(namespace, 'velero-download-server')));
  return { api, dir, kubeconfigFile };
}

export async function stopSecretsApi(api: KubeApiServer | undefined, dir: string | undefined): Promise<void> {
  await api?.close();
  if (dir) await removeDir(dir);
}

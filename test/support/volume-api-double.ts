/**
 * A test double of the download server's volume-data API, for the client's tests: HTTPS (a test CA),
 * a bearer token checked, and the three routes answered the way the gateway documents them over an
 * in-memory tree: the backup's volume list; `files/` (a file's bytes with Content-Length, ETag,
 * Accept-Ranges and Range / If-Range; a directory's JSON listing paged by `continue`; a symlink's
 * JSON); `archive/` (a tar, or a tar.gz with `?format=tar.gz`, streamed without Content-Length).
 * Errors are Kubernetes Status bodies. It records every request's raw URL, and breaks responses on
 * demand (a cut connection, a stream that ends cleanly too early, a listing that never ends).
 * It is not the gateway: the gateway's own tests prove the gateway; this one proves the client.
 */
import { once } from 'node:events';
import type { IncomingHttpHeaders, IncomingMessage, ServerResponse } from 'node:http';
import { createServer } from 'node:https';
import type { AddressInfo } from 'node:net';
import { createGzip } from 'node:zlib';
import tar from 'tar-stream';
import type { TestPki } from './test-ca.ts';

export type Node =
  | { type: 'file'; data: Buffer; mode?: number; mtime?: Date }
  | { type: 'dir'; entries: Record<string, Node>; mode?: number; mtime?: Date }
  | { type: 'symlink'; target: string; mode?: number; mtime?: Date };

export interface VolumeApiDoubleOptions {
  pki: TestPki;
  /** The only bearer token accepted; `forbiddenToken` authenticates but may not read volume data. */
  token: string;
  forbiddenToken: string;
  namespace: string;
  backup: string;
  /** The volume list's entries (BackupVolume objects). */
  volumes: Record<string, unknown>[];
  /** Each volume's tree, by volume id. */
  trees: Record<string, Node>;
  /** Entries per listing page (the gateway's default is 1000). */
  pageSize?: number;
}

/** What the double does to the next answers. */
export interface Fault {
  /** Answer every request with this Status (and Retry-After seconds, if given). */
  status?: { code: number; reason: string; message: string; retryAfter?: number };
  /** The next body is cut (connection destroyed) after this many bytes. */
  cutAfter?: number;
  /**
   * Every archive body is cut (connection destroyed) after this many bytes, retries included: a cut
   * before the client read a byte is retried, as it should be.
   */
  cutArchivesAfter?: number;
  /** The next archive body ends cleanly (a proper end of the chunked stream) after this many bytes. */
  endAfter?: number;
  /** Every listing page answers a new `continue` token. */
  endlessContinue?: boolean;
}

export interface VolumeApiDouble {
  url: string;
  requests: { url: string; headers: IncomingHttpHeaders }[];
  set(fault: Fault): void;
  close(): Promise<void>;
}

const MTIME = new Date('2026-11-30T12:00:00Z');

/** Closes the connection mid-body the way a broken network path does to the client: what was written arrives, then the end, short of the body. */
const cutConnection = (res: ServerResponse): void => void res.socket?.end();
const octal = (n: number): string => `0${(n & 0o7777).toString(8)}`;

function status(res: ServerResponse, code: number, reason: string, message: string, retryAfter?: number): void {
  const body = JSON.stringify({ kind: 'Status', apiVersion: 'v1', metadata: {}, status: 'Failure', message, reason, code });
  res.writeHead(code, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), ...(retryAfter !== undefined && { 'Retry-After': String(retryAfter) }) });
  res.end(body);
}

function entryOf(name: string, n: Node): Record<string, unknown> {
  const type = n.type === 'dir' ? 'dir' : n.type;
  return {
    name,
    type,
    size: n.type === 'file' ? n.data.length : 0,
    mode: octal(n.mode ?? (n.type === 'dir' ? 0o755 : n.type === 'symlink' ? 0o777 : 0o644)),
    mtime: (n.mtime ?? MTIME).toISOString(),
    ...(n.type === 'symlink' && { target: n.target }),
  };
}

/** Writes a tar of `node` (named `name`) into `pack`, directories first, as the gateway does. */
async function packTree(pack: tar.Pack, name: string, node: Node): Promise<void> {
  const mtime = node.mtime ?? MTIME;
  if (node.type === 'file') {
    await new Promise<void>((ok, fail) => pack.entry({ name, mode: node.mode ?? 0o644, mtime, size: node.data.length }, node.data, (err) => (err ? fail(err) : ok())));
  } else if (node.type === 'symlink') {
    pack.entry({ name, type: 'symlink', linkname: node.target, mode: node.mode ?? 0o777, mtime });
  } else {
    if (name) pack.entry({ name: `${name}/`, type: 'directory', mode: node.mode ?? 0o755, mtime });
    for (const [child, sub] of Object.entries(node.entries).sort(([a], [b]) => (a < b ? -1 : 1))) {
      await packTree(pack, name ? `${name}/${child}` : child, sub);
    }
  }
}

export async function startVolumeApiDouble(opts: VolumeApiDoubleOptions): Promise<VolumeApiDouble> {
  const requests: VolumeApiDouble['requests'] = [];
  let fault: Fault = {};
  const issued = new Set<string>();
  const pageSize = opts.pageSize ?? 1000;
  const prefix = new RegExp(`^(?:/[^/]+)*?/v1/namespaces/${opts.namespace}/backups/${opts.backup}/volumes(?:/([^/?]+)/(files|archive)/([^?]*))?(?:\\?(.*))?$`);

  /** Sends `body` honouring the faults: a cut connection or a clean early end. */
  const send = (res: ServerResponse, body: Buffer): void => {
    const cut = fault.cutAfter;
    if (cut !== undefined) {
      fault = { ...fault, cutAfter: undefined };
      res.write(body.subarray(0, cut), () => cutConnection(res));
      return;
    }
    res.end(body);
  };

  async function handle(req: IncomingMessage, res: ServerResponse): Promise<void> {
    requests.push({ url: req.url ?? '', headers: req.headers });
    const auth = req.headers.authorization;
    if (auth !== `Bearer ${opts.token}` && auth !== `Bearer ${opts.forbiddenToken}`) return status(res, 401, 'Unauthorized', 'Unauthorized');
    if (auth === `Bearer ${opts.forbiddenToken}`) {
      return status(res, 403, 'Forbidden', `backups.velero.io "${opts.backup}" is forbidden: User "bob" cannot get resource "backups/volumedata" in API group "velero.io" in the namespace "${opts.namespace}"`);
    }
    if (fault.status) return status(res, fault.status.code, fault.status.reason, fault.status.message, fault.status.retryAfter);
    const m = prefix.exec(req.url ?? '');
    if (!m) return status(res, 404, 'NotFound', 'no such route');
    const [, rawVolume, route, rawPath = '', rawQuery = ''] = m;
    const query = new URLSearchParams(rawQuery);
    if (!rawVolume) {
      const body = Buffer.from(JSON.stringify({ kind: 'BackupVolumeList', namespace: opts.namespace, backup: opts.backup, volumes: opts.volumes }));
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
      return send(res, body);
    }
    const volume = decodeURIComponent(rawVolume);
    const root = opts.trees[volume];
    if (!root) return status(res, 404, 'NotFound', `backup "${opts.backup}" has no volume "${volume}"`);
    const segments = rawPath.split('/').filter((s) => s !== '').map((s) => decodeURIComponent(s));
    if (segments.some((s) => s === '..' || s.includes('\0'))) return status(res, 400, 'BadRequest', 'a path may not contain ".." or NUL');
    let node: Node | undefined = root;
    for (const s of segments) node = node?.type === 'dir' ? node.entries[s] : undefined;
    const shown = segments.join('/');
    if (!node) return status(res, 404, 'NotFound', `"${shown}" not found in volume "${volume}" of backup "${opts.backup}"`);

    if (route === 'archive') {
      const gzip = query.get('format') === 'tar.gz';
      res.writeHead(200, { 'Content-Type': gzip ? 'application/gzip' : 'application/x-tar' });
      const pack = tar.pack();
      const chunks: Buffer[] = [];
      pack.on('data', (c: unknown) => void chunks.push(c as Buffer));
      const done = once(pack, 'end');
      await packTree(pack, segments.at(-1) ?? '', node);
      pack.finalize();
      await done;
      let body = Buffer.concat(chunks);
      if (gzip) {
        const z = createGzip();
        const out: Buffer[] = [];
        z.on('data', (c: Buffer) => out.push(c));
        z.end(body);
        await once(z, 'end');
        body = Buffer.concat(out);
      }
      if (fault.endAfter !== undefined) {
        const n = fault.endAfter;
        fault = { ...fault, endAfter: undefined };
        return void res.end(body.subarray(0, n));
      }
      if (fault.cutArchivesAfter !== undefined) return void res.write(body.subarray(0, fault.cutArchivesAfter), () => cutConnection(res));
      // Streamed, as the gateway streams it: in pieces, no Content-Length.
      for (let i = 0; i < body.length; i += 64 * 1024) {
        if (!res.write(body.subarray(i, i + 64 * 1024))) await once(res, 'drain');
      }
      return void res.end();
    }

    if (node.type === 'file') {
      if (rawPath.endsWith('/')) return status(res, 400, 'BadRequest', `"${shown}" is a file, not a directory`);
      const etag = `"obj-${volume}-${shown.length}-${node.data.length}"`;
      // A hostile name in Content-Disposition: the client must name the file itself.
      const headers = {
        'Content-Type': 'application/octet-stream', ETag: etag, 'Accept-Ranges': 'bytes', 'Last-Modified': (node.mtime ?? MTIME).toUTCString(),
        'Content-Disposition': 'attachment; filename="../../.bashrc"',
      };
      const range = /^bytes=(\d+)-$/.exec(String(req.headers.range ?? ''));
      if (range && (req.headers['if-range'] === undefined || req.headers['if-range'] === etag)) {
        const from = Number(range[1]);
        if (from >= node.data.length) return status(res, 416, 'RequestedRangeNotSatisfiable', 'range not satisfiable');
        res.writeHead(206, { ...headers, 'Content-Length': node.data.length - from, 'Content-Range': `bytes ${from}-${node.data.length - 1}/${node.data.length}` });
        return send(res, node.data.subarray(from));
      }
      res.writeHead(200, { ...headers, 'Content-Length': node.data.length });
      return send(res, node.data);
    }
    const json = (doc: unknown): void => {
      const body = Buffer.from(JSON.stringify(doc));
      res.writeHead(200, { 'Content-Type': 'application/json', 'Content-Length': body.length });
      res.end(body);
    };
    if (node.type === 'symlink') {
      return json({ kind: 'Symlink', path: shown, name: segments.at(-1), target: node.target, mode: octal(node.mode ?? 0o777), mtime: (node.mtime ?? MTIME).toISOString() });
    }
    // Opaque continue tokens, with characters a query must encode; only a token it issued is taken back.
    const names = Object.keys(node.entries).sort();
    const token = query.get('continue');
    if (token !== null && !issued.has(token)) return status(res, 400, 'BadRequest', `invalid continue token ${JSON.stringify(token)}`);
    const start = token === null ? 0 : parseInt(token, 10);
    const page = names.slice(start, start + pageSize);
    const next = fault.endlessContinue || start + pageSize < names.length ? `${start + pageSize} +/=&?#%ü` : undefined;
    if (next) issued.add(next);
    const entries = page.map((n) => entryOf(n, (node as { entries: Record<string, Node> }).entries[n]!));
    return json({ kind: 'Directory', path: shown ? `${shown}/` : '', entries, ...(next && { continue: next }) });
  }

  const server = createServer({ cert: opts.pki.cert, key: opts.pki.key }, (req, res) => {
    handle(req, res).catch((err: unknown) => res.destroy(err as Error));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  const port = (server.address() as AddressInfo).port;
  return {
    url: `https://127.0.0.1:${port}`,
    requests,
    set(f) {
      fault = f;
    },
    async close() {
      server.closeAllConnections();
      await new Promise<void>((r) => server.close(() => r()));
    },
  };
}

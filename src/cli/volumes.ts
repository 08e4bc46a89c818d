/**
 * The volume-data commands' own parts: their URLs on the download server (every segment
 * percent-encoded, so a file name with `?`, `#`, `%`, spaces or any Unicode reaches the server as it
 * is), the tables they print, JSON answers read with a bound, directory listings followed page by
 * page with a bound, and the check that a saved tar ended where a tar ends.
 *
 * Everything printed here comes from the server, which reads it from a backup of somebody's volume
 * (file names) or from Kubernetes objects a tenant may have written: names are printed with control
 * and bidi-override characters escaped, so a file name cannot move the cursor, rewrite the screen or
 * pose as another name.
 */
import type { IncomingMessage } from 'node:http';
import { Transform } from 'node:stream';
import type { TransformCallback } from 'node:stream';
import { createGunzip } from 'node:zlib';
import { printable } from './args.ts';
import type { VolumeCommand } from './args.ts';
import { CliError, EXIT } from './errors.ts';

/** The largest JSON answer read (a page of 10,000 entries is about 1.5 MB). */
export const MAX_JSON_BYTES = 32 * 1024 * 1024;
/** Pages of one listing followed at most: a server that keeps answering `continue` is cut off. */
export const MAX_PAGES = 1000;

const enc = encodeURIComponent;

/**
 * The URL of a volume-data request under the download server's base URL (whose path, if any, is
 * kept as a prefix). `ls` asks for the directory (a trailing `/`); `continue` is the server's opaque
 * token for the next page.
 */
export function volumeUrl(base: URL, namespace: string, backup: string, v: VolumeCommand, continueToken?: string): URL {
  let path = `/v1/namespaces/${enc(namespace)}/backups/${enc(backup)}/volumes`;
  if (v.action !== 'volumes') {
    path += `/${enc(v.volume)}/${v.action === 'archive' ? 'archive' : 'files'}/${v.path.map(enc).join('/')}`;
    if (v.action === 'ls' && v.path.length > 0) path += '/';
  }
  const query: string[] = [];
  if (v.action === 'archive' && v.gzip) query.push('format=tar.gz');
  if (continueToken !== undefined) query.push(`continue=${enc(continueToken)}`);
  const url = new URL(base.href);
  url.pathname = `${base.pathname.replace(/\/+$/, '')}${path}`;
  url.search = query.length ? `?${query.join('&')}` : '';
  return url;
}

/** Rows as columns two spaces apart (the last one unpadded). */
export function formatTable(rows: string[][]): string {
  const widths: number[] = [];
  for (const row of rows) row.forEach((cell, i) => (widths[i] = Math.max(widths[i] ?? 0, [...cell].length)));
  return rows.map((row) => row.map((cell, i) => (i === row.length - 1 ? cell : cell + ' '.repeat(widths[i]! - [...cell].length))).join('  ')).join('\n') + '\n';
}

const text = (v: unknown): string => (typeof v === 'string' && v !== '' ? printable(v) : typeof v === 'number' && Number.isFinite(v) ? String(v) : '-');

/** Is this answer JSON (a listing, a symlink, the volumes) rather than a file's bytes? */
export const isJson = (res: IncomingMessage): boolean => /^application\/json\b/i.test(String(res.headers['content-type'] ?? ''));

/** The body as JSON, at most `max` bytes; a larger or broken one is an error, never a truncated parse. */
export async function readJson(res: IncomingMessage, what: string, max = MAX_JSON_BYTES): Promise<unknown> {
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const chunk of res as AsyncIterable<Buffer>) {
      size += chunk.length;
      if (size > max) throw new CliError(EXIT.notFound, `${what} is larger than ${max} bytes: not read`);
      chunks.push(chunk);
    }
  } finally {
    res.destroy();
  }
  try {
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as unknown;
  } catch {
    throw new CliError(EXIT.notFound, `${what} is not valid JSON`);
  }
}

// What JSON.stringify leaves raw that a terminal acts on or shows as something else: DEL, the C1
// controls (0x9b is a CSI on some terminals) and the bidirectional overrides.
const JSON_UNSAFE = /[\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** JSON.stringify, with those characters written as \uXXXX escapes: the same value, inert on a terminal. */
export function safeJson(value: unknown, space?: number): string {
  return JSON.stringify(value, null, space).replace(JSON_UNSAFE, (c) => `\\u${c.charCodeAt(0).toString(16).padStart(4, '0')}`);
}

type Json = Record<string, unknown>;
const isObject = (v: unknown): v is Json => typeof v === 'object' && v !== null && !Array.isArray(v);

/** The volume list's table: one row per volume, what identifies it and its snapshot. */
export function volumesTable(list: unknown): string {
  const volumes = isObject(list) && Array.isArray(list.volumes) ? list.volumes : undefined;
  if (!volumes) throw new CliError(EXIT.notFound, 'the download server\'s volume list is not a BackupVolumeList');
  const rows = [['ID', 'KIND', 'NAMESPACE', 'POD/VOLUME OR PVC', 'UPLOADER', 'SIZE', 'SNAPSHOT']];
  for (const v of volumes.filter(isObject)) {
    const source = typeof v.pvc === 'string' && v.pod === undefined ? text(v.pvc) : `${text(v.pod)}/${text(v.volume)}${typeof v.pvc === 'string' ? ` (${text(v.pvc)})` : ''}`;
    rows.push([text(v.id), text(v.kind), text(v.namespace), source, text(v.uploader), text(v.size), text(v.snapshotID)]);
  }
  return formatTable(rows);
}

/** One listing row: a symlink shows its target when the server gives it. */
function entryRow(e: Json): string[] {
  const name = typeof e.target === 'string' ? `${text(e.name)} -> ${text(e.target)}` : `${text(e.name)}${e.type === 'dir' ? '/' : ''}`;
  return [text(e.type), text(e.mode), text(e.size), text(e.mtime), name];
}

const LISTING_HEADER = ['TYPE', 'MODE', 'SIZE', 'MTIME', 'NAME'];

/**
 * Lists a directory: the first page from `open(undefined)`, then one page per `continue` token, each
 * written as it arrives (a table, or one JSON document whose `entries` are every page's). A symlink
 * answers with itself (never followed). At most MAX_PAGES pages.
 */
export async function listDirectory(open: (continueToken: string | undefined) => Promise<IncomingMessage>, json: boolean, write: (s: string) => Promise<void>, maxPages = MAX_PAGES): Promise<void> {
  let token: string | undefined;
  let written = 0;
  for (let page = 0; ; page++) {
    if (page === maxPages) {
      throw new CliError(EXIT.notFound, `the listing did not end after ${maxPages} pages: stopped (the download server keeps answering "continue")`);
    }
    const res = await open(token);
    if (!isJson(res)) {
      res.destroy();
      throw new CliError(EXIT.notFound, 'the path is a file, not a directory: use backup files to download it');
    }
    const body = await readJson(res, 'the directory listing');
    if (!isObject(body) || (body.kind !== 'Directory' && body.kind !== 'Symlink')) throw new CliError(EXIT.notFound, 'the download server\'s answer is not a directory listing');
    if (body.kind === 'Symlink') {
      await write(json ? `${safeJson(body)}\n` : formatTable([LISTING_HEADER, entryRow({ ...body, type: 'symlink' })]));
      return;
    }
    const entries = Array.isArray(body.entries) ? body.entries.filter(isObject) : [];
    if (json) {
      const head = page === 0 ? `{"kind":"Directory","path":${safeJson(body.path ?? '')},"entries":[` : '';
      const rows = entries.map((e) => safeJson(e));
      await write(`${head}${written > 0 && rows.length ? ',' : ''}${rows.length ? '\n' : ''}${rows.join(',\n')}`);
      written += rows.length;
    } else {
      // Every page aligned on its own: the first one is printed before the next is asked for.
      const table = formatTable([...(page === 0 ? [LISTING_HEADER] : []), ...entries.map(entryRow)]);
      if (entries.length || page === 0) await write(table);
    }
    token = typeof body.continue === 'string' && body.continue !== '' ? body.continue : undefined;
    if (token === undefined) {
      if (json) await write('\n]}\n');
      return;
    }
  }
}

const BLOCK = 512;
const END_OF_ARCHIVE = 2 * BLOCK;

/** Counts a tar's bytes and keeps its last 1024: a whole tar is whole blocks ending in two zero blocks. */
class TarEnd {
  #size = 0;
  #tail = Buffer.alloc(0);
  add(chunk: Buffer): void {
    this.#size += chunk.length;
    this.#tail = Buffer.concat([this.#tail, chunk.subarray(Math.max(0, chunk.length - END_OF_ARCHIVE))]).subarray(-END_OF_ARCHIVE);
  }
  whole(): boolean {
    return this.#size >= END_OF_ARCHIVE && this.#size % BLOCK === 0 && this.#tail.every((b) => b === 0);
  }
}

/**
 * Passes an archive through unchanged and fails at its end unless it is a whole tar (for a tar.gz:
 * whole gzip, checksum and length included, around a whole tar). The server sends no Content-Length
 * and breaks the connection on a failure, which the transfer reports; this is the second guard, for
 * a stream that ended cleanly short of its end.
 */
export function wholeTarCheck(gzip: boolean, what: string): Transform {
  const end = new TarEnd();
  const incomplete = (why: string): CliError => new CliError(EXIT.unreachable, `${what} is incomplete (${why}): nothing was saved; run the command again`);
  if (!gzip) {
    return new Transform({
      transform(chunk: Buffer, _enc, done: TransformCallback) {
        end.add(chunk);
        done(null, chunk);
      },
      flush(done: TransformCallback) {
        done(end.whole() ? null : incomplete('it does not end with the end-of-archive blocks'));
      },
    });
  }
  const gunzip = createGunzip();
  let failure: Error | undefined;
  // A write waiting for 'drain' when the gunzip fails: the error must release it.
  let waiting: (() => void) | undefined;
  gunzip.on('data', (c: Buffer) => end.add(c));
  gunzip.on('error', (err) => {
    failure = err;
    waiting?.();
  });
  const gzipError = (err: Error): CliError => incomplete(`not valid gzip: ${err.message}`);
  return new Transform({
    transform(chunk: Buffer, _enc, done: TransformCallback) {
      if (failure) return void done(gzipError(failure));
      if (gunzip.write(chunk)) return void done(null, chunk);
      waiting = () => {
        waiting = undefined;
        done(failure ? gzipError(failure) : null, chunk);
      };
      gunzip.once('drain', () => waiting?.());
    },
    flush(done: TransformCallback) {
      if (failure) return void done(gzipError(failure));
      gunzip.once('error', (err) => done(gzipError(err)));
      gunzip.once('end', () => done(end.whole() ? null : incomplete('the tar inside does not end with the end-of-archive blocks')));
      gunzip.end();
    },
  });
}

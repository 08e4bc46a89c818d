/**
 * Volume data routes: the volumes of a backup, a directory or one file inside a volume's Kopia
 * snapshot, and a tar of a directory. Each is the same chain as an artifact download (authenticate →
 * parse → authorize `get` on `backups/volumedata` → resolve → send); this file holds the parsing of the
 * volume part of the path and the three senders.
 *
 * Who reaches these: any caller Kubernetes allowed `get` on `backups/volumedata` for the backup. What
 * they control: the volume id and the path (any bytes, percent-decoded per segment by the router),
 * `limit`, `continue`, `format`, Range and conditional headers. What they cannot do: name a path
 * outside the snapshot (`..`, `.`, empty segments, NUL and `/` inside a segment are refused before the
 * repository is read), make the gateway follow a symlink (links are answered as links), or hold more
 * than one directory page in memory beyond what the repository's caches bound. What the repository
 * controls (a tenant's own store): entry names, sizes and modes; names that would escape a tar's
 * directory (`/`, `..`, NUL) fail the archive instead of being written.
 *
 * The file and archive senders take what they read from a `SnapshotReadOf`, so the Kopia snapshots
 * under a Kanister Profile (profile-snapshots.ts) are served by the same code.
 */
import { Buffer } from 'node:buffer';
import { once } from 'node:events';
import { Readable } from 'node:stream';
import { pipeline } from 'node:stream/promises';
import { createGzip } from 'node:zlib';
import { create as contentDisposition } from 'content-disposition';
import type { Request, RequestHandler, Response } from 'express';
import type { Logger } from 'pino';
import tar from 'tar-stream';
import type { Header, Pack } from 'tar-stream';
import { CorruptRepositoryError } from '../kopia/errors.ts';
import type { RepositoryPool } from '../kopia/pool.ts';
import type { DirEntry, Repository, Snapshot } from '../kopia/repository.ts';
import { snapshotPathSegments } from '../kopia/repository.ts';
import { clientIdentity } from '../stores/factory.ts';
import type { StoreFactory, StoreSpec } from '../stores/spec.ts';
import type { BackupVolume, VolumeResolver } from '../velero/volumes.ts';
import { InvalidTargetError } from '../velero/errors.ts';
import type { DownloadSlots } from './limits.ts';
import { earlier, localsOf, signalOf } from './locals.ts';
import type { SnapshotPath, VolumePath } from './locals.ts';
import { OBJECT_HEADERS, conditionalRange, setLengthHeaders } from './download.ts';
import { markDownload } from './security-headers.ts';
import { wildcardSegments } from './routes.ts';

export const VOLUMES_PATH = '/v1/namespaces/:namespace/backups/:name/volumes';
export const VOLUME_FILES_PATH = '/v1/namespaces/:namespace/backups/:name/volumes/:volume/files{/*path}';
export const VOLUME_ARCHIVE_PATH = '/v1/namespaces/:namespace/backups/:name/volumes/:volume/archive{/*path}';

export interface VolumeDeps {
  log: Logger;
  resolver: VolumeResolver;
  pool: RepositoryPool;
  stores: StoreFactory;
  downloadSlots?: DownloadSlots;
}

/** What the file and archive senders need: everything of VolumeDeps but the volume resolver. */
export type SnapshotDeps = Omit<VolumeDeps, 'resolver'>;

/** Where a snapshot is read: a backup's volume, or a Kopia repository under a Kanister Profile. */
export interface SnapshotSource {
  /** The location; `prefix` is the repository's key prefix in the store built from it. */
  spec: StoreSpec;
  prefix: string;
  /** Never logged, never in an error. */
  password: string;
  snapshotID: string;
  /** The archive's file name without extension (the volume id, the Profile and snapshot id). */
  name: string;
}

/** What a files or archive request reads, taken from the request's locals by its route. */
export type SnapshotReadOf = (res: Response) => { path: SnapshotPath; source: SnapshotSource };

/** A volume route's read: the parsed volume path and the resolved volume repository. */
export const volumeRead: SnapshotReadOf = (res) => {
  const locals = localsOf(res);
  const vr = earlier(locals.volumeRepository, 'the volume repository');
  return {
    path: earlier(locals.volumePath, 'the volume path'),
    source: { spec: vr.spec, prefix: vr.prefix, password: vr.password, snapshotID: vr.snapshotID, name: vr.volume.id.replaceAll(':', '-') },
  };
};

/** A directory page: at most this many entries unless the caller asks for fewer. */
export const DEFAULT_PAGE = 1000;
export const MAX_PAGE = 10_000;
/** How deep an archive descends: a repository made to nest without end is cut here, loudly. */
export const MAX_ARCHIVE_DEPTH = 1024;

/** The volume id as it appears in `BackupVolume.id`: Kubernetes names joined by `:`. */
const VOLUME_ID = /^[a-z0-9]([-a-z0-9.]*[a-z0-9])?(:[a-z0-9]([-a-z0-9.]*[a-z0-9])?){0,2}$/;

function param(req: Request, name: string): unknown {
  return (req.params as Record<string, unknown>)[name];
}

/** Parses the volume and the path below it; refuses what could leave the snapshot before anything is read. */
export function parseVolumePath(req: Request): VolumePath {
  const volume = param(req, 'volume');
  if (typeof volume !== 'string' || volume.length > 400 || !VOLUME_ID.test(volume)) {
    throw new InvalidTargetError(`invalid volume ${JSON.stringify(volume)}: a volume id is <namespace>:<pod>:<volume>, <namespace>:<pvc>, or a PVC or volume name`);
  }
  return { volume, ...parseSnapshotPath(req) };
}

/**
 * The `{/*path}` part of a files or archive route as segments inside a snapshot; refuses what could
 * leave the snapshot (`..`, `.`, empty segments, NUL, an encoded `/`) before anything is read.
 */
export function parseSnapshotPath(req: Request): SnapshotPath {
  const parts = wildcardSegments(req, 'path', 'the path inside the snapshot');
  const segments = parts.join('/') === '' ? [] : snapshotPathSegments(parts.join('/'));
  return { segments, directory: req.path.endsWith('/') };
}

/** The volume part of a files or archive route, parsed after authentication (like every target). */
export const parseVolume: RequestHandler = (req, res, next) => {
  localsOf(res).volumePath = parseVolumePath(req);
  next();
};

/** The volume's repository and snapshot, after authorization. */
export function resolveVolume(resolver: VolumeResolver): RequestHandler {
  return async (_req, res, next) => {
    const locals = localsOf(res);
    const target = earlier(locals.target, 'the target');
    const { volume } = earlier(locals.volumePath, 'the volume path');
    locals.volumeRepository = await resolver.repository(target.namespace, target.name, volume, signalOf(res));
    next();
  };
}

/** GET .../volumes: the backup's volumes as JSON. */
export function sendVolumeList(resolver: VolumeResolver): RequestHandler {
  return async (req, res) => {
    const target = earlier(localsOf(res).target, 'the target');
    const volumes: BackupVolume[] = await resolver.volumes(target.namespace, target.name, signalOf(res));
    sendJson(req, res, { kind: 'BackupVolumeList', namespace: target.namespace, backup: target.name, volumes });
  };
}

function sendJson(req: Request, res: Response, body: unknown): void {
  const text = Buffer.from(JSON.stringify(body));
  res.status(200).setHeader('Content-Type', 'application/json; charset=utf-8');
  res.setHeader('Cache-Control', 'private, no-cache');
  res.setHeader('Content-Length', text.length);
  localsOf(res).bytes = req.method === 'HEAD' ? 0 : text.length;
  res.end(req.method === 'HEAD' ? undefined : text);
}

/**
 * What a path inside a snapshot is, for the browser page: the entry, and for a directory its entries
 * in name order (at most `max`; `more` when there were more). The same reads as the files route.
 */
export async function snapshotEntry(deps: SnapshotDeps, source: SnapshotSource, segments: string[], max: number, signal: AbortSignal): Promise<{ entry: DirEntry; children?: DirEntry[]; more: boolean }> {
  const { repo, snapshot } = await openSnapshot(deps, source, signal);
  const entry = await repo.stat(snapshot, segments.join('/'), signal);
  if (entry.type !== 'd') return { entry, more: false };
  const all = (await repo.readDirectory(entry.objectID, signal)).sort((a, b) => compareNames(a.name, b.name));
  return { entry, children: all.slice(0, max), more: all.length > max };
}

/** The opened repository and snapshot of a resolved source. */
async function openSnapshot(deps: SnapshotDeps, source: SnapshotSource, signal: AbortSignal): Promise<{ repo: Repository; snapshot: Snapshot }> {
  const store = await deps.stores.forSpec(source.spec);
  // Shared by every request on the same cached client: one open, one index, one set of listings.
  const repo = await deps.pool.open(store, { prefix: source.prefix, password: source.password, signal, client: clientIdentity(store) });
  return { repo, snapshot: await repo.snapshot(source.snapshotID, signal) };
}

const TYPE_NAMES: Record<string, string> = { f: 'file', d: 'dir', s: 'symlink' };

export function entryType(e: DirEntry): string {
  return TYPE_NAMES[e.type] ?? 'other';
}

export function octalMode(mode: number): string {
  return (mode & 0o7777).toString(8).padStart(4, '0');
}

/** kopia writes RFC 3339 with nanoseconds; Date keeps milliseconds, which is all HTTP dates show. */
function mtimeOf(e: DirEntry): Date | undefined {
  const t = Date.parse(e.mtime);
  return Number.isNaN(t) ? undefined : new Date(t);
}

/**
 * Names in code point order (the order of their UTF-8 bytes), which is not kopia's order: kopia
 * writes a directory's entries in the order its uploader met them. JavaScript compares UTF-16 code
 * units, which differs only between surrogates (code points above U+FFFF) and U+E000–U+FFFF.
 */
export function compareNames(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    let x = a.charCodeAt(i);
    let y = b.charCodeAt(i);
    if (x === y) continue;
    if (x >= 0xd800 && y >= 0xd800) {
      x = x <= 0xdfff ? x + 0x2000 : x - 0x800;
      y = y <= 0xdfff ? y + 0x2000 : y - 0x800;
    }
    return x - y;
  }
  return a.length - b.length;
}

function pageOf(req: Request): { limit: number; after: string | undefined } {
  const { limit: rawLimit, continue: token } = req.query as Record<string, unknown>;
  let limit = DEFAULT_PAGE;
  if (rawLimit !== undefined) {
    if (typeof rawLimit !== 'string' || !/^[1-9][0-9]{0,5}$/.test(rawLimit) || Number(rawLimit) > MAX_PAGE) {
      throw new InvalidTargetError(`limit must be a whole number from 1 to ${MAX_PAGE}`);
    }
    limit = Number(rawLimit);
  }
  if (token === undefined) return { limit, after: undefined };
  if (typeof token !== 'string' || token.length > 4096 || !/^[A-Za-z0-9_-]+$/.test(token)) throw new InvalidTargetError('continue is not a token this gateway gave');
  return { limit, after: Buffer.from(token, 'base64url').toString('utf8') };
}

function directoryPath(segments: string[]): string {
  return segments.length === 0 ? '' : `${segments.join('/')}/`;
}

/**
 * GET .../files/{path}: a regular file's bytes (Range, HEAD, ETag from its object id, Last-Modified
 * from its mtime), a directory's entries as JSON pages, or a symlink's target as JSON.
 */
export function sendVolumeFile(deps: SnapshotDeps, read: SnapshotReadOf = volumeRead): RequestHandler {
  return async (req, res) => {
    const { path, source } = read(res);
    const signal = signalOf(res);
    const { repo, snapshot } = await openSnapshot(deps, source, signal);
    const entry = await repo.stat(snapshot, path.segments.join('/'), signal);
    const where = path.segments.join('/');

    if (entry.type === 'd') {
      const { limit, after } = pageOf(req);
      // readDirectory hands out a copy of the cached listing: sorting it in place is ours to do.
      const all = (await repo.readDirectory(entry.objectID, signal)).sort((a, b) => compareNames(a.name, b.name));
      const start = after === undefined ? 0 : firstAfter(all, after);
      const page = all.slice(start, start + limit);
      const more = start + limit < all.length;
      sendJson(req, res, {
        kind: 'Directory',
        path: directoryPath(path.segments),
        entries: page.map((e) => ({ name: e.name, type: entryType(e), size: e.size, mode: octalMode(e.mode), mtime: e.mtime })),
        ...(more && { continue: Buffer.from(page[page.length - 1]!.name, 'utf8').toString('base64url') }),
      });
      return;
    }
    if (path.directory) throw new InvalidTargetError(`${where} is not a directory (it is a ${entryType(entry)})`);
    if (entry.type === 's') {
      const target = await repo.readLink(snapshot, where, signal);
      sendJson(req, res, { kind: 'Symlink', path: where, name: entry.name, target, mode: octalMode(entry.mode), mtime: entry.mtime });
      return;
    }
    if (entry.type !== 'f') throw new InvalidTargetError(`${where} is a special file (type ${entry.type}): only files, directories and symlinks are served`);
    await sendFile(deps, req, res, repo, entry, signal);
  };
}

/** The index of the first entry after `name` in name order. */
function firstAfter(entries: readonly DirEntry[], name: string): number {
  let lo = 0;
  let hi = entries.length;
  while (lo < hi) {
    const mid = (lo + hi) >>> 1;
    if (compareNames(entries[mid]!.name, name) <= 0) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

async function sendFile(deps: SnapshotDeps, req: Request, res: Response, repo: Repository, entry: DirEntry, signal: AbortSignal): Promise<void> {
  const refused = deps.downloadSlots?.claim(res);
  if (refused) throw refused;
  const object = await repo.resolveObject(entry.objectID, signal);
  const lastModified = mtimeOf(entry);
  const info = { size: object.length, etag: `"${entry.objectID}"`, ...(lastModified && { lastModified }) };
  const wanted = conditionalRange(req, res, info);
  if (wanted === 'not-modified') return;
  const range = wanted;
  res.setHeader('Content-Type', 'application/octet-stream');
  res.setHeader('Content-Disposition', contentDisposition(entry.name));
  setLengthHeaders(res, info.size, range);
  if (req.method === 'HEAD') {
    res.end();
    return;
  }
  const opened = await repo.openObject(entry.objectID, { signal, ...(range && { range }) });
  if (opened.range.end < opened.range.start) {
    res.end(); // an empty file: nothing to wait for
    return;
  }
  await streamOut(opened.stream, res, deps);
}

/** Resolves once the body has bytes (or has ended); rejects with its error if it fails first. */
function firstBytes(body: Readable): Promise<void> {
  return new Promise((resolve, reject) => {
    const ready = (): void => {
      body.off('error', fail);
      resolve();
    };
    const fail = (err: Error): void => {
      body.off('readable', ready);
      reject(err);
    };
    body.once('readable', ready);
    body.once('error', fail);
  });
}

/**
 * Sends a body: until its first byte the response is still a clean slate, so a failure there (a pack
 * gone, a tag that fails) is answered with a Status; once bytes are out, a failure destroys the socket,
 * so the client sees a broken transfer, never a short one. Counted for the access log.
 */
async function streamOut(body: Readable, res: Response, deps: SnapshotDeps): Promise<void> {
  const locals = localsOf(res);
  try {
    await firstBytes(body);
  } catch (err) {
    body.destroy();
    for (const name of OBJECT_HEADERS) res.removeHeader(name);
    throw err;
  }
  locals.ttfb = performance.now() - (locals.startedAt ?? performance.now());
  locals.bytes = 0;
  body.on('data', (chunk: Buffer) => {
    locals.bytes! += chunk.length;
  });
  try {
    await pipeline(body, res);
  } catch (err) {
    res.socket?.destroy();
    if (!signalOf(res).aborted) {
      const { message, reason } = err as Error & { reason?: string };
      deps.log.warn({ err: { message, reason }, bytes: locals.bytes, requestId: locals.requestId }, 'volume data failed mid-stream');
    }
  }
}

/** A name that would leave the directory it is extracted into, or that tar cannot hold. */
function unsafeName(name: string): boolean {
  return name === '' || name === '.' || name === '..' || name.includes('/') || name.includes('\0');
}

/** GET .../archive/{path}: a tar (or tar.gz) of a directory, or of one file, streamed. */
export function sendVolumeArchive(deps: SnapshotDeps, read: SnapshotReadOf = volumeRead): RequestHandler {
  return async (req, res) => {
    const { path, source } = read(res);
    const format = (req.query as Record<string, unknown>).format ?? 'tar';
    if (format !== 'tar' && format !== 'tar.gz') throw new InvalidTargetError('format must be tar or tar.gz');
    const signal = signalOf(res);
    const { repo, snapshot } = await openSnapshot(deps, source, signal);
    const entry = await repo.stat(snapshot, path.segments.join('/'), signal);
    if (entry.type !== 'd' && entry.type !== 'f') throw new InvalidTargetError(`${path.segments.join('/')} is a ${entryType(entry)}: an archive is made of a directory or a file`);
    // The top directory is read before anything is promised: a damaged one is a Status, not a torn tar.
    const children = entry.type === 'd' ? await repo.readDirectory(entry.objectID, signal) : [];
    const refused = deps.downloadSlots?.claim(res);
    if (refused) throw refused;

    const top = path.segments.at(-1) ?? source.name;
    const fileName = `${source.name}${path.segments.length ? `-${top}` : ''}.${format}`;
    res.status(200).setHeader('Content-Type', format === 'tar' ? 'application/x-tar' : 'application/gzip');
    res.setHeader('Content-Disposition', contentDisposition(fileName));
    res.setHeader('Cache-Control', 'private, no-cache');
    markDownload(res);
    if (req.method === 'HEAD') {
      res.end();
      return;
    }
    const pack = tar.pack();
    const writing = writeTree(repo, { ...entry, name: top }, top, pack, signal, 0, children).then(
      () => pack.finalize(),
      (err: unknown) => pack.destroy(err as Error),
    );
    // tar-stream's streams are streamx ones: read through async iteration, which carries both back-pressure and errors.
    const tarStream = Readable.from(pack);
    const body = format === 'tar' ? tarStream : tarStream.pipe(createGzip());
    if (body !== tarStream) tarStream.once('error', (err) => body.destroy(err));
    await Promise.all([streamOut(body, res, deps), writing]);
  };
}

/** What writing an archive reads of a repository. */
export type ArchiveSource = Pick<Repository, 'readDirectory' | 'readObject' | 'openObject'>;

/** Writes one entry (and, for a directory, everything below it, depth first in kopia's order). */
export async function writeTree(repo: ArchiveSource, entry: DirEntry, name: string, pack: Pack, signal: AbortSignal, depth: number, children?: DirEntry[]): Promise<void> {
  signal.throwIfAborted();
  const mtime = mtimeOf(entry) ?? new Date(0);
  const mode = entry.mode & 0o7777;
  if (entry.type === 'd') {
    if (depth > MAX_ARCHIVE_DEPTH) throw new CorruptRepositoryError('malformed', `${name} is nested deeper than ${MAX_ARCHIVE_DEPTH} directories`);
    await addEntry(pack, { name: `${name}/`, type: 'directory', mode, mtime });
    for (const child of children ?? (await repo.readDirectory(entry.objectID, signal))) {
      if (unsafeName(child.name)) throw new CorruptRepositoryError('malformed', `${name} holds an entry named ${JSON.stringify(child.name)}, which no archive may hold`);
      await writeTree(repo, child, `${name}/${child.name}`, pack, signal, depth + 1);
    }
    return;
  }
  if (entry.type === 's') {
    const target = (await repo.readObject(entry.objectID, signal)).toString('utf8');
    await addEntry(pack, { name, type: 'symlink', linkname: target, mode, mtime });
    return;
  }
  if (entry.type !== 'f') return; // devices, sockets, pipes: nothing a tar of backed-up data needs
  const opened = await repo.openObject(entry.objectID, { signal });
  let written!: Promise<void>;
  const sink = await new Promise<ReturnType<Pack['entry']>>((ready) => {
    written = new Promise<void>((resolve, reject) => ready(pack.entry({ name, type: 'file', size: opened.size, mode, mtime }, (err) => (err ? reject(err) : resolve()))));
  });
  try {
    for await (const chunk of opened.stream as AsyncIterable<Buffer>) {
      if (!sink.write(chunk)) await once(sink as unknown as NodeJS.EventEmitter, 'drain', { signal }); // streamx emits Node's events
    }
  } catch (err) {
    sink.destroy(err as Error);
    throw err;
  }
  sink.end(undefined); // streamx declares a chunk argument; none is written
  await written;
}

function addEntry(pack: Pack, header: Partial<Header> & Pick<Header, 'name'>): Promise<void> {
  return new Promise((resolve, reject) => pack.entry(header, (err) => (err ? reject(err) : resolve())));
}

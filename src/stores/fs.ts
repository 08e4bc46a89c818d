import type { Stats } from 'node:fs';
import { then } from '../util/promise-or.ts';
import type { PromiseOr } from '../util/promise-or.ts';
import { close as fsClose, closeSync, constants, lstatSync, readlinkSync, readSync, createReadStream, fstat as fsFstat, fstatSync, open as fsOpen, openSync, read as fsRead, realpathSync } from 'node:fs';
import { readlink, realpath, statfs } from 'node:fs/promises';
import { promisify } from 'node:util';
import { isAbsolute, join, sep } from 'node:path';
import { addAbortSignal, Readable } from 'node:stream';
import {
  AccessDeniedError,
  InvalidKeyError,
  InvalidLocationError,
  isStoreError,
  ObjectNotFoundError,
  StoreUnavailableError,
} from './errors.ts';
import { listDirectory, procFdAvailable } from './fs-list.ts';
import { keySegments } from './keys.ts';
import { withLengthCheck } from './length-check.ts';
import { fitRange } from './range.ts';
import { SYNC_READ_MAX } from './types.ts';
import type { ByteRange, GetOptions, ListedObject, ListOptions, ObjectBody, ObjectInfo, ObjectReader, ObjectStore, StatOptions } from './types.ts';

export interface FilesystemStoreOptions {
  /** Absolute path of the directory that holds the objects; keys are relative to it. */
  root: string;
  /**
   * How path resolution, open and fstat run: `sync` on the event loop (as nginx does: microseconds
   * when the kernel has the inodes cached), `async` on libuv's thread pool (safe when a call may
   * block: a network filesystem whose server is gone would otherwise freeze every connection).
   * `auto` (default): `sync` on a local filesystem (by statfs type), `async` on anything else. In
   * `sync` mode reads of up to 64 KiB are synchronous too; larger reads always use the thread pool.
   */
  metadata?: 'sync' | 'async' | 'auto';
}

/**
 * statfs f_type values (linux/magic.h) of filesystems on local block devices or in memory, where
 * metadata calls do not wait on a network: ext2/3/4, xfs, btrfs, tmpfs, ramfs, overlayfs, zfs, f2fs.
 * NFS, SMB, CephFS, FUSE (s3fs, gcsfuse...) and anything unknown stay asynchronous.
 */
const LOCAL_FILESYSTEMS = new Set([0xef53, 0x58465342, 0x9123683e, 0x01021994, 0x858458f6, 0x794c7630, 0x2fc12fc1, 0xf2f52010]);

/** Reads of 1 MiB: with Node's default 64 KiB, HTTPS throughput was about half of nginx's here. */
const READ_CHUNK = 1024 * 1024;

const ROOT_RECHECK_MS = 1000;

// O_NOFOLLOW: the final component cannot have been swapped for a symlink since realpath checked it.
// O_NONBLOCK: opening a FIFO planted under the root must not hang; regular files ignore the flag.
const OPEN_FLAGS = constants.O_RDONLY | (constants.O_NOFOLLOW ?? 0) | (constants.O_NONBLOCK ?? 0);

/** `"<size hex>-<mtime ms hex>"`, nginx style: cheap, and changes whenever the file is rewritten. */
function etagOf(size: number, mtimeMs: number): string {
  return `"${size.toString(16)}-${Math.trunc(mtimeMs).toString(16)}"`;
}

function errnoOf(err: unknown): string | undefined {
  return typeof err === 'object' && err !== null && 'code' in err && typeof err.code === 'string'
    ? err.code
    : undefined;
}

/** Keeps the root's path out of messages (they may reach the caller); the cause keeps it for logs. */
function translate(err: unknown, key: string, signal: AbortSignal): unknown {
  // The abort reason goes out as it came in, whatever its type, as signal.throwIfAborted() does.
  if (isStoreError(err) || (signal.aborted && err === signal.reason)) return err;
  const shown = JSON.stringify(key);
  switch (errnoOf(err)) {
    case 'ENOENT':
    case 'ENOTDIR':
    case 'ELOOP':
      return new ObjectNotFoundError(`object ${shown} not found`, { cause: err });
    case 'EACCES':
    case 'EPERM':
      return new AccessDeniedError(`permission denied reading object ${shown}`, { cause: err });
    case 'ENAMETOOLONG':
      return new InvalidKeyError(`object key ${shown} is too long for the filesystem`, { cause: err });
    default:
      return new StoreUnavailableError(`filesystem error reading object ${shown}`, { cause: err });
  }
}

function notFound(key: string): ObjectNotFoundError {
  return new ObjectNotFoundError(`object ${JSON.stringify(key)} not found`);
}

/** An open descriptor of an object and what it is. */
interface Opened {
  fd: number;
  info: ObjectInfo;
}

/** The descriptor as an Opened, if it is a regular file (fstat'ed: `st`). */
function fileOpened(fd: number, st: Stats, key: string, signal: AbortSignal): Opened {
  signal.throwIfAborted();
  if (!st.isFile()) throw notFound(key);
  return { fd, info: { size: st.size, etag: etagOf(st.size, st.mtimeMs), lastModified: st.mtime } };
}

/** The link naming what descriptor `fd` is (Linux procfs). */
const procLink = (fd: number): string => `/proc/self/fd/${fd}`;

/** A failed readlink of {@link procLink}: undefined when there is no procfs to ask, else the error. */
function withoutProcfs(err: unknown): undefined {
  if (errnoOf(err) === 'ENOENT' && !procFdAvailable()) return undefined;
  throw err;
}

/** Closes a descriptor on the spot, ignoring errors (it was only read). */
function closeQuietly(fd: number): void {
  try {
    closeSync(fd);
  } catch {
    // nothing to do: the descriptor is gone either way
  }
}

function emptyBody(): Readable {
  return new Readable({
    read() {
      this.push(null);
    },
  });
}

/**
 * An ObjectStore over a local directory. Only regular files are objects; a key whose real path
 * (symlinks followed) leaves the real path of the root is refused with InvalidKeyError, while
 * symlinks that stay inside are followed.
 */
export class FilesystemStore implements ObjectStore {
  readonly root: string;
  /** Undefined until `auto` has looked at the root's filesystem. */
  #syncMetadata: boolean | undefined;
  #root: { path: string; at: number } | undefined;

  /** The mode decided so far (false until `auto` has decided): for closing what was opened. */
  get #sync(): boolean {
    return this.#syncMetadata === true;
  }

  constructor(options: FilesystemStoreOptions) {
    if (!isAbsolute(options.root)) {
      throw new InvalidLocationError('filesystem store root must be an absolute path');
    }
    this.root = options.root;
    const mode = options.metadata ?? 'auto';
    if (mode !== 'auto') this.#syncMetadata = mode === 'sync';
  }

  /**
   * Whether metadata calls (path walk, open, fstat, close) and small reads run synchronously; `auto`
   * decides on first use (and retries if the root is missing). Synchronous on local filesystems, as
   * nginx does, because the thread-pool round trips were most of a small download's cost: with this
   * and cheaper cache keys, headers and access lines, 4 KiB downloads with auth went from 0.22× to
   * 0.68–0.81× the requests per second of a bare Node server, 237 → ~210 µs CPU per request
   * (`npm run bench -- small-auth`). A network filesystem stays asynchronous: a hung server must not
   * freeze the event loop.
   */
  async metadataIsSync(): Promise<boolean> {
    if (this.#syncMetadata === undefined) {
      try {
        this.#syncMetadata = LOCAL_FILESYSTEMS.has((await statfs(this.root)).type);
      } catch {
        return false;
      }
    }
    return this.#syncMetadata;
  }

  /** The root's real path if resolved within the last second, else undefined. */
  #freshRoot(): string | undefined {
    return this.#root !== undefined && performance.now() - this.#root.at <= ROOT_RECHECK_MS ? this.#root.path : undefined;
  }

  #setRoot(path: string): string {
    this.#root = { path, at: performance.now() };
    return path;
  }

  /**
   * The root's real path, resolved again at most every second: a root that is itself a symlink may be
   * repointed (a volume swapped under a stable path) and is followed within a second.
   */
  #realRootSync(): string {
    return this.#freshRoot() ?? this.#setRoot(realpathSync.native(this.root));
  }

  async #realRoot(): Promise<string> {
    return this.#freshRoot() ?? this.#setRoot(await realpath(this.root));
  }

  /** `real` (the real path of `key`), after checking that it stays inside the root. */
  #insideRoot(key: string, real: string, realRoot: string): string {
    if (real === realRoot) throw notFound(key);
    if (!real.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep)) {
      throw new InvalidKeyError(`object key ${JSON.stringify(key)} resolves outside the store root`);
    }
    return real;
  }

  /**
   * Sync mode's shortcut to the descriptor: from the root's real path, lstat each directory of the key
   * and open the last segment with O_NOFOLLOW. That is a few calls where realpath(3) makes one per
   * component of the whole path; a symlink on the way (undefined) sends the key through realpath.
   */
  #openDirect(segments: string[]): number | undefined {
    const realRoot = this.#realRootSync();
    let path = realRoot.endsWith(sep) ? realRoot.slice(0, -1) : realRoot;
    for (let i = 0; i < segments.length - 1; i++) {
      path += sep + segments[i]!;
      if (lstatSync(path).isSymbolicLink()) return undefined;
    }
    try {
      return openSync(path + sep + segments[segments.length - 1]!, OPEN_FLAGS);
    } catch (err) {
      if (errnoOf(err) === 'ELOOP') return undefined;
      throw err;
    }
  }

  /**
   * The check of what was actually opened. The walk before the open (lstat of each directory, or
   * realpath) and the open are separate calls: whoever writes the store's volume can swap a directory
   * for a symlink between them, and then the open leads outside the root (test/stores/fs-race.test.ts
   * won that race over a thousand times in 20,000 reads before this check). So the kernel is asked
   * what the descriptor is (`/proc/self/fd/N`: `opened`), and anything outside the root's real path is
   * refused before a byte is read. False means: not inside the root as last resolved; the caller
   * resolves the root once more (it may have been repointed) and asks {@link #checkAgain}. Without
   * procfs (not Linux) there is nothing to ask (`opened` undefined), and the walk alone stands.
   */
  #openedInside(opened: string | undefined, realRoot: string): boolean {
    return opened === undefined || opened.startsWith(realRoot.endsWith(sep) ? realRoot : realRoot + sep);
  }

  #checkAgain(opened: string | undefined, key: string, realRoot: string): void {
    if (!this.#openedInside(opened, realRoot)) throw new InvalidKeyError(`object key ${JSON.stringify(key)} resolves outside the store root`);
  }

  /**
   * Opens the regular file `key` names and fstat's the descriptor, so size and etag describe the file
   * actually open (not a path that may be replaced meanwhile) and stat is refused exactly when a read
   * would be. The caller owns the returned descriptor. Sync mode makes every call on the spot, with
   * no promise on the way (a 4 KiB download made ~15 of them here before).
   */
  #openSync(key: string, signal: AbortSignal): Opened {
    const segments = keySegments(key);
    let fd = this.#openDirect(segments);
    if (fd === undefined) {
      const real = this.#insideRoot(key, realpathSync.native(join(this.root, ...segments)), this.#realRootSync());
      signal.throwIfAborted();
      fd = openSync(real, OPEN_FLAGS);
    }
    try {
      let opened: string | undefined;
      try {
        opened = readlinkSync(procLink(fd));
      } catch (err) {
        opened = withoutProcfs(err);
      }
      if (!this.#openedInside(opened, this.#realRootSync())) {
        this.#root = undefined;
        this.#checkAgain(opened, key, this.#realRootSync());
      }
      return fileOpened(fd, fstatSync(fd), key, signal);
    } catch (err) {
      closeQuietly(fd);
      throw err;
    }
  }

  /** {@link #openSync} on the thread pool. */
  async #openAsync(key: string, signal: AbortSignal): Promise<Opened> {
    const segments = keySegments(key);
    const real = this.#insideRoot(key, await realpath(join(this.root, ...segments)), await this.#realRoot());
    signal.throwIfAborted();
    const fd = await openAsync(real, OPEN_FLAGS);
    try {
      const opened = await readlink(procLink(fd)).catch(withoutProcfs);
      if (!this.#openedInside(opened, await this.#realRoot())) {
        this.#root = undefined;
        this.#checkAgain(opened, key, await this.#realRoot());
      }
      return fileOpened(fd, await fstatAsync(fd), key, signal);
    } catch (err) {
      await closeFd(fd, false);
      throw err;
    }
  }

  /** The descriptor and what it is, in the mode decided (deciding it first if `auto` has not yet). */
  #open(key: string, signal: AbortSignal): Opened | Promise<Opened> {
    if (this.#syncMetadata !== undefined) return this.#syncMetadata ? this.#openSync(key, signal) : this.#openAsync(key, signal);
    return this.metadataIsSync().then((sync) => (sync ? this.#openSync(key, signal) : this.#openAsync(key, signal)));
  }

  async stat(key: string, { signal }: StatOptions): Promise<ObjectInfo> {
    signal.throwIfAborted();
    try {
      const o = this.#open(key, signal);
      const { fd, info } = o instanceof Promise ? await o : o;
      await closeFd(fd, this.#sync);
      return info;
    } catch (err) {
      throw translate(err, key, signal);
    }
  }

  /**
   * In sync mode a file's body is ready at once (opening is all on the spot), so a small download
   * goes on in the same turn; on the thread pool it comes as a promise.
   */
  get(key: string, { signal, range }: GetOptions): PromiseOr<ObjectBody> {
    signal.throwIfAborted();
    let o: Opened | Promise<Opened>;
    try {
      o = this.#open(key, signal);
    } catch (err) {
      throw translate(err, key, signal);
    }
    if (o instanceof Promise) {
      return o.then(
        (opened) => this.#body(key, opened, range, signal),
        (err: unknown) => {
          throw translate(err, key, signal);
        },
      );
    }
    return this.#body(key, o, range, signal);
  }

  /** The body of an opened file (the descriptor is the body's now, or closed on a failure). */
  #body(key: string, { fd, info }: Opened, range: ByteRange | undefined, signal: AbortSignal): PromiseOr<ObjectBody> {
    try {
      const delivered = range === undefined ? undefined : fitRange(range, info.size);
      if (info.size === 0) return then(closeFd(fd, this.#sync), (): ObjectBody => ({ ...info, kind: 'stream', body: emptyBody() }));
      return fileBody(key, fd, info, delivered, signal, this.#sync);
    } catch (err) {
      return then(closeFd(fd, this.#sync), () => {
        throw translate(err, key, signal);
      });
    }
  }


  list(prefix: string, opts: ListOptions): AsyncIterable<ListedObject> {
    return listDirectory(
      {
        realRoot: () => this.#realRoot(),
        info: (st) => ({ size: st.size, etag: etagOf(st.size, st.mtimeMs), lastModified: st.mtime }),
        translate: (err, signal) => translate(err, prefix, signal),
      },
      prefix,
      opts,
    );
  }
}

/**
 * An open file as an ObjectBody: `reader` reads the descriptor in place; `stream()` makes a read
 * stream that owns the descriptor. Whichever the consumer uses closes it.
 */
function fileBody(key: string, fd: number, info: ObjectInfo, range: ByteRange | undefined, signal: AbortSignal, sync: boolean): ObjectBody {
  const start = range?.start ?? 0;
  const end = range?.end ?? info.size - 1;
  return {
    ...info,
    ...(range && { range }),
    kind: 'reader',
    reader: fileReader(fd, key, sync),
    stream() {
      // The read stream owns the descriptor (autoClose): it closes it on end, error or destroy.
      const source = createReadStream('', { fd, start, end, highWaterMark: READ_CHUNK, autoClose: true });
      return addAbortSignal(signal, withLengthCheck(source, end - start + 1));
    },
  };
}

/**
 * Positional reads on the descriptor with the callback API (FileHandle#read allocates a result
 * object and a promise wrapper per call, which showed in the profile of 1 GiB downloads). In sync
 * mode a read of up to SYNC_READ_MAX (a whole small artifact) is made on the spot: cheaper than the
 * thread pool's round trip, as nginx reads; `readSync` offers it without a promise. close() waits for
 * a read in progress on the thread pool, so the descriptor is never closed (and reused) under it;
 * with none, a sync-mode reader closes at once.
 */
function fileReader(fd: number, key: string, sync: boolean): ObjectReader {
  let pending: Promise<number> | undefined;
  let closed = false;
  let closing: PromiseOr<void>;
  const wasClosed = (): StoreUnavailableError => new StoreUnavailableError(`object ${JSON.stringify(key)} was closed`);
  const readOnTheSpot = (buffer: Buffer, length: number, position: number): number => {
    if (closed) throw wasClosed();
    try {
      return readSync(fd, buffer, 0, length, position);
    } catch (err) {
      throw new StoreUnavailableError(`filesystem error reading object ${JSON.stringify(key)}`, { cause: err });
    }
  };
  const reader: ObjectReader = {
    read(buffer, length, position) {
      // A throw in the executor is the rejection.
      if (sync && length <= SYNC_READ_MAX) return new Promise<number>((resolve) => resolve(readOnTheSpot(buffer, length, position)));
      if (closed) return Promise.reject(wasClosed());
      pending = new Promise<number>((resolve, reject) => {
        fsRead(fd, buffer, 0, length, position, (err, bytesRead) => {
          pending = undefined;
          if (err) reject(new StoreUnavailableError(`filesystem error reading object ${JSON.stringify(key)}`, { cause: err }));
          else resolve(bytesRead);
        });
      });
      return pending;
    },
    close() {
      if (closed) return closing;
      closed = true;
      closing = pending ? pending.catch(() => undefined).then(() => closeFd(fd, sync)) : closeFd(fd, sync);
      return closing;
    },
  };
  if (sync) {
    reader.readSync = (buffer, length, position) => {
      if (length > SYNC_READ_MAX) throw new RangeError(`a read on the spot is of at most ${SYNC_READ_MAX} bytes, not ${length}`);
      return readOnTheSpot(buffer, length, position);
    };
  }
  return reader;
}

/** Closes a descriptor, ignoring errors (it was only read); `sync` as the store's metadata calls (then at once). */
function closeFd(fd: number, sync: boolean): PromiseOr<void> {
  if (sync) {
    closeQuietly(fd);
    return;
  }
  return new Promise<void>((resolve) => fsClose(fd, () => resolve()));
}

const openAsync = promisify(fsOpen);
const fstatAsync = promisify(fsFstat);

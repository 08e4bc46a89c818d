import { constants, lstatSync } from 'node:fs';
import type { Stats } from 'node:fs';
import { lstat, open, readdir, readlink, realpath, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import { dirname, join, sep } from 'node:path';
import { checkListOptions, compareKeys, isValidKey } from './listing.ts';
import { keySegments } from './keys.ts';
import type { ListedObject, ListOptions, ObjectInfo } from './types.ts';

/** What the filesystem store lends its listing: its root and its shaping of answers and errors. */
export interface DirectoryListing {
  /** The root's real path, as the store resolves keys against it. */
  realRoot(): Promise<string>;
  /** The same ObjectInfo `stat` makes of a file's stats. */
  info(stats: Stats): ObjectInfo;
  /** The store's error translation (errno → store errors, the abort reason as it is). */
  translate(err: unknown, signal: AbortSignal): unknown;
}

interface Entry {
  name: string;
  /** Real path: a symlink's target once it is known to stay inside the root. */
  path: string;
  /** What to lstat: through the opened directory's link, or the symlink's target. */
  statPath: string;
  dir: boolean;
  /** What the entry sorts by among its siblings: a directory's keys all start with `name/`. */
  sortKey: string;
}

let procFd: boolean | undefined;

/** Whether this system has procfs's per-descriptor links (Linux); the filesystem store's checks use them. */
export function procFdAvailable(): boolean {
  if (procFd === undefined) {
    try {
      procFd = lstatSync('/proc/self/fd').isDirectory();
    } catch {
      procFd = false;
    }
  }
  return procFd;
}

function errnoOf(err: unknown): string | undefined {
  const code = (err as { code?: unknown } | null)?.code;
  return typeof code === 'string' ? code : undefined;
}

/** Gone between being named and being read: another writer removed it, so it is not listed. */
function vanished(err: unknown): boolean {
  const code = errnoOf(err);
  return code === 'ENOENT' || code === 'ENOTDIR' || code === 'ELOOP';
}

class Walk {
  readonly #inside: string;
  readonly #root: string;
  readonly #src: DirectoryListing;
  readonly #signal: AbortSignal;
  readonly #after: string | undefined;
  /** Real paths of the directories being walked, root to current: a symlink back to one is a loop. */
  readonly #open = new Set<string>();

  constructor(root: string, src: DirectoryListing, opts: ListOptions) {
    this.#root = root;
    this.#inside = root.endsWith(sep) ? root : root + sep;
    this.#src = src;
    this.#signal = opts.signal;
    this.#after = opts.after;
  }

  /** The real path of `path` if it stays inside the root (the root itself included), else undefined. */
  async #realInside(path: string): Promise<string | undefined> {
    const real = await realpath(path).catch((err: unknown) => {
      if (vanished(err)) return undefined;
      throw err;
    });
    return real !== undefined && (real === this.#root || real.startsWith(this.#inside)) ? real : undefined;
  }

  /**
   * `dir` opened, and the path its entries are read through: the directory's check (`#realInside`)
   * and its reading are separate calls, so whoever writes the volume could swap it for a symlink in
   * between and have the listing name what lies outside (test/stores/fs-race.test.ts). On Linux the
   * directory is opened, the kernel says what was opened (`/proc/self/fd/N`), and the entries are read
   * and lstat'ed through that link, which stays on the directory checked. Undefined when what was
   * opened is not inside the root (or is gone). Without procfs: `dir` itself, as before.
   */
  async #openDir(dir: string): Promise<{ via: string; handle?: FileHandle } | undefined> {
    if (!procFdAvailable()) return { via: dir };
    const handle = await open(dir, constants.O_RDONLY | constants.O_DIRECTORY | constants.O_NONBLOCK).catch((err: unknown) => {
      if (vanished(err)) return undefined;
      throw err;
    });
    if (handle === undefined) return undefined;
    const via = `/proc/self/fd/${handle.fd}`;
    const opened = await readlink(via).catch(() => undefined);
    if (opened !== undefined && (opened === this.#root || opened.startsWith(this.#inside))) return { via, handle };
    await handle.close();
    return undefined;
  }

  /** The entries of one directory (read through `via`) that are objects or directories to descend, in key order. */
  async #entries(dir: string, via: string, keyBase: string, fragment: string): Promise<Entry[]> {
    const dirents = await readdir(via, { withFileTypes: true }).catch((err: unknown) => {
      if (vanished(err)) return [];
      throw err;
    });
    const entries: Entry[] = [];
    for (const d of dirents) {
      // Names get would refuse (a backslash, a control character) are not objects of this store.
      if (!d.name.startsWith(fragment) || !isValidKey(keyBase + d.name)) continue;
      let path = join(dir, d.name);
      let statPath = join(via, d.name);
      let isDir = d.isDirectory();
      if (d.isSymbolicLink()) {
        // Followed like get follows it: only when its real path stays inside the root.
        const real = await this.#realInside(path);
        if (real === undefined) continue;
        const st = await stat(real).catch(() => undefined);
        if (st === undefined || (!st.isFile() && !st.isDirectory())) continue;
        path = real;
        statPath = real;
        isDir = st.isDirectory();
      } else if (!isDir && !d.isFile()) {
        continue;
      }
      if (isDir && this.#open.has(path)) continue;
      entries.push({ name: d.name, path, statPath, dir: isDir, sortKey: isDir ? `${d.name}/` : d.name });
    }
    this.#signal.throwIfAborted();
    return entries.sort((a, b) => compareKeys(a.sortKey, b.sortKey));
  }

  /**
   * Lists one directory, then each subdirectory where it falls in key order. Only the entries of the
   * directories on the way down are held, and (on Linux) one open descriptor per directory on the way
   * down, closed when its walk ends or the listing is abandoned.
   */
  async *walk(dir: string, keyBase: string, fragment: string): AsyncGenerator<ListedObject> {
    const opened = await this.#openDir(dir);
    if (opened === undefined) return;
    try {
      yield* this.#walkOpened(dir, opened.via, keyBase, fragment);
    } finally {
      await opened.handle?.close();
    }
  }

  async *#walkOpened(dir: string, via: string, keyBase: string, fragment: string): AsyncGenerator<ListedObject> {
    this.#open.add(dir);
    const after = this.#after;
    for (const entry of await this.#entries(dir, via, keyBase, fragment)) {
      const key = keyBase + entry.name;
      if (entry.dir) {
        const under = `${key}/`;
        // Every key below sorts before `after`: nothing to read there.
        if (after !== undefined && !after.startsWith(under) && compareKeys(under, after) < 0) continue;
        // A directory swapped for a symlink since it was read would take the walk elsewhere.
        if ((await this.#realInside(entry.path)) !== entry.path) continue;
        yield* this.walk(entry.path, under, '');
        continue;
      }
      if (after !== undefined && compareKeys(key, after) <= 0) continue;
      // lstat, through the opened directory (or at a symlink's checked target): a symlink there now was
      // put in since; it is not listed.
      const st = await lstat(entry.statPath).catch((err: unknown) => {
        if (vanished(err)) return undefined;
        throw err;
      });
      this.#signal.throwIfAborted();
      if (st?.isFile()) yield { key, ...this.#src.info(st) };
    }
    this.#open.delete(dir);
  }

  /**
   * The directory a prefix's complete segments name, if it exists inside the root. Its real ancestors
   * up to the root count as being walked: a symlink back to one of them is a loop from there too.
   */
  async start(dirKey: string): Promise<string | undefined> {
    if (dirKey === '') return this.#root;
    const dir = await this.#realInside(join(this.#root, ...keySegments(dirKey)));
    for (let up = dir; up !== undefined && up !== this.#root; ) {
      up = dirname(up);
      this.#open.add(up);
    }
    return dir;
  }
}

/**
 * A sorted walk of the directories under `prefix`: one directory is read at a time, its entries
 * sorted in key order (a directory as its name followed by `/`), and subdirectories walked in their
 * place. Regular files are the objects; symlinks are followed as `get` follows them, only while their
 * real path stays inside the root, and never back into a directory being walked.
 */
export async function* listDirectory(src: DirectoryListing, prefix: string, opts: ListOptions): AsyncGenerator<ListedObject> {
  const { signal } = opts;
  signal.throwIfAborted();
  checkListOptions(prefix, opts);
  try {
    const root = await src.realRoot();
    const cut = prefix.lastIndexOf('/');
    const walk = new Walk(root, src, opts);
    // A prefix without '/' (`xn`) names part of a file name at the root: no directory to descend.
    const dir = await walk.start(cut < 0 ? '' : prefix.slice(0, cut));
    if (dir !== undefined) yield* walk.walk(dir, prefix.slice(0, cut + 1), prefix.slice(cut + 1));
  } catch (err) {
    throw src.translate(err, signal);
  }
}

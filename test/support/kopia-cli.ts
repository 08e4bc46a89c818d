/**
 * The real kopia CLI for tests that make repositories at test time, and the checks that compare what
 * the reader shows of a snapshot with the source tree kopia read.
 *
 * Each `KopiaCli` has its own config file, cache and log directories under a work directory, the
 * password in KOPIA_PASSWORD (never on a command line), update checks and credential persistence
 * off, and auto-maintenance off: a test runs maintenance when it means to. A missing binary is an
 * error that says `npm run tools`: these tests never skip.
 */
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { chmod, lstat, mkdir, open, readdir, readlink, symlink, writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import type { Readable } from 'node:stream';
import { promisify } from 'node:util';
import type { DirEntry, Repository, Snapshot } from '../../src/kopia/repository.ts';
import { TOOLS_BIN, toolPath } from './real-cluster.ts';

const execFileAsync = promisify(execFile);

/** Velero's repository password (pkg/repository/keys/keys.go). */
export const VELERO_PASSWORD = 'static-passw0rd';

/**
 * What Velero's provider passes when it creates a repository (udmrepo/kopialib/backend/common.go):
 * hash, encryption and splitter, no ECC; kopia's own defaults otherwise (format v3, index v2, scrypt).
 */
export function veleroCreateFlags(encryption: 'AES256-GCM-HMAC-SHA256' | 'CHACHA20-POLY1305-HMAC-SHA256'): string[] {
  return ['--block-hash=BLAKE2B-256-128', `--encryption=${encryption}`, '--object-splitter=DYNAMIC-4M-BUZHASH', '--ecc-overhead-percent=0'];
}

/** The binary of `kopia` (kopia/kopia) or `kopia-velero` (Velero's fork); throws when it is not built. */
export function kopiaBinary(tool: 'kopia' | 'kopia-velero'): string {
  const bin = toolPath(tool);
  if (!bin) throw new Error(`${tool} is not in ${TOOLS_BIN}: run \`npm run tools\` (it builds kopia and kopia-velero from the Go module proxy)`);
  return bin;
}

export interface KopiaCliOptions {
  tool?: 'kopia' | 'kopia-velero';
  /** A private directory for the config file, caches and logs. */
  work: string;
  password: string;
  /** Kills a running kopia (SIGKILL) when aborted: a test's cleanup must not leave one behind. */
  signal?: AbortSignal;
}

/**
 * The longest one kopia command may take. Far above what they need (seconds); a kopia whose
 * storage vanished retries for a long time, and must not hold the test run.
 */
const KOPIA_TIMEOUT_MS = 4 * 60_000;

/** One kopia client (config file) connected to one repository. */
export class KopiaCli {
  readonly bin: string;
  readonly work: string;
  readonly cacheDir: string;
  readonly #env: NodeJS.ProcessEnv;
  readonly #signal: AbortSignal | undefined;

  constructor(options: KopiaCliOptions) {
    this.bin = kopiaBinary(options.tool ?? 'kopia');
    this.work = options.work;
    this.cacheDir = join(options.work, 'cache');
    this.#signal = options.signal;
    this.#env = {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      HOME: options.work,
      KOPIA_PASSWORD: options.password,
      KOPIA_CHECK_FOR_UPDATES: 'false',
      KOPIA_PERSIST_CREDENTIALS_ON_CONNECT: 'false',
    };
  }

  /** `kopia repository create filesystem --path=<path> --cache-directory=… <args>`. */
  async createFilesystem(path: string, args: string[] = []): Promise<void> {
    await mkdir(this.work, { recursive: true });
    await this.run('repository', 'create', 'filesystem', `--path=${path}`, `--cache-directory=${this.cacheDir}`, ...args);
  }

  /** Runs kopia; rejects with its stderr's tail when it fails. */
  async run(...args: string[]): Promise<string> {
    const argv = [`--config-file=${join(this.work, 'repository.config')}`, `--log-dir=${join(this.work, 'logs')}`, '--no-progress', '--no-auto-maintenance', ...args];
    try {
      const { stdout } = await execFileAsync(this.bin, argv, {
        env: this.#env,
        maxBuffer: 64 << 20,
        timeout: KOPIA_TIMEOUT_MS,
        killSignal: 'SIGKILL',
        ...(this.#signal && { signal: this.#signal }),
      });
      return stdout;
    } catch (err) {
      const e = err as { stderr?: string; message: string };
      throw new Error(`kopia ${args.join(' ')} failed: ${e.message}\n${(e.stderr ?? '').split('\n').slice(-15).join('\n')}`, { cause: err });
    }
  }

  async json<T>(...args: string[]): Promise<T> {
    return JSON.parse(await this.run(...args, '--json')) as T;
  }

  /** Snapshots `dir` (extra flags such as --override-source, --tags) and returns its manifest id. */
  async snapshot(dir: string, ...flags: string[]): Promise<string> {
    const made = await this.json<{ id: string }>('snapshot', 'create', dir, ...flags);
    return made.id;
  }

  /** `kopia snapshot list --all --json`: every snapshot manifest kopia sees. */
  async snapshots(): Promise<KopiaSnapshot[]> {
    return this.json<KopiaSnapshot[]>('snapshot', 'list', '--all');
  }
}

/** The fields of `kopia snapshot list --json` the tests compare. */
export interface KopiaSnapshot {
  id: string;
  source: { host: string; userName: string; path: string };
  description?: string;
  startTime: string;
  rootEntry: { obj: string };
  tags?: Record<string, string>;
  pins?: string[];
}

// ---------------------------------------------------------------- the source tree as lstat sees it

/** One entry of a source tree. Directory sizes are the total of the files below (kopia's summary). */
export interface SourceEntry {
  path: string;
  type: 'f' | 'd' | 's';
  /** Permission bits with setuid/setgid/sticky. */
  mode: number;
  size: number;
  mtimeNs: bigint;
  uid: number;
  gid: number;
  sha256?: string;
  target?: string;
}

export async function sha256OfStream(stream: Readable): Promise<string> {
  const h = createHash('sha256');
  for await (const chunk of stream) h.update(chunk as Buffer);
  return h.digest('hex');
}

/** Describes `root` (which must be a directory): every entry by its `/`-joined path, '' the root. */
export async function describeTree(root: string): Promise<Map<string, SourceEntry>> {
  const out = new Map<string, SourceEntry>();
  const walk = async (rel: string): Promise<number> => {
    const abs = rel === '' ? root : join(root, rel);
    const st = await lstat(abs, { bigint: true });
    const type = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 's' : 'f';
    const e: SourceEntry = { path: rel, type, mode: Number(st.mode & 0o7777n), size: Number(st.size), mtimeNs: st.mtimeNs, uid: Number(st.uid), gid: Number(st.gid) };
    out.set(rel, e);
    if (type === 'f') e.sha256 = await sha256OfStream(createReadStream(abs, { highWaterMark: 1 << 20 }));
    if (type === 's') e.target = await readlink(abs);
    if (type !== 'd') return type === 'f' ? e.size : 0;
    let total = 0;
    for (const name of await readdir(abs)) total += await walk(rel === '' ? name : `${rel}/${name}`);
    e.size = total;
    return total;
  };
  await walk('');
  return out;
}

/** Kopia's RFC 3339 time with up to nanoseconds as Unix nanoseconds. */
export function unixNanos(rfc3339: string): bigint {
  const m = /^(.*?)(?:\.(\d{1,9}))?(Z|[+-]\d\d:\d\d)$/.exec(rfc3339);
  if (!m) return -1n;
  return BigInt(Date.parse(`${m[1] ?? ''}${m[3] ?? ''}`)) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}

// ---------------------------------------------------------------- reader against source

export interface CompareOptions {
  signal: AbortSignal;
  /** Paths whose bytes are compared by the caller instead (e.g. a huge file). */
  skipBytes?: Set<string>;
}

/**
 * Walks the snapshot through the reader (listDirectory, stat, readLink, openFile by path) and lists
 * every way it differs from `source`: missing or extra names, type, size, mode, mtime, owner,
 * symlink target, file bytes (SHA-256 of the stream). Returns the problems and the number of entries.
 */
export async function compareSnapshot(repo: Repository, snap: Snapshot, source: Map<string, SourceEntry>, opts: CompareOptions): Promise<{ problems: string[]; entries: number }> {
  const problems: string[] = [];
  const seen = new Set<string>();
  const check = async (path: string, entry: DirEntry): Promise<void> => {
    seen.add(path);
    const want = source.get(path);
    const show = JSON.stringify(path);
    if (!want) {
      problems.push(`${show}: in the snapshot, not in the source`);
      return;
    }
    if (entry.type !== want.type) problems.push(`${show}: type ${entry.type}, source ${want.type}`);
    if (entry.size !== want.size) problems.push(`${show}: size ${entry.size}, source ${want.size}`);
    if (entry.mode !== want.mode) problems.push(`${show}: mode ${entry.mode.toString(8)}, source ${want.mode.toString(8)}`);
    if (unixNanos(entry.mtime) !== want.mtimeNs) problems.push(`${show}: mtime ${entry.mtime}, source ${want.mtimeNs} ns`);
    if (entry.uid !== want.uid || entry.gid !== want.gid) problems.push(`${show}: owner ${entry.uid}:${entry.gid}, source ${want.uid}:${want.gid}`);
    if (want.type === 's') {
      const target = await repo.readLink(snap, path, opts.signal);
      if (target !== want.target) problems.push(`${show}: symlink to ${JSON.stringify(target)}, source ${JSON.stringify(want.target)}`);
    }
    if (want.type === 'f' && !opts.skipBytes?.has(path)) {
      const f = await repo.openFile(snap, path, { signal: opts.signal });
      if (f.size !== want.size) problems.push(`${show}: object of ${f.size} bytes, source ${want.size}`);
      const got = await sha256OfStream(f.stream);
      if (got !== want.sha256) problems.push(`${show}: SHA-256 ${got}, source ${want.sha256 ?? '?'}`);
    }
    if (want.type === 'd' && entry.type === 'd') {
      const children = await repo.listDirectory(snap, path, opts.signal);
      for (const c of children) await check(path === '' ? c.name : `${path}/${c.name}`, c);
    }
  };
  await check('', snap.rootEntry);
  for (const path of source.keys()) if (!seen.has(path)) problems.push(`${JSON.stringify(path)}: in the source, not in the snapshot`);
  return { problems, entries: seen.size };
}

/**
 * Reads `ranges` of the file at `path` in the snapshot through openFile({range}) and compares each
 * with the same bytes of the source file; returns the problems.
 */
export async function compareRanges(repo: Repository, snap: Snapshot, path: string, sourceFile: string, ranges: { start: number; end: number }[], signal: AbortSignal): Promise<string[]> {
  const problems: string[] = [];
  const fh = await open(sourceFile, 'r');
  try {
    for (const r of ranges) {
      const want = Buffer.alloc(r.end - r.start + 1);
      const { bytesRead } = await fh.read(want, 0, want.length, r.start);
      const f = await repo.openFile(snap, path, { signal, range: r });
      const chunks: Buffer[] = [];
      for await (const c of f.stream) chunks.push(c as Buffer);
      const got = Buffer.concat(chunks);
      if (f.range.start !== r.start || f.range.end !== r.end) problems.push(`${path} [${r.start}, ${r.end}]: served as [${f.range.start}, ${f.range.end}]`);
      if (bytesRead !== want.length || !got.equals(want)) problems.push(`${path} [${r.start}, ${r.end}]: ${got.length} bytes differ from the source's ${bytesRead}`);
    }
  } finally {
    await fh.close();
  }
  return problems;
}

/**
 * Ranges of a file of `size` bytes: its first and last byte, one across each chunk boundary kopia
 * cut (`boundaries`), and `random` more of up to `maxLength` bytes from a seeded generator.
 */
export function rangesFor(size: number, boundaries: number[], random: number, maxLength: number, seed: number): { start: number; end: number }[] {
  const out = [{ start: 0, end: 0 }, { start: size - 1, end: size - 1 }];
  for (const b of boundaries) out.push({ start: Math.max(0, b - 1000), end: Math.min(size - 1, b + 999) });
  let x = seed >>> 0 || 1;
  const next = (n: number): number => {
    x ^= x << 13;
    x ^= x >>> 17;
    x ^= x << 5;
    return (x >>> 0) % n;
  };
  for (let i = 0; i < random; i++) {
    const start = Math.floor((next(1 << 30) / (1 << 30)) * size);
    const length = 1 + next(maxLength);
    out.push({ start, end: Math.min(size - 1, start + length - 1) });
  }
  return out;
}

// ---------------------------------------------------------------- a source tree with the hard cases

/** Depth of the deep directory chain in `writeOddTree`. */
export const DEEP_LEVELS = 40;

/** Names kopia must keep exactly: spaces, Unicode, `%`, `#`, `?`, a newline, dot-dot look-alikes. */
export const ODD_NAMES = ['with space.txt', 'ünïcödé 名前.txt', '100%.txt', '%2e%2e', '#hash', 'what?.txt', 'new\nline.txt', '..foo', '-dash', 'emoji 😀'];

/**
 * Writes a tree with the cases a reader gets wrong: files of 0 B and 1 B, `randomBytes` of random
 * bytes (more than kopia's 8 MiB maximum chunk is always several chunks), odd names, a chain of
 * `deepLevels` directories, empty directories, symlinks relative, absolute, dangling, to a directory
 * and out of the tree, and unusual modes.
 */
export async function writeOddTree(root: string, randomBytes: Buffer, deepLevels = DEEP_LEVELS): Promise<void> {
  const file = async (rel: string, data: string | Buffer, mode = 0o644): Promise<void> => {
    await mkdir(join(root, rel, '..'), { recursive: true });
    await writeFile(join(root, rel), data);
    await chmod(join(root, rel), mode);
  };
  await file('zero', '');
  await file('one', 'x');
  await file('hello.txt', 'hello from a real kopia snapshot\n');
  await file('random.bin', randomBytes, 0o600);
  await file('bin/run.sh', '#!/bin/sh\necho hi\n', 0o755);
  await file('bin/readonly', 'read only\n', 0o444);
  await file('bin/setgid', 'setgid bit\n', 0o2755);
  await file('bin/setuid', 'setuid bit\n', 0o4750);
  await mkdir(join(root, 'sticky'));
  await chmod(join(root, 'sticky'), 0o1777);
  for (const [i, name] of ODD_NAMES.entries()) await file(`odd names/${name}`, `odd name ${i}\n`);
  const deep = Array.from({ length: deepLevels }, (_, i) => `d${String(i + 1).padStart(2, '0')}`).join('/');
  await file(`deep/${deep}/bottom.txt`, 'at the bottom\n');
  await mkdir(join(root, 'deep', deep, 'empty-at-the-bottom'));
  await mkdir(join(root, 'empty-dir'));
  await chmod(join(root, 'empty-dir'), 0o700);
  await mkdir(join(root, 'links'));
  for (const [name, target] of [
    ['relative', '../hello.txt'],
    ['absolute', '/etc/hostname'],
    ['outside', '../../../outside-the-tree'],
    ['dangling', 'no/such/file'],
    ['to-dir', '../deep'],
    ['odd target', '../odd names/new\nline.txt'],
  ] as const) {
    await symlink(target, join(root, 'links', name));
  }
}

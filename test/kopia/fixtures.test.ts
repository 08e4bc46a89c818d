/**
 * The kopia repositories under test/fixtures/kopia are data for the Kopia reader, made once by
 * kopia itself (test/fixtures/kopia/make-fixtures.sh) and committed, so that no machine has to build
 * kopia to test the reader. Checked here without kopia: every file of each repository is there with
 * the size its manifest lists and nothing else is; the content index the manifest records points
 * inside those packs; each snapshot's entries agree with its summary and with the index (sizes,
 * chunk lists, multi-chunk files); each cipher and compression the README names is there; the
 * compacted repository shows its compactions. Then kopia and Velero's fork (built by
 * `npm run tools`) each restore every snapshot of a fresh copy, and the files must match the
 * manifest's SHA-256s: skipped, with its reason, where they are not built; a failure under CI=true.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { createHash } from 'node:crypto';
import { cp, lstat, mkdir, mkdtemp, readdir, readFile, readlink, rm, stat, truncate, unlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { missingTools, toolPath } from '../support/real-cluster.ts';
import type { Tool } from '../support/real-cluster.ts';

const FIXTURES = fileURLToPath(new URL('../fixtures/kopia/', import.meta.url));
const NAMES = ['velero-aes256gcm', 'velero-chacha20', 'compacted'] as const;
const execFileAsync = promisify(execFile);

// ---------------------------------------------------------------- the manifest (make-fixtures.sh)
interface BlobInfo {
  id: string;
  size: number;
}
interface Content {
  contentID: string;
  packFile: string;
  packOffset: number;
  length: number;
  originalLength: number;
  compression: number;
  compressionName: string;
  deleted: boolean;
}
interface Entry {
  path: string;
  type: 'f' | 'd' | 's';
  mode: string;
  mtime: string;
  mtimeUnixNano: string;
  size?: number;
  sha256?: string;
  target?: string;
  objectID: string;
  chunks?: { start: number; length: number; objectID: string }[];
}
interface Snapshot {
  id: string;
  source: { host: string; userName: string; path: string };
  sourceString: string;
  description: string;
  tags: Record<string, string>;
  pins: string[];
  rootObjectID: string;
  rootEntry: { type: string; obj: string; summ: { size: number; files: number; symlinks: number; dirs: number; maxTime: string; numFailed: number } };
  compression: string;
  tree: { big: [string, string, number, number?] };
  entries: Entry[];
}
interface Manifest {
  fixture: string;
  repository: {
    dir: string;
    password: string;
    owner: string;
    uniqueIDHex: string;
    formatBlob: { keyAlgo: string; encryption: string; buildVersion: string };
    hash: string;
    encryption: string;
    ecc: string;
    splitter: string;
    formatVersion: number;
    indexVersion: number;
    epochParameters: { EpochAdvanceOnCountThreshold: number; FullCheckpointFrequency: number };
    settings: { hash: string; splitter: string; encryption: string; password: string; owner: string };
    blobs: { count: number; totalSize: number; byPrefix: Record<string, number>; otherFiles: string[]; list: BlobInfo[] };
    contents: Content[];
  };
  snapshots: Snapshot[];
  deletedSnapshots: Omit<Snapshot, 'entries'>[];
}

async function loadManifest(dir: string): Promise<Manifest> {
  return JSON.parse(await readFile(join(dir, 'manifest.json'), 'utf8')) as Manifest;
}

// ---------------------------------------------------------------- the checks (each returns its problems)
/** The README's only non-blob file in a flat filesystem repository: its storage layout. */
const NOT_BLOBS = ['.shards'];
const BLOB_FILE = '.f'; // kopia's filesystem storage: blob <id> is the file <id>.f

/** Every listed blob is in repo/ with its size; nothing unlisted is there but the layout file. */
async function blobProblems(fixtureDir: string, m: Manifest): Promise<string[]> {
  const problems: string[] = [];
  const repo = join(fixtureDir, m.repository.dir);
  const listed = new Map(m.repository.blobs.list.map((b) => [b.id, b.size]));
  const names = await readdir(repo);
  for (const n of names) {
    if (NOT_BLOBS.includes(n)) continue;
    if (!n.endsWith(BLOB_FILE)) problems.push(`${n}: not a blob file and not ${NOT_BLOBS.join(', ')}`);
    else if (!listed.has(n.slice(0, -BLOB_FILE.length))) problems.push(`${n}: not in the manifest's blob list`);
  }
  for (const [id, size] of listed) {
    const st = await stat(join(repo, id + BLOB_FILE)).catch(() => undefined);
    if (!st?.isFile()) problems.push(`${id}: listed, missing from ${m.repository.dir}/`);
    else if (st.size !== size) problems.push(`${id}: ${st.size} bytes, the manifest says ${size}`);
  }
  for (const n of NOT_BLOBS) if (!names.includes(n)) problems.push(`${n}: missing`);
  if (JSON.stringify([...m.repository.blobs.otherFiles].sort()) !== JSON.stringify(NOT_BLOBS)) {
    problems.push(`the manifest names other files ${JSON.stringify(m.repository.blobs.otherFiles)}, the README only ${NOT_BLOBS.join(', ')}`);
  }
  // flat: no shard directories (kopia's sharded layout file with no default shards)
  const shards = JSON.parse(await readFile(join(repo, '.shards'), 'utf8').catch(() => '{}')) as { default?: unknown[] };
  if (!Array.isArray(shards.default) || shards.default.length !== 0) problems.push(`.shards is not the flat layout: ${JSON.stringify(shards)}`);
  // the manifest's own totals
  const { count, totalSize, byPrefix, list } = m.repository.blobs;
  if (count !== list.length) problems.push(`blob count ${count} != ${list.length} listed`);
  const sum = list.reduce((a, b) => a + b.size, 0);
  if (totalSize !== sum) problems.push(`blob totalSize ${totalSize} != ${sum}, the sum of the sizes`);
  const prefixes: Record<string, number> = {};
  for (const { id } of list) {
    const p = id.startsWith('kopia.') ? id : id.startsWith('_log') ? '_log' : /^x[nsrew]/.test(id) ? id.slice(0, 2) : id.slice(0, 1);
    prefixes[p] = (prefixes[p] ?? 0) + 1;
  }
  if (JSON.stringify(sortKeys(prefixes)) !== JSON.stringify(sortKeys(byPrefix))) problems.push(`byPrefix ${JSON.stringify(byPrefix)} != ${JSON.stringify(prefixes)}`);
  return problems;
}

/** The format blob (kopia.repository, plain JSON around its encrypted part) says what the manifest says. */
async function formatProblems(fixtureDir: string, m: Manifest): Promise<string[]> {
  const problems: string[] = [];
  const r = m.repository;
  let f: { uniqueID?: string; keyAlgo?: string; encryption?: string; buildVersion?: string; encryptedBlockFormat?: string };
  try {
    f = JSON.parse(await readFile(join(fixtureDir, r.dir, 'kopia.repository' + BLOB_FILE), 'utf8')) as typeof f;
  } catch (err) {
    return [`kopia.repository: ${(err as Error).message}`];
  }
  const uid = Buffer.from(f.uniqueID ?? '', 'base64').toString('hex');
  if (uid !== r.uniqueIDHex) problems.push(`kopia.repository uniqueID ${uid} != ${r.uniqueIDHex}`);
  for (const k of ['keyAlgo', 'encryption', 'buildVersion'] as const) {
    if (f[k] !== r.formatBlob[k]) problems.push(`kopia.repository ${k} ${f[k]} != ${r.formatBlob[k]}`);
  }
  if (!f.encryptedBlockFormat) problems.push('kopia.repository has no encryptedBlockFormat (the repository format, with its cipher)');
  // Velero's repository settings (pkg/repository/udmrepo/kopialib/backend/common.go and its password)
  const velero = { hash: 'BLAKE2B-256-128', splitter: 'DYNAMIC-4M-BUZHASH', password: 'static-passw0rd', owner: 'default@default' };
  for (const [k, v] of Object.entries(velero) as [keyof typeof velero, string][]) {
    if (r[k] !== v) problems.push(`${k} ${r[k]} != Velero's ${v}`);
    if (r.settings[k] !== v) problems.push(`settings.${k} ${r.settings[k]} != Velero's ${v}`);
  }
  if (r.settings.encryption !== r.encryption) problems.push(`settings.encryption ${r.settings.encryption} != ${r.encryption}`);
  if (r.formatVersion !== 3 || r.indexVersion !== 2 || r.ecc !== 'none') {
    problems.push(`format v${r.formatVersion}, index v${r.indexVersion}, ecc ${r.ecc}: kopia's defaults, as Velero leaves them, are v3, v2, none`);
  }
  return problems;
}

// AES256-GCM and ChaCha20-Poly1305 alike: a 12-byte nonce and a 16-byte tag around each content
const AEAD_OVERHEAD = 28;

/** The content index the manifest records (kopia's merged view) points inside the packs, without overlaps. */
function indexProblems(m: Manifest): string[] {
  const problems: string[] = [];
  const sizes = new Map(m.repository.blobs.list.map((b) => [b.id, b.size]));
  const byPack = new Map<string, Content[]>();
  const seen = new Set<string>();
  for (const c of m.repository.contents) {
    const at = `content ${c.contentID}`;
    if (seen.has(c.contentID)) problems.push(`${at}: twice in the index`);
    seen.add(c.contentID);
    // BLAKE2B-256-128: 128 bits; metadata contents carry a one-letter prefix (k directories, x indirect, m manifests)
    if (!/^[g-z]?[0-9a-f]{32}$/.test(c.contentID)) problems.push(`${at}: not a BLAKE2B-256-128 content ID`);
    const size = sizes.get(c.packFile);
    if (size === undefined) {
      problems.push(`${at}: its pack ${c.packFile} is not a blob`);
      continue;
    }
    // prefixed contents live in q packs, data contents in p packs
    const want = /^[g-z]/.test(c.contentID) ? 'q' : 'p';
    if (!c.packFile.startsWith(want)) problems.push(`${at}: in pack ${c.packFile}, expected a ${want} pack`);
    if (!(c.packOffset >= 0 && c.length > 0 && c.packOffset + c.length <= size)) {
      problems.push(`${at}: bytes ${c.packOffset}+${c.length} outside its pack of ${size}`);
    }
    if (c.compression === 0 && c.length !== c.originalLength + AEAD_OVERHEAD) {
      problems.push(`${at}: stored ${c.length} bytes for ${c.originalLength} uncompressed, not ${c.originalLength}+${AEAD_OVERHEAD}`);
    }
    if ((c.compression === 0) !== (c.compressionName === 'none')) problems.push(`${at}: compression ${c.compression} named ${c.compressionName}`);
    byPack.set(c.packFile, [...(byPack.get(c.packFile) ?? []), c]);
  }
  for (const [pack, cs] of byPack) {
    cs.sort((a, b) => a.packOffset - b.packOffset);
    for (let i = 1; i < cs.length; i++) {
      const prev = cs[i - 1]!;
      if (cs[i]!.packOffset < prev.packOffset + prev.length) problems.push(`pack ${pack}: ${prev.contentID} and ${cs[i]!.contentID} overlap`);
    }
  }
  for (const { id } of m.repository.blobs.list) if (/^[pq]/.test(id) && !byPack.has(id)) problems.push(`pack ${id}: holds no content of the index`);
  return problems;
}

/** One snapshot's entries agree with its root summary and with the content index. */
function snapshotProblems(m: Manifest, s: Snapshot): string[] {
  const problems: string[] = [];
  const contents = new Map(m.repository.contents.map((c) => [c.contentID, c]));
  const live = (id: string, what: string): Content | undefined => {
    const c = contents.get(id);
    if (!c || c.deleted) problems.push(`${what}: content ${id} is ${c ? 'deleted' : 'not in the index'}`);
    return c && !c.deleted ? c : undefined;
  };
  const at = `snapshot ${s.id}`;
  if (!/^[0-9a-f]{32}$/.test(s.id)) problems.push(`${at}: not a kopia manifest ID`);
  const paths = new Map(s.entries.map((e) => [e.path, e]));
  if (paths.size !== s.entries.length) problems.push(`${at}: an entry path appears twice`);
  const root = paths.get('.');
  if (root?.type !== 'd') problems.push(`${at}: no root directory entry`);
  if (s.rootObjectID !== s.rootEntry.obj || root?.objectID !== s.rootObjectID) problems.push(`${at}: root object ${s.rootObjectID}, entry ${s.rootEntry.obj}, '.' ${root?.objectID}`);

  // Velero's uploader's shape (pkg/uploader/kopia/snapshot.go): owner, description, pin, tags
  if (`${s.source.userName}@${s.source.host}` !== m.repository.owner) problems.push(`${at}: owner ${s.source.userName}@${s.source.host}`);
  if (s.sourceString !== `${s.source.userName}@${s.source.host}:${s.source.path}`) problems.push(`${at}: source string ${s.sourceString}`);
  if (s.description !== 'Kopia Uploader' || !s.pins.includes('velero-pin')) problems.push(`${at}: description ${s.description}, pins ${s.pins.join(',')}`);
  if (s.tags['tag:snapshot-uploader'] !== 'kopia' || s.tags['tag:snapshot-requester'] !== s.source.path.split('/')[0]) {
    problems.push(`${at}: tags ${JSON.stringify(s.tags)}`);
  }

  const files = s.entries.filter((e) => e.type === 'f');
  const links = s.entries.filter((e) => e.type === 's');
  const dirs = s.entries.filter((e) => e.type === 'd');
  const summ = s.rootEntry.summ;
  const sum = files.reduce((a, e) => a + (e.size ?? 0), 0);
  if (summ.size !== sum) problems.push(`${at}: summary size ${summ.size} != ${sum}, the sum of its file sizes`);
  if (summ.files !== files.length || summ.symlinks !== links.length || summ.dirs !== dirs.length || summ.numFailed !== 0) {
    problems.push(`${at}: summary ${summ.files} files, ${summ.symlinks} symlinks, ${summ.dirs} dirs; entries ${files.length}, ${links.length}, ${dirs.length}`);
  }
  const newest = [...files, ...links].reduce((a, e) => (BigInt(e.mtimeUnixNano) > a ? BigInt(e.mtimeUnixNano) : a), 0n);
  if (nanos(summ.maxTime) !== newest) problems.push(`${at}: summary maxTime ${summ.maxTime}, newest entry ${newest} ns`);

  for (const e of s.entries) {
    const where = `${at} ${e.path}`;
    if (BigInt(e.mtimeUnixNano) !== nanos(e.mtime)) problems.push(`${where}: mtime ${e.mtime} != ${e.mtimeUnixNano} ns`);
    if (e.path !== '.') {
      const parent = e.path.includes('/') ? e.path.slice(0, e.path.lastIndexOf('/')) : '.';
      if (paths.get(parent)?.type !== 'd') problems.push(`${where}: its directory ${parent} is not an entry`);
    }
    if (e.type === 'd') {
      if (!e.objectID.startsWith('k')) problems.push(`${where}: directory object ${e.objectID} is not a k content`);
      live(e.objectID, where);
    } else if (e.type === 's') {
      if (e.size !== Buffer.byteLength(e.target ?? '')) problems.push(`${where}: size ${e.size} != the length of its target ${e.target}`);
      const c = live(e.objectID, where);
      if (c && c.originalLength !== e.size) problems.push(`${where}: content holds ${c.originalLength} bytes, the target ${e.size}`);
    } else {
      const size = e.size ?? -1;
      if (!/^[0-9a-f]{64}$/.test(e.sha256 ?? '')) problems.push(`${where}: no SHA-256`);
      if (size === 0 && e.sha256 !== EMPTY_SHA256) problems.push(`${where}: empty, with the SHA-256 of something`);
      if (e.objectID.startsWith('I')) {
        // an indirect object: the x content behind I<id> holds the chunk list the manifest records
        live(e.objectID.slice(1), `${where} (chunk list)`);
        const chunks = e.chunks ?? [];
        if (chunks.length < 2) problems.push(`${where}: indirect object with ${chunks.length} chunks`);
        let next = 0;
        for (const ch of chunks) {
          if (ch.start !== next) problems.push(`${where}: chunk at ${ch.start}, expected ${next}`);
          const c = live(ch.objectID, `${where} chunk ${ch.start}`);
          if (c && c.originalLength !== ch.length) problems.push(`${where}: chunk ${ch.start} is ${ch.length} bytes, its content ${c.originalLength}`);
          next = ch.start + ch.length;
        }
        if (next !== size) problems.push(`${where}: chunks add up to ${next} bytes, the file has ${size}`);
      } else {
        if (e.chunks) problems.push(`${where}: a chunk list on a direct object`);
        const c = live(e.objectID, where);
        if (c && c.originalLength !== size) problems.push(`${where}: content holds ${c.originalLength} bytes, the file ${size}`);
      }
    }
  }
  return problems;
}

const EMPTY_SHA256 = createHash('sha256').digest('hex');
const COMPRESSIONS = ['none', 'zstd', 's2-default', 'gzip'];

/** What the README names for this fixture: its cipher and its compressions. */
function named(readme: string, fixture: string): { ciphers: string[]; compressions: string[] } {
  const bullet = new RegExp(`^- ${fixture}: (.*(?:\\n  .*)*)`, 'm').exec(readme)?.[1] ?? '';
  const compression = /compression (.*)/.exec(bullet)?.[1] ?? '';
  return {
    ciphers: bullet.match(/[A-Z0-9]+(?:-[A-Z0-9]+)*-HMAC-SHA256/g) ?? [],
    compressions: COMPRESSIONS.filter((c) => new RegExp(`(^|[ ,])${c}\\b`).test(compression)),
  };
}

/**
 * Each cipher and compression the README names for the fixture is there: the repository's cipher,
 * and a snapshot under each compression policy whose big file is stored that way (compression is
 * per content and kept only when it shrinks the content: the big file is chosen for it). In
 * velero-aes256gcm, the snapshot of Velero's own setting (none) and the zstd one hold multi-chunk files.
 */
function settingsProblems(m: Manifest, readme: string): string[] {
  const problems: string[] = [];
  const { ciphers, compressions } = named(readme, m.fixture);
  for (const c of ciphers) if (m.repository.encryption !== c) problems.push(`the README names ${c}, the repository uses ${m.repository.encryption}`);
  const contents = new Map(m.repository.contents.map((c) => [c.contentID, c]));
  for (const name of compressions) {
    const snaps = m.snapshots.filter((s) => s.compression === name);
    if (snaps.length === 0) problems.push(`the README names compression ${name}, no snapshot uses it`);
    for (const s of snaps) {
      const big = s.entries.find((e) => e.path === `big/${s.tree.big[0]}`);
      const ids = big?.chunks?.map((c) => c.objectID) ?? (big ? [big.objectID] : []);
      const stored = ids.map((id) => contents.get(id)?.compressionName);
      if (!big || stored.some((n) => n !== name)) problems.push(`snapshot ${s.id} (${name}): its big file is stored as ${stored.join(', ') || 'nothing'}`);
    }
  }
  for (const s of m.snapshots) if (!compressions.includes(s.compression) && compressions.length) problems.push(`snapshot ${s.id}: compression ${s.compression}, not named in the README`);
  if (m.fixture === 'velero-aes256gcm') {
    for (const name of ['none', 'zstd']) {
      if (!m.snapshots.some((s) => s.compression === name && s.entries.some((e) => e.objectID.startsWith('I')))) problems.push(`no multi-chunk file under compression ${name}`);
    }
  }
  return problems;
}

/**
 * The compacted repository: the deleted snapshot's contents collected, a deletion watermark, epoch
 * markers, single-epoch and range compactions, and superseded index blobs deleted.
 */
function compactionProblems(m: Manifest): string[] {
  const problems: string[] = [];
  const ids = m.repository.blobs.list.map((b) => b.id);
  const epochs = (p: string): Set<string> => new Set(ids.filter((id) => id.startsWith(p)).map((id) => /^x.(\d+)/.exec(id)?.[1] ?? '?'));
  if (m.deletedSnapshots.length !== 1) problems.push(`${m.deletedSnapshots.length} deleted snapshots, the README says one`);
  for (const d of m.deletedSnapshots) {
    if (m.snapshots.some((s) => s.id === d.id)) problems.push(`deleted snapshot ${d.id} is still listed`);
    if (m.repository.contents.some((c) => c.contentID === d.rootObjectID && !c.deleted)) problems.push(`deleted snapshot ${d.id}: its root directory was not collected`);
  }
  for (const p of ['xw', 'xe', 'xs', 'xr', 'xn']) if (!ids.some((id) => id.startsWith(p))) problems.push(`no ${p} blob`);
  if (!ids.some((id) => /^xr\d+_\d+_/.test(id))) problems.push('no range compaction xr<from>_<to>');
  const compacted = [...epochs('xs')];
  const uncompactedLeft = epochs('xn');
  if (!compacted.some((e) => !uncompactedLeft.has(e))) problems.push(`every compacted epoch (${compacted.join(',')}) still has its xn blobs: none were deleted`);
  const ep = m.repository.epochParameters;
  if (ep.EpochAdvanceOnCountThreshold !== 10 || ep.FullCheckpointFrequency !== 2) problems.push(`epoch parameters ${JSON.stringify(ep)}`);
  return problems;
}

// ---------------------------------------------------------------- kopia's restore
interface Found {
  type: 'f' | 'd' | 's';
  mode: string;
  mtimeUnixNano: string;
  size?: number;
  sha256?: string;
  target?: string;
}
async function describeTree(root: string): Promise<Map<string, Found>> {
  const out = new Map<string, Found>();
  const walk = async (rel: string): Promise<void> => {
    const abs = rel === '.' ? root : join(root, rel);
    const st = await lstat(abs, { bigint: true });
    const type = st.isDirectory() ? 'd' : st.isSymbolicLink() ? 's' : 'f';
    const e: Found = { type, mode: '0' + (Number(st.mode) & 0o7777).toString(8), mtimeUnixNano: String(st.mtimeNs) };
    if (type === 'f') {
      const b = await readFile(abs);
      e.size = b.length;
      e.sha256 = createHash('sha256').update(b).digest('hex');
    }
    if (type === 's') e.target = await readlink(abs);
    out.set(rel, e);
    if (type === 'd') for (const n of await readdir(abs)) await walk(rel === '.' ? n : `${rel}/${n}`);
  };
  await walk('.');
  return out;
}

/** A restored tree against the snapshot's entries (uid/gid aside: they are the restoring user's). */
function restoreProblems(found: Map<string, Found>, s: Snapshot): string[] {
  const problems: string[] = [];
  const left = new Map(found);
  for (const e of s.entries) {
    const g = left.get(e.path);
    left.delete(e.path);
    if (!g) {
      problems.push(`${e.path}: not restored`);
      continue;
    }
    if (g.type !== e.type) problems.push(`${e.path}: restored as type ${g.type}, not ${e.type}`);
    if (e.type === 'f' && (g.size !== e.size || g.sha256 !== e.sha256)) problems.push(`${e.path}: restored ${g.size} bytes SHA-256 ${g.sha256}, the manifest says ${e.size} ${e.sha256}`);
    if (e.type === 's' && g.target !== e.target) problems.push(`${e.path}: restored pointing to ${g.target}, not ${e.target}`);
    // kopia's restore gives a directory the newest mtime below it, and the root the target's own mode
    if (e.type === 'f' && g.mtimeUnixNano !== e.mtimeUnixNano) problems.push(`${e.path}: restored mtime ${g.mtimeUnixNano} != ${e.mtimeUnixNano}`);
    if (e.type !== 's' && e.path !== '.' && g.mode !== e.mode) problems.push(`${e.path}: restored mode ${g.mode} != ${e.mode}`);
  }
  for (const p of left.keys()) problems.push(`${p}: restored, not in the manifest`);
  return problems;
}

/** Restores every snapshot of a fresh copy of the fixture (new mtimes, as a checkout gives) with BIN. */
async function kopiaProblems(bin: string, fixtureDir: string, m: Manifest, work: string): Promise<string[]> {
  const problems: string[] = [];
  await mkdir(work, { recursive: true });
  const repo = join(work, 'repo');
  await cp(join(fixtureDir, m.repository.dir), repo, { recursive: true });
  const env = {
    PATH: process.env.PATH ?? '/usr/bin:/bin',
    HOME: work,
    KOPIA_PASSWORD: m.repository.password,
    KOPIA_CHECK_FOR_UPDATES: 'false',
    KOPIA_PERSIST_CREDENTIALS_ON_CONNECT: 'false',
  };
  const kopia = async (...args: string[]): Promise<string> => {
    const { stdout } = await execFileAsync(bin, [`--config-file=${join(work, 'repo.config')}`, `--log-dir=${join(work, 'logs')}`, '--no-progress', ...args], {
      env,
      maxBuffer: 64 << 20,
      timeout: 120_000,
    });
    return stdout;
  };
  const [user, host] = m.repository.owner.split('@') as [string, string];
  await kopia('repository', 'connect', 'filesystem', `--path=${repo}`, `--cache-directory=${join(work, 'cache')}`, `--override-hostname=${host}`, `--override-username=${user}`, '--readonly');
  const listed = (JSON.parse(await kopia('snapshot', 'list', '--all', '--json')) as { id: string }[]).map((x) => x.id).sort();
  const want = m.snapshots.map((s) => s.id).sort();
  if (JSON.stringify(listed) !== JSON.stringify(want)) problems.push(`kopia lists snapshots ${listed.join(', ')}, the manifest ${want.join(', ')}`);
  for (const [i, s] of m.snapshots.entries()) {
    const target = join(work, `restore-${i}`);
    await kopia('snapshot', 'restore', s.id, target);
    problems.push(...restoreProblems(await describeTree(target), s).map((p) => `snapshot ${s.id}: ${p}`));
  }
  return problems;
}

// ---------------------------------------------------------------- helpers
function nanos(rfc3339: string): bigint {
  const m = /^(.*?)(?:\.(\d{1,9}))?Z$/.exec(rfc3339);
  if (!m) return -1n;
  return BigInt(Date.parse(`${m[1]}Z`)) * 1_000_000n + BigInt((m[2] ?? '').padEnd(9, '0'));
}
function sortKeys(o: Record<string, number>): [string, number][] {
  return Object.entries(o).sort(([a], [b]) => (a < b ? -1 : a > b ? 1 : 0));
}
function noProblems(problems: string[]): void {
  assert.deepEqual(problems, [], problems.join('\n'));
}

// ---------------------------------------------------------------- the tests
describe('kopia fixtures', () => {
  let readme: string;
  before(async () => {
    readme = await readFile(join(FIXTURES, 'README.md'), 'utf8');
  });

  test('the fixture dirs are the three the README describes, each a repo/ and a manifest.json', async () => {
    const dirs = (await readdir(FIXTURES, { withFileTypes: true })).filter((d) => d.isDirectory()).map((d) => d.name).sort();
    assert.deepEqual(dirs, [...NAMES].sort());
    for (const n of NAMES) {
      assert.deepEqual((await readdir(join(FIXTURES, n))).sort(), ['manifest.json', 'repo'], n);
      assert.match(readme, new RegExp(`^- ${n}: `, 'm'), `the README describes ${n}`);
      assert.equal((await loadManifest(join(FIXTURES, n))).fixture, n);
    }
    // what the README names is really read by the settings check, not lost to a rewording
    assert.deepEqual(named(readme, 'velero-aes256gcm'), { ciphers: ['AES256-GCM-HMAC-SHA256'], compressions: ['none', 'zstd', 's2-default', 'gzip'] });
    assert.deepEqual(named(readme, 'velero-chacha20'), { ciphers: ['CHACHA20-POLY1305-HMAC-SHA256'], compressions: ['none', 'zstd'] });
  });

  for (const name of NAMES) {
    describe(name, () => {
      const dir = join(FIXTURES, name);
      let m: Manifest;
      before(async () => {
        m = await loadManifest(dir);
      });

      test('every blob the manifest lists is in repo/ with its size, and nothing else but .shards', async () => {
        noProblems(await blobProblems(dir, m));
      });
      test('the format blob and the settings are what the manifest says, with Velero\'s settings', async () => {
        noProblems(await formatProblems(dir, m));
      });
      test('the content index points inside the packs', () => {
        noProblems(indexProblems(m));
      });
      test('each snapshot agrees with its summary and with the content index', () => {
        assert.ok(m.snapshots.length >= 2);
        noProblems(m.snapshots.flatMap((s) => snapshotProblems(m, s)));
      });
      test('the cipher and the compressions the README names are there', () => {
        noProblems(settingsProblems(m, readme));
      });
      if (name === 'compacted') {
        test('the compactions the README names are there', () => {
          noProblems(compactionProblems(m));
        });
      }
    });
  }

  for (const tool of ['kopia', 'kopia-velero'] satisfies Tool[]) {
    const bin = toolPath(tool);
    const skip = missingTools(tool);
    describe(`every snapshot restored by ${tool} from a fresh copy equals its manifest`, { skip }, () => {
      let work: string;
      before(async () => {
        work = await mkdtemp(join(tmpdir(), `vds-${tool}-`));
      });
      after(() => (work ? rm(work, { recursive: true, force: true }) : undefined));
      for (const name of NAMES) {
        test(name, async () => {
          const dir = join(FIXTURES, name);
          noProblems(await kopiaProblems(bin!, dir, await loadManifest(dir), join(work, name)));
        });
      }
    });
  }

  describe('the checks catch a broken copy', () => {
    let work: string;
    let m: Manifest;
    const src = join(FIXTURES, 'velero-chacha20');
    before(async () => {
      work = await mkdtemp(join(tmpdir(), 'vds-kopia-broken-'));
      m = await loadManifest(src);
    });
    after(() => (work ? rm(work, { recursive: true, force: true }) : undefined));

    /** A fresh copy of the fixture in its own dir, broken by `breakIt`. */
    const copy = async (label: string, breakIt: (repo: string) => Promise<void>): Promise<string> => {
      const dir = join(work, label);
      await cp(src, dir, { recursive: true });
      await breakIt(join(dir, 'repo'));
      return dir;
    };
    const pack = (mm: Manifest): BlobInfo => mm.repository.blobs.list.find((b) => b.id.startsWith('p'))!;
    const clone = (): Manifest => structuredClone(m);

    test('a blob shortened by a byte, missing, or one too many; a line-ending conversion', async () => {
      assert.match((await blobProblems(await copy('short', (r) => truncate(join(r, pack(m).id + '.f'), pack(m).size - 1)), m)).join('\n'), /bytes, the manifest says/);
      assert.match((await blobProblems(await copy('missing', (r) => unlink(join(r, pack(m).id + '.f'))), m)).join('\n'), /listed, missing/);
      assert.match((await blobProblems(await copy('extra', (r) => writeFile(join(r, 'p0123.f'), 'x')), m)).join('\n'), /p0123\.f: not in the manifest/);
      assert.match((await blobProblems(await copy('stray', (r) => writeFile(join(r, 'notes.txt'), 'x')), m)).join('\n'), /notes\.txt: not a blob file/);
      const crlf = await copy('crlf', async (r) => {
        const f = join(r, 'kopia.repository.f');
        await writeFile(f, (await readFile(f, 'utf8')).replace(/\n/g, '\r\n'));
      });
      assert.match((await blobProblems(crlf, m)).join('\n'), /kopia\.repository: \d+ bytes, the manifest says/);
    });

    test('a format blob or settings that disagree with the manifest', async () => {
      const other = await copy('format', async (r) => {
        const f = join(r, 'kopia.repository.f');
        await writeFile(f, (await readFile(f, 'utf8')).replace('scrypt-65536-8-1', 'pbkdf2-sha256-600000'));
      });
      assert.match((await formatProblems(other, m)).join('\n'), /keyAlgo pbkdf2/);
      const mm = clone();
      mm.repository.splitter = 'FIXED-4M';
      assert.match((await formatProblems(src, mm)).join('\n'), /splitter FIXED-4M != Velero's/);
    });

    test('an index entry outside its pack, in the wrong pack, or overlapping another', () => {
      const out = clone();
      out.repository.contents.find((c) => c.packFile === pack(out).id)!.packOffset = pack(out).size - 10;
      assert.match(indexProblems(out).join('\n'), /outside its pack/);
      const wrong = clone();
      const dirContent = wrong.repository.contents.find((c) => c.contentID.startsWith('k'))!;
      dirContent.packFile = pack(wrong).id;
      assert.match(indexProblems(wrong).join('\n'), /expected a q pack/);
      const overlap = clone();
      const [a, b] = overlap.repository.contents.filter((c) => c.packFile === pack(overlap).id).sort((x, y) => x.packOffset - y.packOffset);
      b!.packOffset = a!.packOffset + 1;
      assert.match(indexProblems(overlap).join('\n'), /overlap/);
    });

    test('a snapshot whose sizes, chunks, summary or contents do not add up', async () => {
      const size = clone();
      const s = size.snapshots[0]!;
      s.entries.find((e) => e.path === 'hello.txt')!.size! += 1;
      assert.match(snapshotProblems(size, s).join('\n'), /summary size .* sum of its file sizes[\s\S]*hello\.txt: content holds/);
      const gone = clone();
      const g = gone.snapshots[0]!;
      const dirEntry = g.entries.find((e) => e.path === 'nested/a')!;
      gone.repository.contents = gone.repository.contents.filter((c) => c.contentID !== dirEntry.objectID);
      assert.match(snapshotProblems(gone, g).join('\n'), /nested\/a: content k[0-9a-f]+ is not in the index/);
      const summary = clone();
      summary.snapshots[0]!.rootEntry.summ.files += 1;
      assert.match(snapshotProblems(summary, summary.snapshots[0]!).join('\n'), /summary 12 files/);
      // chunk lists: the aes fixture holds the multi-chunk files
      const aes = await loadManifest(join(FIXTURES, 'velero-aes256gcm'));
      const big = aes.snapshots[0]!.entries.find((e) => e.chunks)!;
      big.chunks![1]!.start += 1;
      assert.match(snapshotProblems(aes, aes.snapshots[0]!).join('\n'), /chunk at \d+, expected \d+[\s\S]*chunks add up to/);
    });

    test('a cipher or compression the README names that is not there', () => {
      const cipher = clone();
      cipher.repository.encryption = 'AES256-GCM-HMAC-SHA256';
      assert.match(settingsProblems(cipher, readme).join('\n'), /names CHACHA20-POLY1305-HMAC-SHA256, the repository uses AES256/);
      const comp = clone();
      const z = comp.snapshots.find((s) => s.compression === 'zstd')!;
      for (const c of comp.repository.contents) if (c.compressionName === 'zstd') c.compressionName = 'none';
      assert.match(settingsProblems(comp, readme).join('\n'), new RegExp(`snapshot ${z.id} \\(zstd\\): its big file is stored as none`));
      comp.snapshots = comp.snapshots.filter((s) => s !== z);
      assert.match(settingsProblems(comp, readme).join('\n'), /names compression zstd, no snapshot uses it/);
    });

    test('a compacted repository without its compactions', async () => {
      const c = await loadManifest(join(FIXTURES, 'compacted'));
      const noRange = structuredClone(c);
      noRange.repository.blobs.list = noRange.repository.blobs.list.filter((b) => !b.id.startsWith('xr'));
      assert.match(compactionProblems(noRange).join('\n'), /no xr blob/);
      const kept = structuredClone(c);
      for (const e of ['0', '1']) kept.repository.blobs.list.push({ id: `xn${e}_0123-s4567-c1`, size: 100 });
      assert.match(compactionProblems(kept).join('\n'), /still has its xn blobs/);
      const uncollected = structuredClone(c);
      uncollected.repository.contents.push({ ...uncollected.repository.contents[0]!, contentID: c.deletedSnapshots[0]!.rootObjectID });
      assert.match(compactionProblems(uncollected).join('\n'), /root directory was not collected/);
    });

    test('a restored tree that differs from the manifest', () => {
      const s = m.snapshots[0]!;
      // the tree exactly as the manifest has it, then changed
      const found = new Map<string, Found>(s.entries.map((e) => [e.path, { type: e.type, mode: e.mode, mtimeUnixNano: e.mtimeUnixNano, size: e.size, sha256: e.sha256, target: e.target }]));
      noProblems(restoreProblems(found, s));
      const flipped = new Map(found);
      flipped.set('hello.txt', { ...found.get('hello.txt')!, sha256: EMPTY_SHA256 });
      flipped.set('links/to-hello', { ...found.get('links/to-hello')!, target: '../elsewhere' });
      flipped.delete('empty.txt');
      flipped.set('extra.txt', { type: 'f', mode: '0644', mtimeUnixNano: '0', size: 0, sha256: EMPTY_SHA256 });
      const problems = restoreProblems(flipped, s).join('\n');
      for (const re of [/hello\.txt: restored \d+ bytes SHA-256/, /to-hello: restored pointing/, /empty\.txt: not restored/, /extra\.txt: restored, not in/]) assert.match(problems, re);
    });
  });
});

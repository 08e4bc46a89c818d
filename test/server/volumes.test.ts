/**
 * The volume data routes over a real kopia repository (a committed fixture made by kopia, laid out as
 * in a bucket) read through the real FilesystemStore and the real reader. The only stand-ins are the
 * token table and a volume resolver that names the fixture's snapshots (the resolvers have their own
 * tests; here the HTTP layer is under test).
 */
import assert from 'node:assert/strict';
import { createHash } from 'node:crypto';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Readable, Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import request from 'supertest';
import tar from 'tar-stream';
import { StaticTokenAuthenticator } from '../../src/auth/static-tokens.ts';
import { deriveFormatKey } from '../../src/kopia/format.ts';
import { KeyCache } from '../../src/kopia/key-cache.ts';
import { RepositoryPool } from '../../src/kopia/pool.ts';
import { createApp } from '../../src/server/app.ts';
import { compareNames, writeTree } from '../../src/server/volumes.ts';
import type { ArchiveSource } from '../../src/server/volumes.ts';
import { createLogger } from '../../src/server/logging.ts';
import { FilesystemStore } from '../../src/stores/fs.ts';
import type { StoreSpec } from '../../src/stores/spec.ts';
import { NotFoundError } from '../../src/velero/errors.ts';
import { LocalResolver } from '../../src/velero/resolve.ts';
import type { BackupVolume, VolumeRepository, VolumeResolver } from '../../src/velero/volumes.ts';
import { loadManifest, PASSWORD } from '../kopia/fixture-support.ts';
import type { Manifest, ManifestEntry } from '../kopia/fixture-support.ts';
import { binary } from '../support/http.ts';
import { RecordingAuthorizer } from '../support/recording-authorizer.ts';
import { copyFixtureAsObjects } from '../support/kopia-layout.ts';
import { untar } from '../support/tar.ts';

const TOKEN = 'volume-token-for-tests-0123456789';
const auth = { Authorization: `Bearer ${TOKEN}` };
const SPEC: StoreSpec = { name: 'data-dir', provider: 'filesystem', bucket: '', prefix: '', config: {} };
const BASE = '/v1/namespaces/velero/backups/nightly/volumes';

/** A volume resolver that knows one backup, `nightly`, whose volumes are the fixture's snapshots. */
class FixtureVolumes implements VolumeResolver {
  calls = 0;
  readonly list: BackupVolume[];
  readonly password: string;
  constructor(list: BackupVolume[], password: string) {
    this.list = list;
    this.password = password;
  }
  volumes(namespace: string, backup: string): Promise<BackupVolume[]> {
    this.calls++;
    if (namespace !== 'velero' || backup !== 'nightly') return Promise.reject(new NotFoundError(`backups.velero.io "${backup}" not found`, { group: 'velero.io', kind: 'backups', name: backup }));
    return Promise.resolve(this.list);
  }
  async repository(namespace: string, backup: string, volumeID: string): Promise<VolumeRepository> {
    const volume = (await this.volumes(namespace, backup)).find((v) => v.id === volumeID);
    if (!volume) throw new NotFoundError(`volume "${volumeID}" not found in backup "${backup}"`, { kind: 'volumes', name: volumeID });
    return { volume, spec: SPEC, prefix: 'kopia/ns1/', snapshotID: volume.snapshotID, password: this.password };
  }
}

interface Listed {
  name: string;
  type: string;
  size: number;
  mode: string;
}
interface Json {
  kind: string;
  message: string;
  reason: string;
  path: string;
  target: string;
  volumes: BackupVolume[];
  entries: Listed[];
  continue?: string;
}
const json = (res: { body: unknown }): Json => res.body as Json;

let dir: string;
let manifest: Manifest;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');

function setup(password = PASSWORD) {
  const snaps = manifest.snapshots;
  const volumes: BackupVolume[] = snaps.map((s, i) => ({
    id: `ns1:pod-${i}:vol-${s.compression}`,
    kind: 'PodVolumeBackup',
    namespace: 'ns1',
    pod: `pod-${i}`,
    volume: `vol-${s.compression}`,
    uploader: 'kopia',
    snapshotID: s.id,
  }));
  volumes.push({ id: 'ns1:gone', kind: 'DataUpload', namespace: 'ns1', pvc: 'gone', uploader: 'kopia', snapshotID: '0123456789abcdef0123456789abcdef' });
  const resolver = new FixtureVolumes(volumes, password);
  const authorizer = new RecordingAuthorizer();
  let raw = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw += chunk.toString();
      cb();
    },
  });
  const store = new FilesystemStore({ root: dir });
  const app = createApp({
    authenticator: StaticTokenAuthenticator.parse(`${TOKEN},alice,uid-a,"team-a"\n`),
    authorizer,
    resolver: new LocalResolver('velero', [SPEC]),
    stores: { forSpec: () => Promise.resolve(store) },
    volumes: { resolver, pool: new RepositoryPool({ keys: new KeyCache(deriveFormatKey) }) },
    log: createLogger('debug', sink),
    health: { ready: true },
    info: () => ({}),
  });
  return { app, resolver, authorizer, log: () => raw };
}

let s: ReturnType<typeof setup>;

/** The fixture snapshot under compression `c`, its volume's URL, and one entry by path. */
function snapshotOf(c: string) {
  const i = manifest.snapshots.findIndex((x) => x.compression === c);
  const snap = manifest.snapshots[i]!;
  const url = `${BASE}/ns1:pod-${i}:vol-${c}`;
  const entry = (path: string): ManifestEntry => snap.entries.find((e) => e.path === path)!;
  return { snap, url, entry };
}

const encodePath = (p: string): string => p.split('/').map(encodeURIComponent).join('/');

before(async () => {
  manifest = await loadManifest('velero-aes256gcm');
  dir = await mkdtemp(join(tmpdir(), 'vds-volumes-'));
  await copyFixtureAsObjects('velero-aes256gcm', dir, 'kopia/ns1/');
  s = setup();
});
after(async () => {
  await rm(dir, { recursive: true, force: true });
});

describe('the volumes of a backup', () => {
  test('lists them after authorizing get on backups/volumedata for the backup', async () => {
    const res = await request(s.app).get(BASE).set(auth);
    assert.equal(res.status, 200);
    assert.equal(json(res).kind, 'BackupVolumeList');
    assert.deepEqual(
      json(res).volumes.map((v: BackupVolume) => v.snapshotID),
      [...manifest.snapshots.map((x) => x.id), '0123456789abcdef0123456789abcdef'],
    );
    assert.deepEqual(s.authorizer.asked.at(-1), { group: 'velero.io', resource: 'backups', subresource: 'volumedata', verb: 'get', namespace: 'velero', name: 'nightly' });
  });

  test('a caller refused volumedata learns nothing: 403 before any volume is looked up', async () => {
    const d = setup();
    d.authorizer.deny = true;
    for (const path of ['', '/ns1:pod-0:vol-none/files/hello.txt', '/ns1:pod-0:vol-none/archive/', '/no:such/files/x']) {
      const res = await request(d.app).get(BASE + path).set(auth);
      assert.equal(res.status, 403, path);
      assert.match(json(res).message, /cannot get resource "backups\/volumedata"/);
    }
    assert.equal(d.resolver.calls, 0);
  });

  test('no token: 401 whatever the path, even one with ".."', async () => {
    for (const path of ['', '/ns1:pod-0:vol-none/files/%2e%2e/etc/passwd', '/x/archive/']) {
      const res = await request(s.app).get(BASE + path);
      assert.equal(res.status, 401, path);
    }
  });

  test('an unknown backup is 404; POST is 405', async () => {
    const res = await request(s.app).get('/v1/namespaces/velero/backups/other/volumes').set(auth);
    assert.equal(res.status, 404);
    assert.equal((await request(s.app).post(BASE).set(auth)).status, 405);
  });
});

describe('files inside a volume', () => {
  for (const c of ['none', 'zstd', 's2-default', 'gzip']) {
    test(`every file of the ${c} snapshot, byte for byte, with its headers`, async () => {
      const { snap, url } = snapshotOf(c);
      for (const e of snap.entries.filter((x) => x.type === 'f')) {
        const res = await binary(request(s.app).get(`${url}/files/${encodePath(e.path)}`).set(auth));
        assert.equal(res.status, 200, e.path);
        assert.equal(sha(res.body as Buffer), e.sha256, e.path);
        assert.equal(res.headers['content-length'], String(e.size));
        assert.equal(res.headers.etag, `"${e.objectID}"`);
        assert.equal(res.headers['last-modified'], new Date(Date.parse(e.mtime)).toUTCString());
        assert.equal(res.headers['accept-ranges'], 'bytes');
        assert.equal(res.headers['content-type'], 'application/octet-stream');
      }
    });
  }

  test('Range across the chunks of a multi-chunk file: 206 with exactly those bytes; 416 past the end; HEAD; 304', async () => {
    const { url, entry } = snapshotOf('none');
    const big = entry('big/volume.img');
    assert.ok(big.chunks && big.chunks.length >= 2);
    const whole = (await binary(request(s.app).get(`${url}/files/big/volume.img`).set(auth))).body as Buffer;
    const start = big.chunks[1]!.start - 1000;
    const res = await binary(request(s.app).get(`${url}/files/big/volume.img`).set(auth).set('Range', `bytes=${start}-${start + 4999}`));
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-range'], `bytes ${start}-${start + 4999}/${big.size}`);
    assert.deepEqual(res.body, whole.subarray(start, start + 5000));
    const tail = await binary(request(s.app).get(`${url}/files/big/volume.img`).set(auth).set('Range', 'bytes=-10'));
    assert.deepEqual(tail.body, whole.subarray(whole.length - 10));
    const past = await request(s.app).get(`${url}/files/big/volume.img`).set(auth).set('Range', `bytes=${big.size}-`);
    assert.equal(past.status, 416);
    assert.equal(past.headers['content-range'], `bytes */${big.size}`);
    const head = await request(s.app).head(`${url}/files/big/volume.img`).set(auth);
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(big.size));
    const cached = await request(s.app).get(`${url}/files/big/volume.img`).set(auth).set('If-None-Match', `"${big.objectID}"`);
    assert.equal(cached.status, 304);
  });

  test('the audit line names the user, the backup, the volume and the path read', async () => {
    const d = setup();
    const { url } = snapshotOf('zstd');
    await request(d.app).get(`${url}/files/text/lorem.txt`).set(auth);
    const audit = d
      .log()
      .split('\n')
      .filter(Boolean)
      .map((l) => JSON.parse(l) as Record<string, unknown>)
      .find((l) => l.audit === 'download');
    assert.ok(audit);
    assert.deepEqual(
      [audit.user, audit.namespace, audit.target, audit.artifact, audit.volume, audit.path, audit.status],
      ['alice', 'velero', 'backups/nightly', 'volumedata', url.slice(url.lastIndexOf('/') + 1), 'text/lorem.txt', 200],
    );
  });

  test('an empty file is 200 with no bytes', async () => {
    const { url } = snapshotOf('zstd');
    const res = await binary(request(s.app).get(`${url}/files/empty.txt`).set(auth));
    assert.equal(res.status, 200);
    assert.equal(res.headers['content-length'], '0');
    assert.equal((res.body as Buffer).length, 0);
  });

  test('a directory answers its entries in name order, paged by limit and continue', async () => {
    const { snap, url } = snapshotOf('gzip');
    const names = snap.entries.filter((e) => e.path.startsWith('text/') && !e.path.slice(5).includes('/')).map((e) => e.path.slice(5));
    const whole = await request(s.app).get(`${url}/files/text/`).set(auth);
    assert.equal(whole.status, 200);
    assert.equal(json(whole).kind, 'Directory');
    assert.equal(json(whole).path, 'text/');
    // code point order: `日本語` (U+65E5) after the ASCII names, though kopia stored it first
    assert.deepEqual(json(whole).entries.map((e: { name: string }) => e.name), ['emoji 😀 and spaces.txt', 'lorem.txt', 'naïve café.txt', '日本語']);
    assert.deepEqual(json(whole).entries.map((e: { name: string }) => e.name).sort(), [...names].sort());
    const lorem = json(whole).entries.find((e: { name: string }) => e.name === 'lorem.txt')!;
    assert.deepEqual({ type: lorem.type, size: lorem.size }, { type: 'file', size: 20000 });
    assert.match(lorem.mode, /^0[0-7]{3}$/);
    assert.equal(json(whole).continue, undefined, JSON.stringify(json(whole).entries.map((e: { name: string }) => e.name)));
    const paged: string[] = [];
    let token: string | undefined;
    let pages = 0;
    do {
      const res = await request(s.app)
        .get(`${url}/files/text`)
        .query({ limit: '1', ...(token && { continue: token }) })
        .set(auth);
      assert.equal(res.status, 200);
      assert.equal(json(res).entries.length, 1, JSON.stringify([token, res.body]));
      paged.push(json(res).entries[0]!.name);
      token = json(res).continue;
      pages++;
    } while (token !== undefined && pages < 50);
    assert.deepEqual(paged, json(whole).entries.map((e: { name: string }) => e.name));
    const root = await request(s.app).get(`${url}/files/`).set(auth);
    assert.equal(json(root).path, '');
    assert.ok(json(root).entries.some((e: { name: string; type: string }) => e.name === 'nested' && e.type === 'dir'));
    for (const q of [{ limit: '0' }, { limit: '10001' }, { limit: 'x' }, { continue: 'not/a token' }]) {
      const bad = await request(s.app).get(`${url}/files/text/`).query(q).set(auth);
      assert.equal(bad.status, 400, JSON.stringify(q));
    }
  });

  test('a symlink answers its target and is never followed, even pointing outside the snapshot', async () => {
    const { url, entry } = snapshotOf('none');
    for (const p of ['links/absolute', 'links/dangling', 'links/ünïcode-link']) {
      const res = await request(s.app).get(`${url}/files/${encodePath(p)}`).set(auth);
      assert.equal(res.status, 200, p);
      assert.equal(json(res).kind, 'Symlink');
      assert.equal(json(res).target, entry(p).target);
    }
    const through = await request(s.app).get(`${url}/files/links/to-dir/x`).set(auth);
    assert.equal(through.status, 404);
  });

  test('paths that would leave the snapshot are refused before the repository is read', async () => {
    const { url } = snapshotOf('none');
    for (const p of ['%2e%2e/etc/passwd', 'nested/%2e%2e/%2e%2e/x', 'nested/%2E/a', 'a%2Fb', 'hello.txt%00', 'nested//a']) {
      const res = await request(s.app).get(`${url}/files/${p}`).set(auth);
      assert.equal(res.status, 400, p);
      assert.equal(json(res).kind, 'Status');
    }
    const bad = await request(s.app).get(`${BASE}/ns1:pod:vol:extra/files/x`).set(auth);
    assert.equal(bad.status, 400);
  });

  test('unknown paths, volumes and snapshots are 404; a file asked for as a directory is 400', async () => {
    const { url } = snapshotOf('none');
    assert.equal((await request(s.app).get(`${url}/files/no-such-file`).set(auth)).status, 404);
    assert.equal((await request(s.app).get(`${url}/files/hello.txt/more`).set(auth)).status, 404);
    assert.equal((await request(s.app).get(`${BASE}/ns1:nobody/files/x`).set(auth)).status, 404);
    const gone = await request(s.app).get(`${BASE}/ns1:gone/files/`).set(auth);
    assert.equal(gone.status, 404);
    assert.match(json(gone).message, /snapshot/);
    assert.equal((await request(s.app).get(`${url}/files/hello.txt/`).set(auth)).status, 400);
  });

  test('a wrong repository password is a 502 that says so, and the password is in no answer and no log', async () => {
    const wrong = 'not-the-password-7f3a9c';
    const d = setup(wrong);
    const res = await request(d.app).get(`${BASE}/ns1:pod-0:vol-none/files/hello.txt`).set(auth);
    assert.equal(res.status, 502);
    assert.equal(json(res).reason, 'BadGateway');
    assert.match(json(res).message, /password is wrong/);
    assert.ok(!JSON.stringify(res.body).includes(wrong));
    assert.ok(!d.log().includes(wrong) && !d.log().includes(PASSWORD));
  });
});

describe('archives of a directory', () => {
  for (const format of ['tar', 'tar.gz'] as const) {
    test(`the whole snapshot as ${format}: every file's bytes, modes, mtimes, symlinks as links`, async () => {
      const { snap, url } = snapshotOf('s2-default');
      const res = await binary(request(s.app).get(`${url}/archive/`).query(format === 'tar' ? {} : { format }).set(auth));
      assert.equal(res.status, 200);
      assert.equal(res.headers['content-type'], format === 'tar' ? 'application/x-tar' : 'application/gzip');
      assert.match(res.headers['content-disposition'] ?? '', new RegExp(`ns1-pod-\\d-vol-s2-default\\.${format.replace('.', '\\.')}`));
      const entries = await untar(format === 'tar' ? (res.body as Buffer) : gunzipSync(res.body as Buffer));
      const top = 'ns1-pod-2-vol-s2-default';
      for (const e of snap.entries) {
        const name = e.path === '.' ? `${top}/` : `${top}/${e.path}${e.type === 'd' ? '/' : ''}`;
        const got = entries.get(name);
        assert.ok(got, `${name} is in the archive`);
        assert.equal(got.header.mode, parseInt(e.mode, 8) & 0o7777, name);
        assert.equal(got.header.mtime?.getTime(), Math.floor(Date.parse(e.mtime) / 1000) * 1000, name);
        if (e.type === 'f') assert.equal(sha(got.data), e.sha256, name);
        if (e.type === 's') assert.deepEqual([got.header.type, got.header.linkname], ['symlink', e.target], name);
        if (e.type === 'd') assert.equal(got.header.type, 'directory', name);
      }
      assert.equal(entries.size, snap.entries.length);
    });
  }

  test("a volume file and an archive carry only nosniff of helmet's headers; the volume list, a page, all of them", async () => {
    const { url } = snapshotOf('zstd');
    const pageOnly = ['content-security-policy', 'strict-transport-security', 'x-frame-options', 'cross-origin-opener-policy', 'referrer-policy'];
    for (const path of ['files', 'archive']) {
      const res = await binary(request(s.app).get(`${url}/${path}/hello.txt`).set(auth));
      assert.equal(res.status, 200);
      assert.equal(res.headers['x-content-type-options'], 'nosniff');
      assert.deepEqual(pageOnly.filter((h) => h in res.headers), [], path);
    }
    const list = await request(s.app).get(url.slice(0, url.lastIndexOf('/'))).set(auth);
    assert.equal(list.status, 200);
    assert.deepEqual(pageOnly.filter((h) => !(h in list.headers)), [], 'the list is a page');
  });

  test('a subdirectory is archived under its own name; one file archives alone; bad formats are 400', async () => {
    const { url, entry } = snapshotOf('zstd');
    const sub = await untar((await binary(request(s.app).get(`${url}/archive/nested/a`).set(auth))).body as Buffer);
    assert.deepEqual([...sub.keys()].sort(), ['a/', 'a/b/', 'a/b/c/', 'a/b/c/deep.txt', 'a/b/c/empty-dir/']);
    assert.equal(sha(sub.get('a/b/c/deep.txt')!.data), entry('nested/a/b/c/deep.txt').sha256);
    const one = await untar((await binary(request(s.app).get(`${url}/archive/hello.txt`).set(auth))).body as Buffer);
    assert.deepEqual([...one.keys()], ['hello.txt']);
    assert.equal((await request(s.app).get(`${url}/archive/`).query({ format: 'zip' }).set(auth)).status, 400);
    assert.equal((await request(s.app).get(`${url}/archive/links/absolute`).set(auth)).status, 400);
  });
});

describe('a repository damaged under a stream', () => {
  let damaged: string;
  before(async () => {
    damaged = await mkdtemp(join(tmpdir(), 'vds-volumes-damaged-'));
    await copyFixtureAsObjects('velero-aes256gcm', damaged, 'kopia/ns1/');
  });
  after(async () => {
    await rm(damaged, { recursive: true, force: true });
  });

  /** GET over a real socket; resolves with the status, the declared length and the bytes that arrived. */
  async function rawGet(app: ReturnType<typeof createApp>, path: string): Promise<{ status: number; declared: number; got: number; complete: boolean }> {
    const server = app.listen(0, '127.0.0.1');
    await once(server, 'listening');
    try {
      const { port } = server.address() as AddressInfo;
      return await new Promise((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path, headers: auth }, (res) => {
          let got = 0;
          res.on('data', (c: Buffer) => (got += c.length));
          const finish = (complete: boolean) => () => resolve({ status: res.statusCode ?? 0, declared: Number(res.headers['content-length']), got, complete });
          res.once('end', finish(true));
          res.once('aborted', finish(false));
          res.once('error', finish(false));
        });
        req.once('error', reject);
        req.end();
      });
    } finally {
      server.close();
      server.closeAllConnections();
    }
  }

  test('a flipped byte in the second chunk breaks the transfer after the first: never a short 200', async () => {
    const { entry } = snapshotOf('none');
    const big = entry('big/volume.img');
    const second = manifest.repository.contents.find((c) => c.contentID === big.chunks![1]!.objectID)!;
    const pack = join(damaged, 'kopia', 'ns1', second.packFile.replace(/\.f$/, ''));
    const bytes = await readFile(pack);
    bytes[second.packOffset + 40]! ^= 0x01;
    await writeFile(pack, bytes);
    const store = new FilesystemStore({ root: damaged });
    const base = setup();
    const app = createApp({
      authenticator: StaticTokenAuthenticator.parse(`${TOKEN},alice,uid-a,"team-a"\n`),
      authorizer: base.authorizer,
      resolver: new LocalResolver('velero', [SPEC]),
      stores: { forSpec: () => Promise.resolve(store) },
      volumes: { resolver: base.resolver, pool: new RepositoryPool({ keys: new KeyCache(deriveFormatKey) }) },
      log: createLogger('silent'),
      health: { ready: true },
      info: () => ({}),
    });
    const url = snapshotOf('none').url;
    const res = await rawGet(app, `${url}/files/big/volume.img`);
    assert.equal(res.status, 200);
    assert.equal(res.declared, big.size);
    assert.equal(res.complete, false);
    assert.ok(res.got < res.declared, `${res.got} of ${res.declared} bytes arrived`);
    // The same damage hit before the first byte (a range that starts in the damaged chunk) is a clean Status.
    const late = await request(app).get(`${url}/files/big/volume.img`).set(auth).set('Range', `bytes=${big.chunks![1]!.start}-`);
    assert.equal(late.status, 502);
    assert.equal(json(late).reason, 'BadGateway');
  });
});

describe('name order', () => {
  test('is code point order: an astral character sorts after U+FFxx, unlike UTF-16 comparison', () => {
    const names = ['b', '\u{1F600}', '\uFF21', 'a', 'ab', '\u00E9'];
    const bytes = [...names].sort((x, y) => Buffer.compare(Buffer.from(x), Buffer.from(y)));
    assert.deepEqual([...names].sort(compareNames), bytes);
    assert.deepEqual(bytes, ['a', 'ab', 'b', '\u00E9', '\uFF21', '\u{1F600}']);
  });
});

describe('archives of a hostile repository', () => {
  /** A repository whose directory holds what a tenant's forged repository could: stands in for the reader. */
  const forged = (names: string[]): ArchiveSource => ({
    readDirectory: () => Promise.resolve(names.map((name) => ({ name, type: 'f', mode: 0o644, mtime: '2026-01-01T00:00:00Z', size: 0, uid: 0, gid: 0, objectID: 'x' }))),
    readObject: () => Promise.reject(new Error('not read')),
    openObject: () => Promise.resolve({ size: 0, range: { start: 0, end: -1 }, stream: Readable.from([]) }),
  });
  const dirEntry = { name: 'top', type: 'd', mode: 0o755, mtime: '2026-01-01T00:00:00Z', size: 0, uid: 0, gid: 0, objectID: 'k1' };

  for (const name of ['..', '.', 'a/../../etc', '/etc/passwd', 'nul\0byte', '']) {
    test(`an entry named ${JSON.stringify(name)} fails the archive instead of escaping its directory`, async () => {
      const pack = tar.pack();
      await assert.rejects(writeTree(forged(['fine.txt', name]), dirEntry, 'top', pack, new AbortController().signal, 0), /no archive may hold/);
      pack.destroy();
    });
  }

  test('honest names are written under the top directory', async () => {
    const pack = tar.pack();
    const names: string[] = [];
    const ex = tar.extract();
    ex.on('entry', (h, stream, next) => {
      names.push(h.name);
      stream.resume();
      stream.on('end', next);
    });
    const done = once(ex, 'finish');
    pack.pipe(ex);
    await writeTree(forged(['a.txt', '..hidden', 'b c']), dirEntry, 'top', pack, new AbortController().signal, 0);
    pack.finalize();
    await done;
    assert.deepEqual(names, ['top/', 'top/a.txt', 'top/..hidden', 'top/b c']);
  });
});

/**
 * Kopia snapshots under a Kanister Profile, read through the real application: a repository the real
 * kopia makes now as Kanister does (the global policy's compression `s2-default`), laid out with
 * object naming at `<location prefix><root path>/` as in a bucket, read through the real
 * FilesystemStore, the real repository pool and the real profileRepositoryOf. The only stand-ins are
 * the token table, the authorizer (which records what it was asked) and a static Profile table (the
 * Kubernetes resolver has its own tests).
 *
 * kopia comes from `npm run tools`; without it these tests fail (never skip).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import request from 'supertest';
import { StaticTokenAuthenticator } from '../../src/auth/static-tokens.ts';
import { deriveFormatKey } from '../../src/kopia/format.ts';
import { KeyCache } from '../../src/kopia/key-cache.ts';
import { RepositoryPool } from '../../src/kopia/pool.ts';
import { openRepository } from '../../src/kopia/repository.ts';
import { createApp } from '../../src/server/app.ts';
import { createLogger } from '../../src/server/logging.ts';
import { mapError } from '../../src/server/status.ts';
import { FilesystemStore } from '../../src/stores/fs.ts';
import { S3Store } from '../../src/stores/s3.ts';
import type { StoreFactory, StoreSpec } from '../../src/stores/spec.ts';
import { DEFAULT_MAX_SOCKETS, DEFAULT_TIMEOUTS } from '../../src/stores/adapter.ts';
import { trustFor } from '../../src/stores/trust.ts';
import { NotFoundError } from '../../src/velero/errors.ts';
import { KOPIA_PASSWORD_KEY, KOPIA_PASSWORD_SECRET_TYPE, PASSWORD_SECRET_ANNOTATION, ROOT_PATH_ANNOTATION } from '../../src/velero/kanister-repository.ts';
import { KanisterLocationError, credentialFile, kanisterStoreSpec, locationFromProfile } from '../../src/velero/kanister.ts';
import { LocalResolver } from '../../src/velero/resolve.ts';
import type { VolumeResolver } from '../../src/velero/volumes.ts';
import { binary } from '../support/http.ts';
import { RecordingAuthorizer } from '../support/recording-authorizer.ts';
import { KopiaCli } from '../support/kopia-cli.ts';
import { readShardedBlobs } from '../support/kopia-layout.ts';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3rver } from '../support/s3rver.ts';
import { StaticProfileResolver } from '../support/static-profiles.ts';
import type { StaticSecret } from '../support/static-profiles.ts';
import { untar } from '../support/tar.ts';

const TOKEN = 'profile-token-for-tests-0123456789';
const auth = { Authorization: `Bearer ${TOKEN}` };
const PASSWORD = 'kanister-repo-passw0rd';
const WRONG_PASSWORD = 'not-the-repo-password-7f3a';
const SPEC: StoreSpec = { name: 'team-a/kanister', provider: 'filesystem', bucket: '', prefix: '', config: {} };
const LOCATION_PREFIX = 'kanister/team-a/';
const ROOT_PATH = 'repo/monitoring/';
const MiB = 1024 * 1024;
/** A mistake in a Profile (KanisterLocationError) is answered as every other one: that mapping is decided with the Profile resolver. */
const PROFILE_MISTAKE = mapError(new KanisterLocationError('a mistake')).body.code;
/** kopia's header id of `s2-default` (repo/compression/compressor_s2.go). */
const S2_DEFAULT = 0x1200;

const noVolumes: VolumeResolver = {
  volumes: (_ns, backup) => Promise.reject(new NotFoundError(`backups.velero.io "${backup}" not found`, { group: 'velero.io', kind: 'backups', name: backup })),
  repository: (_ns, backup) => Promise.reject(new NotFoundError(`backups.velero.io "${backup}" not found`, { group: 'velero.io', kind: 'backups', name: backup })),
};

const passwordSecret = (value: string, extra: Record<string, Uint8Array> = {}, type = KOPIA_PASSWORD_SECRET_TYPE): StaticSecret => ({
  type,
  data: { [KOPIA_PASSWORD_KEY]: Buffer.from(value), ...extra },
});

interface Json {
  kind: string;
  message: string;
  reason: string;
  code: number;
  path: string;
  name: string;
  target: string;
  entries: { name: string; type: string; size: number; mode: string }[];
  continue?: string;
}
const json = (res: { body: unknown }): Json => res.body as Json;
const sha = (b: Buffer): string => createHash('sha256').update(b).digest('hex');
const encodePath = (p: string): string => p.split('/').map(encodeURIComponent).join('/');

let base = '';
let src = '';
let snapshotID = '';
let storeRoot = '';
/** The repository's blobs, id → bytes, as kopia wrote them. */
let blobs = new Map<string, Buffer>();
/** The compressible file bigger than kopia's largest chunk (8 MiB): several s2-compressed contents. */
const BIG = 'logs/big.log';
const FILES: Record<string, Buffer> = {};

const stop = new AbortController();

before(async () => {
  base = await mkdtemp(join(tmpdir(), 'vds-profile-snapshots-'));
  src = join(base, 'src');
  const lines: string[] = [];
  for (let i = 0, n = 0; n < 10 * MiB; i++) n += lines[lines.push(`${String(i).padStart(8, '0')} GET /api/v1/items/${i % 977} 200 ${(i * 7919) % 100_003}us\n`) - 1]!.length;
  FILES[BIG] = Buffer.from(lines.join(''));
  FILES['hello.txt'] = Buffer.from('hello from a Kanister snapshot\n');
  FILES['with space.txt'] = Buffer.from('a name with a space\n');
  FILES['ünïcödé 名前.txt'] = Buffer.from('a name outside ASCII\n');
  FILES['logs/random.bin'] = randomBytes(300_000);
  FILES['empty'] = Buffer.alloc(0);
  for (const [rel, data] of Object.entries(FILES)) {
    await mkdir(dirname(join(src, rel)), { recursive: true });
    await writeFile(join(src, rel), data);
  }
  await symlink('../hello.txt', join(src, 'logs', 'latest'));

  // Kanister's way: the global policy compresses with s2-default, then a snapshot.
  const cli = new KopiaCli({ work: join(base, 'client'), password: PASSWORD, signal: stop.signal });
  const repoDir = join(base, 'repo');
  await cli.createFilesystem(repoDir);
  await cli.run('policy', 'set', '--global', '--compression=s2-default');
  snapshotID = await cli.snapshot(src);

  // As in a bucket: blob <id> at <location prefix><root path><id>.
  storeRoot = join(base, 'bucket');
  ({ blobs } = await readShardedBlobs(repoDir));
  const at = join(storeRoot, ...`${LOCATION_PREFIX}${ROOT_PATH}`.split('/').filter(Boolean));
  await mkdir(at, { recursive: true });
  for (const [id, bytes] of blobs) await writeFile(join(at, id), bytes);
}, { timeout: 5 * 60_000 });

after(async () => {
  stop.abort(new Error('the tests are over'));
  if (base) await rm(base, { recursive: true, force: true });
});

function setup(stores?: StoreFactory) {
  const profiles = new StaticProfileResolver(
    {
      'team-a/kanister': { location: { spec: SPEC, prefix: LOCATION_PREFIX }, annotations: { [ROOT_PATH_ANNOTATION]: ROOT_PATH, [PASSWORD_SECRET_ANNOTATION]: 'kopia-password' } },
    },
    { 'team-a/kopia-password': passwordSecret(PASSWORD) },
  );
  const authorizer = new RecordingAuthorizer();
  let storeReads = 0;
  const store = new FilesystemStore({ root: storeRoot });
  let raw = '';
  const sink = new Writable({
    write(chunk: Buffer, _enc, cb) {
      raw += chunk.toString();
      cb();
    },
  });
  const app = createApp({
    authenticator: StaticTokenAuthenticator.parse(`${TOKEN},alice,uid-a,"team-a"\n`),
    authorizer,
    resolver: new LocalResolver('velero', [SPEC]),
    stores: {
      forSpec: (spec) => {
        storeReads++;
        return stores ? stores.forSpec(spec) : Promise.resolve(store);
      },
    },
    volumes: { resolver: noVolumes, pool: new RepositoryPool({ keys: new KeyCache(deriveFormatKey) }) },
    profiles,
    log: createLogger('debug', sink),
    health: { ready: true },
    info: () => ({}),
  });
  return { app, profiles, authorizer, storeReads: () => storeReads, log: () => raw };
}

const url = (id: string, what: 'files' | 'archive', path = ''): string => `/v1/namespaces/team-a/profiles/kanister/snapshots/${id}/${what}/${encodePath(path)}`;

/** The big file's chunks as the reader resolves them straight from the store, and the content index. */
async function bigFile() {
  const store = new FilesystemStore({ root: storeRoot });
  const signal = new AbortController().signal;
  const repo = await openRepository(store, { prefix: `${LOCATION_PREFIX}${ROOT_PATH}`, naming: 'object', password: PASSWORD, signal });
  const big = await repo.stat(await repo.snapshot(snapshotID, signal), BIG, signal);
  return { resolved: await repo.resolveObject(big.objectID, signal), index: await repo.contentIndex(signal) };
}

describe('files of a Kopia snapshot under a Profile', () => {
  test('every file, byte for byte, after a review of get on profiles/snapshots in cr.kanister.io', async () => {
    const s = setup();
    for (const [rel, data] of Object.entries(FILES)) {
      const res = await binary(request(s.app).get(url(snapshotID, 'files', rel)).set(auth));
      assert.equal(res.status, 200, rel);
      assert.equal(sha(res.body as Buffer), sha(data), rel);
      assert.equal(res.headers['content-length'], String(data.length), rel);
      assert.match(String(res.headers['content-disposition']), /^attachment; filename/, rel);
      assert.match(String(res.headers.etag), /^"[0-9a-zA-Z]+"$/, rel);
    }
    assert.deepEqual(s.authorizer.asked.at(-1), { group: 'cr.kanister.io', resource: 'profiles', subresource: 'snapshots', verb: 'get', namespace: 'team-a', name: 'kanister' });
  });

  test('the repository really is s2-compressed, and the reader decompresses it', async () => {
    const { resolved, index } = await bigFile();
    assert.ok(resolved.segments.length >= 2, 'several chunks');
    for (const seg of resolved.segments) {
      const contentID = seg.objectID.replace(/^Z/, '');
      assert.equal(index.get(contentID).compressionHeaderID, S2_DEFAULT, `content ${contentID}`);
    }
  });

  test('Range across a chunk boundary of the big file: 206 with exactly those bytes; HEAD; ETag and 304', async () => {
    const s = setup();
    const big = FILES[BIG]!;
    const start = (await bigFile()).resolved.segments[1]!.start - 1000;
    const res = await binary(request(s.app).get(url(snapshotID, 'files', BIG)).set(auth).set('Range', `bytes=${start}-${start + 1999}`));
    assert.equal(res.status, 206);
    assert.equal(res.headers['content-range'], `bytes ${start}-${start + 1999}/${big.length}`);
    assert.ok((res.body as Buffer).equals(big.subarray(start, start + 2000)));

    const head = await request(s.app).head(url(snapshotID, 'files', BIG)).set(auth);
    assert.equal(head.status, 200);
    assert.equal(head.headers['content-length'], String(big.length));
    assert.equal(head.headers['accept-ranges'], 'bytes');
    const etag = String(head.headers.etag);

    const cached = await request(s.app).get(url(snapshotID, 'files', BIG)).set(auth).set('If-None-Match', etag);
    assert.equal(cached.status, 304);
  });

  test('a directory answers its entries as JSON, paged by limit and continue', async () => {
    const s = setup();
    const root = await request(s.app).get(url(snapshotID, 'files')).set(auth);
    assert.equal(root.status, 200);
    assert.equal(json(root).kind, 'Directory');
    assert.deepEqual(json(root).entries.map((e) => [e.name, e.type]), [
      ['empty', 'file'],
      ['hello.txt', 'file'],
      ['logs', 'dir'],
      ['with space.txt', 'file'],
      ['ünïcödé 名前.txt', 'file'],
    ]);
    const names: string[] = [];
    let token: string | undefined;
    do {
      const res = await request(s.app).get(url(snapshotID, 'files', 'logs/')).set(auth).query({ limit: '1', ...(token && { continue: token }) });
      assert.equal(res.status, 200);
      assert.equal(json(res).path, 'logs/');
      names.push(...json(res).entries.map((e) => e.name));
      token = json(res).continue;
    } while (token);
    assert.deepEqual(names, ['big.log', 'latest', 'random.bin']);
    // A huge directory is paged with the volume routes' bounds.
    for (const q of [{ limit: '0' }, { limit: '10001' }, { continue: 'not/a token' }]) {
      assert.equal((await request(s.app).get(url(snapshotID, 'files', 'logs/')).set(auth).query(q)).status, 400, JSON.stringify(q));
    }
  });

  test('a symlink answers its target as JSON, never what it points at', async () => {
    const s = setup();
    const res = await request(s.app).get(url(snapshotID, 'files', 'logs/latest')).set(auth);
    assert.equal(res.status, 200);
    assert.equal(json(res).kind, 'Symlink');
    assert.equal(json(res).target, '../hello.txt');
  });

  test('an archive of a directory: a tar named after the Profile and snapshot', async () => {
    const s = setup();
    const res = await binary(request(s.app).get(url(snapshotID, 'archive', 'logs')).set(auth));
    assert.equal(res.status, 200);
    assert.match(String(res.headers['content-disposition']), new RegExp(`filename="?kanister-${snapshotID}-logs\\.tar"?$`));
    const entries = await untar(res.body as Buffer);
    assert.equal(sha(entries.get('logs/big.log')!.data), sha(FILES[BIG]!));
    assert.equal(entries.get('logs/latest')!.header.linkname, '../hello.txt');
  });

  test('the audit line names the Profile, the subresource and the snapshot path; no log line holds the password', async () => {
    const s = setup();
    const res = await binary(request(s.app).get(url(snapshotID, 'files', 'hello.txt')).set(auth));
    assert.equal(res.status, 200);
    await new Promise((r) => setImmediate(r));
    const audit = s.log().split('\n').filter(Boolean).map((l) => JSON.parse(l) as Record<string, unknown>).find((l) => l.audit === 'download');
    assert.ok(audit);
    assert.equal(audit.target, 'profiles/kanister');
    assert.equal(audit.artifact, 'snapshots');
    assert.equal(audit.path, `${snapshotID}/hello.txt`);
    assert.ok(!s.log().includes(PASSWORD));
  });
});

describe('refusals', () => {
  test('an unknown snapshot id is 404; a malformed one is 400 before the Profile is read', async () => {
    const s = setup();
    const unknown = await request(s.app).get(url('0123456789abcdef0123456789abcdef', 'files', 'hello.txt')).set(auth);
    assert.equal(unknown.status, 404);
    assert.match(json(unknown).message, /snapshot 0123456789abcdef0123456789abcdef does not exist/);
    const d = setup();
    for (const id of ['ZZ', 'ABCDEF', 'a'.repeat(65), '..', '%2e%2e', 'k1a2b3']) {
      const res = await request(d.app).get(`/v1/namespaces/team-a/profiles/kanister/snapshots/${id}/files/hello.txt`).set(auth);
      assert.equal(res.status, 400, id);
      assert.match(json(res).message, /invalid snapshot id/, id);
    }
    assert.deepEqual(d.profiles.reads, []);
    assert.equal(d.authorizer.asked.length, 0);
  });

  test('a path leaving the snapshot is 400 before anything is read', async () => {
    const s = setup();
    for (const path of ['/files/%2e%2e/%2e%2e/x', '/files/a%2Fb', '/files/logs//big.log']) {
      const res = await request(s.app).get(`/v1/namespaces/team-a/profiles/kanister/snapshots/${snapshotID}${path}`).set(auth);
      assert.equal(res.status, 400, path);
    }
    assert.deepEqual(s.profiles.reads, []);
  });

  test('a caller denied profiles/snapshots gets 403, and the Profile is not read', async () => {
    const s = setup();
    s.authorizer.deny = true;
    for (const path of [url(snapshotID, 'files', 'hello.txt'), url(snapshotID, 'archive'), '/v1/namespaces/team-a/profiles/nope/snapshots/00ff/files/']) {
      const res = await request(s.app).get(path).set(auth);
      assert.equal(res.status, 403, path);
      assert.match(json(res).message, /cannot get resource "profiles\/snapshots" in API group "cr.kanister.io" in the namespace "team-a"/);
    }
    assert.deepEqual(s.profiles.reads, []);
    assert.equal(s.storeReads(), 0);
  });

  test('no token: 401; POST: 405', async () => {
    const s = setup();
    assert.equal((await request(s.app).get(url(snapshotID, 'files', 'hello.txt'))).status, 401);
    assert.equal((await request(s.app).post(url(snapshotID, 'files', 'hello.txt')).set(auth)).status, 405);
  });

  test('a wrong password (the Secret holds another value) is 502 that never shows a password', async () => {
    const s = setup();
    s.profiles.secrets.set('team-a/kopia-password', passwordSecret(WRONG_PASSWORD));
    const res = await request(s.app).get(url(snapshotID, 'files', 'hello.txt')).set(auth);
    assert.equal(res.status, 502);
    assert.match(json(res).message, /password is wrong/);
    assert.ok(!res.text.includes(WRONG_PASSWORD) && !res.text.includes(PASSWORD));
    await new Promise((r) => setImmediate(r));
    assert.ok(!s.log().includes(WRONG_PASSWORD) && !s.log().includes(PASSWORD));
  });

  test('a Profile without the password annotation is 404 naming the annotation; an unknown Profile 404', async () => {
    const s = setup();
    s.profiles.profiles.set('team-a/plain', { location: { spec: SPEC, prefix: LOCATION_PREFIX }, annotations: {} });
    const res = await request(s.app).get(`/v1/namespaces/team-a/profiles/plain/snapshots/${snapshotID}/files/`).set(auth);
    assert.equal(res.status, 404);
    assert.ok(json(res).message.includes(PASSWORD_SECRET_ANNOTATION));
    const missing = await request(s.app).get(`/v1/namespaces/team-a/profiles/nope/snapshots/${snapshotID}/files/`).set(auth);
    assert.equal(missing.status, 404);
    assert.equal(s.storeReads(), 0);
  });

  test('a password Secret of another type, with extra keys, or missing, is 502 that shows none of its contents', async () => {
    const s = setup();
    const secretValue = 'eyJhbGciOiJSUzI1NiJ9.service-account-token-value';
    const cases: [string, StaticSecret | undefined, RegExp][] = [
      ['a service account token', { type: 'kubernetes.io/service-account-token', data: { token: Buffer.from(secretValue), [KOPIA_PASSWORD_KEY]: Buffer.from(secretValue) } }, /is not of type secrets\.kanister\.io\/kopia-repository\/password/],
      ['an Opaque Secret with the right key', { type: 'Opaque', data: { [KOPIA_PASSWORD_KEY]: Buffer.from(secretValue) } }, /is not of type/],
      ['the right type with an extra key', passwordSecret(PASSWORD, { 'other-key': Buffer.from(secretValue) }), /must hold exactly one key, repo-password/],
      ['the right type with another key', { type: KOPIA_PASSWORD_SECRET_TYPE, data: { password: Buffer.from(secretValue) } }, /must hold exactly one key/],
      ['no such Secret', undefined, /does not exist/],
    ];
    for (const [name, secret, message] of cases) {
      if (secret) s.profiles.secrets.set('team-a/kopia-password', secret);
      else s.profiles.secrets.delete('team-a/kopia-password');
      const res = await request(s.app).get(url(snapshotID, 'files', 'hello.txt')).set(auth);
      assert.equal(res.status, 502, name);
      assert.match(json(res).message, message, name);
      assert.ok(json(res).message.includes('"kopia-password"'), name);
      for (const leak of [secretValue, PASSWORD, 'other-key', 'service-account-token', 'Opaque', '"token"']) assert.ok(!res.text.includes(leak), `${name}: ${leak}`);
    }
    assert.equal(s.storeReads(), 0);
  });

  test('a root path with ".." (or absolute) is refused as a Profile mistake before any Secret or store is read', async () => {
    const s = setup();
    for (const rootPath of ['../team-b/repo/', 'repo/../../x', '/repo/monitoring/']) {
      s.profiles.profiles.set('team-a/kanister', { location: { spec: SPEC, prefix: LOCATION_PREFIX }, annotations: { [ROOT_PATH_ANNOTATION]: rootPath, [PASSWORD_SECRET_ANNOTATION]: 'kopia-password' } });
      const res = await request(s.app).get(url(snapshotID, 'files', 'hello.txt')).set(auth);
      assert.equal(res.status, PROFILE_MISTAKE, rootPath);
      assert.ok(json(res).message.includes(ROOT_PATH_ANNOTATION), rootPath);
    }
    assert.ok(!s.profiles.reads.some((r) => r.startsWith('secret')));
    assert.equal(s.storeReads(), 0);
  });

  test('the password annotation cannot name another namespace\'s Secret', async () => {
    const s = setup();
    s.profiles.secrets.set('team-b/kopia-password', passwordSecret(PASSWORD));
    s.profiles.profiles.set('team-a/kanister', { location: { spec: SPEC, prefix: LOCATION_PREFIX }, annotations: { [ROOT_PATH_ANNOTATION]: ROOT_PATH, [PASSWORD_SECRET_ANNOTATION]: 'team-b/kopia-password' } });
    const res = await request(s.app).get(url(snapshotID, 'files', 'hello.txt')).set(auth);
    assert.equal(res.status, PROFILE_MISTAKE);
    assert.ok(!s.profiles.reads.some((r) => r.startsWith('secret')));
  });

  test('the source tree is what the client sees (control: the big file is several MiB)', async () => {
    assert.equal((await readFile(join(src, BIG))).length, FILES[BIG]!.length);
    assert.ok(FILES[BIG]!.length > 8 * MiB);
  });
});

describe('an s3Compliant Profile over S3 (s3rver)', () => {
  const closers: (() => Promise<void>)[] = [];
  after(async () => {
    for (const close of closers.reverse()) await close();
  });

  test('the Kanister prefix is the store\'s root, the root path below it: every read stays in the repository', async () => {
    const srv = await startS3rver({ bucket: 'kanister-backups' });
    closers.push(() => srv.stop());
    const kanisterPrefix = 'clusters/one/team-a';
    for (const [id, bytes] of blobs) await srv.put(`${kanisterPrefix}/${ROOT_PATH}${id}`, bytes);
    // Something next to the repository that no read may touch.
    await srv.put(`${kanisterPrefix}/other/kopia.repository`, Buffer.from('not this one'));
    const where = 'profile team-a/s3';
    const loc = locationFromProfile({ location: { type: 's3Compliant', bucket: 'kanister-backups', endpoint: srv.endpoint, region: 'us-east-1', prefix: kanisterPrefix } }, where);
    const data = { aws_access_key_id: S3RVER_ACCESS_KEY_ID, aws_secret_access_key: S3RVER_SECRET_ACCESS_KEY };
    const spec = kanisterStoreSpec('team-a/profile/s3', loc, credentialFile(loc, data, where), data, false, where);
    const store = new S3Store({ spec, trust: trustFor(spec.name, spec.config, spec.caBundle, undefined), ambientCredentials: false, timeouts: DEFAULT_TIMEOUTS, maxSockets: DEFAULT_MAX_SOCKETS });
    closers.push(() => store.close());

    const s = setup({ forSpec: () => Promise.resolve(store) });
    s.profiles.profiles.set('team-a/s3', { location: { spec, prefix: '' }, annotations: { [ROOT_PATH_ANNOTATION]: ROOT_PATH, [PASSWORD_SECRET_ANNOTATION]: 'kopia-password' } });
    const base = `/v1/namespaces/team-a/profiles/s3/snapshots/${snapshotID}/files/`;
    const big = await binary(request(s.app).get(`${base}${encodePath(BIG)}`).set(auth));
    assert.equal(big.status, 200);
    assert.equal(sha(big.body as Buffer), sha(FILES[BIG]!));
    const listing = await request(s.app).get(base).set(auth);
    assert.equal(listing.status, 200);
    assert.equal(json(listing).entries.length, 5);

    await srv.flush();
    const inside = `/kanister-backups/${kanisterPrefix}/${ROOT_PATH}`;
    const paths = srv.requests.filter((r) => r.method === 'GET').map((r) => decodeURIComponent(r.url));
    assert.ok(paths.length > 0);
    for (const path of paths) {
      // A listing names its prefix in the query; a read, in the path.
      const prefix = /[?&]prefix=([^&]*)/.exec(path)?.[1];
      assert.ok(path.startsWith(inside) || (path.startsWith('/kanister-backups?') || path.startsWith('/kanister-backups/?')) && prefix?.startsWith(`${kanisterPrefix}/${ROOT_PATH}`), path);
    }
  });
});

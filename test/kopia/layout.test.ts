/**
 * The same reader over the object-store layout (S3, Azure, GCS: blob `<id>` is the key
 * `<prefix><id>`), as Velero lays repositories out (`<bsl prefix>/kopia/<namespace>/`), beside a
 * neighbouring namespace whose prefix extends this one's name: the BlobStorage adapter is the only
 * thing that changes.
 */
import assert from 'node:assert/strict';
import { createCipheriv, createHash, createHmac, hkdfSync, randomBytes } from 'node:crypto';
import { copyFile, mkdir, mkdtemp, readdir, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, test } from 'node:test';
import { KopiaNotFoundError } from '../../src/kopia/errors.ts';
import { openRepository } from '../../src/kopia/repository.ts';
import { PASSWORD, fsStore, loadManifest, readAll, repoDir, rewriteFormat, signal } from './fixture-support.ts';

let root = '';
before(async () => {
  root = await mkdtemp(join(tmpdir(), 'vds-kopia-layout-'));
  // kopia/ns1 holds velero-chacha20, kopia/ns10 (a prefix that starts with "ns1") velero-aes256gcm.
  for (const [ns, fixture] of [['ns1', 'velero-chacha20'], ['ns10', 'velero-aes256gcm']] as const) {
    const dir = join(root, 'velero', 'kopia', ns);
    await mkdir(dir, { recursive: true });
    for (const f of await readdir(repoDir(fixture))) {
      if (f.endsWith('.f')) await copyFile(join(repoDir(fixture), f), join(dir, f.slice(0, -2)));
    }
  }
});
after(() => rm(root, { recursive: true, force: true }));

test('a repository under a Velero-style prefix, object naming: the snapshots and files of that repository only', async () => {
  const m = await loadManifest('velero-chacha20');
  const repo = await openRepository(fsStore(root), { prefix: 'velero/kopia/ns1/', naming: 'object', password: PASSWORD, signal: signal() });
  assert.deepEqual((await repo.snapshots(signal())).map((s) => s.id).sort(), m.snapshots.map((s) => s.id).sort());
  assert.equal((await repo.contentIndex(signal())).size, m.repository.contents.length);
  for (const ms of m.snapshots) {
    const snap = await repo.snapshot(ms.id, signal());
    for (const e of ms.entries.filter((x) => x.type === 'f')) {
      const f = await repo.openFile(snap, e.path, { signal: signal() });
      assert.equal(createHash('sha256').update(await readAll(f.stream)).digest('hex'), e.sha256, e.path);
    }
  }
});

test('the filesystem naming does not find object-named blobs, and no prefix finds no repository', async () => {
  await assert.rejects(
    openRepository(fsStore(root), { prefix: 'velero/kopia/ns1/', naming: 'filesystem', password: PASSWORD, signal: signal() }),
    (e: unknown) => e instanceof KopiaNotFoundError && e.what === 'blob',
  );
  await assert.rejects(openRepository(fsStore(root), { password: PASSWORD, signal: signal() }), KopiaNotFoundError);
});

test('the legacy index (no epochs): `n` index blobs are read and merged', async () => {
  // A copy of a real repository with its epoch index blobs renamed as legacy `n` blobs (the iv stays
  // the 32 hex digits before the first '-') and its format saying epochs are off.
  const m = await loadManifest('velero-chacha20');
  const dir = join(root, 'legacy');
  await mkdir(dir);
  for (const f of await readdir(repoDir('velero-chacha20'))) {
    const legacy = /^xn\d+_([0-9a-f]{32}-s[0-9a-f]+)-c1\.f$/.exec(f);
    await copyFile(join(repoDir('velero-chacha20'), f), join(dir, legacy ? `n${legacy[1]}.f` : f));
  }
  await rewriteFormat(dir, (f) => Object.assign(f, { epochParameters: { ...(f.epochParameters as object), Enabled: false } }));
  const repo = await openRepository(fsStore(dir), { naming: 'filesystem', password: PASSWORD, signal: signal() });
  assert.equal(repo.format.epochsEnabled, false);
  assert.equal((await repo.contentIndex(signal())).size, m.repository.contents.length);
  const ms = m.snapshots[0];
  const e = ms?.entries.find((x) => x.type === 'f' && (x.size ?? 0) > 1000);
  assert.ok(ms && e);
  const f = await repo.openFile(await repo.snapshot(ms.id, signal()), e.path, { signal: signal() });
  assert.equal(createHash('sha256').update(await readAll(f.stream)).digest('hex'), e.sha256);
});

test('the legacy index: a compaction log whose outputs all exist supersedes its inputs; one with an output missing is ignored', async () => {
  const m = await loadManifest('velero-chacha20');
  const dir = join(root, 'legacy-compacted');
  await mkdir(dir);
  const legacyIDs: string[] = [];
  for (const f of await readdir(repoDir('velero-chacha20'))) {
    const legacy = /^xn\d+_([0-9a-f]{32}-s[0-9a-f]+)-c1\.f$/.exec(f);
    if (legacy) legacyIDs.push(`n${legacy[1]}`);
    await copyFile(join(repoDir('velero-chacha20'), f), join(dir, legacy ? `n${legacy[1]}.f` : f));
  }
  await rewriteFormat(dir, (f) => Object.assign(f, { epochParameters: { ...(f.epochParameters as object), Enabled: false } }));
  const [input, output] = legacyIDs;
  assert.ok(input && output);
  const open = (): ReturnType<typeof openRepository> => openRepository(fsStore(dir), { naming: 'filesystem', password: PASSWORD, signal: signal() });
  const { masterKey } = (await open()).format;

  // A compaction log sealed as kopia seals index blobs: key HMAC-SHA256(HKDF(masterKey, "encryption"), iv), AAD iv.
  const writeLog = async (inputs: string[], outputs: string[]): Promise<void> => {
    const iv = randomBytes(16);
    const key = createHmac('sha256', Buffer.from(hkdfSync('sha256', masterKey, 'encryption', Buffer.alloc(0), 32))).update(iv).digest();
    const nonce = randomBytes(12);
    const c = createCipheriv('chacha20-poly1305', key, nonce, { authTagLength: 16 });
    const body = JSON.stringify({ inputMetadata: inputs.map((id) => ({ id, length: 1, timestamp: '2026-01-01T00:00:00Z' })), outputMetadata: outputs.map((id) => ({ id, length: 1, timestamp: '2026-01-01T00:00:00Z' })) });
    c.setAAD(iv, { plaintextLength: Buffer.byteLength(body) });
    const sealed = Buffer.concat([nonce, c.update(body), c.final(), c.getAuthTag()]);
    await writeFile(join(dir, `m${iv.toString('hex')}.f`), sealed);
  };
  const session = /-(s[0-9a-f]+)$/.exec(input)?.[1];
  const inInput = m.repository.contents.filter((c) => c.packFile.endsWith(`-${session}`)).length;
  assert.ok(inInput > 0);

  await writeLog([input], [output, 'n0123456789abcdef0123456789abcdef-smissing']);
  assert.equal((await (await open()).contentIndex(signal())).size, m.repository.contents.length, 'an output is missing: the log does not count');
  await writeLog([input], [output]);
  assert.equal((await (await open()).contentIndex(signal())).size, m.repository.contents.length - inInput, 'the input is superseded');
});

import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { ObjectNotFoundError, StoreUnavailableError } from '../../src/stores/errors.ts';
import type { StoreSpec } from '../../src/stores/spec.ts';
import { LocationsFileError, loadLocationsFile } from '../../src/velero/local-locations.ts';
import { LocalResolver, FOUND_TTL_MS } from '../../src/velero/resolve.ts';
import type { Location } from '../../src/velero/resolve.ts';
import { tripwire } from '../support/tripwire.ts';

describe('loadLocationsFile', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-loc-'));
    await writeFile(join(dir, 'minio-creds'), '[default]\naws_access_key_id=AKIA-SECRET-ID\naws_secret_access_key=TOPSECRET\n');
    await writeFile(join(dir, 'ca.pem'), '-----BEGIN CERTIFICATE-----\nMIIB\n-----END CERTIFICATE-----\n');
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('YAML with credentials and CA by path, relative to the file; scalars become strings', async () => {
    const file = join(dir, 'locations.yaml');
    await writeFile(
      file,
      [
        'locations:',
        '  - name: minio',
        '    provider: aws',
        '    bucket: velero',
        '    prefix: cluster-a',
        '    config: { region: minio, s3Url: "https://127.0.0.1:9000", s3ForcePathStyle: true, port: 9000 }',
        '    credentialFile: minio-creds',
        '    caCertFile: ./ca.pem',
        '  - name: nfs',
        '    provider: replicated.com/nfs',
        '    bucket: exports',
      ].join('\n'),
    );
    const specs = await loadLocationsFile(file);
    assert.equal(specs.length, 2);
    assert.deepEqual(specs[0]!.config, { region: 'minio', s3Url: 'https://127.0.0.1:9000', s3ForcePathStyle: 'true', port: '9000' });
    assert.match(Buffer.from(specs[0]!.credential!).toString(), /aws_access_key_id=AKIA-SECRET-ID/);
    assert.match(specs[0]!.caBundle!, /BEGIN CERTIFICATE/);
    assert.deepEqual({ ...specs[1], config: undefined }, { name: 'nfs', provider: 'replicated.com/nfs', bucket: 'exports', prefix: '', config: undefined });
  });

  test('JSON lists work too', async () => {
    const file = join(dir, 'l.json');
    await writeFile(file, JSON.stringify([{ name: 'gcs', provider: 'velero.io/gcp', bucket: 'b' }]));
    assert.equal((await loadLocationsFile(file))[0]!.provider, 'velero.io/gcp');
  });

  test('every problem reported at once, naming location and field, never a credential', async () => {
    const file = join(dir, 'bad.yaml');
    await writeFile(
      file,
      [
        '- name: a',
        '  provider: aws',
        '  bucket: b',
        '  bukcet: typo',
        '  config: { nested: { x: 1 } }',
        '  credentialFile: missing-file',
        '- name: a',
        '  bucket: 3',
        '- just a string',
      ].join('\n'),
    );
    await assert.rejects(loadLocationsFile(file), (err: LocationsFileError) => {
      const text = err.problems.join('\n');
      for (const part of ['unknown field "bukcet"', 'config.nested must be a string', 'location "a": credentialFile names a file that does not exist (ENOENT)', 'name used twice', '"provider" is required', '"bucket" must be a string', 'locations[2]: must be a mapping']) {
        assert.ok(text.includes(part), `${part} in\n${text}`);
      }
      return !text.includes('TOPSECRET');
    });
  });

  test('credentialFile and caCertFile must name regular files of at most 1 MiB: a FIFO, /dev/zero, a directory, a larger file are refused', async () => {
    const wire = await tripwire(join(dir, 'fifo'));
    await mkdir(join(dir, 'a-directory'));
    await writeFile(join(dir, 'large'), Buffer.alloc(1024 * 1024 + 1, 0x61));
    const cases = [
      [wire.path, 'a FIFO (named pipe), not a regular file'],
      ['/dev/zero', 'a character device, not a regular file'],
      ['a-directory', 'a directory, not a regular file'],
      ['large', 'a file larger than 1 MiB'],
    ] as const;
    try {
      for (const field of ['credentialFile', 'caCertFile']) {
        const file = join(dir, `${field}.yaml`);
        await writeFile(file, cases.map(([path], i) => `- { name: l${i}, provider: aws, bucket: b, ${field}: ${JSON.stringify(path)} }`).join('\n'));
        const err = await loadLocationsFile(file).catch((e: unknown) => e);
        assert.ok(err instanceof LocationsFileError, String(err));
        assert.equal(err.problems.length, cases.length, err.message);
        cases.forEach(([, why], i) => assert.ok(err.problems[i]!.startsWith(`location "l${i}": ${field} names ${why}: `), err.problems[i]));
      }
      assert.ok(await wire.intact(), 'the FIFO was never read');
    } finally {
      await wire.close();
    }
  });

  test('an empty or malformed file is refused', async () => {
    const file = join(dir, 'empty.yaml');
    await writeFile(file, 'locations: []\n');
    await assert.rejects(loadLocationsFile(file), LocationsFileError);
    await writeFile(file, '{ not: [valid');
    await assert.rejects(loadLocationsFile(file), /not valid YAML or JSON/);
  });
});

describe('LocalResolver with several locations', () => {
  const spec = (name: string): StoreSpec => ({ name, provider: 'filesystem', bucket: name, prefix: '', config: {} });
  const specs = [spec('one'), spec('two'), spec('three')];
  const signal = new AbortController().signal;
  const target = { namespace: 'velero', owner: 'backups' as const, name: 'nightly', artifact: 'log' };

  test('the first location holding the artifact wins', async () => {
    const asked: string[] = [];
    const r = new LocalResolver('velero', specs, async (loc: Location) => {
      asked.push(loc.spec.name);
      return loc.spec.name === 'two';
    });
    const loc = await r.resolve(target, signal);
    assert.equal(loc.spec.name, 'two');
    assert.equal(loc.key, 'backups/nightly/nightly-logs.gz');
    assert.deepEqual(asked, ['one', 'two']);
  });

  test('found nowhere → NotFound naming the locations', async () => {
    const r = new LocalResolver('velero', specs, async () => false);
    await assert.rejects(r.resolve(target, signal), /backup "nightly" has no log in any location \(one, two, three\)/);
  });

  test('a location that cannot answer is skipped, and its error wins over a 404', async () => {
    const down = new StoreUnavailableError('location two: connection refused');
    const found = new LocalResolver('velero', specs, async (loc) => {
      if (loc.spec.name === 'two') throw down;
      return loc.spec.name === 'three';
    });
    assert.equal((await found.resolve(target, signal)).spec.name, 'three');
    const missing = new LocalResolver('velero', specs, async (loc) => {
      if (loc.spec.name === 'two') throw down;
      return false;
    });
    await assert.rejects(missing.resolve(target, signal), (e) => e === down);
    assert.ok(!(down instanceof ObjectNotFoundError));
  });

  test('the location found is remembered for a while; a miss is not', async () => {
    const asked: string[] = [];
    let holder = 'none';
    const r = new LocalResolver('velero', specs, async (loc: Location) => {
      asked.push(loc.spec.name);
      return loc.spec.name === holder;
    });
    await assert.rejects(r.resolve(target, signal), /has no log in any location/);
    assert.deepEqual(asked, ['one', 'two', 'three']);
    holder = 'three';
    assert.equal((await r.resolve(target, signal)).spec.name, 'three', 'the miss was not cached');
    assert.equal((await r.resolve(target, signal)).spec.name, 'three');
    assert.equal((await r.resolve({ ...target, artifact: 'results' }, signal)).spec.name, 'three');
    assert.deepEqual(asked, ['one', 'two', 'three', 'one', 'two', 'three', 'one', 'two', 'three'], 'one search per artifact');
    assert.equal(FOUND_TTL_MS, 30_000);
  });

  test('one location needs no probe; other namespaces are not served', async () => {
    const r = new LocalResolver('velero', [spec('only')]);
    assert.equal((await r.resolve(target, signal)).spec.name, 'only');
    await assert.rejects(r.resolve({ ...target, namespace: 'other' }, signal), /namespace "other" is not served/);
  });
});

describe('LocalResolver: one search shared by concurrent callers', () => {
  const spec = (name: string): StoreSpec => ({ name, provider: 'filesystem', bucket: name, prefix: '', config: {} });
  const target = { namespace: 'velero', owner: 'backups' as const, name: 'nightly', artifact: 'log' };

  test('a caller that leaves stops waiting; the others still get the location, from one search', async () => {
    let probes = 0;
    let release!: () => void;
    const gate = new Promise<void>((resolve) => (release = resolve));
    const r = new LocalResolver('velero', [spec('one'), spec('two')], async (loc, signal) => {
      probes++;
      await gate;
      assert.equal(signal.aborted, false, 'the shared search runs under no caller signal');
      return loc.spec.name === 'two';
    });
    const leaving = new AbortController();
    const first = r.resolve(target, leaving.signal);
    const second = r.resolve(target, new AbortController().signal);
    leaving.abort(new Error('client closed the connection'));
    await assert.rejects(first, /client closed the connection/);
    release();
    assert.equal((await second).spec.name, 'two');
    assert.equal(probes, 2, 'one search (two locations), not one per caller');
  });
});

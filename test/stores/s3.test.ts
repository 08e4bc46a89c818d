import { createHash, randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { IncomingMessage, Server, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { finished } from 'node:stream/promises';
import { after, before, describe, test } from 'node:test';
import { inspect } from 'node:util';
import assert from 'node:assert/strict';
import { DEFAULT_MAX_SOCKETS, DEFAULT_TIMEOUTS } from '../../src/stores/adapter.ts';
import type { AdapterOptions, Timeouts } from '../../src/stores/adapter.ts';
import {
  AccessDeniedError,
  InvalidLocationError,
  ObjectNotFoundError,
  StoreTimeoutError,
  StoreUnavailableError,
  ThrottledError,
} from '../../src/stores/errors.ts';
import { S3Store } from '../../src/stores/s3.ts';
import type { S3StoreTestHooks } from '../../src/stores/s3.ts';
import type { StoreSpec } from '../../src/stores/spec.ts';
import { RETRIES } from '../../src/stores/retry.ts';
import { trustFor } from '../../src/stores/trust.ts';
import type { ObjectBody, ObjectInfo, ObjectStore } from '../../src/stores/types.ts';
import { FAULT_TIMEOUTS, FaultProxy } from '../support/fault-proxy.ts';
import { startS3rver } from '../support/s3rver.ts';
import type { RecordedRequest, S3rverInstance } from '../support/s3rver.ts';
import { collect, drain, firstChunk, openFdCount, waitForFdCount, bodyOf } from '../support/streams.ts';
import { createTestPki } from '../support/test-ca.ts';
import type { TestPki } from '../support/test-ca.ts';
import { tripwire } from '../support/tripwire.ts';
import { runStoreConformance } from './conformance.ts';
import { recordListErrors } from './conformance-list.ts';

// Distinctive credential values: the last test looks for each of them in every error seen here.
// s3rver checks access key ids (these are registered with it) but never secrets.
const KEY_A = { accessKeyId: 'AKIDTENANTA0000001', secretAccessKey: 'secret-A-7f3c9e1d5b2a4c6e8f0a1b3c5d7e9f1a' };
const KEY_B = { accessKeyId: 'AKIDTENANTB0000002', secretAccessKey: 'secret-B-0e2d4c6b8a9f7e5d3c1b0a2f4e6d8c0b' };
const WRONG = { accessKeyId: 'AKIDUNKNOWN0000003', secretAccessKey: 'secret-W-5a5b5c5d5e5f505152535455565758' };
const SESSION_TOKEN = 'token-S-FwoGZXIvYXdzEJr//////////wEaDNotARealTokenButLongEnough+/=';
const SSE_C_KEY = Buffer.from('0123456789abcdef0123456789ABCDEF');
const SECRETS = [
  ...[KEY_A, KEY_B, WRONG].flatMap((k) => [k.accessKeyId, k.secretAccessKey]),
  SESSION_TOKEN,
  SSE_C_KEY.toString('latin1'),
  SSE_C_KEY.toString('base64'),
];

/** Every error a store or parser produced in this file, checked for secrets at the end. */
const seenErrors: unknown[] = [];

function recordingStore(store: ObjectStore): ObjectStore {
  const body = (got: ObjectBody): ObjectBody => {
    bodyOf(got).once('error', (err) => seenErrors.push(err));
    return got;
  };
  return {
    stat: (key, opts) =>
      store.stat(key, opts).catch((err: unknown) => {
        seenErrors.push(err);
        throw err;
      }),
    get: (key, opts) =>
      (async () => store.get(key, opts))().then(body, (err: unknown) => {
        seenErrors.push(err);
        throw err;
      }),
    list: (prefix, opts) => recordListErrors(store.list(prefix, opts), (err) => seenErrors.push(err)),
  };
}

/** Runs `fn` and returns what it threw (recording it); fails when it does not throw. */
async function caught(fn: () => unknown): Promise<Error> {
  try {
    await fn();
  } catch (err) {
    seenErrors.push(err);
    assert.ok(err instanceof Error, `threw a non-Error: ${String(err)}`);
    return err;
  }
  assert.fail('expected an error');
}

function credentialFile(key: { accessKeyId: string; secretAccessKey: string }, profile = 'default', token?: string): Uint8Array {
  const lines = [`[${profile}]`, `aws_access_key_id = ${key.accessKeyId}`, `aws_secret_access_key = ${key.secretAccessKey}`];
  if (token !== undefined) lines.push(`aws_session_token = ${token}`);
  return Buffer.from(`${lines.join('\n')}\n`);
}

interface Extra {
  installBundle?: string;
  ambient?: boolean;
  timeouts?: Timeouts;
  hooks?: S3StoreTestHooks;
}

const opened: S3Store[] = [];

/** A store built the way the factory builds one: trust from trustFor, our timeouts and pool size. */
function s3Store(spec: StoreSpec, extra: Extra = {}): S3Store {
  const opts: AdapterOptions = {
    spec,
    trust: trustFor(spec.name, spec.config, spec.caBundle, extra.installBundle),
    ambientCredentials: extra.ambient ?? false,
    timeouts: extra.timeouts ?? DEFAULT_TIMEOUTS,
    maxSockets: DEFAULT_MAX_SOCKETS,
  };
  const store = new S3Store(opts, extra.hooks);
  opened.push(store);
  return store;
}

function s3Spec(srv: S3rverInstance, over: Partial<StoreSpec> = {}, config: Record<string, string> = {}): StoreSpec {
  return {
    name: 'velero/s3-test',
    provider: 'velero.io/aws',
    bucket: srv.bucket,
    prefix: '',
    config: { region: 'us-east-1', s3Url: srv.endpoint, s3ForcePathStyle: 'true', ...config },
    credential: credentialFile(KEY_A),
    ...over,
  };
}

function signal(): AbortSignal {
  return new AbortController().signal;
}

async function read(store: ObjectStore, key: string): Promise<string> {
  return (await collect(bodyOf(await store.get(key, { signal: signal() })))).toString();
}

const EXTRA_KEYS = [KEY_A, KEY_B];

/** Where the next requests will start in `srv.requests` (everything earlier has arrived). */
async function mark(srv: S3rverInstance): Promise<number> {
  await srv.flush();
  return srv.requests.length;
}

/** The requests s3rver received since `from`, once they have all arrived. */
async function sentSince(srv: S3rverInstance, from: number): Promise<RecordedRequest[]> {
  await srv.flush();
  return srv.requests.slice(from);
}

after(async () => {
  for (const store of opened) await store.close();
});

runStoreConformance('s3 on s3rver over HTTPS, prefix cluster-a/velero', async () => {
  const pki = await createTestPki();
  const srv = await startS3rver({ tls: { key: pki.key, cert: pki.cert, ca: pki.caCert }, extraKeys: EXTRA_KEYS });
  const prefix = 'cluster-a/velero';
  // checksumAlgorithm is a write setting: present here to show reads (ranged ones too) ignore it.
  const spec = s3Spec(srv, { prefix, caBundle: pki.caCert }, { checksumAlgorithm: 'CRC32' });
  return {
    store: recordingStore(s3Store(spec)),
    put: (key, bytes) => srv.put(`${prefix}/${key}`, bytes),
    putOutside: (name, bytes) => srv.put(`cluster-a/${name}`, bytes),
    putBeside: (suffix, bytes) => srv.put(`${prefix}${suffix}`, bytes),
    wrongCredentials: () => recordingStore(s3Store({ ...spec, credential: credentialFile(WRONG) })),
    untrustedTls: () => recordingStore(s3Store({ ...spec, caBundle: undefined })),
    cleanup: () => srv.stop(),
  };
});

runStoreConformance('s3 on s3rver over HTTP, no prefix, no region', async () => {
  const srv = await startS3rver({ extraKeys: EXTRA_KEYS });
  const spec = s3Spec(srv, {}, {});
  delete spec.config.region;
  const proxy = await FaultProxy.start(srv.endpoint);
  const faulty = s3Store({ ...spec, config: { ...spec.config, s3Url: proxy.url } }, { timeouts: FAULT_TIMEOUTS });
  return {
    store: recordingStore(s3Store(spec)),
    put: (key, bytes) => srv.put(key, bytes),
    wrongCredentials: () => recordingStore(s3Store({ ...spec, credential: credentialFile(WRONG) })),
    faulty: { store: faulty, faults: proxy, idleMs: FAULT_TIMEOUTS.socketIdleMs },
    cleanup: async () => {
      await proxy.close();
      await srv.stop();
    },
  };
});

describe('S3Store on s3rver', () => {
  let pki: TestPki;
  let tls: S3rverInstance;
  let plain: S3rverInstance;

  before(async () => {
    pki = await createTestPki();
    [tls, plain] = await Promise.all([
      startS3rver({ tls: { key: pki.key, cert: pki.cert, ca: pki.caCert }, extraKeys: EXTRA_KEYS }),
      startS3rver({ extraKeys: EXTRA_KEYS }),
    ]);
    await tls.put('tls/hello', Buffer.from('hello over TLS'));
    await plain.put('plain/hello', Buffer.from('hello over HTTP'));
  });
  after(async () => {
    await Promise.all([tls.stop(), plain.stop()]);
  });

  describe('CA bundles', () => {
    test('without the CA: StoreUnavailableError saying the certificate is not trusted', async () => {
      const store = s3Store(s3Spec(tls));
      for (const call of [() => store.stat('tls/hello', { signal: signal() }), () => store.get('tls/hello', { signal: signal() })]) {
        const err = await caught(call);
        assert.ok(err instanceof StoreUnavailableError, `got ${inspect(err)}`);
        assert.match(err.message, /location velero\/s3-test: the store's TLS certificate is not trusted \([A-Z_]+\)/);
      }
    });

    test("another CA's bundle does not make it trusted", async () => {
      const other = await createTestPki('some other CA');
      const err = await caught(() => s3Store(s3Spec(tls, { caBundle: other.caCert })).stat('tls/hello', { signal: signal() }));
      assert.ok(err instanceof StoreUnavailableError);
      assert.match(err.message, /not trusted/);
    });

    test("with the location's bundle (spec.caBundle) it works", async () => {
      assert.equal(await read(s3Store(s3Spec(tls, { caBundle: pki.caCert })), 'tls/hello'), 'hello over TLS');
    });

    test('with the install-time bundle it works', async () => {
      assert.equal(await read(s3Store(s3Spec(tls), { installBundle: pki.caCert }), 'tls/hello'), 'hello over TLS');
    });

    test('with insecureSkipTLSVerify "true" it works, for that location only', async () => {
      const insecure = s3Store(s3Spec(tls, {}, { insecureSkipTLSVerify: 'true' }));
      const strict = s3Store(s3Spec(tls));
      const [a, b] = await Promise.allSettled([read(insecure, 'tls/hello'), strict.stat('tls/hello', { signal: signal() })]);
      assert.deepEqual(a, { status: 'fulfilled', value: 'hello over TLS' });
      assert.equal(b.status, 'rejected');
      assert.ok(b.reason instanceof StoreUnavailableError);
      seenErrors.push(b.reason);
    });
  });

  describe('credentials', () => {
    test('wrong access key id → AccessDeniedError naming the location and key, not the credential', async () => {
      const store = s3Store(s3Spec(plain, { credential: credentialFile(WRONG) }));
      for (const call of [() => store.stat('plain/hello', { signal: signal() }), () => store.get('plain/hello', { signal: signal() })]) {
        const err = await caught(call);
        assert.ok(err instanceof AccessDeniedError, `got ${inspect(err)}`);
        assert.match(err.message, /^location velero\/s3-test: reading object "plain\/hello": the store refused/);
        assert.match(err.message, /HTTP 403/);
      }
    });

    test('two stores with different credentials read concurrently, each signing with its own key', async () => {
      await plain.put('two/a', Buffer.from('object a'));
      await plain.put('two/b', Buffer.from('object b'));
      const a = s3Store(s3Spec(plain, { name: 'team-a/bsl' }));
      const b = s3Store(s3Spec(plain, { name: 'team-b/bsl', credential: credentialFile(KEY_B) }));
      const denied = s3Store(s3Spec(plain, { name: 'team-c/bsl', credential: credentialFile(WRONG) }));
      const from = await mark(plain);
      const results = await Promise.allSettled(
        Array.from({ length: 6 }, (_, i) => [
          read(a, 'two/a'),
          read(b, 'two/b'),
          i % 2 === 0 ? denied.stat('two/a', { signal: signal() }) : denied.get('two/b', { signal: signal() }),
        ]).flat(),
      );
      results.forEach((r, i) => {
        if (i % 3 === 0) assert.deepEqual(r, { status: 'fulfilled', value: 'object a' });
        if (i % 3 === 1) assert.deepEqual(r, { status: 'fulfilled', value: 'object b' });
        if (i % 3 === 2) {
          assert.equal(r.status, 'rejected');
          assert.ok(r.reason instanceof AccessDeniedError);
          assert.match(r.reason.message, /^location team-c\/bsl:/);
          seenErrors.push(r.reason);
        }
      });
      const sent = await sentSince(plain, from);
      const signers = (path: string): Set<string | undefined> =>
        new Set(sent.filter((r) => r.url.startsWith(`/${plain.bucket}/${path}`) && r.accessKeyId !== WRONG.accessKeyId).map((r) => r.accessKeyId));
      assert.deepEqual(signers('two/a'), new Set([KEY_A.accessKeyId]));
      assert.deepEqual(signers('two/b'), new Set([KEY_B.accessKeyId]));
      assert.equal(sent.filter((r) => r.accessKeyId === WRONG.accessKeyId).length, 6);
    });

    test('the profile named by config.profile is used, as [name] or [profile name]', async () => {
      const file = Buffer.from(
        `[default]\naws_access_key_id = ${WRONG.accessKeyId}\naws_secret_access_key = ${WRONG.secretAccessKey}\n` +
          `[profile tenant]\naws_access_key_id = ${KEY_B.accessKeyId}\naws_secret_access_key = ${KEY_B.secretAccessKey}\n`,
      );
      const from = await mark(plain);
      assert.equal(await read(s3Store(s3Spec(plain, { credential: file }, { profile: 'tenant' })), 'plain/hello'), 'hello over HTTP');
      assert.deepEqual(new Set((await sentSince(plain, from)).map((r) => r.accessKeyId)), new Set([KEY_B.accessKeyId]));
      const err = await caught(() => s3Store(s3Spec(plain, { credential: file })).stat('plain/hello', { signal: signal() }));
      assert.ok(err instanceof AccessDeniedError, 'the default profile holds the unknown key');
    });

    test('a missing profile → InvalidLocationError naming the location and the profile', async () => {
      const err = await caught(() => s3Store(s3Spec(plain, {}, { profile: 'nope' })));
      assert.ok(err instanceof InvalidLocationError);
      assert.match(err.message, /location velero\/s3-test: the AWS credential file has no profile "nope"/);
    });

    test('a profile without its secret → InvalidLocationError naming the field', async () => {
      const file = Buffer.from(`[default]\naws_access_key_id = ${KEY_A.accessKeyId}\n`);
      const err = await caught(() => s3Store(s3Spec(plain, { credential: file })));
      assert.ok(err instanceof InvalidLocationError);
      assert.match(err.message, /profile "default" .* has no aws_secret_access_key/);
    });

    test('aws_session_token is sent as x-amz-security-token', async () => {
      const from = await mark(plain);
      await read(s3Store(s3Spec(plain, { credential: credentialFile(KEY_A, 'default', SESSION_TOKEN) })), 'plain/hello');
      const sent = await sentSince(plain, from);
      assert.ok(sent.length > 0);
      for (const r of sent) assert.equal(r.headers['x-amz-security-token'], SESSION_TOKEN);
    });

    test('no credential and no ambient credentials → InvalidLocationError', async () => {
      const err = await caught(() => s3Store(s3Spec(plain, { credential: undefined })));
      assert.ok(err instanceof InvalidLocationError);
      assert.match(err.message, /location velero\/s3-test needs a credential/);
    });

    test("no credential with ambient credentials → the SDK's default chain (environment, then the named profile)", async () => {
      const dir = await mkdtemp(join(tmpdir(), 'vds-s3-ambient-'));
      const saved = { ...process.env };
      try {
        const shared = join(dir, 'credentials');
        await writeFile(shared, credentialFile(KEY_B, 'ambient-profile'));
        process.env.AWS_SHARED_CREDENTIALS_FILE = shared;
        process.env.AWS_CONFIG_FILE = join(dir, 'no-config');
        process.env.AWS_ACCESS_KEY_ID = KEY_A.accessKeyId;
        process.env.AWS_SECRET_ACCESS_KEY = KEY_A.secretAccessKey;
        delete process.env.AWS_PROFILE;
        delete process.env.AWS_SESSION_TOKEN;
        let from = await mark(plain);
        await read(s3Store(s3Spec(plain, { credential: undefined }), { ambient: true }), 'plain/hello');
        assert.deepEqual(new Set((await sentSince(plain, from)).map((r) => r.accessKeyId)), new Set([KEY_A.accessKeyId]));

        delete process.env.AWS_ACCESS_KEY_ID;
        delete process.env.AWS_SECRET_ACCESS_KEY;
        from = await mark(plain);
        await read(s3Store(s3Spec(plain, { credential: undefined }, { profile: 'ambient-profile' }), { ambient: true }), 'plain/hello');
        assert.deepEqual(new Set((await sentSince(plain, from)).map((r) => r.accessKeyId)), new Set([KEY_B.accessKeyId]));
      } finally {
        for (const name of Object.keys(process.env)) if (!(name in saved)) delete process.env[name];
        Object.assign(process.env, saved);
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('prefix', () => {
    test('a prefix (cluster-a/velero) keeps keys inside it', async () => {
      await plain.put('cluster-a/velero/backups/b1/b1-logs.gz', Buffer.from('inside'));
      await plain.put('cluster-a/backups/b1/b1-logs.gz', Buffer.from('outside'));
      const scoped = s3Store(s3Spec(plain, { prefix: 'cluster-a/velero' }));
      const from = await mark(plain);
      assert.equal(await read(scoped, 'backups/b1/b1-logs.gz'), 'inside');
      const sent = await sentSince(plain, from);
      assert.deepEqual(sent.map((r) => r.url.split('?')[0]), [`/${plain.bucket}/cluster-a/velero/backups/b1/b1-logs.gz`]);
      for (const key of ['../backups/b1/b1-logs.gz', '../../cluster-a/backups/b1/b1-logs.gz']) {
        await caught(() => scoped.stat(key, { signal: signal() }));
        await caught(() => scoped.get(key, { signal: signal() }));
      }
      // Only the one read above reached the store: escaping keys are refused before any request.
      assert.equal((await sentSince(plain, from)).length, 1);
      const err = await caught(() => scoped.stat('cluster-a/backups/b1/b1-logs.gz', { signal: signal() }));
      assert.ok(err instanceof ObjectNotFoundError);
      // The same bucket without the prefix sees both.
      assert.equal(await read(s3Store(s3Spec(plain)), 'cluster-a/backups/b1/b1-logs.gz'), 'outside');
    });

    test('a prefix written with extra slashes names the same objects', async () => {
      assert.equal(await read(s3Store(s3Spec(plain, { prefix: '/cluster-a//velero/' })), 'backups/b1/b1-logs.gz'), 'inside');
    });
  });

  describe('SSE-C (customerKeyEncryptionFile)', () => {
    let dir = '';
    before(async () => {
      dir = await mkdtemp(join(tmpdir(), 'vds-s3-ssec-'));
      // Longer than 32 bytes: Velero's plugin uses the first 32, so objects it wrote need exactly those.
      await writeFile(join(dir, 'key'), Buffer.concat([SSE_C_KEY, Buffer.from('\n')]));
      await writeFile(join(dir, 'short'), SSE_C_KEY.subarray(0, 31));
      await plain.put('ssec/object', Buffer.from('encrypted at rest'));
    });
    after(() => rm(dir, { recursive: true, force: true }));

    test('HeadObject and GetObject carry AES256, the key and its MD5', async () => {
      const store = s3Store(s3Spec(plain, {}, { customerKeyEncryptionFile: join(dir, 'key') }));
      const from = await mark(plain);
      assert.equal((await store.stat('ssec/object', { signal: signal() })).size, 17);
      const got = await store.get('ssec/object', { signal: signal(), range: { start: 0, end: 8 } });
      assert.equal((await collect(bodyOf(got))).toString(), 'encrypted');
      const sent = await sentSince(plain, from);
      assert.deepEqual(sent.map((r) => r.method), ['HEAD', 'GET']);
      for (const r of sent) {
        assert.deepEqual(
          {
            algorithm: r.headers['x-amz-server-side-encryption-customer-algorithm'],
            key: r.headers['x-amz-server-side-encryption-customer-key'],
            md5: r.headers['x-amz-server-side-encryption-customer-key-md5'],
          },
          {
            algorithm: 'AES256',
            key: SSE_C_KEY.toString('base64'),
            md5: createHash('md5').update(SSE_C_KEY).digest('base64'),
          },
        );
      }
    });

    test('without the setting no SSE-C header is sent', async () => {
      const from = await mark(plain);
      await read(s3Store(s3Spec(plain)), 'ssec/object');
      const sent = await sentSince(plain, from);
      assert.ok(sent.length > 0);
      for (const r of sent) assert.deepEqual(r.headers, {});
    });

    test('a missing or short key file → InvalidLocationError on first use, never showing key bytes', async () => {
      for (const [file, want] of [
        ['absent', /^location velero\/s3-test: config customerKeyEncryptionFile names a file that does not exist \(ENOENT\)$/],
        ['short', /^location velero\/s3-test: config customerKeyEncryptionFile names a file shorter than the 32-byte key it must hold$/],
      ] as const) {
        const store = s3Store(s3Spec(plain, {}, { customerKeyEncryptionFile: join(dir, file) }));
        const err = await caught(() => store.stat('ssec/object', { signal: signal() }));
        assert.ok(err instanceof InvalidLocationError);
        assert.match(err.message, want);
        assert.ok(!err.message.includes(dir), 'the message names the setting, not the path');
        // Not cached: a key file that appears later is picked up.
        await writeFile(join(dir, file), SSE_C_KEY);
        assert.equal((await store.stat('ssec/object', { signal: signal() })).size, 17);
      }
    });

    test('a FIFO, /dev/zero, a directory or a file over 1 MiB → InvalidLocationError naming the setting; nothing read, nothing sent', async () => {
      const wire = await tripwire(join(dir, 'fifo'));
      await mkdir(join(dir, 'a-directory'));
      await writeFile(join(dir, 'large'), Buffer.alloc(1024 * 1024 + 1, 1));
      try {
        const from = await mark(plain);
        for (const [path, why] of [
          [wire.path, /names a FIFO \(named pipe\), not a regular file$/],
          ['/dev/zero', /names a character device, not a regular file$/],
          [join(dir, 'a-directory'), /names a directory, not a regular file$/],
          [join(dir, 'large'), /names a file larger than 1 MiB$/],
        ] as const) {
          const store = s3Store(s3Spec(plain, {}, { customerKeyEncryptionFile: path }));
          const err = await caught(() => store.stat('ssec/object', { signal: signal() }));
          assert.ok(err instanceof InvalidLocationError);
          assert.match(err.message, /^location velero\/s3-test: config customerKeyEncryptionFile names /);
          assert.match(err.message, why);
        }
        assert.deepEqual(await sentSince(plain, from), [], 'no request reached the store');
        assert.ok(await wire.intact(), 'the FIFO was never read');
      } finally {
        await wire.close();
      }
    });
  });

  describe('configuration', () => {
    test('s3Url without region signs for us-east-1, as the plugin does; an explicit region is used', async () => {
      const spec = s3Spec(plain);
      delete spec.config.region;
      let from = await mark(plain);
      await read(s3Store(spec), 'plain/hello');
      assert.deepEqual(new Set((await sentSince(plain, from)).map((r) => r.region)), new Set(['us-east-1']));
      from = await mark(plain);
      await read(s3Store(s3Spec(plain, {}, { region: 'eu-west-3' })), 'plain/hello');
      assert.deepEqual(new Set((await sentSince(plain, from)).map((r) => r.region)), new Set(['eu-west-3']));
    });

    test('write-only and pre-signing keys are accepted and do not change reads', async () => {
      const config = {
        serverSideEncryption: 'aws:kms',
        kmsKeyId: 'arn:aws:kms:us-east-1:123456789012:key/abc',
        tagging: 'a=b',
        publicUrl: 'https://s3.example.com',
        credentialsFile: '/credentials/cloud',
        checksumAlgorithm: 'SHA256',
        signatureVersion: '4',
        enableSharedConfig: 'true',
      };
      assert.equal(await read(s3Store(s3Spec(plain, {}, config)), 'plain/hello'), 'hello over HTTP');
    });

    const invalid: { name: string; spec: (srv: S3rverInstance) => StoreSpec; want: RegExp }[] = [
      { name: 'an unknown config key', spec: (srv) => s3Spec(srv, {}, { storageAccount: 'x' }), want: /unknown config key\(s\) for provider velero\.io\/aws: storageAccount/ },
      { name: 'an s3Url that is not http(s)', spec: (srv) => s3Spec(srv, {}, { s3Url: 'ftp://example.com' }), want: /s3Url must be an http:\/\/ or https:\/\/ URL/ },
      { name: 'an s3Url that is not a URL', spec: (srv) => s3Spec(srv, {}, { s3Url: 'minio:9000' }), want: /s3Url must be/ },
      { name: 's3ForcePathStyle not a boolean', spec: (srv) => s3Spec(srv, {}, { s3ForcePathStyle: 'yes' }), want: /s3ForcePathStyle must be true or false/ },
      { name: 'insecureSkipTLSVerify not a boolean', spec: (srv) => s3Spec(srv, {}, { insecureSkipTLSVerify: 'maybe' }), want: /insecureSkipTLSVerify must be true or false/ },
      { name: 'an empty bucket', spec: (srv) => s3Spec(srv, { bucket: '' }), want: /the bucket is empty/ },
      { name: 'another provider', spec: (srv) => s3Spec(srv, { provider: 'velero.io/azure' }), want: /is not an S3 provider/ },
      { name: 'a malformed credential file', spec: (srv) => s3Spec(srv, { credential: Buffer.from(`[default]\n${KEY_A.secretAccessKey}\n`) }), want: /credential file line 2: expected/ },
    ];
    for (const c of invalid) {
      test(`${c.name} → InvalidLocationError`, async () => {
        const err = await caught(() => s3Store(c.spec(plain)));
        assert.ok(err instanceof InvalidLocationError, inspect(err));
        assert.match(err.message, c.want);
        assert.match(err.message, /^location velero\/s3-test/);
      });
    }
  });

  describe('the s3rver helper', () => {
    test('putFile streams a multi-MiB file in intact (no aws-chunked framing stored as content)', async () => {
      const dir = await mkdtemp(join(tmpdir(), 'vds-s3-putfile-'));
      try {
        const bytes = randomBytes(3 * 1024 * 1024 + 5);
        await writeFile(join(dir, 'f'), bytes);
        await plain.putFile('helper/file', join(dir, 'f'));
        const store = s3Store(s3Spec(plain));
        assert.equal((await store.stat('helper/file', { signal: signal() })).size, bytes.length);
        const got = await collect(bodyOf(await store.get('helper/file', { signal: signal() })));
        assert.ok(got.equals(bytes));
      } finally {
        await rm(dir, { recursive: true, force: true });
      }
    });
  });

  describe('close', () => {
    test('close() releases pooled sockets; later calls fail with StoreUnavailableError', async () => {
      const fdsBefore = openFdCount();
      const store = s3Store(s3Spec(plain));
      await Promise.all([1, 2, 3, 4].map(() => read(store, 'plain/hello')));
      assert.ok(openFdCount() > fdsBefore, 'keep-alive sockets are pooled');
      await store.close();
      assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore, 'sockets closed');
      const err = await caught(() => store.stat('plain/hello', { signal: signal() }));
      assert.ok(err instanceof StoreUnavailableError);
      assert.match(err.message, /closed/);
    });
  });
});

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

/** A test server playing AWS or a misbehaving S3-compatible store; `handle` is swapped per test. */
describe('S3Store against a scripted server', () => {
  let server: Server;
  let endpoint = '';
  let handle: Handler = (_req, res) => res.end();
  const seen: { method: string; url: string; region: string | undefined }[] = [];
  let lastHeaders: IncomingMessage['headers'] = {};
  const sockets = new Set<Socket>();

  before(async () => {
    server = createServer((req, res) => {
      const region = /Credential=[^/]+\/\d{8}\/([^/]+)\//.exec(req.headers.authorization ?? '')?.[1];
      seen.push({ method: req.method ?? '', url: req.url ?? '', region });
      lastHeaders = req.headers;
      handle(req, res);
    });
    server.on('connection', (s) => {
      sockets.add(s);
      s.on('close', () => sockets.delete(s));
    });
    await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', resolve));
    endpoint = `http://127.0.0.1:${(server.address() as AddressInfo).port}`;
  });
  after(async () => {
    for (const s of sockets) s.destroy();
    await new Promise((resolve) => server.close(resolve));
  });

  const xmlError = (res: ServerResponse, status: number, code: string, headers: Record<string, string> = {}): void => {
    const body = `<?xml version="1.0" encoding="UTF-8"?><Error><Code>${code}</Code><Message>scripted</Message></Error>`;
    res.writeHead(status, { 'content-type': 'application/xml', 'content-length': Buffer.byteLength(body), ...headers });
    res.end(res.req.method === 'HEAD' ? undefined : body);
  };
  const object = (res: ServerResponse, bytes: Buffer, extra: Record<string, string> = {}): void => {
    res.writeHead(200, {
      'content-length': bytes.length,
      etag: '"0123abcd"',
      'last-modified': new Date(1_700_000_000_000).toUTCString(),
      ...extra,
    });
    res.end(res.req.method === 'HEAD' ? undefined : bytes);
  };

  const spec = (config: Record<string, string> = {}): StoreSpec => ({
    name: 'velero/scripted',
    provider: 'aws',
    bucket: 'velero',
    prefix: '',
    config: { region: 'us-east-1', s3Url: endpoint, s3ForcePathStyle: 'true', ...config },
    credential: credentialFile(KEY_A),
  });
  // Each short on its own, so a test shows that very timeout at work.
  const shortRequest: Timeouts = { connectMs: 1_000, requestMs: 400, socketIdleMs: 30_000 };
  const shortIdle: Timeouts = { connectMs: 1_000, requestMs: 30_000, socketIdleMs: 400 };

  describe('region discovery (no region, no s3Url)', () => {
    const awsSpec = (): StoreSpec => ({ ...spec(), config: {} });

    test('HeadBucket through us-east-1 once; every later request signs for the region it names', async () => {
      let lookups = 0;
      handle = (req, res) => {
        if (req.method === 'HEAD' && req.url === '/velero/') {
          lookups++;
          // What S3 answers for a bucket in another region.
          res.writeHead(301, { 'x-amz-bucket-region': 'eu-central-1', 'content-type': 'application/xml' });
          res.end();
          return;
        }
        object(res, Buffer.from('hello'));
      };
      seen.length = 0;
      const store = s3Store(awsSpec(), { hooks: { awsEndpoint: endpoint } });
      assert.equal(seen.length, 0, 'nothing is sent before the first call');
      const infos = await Promise.all([1, 2, 3].map(() => store.stat('k', { signal: signal() })));
      for (const info of infos) assert.equal(info.size, 5);
      assert.equal(await read(store, 'k'), 'hello');
      assert.equal(lookups, 1);
      assert.deepEqual(seen[0], { method: 'HEAD', url: '/velero/', region: 'us-east-1' });
      assert.deepEqual(new Set(seen.slice(1).map((r) => r.region)), new Set(['eu-central-1']));
    });

    test('a bucket in us-east-1 (200 with the header) is read there', async () => {
      handle = (req, res) => {
        if (req.url === '/velero/') {
          res.writeHead(200, { 'x-amz-bucket-region': 'us-east-1' });
          res.end();
          return;
        }
        object(res, Buffer.from('abc'));
      };
      seen.length = 0;
      assert.equal(await read(s3Store(awsSpec(), { hooks: { awsEndpoint: endpoint } }), 'k'), 'abc');
      assert.deepEqual(seen.map((r) => r.region), ['us-east-1', 'us-east-1']);
    });

    test('a failed lookup is reported and retried on the next call, not cached', async () => {
      let fail = true;
      handle = (req, res) => {
        if (req.url === '/velero/') {
          if (fail) xmlError(res, 500, 'InternalError');
          else {
            res.writeHead(301, { 'x-amz-bucket-region': 'ap-south-1' });
            res.end();
          }
          return;
        }
        object(res, Buffer.from('x'));
      };
      const store = s3Store(awsSpec(), { hooks: { awsEndpoint: endpoint } });
      const err = await caught(() => store.stat('k', { signal: signal() }));
      assert.ok(err instanceof StoreUnavailableError);
      assert.match(err.message, /finding the region of bucket "velero".*set config region/);
      fail = false;
      seen.length = 0;
      assert.equal((await store.stat('k', { signal: signal() })).size, 1);
      assert.deepEqual(seen.map((r) => r.region), ['us-east-1', 'ap-south-1']);
    });

    test('a missing bucket → ObjectNotFoundError', async () => {
      handle = (_req, res) => xmlError(res, 404, 'NoSuchBucket');
      const err = await caught(() => s3Store(awsSpec(), { hooks: { awsEndpoint: endpoint } }).get('k', { signal: signal() }));
      assert.ok(err instanceof ObjectNotFoundError);
    });

    test('an abort while the lookup runs rejects that call at once with its reason', async () => {
      let answered = false;
      let lookups = 0;
      handle = (req, res) => {
        if (req.url === '/velero/') {
          lookups++;
          setTimeout(() => {
            answered = true;
            res.writeHead(200, { 'x-amz-bucket-region': 'us-west-2' });
            res.end();
          }, 300);
          return;
        }
        object(res, Buffer.from('late'));
      };
      const store = s3Store(awsSpec(), { hooks: { awsEndpoint: endpoint } });
      const ac = new AbortController();
      const reason = new Error('client went away');
      setTimeout(() => ac.abort(reason), 20);
      await assert.rejects(store.stat('k', { signal: ac.signal }), (err) => err === reason);
      assert.equal(answered, false, 'rejected before the lookup finished');
      // The shared lookup carried on for the next caller (whenever its request reached the server).
      seen.length = 0;
      assert.equal(await read(store, 'k'), 'late');
      assert.deepEqual(seen.filter((r) => r.url !== '/velero/').map((r) => r.region), ['us-west-2']);
      assert.equal(lookups, 1);
    });
  });

  describe('error mapping', () => {
    const statAndGet = async (store: S3Store): Promise<Error[]> => [
      await caught(() => store.stat('k', { signal: signal() })),
      await caught(() => store.get('k', { signal: signal() })),
    ];

    test('503 SlowDown with Retry-After → ThrottledError carrying the seconds, without waiting them out', async () => {
      handle = (_req, res) => xmlError(res, 503, 'SlowDown', { 'retry-after': '7' });
      const t0 = performance.now();
      for (const err of await statAndGet(s3Store(spec()))) {
        assert.ok(err instanceof ThrottledError, inspect(err));
        assert.equal(err.retryAfterSeconds, 7);
        assert.match(err.message, /^location velero\/scripted: reading object "k": the store asks to slow down \(.*HTTP 503/);
      }
      assert.ok(performance.now() - t0 < 2_000, 'Retry-After handed to the caller, not slept on');
    });

    test('429 → ThrottledError', async () => {
      handle = (_req, res) => xmlError(res, 429, 'TooManyRequests');
      for (const err of await statAndGet(s3Store(spec()))) assert.ok(err instanceof ThrottledError);
    });

    test(`500 → StoreUnavailableError, retried ${RETRIES} times`, async () => {
      handle = (_req, res) => xmlError(res, 500, 'InternalError');
      seen.length = 0;
      for (const err of await statAndGet(s3Store(spec()))) {
        assert.ok(err instanceof StoreUnavailableError);
        assert.match(err.message, /HTTP 500/);
      }
      assert.equal(seen.length, 2 * (RETRIES + 1));
    });

    test('a 500 then a success is absorbed by the retry', async () => {
      let n = 0;
      handle = (_req, res) => (n++ === 0 ? xmlError(res, 500, 'InternalError') : object(res, Buffer.from('ok')));
      assert.equal(await read(s3Store(spec()), 'k'), 'ok');
    });

    test('403 AccessDenied / SignatureDoesNotMatch → AccessDeniedError', async () => {
      for (const code of ['AccessDenied', 'SignatureDoesNotMatch']) {
        handle = (_req, res) => xmlError(res, 403, code);
        for (const err of await statAndGet(s3Store(spec()))) assert.ok(err instanceof AccessDeniedError);
      }
    });

    test('400 ExpiredToken → AccessDeniedError', async () => {
      handle = (_req, res) => xmlError(res, 400, 'ExpiredToken');
      const err = await caught(() => s3Store(spec()).get('k', { signal: signal() }));
      assert.ok(err instanceof AccessDeniedError);
    });

    test('no answer within requestMs → StoreTimeoutError, not retried', { timeout: 10_000 }, async () => {
      handle = () => undefined;
      seen.length = 0;
      const t0 = performance.now();
      for (const err of await statAndGet(s3Store(spec(), { timeouts: shortRequest }))) {
        assert.ok(err instanceof StoreTimeoutError, inspect(err));
        assert.match(err.message, /did not answer in time/);
      }
      assert.equal(seen.length, 2);
      assert.ok(performance.now() - t0 < 3_000);
    });

    test('connection refused → StoreUnavailableError', async () => {
      const closed = createServer();
      await new Promise<void>((resolve) => closed.listen(0, '127.0.0.1', resolve));
      const port = (closed.address() as AddressInfo).port;
      await new Promise((resolve) => closed.close(resolve));
      const store = s3Store({ ...spec(), config: { s3Url: `http://127.0.0.1:${port}`, s3ForcePathStyle: 'true' } });
      for (const err of await statAndGet(store)) {
        assert.ok(err instanceof StoreUnavailableError);
        assert.match(err.message, /cannot reach the store \(ECONNREFUSED\)/);
      }
    });

    test('a body that stalls errors after socketIdleMs and frees the socket', { timeout: 10_000 }, async () => {
      handle = (_req, res) => {
        res.writeHead(200, { 'content-length': 1000, etag: '"e"' });
        res.write(Buffer.alloc(10));
      };
      const fdsBefore = openFdCount();
      const got = await s3Store(spec(), { timeouts: shortIdle }).get('k', { signal: signal() });
      const { bytes, error } = await drain(bodyOf(got));
      assert.equal(bytes, 10);
      assert.ok(error instanceof Error);
      assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore);
    });

    test('a truncated body (Content-Length 100, 5 bytes, then closed) errors, never ends quietly', async () => {
      handle = (_req, res) => {
        res.writeHead(200, { 'content-length': 100 });
        res.write(Buffer.from('short'));
        setTimeout(() => res.socket?.destroy(), 20);
      };
      const got = await s3Store(spec()).get('k', { signal: signal() });
      assert.equal(got.size, 100);
      const { bytes, error } = await drain(bodyOf(got));
      assert.equal(bytes, 5);
      assert.ok(error instanceof Error);
    });

    test('a chunked body that ends cleanly short of its Content-Range → StoreUnavailableError "short read"', async () => {
      handle = (_req, res) => {
        // No Content-Length: only the length check can tell the body is short.
        res.writeHead(206, { 'content-range': 'bytes 0-99/100', 'transfer-encoding': 'chunked' });
        res.end('short');
      };
      const got = await s3Store(spec()).get('k', { signal: signal(), range: { start: 0, end: 99 } });
      const { bytes, error } = await drain(bodyOf(got));
      assert.ok(bytes <= 5);
      assert.ok(error instanceof StoreUnavailableError, inspect(error));
      assert.match(error.message, /short read: got 5 of 100 bytes/);
      seenErrors.push(error);
    });

    test('aborting while waiting for headers rejects with the reason and frees the socket', async () => {
      handle = () => undefined;
      const fdsBefore = openFdCount();
      const ac = new AbortController();
      const reason = new Error('gone');
      setTimeout(() => ac.abort(reason), 50);
      await assert.rejects(s3Store(spec()).get('k', { signal: ac.signal }), (err) => err === reason);
      assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore);
    });
  });

  describe('odd but legal answers', () => {
    test('a store that ignores Range (200, whole object) still yields exactly the range asked', async () => {
      handle = (_req, res) => object(res, Buffer.from('hello world'));
      const got = await s3Store(spec()).get('k', { signal: signal(), range: { start: 2, end: 5 } });
      assert.equal(got.size, 11);
      assert.deepEqual(got.range, { start: 2, end: 5 });
      assert.equal((await collect(bodyOf(got))).toString(), 'llo ');
    });

    test('ranged reads neither ask for nor check checksums (a whole-object checksum never matches a range)', async () => {
      handle = (_req, res) => {
        // What S3 may send on a ranged GET: the checksum of the whole object, here deliberately wrong for the part.
        res.writeHead(206, { 'content-length': 4, 'content-range': 'bytes 2-5/11', 'x-amz-checksum-crc32': 'AAAAAA==', etag: '"e"' });
        res.end('llo ');
      };
      const got = await s3Store(spec({ checksumAlgorithm: 'CRC32' })).get('k', { signal: signal(), range: { start: 2, end: 5 } });
      assert.equal((await collect(bodyOf(got))).toString(), 'llo ');
      assert.equal(lastHeaders['x-amz-checksum-mode'], undefined);
    });

    test('an unquoted ETag is quoted; an unusable one is left out', async () => {
      const infos: ObjectInfo[] = [];
      for (const etag of ['abc123', 'W/"weak"', '"good"']) {
        handle = (_req, res) => object(res, Buffer.from('x'), { etag });
        infos.push(await s3Store(spec()).stat('k', { signal: signal() }));
      }
      assert.deepEqual(infos.map((i) => i.etag), ['"abc123"', undefined, '"good"']);
      assert.equal(infos[0]?.lastModified?.getTime(), 1_700_000_000_000);
    });

    test('a Content-Range not covering the range asked → StoreUnavailableError, socket freed', async () => {
      handle = (_req, res) => {
        res.writeHead(206, { 'content-length': 3, 'content-range': 'bytes 5-7/100' });
        res.end('abc');
      };
      const err = await caught(() => s3Store(spec()).get('k', { signal: signal(), range: { start: 0, end: 9 } }));
      assert.ok(err instanceof StoreUnavailableError);
      assert.match(err.message, /does not cover/);
    });

    test('the abort of a ranged read cut from a wider answer destroys the upstream body', { timeout: 10_000 }, async () => {
      const big = randomBytes(4 * 1024 * 1024);
      handle = (_req, res) => object(res, big);
      const fdsBefore = openFdCount();
      const ac = new AbortController();
      const got = await s3Store(spec()).get('k', { signal: ac.signal, range: { start: 10, end: 3 * 1024 * 1024 } });
      await firstChunk(bodyOf(got));
      ac.abort();
      await finished(bodyOf(got)).catch(() => undefined);
      assert.equal(bodyOf(got).destroyed, true);
      assert.ok((await waitForFdCount(fdsBefore)) <= fdsBefore);
    });
  });
});

test('no error produced in these tests contains a credential value', () => {
  assert.ok(seenErrors.length >= 40, `only ${seenErrors.length} errors were seen`);
  for (const err of seenErrors) {
    const text = `${String(err)}\n${inspect(err, { depth: 10, showHidden: true })}`;
    for (const secret of SECRETS) {
      assert.ok(!text.includes(secret), `an error shows a credential value: ${String(err)}`);
    }
  }
});

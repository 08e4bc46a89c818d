import { randomBytes } from 'node:crypto';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspect } from 'node:util';
import assert from 'node:assert/strict';
import { Storage } from '@google-cloud/storage';
import { JWT } from 'google-auth-library';
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
import { GCS_READ_SCOPE, GcsStore } from '../../src/stores/gcs.ts';
import type { StoreSpec } from '../../src/stores/spec.ts';
import { RETRIES } from '../../src/stores/retry.ts';
import { trustFor } from '../../src/stores/trust.ts';
import type { ObjectStore } from '../../src/stores/types.ts';
import { FAULT_TIMEOUTS, FaultProxy } from '../support/fault-proxy.ts';
import { createTestServiceAccount, GcsJsonApiDouble } from '../support/gcs-server.ts';
import type { TestServiceAccount } from '../support/gcs-server.ts';
import { collect, drain, openFdCount, sha256, waitForFdCount, bodyOf } from '../support/streams.ts';
import { createTestPki } from '../support/test-ca.ts';
import type { TestPki } from '../support/test-ca.ts';
import { runStoreConformance } from './conformance.ts';
import { recordListErrors } from './conformance-list.ts';

const MiB = 1024 * 1024;

function signal(): AbortSignal {
  return new AbortController().signal;
}

// Every error the tests see, to check at the end that none carries a credential.
const seenErrors: unknown[] = [];

/** The store, recording every error its calls and bodies produce. */
function recording(store: ObjectStore): ObjectStore {
  return {
    async stat(key, opts) {
      try {
        return await store.stat(key, opts);
      } catch (err) {
        seenErrors.push(err);
        throw err;
      }
    },
    async get(key, opts) {
      try {
        const got = await store.get(key, opts);
        bodyOf(got).on('error', (err) => seenErrors.push(err));
        return got;
      } catch (err) {
        seenErrors.push(err);
        throw err;
      }
    },
    list: (prefix, opts) => recordListErrors(store.list(prefix, opts), (err) => seenErrors.push(err)),
  };
}

/** Captures a construction error for the secret check, and returns it. */
function constructionError(fn: () => unknown): unknown {
  try {
    fn();
  } catch (err) {
    seenErrors.push(err);
    return err;
  }
  assert.fail('expected the store constructor to throw');
}

const closers: (() => Promise<void>)[] = [];

interface StoreArgs {
  name?: string;
  endpoint?: string;
  bucket: string;
  prefix?: string;
  credential?: Uint8Array;
  config?: Record<string, string>;
  caBundle?: string;
  installBundle?: string;
  ambientCredentials?: boolean;
  timeouts?: Partial<Timeouts>;
}

function options(a: StoreArgs): AdapterOptions {
  const name = a.name ?? 'velero/gcs-test';
  const config = { ...(a.endpoint !== undefined ? { storeEndpoint: a.endpoint } : {}), ...a.config };
  const spec: StoreSpec = { name, provider: 'velero.io/gcp', bucket: a.bucket, prefix: a.prefix ?? '', config };
  if (a.credential !== undefined) spec.credential = a.credential;
  if (a.caBundle !== undefined) spec.caBundle = a.caBundle;
  return {
    spec,
    trust: trustFor(name, config, a.caBundle, a.installBundle),
    ambientCredentials: a.ambientCredentials ?? false,
    timeouts: { ...DEFAULT_TIMEOUTS, ...a.timeouts },
    maxSockets: DEFAULT_MAX_SOCKETS,
  };
}

/** A GcsStore closed after the file's tests, wrapped to record its errors. */
function makeStore(a: StoreArgs): ObjectStore {
  const store = new GcsStore(options(a));
  closers.push(() => store.close());
  return recording(store);
}

const saA = createTestServiceAccount('reader-a@vds-test-project.iam.gserviceaccount.com');
const saB = createTestServiceAccount('reader-b@vds-test-project.iam.gserviceaccount.com');
// Same account as saA, another key: its JWTs are signed by a key the double does not know.
const saForged = createTestServiceAccount(saA.email);
const saUnknown = createTestServiceAccount('nobody@vds-test-project.iam.gserviceaccount.com');
const accounts: TestServiceAccount[] = [saA, saB, saForged, saUnknown];

const doubles: GcsJsonApiDouble[] = [];
let pki: TestPki;
let plain: GcsJsonApiDouble;
let secure: GcsJsonApiDouble;

function register(double: GcsJsonApiDouble): GcsJsonApiDouble {
  double.addServiceAccount(saA.email, saA.publicKeyPem, saA.keyId);
  double.addServiceAccount(saB.email, saB.publicKeyPem, saB.keyId);
  doubles.push(double);
  return double;
}

before(async () => {
  pki = await createTestPki('vds gcs test CA');
  plain = register(await GcsJsonApiDouble.start());
  secure = register(await GcsJsonApiDouble.start({ tls: { cert: pki.cert, key: pki.key } }));
});

after(async () => {
  for (const close of closers) await close();
  for (const d of doubles) await d.close();
});

// The conformance fixtures run before `before` hooks, so each starts what it needs itself.
for (const tls of [false, true]) {
  runStoreConformance(`GCS (JSON API test double over ${tls ? 'HTTPS' : 'HTTP'})`, async () => {
    const ca = tls ? await createTestPki('vds gcs conformance CA') : undefined;
    const double = register(await GcsJsonApiDouble.start(ca ? { tls: { cert: ca.cert, key: ca.key } } : {}));
    const bucket = 'conformance-bucket';
    const prefix = 'velero/site-1';
    double.createBucket(bucket);
    const base: StoreArgs = { endpoint: double.url, bucket, prefix, credential: saA.json };
    if (ca) base.caBundle = ca.caCert;
    const store = makeStore(base);
    // The faults once, over plain HTTP: the proxy sits between the adapter and the double.
    const proxy = tls ? undefined : await FaultProxy.start(double.url);
    if (proxy) closers.push(() => proxy.close());
    return {
      store,
      put: async (key, bytes) => double.put(bucket, `${prefix}/${key}`, bytes),
      putOutside: async (name, bytes) => double.put(bucket, `velero/${name}`, bytes),
      putBeside: async (suffix, bytes) => double.put(bucket, `${prefix}${suffix}`, bytes),
      cleanup: async () => undefined,
      wrongCredentials: () => makeStore({ ...base, credential: saForged.json }),
      ...(ca ? { untrustedTls: () => makeStore({ ...base, caBundle: undefined }) } : {}),
      ...(proxy && {
        faulty: { store: makeStore({ ...base, endpoint: proxy.url, timeouts: FAULT_TIMEOUTS }), faults: proxy, idleMs: FAULT_TIMEOUTS.socketIdleMs },
      }),
    };
  });
}

describe('GCS adapter', () => {
  describe('CA bundles (test double over HTTPS)', () => {
    const bucket = 'tls-bucket';
    const bytes = randomBytes(70_000);
    before(() => secure.put(bucket, 'backups/b1/b1-logs.gz', bytes));

    async function readsOk(store: ObjectStore): Promise<void> {
      assert.equal((await store.stat('backups/b1/b1-logs.gz', { signal: signal() })).size, bytes.length);
      assert.equal(sha256(await collect(bodyOf(await store.get('backups/b1/b1-logs.gz', { signal: signal() })))), sha256(bytes));
    }

    test('without the CA → StoreUnavailableError saying the certificate is not trusted', async () => {
      const store = makeStore({ name: 'velero/no-ca', endpoint: secure.url, bucket, credential: saA.json });
      for (const op of [async () => store.stat('backups/b1/b1-logs.gz', { signal: signal() }), async () => store.get('backups/b1/b1-logs.gz', { signal: signal() })]) {
        await assert.rejects(op(), (err: unknown) => {
          assert.ok(err instanceof StoreUnavailableError, String(err));
          assert.match(err.message, /location velero\/no-ca: the store's TLS certificate is not trusted \(/);
          return true;
        });
      }
    });

    test("with the location's bundle (caCert) it works", async () => {
      await readsOk(makeStore({ endpoint: secure.url, bucket, credential: saA.json, caBundle: pki.caCert }));
    });

    test('with the install-time bundle it works', async () => {
      await readsOk(makeStore({ endpoint: secure.url, bucket, credential: saA.json, installBundle: pki.caCert }));
    });

    test('with insecureSkipTLSVerify "true" it works', async () => {
      await readsOk(makeStore({ endpoint: secure.url, bucket, credential: saA.json, config: { insecureSkipTLSVerify: 'true' } }));
    });

    test("another CA's bundle does not make the store trusted", async () => {
      const other = await createTestPki('some other CA');
      const store = makeStore({ endpoint: secure.url, bucket, credential: saA.json, caBundle: other.caCert });
      await assert.rejects(store.stat('backups/b1/b1-logs.gz', { signal: signal() }), /TLS certificate is not trusted/);
    });
  });

  describe('credentials', () => {
    before(() => {
      plain.createBucket('bucket-a', [saA.email]);
      plain.createBucket('bucket-b', [saB.email]);
      plain.put('bucket-a', 'big', randomBytes(3 * MiB));
      plain.put('bucket-b', 'big', randomBytes(3 * MiB + 1));
      plain.put('bucket-a', 'small', Buffer.from('a'));
      plain.put('bucket-b', 'small', Buffer.from('bb'));
    });

    test('every request carries a self-signed JWT for the read-only scope, no token exchange', async () => {
      const store = makeStore({ endpoint: plain.url, bucket: 'bucket-a', credential: saA.json });
      const from = plain.requests.length;
      await store.stat('small', { signal: signal() });
      const [req] = plain.requests.slice(from);
      assert.equal(req?.principal, saA.email);
      const [header, payload] = (req?.authorization ?? '').replace(/^Bearer /, '').split('.');
      assert.deepEqual(JSON.parse(Buffer.from(header!, 'base64url').toString()), { alg: 'RS256', typ: 'JWT', kid: saA.keyId });
      const claims = JSON.parse(Buffer.from(payload!, 'base64url').toString()) as Record<string, unknown>;
      assert.equal(claims.iss, saA.email);
      assert.equal(claims.sub, saA.email);
      assert.equal(claims.scope, GCS_READ_SCOPE);
    });

    test('a JWT signed by another key → AccessDeniedError (HTTP 401 from the double)', async () => {
      const store = makeStore({ endpoint: plain.url, bucket: 'bucket-a', credential: saForged.json });
      const from = plain.requests.length;
      await assert.rejects(store.stat('small', { signal: signal() }), AccessDeniedError);
      await assert.rejects(async () => store.get('small', { signal: signal() }), AccessDeniedError);
      assert.deepEqual(plain.requests.slice(from).map((r) => r.status), [401, 401]);
    });

    test('an account the store does not know → AccessDeniedError', async () => {
      const store = makeStore({ endpoint: plain.url, bucket: 'bucket-a', credential: saUnknown.json });
      await assert.rejects(store.stat('small', { signal: signal() }), AccessDeniedError);
    });

    test("an account without access to the bucket → AccessDeniedError (HTTP 403), even for a missing object", async () => {
      const store = makeStore({ endpoint: plain.url, bucket: 'bucket-b', credential: saA.json });
      await assert.rejects(store.stat('small', { signal: signal() }), AccessDeniedError);
      await assert.rejects(async () => store.get('small', { signal: signal() }), AccessDeniedError);
      await assert.rejects(store.stat('missing', { signal: signal() }), AccessDeniedError);
    });

    test('two locations with different service accounts read concurrently, each as itself', async () => {
      const a = makeStore({ name: 'team-a/gcs', endpoint: plain.url, bucket: 'bucket-a', credential: saA.json });
      const b = makeStore({ name: 'team-b/gcs', endpoint: plain.url, bucket: 'bucket-b', credential: saB.json });
      const from = plain.requests.length;
      const reads = await Promise.all(
        [a, b, a, b, a, b].map(async (store) => {
          const got = await store.get('big', { signal: signal() });
          return { size: got.size, bytes: (await collect(bodyOf(got))).length };
        }),
      );
      assert.deepEqual(reads.map((r) => r.size), [3 * MiB, 3 * MiB + 1, 3 * MiB, 3 * MiB + 1, 3 * MiB, 3 * MiB + 1]);
      assert.deepEqual(reads.map((r) => r.bytes), reads.map((r) => r.size));
      const seen = plain.requests.slice(from).map((r) => `${r.bucket}:${r.principal}:${r.status}`);
      assert.equal(seen.length, 6);
      for (const s of seen) assert.ok(s === `bucket-a:${saA.email}:200` || s === `bucket-b:${saB.email}:200`, s);
    });

    test('without a credential and without ambient credentials → InvalidLocationError', () => {
      const err = constructionError(() => new GcsStore(options({ name: 'tenant/gcs', endpoint: plain.url, bucket: 'bucket-a' })));
      assert.ok(err instanceof InvalidLocationError);
      assert.match(err.message, /location tenant\/gcs needs a credential/);
    });

    test('without a credential but with ambient credentials: application default credentials', async (t) => {
      // ADC finds a service-account key through GOOGLE_APPLICATION_CREDENTIALS; it signs its own JWTs too.
      const dir = await mkdtemp(join(tmpdir(), 'vds-gcs-adc-'));
      const saved = process.env.GOOGLE_APPLICATION_CREDENTIALS;
      t.after(async () => {
        if (saved === undefined) delete process.env.GOOGLE_APPLICATION_CREDENTIALS;
        else process.env.GOOGLE_APPLICATION_CREDENTIALS = saved;
        await rm(dir, { recursive: true, force: true });
      });
      const file = join(dir, 'key.json');
      await writeFile(file, saB.json);
      process.env.GOOGLE_APPLICATION_CREDENTIALS = file;
      const store = makeStore({ endpoint: plain.url, bucket: 'bucket-b', ambientCredentials: true });
      const from = plain.requests.length;
      assert.equal((await store.stat('small', { signal: signal() })).size, 2);
      assert.equal(plain.requests[from]?.principal, saB.email);
    });
  });

  describe('location config', () => {
    before(() => plain.put('config-bucket', 'p/obj', Buffer.from('config')));

    test('storeEndpoint given as the JSON API base (…/storage/v1/) works too', async () => {
      const store = makeStore({ endpoint: `${plain.url}/storage/v1/`, bucket: 'config-bucket', prefix: 'p', credential: saA.json });
      assert.equal((await store.stat('obj', { signal: signal() })).size, 6);
    });

    test("serviceAccount, kmsKeyName and credentialsFile (Velero's keys) are accepted", async () => {
      const store = makeStore({
        endpoint: plain.url,
        bucket: 'config-bucket',
        prefix: 'p',
        credential: saA.json,
        config: { serviceAccount: 'signer@p.iam.gserviceaccount.com', kmsKeyName: 'projects/p/locations/l/keyRings/r/cryptoKeys/k', credentialsFile: '/credentials/cloud' },
      });
      assert.equal((await store.stat('obj', { signal: signal() })).size, 6);
    });

    const invalid: { name: string; args: StoreArgs; message: RegExp }[] = [
      { name: 'an unknown config key', args: { bucket: 'config-bucket', credential: saA.json, config: { region: 'x' } }, message: /unknown GCP config key\(s\) "region"/ },
      { name: 'a bucket name GCS refuses', args: { bucket: 'Not_A_Bucket!', credential: saA.json }, message: /not a valid GCS bucket name/ },
      { name: 'a storeEndpoint that is not a URL', args: { bucket: 'config-bucket', credential: saA.json, endpoint: 'storage here' }, message: /config storeEndpoint must be an http:\/\/ or https:\/\/ URL/ },
      {
        name: 'a storeEndpoint with user information',
        args: { bucket: 'config-bucket', credential: saA.json, endpoint: 'https://user:hunter2secret@storage.example.com' },
        message: /must not contain user information/,
      },
      {
        name: "a universeDomain the credential's universe_domain contradicts",
        args: { bucket: 'config-bucket', credential: saA.json, config: { universeDomain: 'example.test' } },
        message: /universeDomain "example.test" does not match the credential's universe_domain "googleapis.com"/,
      },
      { name: 'a malformed credential', args: { bucket: 'config-bucket', credential: Buffer.from('{"type":"service_account"}') }, message: /GCP credential has no "client_email" field/ },
    ];
    for (const c of invalid) {
      test(`${c.name} → InvalidLocationError`, () => {
        const err = constructionError(() => new GcsStore(options({ endpoint: plain.url, ...c.args })));
        assert.ok(err instanceof InvalidLocationError, String(err));
        assert.match(err.message, c.message);
        assert.doesNotMatch(err.message, /hunter2secret/);
      });
    }
  });

  describe('failures', () => {
    const bucket = 'failure-bucket';
    const big = randomBytes(2 * MiB);
    before(() => {
      plain.put(bucket, 'big', big);
      plain.put(bucket, 'small', Buffer.from('small'));
    });

    test('a truncated body (Content-Length larger than what is sent) makes the body error', async () => {
      const store = makeStore({ endpoint: plain.url, bucket, credential: saA.json });
      plain.inject({ on: 'media', name: 'big', fault: { kind: 'truncate', sendBytes: 300_000 } });
      const got = await store.get('big', { signal: signal() });
      assert.equal(got.size, big.length);
      const { bytes, error } = await drain(bodyOf(got));
      assert.ok(error instanceof Error, `the body ended quietly after ${bytes} bytes`);
      assert.ok(bytes < big.length);
    });

    test('a truncated range makes the body error too', async () => {
      const store = makeStore({ endpoint: plain.url, bucket, credential: saA.json });
      plain.inject({ on: 'media', name: 'big', fault: { kind: 'truncate', sendBytes: 10 } });
      const got = await store.get('big', { signal: signal(), range: { start: 100, end: 100_000 } });
      assert.deepEqual(got.range, { start: 100, end: 100_000 });
      const { error } = await drain(bodyOf(got));
      assert.ok(error instanceof Error);
    });

    for (const [status, retryAfter, want] of [
      [503, '7', 7],
      [429, '2', 2],
      [429, undefined, undefined],
    ] as const) {
      test(`HTTP ${status}${retryAfter ? ` with Retry-After ${retryAfter}` : ''} → ThrottledError, asked once (no automatic retries)`, async () => {
        const store = makeStore({ endpoint: plain.url, bucket, credential: saA.json });
        for (const op of ['stat', 'get'] as const) {
          plain.inject({ fault: { kind: 'status', status, ...(retryAfter ? { retryAfter } : {}) } });
          const from = plain.requests.length;
          await assert.rejects(
            async () => (op === 'stat' ? store.stat('small', { signal: signal() }) : store.get('small', { signal: signal() })),
            (err: unknown) => {
              assert.ok(err instanceof ThrottledError, String(err));
              assert.equal(err.retryAfterSeconds, want);
              return true;
            },
          );
          assert.equal(plain.requests.length - from, 1);
        }
      });
    }

    test(`HTTP 500 on every try → StoreUnavailableError after ${RETRIES} retries; the next call succeeds`, async () => {
      const store = makeStore({ endpoint: plain.url, bucket, credential: saA.json });
      plain.inject({ fault: { kind: 'status', status: 500 }, times: RETRIES + 1 });
      const from = plain.requests.length;
      await assert.rejects(store.stat('small', { signal: signal() }), (err: unknown) => {
        assert.ok(err instanceof StoreUnavailableError);
        assert.match(err.message, /HTTP 500 backendError/);
        return true;
      });
      assert.equal(plain.requests.length - from, RETRIES + 1);
      assert.equal((await store.stat('small', { signal: signal() })).size, 5);
    });

    test('a missing bucket → ObjectNotFoundError', async () => {
      const store = makeStore({ endpoint: plain.url, bucket: 'no-such-bucket', credential: saA.json });
      await assert.rejects(store.stat('small', { signal: signal() }), ObjectNotFoundError);
    });

    test('headers later than requestMs → StoreTimeoutError', async () => {
      const store = makeStore({ endpoint: plain.url, bucket, credential: saA.json, timeouts: { requestMs: 200 } });
      plain.inject({ fault: { kind: 'delay', ms: 2000 } });
      const t0 = performance.now();
      await assert.rejects(store.stat('small', { signal: signal() }), StoreTimeoutError);
      assert.ok(performance.now() - t0 < 1500);
    });

    test('a body silent for socketIdleMs → the body errors with StoreTimeoutError', async () => {
      const store = makeStore({ endpoint: plain.url, bucket, credential: saA.json, timeouts: { socketIdleMs: 300 } });
      plain.inject({ on: 'media', name: 'big', fault: { kind: 'stall', sendBytes: 1000 } });
      const t0 = performance.now();
      const got = await store.get('big', { signal: signal() });
      const { bytes, error } = await drain(bodyOf(got));
      assert.ok(error instanceof StoreTimeoutError, String(error));
      assert.equal(bytes, 1000);
      assert.ok(performance.now() - t0 < 3000);
    });

    test('aborting while waiting for headers rejects with the signal reason at once', async () => {
      const store = makeStore({ endpoint: plain.url, bucket, credential: saA.json });
      plain.inject({ fault: { kind: 'delay', ms: 3000 } });
      const ac = new AbortController();
      const reason = new Error('client went away');
      const pending = (async () => store.get('small', { signal: ac.signal }))();
      setTimeout(() => ac.abort(reason), 50);
      const t0 = performance.now();
      await assert.rejects(pending, (err) => err === reason);
      assert.ok(performance.now() - t0 < 1000);
    });

    test('nothing listening → StoreUnavailableError', async () => {
      const port = await new Promise<number>((resolve) => {
        const s = createServer().listen(0, '127.0.0.1', () => {
          const { port: p } = s.address() as AddressInfo;
          s.close(() => resolve(p));
        });
      });
      const store = makeStore({ endpoint: `http://127.0.0.1:${port}`, bucket, credential: saA.json });
      await assert.rejects(store.stat('small', { signal: signal() }), (err: unknown) => {
        assert.ok(err instanceof StoreUnavailableError);
        assert.match(err.message, /cannot reach the store \(ECONNREFUSED\)/);
        return true;
      });
    });

    test('close() ends the pooled keep-alive connections', async () => {
      const store = new GcsStore(options({ endpoint: plain.url, bucket, credential: saA.json }));
      await collect(bodyOf(await store.get('small', { signal: signal() })));
      const open = openFdCount();
      await store.close();
      assert.ok((await waitForFdCount(open - 1)) <= open - 1, 'the pooled socket was closed');
    });
  });

  describe('the real @google-cloud/storage client against the double (wire fidelity)', () => {
    const bucket = 'sdk-bucket';
    const name = 'backups/nightly/nightly.tar.gz';
    const bytes = randomBytes(300_000);
    let storage: Storage;

    before(() => {
      plain.put(bucket, name, bytes, 'application/gzip');
      const jwt = new JWT({ email: saA.email, key: saA.privateKeyPem, keyId: saA.keyId, scopes: [GCS_READ_SCOPE] });
      jwt.useJWTAccessWithScope = true;
      storage = new Storage({
        apiEndpoint: plain.url,
        useAuthWithCustomEndpoint: true,
        authClient: jwt,
        projectId: 'vds-test-project',
        retryOptions: { autoRetry: false },
      });
    });

    test('getMetadata: JSON with size and generation as strings', async () => {
      const from = plain.requests.length;
      const [meta] = await storage.bucket(bucket).file(name).getMetadata();
      assert.equal(meta.size, String(bytes.length));
      assert.match(String(meta.generation), /^\d+$/);
      assert.equal(meta.name, name);
      assert.equal(plain.requests[from]?.url.split('?')[0], `/storage/v1/b/${bucket}/o/${encodeURIComponent(name)}`);
    });

    test('download validates the crc32c the double sends; a range gets 206', async () => {
      const from = plain.requests.length;
      const [all] = await storage.bucket(bucket).file(name).download();
      assert.equal(sha256(all), sha256(bytes));
      const part = await collect(storage.bucket(bucket).file(name).createReadStream({ start: 10, end: 19 }));
      assert.deepEqual(part, bytes.subarray(10, 20));
      const calls = plain.requests.slice(from);
      assert.deepEqual(
        calls.map((r) => [r.url, r.range, r.status]),
        [
          [`/storage/v1/b/${bucket}/o/${encodeURIComponent(name)}?alt=media`, undefined, 200],
          [`/storage/v1/b/${bucket}/o/${encodeURIComponent(name)}?alt=media`, 'bytes=10-19', 206],
        ],
      );
    });

    test('a missing object is its 404 ApiError', async () => {
      await assert.rejects(storage.bucket(bucket).file('nope').getMetadata(), (err: { code?: unknown; message?: string }) => {
        assert.equal(err.code, 404);
        assert.match(String(err.message), /No such object: sdk-bucket\/nope/);
        return true;
      });
    });
  });
});

test('no error message or error object produced in these tests contains a credential', () => {
  assert.ok(seenErrors.length > 20, `only ${seenErrors.length} errors were recorded`);
  const secrets = new Set<string>();
  for (const sa of accounts) {
    for (const line of sa.privateKeyPem.split('\n')) if (line.length >= 16 && !line.startsWith('-----')) secrets.add(line);
  }
  for (const d of doubles) {
    for (const r of d.requests) {
      const token = r.authorization?.replace(/^Bearer /, '');
      if (token) {
        secrets.add(token);
        secrets.add(token.split('.')[2]!);
      }
    }
  }
  secrets.add('hunter2secret');
  assert.ok(secrets.size > 50);
  for (const err of seenErrors) {
    const text = `${String(err)}\n${inspect(err, { depth: 8, showHidden: false })}`;
    for (const secret of secrets) {
      assert.ok(!text.includes(secret), `an error contains a credential: ${String(err)}`);
    }
  }
});

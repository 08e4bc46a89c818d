/**
 * AzureBlobStore against the real Azurite emulator (HTTPS with a test CA, two accounts through
 * AZURITE_ACCOUNTS, OAuth tokens accepted), against a plain-HTTP Azurite, against a small fake Azure AD
 * authority for the client-secret path, and against a fake blob endpoint for the failures Azurite
 * cannot produce (busy, stalls, truncated bodies, 416).
 */
import { X509Certificate, constants, randomBytes, verify as cryptoVerify } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer as createHttpServer } from 'node:http';
import type { IncomingMessage, ServerResponse } from 'node:http';
import { createServer as createHttpsServer } from 'node:https';
import { createServer as createNetServer } from 'node:net';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import assert from 'node:assert/strict';
import type { BlobServiceClient } from '@azure/storage-blob';
import { generate } from 'selfsigned';
import { DEFAULT_MAX_SOCKETS, DEFAULT_TIMEOUTS } from '../../src/stores/adapter.ts';
import type { Timeouts } from '../../src/stores/adapter.ts';
import { AZURE_PROVIDERS, AzureBlobStore } from '../../src/stores/azure.ts';
import { DefaultStoreFactory } from '../../src/stores/factory.ts';
import {
  AccessDeniedError,
  InvalidLocationError,
  InvalidRangeError,
  ObjectNotFoundError,
  StoreTimeoutError,
  StoreUnavailableError,
  TenantSettingRefusedError,
  ThrottledError,
} from '../../src/stores/errors.ts';
import type { StoreSpec } from '../../src/stores/spec.ts';
import { trustFor } from '../../src/stores/trust.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteWriter as writerFor, startAzurite } from '../support/azurite.ts';
import { FAULT_TIMEOUTS, FaultProxy } from '../support/fault-proxy.ts';
import type { Azurite } from '../support/azurite.ts';
import { collect, drain, sha256, bodyOf } from '../support/streams.ts';
import { createTestPki } from '../support/test-ca.ts';
import type { TestPki } from '../support/test-ca.ts';
import { tripwire } from '../support/tripwire.ts';
import type { Tripwire } from '../support/tripwire.ts';
import { runStoreConformance } from './conformance.ts';

const MiB = 1024 * 1024;
const KEY_VAR = 'AZURE_STORAGE_ACCOUNT_ACCESS_KEY';
const SECOND_ACCOUNT = 'secondaccount';
const SECOND_KEY = randomBytes(64).toString('base64');
/** Valid base64, the right length, not the account's key: Azurite's shared-key check refuses it. */
const WRONG_KEY = randomBytes(64).toString('base64');
const TENANT = '8e2b1a3c-0d4f-4a5b-9c6d-7e8f9a0b1c2d';
const CLIENT_ID = 'c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f';
const CLIENT_SECRET = `cs~${randomBytes(18).toString('base64url')}`;
const WRONG_CLIENT_SECRET = `cs~${randomBytes(18).toString('base64url')}`;
/** Every credential value used below: no error message may contain any of them. */
const SECRETS = [AZURITE_KEY, SECOND_KEY, WRONG_KEY, CLIENT_SECRET, WRONG_CLIENT_SECRET];

function signal(): AbortSignal {
  return new AbortController().signal;
}

// ---- errors seen by the tests, checked for secrets at the end -------------------------------------

const seen: unknown[] = [];

function record<T>(err: T): T {
  seen.push(err);
  return err;
}

async function rejectsWith<E extends Error>(promise: Promise<unknown>, cls: new (...args: never[]) => E): Promise<E> {
  const err = await promise.then(
    () => assert.fail(`expected ${cls.name}, got a result`),
    (e: unknown) => record(e),
  );
  assert.ok(err instanceof cls, `expected ${cls.name}, got ${String(err)}`);
  return err;
}

function throwsWith<E extends Error>(fn: () => unknown, cls: new (...args: never[]) => E): E {
  try {
    fn();
  } catch (e) {
    record(e);
    assert.ok(e instanceof cls, `expected ${cls.name}, got ${String(e)}`);
    return e;
  }
  return assert.fail(`expected ${cls.name}, nothing thrown`);
}

/** Every string an error could show a log: message, stack, own enumerable fields, causes. */
function errorText(err: unknown, depth = 0): string {
  if (depth > 8 || err === null || err === undefined) return '';
  if (!(err instanceof Error)) return typeof err === 'string' ? err : (JSON.stringify(err) ?? '');
  let fields: string;
  try {
    fields = JSON.stringify(err);
  } catch {
    fields = '';
  }
  return `${err.message}\n${err.stack ?? ''}\n${fields}\n${errorText(err.cause, depth + 1)}`;
}

// ---- stores ----------------------------------------------------------------------------------------

const opened: AzureBlobStore[] = [];

function keyFile(key: string, variable = KEY_VAR, extra = ''): Uint8Array {
  return Buffer.from(
    `# velero cloud-credentials\nAZURE_SUBSCRIPTION_ID=00000000-0000-0000-0000-000000000000\nAZURE_RESOURCE_GROUP=rg\n` +
      `AZURE_CLOUD_NAME=AzurePublicCloud\n${variable}=${key}\n${extra}`,
  );
}

interface StoreOptions {
  installBundle?: string;
  ambient?: boolean;
  timeouts?: Timeouts;
}

function storeFor(spec: StoreSpec, options: StoreOptions = {}): AzureBlobStore {
  const store = new AzureBlobStore({
    spec,
    trust: trustFor(spec.name, spec.config, spec.caBundle, options.installBundle),
    ambientCredentials: options.ambient ?? false,
    timeouts: options.timeouts ?? DEFAULT_TIMEOUTS,
    maxSockets: DEFAULT_MAX_SOCKETS,
  });
  opened.push(store);
  return store;
}

async function put(writer: BlobServiceClient, container: string, name: string, bytes: Uint8Array): Promise<void> {
  await writer.getContainerClient(container).getBlockBlobClient(name).uploadData(Buffer.from(bytes));
}

// ---- the shared HTTPS emulator ---------------------------------------------------------------------

interface Env {
  pki: TestPki;
  azurite: Azurite;
  writer: BlobServiceClient;
  secondWriter: BlobServiceClient;
}

let shared: Promise<Env> | undefined;
let containers = 0;

function env(): Promise<Env> {
  shared ??= (async () => {
    const pki = await createTestPki();
    const azurite = await startAzurite({
      tls: { cert: pki.cert, key: pki.key },
      accounts: { [SECOND_ACCOUNT]: SECOND_KEY },
      oauth: true,
    });
    return {
      pki,
      azurite,
      writer: writerFor(azurite.accountUrl(), AZURITE_ACCOUNT, AZURITE_KEY, pki.caCert),
      secondWriter: writerFor(azurite.accountUrl(SECOND_ACCOUNT), SECOND_ACCOUNT, SECOND_KEY, pki.caCert),
    };
  })();
  return shared;
}

async function newContainer(writer: BlobServiceClient): Promise<string> {
  const name = `c${process.pid}-${++containers}`;
  await writer.getContainerClient(name).create();
  return name;
}

function specOn(e: Env, container: string, overrides: Partial<StoreSpec> = {}): StoreSpec {
  return {
    name: 'velero/azure-default',
    provider: 'velero.io/azure',
    bucket: container,
    prefix: 'cluster-a/velero',
    config: { storageAccount: AZURITE_ACCOUNT, storageAccountURI: e.azurite.accountUrl(), storageAccountKeyEnvVar: KEY_VAR, resourceGroup: 'rg' },
    credential: keyFile(AZURITE_KEY),
    caBundle: e.pki.caCert,
    ...overrides,
  };
}

after(async () => {
  for (const store of opened) await store.close();
  const e = await shared?.catch(() => undefined);
  await e?.azurite.stop();
});

// ---- conformance -----------------------------------------------------------------------------------

runStoreConformance('azure blob on Azurite over HTTPS', async () => {
  const e = await env();
  const container = await newContainer(e.writer);
  const spec = specOn(e, container);
  // The proxy speaks plain HTTP to the adapter and HTTPS to Azurite.
  const proxy = await FaultProxy.start(e.azurite.accountUrl());
  return {
    store: storeFor(spec),
    put: (key, bytes) => put(e.writer, container, `cluster-a/velero/${key}`, bytes),
    putOutside: (name, bytes) => put(e.writer, container, `cluster-a/${name}`, bytes),
    putBeside: (suffix, bytes) => put(e.writer, container, `cluster-a/velero${suffix}`, bytes),
    wrongCredentials: () => storeFor({ ...spec, credential: keyFile(WRONG_KEY) }),
    untrustedTls: () => storeFor({ ...spec, caBundle: undefined }),
    faulty: {
      store: storeFor({ ...spec, config: { ...spec.config, storageAccountURI: proxy.url } }, { timeouts: FAULT_TIMEOUTS }),
      faults: proxy,
      idleMs: FAULT_TIMEOUTS.socketIdleMs,
    },
    cleanup: async () => {
      await proxy.close();
      await e.writer.getContainerClient(container).delete();
    },
  };
});

// ---- TLS -------------------------------------------------------------------------------------------

describe('AzureBlobStore: CA bundles towards an HTTPS Azurite', () => {
  let e: Env;
  let container = '';
  const bytes = randomBytes(64 * 1024 + 3);
  const key = 'backups/b1/b1-logs.gz';

  before(async () => {
    e = await env();
    container = await newContainer(e.writer);
    await put(e.writer, container, `cluster-a/velero/${key}`, bytes);
  });

  async function readsFine(store: AzureBlobStore): Promise<void> {
    assert.equal((await store.stat(key, { signal: signal() })).size, bytes.length);
    assert.equal(sha256(await collect(bodyOf(await store.get(key, { signal: signal() })))), sha256(bytes));
  }

  test('without the CA: StoreUnavailableError saying the certificate is not trusted', async () => {
    const store = storeFor(specOn(e, container, { name: 'team-a/no-ca', caBundle: undefined }));
    for (const op of [store.stat(key, { signal: signal() }), store.get(key, { signal: signal() })]) {
      const err = await rejectsWith(op, StoreUnavailableError);
      assert.match(err.message, /^location team-a\/no-ca: the store's TLS certificate is not trusted \([A-Z_]+\)/);
      assert.match(err.message, /CA bundle/);
    }
  });

  test("a different CA's bundle does not make it trusted", async () => {
    const other = await createTestPki('another CA');
    const store = storeFor(specOn(e, container, { caBundle: other.caCert }));
    const err = await rejectsWith(store.stat(key, { signal: signal() }), StoreUnavailableError);
    assert.match(err.message, /TLS certificate is not trusted/);
  });

  test("with the location's bundle (caCert) it works", async () => {
    await readsFine(storeFor(specOn(e, container)));
  });

  test('with the install-time bundle (--ca-bundle) it works', async () => {
    await readsFine(storeFor(specOn(e, container, { caBundle: undefined }), { installBundle: e.pki.caCert }));
  });

  test('with insecureSkipTLSVerify "true" it works, for that location only', async () => {
    const base = specOn(e, container, { caBundle: undefined });
    await readsFine(storeFor({ ...base, config: { ...base.config, insecureSkipTLSVerify: 'true' } }));
    // A store built at the same time without the flag still verifies.
    await rejectsWith(storeFor(base).stat(key, { signal: signal() }), StoreUnavailableError);
  });
});

describe('AzureBlobStore: plain HTTP Azurite', () => {
  let azurite: Azurite;
  let writer: BlobServiceClient;

  before(async () => {
    azurite = await startAzurite();
    writer = writerFor(azurite.accountUrl(), AZURITE_ACCOUNT, AZURITE_KEY);
    await writer.getContainerClient('plain').create();
    await put(writer, 'plain', 'pfx/restores/r1/restore-r1-logs.gz', Buffer.from('restore log'));
  });
  after(() => azurite?.stop());

  function spec(key: string): StoreSpec {
    return {
      name: 'velero/plain',
      provider: 'azure',
      bucket: 'plain',
      prefix: '/pfx/',
      config: { storageAccount: AZURITE_ACCOUNT, storageAccountURI: `${azurite.accountUrl()}/`, storageAccountKeyEnvVar: KEY_VAR },
      credential: keyFile(key),
    };
  }

  test('reads through an http storageAccountURI', async () => {
    const store = storeFor(spec(AZURITE_KEY));
    assert.equal(store.endpoint, azurite.accountUrl());
    const got = await store.get('restores/r1/restore-r1-logs.gz', { signal: signal(), range: { start: 8, end: 99 } });
    assert.deepEqual(got.range, { start: 8, end: 10 });
    assert.equal(got.size, 11);
    assert.equal((await collect(bodyOf(got))).toString(), 'log');
  });

  test('a wrong key → AccessDeniedError naming the location, not the key', async () => {
    const store = storeFor(spec(WRONG_KEY));
    const err = await rejectsWith(store.get('restores/r1/restore-r1-logs.gz', { signal: signal() }), AccessDeniedError);
    assert.match(err.message, /^location velero\/plain: reading object "restores\/r1\/restore-r1-logs.gz": the store refused the location's credentials \(HTTP 403 AuthorizationFailure request id [\w-]+\)$/);
  });
});

// ---- credentials -----------------------------------------------------------------------------------

describe('AzureBlobStore: credentials', () => {
  let e: Env;
  let first = '';
  let second = '';
  const firstBytes = randomBytes(3 * MiB + 1);
  const secondBytes = randomBytes(3 * MiB + 2);
  const key = 'backups/b/b.tar.gz';

  before(async () => {
    e = await env();
    first = await newContainer(e.writer);
    second = await newContainer(e.secondWriter);
    await put(e.writer, first, `cluster-a/velero/${key}`, firstBytes);
    await put(e.secondWriter, second, `cluster-a/velero/${key}`, secondBytes);
  });

  function secondSpec(credentialKey: string): StoreSpec {
    return specOn(e, second, {
      name: 'team-b/azure',
      config: { storageAccount: SECOND_ACCOUNT, storageAccountURI: e.azurite.accountUrl(SECOND_ACCOUNT), storageAccountKeyEnvVar: 'TEAM_B_KEY' },
      credential: keyFile(credentialKey, 'TEAM_B_KEY'),
    });
  }

  test('a wrong account key → AccessDeniedError on stat and get', async () => {
    const store = storeFor(specOn(e, first, { credential: keyFile(WRONG_KEY) }));
    for (const op of [store.stat(key, { signal: signal() }), store.get(key, { signal: signal() })]) {
      const err = await rejectsWith(op, AccessDeniedError);
      assert.match(err.message, /^location velero\/azure-default: reading object "[^"]+": the store refused the location's credentials/);
    }
  });

  test('two accounts with different keys read concurrently without interfering', async () => {
    const a = storeFor(specOn(e, first));
    const b = storeFor(secondSpec(SECOND_KEY));
    // The second account's endpoint with the first account's key: refused, while both reads run.
    const crossed = storeFor(secondSpec(AZURITE_KEY));
    const read = async (store: AzureBlobStore): Promise<string> => sha256(await collect(bodyOf(await store.get(key, { signal: signal() }))));
    const results = await Promise.all([read(a), read(b), read(a), read(b), rejectsWith(crossed.stat(key, { signal: signal() }), AccessDeniedError), read(b), read(a)]);
    assert.deepEqual(results.filter((r) => typeof r === 'string'), [
      sha256(firstBytes),
      sha256(secondBytes),
      sha256(firstBytes),
      sha256(secondBytes),
      sha256(secondBytes),
      sha256(firstBytes),
    ]);
    // Each store only sees its own container.
    await rejectsWith(a.stat('x', { signal: signal() }), ObjectNotFoundError);
    const wrongContainer = storeFor({ ...secondSpec(SECOND_KEY), bucket: first });
    const err = await rejectsWith(wrongContainer.stat(key, { signal: signal() }), ObjectNotFoundError);
    assert.match(err.message, /not found \(container "[^"]+" does not exist\)/);
  });

  test('a missing key variable names the variable, not any value', () => {
    const err = throwsWith(() => storeFor(specOn(e, first, { credential: keyFile(AZURITE_KEY, 'SOME_OTHER_VAR') })), InvalidLocationError);
    assert.match(err.message, /^location velero\/azure-default: the credential file has no AZURE_STORAGE_ACCOUNT_ACCESS_KEY/);
  });

  test('a credential with neither a key nor Azure AD settings is refused clearly', () => {
    const base = specOn(e, first, { credential: Buffer.from(`AZURE_CLOUD_NAME=AzurePublicCloud\n${KEY_VAR}=${AZURITE_KEY}\n`) });
    const err = throwsWith(() => storeFor({ ...base, config: { storageAccount: AZURITE_ACCOUNT, storageAccountURI: e.azurite.accountUrl() } }), InvalidLocationError);
    assert.match(err.message, /neither a storage account key \(set config storageAccountKeyEnvVar/);
  });

  test('no credential: InvalidLocationError for a tenant location, the default chain when ambient credentials are allowed', () => {
    const err = throwsWith(() => storeFor(specOn(e, first, { credential: undefined })), InvalidLocationError);
    assert.match(err.message, /^location velero\/azure-default needs a credential/);
    assert.equal(storeFor(specOn(e, first, { credential: undefined }), { ambient: true }).authKind, 'ambient');
  });

  describe('Azure AD client secret (a fake authority over HTTPS, Azurite accepting its tokens)', () => {
    let authority: FakeAuthority;
    before(async () => {
      authority = await startFakeAuthority(e.pki, CLIENT_SECRET);
    });
    after(() => authority?.close());

    function aadSpec(secret: string, overrides: Partial<StoreSpec> = {}): StoreSpec {
      return specOn(e, first, {
        name: 'team-a/aad',
        config: { storageAccount: AZURITE_ACCOUNT, storageAccountURI: e.azurite.accountUrl(), useAAD: 'true', activeDirectoryAuthorityURI: authority.origin },
        credential: Buffer.from(`AZURE_TENANT_ID=${TENANT}\nAZURE_CLIENT_ID=${CLIENT_ID}\nAZURE_CLIENT_SECRET=${secret}\nAZURE_CLOUD_NAME=AzurePublicCloud\n`),
        ...overrides,
      });
    }

    test('the right secret gets a token for storage and reads', async () => {
      const store = storeFor(aadSpec(CLIENT_SECRET));
      assert.equal(store.authKind, 'clientSecret');
      assert.equal(sha256(await collect(bodyOf(await store.get(key, { signal: signal() })))), sha256(firstBytes));
      const tokenRequest = authority.tokenRequests.find((r) => r.get('client_secret') === CLIENT_SECRET);
      assert.ok(tokenRequest, 'the authority was asked for a token with the secret');
      assert.equal(tokenRequest.get('client_id'), CLIENT_ID);
      assert.equal(tokenRequest.get('grant_type'), 'client_credentials');
      assert.equal(tokenRequest.get('scope'), 'https://storage.azure.com/.default');
    });

    test('a wrong secret → AccessDeniedError with the authority’s error code only', async () => {
      const store = storeFor(aadSpec(WRONG_CLIENT_SECRET));
      const err = await rejectsWith(store.stat(key, { signal: signal() }), AccessDeniedError);
      assert.match(err.message, /^location team-a\/aad: reading object "[^"]+": Azure AD refused the credential \(invalid_client\)/);
    });

    test("the authority's certificate is checked against the location's trust too", async () => {
      const store = storeFor(aadSpec(CLIENT_SECRET, { caBundle: undefined }), { installBundle: undefined });
      // Neither the authority nor the blob endpoint is trusted: the token request is what fails first.
      const err = await rejectsWith(store.stat(key, { signal: signal() }), StoreUnavailableError);
      assert.match(err.message, /Azure AD authority/);
    });
  });

  describe('Azure AD client certificate: a path the gateway reads itself, or the PEM inline', () => {
    let authority: FakeAuthority;
    let dir = '';
    let pem = '';
    let certificate = '';
    let rotated = { pem: '', certificate: '' };
    let wire: Tripwire;
    const opened: DefaultStoreFactory[] = [];
    before(async () => {
      // MSAL signs client assertions with RSA only.
      const client = async (): Promise<{ pem: string; certificate: string }> => {
        const c = await generate([{ name: 'commonName', value: 'vds test client' }], { keyType: 'rsa', keySize: 2048, algorithm: 'sha256', notAfterDate: new Date(Date.now() + 86_400_000) });
        return { pem: `${c.private.trim()}\n${c.cert.trim()}\n`, certificate: c.cert };
      };
      ({ pem, certificate } = await client());
      rotated = await client();
      // Tokens within MSAL's and the pipeline's refresh windows: every request asks for a new one.
      authority = await startFakeAuthority(e.pki, CLIENT_SECRET, [certificate, rotated.certificate], 60);
      dir = await mkdtemp(join(tmpdir(), 'vds-azure-cert-'));
      await writeFile(join(dir, 'client.pem'), pem);
      await mkdir(join(dir, 'a-directory'));
      await writeFile(join(dir, 'large.pem'), Buffer.concat([Buffer.from(pem), Buffer.alloc(MiB, 0x20)]));
      wire = await tripwire(join(dir, 'fifo.pem'));
    });
    after(async () => {
      for (const f of opened) f.close();
      await wire?.close();
      await authority?.close();
      await rm(dir, { recursive: true, force: true });
    });

    function certSpec(variables: string, overrides: Partial<StoreSpec> = {}): StoreSpec {
      return specOn(e, first, {
        name: 'velero/aad-cert',
        config: { storageAccount: AZURITE_ACCOUNT, storageAccountURI: e.azurite.accountUrl(), useAAD: 'true', activeDirectoryAuthorityURI: authority.origin },
        credential: Buffer.from(`AZURE_TENANT_ID=${TENANT}\nAZURE_CLIENT_ID=${CLIENT_ID}\nAZURE_CLOUD_NAME=AzurePublicCloud\n${variables}\n`),
        ...overrides,
      });
    }
    const assertions = (from: number): string[] =>
      authority.tokenRequests.slice(from).flatMap((r) => (r.get('client_assertion') === null ? [] : [r.get('client_assertion')!]));

    test("the admin's AZURE_CLIENT_CERTIFICATE_PATH is read by the gateway and the PEM handed to the SDK: the token request is signed with its key", async () => {
      const from = authority.tokenRequests.length;
      const store = storeFor(certSpec(`AZURE_CLIENT_CERTIFICATE_PATH=${join(dir, 'client.pem')}`));
      assert.equal(store.authKind, 'clientCertificate');
      assert.equal(sha256(await collect(bodyOf(await store.get(key, { signal: signal() })))), sha256(firstBytes));
      const sent = assertions(from);
      assert.equal(sent.length, 1, 'one token request, with a client assertion');
      assert.ok(assertionVerifies(sent[0]!, certificate), "the assertion verifies with the certificate's key");
    });

    test('a rotated certificate file is read again at the next token request', async () => {
      const file = join(dir, 'rotating.pem');
      await writeFile(file, pem);
      const store = storeFor(certSpec(`AZURE_CLIENT_CERTIFICATE_PATH=${file}`));
      let from = authority.tokenRequests.length;
      await store.stat(key, { signal: signal() });
      assert.ok(assertionVerifies(assertions(from)[0]!, certificate));
      await writeFile(file, rotated.pem);
      from = authority.tokenRequests.length;
      await store.stat(key, { signal: signal() });
      // The pipeline refreshes a token near its expiry in the background, while the request uses the old one.
      for (let i = 0; i < 100 && assertions(from).length === 0; i++) await sleep(20);
      const sent = assertions(from);
      assert.equal(sent.length, 1);
      assert.ok(assertionVerifies(sent[0]!, rotated.certificate), 'signed with the new key');
      assert.ok(!assertionVerifies(sent[0]!, certificate));
    });

    test('a FIFO, /dev/zero, a directory or a file over 1 MiB → InvalidLocationError naming the variable; nothing read, no token asked for', async () => {
      const from = authority.tokenRequests.length;
      const cases: [string, RegExp][] = [
        [wire.path, /names a FIFO \(named pipe\), not a regular file$/],
        ['/dev/zero', /names a character device, not a regular file$/],
        [join(dir, 'a-directory'), /names a directory, not a regular file$/],
        [join(dir, 'large.pem'), /names a file larger than 1 MiB$/],
      ];
      for (const [path, why] of cases) {
        const store = storeFor(certSpec(`AZURE_CLIENT_CERTIFICATE_PATH=${path}`));
        const err = await rejectsWith(store.stat(key, { signal: signal() }), InvalidLocationError);
        assert.match(err.message, /^location velero\/aad-cert: Azure credential variable AZURE_CLIENT_CERTIFICATE_PATH names /);
        assert.match(err.message, why);
        assert.ok(!err.message.includes(path), 'the message names the variable, not the path');
      }
      assert.equal(authority.tokenRequests.length, from, 'no token request was made');
      assert.ok(await wire.intact(), 'the FIFO was never read');
    });

    test("a tenant's AZURE_CLIENT_CERTIFICATE_PATH is refused by the factory (403 class) before any read or connection", async () => {
      const factory = new DefaultStoreFactory({ fsRoot: dir, tenantEndpointAllow: ['127.0.0.1/32'] });
      opened.push(factory);
      const from = authority.tokenRequests.length;
      for (const path of [wire.path, '/dev/zero', join(dir, 'client.pem')]) {
        const err = await rejectsWith(
          (async () => factory.forSpec(certSpec(`AZURE_CLIENT_CERTIFICATE_PATH=${path}`, { name: 'team-a/aad-cert', tenant: true, allowDefaultCredential: false })))(),
          TenantSettingRefusedError,
        );
        assert.match(err.message, /^location team-a\/aad-cert: Azure credential variable AZURE_CLIENT_CERTIFICATE_PATH is refused for locations outside the gateway's namespace/);
        assert.ok(!err.message.includes(path));
      }
      assert.equal(factory.clientCount, 0, 'no client was built');
      assert.equal(authority.tokenRequests.length, from, 'no token request was made');
      assert.ok(await wire.intact(), 'the FIFO was never read');
    });

    test('the adapter refuses a tenant’s certificate path by itself too (the backstop behind the factory)', async () => {
      const from = authority.tokenRequests.length;
      const store = storeFor(certSpec(`AZURE_CLIENT_CERTIFICATE_PATH=${wire.path}`, { name: 'team-a/aad-cert', tenant: true }));
      const err = await rejectsWith(store.stat(key, { signal: signal() }), TenantSettingRefusedError);
      assert.match(err.message, /Azure credential variable AZURE_CLIENT_CERTIFICATE_PATH names a file on the gateway/);
      assert.equal(authority.tokenRequests.length, from);
      assert.ok(await wire.intact());
    });

    test("the PEM inline (AZURE_CLIENT_CERTIFICATE) stays allowed, for a tenant's location too", async () => {
      const factory = new DefaultStoreFactory({ fsRoot: dir, tenantEndpointAllow: ['127.0.0.1/32'] });
      opened.push(factory);
      const from = authority.tokenRequests.length;
      const spec = certSpec(`AZURE_CLIENT_CERTIFICATE=${JSON.stringify(pem)}`, { name: 'team-a/aad-inline', tenant: true, allowDefaultCredential: false });
      const store = await factory.forSpec(spec);
      assert.equal(sha256(await collect(bodyOf(await store.get(key, { signal: signal() })))), sha256(firstBytes));
      const sent = assertions(from);
      assert.equal(sent.length, 1);
      assert.ok(assertionVerifies(sent[0]!, certificate));
    });
  });
});

// ---- configuration ---------------------------------------------------------------------------------

describe('AzureBlobStore: configuration as Velero reads it', () => {
  const base: StoreSpec = {
    name: 'velero/cfg',
    provider: 'azure',
    bucket: 'velero',
    prefix: '',
    config: { storageAccount: 'acct123', storageAccountKeyEnvVar: KEY_VAR },
    credential: keyFile(AZURITE_KEY),
  };
  function endpoint(cloud: string | undefined, config: Record<string, string> = {}): string {
    const cloudLine = cloud === undefined ? '' : `AZURE_CLOUD_NAME=${cloud}\n`;
    return storeFor({ ...base, config: { ...base.config, ...config }, credential: Buffer.from(`${cloudLine}${KEY_VAR}=${AZURITE_KEY}\n`) }).endpoint;
  }

  test('both provider names are Azure', () => {
    assert.deepEqual([...AZURE_PROVIDERS].sort(), ['azure', 'velero.io/azure']);
    for (const provider of AZURE_PROVIDERS) assert.equal(storeFor({ ...base, provider }).authKind, 'sharedKey');
    throwsWith(() => storeFor({ ...base, provider: 'aws' }), InvalidLocationError);
  });

  test('AZURE_CLOUD_NAME picks the endpoint suffix', () => {
    assert.equal(endpoint(undefined), 'https://acct123.blob.core.windows.net');
    assert.equal(endpoint('AzurePublicCloud'), 'https://acct123.blob.core.windows.net');
    assert.equal(endpoint('AzureUSGovernmentCloud'), 'https://acct123.blob.core.usgovcloudapi.net');
    assert.equal(endpoint('azureusgovernment'), 'https://acct123.blob.core.usgovcloudapi.net');
    assert.equal(endpoint('AzureChinaCloud'), 'https://acct123.blob.core.chinacloudapi.cn');
  });

  test('storageAccountURI overrides it, with or without a scheme', () => {
    assert.equal(endpoint('AzureChinaCloud', { storageAccountURI: 'https://blob.example.internal:8443/acct123/' }), 'https://blob.example.internal:8443/acct123');
    assert.equal(endpoint(undefined, { storageAccountURI: 'acct123.blob.core.windows.net' }), 'https://acct123.blob.core.windows.net');
    // An unknown cloud is fine when the endpoint is given.
    assert.equal(endpoint('AzureStackCloud', { storageAccountURI: 'https://blob.local/acct123' }), 'https://blob.local/acct123');
  });

  test('an unknown cloud without storageAccountURI is refused', () => {
    const err = throwsWith(() => endpoint('AzureGermanCloud'), InvalidLocationError);
    assert.match(err.message, /AZURE_CLOUD_NAME .* does not know/);
    assert.doesNotMatch(err.message, /AzureGermanCloud/);
  });

  const invalid: [string, Partial<StoreSpec>][] = [
    ['storageAccount missing', { config: { storageAccountKeyEnvVar: KEY_VAR } }],
    ['an unknown config key', { config: { ...base.config, region: 'westeurope' } }],
    ['a container name Azure refuses', { bucket: 'Velero_Backups' }],
    ['an empty container', { bucket: '' }],
    ['a storageAccountURI carrying a SAS token', { config: { ...base.config, storageAccountURI: 'https://a.blob.core.windows.net/?sv=2022&sig=abc' } }],
    ['a storageAccountURI with another scheme', { config: { ...base.config, storageAccountURI: 'ftp://a.example' } }],
    ['useAAD neither true nor false', { config: { ...base.config, useAAD: 'yes please' } }],
    ['an http authority', { config: { ...base.config, useAAD: 'true', activeDirectoryAuthorityURI: 'http://login.local' } }],
    ['a key that is not base64', { credential: Buffer.from(`${KEY_VAR}=not a key!\n`) }],
    ['a malformed credential line', { credential: Buffer.from(`${KEY_VAR}=${AZURITE_KEY}\nthis is not dotenv\n`) }],
    ['a prefix climbing out', { prefix: 'a/../..' }],
  ];
  for (const [name, overrides] of invalid) {
    test(`${name} → InvalidLocationError naming the location`, () => {
      const err = throwsWith(() => storeFor({ ...base, ...overrides }), InvalidLocationError);
      assert.match(err.message, /location velero\/cfg/);
    });
  }

  test('accepted without use: resourceGroup, subscriptionId, blockSizeInBytes, credentialsFile, apiVersion', () => {
    const store = storeFor({
      ...base,
      config: { ...base.config, resourceGroup: 'rg', subscriptionId: 's', blockSizeInBytes: '1048576', credentialsFile: '/credentials/cloud', apiVersion: '2021-08-06' },
    });
    assert.equal(store.authKind, 'sharedKey');
  });
});

// ---- failures only a fake endpoint produces --------------------------------------------------------

type Handler = (req: IncomingMessage, res: ServerResponse) => void;

interface FakeBlob {
  url: string;
  requests: string[];
  close(): Promise<void>;
}

async function startFakeBlob(handler: Handler): Promise<FakeBlob> {
  const requests: string[] = [];
  const sockets = new Set<Socket>();
  const server = createHttpServer((req, res) => {
    requests.push(`${req.method} ${req.url}`);
    handler(req, res);
  });
  server.on('connection', (s: Socket) => {
    sockets.add(s);
    s.on('close', () => sockets.delete(s));
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    url: `http://127.0.0.1:${(server.address() as AddressInfo).port}/fakeacct`,
    requests,
    close: async () => {
      for (const s of sockets) s.destroy();
      server.close();
      await once(server, 'close');
    },
  };
}

function blobHeaders(res: ServerResponse, length: number, extra: Record<string, string> = {}): void {
  res.setHeader('content-length', String(length));
  res.setHeader('etag', '"0x8DCFAKE"');
  res.setHeader('last-modified', 'Mon, 23 Nov 2026 10:00:00 GMT');
  res.setHeader('x-ms-blob-type', 'BlockBlob');
  for (const [k, v] of Object.entries(extra)) res.setHeader(k, v);
}

function errorReply(res: ServerResponse, status: number, code: string, headers: Record<string, string> = {}): void {
  const body = `<?xml version="1.0" encoding="utf-8"?><Error><Code>${code}</Code><Message>fake</Message></Error>`;
  res.writeHead(status, { 'x-ms-error-code': code, 'content-type': 'application/xml', 'content-length': String(Buffer.byteLength(body)), ...headers });
  res.end(body);
}

describe('AzureBlobStore: failures at the edge (fake blob endpoint)', () => {
  const fast: Timeouts = { connectMs: 300, requestMs: 600, socketIdleMs: 400 };
  const servers: FakeBlob[] = [];
  after(async () => {
    for (const s of servers) await s.close();
  });

  async function storeOn(handler: Handler, timeouts: Timeouts = fast): Promise<{ store: AzureBlobStore; fake: FakeBlob }> {
    const fake = await startFakeBlob(handler);
    servers.push(fake);
    const store = storeFor(
      {
        name: 'velero/fake',
        provider: 'azure',
        bucket: 'bucket',
        prefix: 'p',
        config: { storageAccount: 'fakeacct', storageAccountURI: fake.url, storageAccountKeyEnvVar: KEY_VAR },
        credential: keyFile(AZURITE_KEY),
      },
      { timeouts },
    );
    return { store, fake };
  }

  test('503 ServerBusy with Retry-After → ThrottledError at once, never retried', async () => {
    const { store, fake } = await storeOn((_req, res) => errorReply(res, 503, 'ServerBusy', { 'retry-after': '7' }));
    const t0 = performance.now();
    const err = await rejectsWith(store.get('k', { signal: signal() }), ThrottledError);
    assert.equal(err.retryAfterSeconds, 7);
    assert.equal(fake.requests.length, 1, 'asked once');
    assert.equal(fake.requests[0], 'GET /fakeacct/bucket/p/k');
    assert.ok(performance.now() - t0 < 3000);
    const statErr = await rejectsWith(store.stat('k', { signal: signal() }), ThrottledError);
    assert.equal(statErr.retryAfterSeconds, 7);
  });

  test('500 → StoreUnavailableError naming status and code', async () => {
    const { store } = await storeOn((_req, res) => errorReply(res, 500, 'InternalError'));
    const err = await rejectsWith(store.stat('k', { signal: signal() }), StoreUnavailableError);
    assert.match(err.message, /reading object "k": the store answered with an error \(HTTP 500 InternalError\)/);
  });

  test('416 InvalidRange (what Azure answers past the end) → InvalidRangeError', async () => {
    const { store } = await storeOn((_req, res) => errorReply(res, 416, 'InvalidRange'));
    await rejectsWith(store.get('k', { signal: signal(), range: { start: 10, end: 20 } }), InvalidRangeError);
  });

  test('no response headers within requestMs → StoreTimeoutError', async () => {
    const { store } = await storeOn(() => undefined);
    const t0 = performance.now();
    await rejectsWith(store.stat('k', { signal: signal() }), StoreTimeoutError);
    await rejectsWith(store.get('k', { signal: signal() }), StoreTimeoutError);
    assert.ok(performance.now() - t0 < 4 * fast.requestMs + 1000, 'each call failed within about requestMs');
  });

  test('a body that stalls → the body errors with StoreTimeoutError after socketIdleMs', async () => {
    const { store } = await storeOn((req, res) => {
      blobHeaders(res, 1000);
      if (req.method === 'HEAD') return void res.end();
      res.write(Buffer.alloc(100, 1));
    });
    const got = await store.get('k', { signal: signal() });
    const { bytes, error } = await drain(bodyOf(got));
    assert.equal(bytes, 100);
    assert.ok(error instanceof StoreTimeoutError, `expected StoreTimeoutError, got ${String(error)}`);
    record(error);
  });

  test('a body cut short by the store → the body errors with a store error, never ends quietly', async () => {
    const { store } = await storeOn((req, res) => {
      blobHeaders(res, 1000);
      res.write(Buffer.alloc(300, 2));
      setTimeout(() => res.socket?.destroy(), 20);
    });
    const got = await store.get('k', { signal: signal() });
    assert.equal(got.size, 1000);
    const { bytes, error } = await drain(bodyOf(got));
    assert.ok(bytes < 1000);
    assert.ok(error instanceof StoreUnavailableError, `expected StoreUnavailableError, got ${String(error)}`);
    record(error);
  });

  test('a store that sends another range than asked → StoreUnavailableError', async () => {
    const { store } = await storeOn((_req, res) => {
      blobHeaders(res, 10, { 'content-range': 'bytes 0-9/100' });
      res.writeHead(206);
      res.end(Buffer.alloc(10));
    });
    await rejectsWith(store.get('k', { signal: signal(), range: { start: 50, end: 59 } }), StoreUnavailableError);
  });

  test('connection refused → StoreUnavailableError, fast', async () => {
    const fake = await startFakeBlob(() => undefined);
    await fake.close();
    const store = storeFor(
      {
        name: 'velero/refused',
        provider: 'azure',
        bucket: 'bucket',
        prefix: '',
        config: { storageAccount: 'fakeacct', storageAccountURI: fake.url, storageAccountKeyEnvVar: KEY_VAR },
        credential: keyFile(AZURITE_KEY),
      },
      { timeouts: fast },
    );
    const t0 = performance.now();
    const err = await rejectsWith(store.stat('k', { signal: signal() }), StoreUnavailableError);
    assert.match(err.message, /reading object "k": cannot reach the store \(ECONNREFUSED\)/);
    assert.ok(performance.now() - t0 < 2000);
  });

  test('a TLS handshake that never completes → StoreTimeoutError after connectMs', async () => {
    // Accepts TCP and never answers the ClientHello.
    const held = new Set<Socket>();
    const silent = createNetServer((s) => held.add(s));
    silent.listen(0, '127.0.0.1');
    await once(silent, 'listening');
    try {
      const store = storeFor(
        {
          name: 'velero/silent',
          provider: 'azure',
          bucket: 'bucket',
          prefix: '',
          config: { storageAccount: 'fakeacct', storageAccountURI: `https://127.0.0.1:${(silent.address() as AddressInfo).port}/fakeacct`, storageAccountKeyEnvVar: KEY_VAR },
          credential: keyFile(AZURITE_KEY),
        },
        { timeouts: { connectMs: 200, requestMs: 30_000, socketIdleMs: 30_000 } },
      );
      const t0 = performance.now();
      await rejectsWith(store.stat('k', { signal: signal() }), StoreTimeoutError);
      // One try (a timed-out connection is not retried), cut at connectMs, far below requestMs.
      assert.ok(performance.now() - t0 < 2000, `took ${Math.round(performance.now() - t0)} ms`);
    } finally {
      for (const s of held) s.destroy();
      silent.close();
    }
  });

  test('apiVersion is sent as x-ms-version', async () => {
    const versions: (string | undefined)[] = [];
    const fake = await startFakeBlob((req, res) => {
      versions.push(req.headers['x-ms-version'] as string | undefined);
      blobHeaders(res, 0);
      res.end();
    });
    servers.push(fake);
    const store = storeFor({
      name: 'velero/stack',
      provider: 'azure',
      bucket: 'bucket',
      prefix: '',
      config: { storageAccount: 'fakeacct', storageAccountURI: fake.url, storageAccountKeyEnvVar: KEY_VAR, apiVersion: '2019-02-02' },
      credential: keyFile(AZURITE_KEY),
    });
    assert.equal((await store.stat('k', { signal: signal() })).size, 0);
    assert.deepEqual(versions, ['2019-02-02']);
  });

  test('after close() the store refuses new calls', async () => {
    const { store } = await storeOn((_req, res) => {
      blobHeaders(res, 0);
      res.end();
    });
    await store.stat('k', { signal: signal() });
    await store.close();
    await rejectsWith(store.stat('k', { signal: signal() }), StoreUnavailableError);
  });
});

// ---- a fake Azure AD authority ---------------------------------------------------------------------

/** Whether a client-assertion JWT (RS256 or PS256, as MSAL signs) verifies with the certificate's key. */
function assertionVerifies(jwt: string, certificate: string): boolean {
  const [header, payload, signature] = jwt.split('.');
  if (header === undefined || payload === undefined || signature === undefined) return false;
  const alg = (JSON.parse(Buffer.from(header, 'base64url').toString()) as { alg?: string }).alg;
  const key = new X509Certificate(certificate).publicKey;
  const data = Buffer.from(`${header}.${payload}`);
  const sig = Buffer.from(signature, 'base64url');
  if (alg === 'RS256') return cryptoVerify('sha256', data, key, sig);
  if (alg === 'PS256') return cryptoVerify('sha256', data, { key, padding: constants.RSA_PKCS1_PSS_PADDING, saltLength: 32 }, sig);
  return false;
}

interface FakeAuthority {
  origin: string;
  tokenRequests: URLSearchParams[];
  close(): Promise<void>;
}

/**
 * Just enough of Azure AD for MSAL's client-credentials flow: the tenant's OpenID configuration and a
 * token endpoint that issues an unsigned JWT Azurite's `--oauth basic` accepts (it checks issuer,
 * audience and lifetime, not the signature) when the client secret is `secret`, or the client
 * assertion is signed by the key of one of `clientCertificates`, else `invalid_client`; tokens live
 * `tokenSeconds`.
 */
async function startFakeAuthority(pki: TestPki, secret: string, clientCertificates: string[] = [], tokenSeconds = 3600): Promise<FakeAuthority> {
  const tokenRequests: URLSearchParams[] = [];
  const b64 = (o: object): string => Buffer.from(JSON.stringify(o)).toString('base64url');
  const server = createHttpsServer({ cert: pki.cert, key: pki.key }, (req, res) => {
    let body = '';
    req.on('data', (c: Buffer) => (body += c.toString()));
    req.on('end', () => {
      const origin = `https://127.0.0.1:${(server.address() as AddressInfo).port}`;
      res.setHeader('content-type', 'application/json');
      if (req.method === 'GET' && req.url === `/${TENANT}/v2.0/.well-known/openid-configuration`) {
        res.end(
          JSON.stringify({
            token_endpoint: `${origin}/${TENANT}/oauth2/v2.0/token`,
            authorization_endpoint: `${origin}/${TENANT}/oauth2/v2.0/authorize`,
            end_session_endpoint: `${origin}/${TENANT}/oauth2/v2.0/logout`,
            issuer: `${origin}/${TENANT}/v2.0`,
            jwks_uri: `${origin}/${TENANT}/discovery/v2.0/keys`,
          }),
        );
        return;
      }
      if (req.method === 'POST' && req.url?.startsWith(`/${TENANT}/oauth2/v2.0/token`)) {
        const form = new URLSearchParams(body);
        tokenRequests.push(form);
        const assertion = form.get('client_assertion');
        const byCertificate = assertion !== null && clientCertificates.some((c) => assertionVerifies(assertion, c));
        if (!byCertificate && form.get('client_secret') !== secret) {
          res.statusCode = 401;
          res.end(JSON.stringify({ error: 'invalid_client', error_description: 'AADSTS7000215: Invalid client secret provided.' }));
          return;
        }
        const now = Math.floor(Date.now() / 1000);
        const claims = { aud: 'https://storage.azure.com', iss: `https://sts.windows.net/${TENANT}/`, iat: now - 60, nbf: now - 60, exp: now + tokenSeconds, tid: TENANT, appid: CLIENT_ID };
        res.end(JSON.stringify({ token_type: 'Bearer', expires_in: tokenSeconds, ext_expires_in: tokenSeconds, access_token: `${b64({ alg: 'RS256', typ: 'JWT' })}.${b64(claims)}.c2ln` }));
        return;
      }
      res.statusCode = 404;
      res.end('{}');
    });
  });
  server.listen(0, '127.0.0.1');
  await once(server, 'listening');
  return {
    origin: `https://127.0.0.1:${(server.address() as AddressInfo).port}`,
    tokenRequests,
    close: async () => {
      server.closeAllConnections();
      server.close();
      await once(server, 'close');
    },
  };
}

// ---- last: what the tests saw ----------------------------------------------------------------------

test('no error produced in these tests contains a credential value', () => {
  assert.ok(seen.length >= 30, `expected many recorded errors, got ${seen.length}`);
  assert.ok(seen.some((e) => e instanceof AccessDeniedError));
  for (const err of seen) {
    const text = errorText(err);
    for (const secret of SECRETS) {
      assert.ok(!text.includes(secret), `an error shows a credential value: ${String(err)}`);
      // Nor a recognisable piece of one.
      assert.ok(!text.includes(secret.slice(0, 16)), `an error shows part of a credential value: ${String(err)}`);
    }
  }
});

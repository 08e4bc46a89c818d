/**
 * The tenant endpoint guard:
 * address classification, the allow list, the connect-time lookup, the guarded agents, and the three
 * real adapters (S3, Azure Blob, GCS) refusing loopback, link-local, private, rebinding, plain-HTTP
 * endpoints and never following a redirect, while an allowlisted private endpoint works.
 *
 * Connection attempts are observed with the `net.client.socket` diagnostics channel: every client
 * socket of this process reports each address it tries ('connectionAttempt'), so "no connection
 * attempted" is measured, not assumed. Nothing here leaves the loopback interface.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import dc from 'node:diagnostics_channel';
import type { LookupAddress } from 'node:dns';
import { mkdtemp, rm } from 'node:fs/promises';
import http from 'node:http';
import https from 'node:https';
import type { IncomingMessage, ServerResponse } from 'node:http';
import type { AddressInfo, Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { inspect } from 'node:util';
import { DEFAULT_MAX_SOCKETS } from '../../src/stores/adapter.ts';
import type { AdapterOptions, ClosableStore, Timeouts } from '../../src/stores/adapter.ts';
import { AzureBlobStore } from '../../src/stores/azure.ts';
import {
  classifyAddress,
  createEndpointPolicy,
  endpointRefusal,
  guardAgent,
  guardedLookup,
  parseEndpointAllowList,
} from '../../src/stores/endpoint-guard.ts';
import type { AddressClass, EndpointPolicy, EndpointResolver } from '../../src/stores/endpoint-guard.ts';
import { ENDPOINT_REFUSED_CODE, EndpointRefusedError, InvalidLocationError, StoreUnavailableError } from '../../src/stores/errors.ts';
import { DefaultStoreFactory } from '../../src/stores/factory.ts';
import { GcsStore } from '../../src/stores/gcs.ts';
import { S3Store } from '../../src/stores/s3.ts';
import type { StoreSpec } from '../../src/stores/spec.ts';
import { trustFor } from '../../src/stores/trust.ts';
import type { ObjectStore } from '../../src/stores/types.ts';
import { createTestServiceAccount, GcsJsonApiDouble } from '../support/gcs-server.ts';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3rver } from '../support/s3rver.ts';
import type { S3rverInstance } from '../support/s3rver.ts';
import { collect, bodyOf } from '../support/streams.ts';
import { createTestPki } from '../support/test-ca.ts';
import type { TestPki } from '../support/test-ca.ts';

const LOCATION = 'team-a/minio';
const KEY = 'backups/nightly/nightly-logs.gz';
const BODY = Buffer.from('hello');
const signal = new AbortController().signal;
const TIMEOUTS: Timeouts = { connectMs: 3_000, requestMs: 5_000, socketIdleMs: 5_000 };

// Credentials: distinctive values, looked for in every error at the end.
const AWS_SECRET = `aws-secret-${randomBytes(12).toString('hex')}`;
const AWS_CREDENTIAL = Buffer.from(`[default]\naws_access_key_id = AKIDTENANT0000001\naws_secret_access_key = ${AWS_SECRET}\n`);
const S3RVER_CREDENTIAL = Buffer.from(`[default]\naws_access_key_id = ${S3RVER_ACCESS_KEY_ID}\naws_secret_access_key = ${S3RVER_SECRET_ACCESS_KEY}\n`);
const AZURE_KEY = randomBytes(64).toString('base64');
const AZURE_KEY_VAR = 'AZURE_STORAGE_ACCOUNT_ACCESS_KEY';
const AZURE_CREDENTIAL = Buffer.from(`AZURE_CLOUD_NAME=AzurePublicCloud\n${AZURE_KEY_VAR}=${AZURE_KEY}\n`);
const GCS_ACCOUNT = createTestServiceAccount('tenant-a@vds-test-project.iam.gserviceaccount.com');
const SECRETS = [AWS_SECRET, AZURE_KEY, GCS_ACCOUNT.privateKeyPem.split('\n')[1]!];

// ---- observation -----------------------------------------------------------------------------------

/** Every address a client socket of this process tried to connect to, in order. */
const attempts: string[] = [];
const onClientSocket = (message: unknown): void => {
  const { socket } = message as { socket: Socket };
  socket.on('connectionAttempt', (ip: string) => attempts.push(ip));
};
dc.subscribe('net.client.socket', onClientSocket);

const seenErrors: unknown[] = [];
const closers: (() => Promise<void>)[] = [];

/** Runs `fn` (which may build a store and use it) and returns the EndpointRefusedError it threw. */
async function refused(fn: () => unknown): Promise<EndpointRefusedError> {
  try {
    await fn();
  } catch (err) {
    seenErrors.push(err);
    assert.ok(err instanceof EndpointRefusedError, `expected EndpointRefusedError, got ${inspect(err)}`);
    // A wrong configuration of the location: the InvalidLocation family, mapped to 403 by the server.
    assert.ok(err instanceof InvalidLocationError);
    assert.equal(err.reason, 'InvalidLocation');
    return err;
  }
  assert.fail('expected the endpoint to be refused');
}

async function failsWith<E extends Error>(fn: () => unknown, type: new (...args: never[]) => E): Promise<E> {
  try {
    await fn();
  } catch (err) {
    seenErrors.push(err);
    assert.ok(err instanceof type, `expected ${type.name}, got ${inspect(err)}`);
    return err;
  }
  assert.fail(`expected ${type.name}`);
}

function track<S extends ClosableStore>(store: S): S {
  closers.push(() => store.close());
  return store;
}

// ---- a scripted HTTPS server that counts TCP connections -----------------------------------------

interface Scripted {
  port: number;
  /** `https://<host>:<port>` */
  origin: string;
  connections: number;
  requests: { method: string; url: string }[];
  close(): Promise<void>;
}

let pki: TestPki;

async function scripted(
  handler: (req: IncomingMessage, res: ServerResponse) => void,
  { host = '127.0.0.1', port = 0 }: { host?: string; port?: number } = {},
): Promise<Scripted> {
  const server = https.createServer({ key: pki.key, cert: pki.cert }, (req, res) => {
    s.requests.push({ method: req.method ?? '', url: req.url ?? '' });
    handler(req, res);
  });
  const s: Scripted = {
    port: 0,
    origin: '',
    connections: 0,
    requests: [],
    close: async () => {
      const closed = new Promise<void>((resolve) => server.close(() => resolve()));
      server.closeAllConnections();
      await closed;
    },
  };
  server.on('connection', () => s.connections++);
  await new Promise<void>((resolve, reject) => {
    server.once('error', reject);
    server.listen(port, host, () => resolve());
  });
  s.port = (server.address() as AddressInfo).port;
  s.origin = `https://${host}:${s.port}`;
  closers.push(() => s.close());
  return s;
}

/** Answers object reads as S3, Azure and GCS do, enough for their SDKs: metadata and a 5-byte body. Closes each connection. */
function objectServer(req: IncomingMessage, res: ServerResponse): void {
  const headers = {
    connection: 'close',
    etag: '"0x8DC0FFEE"',
    'last-modified': new Date(0).toUTCString(),
    'content-type': 'application/octet-stream',
    'x-ms-blob-type': 'BlockBlob',
    'x-goog-generation': '1700000000000000',
  };
  if (req.url?.startsWith('/storage/v1/') && !req.url.includes('alt=media')) {
    const doc = Buffer.from(JSON.stringify({ size: String(BODY.length), generation: '1700000000000000', updated: new Date(0).toISOString() }));
    res.writeHead(200, { ...headers, 'content-type': 'application/json', 'content-length': doc.length });
    res.end(doc);
    return;
  }
  res.writeHead(200, { ...headers, 'content-length': BODY.length });
  res.end(req.method === 'HEAD' ? undefined : BODY);
}

function redirectTo(location: (req: IncomingMessage) => string) {
  return (req: IncomingMessage, res: ServerResponse): void => {
    res.writeHead(307, { location: location(req), 'content-length': 0 });
    res.end();
  };
}

/** A resolver answering from a script: `answers[i]` for the i-th question (the last one repeats). */
function scriptedResolver(answers: string[][]): EndpointResolver & { asked: string[] } {
  const asked: string[] = [];
  const resolve = async (hostname: string): Promise<LookupAddress[]> => {
    asked.push(hostname);
    const answer = answers[Math.min(asked.length - 1, answers.length - 1)] ?? [];
    return answer.map((address) => ({ address, family: address.includes(':') ? 6 : 4 }));
  };
  return Object.assign(resolve, { asked });
}

// ---- store options ---------------------------------------------------------------------------------

interface Args {
  endpoint: string;
  policy?: EndpointPolicy | undefined;
  name?: string;
  caBundle?: string;
}

function base(a: Args, provider: string, bucket: string, config: Record<string, string>, credential: Uint8Array): AdapterOptions {
  const name = a.name ?? LOCATION;
  const caBundle = a.caBundle ?? pki.caCert;
  const spec: StoreSpec = { name, provider, bucket, prefix: '', config, credential, caBundle, allowDefaultCredential: false, tenant: a.policy !== undefined };
  return {
    spec,
    trust: trustFor(name, config, caBundle, undefined),
    ambientCredentials: false,
    timeouts: TIMEOUTS,
    maxSockets: DEFAULT_MAX_SOCKETS,
    ...(a.policy && { endpointPolicy: a.policy }),
  };
}

const s3 = (a: Args, credential: Uint8Array = AWS_CREDENTIAL): S3Store =>
  track(new S3Store(base(a, 'aws', 'velero', { region: 'us-east-1', s3ForcePathStyle: 'true', s3Url: a.endpoint }, credential)));
const azure = (a: Args): AzureBlobStore =>
  track(new AzureBlobStore(base(a, 'azure', 'backups', { storageAccount: 'tenantaccount', storageAccountKeyEnvVar: AZURE_KEY_VAR, storageAccountURI: a.endpoint }, AZURE_CREDENTIAL)));
const gcs = (a: Args): GcsStore => track(new GcsStore(base(a, 'gcp', 'bucket-a', { storeEndpoint: a.endpoint }, GCS_ACCOUNT.json)));

const stat = (store: ObjectStore) => store.stat(KEY, { signal });
const read = async (store: ObjectStore) => collect(bodyOf(await store.get(KEY, { signal })));

const tenantPolicy = (allow: string[] = [], resolve?: EndpointResolver): EndpointPolicy => createEndpointPolicy(allow, resolve);

before(async () => {
  pki = await createTestPki('vds endpoint-guard test CA');
});

after(async () => {
  dc.unsubscribe('net.client.socket', onClientSocket);
  for (const close of closers.reverse()) await close().catch(() => undefined);
});

// ---- units -----------------------------------------------------------------------------------------

describe('classifyAddress', () => {
  const cases: [string, AddressClass | undefined][] = [
    // loopback 127/8
    ['127.0.0.1', 'loopback'],
    ['127.255.255.254', 'loopback'],
    ['126.255.255.255', undefined],
    ['128.0.0.0', undefined],
    // link-local 169.254/16, with the metadata service
    ['169.254.169.254', 'link-local'],
    ['169.254.0.0', 'link-local'],
    ['169.254.255.255', 'link-local'],
    ['169.253.255.255', undefined],
    ['169.255.0.0', undefined],
    // private
    ['10.0.0.0', 'private'],
    ['10.255.255.1', 'private'],
    ['9.255.255.255', undefined],
    ['11.0.0.0', undefined],
    ['172.16.0.0', 'private'],
    ['172.31.255.255', 'private'],
    ['172.15.255.255', undefined],
    ['172.32.0.0', undefined],
    ['192.168.0.1', 'private'],
    ['192.168.255.255', 'private'],
    ['192.167.255.255', undefined],
    ['192.169.0.0', undefined],
    // CGNAT 100.64/10
    ['100.64.0.0', 'shared'],
    ['100.127.255.255', 'shared'],
    ['100.63.255.255', undefined],
    ['100.128.0.0', undefined],
    // unspecified, multicast, reserved
    ['0.0.0.0', 'unspecified'],
    ['0.1.2.3', 'unspecified'],
    ['224.0.0.1', 'multicast'],
    ['239.255.255.255', 'multicast'],
    ['240.0.0.1', 'reserved'],
    ['255.255.255.255', 'reserved'],
    ['192.0.0.170', 'reserved'],
    ['198.18.0.1', 'reserved'],
    ['198.19.255.255', 'reserved'],
    ['198.20.0.0', undefined],
    // public IPv4
    ['8.8.8.8', undefined],
    ['52.216.10.1', undefined],
    ['203.0.113.10', undefined],
    // IPv6
    ['::', 'unspecified'],
    ['0:0:0:0:0:0:0:0', 'unspecified'],
    ['::1', 'loopback'],
    ['0:0:0:0:0:0:0:1', 'loopback'],
    ['[::1]', 'loopback'],
    ['fe80::1', 'link-local'],
    ['fe80::1%eth0', 'link-local'],
    ['febf:ffff::1', 'link-local'],
    ['fec0::1', 'private'],
    ['fc00::1', 'private'],
    ['fd12:3456:789a::1', 'private'],
    ['fd00:ec2::254', 'private'],
    ['ff02::1', 'multicast'],
    ['100::1', 'reserved'],
    ['64:ff9b:1::a00:1', 'private'],
    ['::2', 'reserved'],
    ['2001:4860:4860::8888', undefined],
    ['2606:4700:4700::1111', undefined],
    ['fbff:ffff::1', undefined],
    // IPv4-mapped forms, dotted and hexadecimal, and the other IPv6 forms that reach an IPv4 address
    ['::ffff:127.0.0.1', 'loopback'],
    ['::ffff:7f00:1', 'loopback'],
    ['[::ffff:127.0.0.1]', 'loopback'],
    ['0:0:0:0:0:ffff:7f00:0001', 'loopback'],
    ['::ffff:169.254.169.254', 'link-local'],
    ['::ffff:a9fe:a9fe', 'link-local'],
    ['::ffff:10.0.0.5', 'private'],
    ['::ffff:ac10:1', 'private'],
    ['::ffff:c0a8:101', 'private'],
    ['::ffff:100.64.0.1', 'shared'],
    ['::ffff:0.0.0.0', 'unspecified'],
    ['::ffff:224.0.0.1', 'multicast'],
    ['::ffff:8.8.8.8', undefined],
    ['::ffff:0:127.0.0.1', 'loopback'], // SIIT
    ['64:ff9b::10.0.0.1', 'private'], // NAT64
    ['64:ff9b::a9fe:a9fe', 'link-local'],
    ['64:ff9b::8.8.8.8', undefined],
    ['2002:7f00:1::1', 'loopback'], // 6to4
    ['2002:a9fe:a9fe::', 'link-local'],
    ['2002:808:808::1', undefined],
    ['::127.0.0.1', 'reserved'], // IPv4-compatible (deprecated)
  ];
  for (const [address, want] of cases) {
    test(`${address} → ${want ?? 'public'}`, () => assert.equal(classifyAddress(address), want));
  }

  test('text that is not an IP address is a TypeError, never "public"', () => {
    for (const text of ['example.com', '127.1', '2130706433', '0x7f.0.0.1', '', '1.2.3.4.5', ':::1']) {
      assert.throws(() => classifyAddress(text), TypeError, text);
    }
  });
});

describe('the allow list (--tenant-endpoint-allow)', () => {
  test('CIDRs match their range, inclusive of both ends, and nothing outside', () => {
    const { allow, errors } = parseEndpointAllowList(['10.20.0.0/16', '192.168.7.9', 'fd00:1234::/32', '::1']);
    assert.deepEqual(errors, []);
    for (const a of ['10.20.0.0', '10.20.255.255', '192.168.7.9', 'fd00:1234::1', 'fd00:1234:ffff::ffff', '::1']) assert.ok(allow.allowsAddress(a), a);
    for (const a of ['10.19.255.255', '10.21.0.0', '192.168.7.8', '192.168.7.10', 'fd00:1235::1', '::2', '127.0.0.1', 'not-an-ip']) {
      assert.ok(!allow.allowsAddress(a), a);
    }
    assert.deepEqual(allow.entries, ['10.20.0.0/16', '192.168.7.9/32', '::1/128', 'fd00:1234::/32']);
  });

  test('an IPv4-mapped IPv6 address is matched as its IPv4 address, and a mapped CIDR as an IPv4 one', () => {
    const { allow } = parseEndpointAllowList(['10.0.0.0/8', '::ffff:192.168.0.0/112']);
    assert.ok(allow.allowsAddress('::ffff:10.1.2.3'));
    assert.ok(allow.allowsAddress('::ffff:a01:203'));
    assert.ok(allow.allowsAddress('192.168.3.4'));
    assert.ok(!allow.allowsAddress('::ffff:11.0.0.1'));
    assert.deepEqual(allow.entries, ['10.0.0.0/8', '192.168.0.0/16']);
  });

  test('host names match exactly (case and a final dot aside); *.globs match any depth below, not the apex or look-alikes', () => {
    const { allow, errors } = parseEndpointAllowList(['MinIO.storage.svc', '*.corp.example']);
    assert.deepEqual(errors, []);
    for (const h of ['minio.storage.svc', 'MINIO.STORAGE.SVC', 'minio.storage.svc.', 's3.corp.example', 'a.b.corp.example']) assert.ok(allow.allowsHost(h), h);
    for (const h of ['storage.svc', 'x.minio.storage.svc', 'corp.example', 'evilcorp.example', 'corp.example.evil', 's3.corp.example.evil']) {
      assert.ok(!allow.allowsHost(h), h);
    }
    assert.deepEqual(allow.entries, ['*.corp.example', 'minio.storage.svc']);
  });

  test('every bad entry is reported, the good ones kept; blank entries are ignored', () => {
    const { allow, errors } = parseEndpointAllowList(['10.0.0.5/8', '10.0.0.0/33', '10.0.0.0/8/1', 'a.*.example', '*', '*.example', 'bad host', '300.1.1.1', '', ' 10.1.0.0/16 ']);
    assert.deepEqual(allow.entries, ['10.1.0.0/16']);
    assert.equal(errors.length, 8);
    assert.match(errors[0]!, /^--tenant-endpoint-allow: "10\.0\.0\.5\/8" has bits set past the prefix length; the network is 10\.0\.0\.0\/8$/);
    assert.match(errors[1]!, /"10\.0\.0\.0\/33" is not a CIDR/);
    assert.match(errors[2]!, /"10\.0\.0\.0\/8\/1" is not a CIDR/);
    assert.match(errors[3]!, /"a\.\*\.example" is neither/);
    assert.match(errors[4]!, /"\*" is neither/);
    assert.match(errors[5]!, /"\*\.example" is too wide/);
    assert.match(errors[6]!, /"bad host" is neither/);
    assert.match(errors[7]!, /"300\.1\.1\.1" looks like an IP address/);
    assert.throws(() => createEndpointPolicy(['ok.example', '10.0.0.1/8', 'x y']), /"10\.0\.0\.1\/8".*; .*"x y"/);
  });
});

describe('guardedLookup: the resolution the socket connects with', () => {
  const lookupOnce = (policy: EndpointPolicy, host: string, all = true) =>
    new Promise<{ err: Error | null; address: string | LookupAddress[]; family: number | undefined }>((resolve) =>
      guardedLookup(policy, LOCATION)(host, { all, family: 0 }, (err, address, family) => resolve({ err, address, family })),
    );

  test('public addresses pass as resolved, in either callback form', async () => {
    const policy = tenantPolicy([], scriptedResolver([['52.216.10.1', '2600:1f18::1']]));
    assert.deepEqual((await lookupOnce(policy, 's3.example')).address, [
      { address: '52.216.10.1', family: 4 },
      { address: '2600:1f18::1', family: 6 },
    ]);
    const one = await lookupOnce(policy, 's3.example', false);
    assert.equal(one.address, '52.216.10.1');
    assert.equal(one.family, 4);
  });

  test('refused addresses are dropped: only the checked ones reach the socket', async () => {
    const policy = tenantPolicy([], scriptedResolver([['127.0.0.1', '10.0.0.9', '52.216.10.1', '::ffff:169.254.169.254']]));
    assert.deepEqual((await lookupOnce(policy, 'mixed.example')).address, [{ address: '52.216.10.1', family: 4 }]);
  });

  test('all refused → EndpointRefusedError naming location, host and why, without the addresses', async () => {
    const policy = tenantPolicy([], scriptedResolver([['10.0.0.9', '10.0.0.10', 'fd00::9']]));
    const { err } = await lookupOnce(policy, 'minio.internal');
    assert.ok(err instanceof EndpointRefusedError);
    assert.equal(
      err.message,
      "location team-a/minio: endpoint minio.internal resolves to a private address; tenants' locations may not reach it (allow it with --tenant-endpoint-allow)",
    );
    assert.equal(err.code, ENDPOINT_REFUSED_CODE);
  });

  test('the metadata service by name is named as such', async () => {
    const { err } = await lookupOnce(tenantPolicy([], scriptedResolver([['169.254.169.254']])), 'metadata.google.internal');
    assert.match(String(err?.message), /endpoint metadata\.google\.internal resolves to a link-local address \(the cloud metadata service\); .* a host name entry does not allow loopback or link-local addresses/);
  });

  test('a host entry allows its private addresses but never loopback or link-local; a CIDR allows those', async () => {
    const dns = scriptedResolver([['10.0.0.9', '127.0.0.1', '169.254.169.254']]);
    assert.deepEqual((await lookupOnce(tenantPolicy(['*.storage.example'], dns), 'minio.storage.example')).address, [{ address: '10.0.0.9', family: 4 }]);
    const loopOnly = scriptedResolver([['127.0.0.1']]);
    assert.ok((await lookupOnce(tenantPolicy(['localhost'], loopOnly), 'localhost')).err instanceof EndpointRefusedError);
    assert.deepEqual((await lookupOnce(tenantPolicy(['127.0.0.0/8'], loopOnly), 'localhost')).address, [{ address: '127.0.0.1', family: 4 }]);
  });

  test('a DNS answer that changes (public, then 127.0.0.1) is checked again: the second resolution is refused', async () => {
    const dns = scriptedResolver([['52.216.10.1'], ['127.0.0.1']]);
    const policy = tenantPolicy([], dns);
    assert.deepEqual((await lookupOnce(policy, 'rebind.example')).address, [{ address: '52.216.10.1', family: 4 }]);
    const second = await lookupOnce(policy, 'rebind.example');
    assert.ok(second.err instanceof EndpointRefusedError);
    assert.match(second.err.message, /endpoint rebind\.example resolves to a loopback address/);
    assert.deepEqual(dns.asked, ['rebind.example', 'rebind.example']);
  });

  test('a DNS failure passes through as it is; an empty answer is ENOTFOUND', async () => {
    const failing: EndpointResolver = async () => {
      throw Object.assign(new Error('getaddrinfo ENOTFOUND nowhere.example'), { code: 'ENOTFOUND' });
    };
    assert.equal((await lookupOnce(tenantPolicy([], failing), 'nowhere.example')).err?.message, 'getaddrinfo ENOTFOUND nowhere.example');
    assert.equal(((await lookupOnce(tenantPolicy([], scriptedResolver([[]])), 'empty.example')).err as { code?: string }).code, 'ENOTFOUND');
  });
});

describe('guardAgent on node:https and node:http', () => {
  const get = (url: string, agent: http.Agent) =>
    new Promise<{ status?: number; err?: Error }>((resolve) => {
      const req = (url.startsWith('https:') ? https : http).get(url, { agent, ca: pki.caCert }, (res) => {
        res.resume();
        resolve({ ...(res.statusCode !== undefined && { status: res.statusCode }) });
      });
      req.on('error', (err) => resolve({ err }));
    });

  for (const [url, what] of [
    ['https://10.255.255.1/', 'endpoint 10\\.255\\.255\\.1 is a private address'],
    ['https://169.254.169.254/latest/meta-data/', 'endpoint 169\\.254\\.169\\.254 is a link-local address \\(the cloud metadata service\\)'],
    ['https://[::ffff:a9fe:a9fe]/', 'endpoint ::ffff:a9fe:a9fe is a link-local address \\(the cloud metadata service\\)'],
    ['https://127.0.0.1:1/', 'endpoint 127\\.0\\.0\\.1 is a loopback address'],
    ['https://[::1]:1/', 'endpoint ::1 is a loopback address'],
    ['https://0.0.0.0:1/', 'endpoint 0\\.0\\.0\\.0 is an unspecified address'],
  ] as const) {
    test(`a literal ${url} is refused before any socket exists`, async () => {
      const dns = scriptedResolver([['52.216.10.1']]);
      attempts.length = 0;
      const { err } = await get(url, guardAgent(new https.Agent(), tenantPolicy([], dns), LOCATION));
      assert.ok(err instanceof EndpointRefusedError, inspect(err));
      assert.match(err.message, new RegExp(`^location team-a/minio: ${what}; tenants' locations may not reach it`));
      assert.deepEqual(attempts, []);
      assert.deepEqual(dns.asked, []);
    });
  }

  test('a name resolving to the metadata service: refused at lookup, no connection attempted', async () => {
    attempts.length = 0;
    const dns = scriptedResolver([['169.254.169.254']]);
    const { err } = await get('https://metadata.google.internal/', guardAgent(new https.Agent(), tenantPolicy([], dns), LOCATION));
    assert.ok(err instanceof EndpointRefusedError, inspect(err));
    assert.deepEqual(dns.asked, ['metadata.google.internal']);
    assert.deepEqual(attempts, []);
  });

  test('a plain-HTTP agent of a tenant refuses every connection, without DNS', async () => {
    attempts.length = 0;
    const dns = scriptedResolver([['52.216.10.1']]);
    const { err } = await get('http://s3.example/', guardAgent(new http.Agent(), tenantPolicy([], dns), LOCATION));
    assert.ok(err instanceof EndpointRefusedError, inspect(err));
    assert.match(err.message, /^location team-a\/minio: endpoint http:\/\/s3\.example is not HTTPS/);
    assert.deepEqual(dns.asked, []);
    assert.deepEqual(attempts, []);
  });

  test('an allowlisted loopback endpoint is reached; without a policy the agent is left as it is', async () => {
    const server = await scripted(objectServer);
    assert.equal((await get(`${server.origin}/x`, guardAgent(new https.Agent(), tenantPolicy(['127.0.0.1/32']), LOCATION))).status, 200);
    const plain = new https.Agent();
    assert.equal(guardAgent(plain, undefined, LOCATION), plain);
    assert.ok(!Object.hasOwn(plain, 'createConnection'), 'createConnection is still the prototype\'s');
    assert.equal((await get(`${server.origin}/x`, plain)).status, 200);
    plain.destroy();
  });

  test('endpointRefusal finds the refusal through wrappers that keep only code and message', () => {
    const original = new EndpointRefusedError('location team-a/minio: endpoint x is a private address; ...');
    assert.equal(endpointRefusal(new Error('outer', { cause: original }), LOCATION), original);
    const fetchLike = Object.assign(new Error(`request to https://x/ failed, reason: ${original.message}`), { code: ENDPOINT_REFUSED_CODE });
    const found = endpointRefusal(new Error('gaxios', { cause: fetchLike }), LOCATION);
    assert.ok(found instanceof EndpointRefusedError);
    assert.equal(found.message, original.message);
    assert.equal(endpointRefusal(Object.assign(new Error('x'), { code: 'ECONNREFUSED' }), LOCATION), undefined);
    // Another location's refusal text is not taken for this one's.
    assert.equal(endpointRefusal(fetchLike, 'team-b/other'), undefined);
  });
});

// ---- the adapters ----------------------------------------------------------------------------------

describe('S3 (a tenant location under the policy)', () => {
  let s3rver: S3rverInstance;
  let canary: Scripted;

  before(async () => {
    s3rver = await startS3rver({ tls: { key: pki.key, cert: pki.cert, ca: pki.caCert } });
    closers.push(() => s3rver.stop());
    await s3rver.put(KEY, BODY);
    canary = await scripted(objectServer);
  });

  test('loopback by address → refused, nothing connects', async () => {
    attempts.length = 0;
    const err = await refused(() => stat(s3({ endpoint: canary.origin, policy: tenantPolicy() })));
    assert.equal(
      err.message,
      "location team-a/minio: endpoint 127.0.0.1 is a loopback address; tenants' locations may not reach it " +
        '(allow it with a CIDR in --tenant-endpoint-allow; a host name entry does not allow loopback or link-local addresses)',
    );
    assert.deepEqual(attempts, []);
    assert.equal(canary.connections, 0);
  });

  test('loopback by name (real DNS: localhost) → refused at connect, nothing connects', async () => {
    attempts.length = 0;
    const err = await refused(() => stat(s3({ endpoint: `https://localhost:${canary.port}`, policy: tenantPolicy() })));
    assert.match(err.message, /^location team-a\/minio: endpoint localhost resolves to a loopback address; tenants' locations may not reach it/);
    assert.deepEqual(attempts, []);
    assert.equal(canary.connections, 0);
  });

  test('IPv4-mapped loopback → refused', async () => {
    const err = await refused(() => stat(s3({ endpoint: `https://[::ffff:127.0.0.1]:${canary.port}`, policy: tenantPolicy() })));
    assert.match(err.message, /endpoint ::ffff:7f00:1 is a loopback address/);
    assert.equal(canary.connections, 0);
  });

  test('169.254.169.254, by address or by name → refused, no connection attempted', async () => {
    attempts.length = 0;
    const byAddress = await refused(() => stat(s3({ endpoint: 'https://169.254.169.254', policy: tenantPolicy() })));
    assert.match(byAddress.message, /endpoint 169\.254\.169\.254 is a link-local address \(the cloud metadata service\)/);
    const dns = scriptedResolver([['169.254.169.254']]);
    const byName = await refused(() => stat(s3({ endpoint: 'https://metadata.internal', policy: tenantPolicy([], dns) })));
    assert.match(byName.message, /endpoint metadata\.internal resolves to a link-local address \(the cloud metadata service\)/);
    assert.deepEqual(dns.asked, ['metadata.internal']);
    assert.deepEqual(attempts, []);
  });

  test('a private address (10.255.255.1) → refused without connecting, by address or by name', async () => {
    attempts.length = 0;
    const byAddress = await refused(() => stat(s3({ endpoint: 'https://10.255.255.1:9000', policy: tenantPolicy() })));
    assert.match(byAddress.message, /^location team-a\/minio: endpoint 10\.255\.255\.1 is a private address; tenants' locations may not reach it \(allow it with --tenant-endpoint-allow\)$/);
    const dns = scriptedResolver([['10.255.255.1']]);
    await refused(() => read(s3({ endpoint: 'https://minio.team-a.svc:9000', policy: tenantPolicy([], dns) })));
    assert.deepEqual(attempts, []);
  });

  test('an http:// endpoint → refused with a clear message, user info never accepted nor shown, nothing connects', async () => {
    attempts.length = 0;
    // User info in an endpoint is refused for every location, as every provider's endpoint setting is checked alike.
    assert.throws(
      () => s3({ endpoint: `http://user:pa55word@127.0.0.1:${canary.port}`, policy: tenantPolicy(['127.0.0.1/32']) }),
      (e: unknown) => e instanceof InvalidLocationError && /must not contain user information/.test(e.message) && !/pa55word/.test(e.message),
    );
    const err = await refused(() => stat(s3({ endpoint: `http://127.0.0.1:${canary.port}`, policy: tenantPolicy(['127.0.0.1/32']) })));
    assert.equal(err.message, `location team-a/minio: endpoint http://127.0.0.1:${canary.port} is not HTTPS; tenants' locations must use an https:// endpoint`);
    const named = await refused(() => stat(s3({ endpoint: 'http://s3.example.com', policy: tenantPolicy() })));
    assert.match(named.message, /endpoint http:\/\/s3\.example\.com is not HTTPS/);
    assert.deepEqual(attempts, []);
    assert.equal(canary.connections, 0);
  });

  test('an allowlisted private endpoint works end to end (s3rver over HTTPS, allow 127.0.0.1/32)', async () => {
    const store = s3({ endpoint: s3rver.endpoint, policy: tenantPolicy(['127.0.0.1/32']) }, S3RVER_CREDENTIAL);
    assert.equal((await stat(store)).size, BODY.length);
    assert.deepEqual(await read(store), BODY);
    // A host name entry alone does not open loopback.
    const byName = s3({ endpoint: `https://localhost:${s3rver.port}`, policy: tenantPolicy(['localhost']) }, S3RVER_CREDENTIAL);
    await refused(() => stat(byName));
  });

  test('a DNS answer changing between connections: every connection uses its own checked answer; the rebinding to 127.0.0.1 is refused', async () => {
    // The store the tenant legitimately reaches is on 127.0.0.2 (allowed, standing for a public address);
    // the rebinding target, on the same port of 127.0.0.1, must never see a connection.
    let legit: Scripted | undefined;
    let target: Scripted | undefined;
    for (let i = 0; target === undefined && i < 20; i++) {
      legit = await scripted(objectServer, { host: '127.0.0.2' });
      target = await scripted(objectServer, { host: '127.0.0.1', port: legit.port }).catch(async () => {
        await legit!.close();
        return undefined;
      });
    }
    assert.ok(legit && target, 'no port free on both 127.0.0.1 and 127.0.0.2');
    const dns = scriptedResolver([['127.0.0.2'], ['127.0.0.1']]);
    const store = s3({ endpoint: `https://localhost:${legit.port}`, policy: tenantPolicy(['127.0.0.2/32'], dns) });
    attempts.length = 0;
    assert.equal((await stat(store)).size, BODY.length);
    // The server closed that connection: the next request resolves again and gets 127.0.0.1.
    const err = await refused(() => stat(store));
    assert.match(err.message, /^location team-a\/minio: endpoint localhost resolves to a loopback address/);
    assert.deepEqual(dns.asked, ['localhost', 'localhost'], 'one resolution per connection, and it is the connection\'s own');
    assert.deepEqual(attempts, ['127.0.0.2']);
    assert.equal(legit.connections, 1);
    assert.equal(target.connections, 0);

    // One answer mixing both: the socket only ever tries the allowed address.
    attempts.length = 0;
    const mixed = s3({ endpoint: `https://localhost:${legit.port}`, policy: tenantPolicy(['127.0.0.2/32'], scriptedResolver([['127.0.0.1', '127.0.0.2']])) });
    assert.equal((await stat(mixed)).size, BODY.length);
    assert.deepEqual(attempts, ['127.0.0.2']);
    assert.equal(target.connections, 0);
  });

  test('a redirect (307 to another host, or to the same origin) is never followed, for tenants and admins', async () => {
    const elsewhere = await scripted(objectServer);
    const toOtherHost = await scripted(redirectTo((req) => `https://localhost:${elsewhere.port}${req.url ?? '/'}`));
    const toSameOrigin = await scripted(redirectTo(() => '/velero/other-object'));
    for (const origin of [toOtherHost, toSameOrigin]) {
      for (const policy of [tenantPolicy(['127.0.0.0/8']), undefined]) {
        const before = origin.requests.length;
        const store = s3({ endpoint: origin.origin, policy });
        const err = await failsWith(() => stat(store), StoreUnavailableError);
        assert.match(err.message, /^location team-a\/minio: reading object ".*": the store answered with a redirect \(.*HTTP 307.*\), which is not followed$/);
        await failsWith(() => read(store), StoreUnavailableError);
        assert.equal(origin.requests.length - before, 2, 'one request per call, no second one to the Location');
      }
    }
    assert.equal(elsewhere.connections, 0);
  });

  test('the admin\'s own location (no policy) is not restricted', async () => {
    assert.equal((await stat(s3({ endpoint: canary.origin }))).size, BODY.length);
  });
});

describe('Azure Blob (a tenant location under the policy)', () => {
  let server: Scripted;
  before(async () => {
    server = await scripted(objectServer);
  });

  test('loopback by address, by name, IPv4-mapped; and http:// → refused, nothing connects', async () => {
    attempts.length = 0;
    const literal = await refused(() => stat(azure({ endpoint: `${server.origin}/tenantaccount`, policy: tenantPolicy() })));
    assert.match(literal.message, /^location team-a\/minio: endpoint 127\.0\.0\.1 is a loopback address; tenants' locations may not reach it/);
    const named = await refused(() => read(azure({ endpoint: `https://localhost:${server.port}/tenantaccount`, policy: tenantPolicy() })));
    assert.match(named.message, /^location team-a\/minio: endpoint localhost resolves to a loopback address/);
    await refused(() => stat(azure({ endpoint: `https://[::ffff:127.0.0.1]:${server.port}/tenantaccount`, policy: tenantPolicy() })));
    const plain = await refused(() => stat(azure({ endpoint: `http://127.0.0.1:${server.port}/tenantaccount`, policy: tenantPolicy(['127.0.0.1/32']) })));
    assert.match(plain.message, /^location team-a\/minio: endpoint http:\/\/127\.0\.0\.1:\d+ is not HTTPS/);
    const metadata = await refused(() => stat(azure({ endpoint: 'https://tenantaccount.blob.core.windows.net', policy: tenantPolicy([], scriptedResolver([['169.254.169.254']])) })));
    assert.match(metadata.message, /resolves to a link-local address \(the cloud metadata service\)/);
    assert.deepEqual(attempts, []);
    assert.equal(server.connections, 0);
  });

  test('the default endpoint (storageAccount only) is a public name, still checked when connecting', async () => {
    const dns = scriptedResolver([['10.1.2.3']]);
    const options = base({ endpoint: '', policy: tenantPolicy([], dns) }, 'azure', 'backups', { storageAccount: 'tenantaccount', storageAccountKeyEnvVar: AZURE_KEY_VAR }, AZURE_CREDENTIAL);
    const store = track(new AzureBlobStore(options));
    assert.equal(store.endpoint, 'https://tenantaccount.blob.core.windows.net');
    const err = await refused(() => stat(store));
    assert.match(err.message, /endpoint tenantaccount\.blob\.core\.windows\.net resolves to a private address/);
    assert.deepEqual(dns.asked, ['tenantaccount.blob.core.windows.net']);
  });

  test('the Azure AD authority (activeDirectoryAuthorityURI) is under the same policy: a loopback authority is never contacted', async () => {
    const authority = await scripted(objectServer);
    const blob = await scripted(objectServer, { host: '127.0.0.2' });
    const config = {
      storageAccount: 'tenantaccount',
      storageAccountURI: `${blob.origin}/tenantaccount`,
      useAAD: 'true',
      activeDirectoryAuthorityURI: `https://localhost:${authority.port}`,
    };
    const credential = Buffer.from(
      'AZURE_TENANT_ID=8e2b1a3c-0d4f-4a5b-9c6d-7e8f9a0b1c2d\nAZURE_CLIENT_ID=c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f\n' +
        `AZURE_CLIENT_SECRET=${AZURE_KEY}\nAZURE_CLOUD_NAME=AzurePublicCloud\n`,
    );
    attempts.length = 0;
    const store = track(new AzureBlobStore(base({ endpoint: '', policy: tenantPolicy(['127.0.0.2/32']) }, 'azure', 'backups', config, credential)));
    // MSAL reports any failure to read the authority's metadata without its cause, so the message is its generic one.
    const err = await failsWith(() => stat(store), StoreUnavailableError);
    assert.match(err.message, /cannot read the Azure AD authority's OpenID configuration .*check activeDirectoryAuthorityURI/);
    assert.equal(authority.connections, 0);
    assert.equal(blob.connections, 0);
    assert.ok(!attempts.includes('127.0.0.1'));
  });

  test('an allowlisted loopback endpoint works', async () => {
    const store = azure({ endpoint: `${server.origin}/tenantaccount`, policy: tenantPolicy(['127.0.0.1/32']) });
    assert.equal((await stat(store)).size, BODY.length);
    assert.deepEqual(await read(store), BODY);
  });

  test('a redirect (same origin, or another host) is never followed, for tenants and admins', async () => {
    const elsewhere = await scripted(objectServer);
    const toOtherHost = await scripted(redirectTo((req) => `https://localhost:${elsewhere.port}${req.url ?? '/'}`));
    const toSameOrigin = await scripted(redirectTo(() => '/tenantaccount/backups/other-object'));
    for (const origin of [toSameOrigin, toOtherHost]) {
      for (const policy of [tenantPolicy(['127.0.0.0/8']), undefined]) {
        const before = origin.requests.length;
        const store = azure({ endpoint: `${origin.origin}/tenantaccount`, policy });
        const err = await failsWith(() => stat(store), StoreUnavailableError);
        assert.match(err.message, /^location team-a\/minio: reading object ".*": the store answered with a redirect \(HTTP 307.*\), which is not followed$/);
        await failsWith(() => read(store), StoreUnavailableError);
        assert.equal(origin.requests.length - before, 2, 'one request per call, no second one to the Location');
      }
    }
    assert.equal(elsewhere.connections, 0);
  });
});

describe('GCS (a tenant location under the policy)', () => {
  let server: Scripted;
  let double: GcsJsonApiDouble;
  before(async () => {
    server = await scripted(objectServer);
    double = await GcsJsonApiDouble.start({ tls: { cert: pki.cert, key: pki.key } });
    closers.push(() => double.close());
    double.addServiceAccount(GCS_ACCOUNT.email, GCS_ACCOUNT.publicKeyPem, GCS_ACCOUNT.keyId);
    double.put('bucket-a', KEY, BODY);
  });

  test('loopback by address, by name, IPv4-mapped; and http:// → refused, nothing connects', async () => {
    attempts.length = 0;
    const literal = await refused(() => stat(gcs({ endpoint: server.origin, policy: tenantPolicy() })));
    assert.match(literal.message, /^location team-a\/minio: endpoint 127\.0\.0\.1 is a loopback address; tenants' locations may not reach it/);
    const named = await refused(() => read(gcs({ endpoint: `https://localhost:${server.port}`, policy: tenantPolicy() })));
    assert.match(named.message, /^location team-a\/minio: endpoint localhost resolves to a loopback address/);
    await refused(() => stat(gcs({ endpoint: `https://[::ffff:7f00:1]:${server.port}`, policy: tenantPolicy() })));
    const plain = await refused(() => stat(gcs({ endpoint: `http://127.0.0.1:${server.port}`, policy: tenantPolicy(['127.0.0.1/32']) })));
    assert.match(plain.message, /^location team-a\/minio: endpoint http:\/\/127\.0\.0\.1:\d+ is not HTTPS/);
    assert.deepEqual(attempts, []);
    assert.equal(server.connections, 0);
  });

  test('the default endpoint (storage.googleapis.com) is still checked when connecting', async () => {
    const dns = scriptedResolver([['::1']]);
    const store = track(new GcsStore(base({ endpoint: '', policy: tenantPolicy([], dns) }, 'gcp', 'bucket-a', {}, GCS_ACCOUNT.json)));
    const err = await refused(() => stat(store));
    assert.match(err.message, /endpoint storage\.googleapis\.com resolves to a loopback address/);
    assert.deepEqual(dns.asked, ['storage.googleapis.com']);
  });

  test('an allowlisted loopback endpoint works end to end (the GCS JSON API double over HTTPS)', async () => {
    const store = gcs({ endpoint: double.url, policy: tenantPolicy(['127.0.0.1/32']) });
    assert.equal((await stat(store)).size, BODY.length);
    assert.deepEqual(await read(store), BODY);
  });

  test('a redirect (same origin, or another host) is never followed, for tenants and admins', async () => {
    const elsewhere = await scripted(objectServer);
    const toOtherHost = await scripted(redirectTo((req) => `https://localhost:${elsewhere.port}${req.url ?? '/'}`));
    const toSameOrigin = await scripted(redirectTo(() => '/storage/v1/b/bucket-a/o/other'));
    for (const origin of [toSameOrigin, toOtherHost]) {
      for (const policy of [tenantPolicy(['127.0.0.0/8']), undefined]) {
        const before = origin.requests.length;
        const store = gcs({ endpoint: origin.origin, policy });
        const err = await failsWith(() => stat(store), StoreUnavailableError);
        assert.match(err.message, /^location team-a\/minio: reading object ".*": the store answered with a redirect \(HTTP 307\), which is not followed$/);
        await failsWith(() => read(store), StoreUnavailableError);
        assert.equal(origin.requests.length - before, 2, 'one request per call, no second one to the Location');
      }
    }
    assert.equal(elsewhere.connections, 0);
  });
});

describe('the factory puts tenants\' specs under the policy', () => {
  let server: Scripted;
  let fsRoot: string;
  before(async () => {
    server = await scripted(objectServer);
    fsRoot = await mkdtemp(join(tmpdir(), 'vds-guard-'));
    closers.push(() => rm(fsRoot, { recursive: true, force: true }));
  });

  const spec = (tenant: boolean): StoreSpec => ({
    name: LOCATION,
    provider: 'velero.io/aws',
    bucket: 'velero',
    prefix: '',
    config: { region: 'us-east-1', s3ForcePathStyle: 'true', s3Url: server.origin },
    credential: AWS_CREDENTIAL,
    caBundle: pki.caCert,
    ...(tenant && { tenant: true, allowDefaultCredential: false }),
  });

  test('tenant: true → refused unless allowed; the admin\'s spec is not; the two never share a client', async () => {
    const strict = new DefaultStoreFactory({ fsRoot, timeouts: TIMEOUTS });
    closers.push(async () => strict.close());
    const before = server.connections;
    await refused(async () => stat(await strict.forSpec(spec(true))));
    assert.equal(server.connections, before);
    assert.equal((await stat(await strict.forSpec(spec(false)))).size, BODY.length);

    const allowing = new DefaultStoreFactory({ fsRoot, timeouts: TIMEOUTS, tenantEndpointAllow: ['127.0.0.1/32'] });
    closers.push(async () => allowing.close());
    assert.equal((await stat(await allowing.forSpec(spec(true)))).size, BODY.length);
    assert.equal((await stat(await allowing.forSpec(spec(false)))).size, BODY.length);
    assert.equal(allowing.clientCount, 2);
  });

  test('the resolver seam reaches the tenant\'s connections', async () => {
    const dns = scriptedResolver([['10.9.8.7']]);
    const f = new DefaultStoreFactory({ fsRoot, timeouts: TIMEOUTS, tenantEndpointResolver: dns });
    closers.push(async () => f.close());
    const err = await refused(async () => stat(await f.forSpec({ ...spec(true), config: { ...spec(true).config, s3Url: 'https://minio.team-a.example' } })));
    assert.match(err.message, /endpoint minio\.team-a\.example resolves to a private address/);
    assert.deepEqual(dns.asked, ['minio.team-a.example']);
  });

  test('a bad --tenant-endpoint-allow entry fails the factory at start, naming every bad entry', () => {
    assert.throws(
      () => new DefaultStoreFactory({ fsRoot, tenantEndpointAllow: ['10.0.0.0/8', '10.0.0.1/8', '*'] }),
      /--tenant-endpoint-allow: "10\.0\.0\.1\/8" has bits set.*; --tenant-endpoint-allow: "\*" is neither/,
    );
  });
});

test('no error seen here carries a credential', () => {
  assert.ok(seenErrors.length > 20);
  for (const err of seenErrors) {
    const text = `${inspect(err, { depth: 6 })} ${String((err as Error).message)}`;
    for (const secret of SECRETS) assert.ok(!text.includes(secret), `an error shows a credential: ${text.slice(0, 300)}`);
  }
});

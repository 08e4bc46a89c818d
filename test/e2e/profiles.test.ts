/**
 * Kanister Profiles as sources, through the gateway's real kubernetes-mode wiring (in-process, and the
 * real process with the real curl) against the API test double with Kanister's CRD, s3rver, the GCS
 * wire double and Azurite, all over HTTPS with a test CA the gateway trusts through --ca-bundle:
 * every Profile variant (keyPair and secret credentials, each store), the download semantics (Range,
 * HEAD, ETag/304, 404), the authorization order (no Profile or Secret read before the review), the
 * refused variants with their Status bodies, hostile paths refused before anything is read, and the
 * tenancy attacks (another namespace's Secret, the gateway's own Secrets, the API server or metadata
 * address as endpoint, line breaks in a credential, a prefix that climbs, a huge Profile). Kanister's
 * location Secrets are read against each store too (the source Kanister's repositories use).
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { request as httpRequest } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { setTimeout as sleep } from 'node:timers/promises';
import request from 'supertest';
import { DefaultStoreFactory } from '../../src/stores/factory.ts';
import { credentialFile, kanisterStoreSpec, locationFromSecret } from '../../src/velero/kanister.ts';
import { AZURITE_ACCOUNT, AZURITE_KEY, azuriteWriter, startAzurite } from '../support/azurite.ts';
import type { Azurite } from '../support/azurite.ts';
import { GcsJsonApiDouble, createTestServiceAccount } from '../support/gcs-server.ts';
import { binary } from '../support/http.ts';
import { inProcessGateway } from '../support/in-process.ts';
import type { InProcessGateway } from '../support/in-process.ts';
import { KANISTER_AWS, KANISTER_AZURE, KANISTER_GCP, KANISTER_LOCATION, kanisterProfile, keyPairCredential, secretCredential, secretOf } from '../support/kanister.ts';
import type { ProfileFields } from '../support/kanister.ts';
import { group } from '../support/kube-apiserver/index.ts';
import { NS as OWN, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { curl, startGateway } from '../support/processes.ts';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3rver } from '../support/s3rver.ts';
import type { S3rverInstance } from '../support/s3rver.ts';
import { collect, bodyOf } from '../support/streams.ts';
import { createTestPki } from '../support/test-ca.ts';
import type { TestPki } from '../support/test-ca.ts';

const NS = 'team-a';
const OTHER = 'team-b';
const PREFIX = 'kanister/app';
const KEY = 'artifacts/backup-1/data.bin';
const DATA = randomBytes(100_000);
const OUTSIDE = Buffer.from('outside the prefix\n');
const GCS_BUCKET = 'kanister-gcs';
const CONTAINER = 'kanister';

interface StatusBody {
  kind: string;
  code: number;
  reason: string;
  message: string;
  details?: { group?: string; kind?: string; name?: string };
}
const statusOf = (b: unknown): StatusBody => JSON.parse(Buffer.from(b as Buffer).toString()) as StatusBody;

describe('Kanister Profiles: objects under a Profile', () => {
  let pki: TestPki;
  let s3: S3rverInstance;
  let gcs: GcsJsonApiDouble;
  let azurite: Azurite;
  let fx: KubeFixture;
  let gw: InProcessGateway;
  let caFile: string;
  const tokens = { reader: '', nobody: '' };
  const sa = createTestServiceAccount('kanister@vds-test-project.iam.gserviceaccount.com');

  /** The six variants: each store with a keyPair credential and with a Kanister credential Secret. */
  const variants: Record<string, () => ProfileFields> = {
    's3-keypair': () => ({ location: s3Location(), credential: keyPairCredential('s3-keys', 'aws_access_key_id', 'aws_secret_access_key') }),
    's3-secret': () => ({ location: s3Location(), credential: secretCredential('aws-creds', NS) }),
    // The design document's spellings, read as aliases of Kanister's.
    's3-design-spellings': () => ({ location: s3Location(), credential: secretCredential('aws-creds-design') }),
    'gcs-keypair': () => ({ location: gcsLocation(), credential: keyPairCredential('gcs-keys', 'gcp_project_id', 'gcp_service_key') }),
    'gcs-secret': () => ({ location: gcsLocation(), credential: secretCredential('gcp-creds') }),
    'azure-keypair': () => ({ location: azureLocation(), credential: keyPairCredential('azure-keys', 'azure_storage_account_id', 'azure_storage_key') }),
    'azure-secret': () => ({ location: azureLocation(), credential: secretCredential('azure-creds') }),
  };
  const s3Location = (more: Record<string, unknown> = {}) => ({ type: 's3Compliant', bucket: s3.bucket, endpoint: s3.endpoint, region: 'us-east-1', prefix: PREFIX, ...more });
  const gcsLocation = () => ({ type: 'gcs', bucket: GCS_BUCKET, endpoint: gcs.url, prefix: `/${PREFIX}/` });
  const azureLocation = () => ({ type: 'azure', bucket: CONTAINER, endpoint: azurite.accountUrl(), prefix: PREFIX });
  const s3Keys = { aws_access_key_id: S3RVER_ACCESS_KEY_ID, aws_secret_access_key: S3RVER_SECRET_ACCESS_KEY };

  before(async () => {
    pki = await createTestPki('vds kanister stores CA');
    const tls = { key: pki.key, cert: pki.cert };
    [s3, gcs, azurite, fx] = await Promise.all([
      startS3rver({ tls: { ...tls, ca: pki.caCert } }),
      GcsJsonApiDouble.start({ tls }),
      startAzurite({ tls }),
      kubeFixture({ kanister: true, namespaces: ['default', 'kube-system', OWN, NS, OTHER] }),
    ]);
    await s3.put(`${PREFIX}/${KEY}`, DATA);
    await s3.put('outside.txt', OUTSIDE);
    gcs.addServiceAccount(sa.email, sa.publicKeyPem, sa.keyId);
    gcs.put(GCS_BUCKET, `${PREFIX}/${KEY}`, DATA);
    const writer = azuriteWriter(azurite.accountUrl(), AZURITE_ACCOUNT, AZURITE_KEY, pki.caCert);
    await writer.getContainerClient(CONTAINER).create();
    await writer.getContainerClient(CONTAINER).getBlockBlobClient(`${PREFIX}/${KEY}`).uploadData(DATA);

    const api = fx.api;
    api.put(secretOf(NS, 's3-keys', s3Keys));
    api.put(secretOf(NS, 'aws-creds', s3Keys, KANISTER_AWS));
    api.put(secretOf(NS, 'aws-creds-design', { 'access-key': S3RVER_ACCESS_KEY_ID, 'secret-acccess-key': S3RVER_SECRET_ACCESS_KEY }, KANISTER_AWS));
    api.put(secretOf(NS, 'gcs-keys', { gcp_project_id: 'vds-test-project', gcp_service_key: sa.json }));
    api.put(secretOf(NS, 'gcp-creds', { gcp_project_id: 'vds-test-project', 'service-account.json': sa.json }, KANISTER_GCP));
    api.put(secretOf(NS, 'azure-keys', { azure_storage_account_id: AZURITE_ACCOUNT, azure_storage_key: AZURITE_KEY }));
    api.put(secretOf(NS, 'azure-creds', { azure_storage_account_id: AZURITE_ACCOUNT, azure_storage_key: AZURITE_KEY }, KANISTER_AZURE));
    for (const [name, fields] of Object.entries(variants)) api.put(kanisterProfile(NS, name, fields()));

    tokens.reader = api.tokens.user('kanister-reader', ['team-a-kanister']);
    tokens.nobody = api.tokens.user('nobody', []);
    for (const ns of [NS, OWN]) api.rbac.grant(group('team-a-kanister'), [{ apiGroups: ['cr.kanister.io'], resources: ['profiles/objects'], verbs: ['get'] }], ns);
    caFile = join(fx.dir, 'stores-ca.pem');
    await writeFile(caFile, pki.caCert);
    gw = await inProcessGateway(fx.args('--watch-namespaces', `${NS},${OTHER}`, '--tenant-endpoint-allow', '127.0.0.1/32', '--ca-bundle', caFile));
  });

  after(async () => {
    await gw?.stop();
    await Promise.all([s3?.stop(), gcs?.close(), azurite?.stop()]);
    await fx?.close();
  });

  const url = (profile: string, path = KEY, ns = NS): string => `/v1/namespaces/${ns}/profiles/${profile}/objects/${path}`;
  const get = (path: string, token = tokens.reader, app = gw.app) => binary(request(app).get(path).set('Authorization', `Bearer ${token}`));
  const s3Requests = async (): Promise<number> => {
    await s3.flush();
    return s3.requests.length;
  };

  test('every Profile variant streams its object: whole, a range, HEAD, ETag and 304, a missing object', async () => {
    for (const profile of Object.keys(variants)) {
      const whole = await get(url(profile));
      assert.equal(whole.status, 200, `${profile}: ${String(whole.body)}`);
      assert.deepEqual(whole.body, DATA, profile);
      assert.equal(whole.headers['content-length'], String(DATA.length));
      assert.match(whole.headers['content-disposition'] ?? '', /filename="?data\.bin"?$/);
      const etag = whole.headers.etag;
      assert.ok(etag, `${profile} sends an ETag`);

      const part = await binary(request(gw.app).get(url(profile)).set('Authorization', `Bearer ${tokens.reader}`).set('Range', 'bytes=100-1099'));
      assert.equal(part.status, 206, profile);
      assert.equal(part.headers['content-range'], `bytes 100-1099/${DATA.length}`);
      assert.deepEqual(part.body, DATA.subarray(100, 1100));

      const head = await request(gw.app).head(url(profile)).set('Authorization', `Bearer ${tokens.reader}`);
      assert.equal(head.status, 200, profile);
      assert.equal(head.headers['content-length'], String(DATA.length));
      assert.equal(head.headers.etag, etag);

      const cached = await request(gw.app).get(url(profile)).set('Authorization', `Bearer ${tokens.reader}`).set('If-None-Match', etag);
      assert.equal(cached.status, 304, profile);

      const beyond = await request(gw.app).get(url(profile)).set('Authorization', `Bearer ${tokens.reader}`).set('Range', `bytes=${DATA.length + 10}-`);
      assert.equal(beyond.status, 416, profile);

      const missing = await get(url(profile, 'artifacts/no-such-object'));
      assert.equal(missing.status, 404, profile);
      assert.equal(statusOf(missing.body).reason, 'NotFound');
    }
  });

  test('the audit line names the Profile, the subresource and the path', async () => {
    const res = await get(url('s3-keypair'));
    const id = res.headers['x-request-id'];
    // The line is written when the server's side of the response closes, which may trail the client's end.
    for (let i = 0; i < 100 && !gw.logs.some((l) => l.audit === 'download' && l.requestId === id); i++) await sleep(10);
    const line = gw.logs.find((l) => l.audit === 'download' && l.requestId === id);
    assert.ok(line);
    assert.deepEqual([line.namespace, line.target, line.artifact, line.path, line.user, line.status], [NS, 'profiles/s3-keypair', 'objects', KEY, 'kanister-reader', 200]);
  });

  test('without get on profiles/objects: 403, and no Profile, Secret or store is read before the review', async () => {
    fx.api.calls.clear();
    const before = await s3Requests();
    for (const profile of ['s3-keypair', 'no-such-profile']) {
      const res = await get(url(profile), tokens.nobody);
      assert.equal(res.status, 403, String(res.body));
      const s = statusOf(res.body);
      assert.match(s.message, /cannot get resource "profiles\/objects" in API group "cr.kanister.io"/);
    }
    assert.equal(fx.api.calls.count({ resource: 'profiles' }), 0, 'no Profile read');
    assert.equal(fx.api.calls.count({ resource: 'secrets' }), 0, 'no Secret read');
    assert.equal(fx.api.calls.count({ resource: 'subjectaccessreviews' }), 2);
    assert.equal(await s3Requests(), before, 'no store request');
  });

  test('a missing Profile is a 404 Status naming it in cr.kanister.io', async () => {
    const res = await get(url('no-such-profile'));
    assert.equal(res.status, 404);
    const s = statusOf(res.body);
    assert.deepEqual(s.details, { group: 'cr.kanister.io', kind: 'profiles', name: 'no-such-profile' });
    assert.match(s.message, /profiles\.cr\.kanister\.io "no-such-profile" not found in namespace "team-a"/);
  });

  test('an object outside the prefix cannot be named, and GET|HEAD only', async () => {
    // s3rver holds outside.txt at the bucket root; under the Profile it is PREFIX/outside.txt.
    assert.equal((await get(url('s3-keypair', 'outside.txt'))).status, 404);
    const post = await request(gw.app).post(url('s3-keypair')).set('Authorization', `Bearer ${tokens.reader}`);
    assert.equal(post.status, 405);
    assert.equal(post.headers.allow, 'GET, HEAD');
  });

  /** A raw request: the path exactly as written (no client normalizes `..` or `%2e%2e` away). */
  async function raw(path: string, token = tokens.reader): Promise<{ status: number; body: StatusBody }> {
    const server = gw.app.listen(0, '127.0.0.1');
    await new Promise((r) => server.once('listening', r));
    try {
      const { port } = server.address() as AddressInfo;
      return await new Promise((resolve, reject) => {
        const req = httpRequest({ host: '127.0.0.1', port, path, headers: { Authorization: `Bearer ${token}` } }, (res) => {
          void collect(res).then((b) => resolve({ status: res.statusCode ?? 0, body: statusOf(b) }), reject);
        });
        req.on('error', reject);
        req.end();
      });
    } finally {
      server.closeAllConnections();
      server.close();
    }
  }

  test('hostile paths are refused with 400 before any Profile, Secret or store is read', async () => {
    fx.api.calls.clear();
    const before = await s3Requests();
    const base = `/v1/namespaces/${NS}/profiles/s3-keypair/objects/`;
    for (const path of ['..', '../outside.txt', '%2e%2e/outside.txt', 'a/%2E%2E/%2e%2e/outside.txt', 'a/../../outside.txt', './x', 'a/./x', 'a//x', 'a/', 'a%2Fb', 'a%00b', 'a%0Ab', 'a%5Cb', `${'x'.repeat(1100)}`, `${'a/'.repeat(600)}x`]) {
      const res = await raw(base + path);
      assert.equal(res.status, 400, `${path}: ${JSON.stringify(res.body)}`);
      assert.equal(res.body.reason, 'BadRequest', path);
    }
    for (const path of [`/v1/namespaces/Team_A/profiles/s3-keypair/objects/x`, `/v1/namespaces/${NS}/profiles/Bad..Name/objects/x`]) {
      assert.equal((await raw(path)).status, 400, path);
    }
    assert.equal(fx.api.calls.count({ resource: 'profiles' }), 0);
    assert.equal(fx.api.calls.count({ resource: 'secrets' }), 0);
    assert.equal(fx.api.calls.count({ resource: 'subjectaccessreviews' }), 0, 'parsing precedes the review');
    assert.equal(await s3Requests(), before, 'no store request');
  });

  test('refused Profiles: each answers a Status that names the problem, never a secret value', async () => {
    const api = fx.api;
    const s3Cred = keyPairCredential('s3-keys', 'aws_access_key_id', 'aws_secret_access_key');
    api.put(secretOf(NS, 'line-break', { aws_access_key_id: S3RVER_ACCESS_KEY_ID, aws_secret_access_key: 'x\nrole_arn = arn:aws:iam::1:role/admin' }, KANISTER_AWS));
    api.put(secretOf(NS, 'with-role', { ...s3Keys, role: 'arn:aws:iam::1:role/r' }, KANISTER_AWS));
    api.put(secretOf(NS, 'opaque', s3Keys));
    api.put(secretOf(OTHER, 's3-keys', s3Keys));
    const cases: [name: string, fields: ProfileFields, code: number, message: RegExp][] = [
      ['unknown-type', { location: { type: 'ftp', bucket: 'b' }, credential: s3Cred }, 502, /location type "ftp" is not one of s3, s3Compliant, gcs, azure/],
      ['no-bucket', { location: { ...s3Location(), bucket: '' }, credential: s3Cred }, 502, /the location has no bucket/],
      ['no-endpoint', { location: { ...s3Location(), endpoint: undefined }, credential: s3Cred }, 502, /s3Compliant location needs an endpoint/],
      ['kopia-location', { location: { type: 'kopia' }, credential: { type: 'kopia', kopiaServerSecret: {} } }, 502, /kopia-server Profile/],
      ['kopia-credential', { location: s3Location(), credential: { type: 'kopia', kopiaServerSecret: {} } }, 502, /a kopia credential names a Kopia repository server/],
      ['unknown-credential', { location: s3Location(), credential: { type: 'token' } }, 502, /credential type "token" is not one of keyPair, secret/],
      ['keypair-no-fields', { location: s3Location(), credential: { type: 'keyPair', keyPair: { secret: { name: 's3-keys' } } } }, 502, /needs idField and secretField/],
      ['wrong-secret-type', { location: s3Location(), credential: secretCredential('opaque') }, 502, /has type "Opaque"; a s3Compliant location takes a Secret of type secrets\.kanister\.io\/aws/],
      ['gcp-secret-for-s3', { location: s3Location(), credential: secretCredential('gcp-creds') }, 502, /has type "secrets\.kanister\.io\/gcp"/],
      ['aws-role', { location: s3Location(), credential: secretCredential('with-role') }, 502, /an AWS role to assume is not supported/],
      ['line-break', { location: s3Location(), credential: secretCredential('line-break') }, 502, /aws_secret_access_key must be one line/],
      ['prefix-climbs', { location: s3Location({ prefix: 'kanister/../..' }), credential: s3Cred }, 502, /prefix contains a "\.\." segment/],
      ['huge-prefix', { location: s3Location({ prefix: 'p/'.repeat(2000) }), credential: s3Cred }, 502, /prefix is longer than 1024 bytes/],
      ['huge-bucket', { location: s3Location({ bucket: 'b'.repeat(100_000) }), credential: s3Cred }, 502, /bucket must be one line of printable characters/],
      ['missing-secret', { location: s3Location(), credential: secretCredential('no-such-secret') }, 404, /secret "no-such-secret" not found in namespace "team-a"/],
      ['missing-key', { location: s3Location(), credential: keyPairCredential('s3-keys', 'aws_access_key_id', 'no_such_key') }, 404, /secret "s3-keys" has no key "no_such_key"/],
      ['other-namespace', { location: s3Location(), credential: keyPairCredential('s3-keys', 'aws_access_key_id', 'aws_secret_access_key', OTHER) }, 403, /refers to namespace "team-b"; only Secrets in "team-a" are used/],
      ['other-namespace-secret', { location: s3Location(), credential: secretCredential('aws-creds', OTHER) }, 403, /refers to namespace "team-b"/],
      ['metadata-endpoint', { location: s3Location({ endpoint: 'https://169.254.169.254' }), credential: s3Cred }, 403, /link-local|metadata/],
      ['plain-http', { location: s3Location({ endpoint: s3.endpoint.replace('https:', 'http:') }), credential: s3Cred }, 403, /not HTTPS/],
    ];
    fx.api.calls.clear();
    const before = await s3Requests();
    for (const [name, fields, code, message] of cases) {
      api.put(kanisterProfile(NS, name, fields));
      const res = await get(url(name));
      const s = statusOf(res.body);
      assert.equal(res.status, code, `${name}: ${s.message.slice(0, 300)}`);
      assert.equal(s.kind, 'Status');
      assert.match(s.message, message, name);
      assert.ok(s.message.length < 1000, `${name}: the message stays short`);
      for (const secret of [S3RVER_SECRET_ACCESS_KEY + '\n', 'role_arn', 'arn:aws:iam']) assert.ok(!s.message.includes(secret), `${name}: no secret value in the message`);
    }
    // Other namespaces' Secrets were never read; the refusals happened before any store request.
    assert.equal(fx.api.calls.count({ resource: 'secrets', namespace: OTHER }), 0);
    assert.equal(await s3Requests(), before);
    assert.ok(!gw.rawLog().includes('role/admin'), 'the hostile value never reaches the log');
  });

  test("a Profile in the gateway's own namespace never reads the gateway's Secrets", async () => {
    fx.api.put(secretOf(OWN, 'velero-repo-credentials', { 'repository-password': 'static-passw0rd' }));
    fx.api.put(kanisterProfile(OWN, 'borrow', { location: s3Location(), credential: keyPairCredential('velero-repo-credentials', 'repository-password', 'repository-password') }));
    fx.api.calls.clear();
    const res = await get(url('borrow', KEY, OWN));
    assert.equal(res.status, 403);
    assert.match(statusOf(res.body).message, /Profiles in the gateway's own namespace "velero" may not use its Secrets/);
    assert.equal(fx.api.calls.count({ resource: 'secrets' }), 0);
  });

  test('a namespace the gateway does not serve answers 404, Profile or not', async () => {
    fx.api.put(kanisterProfile('default', 's3-keypair', variants['s3-keypair']!()));
    fx.api.rbac.grant(group('team-a-kanister'), [{ apiGroups: ['cr.kanister.io'], resources: ['profiles/objects'], verbs: ['get'] }], 'default');
    const res = await get(url('s3-keypair', KEY, 'default'));
    assert.equal(res.status, 404);
    assert.match(statusOf(res.body).message, /namespace "default" is not served/);
  });

  test('without the store CA: untrusted unless skipSSLVerify; the API server and loopback need the allowlist', async () => {
    fx.api.put(kanisterProfile(NS, 's3-skip-verify', { ...variants['s3-keypair']!(), skipSSLVerify: true }));
    fx.api.put(kanisterProfile(NS, 'api-server', { location: s3Location({ endpoint: fx.api.url }), credential: keyPairCredential('s3-keys', 'aws_access_key_id', 'aws_secret_access_key') }));
    const strict = await inProcessGateway(fx.args('--watch-namespaces', NS, '--tenant-endpoint-allow', '127.0.0.1/32'));
    const closed = await inProcessGateway(fx.args('--watch-namespaces', NS));
    try {
      const untrusted = await get(url('s3-keypair'), tokens.reader, strict.app);
      assert.equal(untrusted.status, 502, String(untrusted.body));
      assert.match(statusOf(untrusted.body).message, /TLS certificate is not trusted/);
      const skipped = await get(url('s3-skip-verify'), tokens.reader, strict.app);
      assert.equal(skipped.status, 200, String(skipped.body));
      assert.deepEqual(skipped.body, DATA);
      assert.ok(strict.logs.some((l) => l.msg === 'TLS verification towards this location is disabled (insecureSkipTLSVerify)'), 'the operator is warned');
      for (const profile of ['api-server', 's3-keypair']) {
        const res = await get(url(profile), tokens.reader, closed.app);
        assert.equal(res.status, 403, `${profile}: ${String(res.body)}`);
        assert.match(statusOf(res.body).message, /loopback/);
      }
    } finally {
      await strict.stop();
      await closed.stop();
    }
  });

  test('Kanister location Secrets (secrets.kanister.io/storage-location) read each store', async () => {
    const factory = new DefaultStoreFactory({ fsRoot: fx.fsRoot, tenantEndpointAllow: ['127.0.0.1/32'], installCaBundle: pki.caCert });
    const locations: [string, Record<string, string>, Record<string, string | Uint8Array>][] = [
      ['s3', { type: 's3Compliant', bucket: s3.bucket, endpoint: s3.endpoint.replace('https://', ''), region: 'us-east-1', prefix: PREFIX }, s3Keys],
      // The design document's `path` for the prefix.
      ['gcs', { type: 'gcs', bucket: GCS_BUCKET, endpoint: gcs.url, path: PREFIX }, { gcp_project_id: 'vds-test-project', 'service-account.json': sa.json }],
      ['azure', { type: 'azure', bucket: CONTAINER, endpoint: azurite.accountUrl(), prefix: PREFIX }, { azure_storage_account_id: AZURITE_ACCOUNT, azure_storage_key: AZURITE_KEY }],
    ];
    try {
      for (const [what, locationData, credentialData] of locations) {
        // As the API would hand them over: a location Secret and a credential Secret, both in the tenant's namespace.
        const location = secretOf(NS, `${what}-location`, locationData, KANISTER_LOCATION);
        const where = `${NS}/${what}-location`;
        const decoded = Object.fromEntries(Object.entries(location.data as Record<string, string>).map(([k, v]) => [k, Buffer.from(v, 'base64')]));
        const loc = locationFromSecret(decoded, where);
        const spec = kanisterStoreSpec(where, loc, credentialFile(loc, credentialData, where), credentialData, true, where);
        const store = await factory.forSpec(spec);
        const signal = AbortSignal.timeout(10_000);
        assert.equal((await store.stat(KEY, { signal })).size, DATA.length, what);
        assert.deepEqual(await collect(bodyOf(await store.get(KEY, { signal, range: { start: 10, end: 19 } }))), DATA.subarray(10, 20), what);
      }
    } finally {
      factory.close();
    }
  });

  test('the real gateway process and the real curl', async () => {
    const proc = await startGateway(fx.args('--watch-namespaces', NS, '--tenant-endpoint-allow', '127.0.0.1/32', '--ca-bundle', caFile, '--tls-extra-sans', '127.0.0.1,localhost'));
    try {
      const cacert = await fx.caFile();
      const auth = ['--cacert', cacert, '-H', `Authorization: Bearer ${tokens.reader}`];
      const whole = await curl([...auth, '--fail', `${proc.url}${url('azure-secret')}`]);
      assert.equal(whole.code, 0, whole.stderr);
      assert.deepEqual(whole.stdout, DATA);
      const range = await curl([...auth, '--fail', '-r', '0-99', `${proc.url}${url('gcs-keypair')}`]);
      assert.deepEqual(range.stdout, DATA.subarray(0, 100));
      const head = await curl([...auth, '-I', `${proc.url}${url('s3-secret')}`]);
      assert.match(head.stdout.toString(), /^HTTP\/[\d.]+ 200/);
      assert.match(head.stdout.toString(), new RegExp(`content-length: ${DATA.length}`, 'i'));
      const escape = await curl([...auth, '--path-as-is', '-w', '\n%{http_code}', `${proc.url}/v1/namespaces/${NS}/profiles/s3-keypair/objects/a/../../../outside.txt`]);
      assert.equal(escape.stdout.toString().split('\n').at(-1), '400');
    } finally {
      assert.equal(await proc.stop(), 0);
    }
  });
});

describe('Kanister Profiles in local mode', () => {
  test('there are none: the objects route answers the generic 404', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-local-profiles-'));
    const gw = await inProcessGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state')]);
    try {
      const token = (await readFile(gw.config.tokenFile, 'utf8')).split(',')[0]!;
      const res = await request(gw.app).get('/v1/namespaces/velero/profiles/p/objects/x').set('Authorization', `Bearer ${token}`);
      assert.equal(res.status, 404);
      assert.match((res.body as StatusBody).message, /could not find the requested resource/);
    } finally {
      await gw.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

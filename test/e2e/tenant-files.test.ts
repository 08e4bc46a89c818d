/**
 * Two attacks of a security review replayed end to end: the real gateway process in kubernetes mode
 * (the Kubernetes API test double), the real curl, tenants' BSLs in team-a whose endpoints the
 * gateway may reach (--tenant-endpoint-allow 127.0.0.1/32), so that the setting is the only reason
 * for a refusal.
 * - SSE-C: `customerKeyEncryptionFile: /etc/passwd` once sent `root:x:0:0:` to the tenant's endpoint
 *   in the SSE-C header. Now 403, and s3rver (which records every request) receives none.
 * - `AZURE_CLIENT_CERTIFICATE_PATH=/dev/zero` once took the gateway from 241 to 828 MiB per request.
 *   Now 403, nothing connects, and the gateway's peak RSS (VmHWM) does not move.
 * A tripwire FIFO stands for "any file" in both: it shows the gateway never read it. The admin's own
 * BSL still reads its SSE-C key file, and is refused a device with a clear 502.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { group } from '../support/kube-apiserver/index.ts';
import { NS, kubeFixture, velero } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { curl, startGateway } from '../support/processes.ts';
import type { CurlResult, GatewayProcess } from '../support/processes.ts';
import { S3RVER_ACCESS_KEY_ID, S3RVER_SECRET_ACCESS_KEY, startS3rver } from '../support/s3rver.ts';
import type { S3rverInstance } from '../support/s3rver.ts';
import { createTestPki } from '../support/test-ca.ts';
import { tripwire } from '../support/tripwire.ts';
import type { Tripwire } from '../support/tripwire.ts';

const TENANT = 'team-a';
const b64 = (s: string | Buffer): string => Buffer.from(s).toString('base64');
const SSE_C_KEY = Buffer.from('0123456789abcdef0123456789ABCDEF');

interface Status {
  kind: string;
  apiVersion: string;
  status: string;
  reason: string;
  code: number;
  message: string;
}

/** Peak resident set size of a process, in KiB (VmHWM: the high-water mark, so a transient spike counts). */
async function peakRssKiB(pid: number): Promise<number> {
  const m = /^VmHWM:\s+(\d+) kB$/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'));
  assert.ok(m, 'VmHWM in /proc/<pid>/status');
  return Number(m[1]);
}

describe('tenants’ file settings end to end (real process, curl)', () => {
  let fx: KubeFixture;
  let gw: GatewayProcess;
  let s3: S3rverInstance;
  let cacert = '';
  let dir = '';
  let token = '';
  let wire: Tripwire;
  /** Azure's blob endpoint and authority for team-a: a listener that only counts connections. */
  let probe: Server;
  let connections = 0;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-tenant-files-'));
    wire = await tripwire(join(dir, 'tripwire'));
    await writeFile(join(dir, 'sse-c.key'), SSE_C_KEY);
    const pki = await createTestPki();
    s3 = await startS3rver({ tls: { key: pki.key, cert: pki.cert, ca: pki.caCert } });
    await s3.put('team-a/backups/plain/plain-logs.gz', Buffer.from('tenant log\n'));
    await s3.put('admin/backups/ssec/ssec-logs.gz', Buffer.from('admin log\n'));
    probe = createServer((socket) => {
      connections++;
      socket.destroy();
    });
    probe.listen(0, '127.0.0.1');
    await once(probe, 'listening');
    const probeOrigin = `https://127.0.0.1:${(probe.address() as AddressInfo).port}`;

    fx = await kubeFixture({ namespaces: ['default', 'kube-system', NS, TENANT] });
    const api = fx.api;
    const secret = (ns: string, name: string, text: string): void => {
      api.put({ apiVersion: 'v1', kind: 'Secret', metadata: { name, namespace: ns }, data: { cloud: b64(text) } });
    };
    const awsCreds = `[default]\naws_access_key_id = ${S3RVER_ACCESS_KEY_ID}\naws_secret_access_key = ${S3RVER_SECRET_ACCESS_KEY}\n`;
    secret(TENANT, 's3', awsCreds);
    secret(NS, 's3', awsCreds);
    const aad = 'AZURE_TENANT_ID=8e2b1a3c-0d4f-4a5b-9c6d-7e8f9a0b1c2d\nAZURE_CLIENT_ID=c1d2e3f4-a5b6-4c7d-8e9f-0a1b2c3d4e5f\nAZURE_CLOUD_NAME=AzurePublicCloud\n';
    secret(TENANT, 'azure-zero', `${aad}AZURE_CLIENT_CERTIFICATE_PATH=/dev/zero\n`);
    secret(TENANT, 'azure-wire', `${aad}AZURE_CLIENT_CERTIFICATE_PATH=${wire.path}\n`);
    secret(TENANT, 'azure-secret', `${aad}AZURE_CLIENT_SECRET=not-a-real-secret\n`);

    const s3Bsl = (ns: string, name: string, prefix: string, extra: Record<string, string>) =>
      velero('BackupStorageLocation', name, {
        provider: 'aws',
        objectStorage: { bucket: s3.bucket, prefix, caCert: b64(pki.caCert) },
        config: { region: 'us-east-1', s3Url: s3.endpoint, s3ForcePathStyle: 'true', ...extra },
        credential: { name: 's3', key: 'cloud' },
      }, ns);
    api.put(s3Bsl(TENANT, 's3-passwd', TENANT, { customerKeyEncryptionFile: '/etc/passwd' }));
    api.put(s3Bsl(TENANT, 's3-wire', TENANT, { customerKeyEncryptionFile: wire.path }));
    api.put(s3Bsl(TENANT, 's3-plain', TENANT, {}));
    api.put(s3Bsl(NS, 's3-admin', 'admin', { customerKeyEncryptionFile: join(dir, 'sse-c.key') }));
    api.put(s3Bsl(NS, 's3-admin-zero', 'admin', { customerKeyEncryptionFile: '/dev/zero' }));
    for (const name of ['azure-zero', 'azure-wire', 'azure-secret']) {
      api.put(velero('BackupStorageLocation', name, {
        provider: 'velero.io/azure',
        objectStorage: { bucket: 'backups', caCert: b64(pki.caCert) },
        config: { storageAccount: 'tenantacct', storageAccountURI: `${probeOrigin}/tenantacct`, useAAD: 'true', activeDirectoryAuthorityURI: probeOrigin },
        credential: { name, key: 'cloud' },
      }, TENANT));
    }
    for (const [ns, backup, bsl] of [
      [TENANT, 'passwd', 's3-passwd'], [TENANT, 'wire', 's3-wire'], [TENANT, 'plain', 's3-plain'],
      [TENANT, 'zero', 'azure-zero'], [TENANT, 'azure-wire', 'azure-wire'], [TENANT, 'secret', 'azure-secret'],
      [NS, 'ssec', 's3-admin'], [NS, 'ssec-zero', 's3-admin-zero'],
    ] as const) {
      api.put(velero('Backup', backup, { storageLocation: bsl }, ns));
    }
    token = api.tokens.user('tenant-user', ['team-a-members']);
    api.rbac.grant(group('team-a-members'), [{ apiGroups: ['velero.io'], resources: ['backups/log'], verbs: ['get'] }], TENANT);

    gw = await startGateway(fx.args('--watch-namespaces', TENANT, '--tenant-endpoint-allow', '127.0.0.1/32'));
    cacert = await fx.caFile();
  });
  after(async () => {
    await gw?.stop();
    await fx?.close();
    await s3?.stop();
    probe?.close();
    await wire?.close();
    await rm(dir, { recursive: true, force: true });
  });

  const get = (ns: string, backup: string, bearer = token): Promise<CurlResult> =>
    curl(['--cacert', cacert, '-H', `Authorization: Bearer ${bearer}`, '-w', '\n%{http_code}', `${gw.url}/v1/namespaces/${ns}/backups/${backup}/log`]);
  const split = (r: CurlResult): { code: number; body: string } => {
    const text = r.stdout.toString();
    const nl = text.lastIndexOf('\n');
    return { code: Number(text.slice(nl + 1)), body: text.slice(0, nl) };
  };
  /** A 403 Status naming the location and the setting, never the value. */
  function assertRefused(r: CurlResult, location: string, setting: string, value: string): void {
    const { code, body } = split(r);
    assert.equal(code, 403, body);
    const status = JSON.parse(body) as Status;
    assert.deepEqual([status.kind, status.apiVersion, status.status, status.reason, status.code], ['Status', 'v1', 'Failure', 'Forbidden', 403]);
    assert.ok(status.message.startsWith(`location ${location}: ${setting} is refused for locations outside the gateway's namespace`), status.message);
    assert.ok(!body.includes(value), 'the value is never shown');
  }

  test('SSE-C: a tenant BSL with customerKeyEncryptionFile /etc/passwd → 403 and no request reaches the store', async () => {
    await s3.flush();
    const from = s3.requests.length;
    const r = await get(TENANT, 'passwd');
    assertRefused(r, 'team-a/s3-passwd', 'config customerKeyEncryptionFile', '/etc/passwd');
    assert.ok(!r.stdout.toString().includes('root:'));
    assertRefused(await get(TENANT, 'wire'), 'team-a/s3-wire', 'config customerKeyEncryptionFile', wire.path);
    await s3.flush();
    assert.deepEqual(s3.requests.slice(from), [], 'the store received no request');
    assert.ok(await wire.intact(), 'the gateway never read the file');

    // Control: the same BSL without the setting is served, and s3rver records the requests.
    const plain = split(await get(TENANT, 'plain'));
    assert.equal(plain.code, 200, plain.body);
    assert.equal(plain.body, 'tenant log\n');
    await s3.flush();
    const sent = s3.requests.slice(from);
    assert.ok(sent.length > 0, 'the control reached the store');
    for (const req of sent) assert.deepEqual(req.headers, {}, 'no SSE-C header from a tenant');
  });

  test('/dev/zero: AZURE_CLIENT_CERTIFICATE_PATH → 403, four at once, nothing connects, the peak RSS does not move', async () => {
    // Warm up the paths a request takes (token and access reviews, the object cache) before measuring.
    split(await get(TENANT, 'zero'));
    const before = await peakRssKiB(gw.proc.pid!);
    const from = connections;
    const results = await Promise.all([1, 2, 3, 4].map(() => get(TENANT, 'zero')));
    for (const r of results) assertRefused(r, 'team-a/azure-zero', 'Azure credential variable AZURE_CLIENT_CERTIFICATE_PATH', '/dev/zero');
    assertRefused(await get(TENANT, 'azure-wire'), 'team-a/azure-wire', 'Azure credential variable AZURE_CLIENT_CERTIFICATE_PATH', wire.path);
    const afterKiB = await peakRssKiB(gw.proc.pid!);
    console.log(`gateway peak RSS (VmHWM) before the four /dev/zero requests: ${Math.round(before / 1024)} MiB, after: ${Math.round(afterKiB / 1024)} MiB (the review measured +587 MiB for one)`);
    assert.ok(afterKiB - before < 32 * 1024, `peak RSS grew by ${afterKiB - before} KiB`);
    assert.equal(connections, from, 'no connection to the tenant’s endpoint or authority');
    assert.ok(await wire.intact(), 'the gateway never read the file');

    // Control: the same location with an inline secret does connect (the probe counts), and fails upstream.
    const secret = split(await get(TENANT, 'secret'));
    assert.equal(secret.code, 502, secret.body);
    assert.ok(connections > from, 'the control connected to the probe');
  });

  test("the admin's own BSL reads its SSE-C key file; a device there is a clear 502 naming the setting", async () => {
    await s3.flush();
    const from = s3.requests.length;
    const ok = split(await get(NS, 'ssec', fx.tokens.bob));
    assert.equal(ok.code, 200, ok.body);
    assert.equal(ok.body, 'admin log\n');
    await s3.flush();
    const sent = s3.requests.slice(from);
    assert.ok(sent.length > 0 && sent.every((q) => q.headers['x-amz-server-side-encryption-customer-key'] === SSE_C_KEY.toString('base64')));

    const { code, body } = split(await get(NS, 'ssec-zero', fx.tokens.bob));
    assert.equal(code, 502, body);
    const status = JSON.parse(body) as Status;
    assert.equal(status.reason, 'BadGateway');
    assert.equal(status.message, 'location velero/s3-admin-zero: config customerKeyEncryptionFile names a character device, not a regular file');
  });

  test('no credential value reaches the gateway log', () => {
    assert.ok(!gw.output().includes(S3RVER_SECRET_ACCESS_KEY + '\n'));
    assert.ok(!gw.output().includes('not-a-real-secret'));
    assert.ok(!gw.output().includes(token));
  });
});

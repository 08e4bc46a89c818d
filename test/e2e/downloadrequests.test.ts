/**
 * End to end through DownloadRequests, the real gateway process and the real curl:
 * - issue 5: create a DownloadRequest, read the gateway URL from its annotation, fetch it with a
 *   bearer token, trusting the CA from the certificate Secret;
 * - issue 8: what the stock velero CLI does: create a DownloadRequest, poll status.downloadURL every
 *   25 ms, plain GET with only --cacert, gunzip. Velero's controller writing status.downloadURL is
 *   played by the test, through the gateway's admission webhook, as the API server would call it.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { BACKUP, NS, kubeFixture, velero } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { curl, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';

async function freePort(): Promise<number> {
  const s = createServer().listen(0, '127.0.0.1');
  await new Promise((r) => s.once('listening', r));
  const { port } = s.address() as AddressInfo;
  await new Promise((r) => s.close(r));
  return port;
}

async function until<T>(what: string, probe: () => T | undefined, intervalMs = 25, timeoutMs = 10_000): Promise<T> {
  const end = Date.now() + timeoutMs;
  for (;;) {
    const v = probe();
    if (v !== undefined) return v;
    if (Date.now() > end) throw new Error(`timed out waiting for ${what}`);
    await new Promise((r) => setTimeout(r, intervalMs));
  }
}

describe('DownloadRequests end to end', () => {
  let fx: KubeFixture;
  let gw: GatewayProcess;
  let cacert: string;
  const logText = 'time="2026-11-23T10:00:00Z" level=info msg="Backup completed"\n';

  before(async () => {
    fx = await kubeFixture();
    // A real gzip'd log, as Velero writes it, for the gunzip step.
    await writeFile(join(fx.fsRoot, 'bsl-bucket', 'cluster-a', 'backups', BACKUP, `${BACKUP}-logs.gz`), gzipSync(logText));
    const bsl = fx.api.get('velero.io/v1', 'BackupStorageLocation', 'default', NS)!;
    fx.api.put({ ...bsl, metadata: { ...bsl.metadata, annotations: { 'download-server.velero.io/enabled': 'true' } } });
    const port = await freePort();
    gw = await startGateway(fx.args('--listen', `127.0.0.1:${port}`, '--fqdn', `127.0.0.1:${port}`));
    cacert = await fx.caFile();
  });
  after(async () => {
    await gw?.stop();
    await fx?.close();
  });

  const dr = (name: string) => fx.api.get('velero.io/v1', 'DownloadRequest', name, NS);

  test('issue 5: the annotation carries the gateway URL; curl fetches it with a token and the Secret CA', async () => {
    const name = `${BACKUP}-${randomUUID()}`;
    fx.api.put(velero('DownloadRequest', name, { target: { kind: 'BackupLog', name: BACKUP } }));
    const url = await until('the URL annotation', () => dr(name)?.metadata?.annotations?.['download-server.velero.io/url']);
    assert.equal(url, `${gw.url}/v1/namespaces/${NS}/downloadrequests/${name}`);
    const r = await curl(['--cacert', cacert, '--fail', '-H', `Authorization: Bearer ${fx.tokens.dave}`, url]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(gunzipSync(r.stdout).toString(), logText);
  });

  test('issue 8: the stock CLI flow: poll status.downloadURL every 25 ms, plain GET with only --cacert, gunzip', async () => {
    const name = `${BACKUP}-${randomUUID()}`;
    // 1. The CLI creates the request.
    fx.api.put(velero('DownloadRequest', name, { target: { kind: 'BackupLog', name: BACKUP } }));
    // 2. Velero's controller writes status with a store URL the user cannot reach; the API server
    //    sends the update through the mutating webhook and stores the patched object.
    const object = { ...dr(name)!, status: { phase: 'Processed', downloadURL: 'http://minio.velero.svc:9000/velero/x?X-Amz-Signature=1', expiration: new Date(Date.now() + 600_000).toISOString() } };
    const review = { apiVersion: 'admission.k8s.io/v1', kind: 'AdmissionReview', request: { uid: randomUUID(), operation: 'UPDATE', namespace: NS, object } };
    const hook = await curl(['--cacert', cacert, '--fail', '-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(review), `${gw.url}/admission/downloadrequests`]);
    assert.equal(hook.code, 0, hook.stderr);
    const response = (JSON.parse(hook.stdout.toString()) as { response: { allowed: boolean; patch: string } }).response;
    assert.equal(response.allowed, true);
    const [op] = JSON.parse(Buffer.from(response.patch, 'base64').toString()) as { path: string; value: string }[];
    assert.equal(op!.path, '/status/downloadURL');
    const current = dr(name)!;
    fx.api.put({ ...current, status: { ...object.status, downloadURL: op!.value } });
    // 3. The CLI polls every 25 ms until downloadURL is set, then GETs it with no token.
    const downloadURL = await until('status.downloadURL', () => (dr(name)?.status as { downloadURL?: string } | undefined)?.downloadURL, 25);
    assert.ok(downloadURL.startsWith(`${gw.url}/`), downloadURL);
    const r = await curl(['--cacert', cacert, '--fail', downloadURL]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(gunzipSync(r.stdout).toString(), logText);
    // The same URL for another request's path is refused.
    const forged = await curl(['--cacert', cacert, '-w', '\n%{http_code}', downloadURL.replace(name, 'dr-restore-log')]);
    assert.equal(forged.stdout.toString().split('\n').at(-1), '403');
  });

  test('/v1/info serves the URL, how it was chosen, and the CA', async () => {
    const r = await curl(['--cacert', cacert, '--fail', `${gw.url}/v1/info`]);
    const info = JSON.parse(r.stdout.toString()) as { url: string; urlSource: string; caCert: string; tlsFingerprint: string };
    assert.equal(info.url, gw.url);
    assert.equal(info.urlSource, 'fqdn');
    assert.match(info.caCert, /BEGIN CERTIFICATE/);
    assert.match(info.tlsFingerprint, /^[0-9a-f]{64}$/);
  });
});

/**
 * End to end through DownloadRequests, the real gateway process and the real curl:
 * - create a DownloadRequest, read the gateway URL from its annotation, fetch it with a
 *   bearer token, trusting the CA from the certificate Secret;
 * - a signed URL whose DownloadRequest is deleted mid-stream: the API server's admission calls (CREATE
 *   with the creator's identity, UPDATE when Velero's controller writes status) are played by the
 *   test, with curl against the webhook's own port, as the API server would call it. The stock velero
 *   CLI's whole flow (poll status.downloadURL every 25 ms, plain GET with only --cacert, gunzip) runs
 *   against a real kube-apiserver in real-stock-cli.test.ts.
 */
import assert from 'node:assert/strict';
import { randomUUID } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync, gzipSync } from 'node:zlib';
import { BACKUP, NS, kubeFixture, velero } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { AdmissionFlow } from '../support/admission.ts';
import type { ReviewResponse } from '../support/admission.ts';
import { curl, curlLive, freePort, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';


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
  let webhookUrl: string;
  let flow: AdmissionFlow;
  const logText = 'time="2026-11-23T10:00:00Z" level=info msg="Backup completed"\n';

  before(async () => {
    fx = await kubeFixture();
    // A real gzip'd log, as Velero writes it, for the gunzip step.
    await writeFile(join(fx.fsRoot, 'bsl-bucket', 'cluster-a', 'backups', BACKUP, `${BACKUP}-logs.gz`), gzipSync(logText));
    const bsl = fx.api.get('velero.io/v1', 'BackupStorageLocation', 'default', NS)!;
    fx.api.put({ ...bsl, metadata: { ...bsl.metadata, annotations: { 'download-server.velero.io/enabled': 'true' } } });
    const [port, webhookPort] = [await freePort(), await freePort()];
    gw = await startGateway(fx.args('--listen', `127.0.0.1:${port}`, '--fqdn', `127.0.0.1:${port}`, '--webhook-listen', `127.0.0.1:${webhookPort}`));
    cacert = await fx.caFile();
    webhookUrl = `https://127.0.0.1:${webhookPort}/admission/downloadrequests`;
    flow = new AdmissionFlow(
      fx.api,
      async (body): Promise<ReviewResponse> => {
        const r = await curl(['--cacert', cacert, '-H', 'Content-Type: application/json', '--data-binary', JSON.stringify(body), '-w', '\n%{http_code}', webhookUrl]);
        const lines = r.stdout.toString().split('\n');
        return { status: Number(lines.pop()), body: JSON.parse(lines.join('\n')) as ReviewResponse['body'] };
      },
      NS,
    );
  });
  after(async () => {
    await gw?.stop();
    await fx?.close();
  });

  const dr = (name: string) => fx.api.get('velero.io/v1', 'DownloadRequest', name, NS);

  test('the annotation carries the gateway URL; curl fetches it with a token and the Secret CA', async () => {
    const name = `${BACKUP}-${randomUUID()}`;
    fx.api.put(velero('DownloadRequest', name, { target: { kind: 'BackupLog', name: BACKUP } }));
    const url = await until('the URL annotation', () => dr(name)?.metadata?.annotations?.['download-server.velero.io/url']);
    assert.equal(url, `${gw.url}/v1/namespaces/${NS}/downloadrequests/${name}`);
    const r = await curl(['--cacert', cacert, '--fail', '-H', `Authorization: Bearer ${fx.tokens.dave}`, url]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(gunzipSync(r.stdout).toString(), logText);
  });

  test('the webhook is not on the download port: POST /admission/downloadrequests there is a 404 Status', async () => {
    const r = await curl(['--cacert', cacert, '-H', 'Content-Type: application/json', '--data-binary', '{}', '-w', '\n%{http_code}', `${gw.url}/admission/downloadrequests`]);
    const lines = r.stdout.toString().split('\n');
    assert.equal(lines.pop(), '404');
    assert.equal((JSON.parse(lines.join('\n')) as { kind: string }).kind, 'Status');
  });

  test('a DownloadRequest deleted mid-stream does not cut the transfer: it was checked when the request started', async () => {
    const name = `${BACKUP}-${randomUUID()}`;
    await flow.create({ username: 'alice', groups: ['system:authenticated'] }, name, { kind: 'BackupContents', name: BACKUP });
    await flow.processed(name);
    const downloadURL = (dr(name)!.status as { downloadURL: string }).downloadURL;
    // 3 MiB at 1 MiB/s: about three seconds on the wire.
    const live = curlLive(['--cacert', cacert, '--fail', '--limit-rate', '1M', downloadURL]);
    await new Promise((r) => setTimeout(r, 700));
    fx.api.remove('velero.io/v1', 'DownloadRequest', name, NS);
    const r = await live.done;
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout, fx.files.contents);
    // A new request with the same URL is refused now.
    const again = await curl(['--cacert', cacert, '-w', '\n%{http_code}', '-o', '/dev/null', downloadURL]);
    assert.equal(again.stdout.toString().trim().split('\n').at(-1), '403');
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

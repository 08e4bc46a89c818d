/**
 * `velero-download` end to end, part 1: where the bytes come from, whose token goes where, and which
 * certificates are trusted. The real command (a process) against the Kubernetes API test double,
 * whose DownloadRequests the test answers as Velero's and the download server's controllers would,
 * and the real gateway process.
 */
import assert from 'node:assert/strict';
import { chmod, readFile, writeFile } from 'node:fs/promises';
import { createServer } from 'node:http';
import type { AddressInfo } from 'node:net';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { cliFixture, startGatewayProxy, startStore } from '../support/cli.ts';
import type { CliFixture, CuttingProxy, TestServer } from '../support/cli.ts';
import { NS } from '../support/kube-fixture.ts';

describe('velero-download: sources, credentials and trust', () => {
  let f: CliFixture;
  let store: TestServer;
  let proxy: CuttingProxy;
  let proxyCaFile: string;

  before(async () => {
    f = await cliFixture();
    store = await startStore({ '/bucket/nightly-logs.gz': gzipSync(f.logText) });
    ({ proxy, caFile: proxyCaFile } = await startGatewayProxy(f));
  });
  after(async () => {
    await proxy?.close();
    await store?.close();
    await f?.close();
  });

  const creates = (): number => f.api.calls.count({ resource: 'downloadrequests', verb: 'create' });
  const gatewayOnly = (): void => {
    f.answer = (dr) => ({ gatewayURL: f.drUrl(dr.metadata.name!) });
  };

  test('falls back from an unreachable pre-signed URL to the gateway, and gunzips the log', async () => {
    f.answer = (dr) => ({ downloadURL: 'https://127.0.0.1:1/bucket/backups/nightly/nightly-logs.gz?X-Amz-Signature=s3cr3t', gatewayURL: f.drUrl(dr.metadata.name!) });
    const r = await f.cli('alice', ['backup', 'logs', 'nightly']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), f.logText);
    assert.match(r.stderr, /the store at https:\/\/127\.0\.0\.1:1: .*ECONNREFUSED.*; trying the download server instead/);
    assert.ok(!r.stderr.includes('s3cr3t'), 'a pre-signed URL signature is never printed');
    assert.deepEqual(f.leftoverDownloadRequests(), [], 'the DownloadRequest is deleted');
  });

  test('falls back from a store host that does not resolve, to status.veleroServerURL', async () => {
    f.answer = (dr) => ({ downloadURL: 'https://minio.velero.svc.invalid:9000/velero/backups/nightly/nightly-results.gz?sig=1', veleroServerURL: f.drUrl(dr.metadata.name!) });
    const r = await f.run('alice', ['backup', 'results', 'nightly']);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(JSON.parse(r.stdout.toString()), JSON.parse(f.resultsJson));
    assert.match(r.stderr, /the store at https:\/\/minio\.velero\.svc\.invalid:9000: .*ENOTFOUND.*trying the download server/);
  });

  test('uses a reachable pre-signed URL as Velero does: no token to the store, no gateway', async () => {
    const before = { store: store.requests.length, proxy: proxy.requests.length };
    f.answer = (dr) => ({ downloadURL: `${store.url}/bucket/nightly-logs.gz?X-Amz-Signature=abc`, gatewayURL: f.drUrl(dr.metadata.name!, proxy.url) });
    const r = await f.cli('alice', ['backup', 'logs', 'nightly', '--cacert', proxyCaFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), f.logText);
    assert.equal(r.stderr, '', 'nothing extra on stderr');
    const got = store.requests.slice(before.store);
    assert.equal(got.length, 1);
    assert.equal(got[0]!.path, '/bucket/nightly-logs.gz?X-Amz-Signature=abc');
    assert.equal(got[0]!.headers.authorization, undefined, 'the Kubernetes token never goes to the store');
    assert.equal(proxy.requests.length, before.proxy, 'the gateway is not used');
  });

  test('--velero-server-url forces the gateway even when the pre-signed URL works', async () => {
    const before = { store: store.requests.length, proxy: proxy.requests.length };
    f.answer = (dr) => ({ downloadURL: `${store.url}/bucket/nightly-logs.gz?X-Amz-Signature=abc`, gatewayURL: f.drUrl(dr.metadata.name!, proxy.url) });
    const r = await f.cli('alice', ['--velero-server-url', 'backup', 'logs', 'nightly', '--cacert', proxyCaFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), f.logText);
    assert.equal(store.requests.length, before.store, 'the store is not asked');
    const got = proxy.requests.slice(before.proxy);
    assert.equal(got.length, 1);
    assert.match(got[0]!.path, new RegExp(`^/v1/namespaces/${NS}/downloadrequests/nightly-[0-9a-f]{8}$`));
    assert.equal(got[0]!.headers.authorization, `Bearer ${f.fx.tokens.alice}`);
  });

  test('--velero-server-url=BASE fetches the artifact route directly, without a DownloadRequest', async () => {
    const n = creates();
    const [spaced, joined] = await Promise.all([
      f.run('alice', ['backup', 'logs', 'nightly', '--velero-server-url', f.gw.url]),
      f.run('alice', ['get', 'backups/nightly/results', `--velero-server-url=${f.gw.url}/`]),
    ]);
    assert.equal(spaced.code, 0, spaced.stderr);
    assert.equal(spaced.stdout.toString(), f.logText);
    assert.equal(joined.code, 0, joined.stderr);
    assert.deepEqual(JSON.parse(joined.stdout.toString()), JSON.parse(f.resultsJson));
    assert.equal(creates(), n, 'no DownloadRequest was created');
  });

  test('takes the token from an exec credential plugin', async () => {
    const script = join(f.dir, 'credential-plugin.sh');
    const marker = join(f.dir, 'plugin-ran');
    const credential = JSON.stringify({ apiVersion: 'client.authentication.k8s.io/v1', kind: 'ExecCredential', status: { token: f.fx.tokens.alice } });
    await writeFile(script, `#!/bin/sh\necho ran >> '${marker}'\ncat <<'JSON'\n${credential}\nJSON\n`);
    await chmod(script, 0o755);
    const doc = f.api.kubeconfig('unused') as unknown as { users: { user: Record<string, unknown> }[] };
    doc.users[0]!.user = { exec: { apiVersion: 'client.authentication.k8s.io/v1', command: script, interactiveMode: 'Never' } };
    const kubeconfig = join(f.dir, 'exec.kubeconfig');
    await writeFile(kubeconfig, f.api.kubeconfigYaml(doc as never), { mode: 0o600 });
    // Through the proxy, to see the header the gateway receives.
    f.answer = (dr) => ({ gatewayURL: f.drUrl(dr.metadata.name!, proxy.url) });
    const before = proxy.requests.length;
    const r = await f.cli(kubeconfig, ['backup', 'logs', 'nightly', '--velero-server-url', '--cacert', proxyCaFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), f.logText);
    assert.equal(proxy.requests.length, before + 1);
    assert.equal(proxy.requests.at(-1)!.headers.authorization, `Bearer ${f.fx.tokens.alice}`);
    assert.ok((await readFile(marker, 'utf8')).includes('ran'), 'the plugin ran');
  });

  test('a kubeconfig user with only a client certificate gets a clear error (exit 3)', async () => {
    gatewayOnly();
    const kubeconfig = await f.api.writeKubeconfig(join(f.dir, 'cert.kubeconfig'), await f.api.clientCertificateKubeconfig('alice'));
    const n = creates();
    const [forced, fallback] = await Promise.all([
      f.cli(kubeconfig, ['--velero-server-url', 'backup', 'logs', 'nightly']),
      f.run(kubeconfig, ['backup', 'logs', 'nightly']),
    ]);
    for (const r of [forced, fallback]) {
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /authenticates with a client certificate, but the download server needs a bearer token/);
      assert.match(r.stderr, /--velero-server-url=https:\/\/HOST\[:PORT\] with --token-file FILE \(for a service account: kubectl create token NAME > FILE\)/);
      assert.equal(r.stdout.length, 0);
    }
    // Forced: refused before anything was created; the other run created (and deleted) its request.
    assert.equal(creates(), n + 1);
    assert.deepEqual(f.leftoverDownloadRequests(), []);
  });

  // In this process: eight cases, each a process would cost a second of start-up.
  test('trusts the CA from the ConfigMap (no Secret access needed), the Secret of older gateways, --cacert, a pinned fingerprint; refuses an unknown certificate', async () => {
    gatewayOnly();
    // The gateway published its CA: the ConfigMap holds the Secret's ca.crt and the fingerprint.
    const cm = f.api.get('v1', 'ConfigMap', 'velero-download-server-ca', NS);
    assert.equal((cm?.data as Record<string, string> | undefined)?.['ca.crt'], f.gatewayCert);
    assert.equal(cm?.metadata.annotations?.['download-server.velero.io/tls-fingerprint'], f.fingerprint);
    f.api.calls.clear();
    const colons = f.fingerprint.toUpperCase().match(/../g)!.join(':');
    const [untrusted, cacert, pinned, pinnedColons, wrongPin, insecure, fromConfigMap, fromSecret] = await Promise.all([
      f.run('dave', ['backup', 'logs', 'nightly']),
      f.run('dave', ['backup', 'logs', 'nightly', '--cacert', f.gatewayCertFile]),
      f.run('dave', ['backup', 'logs', 'nightly', '--server-cert-fingerprint', f.fingerprint]),
      f.run('dave', ['backup', 'logs', 'nightly', `--server-cert-fingerprint=${colons}`]),
      f.run('dave', ['backup', 'logs', 'nightly', '--server-cert-fingerprint', 'ab'.repeat(32)]),
      f.run('dave', ['backup', 'logs', 'nightly', '--insecure-skip-tls-verify']),
      f.run('alice', ['backup', 'logs', 'nightly']),
      f.run('frank', ['backup', 'logs', 'nightly']),
    ]);
    assert.equal(untrusted.code, 4, untrusted.stderr);
    assert.match(untrusted.stderr, /certificate is not trusted/);
    assert.match(untrusted.stderr, /ask for "get" on ConfigMap velero-download-server-ca in namespace "velero", or pass --cacert FILE \(its ca\.crt: kubectl -n velero get configmap velero-download-server-ca -o jsonpath='\{\.data\.ca\\\.crt\}'\)/);
    assert.ok(untrusted.stderr.includes(`--server-cert-fingerprint ${f.fingerprint}`), untrusted.stderr);
    assert.equal(untrusted.stdout.length, 0);
    assert.ok(
      f.api.calls.list({ resource: ['secrets', 'configmaps'], user: 'dave' }).every((c) => c.code === 403),
      'dave was refused the ConfigMap and the Secret, so no CA could be used',
    );
    for (const r of [cacert, pinned, pinnedColons, insecure, fromConfigMap, fromSecret]) {
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), f.logText);
    }
    assert.equal(wrongPin.code, 4, wrongPin.stderr);
    assert.match(wrongPin.stderr, /its fingerprint is not the pinned one/);
    // alice trusted the gateway with access to the ConfigMap only: she never asked for the Secret.
    assert.deepEqual(f.api.calls.list({ resource: 'configmaps', user: 'alice' }).map((c) => c.code), [200]);
    assert.equal(f.api.calls.count({ resource: 'secrets', user: 'alice' }), 0);
    // frank, allowed only the Secret (what older gateways offered): the ConfigMap's 403 is no error.
    assert.deepEqual(f.api.calls.list({ resource: 'configmaps', user: 'frank' }).map((c) => c.code), [403]);
    assert.deepEqual(f.api.calls.list({ resource: 'secrets', user: 'frank' }).map((c) => c.code), [200]);
  });

  test('never sends the token over plain HTTP, even when the cluster says so', async () => {
    const seen: string[] = [];
    const plain = createServer((req, res) => {
      seen.push(String(req.headers.authorization));
      res.end();
    });
    await new Promise<void>((r) => plain.listen(0, '127.0.0.1', r));
    const port = (plain.address() as AddressInfo).port;
    try {
      f.answer = (dr) => ({ gatewayURL: f.drUrl(dr.metadata.name!, `http://127.0.0.1:${port}`) });
      const r = await f.run('alice', ['backup', 'logs', 'nightly', '--wait-timeout', '2s']);
      assert.equal(r.code, 4, r.stderr);
      assert.match(r.stderr, /refusing to send your bearer token over plain HTTP to http:\/\/127\.0\.0\.1/);
      assert.deepEqual(seen, []);
    } finally {
      plain.close();
    }
  });

  test('no token ever appears in the command output or the gateway log', () => {
    const all = f.outputs.join('\n');
    for (const t of f.secrets()) {
      assert.ok(!all.includes(t), 'a token leaked into the command output');
      assert.ok(!f.gw.output().includes(t), 'a token leaked into the gateway log');
    }
  });
});

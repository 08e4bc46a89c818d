/**
 * End to end in kubernetes mode: the real gateway process, configured with a kubeconfig for the
 * Kubernetes API test double, driven by the real curl with a user's bearer token.
 */
import assert from 'node:assert/strict';
import { after, before, describe, test } from 'node:test';
import { BACKUP, NS, RESTORE, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { curl, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';

describe('kubernetes mode end to end', () => {
  let fx: KubeFixture;
  let gw: GatewayProcess;
  let cacert: string;
  before(async () => {
    fx = await kubeFixture();
    gw = await startGateway(fx.args());
    cacert = await fx.caFile();
  });
  after(async () => {
    await gw?.stop();
    await fx?.close();
  });

  const get = (token: string | undefined, path: string, ...extra: string[]) =>
    curl(['--cacert', cacert, ...(token ? ['-H', `Authorization: Bearer ${token}`] : []), '-w', '\n%{http_code}', ...extra, `${gw.url}${path}`]);
  const status = (r: { stdout: Buffer }): string => r.stdout.toString().split('\n').at(-1)!;

  test('an allowed user downloads the backup log byte for byte', async () => {
    const r = await curl(['--cacert', cacert, '--fail', '-H', `Authorization: Bearer ${fx.tokens.alice}`, `${gw.url}/v1/namespaces/${NS}/backups/${BACKUP}/log`]);
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(r.stdout, fx.files.log);
  });

  test('a restore log, through its backup, and a DownloadRequest', async () => {
    const r = await curl(['--cacert', cacert, '--fail', '-H', `Authorization: Bearer ${fx.tokens.alice}`, `${gw.url}/v1/namespaces/${NS}/restores/${RESTORE}/log`]);
    assert.deepEqual(r.stdout, fx.files.restoreLog);
    const d = await curl(['--cacert', cacert, '--fail', '-H', `Authorization: Bearer ${fx.tokens.dave}`, `${gw.url}/v1/namespaces/${NS}/downloadrequests/dr-log`]);
    assert.equal(d.code, 0, d.stderr);
    assert.deepEqual(d.stdout, fx.files.log);
  });

  test('401 without a token, 403 without permission, 404 for a missing backup', async () => {
    assert.equal(status(await get(undefined, `/v1/namespaces/${NS}/backups/${BACKUP}/log`)), '401');
    assert.equal(status(await get(fx.tokens.bob, `/v1/namespaces/${NS}/backups/${BACKUP}/contents`)), '403');
    assert.equal(status(await get(fx.tokens.alice, `/v1/namespaces/${NS}/backups/missing/log`)), '404');
  });

  test('206 for a range of the contents', async () => {
    const r = await curl(['--cacert', cacert, '--fail', '-r', '100-199', '-H', `Authorization: Bearer ${fx.tokens.alice}`, `${gw.url}/v1/namespaces/${NS}/backups/${BACKUP}/contents`]);
    assert.deepEqual(r.stdout, fx.files.contents.subarray(100, 200));
  });

  test('no bearer token reaches the gateway log', () => {
    for (const t of Object.values(fx.tokens)) assert.ok(!gw.output().includes(t));
    assert.ok(gw.logs.some((l) => l.msg === 'kubernetes mode'));
  });
});

/**
 * /metrics over plain HTTP on a port of its own (--metrics-plain-http-port), with the real process and
 * the real curl: off by default; on, it serves /metrics and nothing else, whatever a client tries.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { curl, freePort, startLocalGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';

describe('/metrics over plain HTTP', () => {
  let dir: string;
  let gw: GatewayProcess;
  let port: number;
  let base: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-plain-metrics-'));
    port = await freePort();
    ({ gw } = await startLocalGateway(dir, '--metrics-plain-http-port', String(port)));
    base = `http://127.0.0.1:${port}`;
  });
  after(async () => {
    await gw?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const status = async (...args: string[]): Promise<string> => {
    const r = await curl(['-o', '/dev/null', '-w', '%{http_code}', ...args]);
    return r.stdout.toString();
  };

  test('curl over http gets the same metrics as the HTTPS listener', async () => {
    const r = await curl(['--fail', `${base}/metrics`]);
    assert.equal(r.code, 0, r.stderr);
    const text = r.stdout.toString();
    assert.match(text, /^velero_download_server_build_info\{version="[^"]+",revision="[^"]+",node_version="v\d+\.[^"]+"\} 1$/m);
    assert.match(text, /^process_resident_memory_bytes \d+/m);
    assert.equal(gw.logs.find((l) => l.msg === 'listening')?.metricsPlainHttp, `${base}/metrics`);
  });

  test('nothing else: no probes, no download API (even with a valid token), no other method', async () => {
    const token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
    assert.equal(await status(`${base}/healthz`), '404');
    assert.equal(await status(`${base}/v1/info`), '404');
    assert.equal(await status('-H', `Authorization: Bearer ${token}`, `${base}/v1/namespaces/velero/backups/demo-backup/log`), '404');
    assert.equal(await status(`${base}/metrics/../v1/info`, '--path-as-is'), '404');
    assert.equal(await status('-X', 'POST', `${base}/metrics`), '405');
    assert.equal(await status('--head', `${base}/metrics`), '200');
  });

  test('it is plain HTTP only: a TLS handshake fails', async () => {
    const r = await curl(['--insecure', '--max-time', '5', `https://127.0.0.1:${port}/metrics`]);
    assert.notEqual(r.code, 0);
  });
});

describe('/metrics over plain HTTP is off by default', () => {
  test('no plain listener is announced, and the HTTPS metrics listener refuses plain HTTP', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-plain-metrics-off-'));
    const { gw } = await startLocalGateway(dir);
    try {
      assert.equal(gw.logs.find((l) => l.msg === 'listening')?.metricsPlainHttp, undefined);
      const r = await curl(['--max-time', '5', '-o', '/dev/null', '-w', '%{http_code}', `http://127.0.0.1:${gw.metricsPort}/metrics`]);
      assert.notEqual(r.stdout.toString(), '200', 'no metrics over plain HTTP on the HTTPS port');
    } finally {
      await gw.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

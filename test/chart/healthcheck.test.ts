/**
 * The image's probe (src/healthcheck.ts, the HEALTHCHECK of plain `docker run` and the chart's
 * `helm test` Pod), run as the image runs it: a separate node process against the real gateway in
 * local mode. It passes only for a 200 from a server holding the trusted certificate, and fails
 * (exit 1) for everything else: another CA, a name the certificate does not cover, a missing CA
 * file, plain HTTP, an error status, a closed port and a peer that never answers.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { AddressInfo, Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { freePort, startLocalGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { createTestPki } from '../support/test-ca.ts';

const PROBE = fileURLToPath(new URL('../../src/healthcheck.ts', import.meta.url));

interface Run {
  code: number;
  stdout: string;
  stderr: string;
}

function probe(args: string[], env: NodeJS.ProcessEnv = {}): Promise<Run> {
  return new Promise((resolve) => {
    execFile(process.execPath, [PROBE, ...args], { env: { PATH: process.env.PATH, ...env } }, (err, stdout, stderr) => {
      resolve({ code: err ? Number((err as { code?: unknown }).code ?? 1) : 0, stdout, stderr });
    });
  });
}

describe('healthcheck probe against the real gateway', () => {
  let dir: string;
  let gw: GatewayProcess;
  let cacert: string;
  let otherCa: string;
  let silent: Server;
  let base: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-healthcheck-'));
    ({ gw, cacert } = await startLocalGateway(dir));
    base = `https://127.0.0.1:${gw.metricsPort}`;
    otherCa = join(dir, 'other-ca.crt');
    await writeFile(otherCa, (await createTestPki('not the gateway')).caCert);
    // Accepts and never answers: the probe must give up rather than hang.
    silent = createServer(() => {}).listen(0, '127.0.0.1');
    await new Promise((r) => silent.once('listening', r));
  });
  after(async () => {
    await gw?.stop();
    silent?.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('healthy: /healthz and /readyz, trusting local mode\'s certificate from VDS_STATE_DIR (the image default)', async () => {
    for (const path of ['/healthz', '/readyz']) {
      const r = await probe([`${base}${path}`], { VDS_STATE_DIR: join(dir, 'state') });
      assert.equal(r.code, 0, r.stderr);
      assert.match(r.stdout, /^healthy: .* 200/);
    }
    const explicit = await probe([`${base}/readyz`, '--ca', cacert]);
    assert.equal(explicit.code, 0, explicit.stderr);
  });

  test('--servername: verified against the certificate\'s names, not the URL\'s host', async () => {
    assert.equal((await probe([`${base}/readyz`, `--ca=${cacert}`, '--servername', 'localhost'])).code, 0);
    const wrong = await probe([`${base}/readyz`, '--ca', cacert, '--servername', 'gateway.attacker.example']);
    assert.equal(wrong.code, 1);
    assert.match(wrong.stderr, /unhealthy: .*(altnames|Hostname)/i);
  });

  test('a server with a certificate of another CA is unhealthy (no fall-back to the system roots or to no verification)', async () => {
    const r = await probe([`${base}/healthz`, '--ca', otherCa]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unhealthy: .*(certificate|self.signed)/i);
  });

  test('a missing CA file is a failure, not an unverified probe', async () => {
    const r = await probe([`${base}/healthz`], { VDS_STATE_DIR: join(dir, 'nowhere') });
    assert.equal(r.code, 1);
    assert.match(r.stderr, /unhealthy: .*ENOENT/);
  });

  test('an error status, plain HTTP, a closed port and bad arguments are unhealthy', async () => {
    const notFound = await probe([`${base}/nothing-here`, '--ca', cacert]);
    assert.equal(notFound.code, 1);
    assert.match(notFound.stderr, /HTTP 404/);
    const plain = await probe([`http://127.0.0.1:${gw.metricsPort}/healthz`, '--ca', cacert]);
    assert.equal(plain.code, 1);
    assert.match(plain.stderr, /only https/);
    const closed = await probe([`https://127.0.0.1:${await freePort()}/healthz`, '--ca', cacert]);
    assert.equal(closed.code, 1);
    assert.match(closed.stderr, /ECONNREFUSED/);
    for (const args of [['--ca'], ['--what'], [`${base}/healthz`, 'second-url']]) {
      const r = await probe(args);
      assert.equal(r.code, 1, args.join(' '));
      assert.match(r.stderr, /usage: healthcheck/);
    }
  });

  test('a peer that accepts and never answers: unhealthy, the probe gives up', async () => {
    const r = await probe([`https://127.0.0.1:${(silent.address() as AddressInfo).port}/healthz`, '--ca', cacert]);
    assert.equal(r.code, 1);
    assert.match(r.stderr, /no answer in 4 s/);
  });
});

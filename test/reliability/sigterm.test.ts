/**
 * Reliability: SIGTERM while 20 downloads run. The real gateway process serves 20 paced curl
 * downloads (--limit-rate, about 2 s each); SIGTERM arrives once every one of them has started. All
 * 20 must finish complete (byte for byte) within the grace period, a new connection after the signal
 * must be refused, and the process must exit 0 without having to force anything.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { once } from 'node:events';
import { mkdir, mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import express from 'express';
import { addressOf, listenHttps, shutdown } from '../../src/server/listener.ts';
import { curl, curlLive, putBackupContents, startGateway, startLocalGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { waitFor } from '../support/reliability.ts';
import { createTestPki } from '../support/test-ca.ts';

const DOWNLOADS = 20;
const SIZE = 4 * 1024 * 1024;
const GRACE_S = 15;

describe('SIGTERM during 20 running downloads', () => {
  let dir: string;
  let gw: GatewayProcess;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-rel-term-'));
    gw = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), '--shutdown-grace', `${GRACE_S}s`]);
  });

  after(async () => {
    await gw?.stop('SIGKILL');
    await rm(dir, { recursive: true, force: true });
  });

  test('all 20 finish complete, new connections are refused, exit 0 within the grace period', async () => {
    const token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
    const cacert = join(dir, 'state', 'tls.crt');
    const bytes = randomBytes(SIZE);
    await mkdir(join(dir, 'data', 'backups', 'paced'), { recursive: true });
    await writeFile(join(dir, 'data', 'backups', 'paced', 'paced.tar.gz'), bytes);

    const outs = Array.from({ length: DOWNLOADS }, (_, i) => join(dir, `out-${i}.bin`));
    const live = outs.map((out) =>
      curlLive(['--cacert', cacert, '-H', `Authorization: Bearer ${token}`, '--fail', '--limit-rate', '2M', '-o', out, `${gw.url}/v1/namespaces/velero/backups/paced/contents`]),
    );
    // curl creates its output file with the first bytes of the body: every download is under way.
    const started = await waitFor(async () => (await Promise.all(outs.map((o) => stat(o).then((s) => s.size > 0, () => false)))).every(Boolean), 10_000, 50);
    assert.ok(started, 'not every download started');

    const signalledAt = Date.now();
    const exit = gw.stop('SIGTERM');
    // The drain starts (listeners closed) in the same tick as this line is logged.
    assert.ok(await waitFor(() => gw.logs.some((l) => String(l.msg).startsWith('shutting down: no longer accepting')), 5000, 20), 'SIGTERM was not handled');
    const refused = await curl(['--cacert', cacert, '--max-time', '3', `${gw.url}/healthz`]);
    assert.equal(refused.code, 7, `a new connection after SIGTERM must be refused (curl exit 7): exit ${String(refused.code)} ${refused.stderr}`);

    const results = await Promise.all(live.map((l) => l.done));
    for (const [i, r] of results.entries()) {
      assert.equal(r.code, 0, `download ${i}: curl exit ${String(r.code)} ${r.stderr}`);
      const got = await readFile(outs[i]!);
      assert.equal(got.length, SIZE, `download ${i}: ${got.length} of ${SIZE} bytes`);
      assert.ok(got.equals(bytes), `download ${i} is not byte for byte`);
    }
    assert.equal(await exit, 0, gw.output());
    const tookMs = Date.now() - signalledAt;
    assert.ok(tookMs < GRACE_S * 1000, `exited ${tookMs} ms after SIGTERM, past the ${GRACE_S} s grace`);
    const stopped = gw.logs.find((l) => l.msg === 'stopped');
    assert.equal(stopped?.forced, false, 'the drain finished inside the grace period, nothing was cut');
  });
});

describe('SIGTERM during a rollout: the pause before the drain', () => {
  // Long enough that the checks below finish inside it even on a loaded machine; nothing waits it out
  // but the exit at the end.
  const DELAY_S = 8;

  test('during --shutdown-delay /readyz answers 503 while a new client is still served in full; then the drain, exit 0', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-rel-delay-'));
    const { gw, cacert } = await startLocalGateway(dir, '--shutdown-delay', `${DELAY_S}s`);
    try {
      const token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
      const bytes = randomBytes(1024 * 1024);
      await putBackupContents(join(dir, 'data'), 'late', bytes);
      const readyz = ['--cacert', cacert, '-o', '/dev/null', '-w', '%{http_code}', `https://127.0.0.1:${gw.metricsPort}/readyz`];
      assert.equal((await curl(readyz)).stdout.toString(), '200');

      const exit = gw.stop('SIGTERM');
      assert.ok(await waitFor(() => gw.logs.some((l) => String(l.msg).startsWith('shutting down: not ready')), 5000, 20), 'SIGTERM was not handled');
      const probe = await curl(readyz);
      assert.equal(probe.stdout.toString(), '503', `readiness must fail during the delay: ${probe.stderr}`);

      // A client the Service still routes here: a new connection, a whole download.
      const out = join(dir, 'late.bin');
      const late = await curl(['--cacert', cacert, '-H', `Authorization: Bearer ${token}`, '--fail', '-o', out, '-w', '%{http_code}', `${gw.url}/v1/namespaces/velero/backups/late/contents`]);
      assert.equal(late.code, 0, `a client connecting during the delay must be served: curl exit ${String(late.code)} ${late.stderr}`);
      assert.equal(late.stdout.toString(), '200');
      assert.ok((await readFile(out)).equals(bytes), 'the download during the delay is not byte for byte');
      assert.ok(!gw.logs.some((l) => String(l.msg).startsWith('shutting down: no longer accepting')), 'the download above must have happened inside the delay');

      assert.equal(await exit, 0, gw.output());
      const drainAt = gw.logs.findIndex((l) => String(l.msg).startsWith('shutting down: no longer accepting'));
      assert.ok(drainAt > 0, 'the drain followed the delay');
      assert.equal(gw.logs.find((l) => l.msg === 'stopped')?.forced, false);
    } finally {
      await gw.stop('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('a second signal during the delay skips the rest of it', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-rel-delay2-'));
    const { gw } = await startLocalGateway(dir, '--shutdown-delay', '10m');
    try {
      gw.proc.kill('SIGTERM');
      assert.ok(await waitFor(() => gw.logs.some((l) => String(l.msg).startsWith('shutting down: not ready')), 5000, 20), 'SIGTERM was not handled');
      const code = await Promise.race([gw.stop('SIGINT'), new Promise<string>((resolve) => setTimeout(() => resolve('still waiting out the 10 min delay after 20 s'), 20_000))]);
      assert.equal(code, 0, gw.output());
    } finally {
      await gw.stop('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('SIGTERM after the log reader went away', () => {
  test('a gateway whose stdout is closed (EPIPE) still exits 0 at once', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-rel-epipe-'));
    const gw = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state')]);
    try {
      // Whoever read the logs is gone: the shutdown's own log lines are the first to meet the closed
      // pipe (with pino's default asynchronous stream, its exit-time flush then retried forever).
      gw.proc.stdout?.destroy();
      gw.proc.stderr?.destroy();
      await new Promise((resolve) => setTimeout(resolve, 100));
      const started = Date.now();
      const code = await Promise.race([gw.stop('SIGTERM'), new Promise<string>((resolve) => setTimeout(() => resolve('still running after 10 s'), 10_000))]);
      assert.equal(code, 0);
      assert.ok(Date.now() - started < 5_000, `took ${Date.now() - started} ms`);
    } finally {
      await gw.stop('SIGKILL');
      await rm(dir, { recursive: true, force: true });
    }
  });
});

describe('the drain in-process: a request pipelined behind a running download', () => {
  test('is answered with Connection: close after it, even when its route answers at once; nothing throws', async () => {
    const pki = await createTestPki();
    const app = express();
    app.get('/slow', (_req, res) => {
      res.setHeader('Content-Length', 4);
      res.write('sl');
      setTimeout(() => res.end('ow'), 300);
    });
    // Answers in the same turn as the request event: its headers are sent before later listeners run.
    app.get('/now', (_req, res) => void res.end('now'));
    const server = await listenHttps(app, { key: pki.key, cert: pki.cert, minVersion: 'TLSv1.2' }, { host: '127.0.0.1', port: 0 });
    const socket = tlsConnect({ port: addressOf(server).port, host: '127.0.0.1', ca: pki.caCert, servername: 'localhost' });
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    const ended = once(socket, 'end');
    await once(socket, 'secureConnect');
    socket.write('GET /slow HTTP/1.1\r\nHost: x\r\n\r\n');
    assert.ok(await waitFor(() => got.includes('sl'), 5000, 10), 'the slow response did not begin');
    const drained = shutdown([server], 5000);
    socket.write('GET /now HTTP/1.1\r\nHost: x\r\n\r\n');
    await ended;
    socket.destroy();
    assert.deepEqual(await drained, { forced: false });
    const responses = got.split(/(?=HTTP\/1\.1 )/);
    assert.equal(responses.length, 2, got);
    assert.match(responses[0]!, /^HTTP\/1\.1 200 [\s\S]*\r\n\r\nslow$/);
    assert.match(responses[1]!, /^HTTP\/1\.1 200 [\s\S]*Connection: close\r\n[\s\S]*\r\n\r\nnow$/i);
  });
});

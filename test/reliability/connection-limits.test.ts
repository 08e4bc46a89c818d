/**
 * Connections with no time bound, replayed against the real gateway process with short
 * limits set through its flags (so the suite stays fast), counting its descriptors in /proc:
 * - slow request bodies (a declared 3 MB POSTed a byte at a time) are cut with 408 after
 *   --request-timeout, while a download that takes longer than that timeout completes;
 * - a client that stops reading a large download is reset after --send-stall-timeout, on both send
 *   paths (the filesystem store's reader, S3's stream pipeline), and sees a broken transfer, never a
 *   short complete one; descriptors go back to the baseline, wave after wave;
 * - connections over --max-connections-per-client and --max-connections are closed before their TLS
 *   handshake while other clients are served; a --trusted-proxies peer is exempt from the per-client
 *   cap, not from the global one;
 * - allowed downloads over --max-concurrent-downloads get 503 with Retry-After and a Status body;
 * - X-Forwarded-For is honoured from a trusted peer only; a spoofed one from anyone else is ignored.
 * Connections come from several loopback addresses (127.0.0.x) so per-client counting is real.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, readFile, rm, truncate, writeFile } from 'node:fs/promises';
import type { Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import express from 'express';
import { listenHttps } from '../../src/server/listener.ts';
import { curl, curlLive, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { RawConnection, fdCount, sleep, waitFor } from '../support/reliability.ts';
import { startS3rver } from '../support/s3rver.ts';
import type { S3rverInstance } from '../support/s3rver.ts';
import { writeS3LocationsFile } from '../support/locations-file.ts';
import { createTestPki } from '../support/test-ca.ts';
import type { TestPki } from '../support/test-ca.ts';

const MiB = 1024 * 1024;

async function rss(pid: number): Promise<number> {
  const kb = /^VmRSS:\s+(\d+) kB/m.exec(await readFile(`/proc/${pid}/status`, 'utf8'))?.[1];
  return Number(kb) * 1024;
}

/** A TLS connection from `from` (a loopback address); resolves when it is up, or when it was closed first. */
async function tryConnect(port: number, ca: Buffer | string, from: string): Promise<{ socket: TLSSocket; connected: boolean; ms: number }> {
  const started = performance.now();
  const socket = tlsConnect({ host: '127.0.0.1', port, ca, servername: 'localhost', localAddress: from } as ConnectionOptions);
  socket.on('error', () => undefined);
  const connected = await new Promise<boolean>((resolve) => {
    socket.once('secureConnect', () => resolve(true));
    socket.once('close', () => resolve(false));
  });
  return { socket, connected, ms: performance.now() - started };
}

const closed = (s: TLSSocket): Promise<void> => (s.destroyed ? Promise.resolve() : new Promise((resolve) => s.once('close', () => resolve())));

describe('time bounds on the real process: --request-timeout 2s, --send-stall-timeout 2s', () => {
  let dir: string;
  let gw: GatewayProcess;
  let s3: S3rverInstance;
  let ca: Buffer;
  let token: string;
  const BIG = 64 * MiB; // more than the loopback socket buffers hold, so a client that does not read stalls the gateway

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-rel-bounds-'));
    const data = join(dir, 'data');
    for (const [name, size] of [['big', BIG], ['medium', 8 * MiB]] as const) {
      await mkdir(join(data, 'backups', name), { recursive: true });
      await writeFile(join(data, 'backups', name, `${name}.tar.gz`), '');
      await truncate(join(data, 'backups', name, `${name}.tar.gz`), size);
    }
    const pki = await createTestPki();
    s3 = await startS3rver({ tls: { key: pki.key, cert: pki.cert, ca: pki.caCert } });
    await s3.putFile('prod/backups/bigs3/bigs3.tar.gz', join(data, 'backups', 'big', 'big.tar.gz'));
    await writeS3LocationsFile(dir, { name: 's3', bucket: s3.bucket, endpoint: s3.endpoint, region: 'us-east-1', accessKeyId: 'S3RVER', secretAccessKey: 'S3RVER', caPem: pki.caCert });
    gw = await startGateway(['--mode', 'local', '--data-dir', data, '--state-dir', join(dir, 'state'), '--locations-file', join(dir, 'locations.yaml'), '--request-timeout', '2s', '--send-stall-timeout', '2s']);
    ca = await readFile(join(dir, 'state', 'tls.crt'));
    token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
  });

  after(async () => {
    await gw?.stop();
    await s3?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const url = (name: string): string => `${gw.url}/v1/namespaces/velero/backups/${name}/contents`;
  const auth = (): string[] => ['--cacert', join(dir, 'state', 'tls.crt'), '-H', `Authorization: Bearer ${token}`];

  test('six connections POSTing a declared 3 MB a byte at a time are cut with 408 after the request timeout; descriptors back at the baseline', async (t) => {
    const before = await fdCount(gw.proc.pid!);
    const clients = await Promise.all(
      Array.from({ length: 6 }, async (_, i) => {
        const { socket, connected } = await tryConnect(gw.port, ca, `127.0.0.${20 + i}`);
        assert.ok(connected);
        let got = '';
        socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
        const started = performance.now();
        socket.write('POST /v1/namespaces/velero/backups/demo-backup/log HTTP/1.1\r\nHost: localhost\r\nContent-Type: application/json\r\nContent-Length: 3000000\r\n\r\n');
        const tick = setInterval(() => socket.writable && socket.write('x'), 200);
        return { socket, tick, started, got: () => got };
      }),
    );
    try {
      const times = await Promise.all(
        clients.map(async (c) => {
          await Promise.race([closed(c.socket), sleep(8000)]);
          return performance.now() - c.started;
        }),
      );
      t.diagnostic(`closed after ${times.map((x) => x.toFixed(0)).join(', ')} ms`);
      for (const [i, c] of clients.entries()) {
        assert.ok(c.socket.destroyed, `client ${i} still open after 8 s (request timeout 2 s)`);
        assert.ok(times[i]! >= 1900 && times[i]! < 4500, `client ${i} closed after ${times[i]!.toFixed(0)} ms`);
        // The route answers 405 at once (it reads no body); the unread body is then cut with 408.
        assert.match(c.got(), /HTTP\/1\.1 408 Request Timeout\r\nConnection: close\r\n\r\n$/, JSON.stringify(c.got().slice(-80)));
      }
    } finally {
      for (const c of clients) {
        clearInterval(c.tick);
        c.socket.destroy();
      }
    }
    assert.ok(await waitFor(async () => (await fdCount(gw.proc.pid!)) <= before, 5000), `descriptors: ${await fdCount(gw.proc.pid!)}, before ${before}`);
  });

  test('a download that takes longer than the request timeout and the stall deadline completes (the client reads slowly but steadily)', async (t) => {
    const started = performance.now();
    const r = await curl([...auth(), '--limit-rate', '2M', '-o', '-', url('medium')]);
    const ms = performance.now() - started;
    t.diagnostic(`8 MiB at 2 MiB/s in ${ms.toFixed(0)} ms`);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.length, 8 * MiB);
    assert.ok(ms > 3000, `the download took only ${ms.toFixed(0)} ms: not longer than the 2 s timeouts`);
  });

  for (const [store, name] of [
    ['filesystem store, reader path (src/server/send.ts)', 'big'],
    ['S3, stream pipeline (src/server/download.ts)', 'bigs3'],
  ] as const) {
    test(`${store}: clients that stop reading are reset after the stall deadline; descriptors back at the baseline, twice over`, async (t) => {
      const N = 12;
      // Warm: the store's client and its kept-alive upstream connection exist before the baseline.
      assert.equal((await curl([...auth(), '-r', '0-1023', '-o', '/dev/null', '-w', '%{http_code}', url(name)])).stdout.toString(), '206');
      await sleep(300);
      const baseline = await fdCount(gw.proc.pid!);
      const peaks: number[] = [];
      for (let wave = 0; wave < 2; wave++) {
        const clients = await Promise.all(
          Array.from({ length: N }, async (_, i) => {
            const { socket, connected } = await tryConnect(gw.port, ca, `127.0.0.${40 + i}`);
            assert.ok(connected);
            socket.pause(); // never reads
            socket.write(`GET /v1/namespaces/velero/backups/${name}/contents HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
            return socket;
          }),
        );
        const sent = performance.now();
        await sleep(1000);
        const held = await fdCount(gw.proc.pid!);
        assert.ok(held >= baseline + N, `the gateway holds ${held - baseline} more descriptors while ${N} downloads stall`);
        peaks.push(await rss(gw.proc.pid!));
        // Reset once the stall has lasted 2 s (after the buffers filled): all gone well within 8 s.
        assert.ok(await waitFor(async () => (await fdCount(gw.proc.pid!)) <= baseline, 8000), `descriptors ${await fdCount(gw.proc.pid!)}, baseline ${baseline}, ${((performance.now() - sent) / 1000).toFixed(1)} s after the requests`);
        t.diagnostic(`wave ${wave + 1}: ${held - baseline} descriptors held, all released ${(performance.now() - sent).toFixed(0)} ms after the requests; RSS ${(peaks[wave]! / MiB).toFixed(1)} MiB`);
        // What a client sees once it reads again: a reset connection, and fewer bytes than promised.
        const c = clients[0]!;
        let bytes = 0;
        c.on('data', (d: Buffer) => (bytes += d.length));
        const ended = new Promise<string>((resolve) => {
          c.once('error', (e: NodeJS.ErrnoException) => resolve(e.code ?? 'error'));
          c.once('end', () => resolve('end'));
          c.once('close', () => resolve('close'));
        });
        c.resume();
        const how = await ended;
        assert.notEqual(how, 'end', 'the client saw a clean end of a short transfer');
        assert.ok(bytes < BIG, `the client got ${bytes} bytes of ${BIG}`);
        for (const s of clients) s.destroy();
      }
      // RSS is shown, not asserted: what a reset download held is garbage until V8 next collects,
      // and freed memory stays in the process for reuse (bench/connections.ts); the descriptors,
      // the socket buffers and the upstream request go at once, and the caps bound the rest.
      t.diagnostic(`RSS with ${N} stalled downloads: wave 1 ${(peaks[0]! / MiB).toFixed(1)} MiB, wave 2 ${(peaks[1]! / MiB).toFixed(1)} MiB`);
      // Access lines are written when each response closes, and reach the log a moment later.
      const cut = (): number => gw.logs.filter((l) => l.msg === 'request' && l.path === `/v1/namespaces/velero/backups/${name}/contents` && l.status === 200 && l.completed === false).length;
      assert.ok(await waitFor(() => cut() >= 2 * N, 5000), `${cut()} of ${2 * N} stalled downloads are logged as not completed`);
    });
  }

  test('curl behind a reader that stops: the transfer is reset, curl fails (exit 56), never a short success', async () => {
    const before = await fdCount(gw.proc.pid!);
    const live = curlLive([...auth(), '-o', '-', url('big')]);
    // Nobody reads curl's output: its pipe fills, curl stops reading the socket, the gateway stalls.
    live.proc.stdout!.pause();
    await sleep(500);
    assert.ok(await waitFor(async () => (await fdCount(gw.proc.pid!)) <= before, 10_000), 'the stalled connection was not released');
    live.proc.stdout!.resume();
    const r = await live.done;
    assert.ok(r.code === 56 || r.code === 18, `curl exited ${String(r.code)}: ${r.stderr}`);
    assert.ok(r.stdout.length < BIG);
  });
});

describe('caps on the real process: --max-connections 24, --max-connections-per-client 8, --max-concurrent-downloads 3, --trusted-proxies 127.0.0.7', () => {
  let dir: string;
  let gw: GatewayProcess;
  let ca: Buffer;
  let token: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-rel-caps-'));
    const data = join(dir, 'data');
    await mkdir(join(data, 'backups', 'big'), { recursive: true });
    await writeFile(join(data, 'backups', 'big', 'big.tar.gz'), '');
    await truncate(join(data, 'backups', 'big', 'big.tar.gz'), 64 * MiB);
    await mkdir(join(data, 'backups', 'small'), { recursive: true });
    await writeFile(join(data, 'backups', 'small', 'small-logs.gz'), 'a small log');
    gw = await startGateway(['--mode', 'local', '--data-dir', data, '--state-dir', join(dir, 'state'), '--max-connections', '24', '--max-connections-per-client', '8', '--max-concurrent-downloads', '3', '--trusted-proxies', '127.0.0.7']);
    ca = await readFile(join(dir, 'state', 'tls.crt'));
    token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
  });

  after(async () => {
    await gw?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  const log = (from: string, headers = ''): Promise<number | undefined> =>
    RawConnection.open(gw.port, { ca, localAddress: from } as { ca: Buffer }).then(async (c) => {
      const r = await c.exchange(`GET /v1/namespaces/velero/backups/small/log HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n${headers}Connection: close\r\n\r\n`);
      c.destroy();
      return r?.status;
    });

  const metric = async (limit: string): Promise<number> => {
    const r = await curl(['--cacert', join(dir, 'state', 'tls.crt'), `https://127.0.0.1:${gw.metricsPort}/metrics`]);
    return Number(new RegExp(`^velero_download_server_limited_total\\{limit="${limit}"\\} (\\d+)$`, 'm').exec(r.stdout.toString())?.[1] ?? 0);
  };

  test('connections over the per-client cap are closed before the handshake while other clients are served; a trusted proxy is exempt; the global cap holds for everyone; descriptors back at the baseline', async () => {
    const before = await fdCount(gw.proc.pid!);
    const open: TLSSocket[] = [];
    try {
      for (let i = 0; i < 8; i++) {
        const c = await tryConnect(gw.port, ca, '127.0.0.2');
        assert.ok(c.connected, `connection ${i + 1} of 8 from one client was refused`);
        open.push(c.socket);
      }
      const ninth = await tryConnect(gw.port, ca, '127.0.0.2');
      assert.equal(ninth.connected, false, 'a ninth connection from one client got through');
      assert.ok(ninth.ms < 1000, `refused after ${ninth.ms.toFixed(0)} ms`);
      assert.equal(await log('127.0.0.3'), 200, 'another client is not served while one is at its cap');
      assert.ok((await metric('max-connections-per-client')) >= 1);

      // One of the eight leaves: that client may connect again.
      open.shift()!.destroy();
      assert.ok(await waitFor(async () => (await tryConnect(gw.port, ca, '127.0.0.2').then((c) => (open.push(c.socket), c.connected))), 3000), 'a client back under its cap is still refused');

      for (let i = 0; i < 12; i++) {
        const c = await tryConnect(gw.port, ca, '127.0.0.7');
        assert.ok(c.connected, `the trusted proxy's connection ${i + 1} was refused (it is exempt from the per-client cap)`);
        open.push(c.socket);
      }
      // 8 + 12 open; four more reach the global cap of 24.
      for (let i = 0; i < 4; i++) {
        const c = await tryConnect(gw.port, ca, `127.0.0.${10 + i}`);
        assert.ok(c.connected);
        open.push(c.socket);
      }
      for (const from of ['127.0.0.14', '127.0.0.7']) {
        const c = await tryConnect(gw.port, ca, from);
        assert.equal(c.connected, false, `${from} got a 25th connection past the global cap`);
        assert.ok(c.ms < 1000);
      }
      assert.ok((await metric('max-connections')) >= 2);
    } finally {
      for (const s of open) s.destroy();
    }
    assert.ok(await waitFor(async () => (await fdCount(gw.proc.pid!)) <= before, 5000), `descriptors: ${await fdCount(gw.proc.pid!)}, before ${before}`);
    assert.equal(await log('127.0.0.2'), 200);
  });

  test('downloads over the cap get 503 with Retry-After and a Status body; a slot is free again once a download ends', async () => {
    const before = await fdCount(gw.proc.pid!);
    const slow = Array.from({ length: 3 }, () => curlLive(['--cacert', join(dir, 'state', 'tls.crt'), '-H', `Authorization: Bearer ${token}`, '--limit-rate', '200K', '-o', '/dev/null', `${gw.url}/v1/namespaces/velero/backups/big/contents`]));
    try {
      assert.ok(await waitFor(async () => (await fdCount(gw.proc.pid!)) >= before + 3, 5000));
      await sleep(300);
      const r = await curl(['--cacert', join(dir, 'state', 'tls.crt'), '-H', `Authorization: Bearer ${token}`, '-i', `${gw.url}/v1/namespaces/velero/backups/small/log`]);
      const text = r.stdout.toString('latin1');
      assert.match(text, /^HTTP\/1\.1 503 /);
      assert.match(text, /\r\nRetry-After: 5\r\n/i);
      const body = JSON.parse(text.slice(text.indexOf('\r\n\r\n') + 4)) as Record<string, unknown>;
      assert.equal(body.kind, 'Status');
      assert.equal(body.code, 503);
      assert.equal(body.reason, 'ServiceUnavailable');
      assert.match(String(body.message), /--max-concurrent-downloads/);
      assert.ok((await metric('max-concurrent-downloads')) >= 1);
      // Strangers never hold a slot: their request ends at authentication, with a 401, not a 503.
      const anon = await curl(['--cacert', join(dir, 'state', 'tls.crt'), '-o', '/dev/null', '-w', '%{http_code}', `${gw.url}/v1/namespaces/velero/backups/small/log`]);
      assert.equal(anon.stdout.toString(), '401');
    } finally {
      slow[0]!.proc.kill();
    }
    assert.ok(await waitFor(async () => (await log('127.0.0.5')) === 200, 5000), 'a slot did not come back after a download ended');
    for (const s of slow) s.proc.kill();
    await Promise.all(slow.map((s) => s.done));
    assert.ok(await waitFor(async () => (await fdCount(gw.proc.pid!)) <= before, 5000));
  });

  test('X-Forwarded-For names the client only when the peer is a trusted proxy; a spoofed one is ignored', async () => {
    const send = async (from: string, xff: string): Promise<Record<string, unknown>[]> => {
      const id = `xff-${from}-${Math.random().toString(36).slice(2)}`;
      assert.equal(await log(from, `X-Forwarded-For: ${xff}\r\nX-Request-Id: ${id}\r\n`), 200);
      assert.ok(await waitFor(() => gw.logs.filter((l) => l.requestId === id).length === 2, 3000));
      return gw.logs.filter((l) => l.requestId === id);
    };
    const cases: [from: string, xff: string, remote: string][] = [
      ['127.0.0.7', '203.0.113.9', '203.0.113.9'],
      ['127.0.0.7', '198.51.100.4, 203.0.113.9, 127.0.0.7', '203.0.113.9'],
      ['127.0.0.7', 'not-an-address', '127.0.0.7'],
      ['127.0.0.8', '203.0.113.9', '127.0.0.8'],
      ['127.0.0.8', '203.0.113.9, 127.0.0.7', '127.0.0.8'],
    ];
    for (const [from, xff, remote] of cases) {
      const lines = await send(from, xff);
      for (const l of lines) assert.equal(l.remote, remote, `${l.msg as string} line from ${from} with X-Forwarded-For ${xff}`);
      assert.deepEqual(lines.map((l) => l.msg).sort(), ['audit', 'request']);
    }
  });
});

describe('the listener in-process: a body that never completes gets 408; a refused request gets its Status', () => {
  let pki: TestPki;
  let server: Server;

  before(async () => {
    pki = await createTestPki();
    const app = express();
    // Reads the whole body before answering, as a webhook does.
    app.post('/echo', (req, res) => {
      let n = 0;
      req.on('data', (d: Buffer) => (n += d.length));
      req.on('end', () => res.send(String(n)));
    });
    server = await listenHttps(app, { key: pki.key, cert: pki.cert, minVersion: 'TLSv1.2' }, { host: '127.0.0.1', port: 0 }, { requestTimeoutMs: 1000 });
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  test('the request timeout is in force (and the header timeout fits inside it), the receipt is cut with 408 and the connection closed, a prompt body is served', async () => {
    assert.equal(server.requestTimeout, 1000);
    assert.ok(server.headersTimeout <= server.requestTimeout);
    const port = (server.address() as { port: number }).port;
    const prompt = await RawConnection.open(port, { ca: pki.caCert });
    const ok = await prompt.exchange('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 5\r\nConnection: close\r\n\r\nhello');
    assert.equal(ok?.status, 200);
    assert.equal(ok.body.toString(), '5');

    const { socket, connected } = await tryConnect(port, pki.caCert, '127.0.0.1');
    assert.ok(connected);
    let got = '';
    socket.on('data', (d: Buffer) => (got += d.toString('latin1')));
    const started = performance.now();
    socket.write('POST /echo HTTP/1.1\r\nHost: x\r\nContent-Length: 3000000\r\n\r\n');
    const tick = setInterval(() => socket.writable && socket.write('x'), 100);
    try {
      await Promise.race([closed(socket), sleep(5000)]);
    } finally {
      clearInterval(tick);
    }
    const ms = performance.now() - started;
    assert.ok(socket.destroyed, 'the trickled body was still being received 5 s after a 1 s request timeout');
    assert.equal(got, 'HTTP/1.1 408 Request Timeout\r\nConnection: close\r\n\r\n');
    assert.ok(ms >= 950 && ms < 3000, `cut after ${ms.toFixed(0)} ms`);
  });
  test('a head over the limit and a malformed request get their answer with a Status body on every fresh connection, never a reset in its place', async () => {
    const port = (server.address() as { port: number }).port;
    // A fresh full handshake, then a head four times Node's 16 KiB limit in one write: the answer must
    // outrun the close (a close with unread bytes is a reset, which can discard it).
    const big = `GET /echo HTTP/1.1\r\nHost: x\r\n${Array.from({ length: 64 }, (_, i) => `X-Pad-${i}: ${'p'.repeat(1000)}\r\n`).join('')}\r\n`;
    const statuses = await Promise.all(
      Array.from({ length: 24 }, async (_, i) => {
        const c = await RawConnection.open(port, { ca: pki.caCert });
        try {
          const r = await c.exchange(i % 2 ? big : 'GET /echo HTTP/9.9 x\r\nHost: x\r\n\r\n', { timeoutMs: 5000 });
          return r && { status: r.status, body: JSON.parse(r.body.toString()) as { kind: string; code: number } };
        } finally {
          c.destroy();
        }
      }),
    );
    for (const [i, r] of statuses.entries()) {
      assert.ok(r, `connection ${i}: closed without an answer`);
      assert.equal(r.status, i % 2 ? 431 : 400);
      assert.equal(r.body.kind, 'Status');
      assert.equal(r.body.code, r.status);
    }
  });
});

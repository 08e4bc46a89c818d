/**
 * Reliability: slow clients and slowloris.
 *
 * What the real process does was measured first (Node 24, listenHttps's settings): a TCP connection
 * that never starts TLS is closed after handshakeTimeout (10 s); a TLS connection that sends a partial
 * request head, trickles header lines, or sends nothing, gets a 408 and is closed after
 * headersTimeout (20 s) as seen by Node's connection sweep, which runs every connectionsCheckingInterval
 * (Node's default, 30 s): 20 to 50 s in all (33 s when measured). That is too long for `npm test`, and
 * the header and handshake timeouts are not flags, so (the request-receipt timeout, the stall deadline
 * and the connection caps are flags: test/reliability/connection-limits.test.ts sets them short):
 * - the real process is tested for the handshake timeout (10 s, in parallel with the rest) and for
 *   1,000 concurrent idle TLS connections not delaying a new request (< 1 s); the same 10 s
 *   from the accept bound a client that sends one byte of a handshake and stops, and one that speaks
 *   plain HTTP (answered with a 400) and never closes;
 * - the server listenHttps builds is checked in-process for its configured timeouts, and the header
 *   timeout is shown effective on that same server with shorter values set through the server's own
 *   properties (headersTimeout, connectionsCheckingInterval) and a re-listen, which is how Node applies
 *   the sweep interval; the keep-alive (idle) timeout likewise.
 */
import assert from 'node:assert/strict';
import { once } from 'node:events';
import { readFile, mkdtemp, rm } from 'node:fs/promises';
import type { Server } from 'node:https';
import { connect as netConnect } from 'node:net';
import type { Socket } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { connect as tlsConnect } from 'node:tls';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import express from 'express';
import { listenHttps } from '../../src/server/listener.ts';
import { startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { RawConnection, fdCount, waitFor } from '../support/reliability.ts';
import { createTestPki } from '../support/test-ca.ts';
import type { TestPki } from '../support/test-ca.ts';

const IDLE = 1000;

/** The soft limit of open files of this process, from /proc. */
async function openFilesLimit(): Promise<number> {
  const limits = await readFile('/proc/self/limits', 'utf8');
  const m = /^Max open files\s+(\d+|unlimited)/m.exec(limits);
  return m?.[1] === 'unlimited' ? Infinity : Number(m?.[1]);
}

function closedWithin(socket: Socket): Promise<number> {
  const started = Date.now();
  return new Promise((resolve) => socket.once('close', () => resolve(Date.now() - started)));
}

describe('slow and idle clients against the real process', () => {
  let dir: string;
  let gw: GatewayProcess;
  let ca: Buffer;
  let token: string;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-rel-slow-'));
    gw = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state')]);
    ca = await readFile(join(dir, 'state', 'tls.crt'));
    token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
  });

  after(async () => {
    await gw?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test(`${IDLE} concurrent idle TLS connections do not stop a new request from being served promptly`, async (t) => {
    // A connection that never even starts TLS, timed alongside (handshakeTimeout: 10 s).
    const noHello = netConnect(gw.port, '127.0.0.1');
    noHello.on('error', () => undefined);
    const noHelloClosed = closedWithin(noHello);
    // A handshake record's first byte, then silence: the handshake deadline still counts from the accept.
    const oneByte = netConnect(gw.port, '127.0.0.1', () => oneByte.write(Buffer.from([0x16])));
    oneByte.on('error', () => undefined);
    const oneByteClosed = closedWithin(oneByte);
    // Plain HTTP that is answered but never closes its side, and keeps sending: the server drops what
    // it sends until the deadline destroys the connection, and the next write then fails.
    const plain = netConnect({ port: gw.port, host: '127.0.0.1', allowHalfOpen: true }, () => plain.write('GET / HTTP/1.1\r\nHost: x\r\n'));
    plain.on('error', () => undefined);
    let plainReply = '';
    plain.on('data', (c: Buffer) => (plainReply += c.toString()));
    const trickle = setInterval(() => plain.write('X-More: still sending\r\n'), 200);
    plain.once('close', () => clearInterval(trickle));
    const plainClosed = closedWithin(plain);

    const limit = await openFilesLimit();
    assert.ok(limit >= IDLE + 500, `this test needs more than ${IDLE + 500} open files (ulimit -n is ${limit})`);
    const before = await fdCount(gw.proc.pid!);
    // The three above hold a descriptor each in `before` until their 10 s deadline, which a loaded
    // machine can reach while the idle connections are still being opened.
    let deadlined = 0;
    for (const s of [noHello, oneByte, plain]) s.once('close', () => deadlined++);
    const idle: TLSSocket[] = [];
    try {
      // Opened in waves, so the listen backlog never overflows.
      for (let i = 0; i < IDLE; i += 100) {
        await Promise.all(
          Array.from({ length: Math.min(100, IDLE - i) }, async () => {
            // From 25 client addresses: one address may hold 64 connections (--max-connections-per-client).
            const s = tlsConnect({ host: '127.0.0.1', port: gw.port, ca, servername: 'localhost', localAddress: `127.0.0.${2 + (idle.length % 25)}` } as ConnectionOptions);
            s.on('error', () => undefined);
            idle.push(s);
            await once(s, 'secureConnect');
          }),
        );
      }
      assert.ok(await waitFor(async () => (await fdCount(gw.proc.pid!)) >= before + IDLE - deadlined, 5000), 'the gateway does not hold the idle connections');
      assert.ok(idle.every((s) => !s.destroyed), 'an idle connection was closed early');

      const times: number[] = [];
      const log = await readFile(join(dir, 'data', 'backups', 'demo-backup', 'demo-backup-logs.gz'));
      for (let i = 0; i < 3; i++) {
        const started = performance.now();
        const c = await RawConnection.open(gw.port, { ca });
        const r = await c.exchange(`GET /v1/namespaces/velero/backups/demo-backup/log HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nConnection: close\r\n\r\n`);
        times.push(performance.now() - started);
        c.destroy();
        assert.equal(r?.status, 200);
        assert.ok(r.body.equals(log));
      }
      t.diagnostic(`with ${IDLE} idle connections: new connection + request in ${times.map((x) => x.toFixed(0)).join(', ')} ms`);
      assert.ok(Math.max(...times) < 1000, `new requests took ${times.map((t) => t.toFixed(0)).join(', ')} ms with ${IDLE} idle connections open`);
    } finally {
      for (const s of idle) s.destroy();
    }
    // A thousand closes for the gateway to take in: 15 s, not 5 (a loaded suite once took longer; the
    // check is that every descriptor goes, not how fast).
    const released = await waitFor(async () => (await fdCount(gw.proc.pid!)) <= before + 1, 15_000);
    assert.ok(released, `the idle connections were not released: ${await fdCount(gw.proc.pid!)} descriptors open, ${before} before them`);

    const ms = await noHelloClosed;
    t.diagnostic(`a connection without a TLS handshake was closed after ${ms} ms`);
    assert.ok(ms >= 9000 && ms < 13_000, `a connection without a TLS handshake was closed after ${ms} ms (handshakeTimeout is 10 s)`);
    const oneByteMs = await oneByteClosed;
    assert.ok(oneByteMs >= 9000 && oneByteMs < 13_000, `a connection that sent one byte of a handshake was closed after ${oneByteMs} ms`);
    const plainMs = await plainClosed;
    t.diagnostic(`plain HTTP that never closed: answered, then closed after ${plainMs} ms`);
    assert.match(plainReply, /^HTTP\/1\.1 400 Bad Request\r\n[\s\S]*This is an HTTPS port/);
    assert.ok(plainMs >= 9000 && plainMs < 13_000, `plain HTTP that never closed was closed after ${plainMs} ms`);
  });
});

describe('the server listenHttps builds: configured timeouts, and the header timeout at work', () => {
  let pki: TestPki;
  let server: Server;

  before(async () => {
    pki = await createTestPki();
    const app = express();
    app.get('/ok', (_req, res) => {
      res.send('ok');
    });
    server = await listenHttps(app, { key: pki.key, cert: pki.cert, minVersion: 'TLSv1.2' }, { host: '127.0.0.1', port: 0 });
  });

  after(async () => {
    server.closeAllConnections();
    await new Promise((r) => server.close(r));
  });

  test('handshake 10 s, request head 20 s, whole request 30 s, keep-alive 65 s, no cap on a whole (long) download', () => {
    assert.equal(server.headersTimeout, 20_000);
    assert.equal(server.keepAliveTimeout, 65_000);
    // Receipt of the request only: a download longer than this completes (connection-limits.test.ts).
    assert.equal(server.requestTimeout, 30_000);
    assert.equal(server.timeout, 0, 'no idle cap on a socket while a response streams to a slow reader');
    const handshake = Object.getOwnPropertySymbols(server).find((s) => s.description === 'handshake-timeout');
    assert.ok(handshake, 'Node keeps the handshake timeout under this symbol');
    assert.equal((server as unknown as Record<symbol, unknown>)[handshake], 10_000);
  });

  test('a partial head, a trickled head and a silent connection get 408 and are closed; a served one idles out after keep-alive', async () => {
    // Shorter values through the server's own properties; the sweep interval applies on (re)listen.
    const port = (server.address() as { port: number }).port;
    await new Promise((r) => server.close(r));
    server.headersTimeout = 1000;
    server.keepAliveTimeout = 500;
    (server as unknown as { connectionsCheckingInterval: number }).connectionsCheckingInterval = 200;
    server.listen(port, '127.0.0.1');
    await once(server, 'listening');

    const open = async (): Promise<{ s: TLSSocket; got: () => string; closed: Promise<number> }> => {
      const s = tlsConnect({ host: '127.0.0.1', port, ca: pki.caCert, servername: 'localhost' });
      s.on('error', () => undefined);
      let got = '';
      s.on('data', (d: Buffer) => (got += d.toString('latin1')));
      await once(s, 'secureConnect');
      return { s, got: () => got, closed: closedWithin(s) };
    };
    const partial = await open();
    partial.s.write('GET /ok HTTP/1.1\r\nHost: x\r\n');
    const trickle = await open();
    trickle.s.write('GET /ok HTTP/1.1\r\n');
    const tick = setInterval(() => trickle.s.write('X-Slow: 1\r\n'), 200);
    const silent = await open();
    try {
      const complete = await RawConnection.open(port, { ca: pki.caCert });
      const completeClosed = closedWithin(complete.socket);
      const r = await complete.exchange('GET /ok HTTP/1.1\r\nHost: x\r\n\r\n');
      assert.equal(r?.status, 200);
      const idleMs = await Promise.race([completeClosed, new Promise<number>((res) => setTimeout(() => res(-1), 3000))]);
      assert.ok(idleMs >= 0, 'a kept-alive connection was not closed 3 s after a 0.5 s keep-alive timeout');
      for (const [name, c] of Object.entries({ partial, trickle, silent })) {
        const ms = await Promise.race([c.closed, new Promise<number>((r) => setTimeout(() => r(-1), 4000))]);
        assert.ok(ms >= 0, `${name}: still open 4 s after a 1 s header timeout`);
        assert.match(c.got(), /^HTTP\/1\.1 408 /, `${name}: ${JSON.stringify(c.got().slice(0, 40))}`);
      }
    } finally {
      clearInterval(tick);
      for (const c of [partial, trickle, silent]) c.s.destroy();
    }
  });
});

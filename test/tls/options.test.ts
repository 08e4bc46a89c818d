import assert from 'node:assert/strict';
import { createServer } from 'node:https';
import type { ServerOptions } from 'node:https';
import tls from 'node:tls';
import type { ConnectionOptions } from 'node:tls';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { generateSelfSigned } from '../../src/tls/generate.ts';
import { MIN_TLS_VERSION, secureContextOptions, tlsServerOptions } from '../../src/tls/options.ts';
import type { CertificatePair } from '../../src/tls/types.ts';
import { closeServer, listen, openTls } from './helpers.ts';

// OpenSSL 3's default security level already rules out TLS 1.0/1.1 handshakes. The client (and, where
// said, the server) lower it so that only the protocol floor in our options can be what refuses them.
const WEAK_CIPHERS = 'DEFAULT@SECLEVEL=0';
const TLS11_CLIENT: ConnectionOptions = { minVersion: 'TLSv1.1', maxVersion: 'TLSv1.1', ciphers: WEAK_CIPHERS };

async function startServer(t: TestContext, opts: ServerOptions): Promise<number> {
  const server = createServer(opts, (_req, res) => res.end('ok'));
  const port = await listen(server);
  t.after(() => closeServer(server));
  return port;
}

async function protocolOf(port: number, pair: CertificatePair, client: ConnectionOptions): Promise<string | null> {
  const socket = await openTls(port, { ca: pair.certPem, ...client });
  try {
    return socket.getProtocol();
  } finally {
    socket.destroy();
  }
}

const refusedForProtocol = (err: NodeJS.ErrnoException) => {
  assert.match(String(err.code), /PROTOCOL_VERSION|UNSUPPORTED_PROTOCOL/, err.message);
  return true;
};

describe('tlsServerOptions', () => {
  test('carries the pair and a TLS 1.2 floor, and no ceiling', async () => {
    const pair = await generateSelfSigned({ hosts: ['localhost'] });
    for (const opts of [tlsServerOptions(pair), secureContextOptions(pair)]) {
      assert.equal(opts.cert, pair.certPem);
      assert.equal(opts.key, pair.keyPem);
      assert.equal(opts.minVersion, 'TLSv1.2');
      assert.equal(opts.maxVersion, undefined);
    }
    assert.equal(MIN_TLS_VERSION, 'TLSv1.2');
  });

  test('a server built from them refuses a TLS 1.1 client and serves TLS 1.2 and 1.3', async (t) => {
    const pair = await generateSelfSigned({ hosts: ['localhost', '127.0.0.1'] });

    // The control: this client can complete a TLS 1.1 handshake with a server that allows it.
    const weak = await startServer(t, { cert: pair.certPem, key: pair.keyPem, minVersion: 'TLSv1', ciphers: WEAK_CIPHERS });
    assert.equal(await protocolOf(weak, pair, TLS11_CLIENT), 'TLSv1.1');

    const port = await startServer(t, tlsServerOptions(pair));
    await assert.rejects(protocolOf(port, pair, TLS11_CLIENT), refusedForProtocol);
    assert.equal(await protocolOf(port, pair, { maxVersion: 'TLSv1.2' }), 'TLSv1.2');
    assert.equal(await protocolOf(port, pair, {}), 'TLSv1.3');
  });

  test('the floor holds when the process default is lowered, weak ciphers are added, and after setSecureContext', async (t) => {
    const saved = tls.DEFAULT_MIN_VERSION;
    tls.DEFAULT_MIN_VERSION = 'TLSv1';
    t.after(() => {
      tls.DEFAULT_MIN_VERSION = saved;
    });
    const a = await generateSelfSigned({ hosts: ['a.test', '127.0.0.1'] });
    const b = await generateSelfSigned({ hosts: ['b.test', '127.0.0.1'] });

    const server = createServer({ ...tlsServerOptions(a), ciphers: WEAK_CIPHERS }, (_req, res) => res.end('ok'));
    const port = await listen(server);
    t.after(() => closeServer(server));
    await assert.rejects(protocolOf(port, a, TLS11_CLIENT), refusedForProtocol);

    // setSecureContext rebuilds the context from its argument alone: a reload must carry the floor again.
    server.setSecureContext({ ...tlsServerOptions(b), ciphers: WEAK_CIPHERS });
    assert.equal(await protocolOf(port, b, { maxVersion: 'TLSv1.2' }), 'TLSv1.2');
    await assert.rejects(protocolOf(port, b, TLS11_CLIENT), refusedForProtocol);
  });
});

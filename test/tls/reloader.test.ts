import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, rename, symlink, utimes, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { Server } from 'node:https';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import type { TestContext } from 'node:test';
import { pathToFileURL } from 'node:url';
import { CertificateError } from '../../src/tls/errors.ts';
import { certificateFingerprint } from '../../src/tls/fingerprint.ts';
import { generateSelfSigned } from '../../src/tls/generate.ts';
import { tlsServerOptions } from '../../src/tls/options.ts';
import { CertificateReloader } from '../../src/tls/reloader.ts';
import type { CertificatePair, LoadedCertificate } from '../../src/tls/types.ts';
import {
  closeServer,
  execFileAsync,
  httpGetOver,
  listen,
  openTls,
  peerFingerprint,
  removeDir,
  replaceFile,
  servedFingerprint,
  sleep,
  tempDir,
  waitFor,
} from './helpers.ts';

const INTERVAL_MS = 50;

interface Fixture {
  dir: string;
  certFile: string;
  keyFile: string;
}

async function fixture(t: TestContext, pair?: CertificatePair): Promise<Fixture> {
  const dir = await tempDir();
  t.after(() => removeDir(dir));
  const certFile = join(dir, 'tls.crt');
  const keyFile = join(dir, 'tls.key');
  if (pair) {
    await writeFile(certFile, pair.certPem);
    await writeFile(keyFile, pair.keyPem);
  }
  return { dir, certFile, keyFile };
}

// Each pair gets its own subject: OpenSSL looks trust anchors up by subject name, so a client trusting
// two self-signed certificates with the same CN may pick the wrong one and fail to verify.
let pairs = 0;
const newPair = () => generateSelfSigned({ hosts: [`pair-${++pairs}.test`, '127.0.0.1'] });

/** Starts a reloader recording its changes and errors; stopped when the test ends. */
async function startReloader(t: TestContext, f: Fixture, intervalMs = INTERVAL_MS) {
  const changes: LoadedCertificate[] = [];
  const errors: CertificateError[] = [];
  const reloader = await CertificateReloader.start(f.certFile, f.keyFile, { intervalMs, onError: (e) => errors.push(e) });
  t.after(() => reloader.stop());
  reloader.on('change', (c) => changes.push(c));
  return { reloader, changes, errors };
}

/** A real HTTPS server wired to the reloader the way the product wires it. */
async function serve(t: TestContext, reloader: CertificateReloader): Promise<{ server: Server; port: number }> {
  const server = createServer(tlsServerOptions(reloader.current), (req, res) => {
    const body = `hello ${req.url}`;
    res.writeHead(200, { 'content-length': Buffer.byteLength(body) }).end(body);
  });
  reloader.on('change', (c) => server.setSecureContext(tlsServerOptions(c)));
  const port = await listen(server);
  t.after(() => closeServer(server));
  return { server, port };
}

describe('CertificateReloader', () => {
  test('first load: serves the pair, exposes its fingerprint and notAfter', async (t) => {
    const a = await newPair();
    const f = await fixture(t, a);
    const { reloader } = await startReloader(t, f);

    assert.equal(reloader.current.certPem, a.certPem);
    assert.equal(reloader.current.keyPem, a.keyPem);
    assert.equal(reloader.current.fingerprint, certificateFingerprint(a.certPem));
    assert.ok(reloader.current.notAfter.getTime() > Date.now() + 300 * 86_400_000);

    const { port } = await serve(t, reloader);
    assert.equal(await servedFingerprint(port, { ca: a.certPem }), reloader.current.fingerprint);
  });

  test('first load must succeed: missing, mismatched or garbage files reject, naming the files', async (t) => {
    const a = await newPair();
    const b = await newPair();
    const f = await fixture(t);
    const expectError = (reason: string, files: string[]) => (err: unknown) => {
      assert.ok(err instanceof CertificateError, String(err));
      assert.equal(err.reason, reason, err.message);
      for (const file of files) assert.ok(err.message.includes(file), err.message);
      return true;
    };

    await writeFile(f.keyFile, a.keyPem);
    await assert.rejects(CertificateReloader.start(f.certFile, f.keyFile), expectError('CertificateUnreadable', [f.certFile]));

    await writeFile(f.certFile, b.certPem);
    await assert.rejects(CertificateReloader.start(f.certFile, f.keyFile), expectError('KeyMismatch', [f.certFile, f.keyFile]));

    await writeFile(f.certFile, 'garbage');
    await assert.rejects(CertificateReloader.start(f.certFile, f.keyFile), expectError('InvalidCertificate', [f.certFile]));
  });

  test('swaps for new connections while a connection opened before stays alive; garbage and half-written pairs are ignored', async (t) => {
    const a = await newPair();
    const f = await fixture(t, a);
    const { reloader, changes, errors } = await startReloader(t, f);
    const { port } = await serve(t, reloader);
    const fpA = certificateFingerprint(a.certPem);

    const early = await openTls(port, { ca: a.certPem });
    t.after(() => early.destroy());
    assert.equal(peerFingerprint(early), fpA);
    assert.equal(await httpGetOver(early, '/before'), 'hello /before');

    // Both files renamed into place back to back, as cert-manager or an operator would.
    const b = await newPair();
    const fpB = certificateFingerprint(b.certPem);
    await replaceFile(f.keyFile, b.keyPem);
    await replaceFile(f.certFile, b.certPem);
    await waitFor('the new certificate on a new connection', () => servedFingerprint(port, { ca: [a.certPem, b.certPem] }), (fp) => fp === fpB);
    // A client trusting only the new certificate verifies it, hostname (IP SAN) included.
    assert.equal(await servedFingerprint(port, { ca: b.certPem }), fpB);
    assert.equal(reloader.current.fingerprint, fpB);
    assert.deepEqual(changes.map((c) => c.fingerprint), [fpB]);

    assert.equal(early.destroyed, false);
    assert.equal(peerFingerprint(early), fpA);
    assert.equal(await httpGetOver(early, '/after'), 'hello /after');

    // Garbage: refused, reported, the served certificate stays.
    const errorsBefore = errors.length;
    await replaceFile(f.certFile, 'garbage that is not PEM\n');
    await waitFor('an error report for the garbage', () => errors.length, (n) => n > errorsBefore);
    const garbageError = errors.at(-1)!;
    assert.equal(garbageError.reason, 'InvalidCertificate');
    assert.ok(garbageError.message.includes(f.certFile), garbageError.message);
    assert.ok(garbageError.message.includes(fpB), 'the report says which certificate is still served');
    assert.equal(reloader.current.fingerprint, fpB);
    assert.equal(await servedFingerprint(port, { ca: b.certPem }), fpB);

    // Half-written: a new certificate next to the old key is refused ...
    const c = await newPair();
    const fpC = certificateFingerprint(c.certPem);
    const errorsMid = errors.length;
    await replaceFile(f.certFile, c.certPem);
    await waitFor('an error report for the mismatched pair', () => errors.length, (n) => n > errorsMid);
    assert.equal(errors.at(-1)!.reason, 'KeyMismatch');
    assert.equal(await servedFingerprint(port, { ca: b.certPem }), fpB);

    // ... and retried when the key follows.
    await replaceFile(f.keyFile, c.keyPem);
    await waitFor('the completed pair on a new connection', () => servedFingerprint(port, { ca: [b.certPem, c.certPem] }), (fp) => fp === fpC);
    assert.equal(reloader.current.fingerprint, fpC);
    assert.deepEqual(changes.map((x) => x.fingerprint), [fpB, fpC]);
  });

  test('reports one broken state once, not on every poll that sees it', async (t) => {
    const a = await newPair();
    const f = await fixture(t, a);
    const { reloader, errors } = await startReloader(t, f);

    await replaceFile(f.certFile, 'garbage\n');
    await waitFor('an error report', () => errors.length, (n) => n > 0);
    for (let i = 0; i < 3; i++) {
      const later = new Date(Date.now() + (i + 1) * 60_000);
      await utimes(f.certFile, later, later);
      await sleep(INTERVAL_MS * 3);
    }
    assert.equal(await reloader.reload(), false);
    assert.equal(errors.length, 1, errors.map((e) => e.message).join('\n'));
    assert.equal(reloader.current.fingerprint, certificateFingerprint(a.certPem));
  });

  test('does not swap or report when files are touched but their bytes are unchanged', async (t) => {
    const a = await newPair();
    const f = await fixture(t, a);
    const { reloader, changes, errors } = await startReloader(t, f);

    const future = new Date(Date.now() + 60_000);
    await utimes(f.certFile, future, future);
    await replaceFile(f.keyFile, a.keyPem); // new inode, same bytes
    await sleep(INTERVAL_MS * 10);

    assert.deepEqual(changes, []);
    assert.deepEqual(errors, []);
    assert.equal(await reloader.reload(), false);
  });

  test('follows a Kubernetes-style ..data symlink swap', async (t) => {
    const a = await newPair();
    const b = await newPair();
    const f = await fixture(t);
    const writeGeneration = async (name: string, pair: CertificatePair) => {
      await mkdir(join(f.dir, name));
      await writeFile(join(f.dir, name, 'tls.crt'), pair.certPem);
      await writeFile(join(f.dir, name, 'tls.key'), pair.keyPem);
    };
    await writeGeneration('..gen1', a);
    await symlink('..gen1', join(f.dir, '..data'));
    await symlink(join('..data', 'tls.crt'), f.certFile);
    await symlink(join('..data', 'tls.key'), f.keyFile);
    const { reloader, changes } = await startReloader(t, f);
    assert.equal(reloader.current.fingerprint, certificateFingerprint(a.certPem));

    // What the kubelet does: new directory, new symlink, renamed over ..data in one step.
    await writeGeneration('..gen2', b);
    await symlink('..gen2', join(f.dir, '..data_tmp'));
    await rename(join(f.dir, '..data_tmp'), join(f.dir, '..data'));

    const fpB = certificateFingerprint(b.certPem);
    await waitFor('the swapped certificate', () => reloader.current.fingerprint, (fp) => fp === fpB);
    assert.deepEqual(changes.map((c) => c.fingerprint), [fpB]);
  });

  test('reload() checks at once, and reports true only when it swapped', async (t) => {
    const f = await fixture(t, await newPair());
    const { reloader, changes } = await startReloader(t, f, 60_000);
    const b = await newPair();
    await writeFile(f.keyFile, b.keyPem);
    await writeFile(f.certFile, b.certPem);

    assert.equal(await reloader.reload(), true);
    assert.equal(reloader.current.fingerprint, certificateFingerprint(b.certPem));
    assert.equal(await reloader.reload(), false);
    assert.equal(changes.length, 1);
  });

  test('a throwing listener is reported and does not stop the swap or other listeners', async (t) => {
    const f = await fixture(t, await newPair());
    const { reloader, changes, errors } = await startReloader(t, f, 60_000);
    const boom = () => {
      throw new Error('boom');
    };
    reloader.on('change', boom);
    const later: string[] = [];
    reloader.on('change', (c) => later.push(c.fingerprint));
    const b = await newPair();
    await writeFile(f.keyFile, b.keyPem);
    await writeFile(f.certFile, b.certPem);

    assert.equal(await reloader.reload(), true);
    const fpB = certificateFingerprint(b.certPem);
    assert.equal(reloader.current.fingerprint, fpB);
    assert.deepEqual(later, [fpB]);
    assert.equal(changes.length, 1);
    assert.equal(errors.length, 1);
    assert.match(errors[0]!.message, /listener failed: boom/);

    reloader.off('change', boom);
    const c = await newPair();
    await writeFile(f.keyFile, c.keyPem);
    await writeFile(f.certFile, c.certPem);
    assert.equal(await reloader.reload(), true);
    assert.equal(errors.length, 1);
  });

  test('after stop() changes are ignored', async (t) => {
    const a = await newPair();
    const f = await fixture(t, a);
    const { reloader, changes, errors } = await startReloader(t, f);
    reloader.stop();
    const b = await newPair();
    await replaceFile(f.keyFile, b.keyPem);
    await replaceFile(f.certFile, b.certPem);
    await sleep(INTERVAL_MS * 10);

    assert.deepEqual(changes, []);
    assert.deepEqual(errors, []);
    assert.equal(reloader.current.fingerprint, certificateFingerprint(a.certPem));
  });

  test('stop() lets the process exit', async (t) => {
    const f = await fixture(t, await newPair());
    const moduleUrl = pathToFileURL(join(import.meta.dirname, '../../src/tls/reloader.ts')).href;
    const script = (stop: boolean) => `
      const { CertificateReloader } = await import(${JSON.stringify(moduleUrl)});
      const r = await CertificateReloader.start(${JSON.stringify(f.certFile)}, ${JSON.stringify(f.keyFile)}, { intervalMs: 50 });
      ${stop ? 'r.stop();' : ''}
      console.log('started');`;

    const stopped = await execFileAsync(process.execPath, ['--input-type=module', '-e', script(true)], { timeout: 15_000 });
    assert.equal(stopped.stdout.trim(), 'started');

    // The control: without stop() the watchers keep the process alive.
    const child = spawn(process.execPath, ['--input-type=module', '-e', script(false)], { stdio: ['ignore', 'pipe', 'inherit'] });
    t.after(() => child.kill('SIGKILL'));
    await once(child.stdout, 'data');
    await sleep(500);
    assert.equal(child.exitCode, null, 'a reloader that was not stopped should keep its process alive');
  });
});

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { CertificateError } from '../../src/tls/errors.ts';
import { certificateFingerprint } from '../../src/tls/fingerprint.ts';
import { generateSelfSigned } from '../../src/tls/generate.ts';
import { CERT_FILE_NAME, KEY_FILE_NAME, ensureLocalCertificate } from '../../src/tls/local.ts';
import { removeDir, tempDir } from './helpers.ts';

// A permissive umask, so the modes asserted below come from the code and not from the environment.
let savedUmask: number;
before(() => {
  savedUmask = process.umask(0o022);
});
after(() => {
  process.umask(savedUmask);
});

async function snapshot(dir: string): Promise<Record<string, string>> {
  const out: Record<string, string> = {};
  for (const name of (await readdir(dir)).sort()) out[name] = await readFile(join(dir, name), 'utf8');
  return out;
}

/** Asserts `promise` rejects with a CertificateError of `reason` whose message names every file in `files`. */
async function rejectsNaming(promise: Promise<unknown>, reason: string, files: string[]): Promise<void> {
  await assert.rejects(promise, (err: unknown) => {
    assert.ok(err instanceof CertificateError, `not a CertificateError: ${String(err)}`);
    assert.equal(err.reason, reason, err.message);
    for (const f of files) assert.ok(err.message.includes(f), `message does not name ${f}: ${err.message}`);
    return true;
  });
}

describe('ensureLocalCertificate', () => {
  test('generates a pair for the loopback names, the hostname and the given hosts', async (t) => {
    const root = await tempDir();
    t.after(() => removeDir(root));
    const stateDir = join(root, 'state', 'nested');

    const got = await ensureLocalCertificate(stateDir, { hosts: ['downloads.example'] });

    assert.equal(got.generated, true);
    assert.equal(got.certFile, join(stateDir, CERT_FILE_NAME));
    assert.equal(got.keyFile, join(stateDir, KEY_FILE_NAME));
    assert.equal(await readFile(got.certFile, 'utf8'), got.certPem);
    assert.equal(await readFile(got.keyFile, 'utf8'), got.keyPem);
    assert.equal(got.fingerprint, certificateFingerprint(await readFile(got.certFile)));
    assert.deepEqual(got.missingHosts, []);

    const cert = new X509Certificate(got.certPem);
    const sans = (cert.subjectAltName ?? '').split(', ');
    assert.equal(cert.subject, 'CN=downloads.example');
    for (const dns of ['downloads.example', 'localhost', hostname().toLowerCase()]) {
      assert.ok(sans.includes(`DNS:${dns}`), `${dns} missing from ${cert.subjectAltName}`);
    }
    assert.ok(sans.includes('IP Address:127.0.0.1'), cert.subjectAltName);
    assert.equal(cert.checkIP('::1'), '::1');
    assert.equal(got.notAfter.getTime(), cert.validToDate.getTime());
  });

  test('creates the directory 0700 and writes both files 0600, leaving no temp files', async (t) => {
    const root = await tempDir();
    t.after(() => removeDir(root));
    const stateDir = join(root, 'state');

    const got = await ensureLocalCertificate(stateDir);

    assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
    assert.equal((await stat(got.certFile)).mode & 0o777, 0o600);
    assert.equal((await stat(got.keyFile)).mode & 0o777, 0o600);
    assert.deepEqual((await readdir(stateDir)).sort(), [CERT_FILE_NAME, KEY_FILE_NAME]);
  });

  test('pins the modes even under a umask that would strip the owner\'s bits', async (t) => {
    const root = await tempDir();
    t.after(() => removeDir(root));
    process.umask(0o277);
    t.after(() => process.umask(0o022));
    const stateDir = join(root, 'state');

    const got = await ensureLocalCertificate(stateDir);

    assert.equal((await stat(stateDir)).mode & 0o777, 0o700);
    assert.equal((await stat(got.certFile)).mode & 0o777, 0o600);
    assert.equal((await stat(got.keyFile)).mode & 0o777, 0o600);
  });

  test('writes into an existing directory without changing its mode', async (t) => {
    const root = await tempDir();
    t.after(() => removeDir(root));
    await mkdir(join(root, 'state'), { mode: 0o750 });

    const got = await ensureLocalCertificate(join(root, 'state'));

    assert.equal(got.generated, true);
    assert.equal((await stat(join(root, 'state'))).mode & 0o777, 0o750);
  });

  test('reuses the pair on the next call without touching the files', async (t) => {
    const root = await tempDir();
    t.after(() => removeDir(root));
    const first = await ensureLocalCertificate(root);
    const prior = await snapshot(root);
    const mtimes = [(await stat(first.certFile)).mtimeMs, (await stat(first.keyFile)).mtimeMs];

    const second = await ensureLocalCertificate(root);

    assert.equal(second.generated, false);
    assert.equal(second.fingerprint, first.fingerprint);
    assert.equal(second.certPem, first.certPem);
    assert.equal(second.keyPem, first.keyPem);
    assert.deepEqual(second.missingHosts, []);
    assert.deepEqual(await snapshot(root), prior);
    assert.deepEqual([(await stat(first.certFile)).mtimeMs, (await stat(first.keyFile)).mtimeMs], mtimes);
  });

  test('reports hosts a reused certificate does not cover, and still does not regenerate', async (t) => {
    const root = await tempDir();
    t.after(() => removeDir(root));
    const first = await ensureLocalCertificate(root);

    const again = await ensureLocalCertificate(root, { hosts: ['new.example', '10.9.8.7', 'localhost'] });

    assert.equal(again.generated, false);
    assert.equal(again.fingerprint, first.fingerprint);
    assert.deepEqual(again.missingHosts, ['new.example', '10.9.8.7']);
  });

  test('reuses files the user put there (any valid pair, not only generated ones)', async (t) => {
    const root = await tempDir();
    t.after(() => removeDir(root));
    const pair = await generateSelfSigned({ hosts: ['mine.example'] });
    await writeFile(join(root, CERT_FILE_NAME), pair.certPem);
    await writeFile(join(root, KEY_FILE_NAME), pair.keyPem);

    const got = await ensureLocalCertificate(root);

    assert.equal(got.generated, false);
    assert.equal(got.certPem, pair.certPem);
    assert.ok(got.missingHosts.includes('localhost'));
  });

  for (const lonely of [CERT_FILE_NAME, KEY_FILE_NAME]) {
    test(`refuses a lone ${lonely}, naming both files, and leaves it alone`, async (t) => {
      const root = await tempDir();
      t.after(() => removeDir(root));
      const pair = await generateSelfSigned({ hosts: ['localhost'] });
      await writeFile(join(root, lonely), lonely === CERT_FILE_NAME ? pair.certPem : pair.keyPem);
      const prior = await snapshot(root);

      await rejectsNaming(ensureLocalCertificate(root), 'CertificateFilesIncomplete', [
        join(root, CERT_FILE_NAME),
        join(root, KEY_FILE_NAME),
      ]);
      assert.deepEqual(await snapshot(root), prior);
    });
  }

  test('refuses a certificate and key that do not belong together, naming both, overwriting nothing', async (t) => {
    const root = await tempDir();
    t.after(() => removeDir(root));
    const a = await generateSelfSigned({ hosts: ['localhost'] });
    const b = await generateSelfSigned({ hosts: ['localhost'] });
    await writeFile(join(root, CERT_FILE_NAME), a.certPem);
    await writeFile(join(root, KEY_FILE_NAME), b.keyPem);
    const prior = await snapshot(root);

    await rejectsNaming(ensureLocalCertificate(root), 'KeyMismatch', [join(root, CERT_FILE_NAME), join(root, KEY_FILE_NAME)]);
    assert.deepEqual(await snapshot(root), prior);
  });

  test('refuses unparsable files, naming the bad one', async (t) => {
    const root = await tempDir();
    t.after(() => removeDir(root));
    const pair = await generateSelfSigned({ hosts: ['localhost'] });
    await writeFile(join(root, CERT_FILE_NAME), 'not a certificate\n');
    await writeFile(join(root, KEY_FILE_NAME), pair.keyPem);
    await rejectsNaming(ensureLocalCertificate(root), 'InvalidCertificate', [join(root, CERT_FILE_NAME)]);

    await writeFile(join(root, CERT_FILE_NAME), pair.certPem);
    await writeFile(join(root, KEY_FILE_NAME), 'not a key\n');
    await rejectsNaming(ensureLocalCertificate(root), 'InvalidPrivateKey', [join(root, KEY_FILE_NAME)]);
    assert.equal(await readFile(join(root, KEY_FILE_NAME), 'utf8'), 'not a key\n');
  });

  test('refuses an expired pair instead of serving it or replacing it', async (t) => {
    const root = await tempDir();
    t.after(() => removeDir(root));
    const old = await generateSelfSigned({ hosts: ['localhost'], validityDays: 30, now: new Date(Date.now() - 60 * 86_400_000) });
    await writeFile(join(root, CERT_FILE_NAME), old.certPem);
    await writeFile(join(root, KEY_FILE_NAME), old.keyPem);
    const prior = await snapshot(root);

    await rejectsNaming(ensureLocalCertificate(root), 'CertificateExpired', [join(root, CERT_FILE_NAME), join(root, KEY_FILE_NAME)]);
    assert.deepEqual(await snapshot(root), prior);
  });
});

import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { certificateFingerprint, certificateNotAfter } from '../../src/tls/fingerprint.ts';
import { generateSelfSigned } from '../../src/tls/generate.ts';
import { execFileAsync, removeDir, tempDir } from './helpers.ts';

describe('certificateFingerprint', () => {
  test('equals openssl x509 -fingerprint -sha256, lower-cased without colons', async (t) => {
    const dir = await tempDir();
    t.after(() => removeDir(dir));
    const { certPem } = await generateSelfSigned({ hosts: ['localhost'] });
    const file = join(dir, 'tls.crt');
    await writeFile(file, certPem);

    const { stdout } = await execFileAsync('openssl', ['x509', '-noout', '-fingerprint', '-sha256', '-in', file]);
    const m = /Fingerprint=([0-9A-F:]+)/i.exec(stdout);
    assert.ok(m, `unexpected openssl output: ${stdout}`);
    const expected = m[1]!.replaceAll(':', '').toLowerCase();

    const got = certificateFingerprint(certPem);
    assert.match(got, /^[0-9a-f]{64}$/);
    assert.equal(got, expected);
  });

  test('accepts PEM as string or bytes, DER and a parsed certificate alike', async () => {
    const { certPem } = await generateSelfSigned({ hosts: ['localhost'] });
    const x509 = new X509Certificate(certPem);
    const fp = certificateFingerprint(certPem);
    assert.equal(certificateFingerprint(Buffer.from(certPem)), fp);
    assert.equal(certificateFingerprint(x509.raw), fp);
    assert.equal(certificateFingerprint(x509), fp);
  });

  test('of a chain is the leaf (first) certificate, and differs between certificates', async () => {
    const leaf = await generateSelfSigned({ hosts: ['leaf.example'] });
    const other = await generateSelfSigned({ hosts: ['other.example'] });
    const leafFp = certificateFingerprint(leaf.certPem);
    assert.notEqual(leafFp, certificateFingerprint(other.certPem));
    assert.equal(certificateFingerprint(leaf.certPem + other.certPem), leafFp);
  });

  test('throws on something that is not a certificate', () => {
    assert.throws(() => certificateFingerprint('-----BEGIN CERTIFICATE-----\nnope\n-----END CERTIFICATE-----\n'));
    assert.throws(() => certificateFingerprint('hello'));
  });
});

describe('certificateNotAfter', () => {
  test('equals openssl x509 -enddate and the requested validity', async (t) => {
    const dir = await tempDir();
    t.after(() => removeDir(dir));
    const now = new Date('2030-01-02T03:04:05Z');
    const { certPem } = await generateSelfSigned({ hosts: ['localhost'], validityDays: 10, now });
    const file = join(dir, 'tls.crt');
    await writeFile(file, certPem);

    const notAfter = certificateNotAfter(certPem);
    assert.ok(notAfter instanceof Date);
    assert.equal(notAfter.toISOString(), '2030-01-12T03:04:05.000Z');

    const { stdout } = await execFileAsync('openssl', ['x509', '-noout', '-enddate', '-in', file]);
    const m = /notAfter=(.+)/.exec(stdout.trim());
    assert.ok(m, `unexpected openssl output: ${stdout}`);
    assert.equal(notAfter.getTime(), new Date(m[1]!).getTime());
  });
});

import assert from 'node:assert/strict';
import { X509Certificate, createPrivateKey } from 'node:crypto';
import { writeFile } from 'node:fs/promises';
import { hostname } from 'node:os';
import { join } from 'node:path';
import { describe, test } from 'node:test';
import { DEFAULT_VALIDITY_DAYS, generateSelfSigned, normalizeHosts } from '../../src/tls/generate.ts';
import { execFileAsync, removeDir, tempDir } from './helpers.ts';

const SERVER_AUTH = '1.3.6.1.5.5.7.3.1';
const DAY_MS = 86_400_000;

function sanEntries(cert: X509Certificate): string[] {
  return (cert.subjectAltName ?? '').split(', ');
}

describe('generateSelfSigned', () => {
  test('puts IP addresses in IP SANs, names in DNS SANs, and the first host in the CN', async () => {
    const host = hostname();
    const { certPem } = await generateSelfSigned({ hosts: ['localhost', '127.0.0.1', '::1', host, '[fe80::1]'] });
    const cert = new X509Certificate(certPem);
    const sans = sanEntries(cert);

    assert.equal(cert.subject, 'CN=localhost');
    assert.ok(sans.includes('DNS:localhost'), cert.subjectAltName);
    assert.ok(sans.includes('IP Address:127.0.0.1'), cert.subjectAltName);
    assert.equal(cert.checkIP('::1'), '::1');
    assert.equal(cert.checkIP('fe80::1'), 'fe80::1');
    assert.equal(cert.checkHost(host), host.toLowerCase());
    assert.ok(sans.includes(`DNS:${host.toLowerCase()}`), cert.subjectAltName);
    // An IP written as a DNS SAN would not match an IP connection in browsers or Go clients.
    assert.ok(!sans.some((s) => s === 'DNS:127.0.0.1' || s === 'DNS:::1' || s.startsWith('DNS:[')), cert.subjectAltName);
    assert.equal(sans.length, 5);
  });

  test('is an ECDSA P-256 key with a SHA-256 signature, self-signed, serverAuth, not a CA', async () => {
    const { certPem, keyPem } = await generateSelfSigned({ hosts: ['localhost'] });
    const cert = new X509Certificate(certPem);
    const key = createPrivateKey(keyPem);

    assert.equal(key.asymmetricKeyType, 'ec');
    assert.equal(key.asymmetricKeyDetails?.namedCurve, 'prime256v1');
    assert.equal(cert.publicKey.asymmetricKeyType, 'ec');
    assert.ok(cert.checkPrivateKey(key));
    assert.equal(cert.signatureAlgorithm, 'ecdsa-with-SHA256');
    assert.deepEqual(cert.keyUsage, [SERVER_AUTH]);
    assert.equal(cert.ca, false);
    assert.equal(cert.issuer, cert.subject);
    assert.ok(cert.verify(cert.publicKey));
    assert.match(keyPem, /^-----BEGIN PRIVATE KEY-----\n/);
    assert.ok(certPem.endsWith('-----END CERTIFICATE-----\n'));
    assert.ok(keyPem.endsWith('-----END PRIVATE KEY-----\n'));
  });

  test('openssl accepts it as a TLS server certificate for its names', async (t) => {
    const dir = await tempDir();
    t.after(() => removeDir(dir));
    const { certPem } = await generateSelfSigned({ hosts: ['downloads.example', '10.1.2.3'] });
    const file = join(dir, 'tls.crt');
    await writeFile(file, certPem);
    const verify = (extra: string[]) =>
      execFileAsync('openssl', ['verify', '-purpose', 'sslserver', '-CAfile', file, ...extra, file]);

    assert.match((await verify(['-verify_hostname', 'downloads.example'])).stdout, /: OK/);
    assert.match((await verify(['-verify_ip', '10.1.2.3'])).stdout, /: OK/);
    await assert.rejects(verify(['-verify_hostname', 'elsewhere.example']));
  });

  test('is valid from a few minutes before now for 365 days by default', async () => {
    const now = new Date('2031-06-01T12:00:00Z');
    const cert = new X509Certificate((await generateSelfSigned({ hosts: ['localhost'], now })).certPem);
    const skew = now.getTime() - cert.validFromDate.getTime();
    assert.ok(skew >= 60_000 && skew <= 10 * 60_000, `notBefore is ${skew} ms before now`);
    assert.equal(DEFAULT_VALIDITY_DAYS, 365);
    assert.equal(cert.validToDate.getTime(), now.getTime() + 365 * DAY_MS);
  });

  test('honours validityDays, and uses the real clock without `now`', async () => {
    const before = Date.now();
    const cert = new X509Certificate((await generateSelfSigned({ hosts: ['localhost'], validityDays: 7 })).certPem);
    const until = cert.validToDate.getTime() - before;
    assert.ok(until > 7 * DAY_MS - 2000 && until <= 7 * DAY_MS + 2000, `valid for ${until} ms`);
    assert.ok(cert.validFromDate.getTime() < before);
  });

  test('refuses nonsense input', async () => {
    await assert.rejects(generateSelfSigned({ hosts: [] }), /at least one host/);
    for (const hosts of [[''], ['a b'], ['https://x.example'], ['x..example'], ['-x.example']]) {
      await assert.rejects(generateSelfSigned({ hosts }), /invalid certificate host/, JSON.stringify(hosts));
    }
    for (const validityDays of [0, -1, Number.NaN, Number.POSITIVE_INFINITY]) {
      await assert.rejects(generateSelfSigned({ hosts: ['localhost'], validityDays }), /validityDays/, String(validityDays));
    }
  });
});

describe('normalizeHosts', () => {
  test('trims, lower-cases names, unbrackets IPv6, drops trailing dots and duplicates, keeps order', () => {
    assert.deepEqual(normalizeHosts([' Example.COM. ', '[::1]', 'localhost', 'example.com', '::1', '*.apps.example']), [
      'example.com',
      '::1',
      'localhost',
      '*.apps.example',
    ]);
  });
});

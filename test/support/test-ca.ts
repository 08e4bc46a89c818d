/**
 * A test certificate authority and a server certificate it signs for 127.0.0.1 and localhost, so
 * emulators and test doubles can serve HTTPS that is trusted only by clients given the CA.
 */
import { generate } from 'selfsigned';

export interface TestPki {
  caCert: string;
  caKey: string;
  /** Server certificate for 127.0.0.1, ::1 and localhost, signed by the CA. */
  cert: string;
  key: string;
}

const EXPIRY = (): Date => new Date(Date.now() + 7 * 24 * 3600 * 1000);

export async function createTestPki(name = 'vds test CA'): Promise<TestPki> {
  const ca = await generate([{ name: 'commonName', value: name }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate: EXPIRY(),
    extensions: [
      { name: 'basicConstraints', cA: true, critical: true },
      { name: 'keyUsage', keyCertSign: true, cRLSign: true, digitalSignature: true, critical: true },
    ],
  });
  const server = await generate([{ name: 'commonName', value: 'localhost' }], {
    keyType: 'ec',
    algorithm: 'sha256',
    notAfterDate: EXPIRY(),
    ca: { key: ca.private, cert: ca.cert },
    extensions: [
      { name: 'basicConstraints', cA: false },
      { name: 'keyUsage', digitalSignature: true, keyEncipherment: true },
      { name: 'extKeyUsage', serverAuth: true },
      { name: 'subjectAltName', altNames: [{ type: 2, value: 'localhost' }, { type: 7, ip: '127.0.0.1' }, { type: 7, ip: '::1' }] },
    ],
  });
  const nl = (pem: string): string => (pem.endsWith('\n') ? pem : `${pem}\n`);
  return { caCert: nl(ca.cert), caKey: nl(ca.private), cert: nl(server.cert), key: nl(server.private) };
}

import { generateKeyPairSync } from 'node:crypto';
import { describe, test } from 'node:test';
import assert from 'node:assert/strict';
import { parseGcpServiceAccountKey } from '../../src/stores/credentials/gcp.ts';
import { InvalidLocationError } from '../../src/stores/errors.ts';
import { createTestServiceAccount } from '../support/gcs-server.ts';

const LOCATION = 'velero/gcs-default';
const sa = createTestServiceAccount('backup@my-project.iam.gserviceaccount.com', 'my-project');
const good = JSON.parse(Buffer.from(sa.json).toString()) as Record<string, unknown>;
// Lines of the private key's base64 body: none may ever show up in a message.
const keyLines = sa.privateKeyPem.split('\n').filter((l) => l.length >= 16 && !l.startsWith('-----'));

function bytes(doc: unknown): Uint8Array {
  return Buffer.from(typeof doc === 'string' ? doc : JSON.stringify(doc));
}

function reversed(s: string): string {
  return s.split('').reverse().join('');
}

function rejects(input: Uint8Array, message: RegExp): void {
  assert.throws(
    () => parseGcpServiceAccountKey(input, LOCATION),
    (err: unknown) => {
      assert.ok(err instanceof InvalidLocationError, String(err));
      assert.match(err.message, new RegExp(`^location ${LOCATION}: GCP credential `));
      assert.match(err.message, message);
      for (const line of keyLines) assert.ok(!err.message.includes(line), `message contains key material: ${err.message}`);
      assert.ok(!err.message.includes('PRIVATE KEY'), err.message);
      return true;
    },
  );
}

describe('parseGcpServiceAccountKey', () => {
  describe('good keys', () => {
    test('a key file as `gcloud iam service-accounts keys create` writes it', () => {
      const key = parseGcpServiceAccountKey(sa.json, LOCATION);
      assert.equal(key.clientEmail, 'backup@my-project.iam.gserviceaccount.com');
      assert.equal(key.privateKey.trim(), sa.privateKeyPem.trim());
      assert.equal(key.privateKeyId, sa.keyId);
      assert.equal(key.projectId, 'my-project');
      assert.equal(key.universeDomain, 'googleapis.com');
    });

    test('only the required fields (type, client_email, private_key)', () => {
      const key = parseGcpServiceAccountKey(
        bytes({ type: 'service_account', client_email: good.client_email, private_key: good.private_key }),
        LOCATION,
      );
      assert.deepEqual(Object.keys(key).sort(), ['clientEmail', 'privateKey']);
    });

    test('a PKCS#1 RSA key ("BEGIN RSA PRIVATE KEY") in a file with CRLF line ends', () => {
      const { privateKey } = generateKeyPairSync('rsa', { modulusLength: 2048 });
      const pkcs1 = privateKey.export({ type: 'pkcs1', format: 'pem' }).toString();
      const text = JSON.stringify({ ...good, private_key: pkcs1 }, null, 2).replace(/\n/g, '\r\n');
      assert.match(parseGcpServiceAccountKey(bytes(text), LOCATION).privateKey, /^-----BEGIN RSA PRIVATE KEY-----/);
    });

    test('null optional fields are treated as absent', () => {
      const key = parseGcpServiceAccountKey(bytes({ ...good, private_key_id: null, universe_domain: null }), LOCATION);
      assert.equal(key.privateKeyId, undefined);
      assert.equal(key.universeDomain, undefined);
    });
  });

  describe('malformed keys are rejected, naming the location and field, never a value', () => {
    const { private_key: _omitKey, ...withoutKey } = good;
    const { client_email: _omitEmail, ...withoutEmail } = good;
    const { type: _omitType, ...withoutType } = good;
    const body = keyLines.join('');
    const cases: { name: string; input: Uint8Array; message: RegExp }[] = [
      { name: 'empty bytes', input: bytes(''), message: /is not valid JSON/ },
      { name: 'not JSON (a PEM file given instead of the JSON key)', input: bytes(sa.privateKeyPem), message: /is not valid JSON/ },
      {
        name: 'truncated JSON that ends inside the private key',
        input: Buffer.from(sa.json).subarray(0, Buffer.from(sa.json).indexOf(keyLines[3]!) + 20),
        message: /is not valid JSON/,
      },
      { name: 'invalid UTF-8', input: Buffer.from([0x7b, 0xff, 0xfe, 0x7d]), message: /is not valid UTF-8/ },
      { name: 'a JSON array', input: bytes([good]), message: /is not a JSON object/ },
      { name: 'JSON null', input: bytes('null'), message: /is not a JSON object/ },
      { name: 'no type', input: bytes(withoutType), message: /has no "type" field/ },
      {
        name: 'type external_account (Workload Identity Federation)',
        input: bytes({ type: 'external_account', audience: '//iam.googleapis.com/x', credential_source: { file: '/var/run/token' } }),
        message: /has type "external_account"; only "service_account" keys are supported/,
      },
      { name: 'type authorized_user', input: bytes({ type: 'authorized_user', refresh_token: body.slice(0, 40) }), message: /has type "authorized_user"/ },
      { name: 'a type that is itself odd', input: bytes({ ...good, type: body.slice(0, 50) }), message: /has type an unknown type/ },
      { name: 'no client_email', input: bytes(withoutEmail), message: /has no "client_email" field/ },
      { name: 'an empty client_email', input: bytes({ ...good, client_email: '  ' }), message: /has no "client_email" field/ },
      { name: 'client_email that is not an address', input: bytes({ ...good, client_email: body.slice(0, 30) }), message: /field "client_email" is not an email address/ },
      { name: 'client_email of the wrong type', input: bytes({ ...good, client_email: 42 }), message: /field "client_email" must be a string/ },
      { name: 'no private_key', input: bytes(withoutKey), message: /has no "private_key" field/ },
      { name: 'private_key of the wrong type', input: bytes({ ...good, private_key: { pem: sa.privateKeyPem } }), message: /field "private_key" must be a string/ },
      { name: 'private_key without PEM armour (bare base64)', input: bytes({ ...good, private_key: body }), message: /field "private_key" is not a PEM private key/ },
      {
        name: 'private_key PEM whose DER structure is corrupted',
        input: bytes({ ...good, private_key: sa.privateKeyPem.replace(keyLines[0]!, reversed(keyLines[0]!)) }),
        message: /field "private_key" does not parse as a private key/,
      },
      {
        name: 'private_key PEM whose modulus is corrupted (parses, but cannot sign)',
        input: bytes({ ...good, private_key: sa.privateKeyPem.replace(keyLines[2]!, reversed(keyLines[2]!)) }),
        message: /field "private_key" is damaged/,
      },
      {
        name: 'private_key that is an EC key (service accounts sign RS256)',
        input: bytes({
          ...good,
          private_key: generateKeyPairSync('ec', { namedCurve: 'P-256' }).privateKey.export({ type: 'pkcs8', format: 'pem' }).toString(),
        }),
        message: /field "private_key" is not an RSA key/,
      },
      { name: 'private_key_id of the wrong type', input: bytes({ ...good, private_key_id: 7 }), message: /field "private_key_id" must be a string/ },
    ];
    for (const c of cases) {
      test(c.name, () => rejects(c.input, c.message));
    }

    test('a JSON syntax error is located by line and column, without quoting the text', () => {
      const text = Buffer.from(sa.json).toString().replace('"client_email"', 'client_email');
      assert.throws(
        () => parseGcpServiceAccountKey(bytes(text), LOCATION),
        (err: unknown) => {
          assert.ok(err instanceof InvalidLocationError);
          assert.match(err.message, /is not valid JSON( \(line \d+, column \d+\)| \(at offset \d+\))?$/);
          assert.ok(!err.message.includes('backup@'), err.message);
          return true;
        },
      );
    });
  });
});

/**
 * Parses a GCP service-account JSON key (what Velero's GCP plugin reads from `credentialsFile` /
 * GOOGLE_APPLICATION_CREDENTIALS) in memory. Errors name the location and the field, never a value:
 * the bytes hold a private key.
 */
import { createPrivateKey, createPublicKey, sign, verify } from 'node:crypto';
import type { KeyObject } from 'node:crypto';
import { InvalidLocationError } from '../errors.ts';

/** The parts of a service-account key the GCS adapter uses. */
export interface GcpServiceAccountKey {
  /** `client_email`: the service account's identity (the JWT's `iss` and `sub`). */
  clientEmail: string;
  /** `private_key`: PKCS#8 (or PKCS#1) PEM of an RSA key; never log it. */
  privateKey: string;
  /** `private_key_id`, sent as the JWT's `kid` when present. */
  privateKeyId?: string;
  /** `project_id`, when present. */
  projectId?: string;
  /** `universe_domain`, when present (e.g. `googleapis.com`). */
  universeDomain?: string;
}

const PEM_KEY = /-----BEGIN (?:RSA )?PRIVATE KEY-----[\s\S]+?-----END (?:RSA )?PRIVATE KEY-----/;
const EMAIL = /^[^\s@]+@[^\s@]+$/;

/** JSON.parse's messages quote the input; keep only where it failed. */
function jsonFailure(err: unknown): string {
  const message = err instanceof Error ? err.message : '';
  const at = /line (\d+) column (\d+)/.exec(message);
  if (at) return ` (line ${at[1]}, column ${at[2]})`;
  const pos = /position (\d+)/.exec(message);
  return pos ? ` (at offset ${pos[1]})` : '';
}

function signsConsistently(key: KeyObject): boolean {
  const probe = Buffer.from('velero-download-server key check');
  try {
    return verify('sha256', probe, createPublicKey(key), sign('sha256', probe, key));
  } catch {
    return false;
  }
}

/**
 * Parses and checks a service-account key: valid UTF-8 JSON object, `type` `service_account`, a
 * `client_email` that looks like an address, and a `private_key` PEM that parses as an RSA key
 * whose signatures verify.
 * Throws InvalidLocationError naming `location` and the offending field.
 */
export function parseGcpServiceAccountKey(bytes: Uint8Array, location: string): GcpServiceAccountKey {
  const fail = (what: string): InvalidLocationError =>
    new InvalidLocationError(`location ${location}: GCP credential ${what}`);

  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw fail('is not valid UTF-8');
  }
  let parsed: unknown;
  try {
    parsed = JSON.parse(text);
  } catch (err) {
    throw fail(`is not valid JSON${jsonFailure(err)}`);
  }
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed)) {
    throw fail('is not a JSON object (expected a service-account key file)');
  }
  const doc = parsed as Record<string, unknown>;

  const optionalString = (field: string): string | undefined => {
    const value = doc[field];
    if (value === undefined || value === null) return undefined;
    if (typeof value !== 'string') throw fail(`field "${field}" must be a string`);
    return value;
  };
  const requiredString = (field: string): string => {
    const value = optionalString(field);
    if (value === undefined || value.trim() === '') throw fail(`has no "${field}" field`);
    return value;
  };

  const type = requiredString('type');
  if (type !== 'service_account') {
    // The type names a credential kind, not a secret; saying which one helps the user.
    const shown = /^[a-z_]{1,40}$/.test(type) ? `"${type}"` : 'an unknown type';
    throw fail(
      `has type ${shown}; only "service_account" keys are supported: an external_account credential takes its token from a ` +
        'file, a program or a metadata URL on the gateway (credential_source), which the gateway never uses; authorized_user ' +
        'and impersonated_service_account credentials need an OAuth exchange it does not make',
    );
  }
  const clientEmail = requiredString('client_email').trim();
  if (!EMAIL.test(clientEmail)) throw fail('field "client_email" is not an email address');

  const rawKey = requiredString('private_key');
  const pem = PEM_KEY.exec(rawKey)?.[0];
  if (pem === undefined) throw fail('field "private_key" is not a PEM private key');
  let privateKey: KeyObject;
  try {
    privateKey = createPrivateKey(pem);
  } catch {
    throw fail('field "private_key" does not parse as a private key');
  }
  if (privateKey.asymmetricKeyType !== 'rsa') {
    throw fail('field "private_key" is not an RSA key (service-account keys sign RS256)');
  }
  // A damaged key can still parse; one signature checked against its own public half finds most
  // such keys here, with a clear message, rather than as a refused request later.
  if (!signsConsistently(privateKey)) {
    throw fail('field "private_key" is damaged (a signature made with it does not verify)');
  }

  const key: GcpServiceAccountKey = { clientEmail, privateKey: pem };
  const privateKeyId = optionalString('private_key_id');
  if (privateKeyId) key.privateKeyId = privateKeyId;
  const projectId = optionalString('project_id');
  if (projectId) key.projectId = projectId;
  const universeDomain = optionalString('universe_domain');
  if (universeDomain) key.universeDomain = universeDomain;
  return key;
}

/**
 * The dotted paths of every field of a GCP credential JSON (`type`, `credential_source.file`, ...),
 * for the tenant check of settings that name files or programs. A credential that is not a JSON object
 * yields none: parseGcpServiceAccountKey reports it.
 */
export function gcpCredentialFields(bytes: Uint8Array): string[] {
  let doc: unknown;
  try {
    doc = JSON.parse(new TextDecoder('utf-8', { fatal: true }).decode(bytes));
  } catch {
    return [];
  }
  const out: string[] = [];
  const walk = (value: unknown, path: string, depth: number): void => {
    if (depth > 8 || value === null || typeof value !== 'object' || Array.isArray(value)) return;
    for (const [k, v] of Object.entries(value)) {
      const at = path === '' ? k : `${path}.${k}`;
      out.push(at);
      walk(v, at, depth + 1);
    }
  };
  walk(doc, '', 0);
  return out;
}

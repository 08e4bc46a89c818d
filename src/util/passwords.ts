/**
 * Access-user names and password hashes: the pure parts both sides need. The gateway's verifier
 * (auth) checks names and derives keys with them; the client (`velero-download --user`, and its
 * `hash-password` that writes table entries) checks a name before sending it and hashes a password
 * with the very code the gateway verifies with.
 */
import { pbkdf2, randomBytes, scrypt } from 'node:crypto';
import { ACCESS_USER_NAME_PART, MAX_ACCESS_USER_LENGTH, isAccessUserPart } from './names.ts';

/** Longest user part and host part of a name (a DNS name is at most 253). */
export const MAX_USER_LENGTH = MAX_ACCESS_USER_LENGTH;
export const MAX_HOST_LENGTH = 253;
/** Longest password accepted anywhere (Basic header, plaintext entry, hashPassword). */
export const MAX_PASSWORD_BYTES = 1024;

/**
 * Whether `name` is `user@host` with both parts bounded and printable. Names come from the operator's
 * table and from the caller's Basic header; a name that fails this is never echoed anywhere (a control
 * character or a newline in it could forge log lines).
 */
export function isAccessUserName(name: string): boolean {
  const at = name.indexOf('@');
  if (at <= 0 || at !== name.lastIndexOf('@')) return false;
  const user = name.slice(0, at);
  const host = name.slice(at + 1);
  return isAccessUserPart(user) && host.length >= 1 && host.length <= MAX_HOST_LENGTH && ACCESS_USER_NAME_PART.test(host);
}

export type KdfSpec =
  | { algorithm: 'scrypt'; N: number; r: number; p: number; salt: Buffer; keyLength: number }
  | { algorithm: 'pbkdf2-sha256'; iterations: number; salt: Buffer; keyLength: number };

/** The derivation, injectable so tests can count calls; the default runs Node's async scrypt / pbkdf2. */
export type Derive = (spec: KdfSpec, password: Buffer) => Promise<Buffer>;

export const deriveKey: Derive = (spec, password) =>
  new Promise((resolve, reject) => {
    const done = (err: Error | null, key: Buffer): void => (err ? reject(err) : resolve(key));
    if (spec.algorithm === 'scrypt') {
      // Node refuses above `maxmem` (32 MiB by default); the parser already bounded 128·N·r.
      const maxmem = 128 * spec.N * spec.r + 128 * spec.r * spec.p + 1024 * 1024;
      scrypt(password, spec.salt, spec.keyLength, { N: spec.N, r: spec.r, p: spec.p, maxmem }, done);
    } else {
      pbkdf2(password, spec.salt, spec.iterations, spec.keyLength, 'sha256', done);
    }
  });

export interface HashOptions {
  /** Default scrypt (N=65536, r=8, p=1, as Kopia's users); pbkdf2-sha256 uses 600,000 iterations. */
  algorithm?: 'scrypt' | 'pbkdf2-sha256';
  /** Injectable for tests; defaults to {@link deriveKey}. */
  derive?: Derive;
}

/** Makes the hash value of a table entry (`<user>@<host>: <this>`) for `password`, with a fresh salt. */
export async function hashPassword(password: string, opts: HashOptions = {}): Promise<string> {
  const pw = Buffer.from(password, 'utf8');
  if (pw.length === 0 || pw.length > MAX_PASSWORD_BYTES) throw new RangeError(`a password must be 1-${MAX_PASSWORD_BYTES} bytes`);
  const salt = randomBytes(32);
  const derive = opts.derive ?? deriveKey;
  const b64 = (b: Buffer): string => b.toString('base64');
  if ((opts.algorithm ?? 'scrypt') === 'scrypt') {
    const spec: KdfSpec = { algorithm: 'scrypt', N: 65536, r: 8, p: 1, salt, keyLength: 32 };
    return `scrypt$${spec.N}$${spec.r}$${spec.p}$${b64(salt)}$${b64(await derive(spec, pw))}`;
  }
  const spec: KdfSpec = { algorithm: 'pbkdf2-sha256', iterations: 600_000, salt, keyLength: 32 };
  return `pbkdf2-sha256$${spec.iterations}$${b64(salt)}$${b64(await derive(spec, pw))}`;
}

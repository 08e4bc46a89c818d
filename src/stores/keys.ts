import { InvalidKeyError, InvalidLocationError } from './errors.ts';

/** Longest accepted key, in UTF-8 bytes (S3's and GCS's limit for a whole object name). */
export const MAX_KEY_BYTES = 1024;

// C0 controls (NUL included), DEL and C1 controls: never part of a Velero key, and some stores or
// log lines would interpret them.
const CONTROL = /\p{Cc}/u;

function describeKey(key: string): string {
  return JSON.stringify(key.length > 80 ? `${key.slice(0, 80)}…` : key);
}

/**
 * Validates a store-relative key and returns its segments, each safe to use as one path component
 * or one piece of an object name. Throws InvalidKeyError for an empty or over-long key, a leading
 * `/`, an empty, `.` or `..` segment (so also `a//b` and a trailing `/`), a backslash, a NUL or any
 * other control character, and a string that is not well-formed UTF-16 (it would not round-trip
 * through UTF-8, so two keys could name one object).
 */
export function keySegments(key: string): string[] {
  if (typeof key !== 'string' || key.length === 0) {
    throw new InvalidKeyError('object key is empty');
  }
  if (key.length > MAX_KEY_BYTES || Buffer.byteLength(key, 'utf8') > MAX_KEY_BYTES) {
    throw new InvalidKeyError(`object key is longer than ${MAX_KEY_BYTES} bytes`);
  }
  if (key.startsWith('/')) {
    throw new InvalidKeyError(`object key ${describeKey(key)} is absolute`);
  }
  if (key.includes('\\')) {
    throw new InvalidKeyError(`object key ${describeKey(key)} contains a backslash`);
  }
  if (CONTROL.test(key)) {
    throw new InvalidKeyError(`object key ${describeKey(key)} contains a control character`);
  }
  if (!key.isWellFormed()) {
    throw new InvalidKeyError(`object key ${describeKey(key)} is not well-formed Unicode`);
  }
  const segments = key.split('/');
  for (const segment of segments) {
    if (segment === '' || segment === '.' || segment === '..') {
      throw new InvalidKeyError(`object key ${describeKey(key)} has an empty, "." or ".." segment`);
    }
  }
  return segments;
}

/**
 * Normalizes a location's prefix the way Velero's own `path.Join` does (leading, trailing and repeated
 * slashes and `.` segments dropped), so keys built from it name the objects Velero wrote. A `..`
 * segment or a control character makes the location invalid: the prefix is the boundary keys must
 * stay inside, and a prefix that climbs would make that boundary ambiguous.
 */
export function normalizePrefix(prefix: string): string {
  if (CONTROL.test(prefix) || prefix.includes('\\')) {
    throw new InvalidLocationError('store prefix contains a control character or a backslash');
  }
  const kept: string[] = [];
  for (const segment of prefix.split('/')) {
    if (segment === '' || segment === '.') continue;
    if (segment === '..') throw new InvalidLocationError('store prefix contains a ".." segment');
    kept.push(segment);
  }
  return kept.join('/');
}

/**
 * `<prefix>/<key>` for stores addressed by object name: the key is validated with keySegments (so it
 * cannot leave the prefix), the prefix normalized with normalizePrefix; an empty prefix gives the key.
 */
export function joinKey(prefix: string, key: string): string {
  const segments = keySegments(key);
  const base = normalizePrefix(prefix);
  const rest = segments.join('/');
  return base === '' ? rest : `${base}/${rest}`;
}

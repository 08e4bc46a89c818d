/**
 * The AWS shared-credentials file (what Velero mounts as `/credentials/cloud` for its AWS plugin),
 * parsed in memory. Errors name the location, the profile, the line number or the field, never a value.
 */
import { parse } from 'ini';
import { InvalidLocationError } from '../errors.ts';

/** Static credentials read from one profile of the file. */
export interface AwsCredentials {
  accessKeyId: string;
  secretAccessKey: string;
  sessionToken?: string;
}

/** The profile Velero's AWS plugin (and every AWS SDK) reads when none is named. */
export const DEFAULT_AWS_PROFILE = 'default';

const KEY = /^[A-Za-z0-9_.-]+$/;

/** A comment starts a line or follows whitespace, as in the AWS SDKs: `a#b` is a value, `a #b` is not. */
function withoutComment(line: string): string {
  return (line.split(/(?:^|\s)[;#]/)[0] ?? '').trim();
}

/**
 * Checks the file's shape line by line and rewrites it for `ini`. The `ini` package silently skips
 * lines it cannot read, treats `;`/`#` anywhere in a value as a comment, parses quoted values and
 * nests dotted section names; AWS SDKs do none of that. So every value is handed over JSON-quoted
 * (ini's one way to keep a value verbatim) and dots in section names escaped.
 */
function normalize(text: string, location: string): string {
  const out: string[] = [];
  // Keys seen per section, lower-cased: a repeated key is refused rather than silently last-wins.
  const seen = new Map<string, Set<string>>();
  let keys: Set<string> | undefined;
  text.split(/\r\n|\r|\n/).forEach((raw, i) => {
    const where = `location ${location}: AWS credential file line ${i + 1}`;
    const line = withoutComment(raw);
    if (line === '') return;
    if (line.startsWith('[') && line.endsWith(']')) {
      const name = line.slice(1, -1).trim().replace(/\s+/g, ' ');
      if (name === '' || /[[\]]/.test(name)) throw new InvalidLocationError(`${where}: malformed [section] name`);
      out.push(`[${JSON.stringify(name.replaceAll('.', '\\.'))}]`);
      keys = seen.get(name) ?? new Set();
      seen.set(name, keys);
      return;
    }
    const eq = line.indexOf('=');
    if (eq < 0) throw new InvalidLocationError(`${where}: expected "[profile]" or "key = value"`);
    const key = line.slice(0, eq).trim();
    if (!KEY.test(key)) throw new InvalidLocationError(`${where}: malformed key name`);
    if (keys === undefined) throw new InvalidLocationError(`${where}: a key outside any [profile] section`);
    if (keys.has(key.toLowerCase())) throw new InvalidLocationError(`${where}: the key ${key} is set twice in its section`);
    keys.add(key.toLowerCase());
    out.push(`${key}=${JSON.stringify(line.slice(eq + 1).trim())}`);
  });
  return out.join('\n');
}

function decodeUtf8(bytes: Uint8Array | string, location: string): string {
  if (typeof bytes === 'string') return bytes.replace(/^\uFEFF/, '');
  try {
    // The decoder drops a leading byte-order mark, as editors on Windows write one.
    return new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    throw new InvalidLocationError(`location ${location}: the AWS credential file is not valid UTF-8`);
  }
}

type Section = Record<string, unknown>;

function isSection(value: unknown): value is Section {
  return typeof value === 'object' && value !== null && !Array.isArray(value);
}

/** The profile a location reads (`[name]`, else `[profile name]`) and its name; throws when absent. */
function selectProfile(bytes: Uint8Array | string, location: string, profile: string): { wanted: string; section: Section } {
  const wanted = profile.trim() === '' ? DEFAULT_AWS_PROFILE : profile.trim();
  const parsed: Section = parse(normalize(decodeUtf8(bytes, location), location));
  const section = [wanted, `profile ${wanted}`]
    .map((name) => (Object.hasOwn(parsed, name) ? parsed[name] : undefined))
    .find(isSection);
  if (section === undefined) {
    throw new InvalidLocationError(`location ${location}: the AWS credential file has no profile "${wanted}"`);
  }
  return { wanted, section };
}

/**
 * The key names with a value (lower-cased, as AWS SDKs match them) of the profile a location reads, for the
 * tenant check of settings that name files or programs (`credential_process`, `sso_*`, ...). Throws
 * InvalidLocationError as parseAwsCredentials does for a malformed file or a missing profile.
 */
export function awsProfileKeys(bytes: Uint8Array | string, location: string, profile: string = DEFAULT_AWS_PROFILE): { profile: string; keys: string[] } {
  const { wanted, section } = selectProfile(bytes, location, profile);
  // An empty value names nothing; every other value (ini turns true/false/null into JSON values) counts.
  const keys = Object.entries(section).filter(([, v]) => v !== '').map(([k]) => k.toLowerCase());
  return { profile: wanted, keys };
}

/**
 * Reads `profile` (default `default`) from an AWS shared-credentials file: `aws_access_key_id`,
 * `aws_secret_access_key`, optional `aws_session_token` (key names case-insensitive). The profile may
 * be written `[name]` (the credentials file's form) or `[profile name]` (the config file's form);
 * `[name]` wins when both exist. Throws InvalidLocationError for a malformed line, a missing profile,
 * a missing or empty key, a key repeated in a section; messages never contain a value from the file.
 */
export function parseAwsCredentials(
  bytes: Uint8Array | string,
  location: string,
  profile: string = DEFAULT_AWS_PROFILE,
): AwsCredentials {
  const { wanted, section } = selectProfile(bytes, location, profile);
  const read = (name: string): string | undefined => {
    const found = Object.entries(section).find(([key]) => key.toLowerCase() === name);
    if (found === undefined) return undefined;
    // ini turns the values true, false and null into JSON ones; they were text in the file.
    const value = typeof found[1] === 'boolean' || found[1] === null ? String(found[1]) : found[1];
    if (typeof value !== 'string' || value === '') {
      throw new InvalidLocationError(`location ${location}: profile "${wanted}" of the AWS credential file has an empty ${name}`);
    }
    return value;
  };
  const required = (name: string): string => {
    const value = read(name);
    if (value === undefined) {
      throw new InvalidLocationError(`location ${location}: profile "${wanted}" of the AWS credential file has no ${name}`);
    }
    return value;
  };
  const accessKeyId = required('aws_access_key_id');
  const secretAccessKey = required('aws_secret_access_key');
  const sessionToken = read('aws_session_token');
  return sessionToken === undefined ? { accessKeyId, secretAccessKey } : { accessKeyId, secretAccessKey, sessionToken };
}

/**
 * Local mode's authenticator: bearer tokens from a file in kube-apiserver's static token format
 * (`token,user,uid,"group1,group2"`, see --token-auth-file). Tokens are held only as SHA-256 digests and
 * compared in constant time; nothing here ever logs or returns a token.
 */
import { createHash, randomBytes, randomUUID, timingSafeEqual } from 'node:crypto';
import { mkdir, readFile, writeFile } from 'node:fs/promises';
import { dirname } from 'node:path';
import { parse } from 'csv-parse/sync';
import type { Authenticator, Authorizer, Decision, UserInfo } from './types.ts';

interface Entry {
  digest: Buffer;
  user: UserInfo;
}

const digest = (token: string): Buffer => createHash('sha256').update(token, 'utf8').digest();

export class StaticTokenAuthenticator implements Authenticator {
  readonly #entries: Entry[];

  constructor(entries: { token: string; user: UserInfo }[]) {
    this.#entries = entries.map((e) => ({ digest: digest(e.token), user: e.user }));
  }

  /** Parses the CSV text; errors name the line, never its token. */
  static parse(text: string, source = 'token file'): StaticTokenAuthenticator {
    let rows: string[][];
    try {
      rows = parse(text, { relax_column_count: true, skip_empty_lines: true, trim: true, comment: '#' });
    } catch (err) {
      const line = (err as { lines?: number }).lines;
      // The parser's own message quotes the offending line, which may hold a token: keep only its number.
      // eslint-disable-next-line preserve-caught-error
      throw new Error(`${source}: malformed CSV${line === undefined ? '' : ` near line ${line}`}`);
    }
    const entries = rows.map((row, i) => {
      const [token, username, uid, groups] = row;
      if (!token || !username || row.length < 3) {
        throw new Error(`${source}: entry ${i + 1} needs at least token, user and uid`);
      }
      const user: UserInfo = {
        username,
        groups: groups ? groups.split(',').map((g) => g.trim()).filter(Boolean) : [],
        ...(uid ? { uid } : {}),
      };
      return { token, user };
    });
    if (entries.length === 0) throw new Error(`${source}: no tokens`);
    return new StaticTokenAuthenticator(entries);
  }

  static async fromFile(path: string): Promise<StaticTokenAuthenticator> {
    return StaticTokenAuthenticator.parse(await readFile(path, 'utf8'), path);
  }

  authenticate(token: string, signal: AbortSignal): UserInfo | null {
    signal.throwIfAborted();
    const d = digest(token);
    let found: UserInfo | null = null;
    // Visit every entry, so the time taken does not say which one matched.
    for (const e of this.#entries) {
      if (timingSafeEqual(e.digest, d) && found === null) found = e.user;
    }
    return found;
  }
}

/** Local mode's authorizer: any authenticated user may download anything the gateway serves. */
const ALLOWED: Decision = Object.freeze({ allowed: true, reason: 'local mode allows every authenticated user' });

export class AllowAuthenticatedAuthorizer implements Authorizer {
  authorize(): Decision {
    return ALLOWED;
  }
}

/**
 * Creates the token file with one random token for a local administrator when it does not exist.
 * Returns true when it wrote one.
 */
export async function ensureTokenFile(path: string): Promise<boolean> {
  const token = randomBytes(32).toString('base64url');
  await mkdir(dirname(path), { recursive: true, mode: 0o700 });
  try {
    await writeFile(path, `${token},local-admin,${randomUUID()},"system:authenticated"\n`, { mode: 0o600, flag: 'wx' });
    return true;
  } catch (err) {
    if ((err as NodeJS.ErrnoException).code === 'EEXIST') return false;
    throw err;
  }
}

/**
 * Access users (`user@host`, as the Kopia repository server names its users): callers outside the
 * cluster, without a Kubernetes identity, who send HTTP Basic credentials. This module parses the table
 * of users, verifies passwords, limits failed attempts and turns valid credentials into a UserInfo that
 * is then authorized by SubjectAccessReview like any other user (issue 21, part 1).
 *
 * Who reaches what:
 * - The table comes from the operator (a Secret in the gateway's namespace, or a local file): trusted
 *   for what it says, not for its shape. A malformed entry is skipped and reported by its name when the
 *   name is well formed, by its position otherwise; never with its value (a hash or a password).
 * - `Authorization: Basic …` comes from anyone who can reach the download port: untrusted. It is bounded
 *   before it is decoded, its password is only ever fed to a key derivation and compared in constant
 *   time, and failed attempts are rate-limited per claimed user and per client address.
 *
 * Hash format (one value per user; `$`-separated, base64 is standard base64, padding optional):
 *   scrypt$<N>$<r>$<p>$<salt>$<hash>          N a power of two in [2^14, 2^17], r in [1, 16], p in [1, 4],
 *                                              128·N·r ≤ 128 MiB; Kopia's own users are scrypt 65536/8/1
 *   pbkdf2-sha256$<iterations>$<salt>$<hash>  iterations in [100,000, 2,000,000]; Kopia's: 600,000
 *   plain$<password>                          only when the operator opted in to plaintext
 * Salt 16–64 bytes, hash 16–64 bytes (hashPassword writes 32 and 32, as Kopia does). In the seed's form
 * (`<hostname>: <value>`, one user name from the caller) a value that is not a hash is a plaintext
 * password, so it too needs the opt-in. Every check that is not a recent success costs one derivation,
 * and at most a few run at once (AccessUserVerifier), so a stranger's guesses are bounded in CPU,
 * memory (128·N·r each) and thread-pool time.
 */
import { createHmac, randomBytes, timingSafeEqual } from 'node:crypto';
import { LRUCache } from 'lru-cache';
import { RateLimitedError } from '../util/rate-limited.ts';
import { TokenBucket } from '../util/token-bucket.ts';
import { MAX_PASSWORD_BYTES, MAX_USER_LENGTH, MAX_HOST_LENGTH, deriveKey, hashPassword, isAccessUserName } from '../util/passwords.ts';
import type { Derive, HashOptions, KdfSpec } from '../util/passwords.ts';
import type { Authenticator, UserInfo } from './types.ts';

// Names and hash writing are shared with the client (which may not import this room): they live in util.
export { MAX_PASSWORD_BYTES, MAX_USER_LENGTH, MAX_HOST_LENGTH, deriveKey, hashPassword, isAccessUserName };
export type { Derive, HashOptions, KdfSpec };

// ---------------------------------------------------------------------------------------------------
// Hashes

export const SCRYPT_LIMITS = { minLogN: 14, maxLogN: 17, minR: 1, maxR: 16, minP: 1, maxP: 4, maxMemBytes: 128 * 1024 * 1024 } as const;
export const PBKDF2_LIMITS = { minIterations: 100_000, maxIterations: 2_000_000 } as const;
const MIN_SALT = 16;
const MAX_SALT = 64;
const MIN_KEY = 16;
const MAX_KEY = 64;

/** Strict standard base64 (padding optional); undefined when it is not. */
function base64(text: string): Buffer | undefined {
  if (!/^[A-Za-z0-9+/]*={0,2}$/.test(text) || text.replace(/=+$/, '').length % 4 === 1) return undefined;
  const bytes = Buffer.from(text, 'base64');
  return bytes.toString('base64').replace(/=+$/, '') === text.replace(/=+$/, '') ? bytes : undefined;
}

function intIn(text: string | undefined, min: number, max: number): number | undefined {
  if (text === undefined || !/^[1-9][0-9]{0,9}$/.test(text)) return undefined;
  const n = Number(text);
  return n >= min && n <= max ? n : undefined;
}

/** Why a hash value was refused; the messages never quote the value. */
function parseHash(value: string): { spec: KdfSpec; expected: Buffer } | string {
  const parts = value.split('$');
  const saltAndHash = (s: string | undefined, h: string | undefined): [Buffer, Buffer] | string => {
    const salt = s === undefined ? undefined : base64(s);
    const hash = h === undefined ? undefined : base64(h);
    if (!salt || salt.length < MIN_SALT || salt.length > MAX_SALT) return `salt must be base64 of ${MIN_SALT}-${MAX_SALT} bytes`;
    if (!hash || hash.length < MIN_KEY || hash.length > MAX_KEY) return `hash must be base64 of ${MIN_KEY}-${MAX_KEY} bytes`;
    return [salt, hash];
  };
  if (parts[0] === 'scrypt') {
    if (parts.length !== 6) return 'scrypt hash must be scrypt$N$r$p$salt$hash';
    const N = intIn(parts[1], 2 ** SCRYPT_LIMITS.minLogN, 2 ** SCRYPT_LIMITS.maxLogN);
    const r = intIn(parts[2], SCRYPT_LIMITS.minR, SCRYPT_LIMITS.maxR);
    const p = intIn(parts[3], SCRYPT_LIMITS.minP, SCRYPT_LIMITS.maxP);
    // A hostile or careless cost would make every login (and every stranger's guess) a denial of
    // service; a tiny one would make the hash cheap to crack if the Secret leaks. Both are refused.
    if (N === undefined || (N & (N - 1)) !== 0) return `scrypt N must be a power of two in [2^${SCRYPT_LIMITS.minLogN}, 2^${SCRYPT_LIMITS.maxLogN}]`;
    if (r === undefined) return `scrypt r must be in [${SCRYPT_LIMITS.minR}, ${SCRYPT_LIMITS.maxR}]`;
    if (p === undefined) return `scrypt p must be in [${SCRYPT_LIMITS.minP}, ${SCRYPT_LIMITS.maxP}]`;
    if (128 * N * r > SCRYPT_LIMITS.maxMemBytes) return 'scrypt 128·N·r must be at most 128 MiB';
    const sh = saltAndHash(parts[4], parts[5]);
    if (typeof sh === 'string') return sh;
    return { spec: { algorithm: 'scrypt', N, r, p, salt: sh[0], keyLength: sh[1].length }, expected: sh[1] };
  }
  if (parts[0] === 'pbkdf2-sha256') {
    if (parts.length !== 4) return 'pbkdf2 hash must be pbkdf2-sha256$iterations$salt$hash';
    const iterations = intIn(parts[1], PBKDF2_LIMITS.minIterations, PBKDF2_LIMITS.maxIterations);
    if (iterations === undefined) return `pbkdf2 iterations must be in [${PBKDF2_LIMITS.minIterations}, ${PBKDF2_LIMITS.maxIterations}]`;
    const sh = saltAndHash(parts[2], parts[3]);
    if (typeof sh === 'string') return sh;
    return { spec: { algorithm: 'pbkdf2-sha256', iterations, salt: sh[0], keyLength: sh[1].length }, expected: sh[1] };
  }
  return 'unknown hash format (expected scrypt$…, pbkdf2-sha256$… or, when allowed, plain$…)';
}

// ---------------------------------------------------------------------------------------------------
// The table

/** One user's stored secret; opaque outside this module. */
export interface AccessUserEntry {
  readonly kdf?: { spec: KdfSpec; expected: Buffer };
  /** SHA-256 of a plaintext password (opt-in only); compared after a dummy derivation, see verify. */
  readonly plain?: Buffer;
  /** The entry's value as written, for the success cache key only (an entry's new hash misses the cache). */
  readonly encoded: string;
}

/** An immutable table of access users; a watcher swaps whole tables, never edits one. */
export class AccessUserTable {
  readonly #entries: ReadonlyMap<string, AccessUserEntry>;

  constructor(entries: ReadonlyMap<string, AccessUserEntry>) {
    this.#entries = new Map(entries);
    Object.freeze(this);
  }

  static readonly EMPTY = new AccessUserTable(new Map());

  get size(): number {
    return this.#entries.size;
  }

  /** Names only: safe to log. */
  names(): string[] {
    return [...this.#entries.keys()];
  }

  has(name: string): boolean {
    return this.#entries.has(name);
  }

  /** @internal for verify */
  entry(name: string): AccessUserEntry | undefined {
    return this.#entries.get(name);
  }
}

/** A skipped entry: `entry` is its name when well formed, else its position (`line 3`, `key #2`). */
export interface AccessUserProblem {
  entry: string;
  problem: string;
}

export interface ParseOptions {
  /** The operator opted in to plaintext passwords (`plain$…`, or the seed form's bare values). */
  allowPlaintext?: boolean;
  /**
   * The seed's form: keys are host names, values passwords (or hashes), all for this one user name.
   * Kanister's repository-server user Secret is shaped so.
   */
  seedUsername?: string;
}

export interface ParseResult {
  table: AccessUserTable;
  problems: AccessUserProblem[];
}

/**
 * Parses a table from a Secret's data map (keys are names, values bytes or text) or from a file's text
 * (`<name>: <value>` a line; `#` comments and blank lines ignored; the value is split at the first `:`,
 * surrounding whitespace trimmed). A Kubernetes Secret's keys may not hold `@`, so a Secret carries
 * `user@host` entries as one key's text (parse it as text) or the seed form as keys (host names).
 */
export function parseAccessUsers(source: { text: string } | { data: Readonly<Record<string, string | Uint8Array>> }, opts: ParseOptions = {}): ParseResult {
  const items: { position: string; key: string | undefined; value: string }[] = [];
  if ('text' in source) {
    source.text.split(/\r?\n/).forEach((line, i) => {
      const trimmed = line.trim();
      if (trimmed === '' || trimmed.startsWith('#')) return;
      const colon = trimmed.indexOf(':');
      items.push({ position: `line ${i + 1}`, key: colon < 0 ? undefined : trimmed.slice(0, colon).trim(), value: colon < 0 ? '' : trimmed.slice(colon + 1).trim() });
    });
  } else {
    Object.entries(source.data).forEach(([key, value], i) => {
      const text = typeof value === 'string' ? value : Buffer.from(value).toString('utf8');
      items.push({ position: `key #${i + 1}`, key, value: text.replace(/\r?\n$/, '') });
    });
  }

  const seedUser = opts.seedUsername;
  if (seedUser !== undefined && !isAccessUserName(`${seedUser}@x`)) {
    // The flag's value, not a secret: but still not echoed, it may hold anything.
    return { table: AccessUserTable.EMPTY, problems: [{ entry: 'seed username', problem: 'the seed form\'s username is not a valid user name' }] };
  }
  const entries = new Map<string, AccessUserEntry>();
  const problems: AccessUserProblem[] = [];
  const seen = new Set<string>();
  const duplicates = new Set<string>();
  for (const item of items) {
    if (item.key === undefined) {
      problems.push({ entry: item.position, problem: 'not "<name>: <value>"' });
      continue;
    }
    const name = seedUser === undefined ? item.key : `${seedUser}@${item.key}`;
    if (!isAccessUserName(name) || name.length > MAX_USER_LENGTH + 1 + MAX_HOST_LENGTH) {
      problems.push({ entry: item.position, problem: seedUser === undefined ? 'the name is not <user>@<host> (printable, no ":", "@" or spaces, bounded)' : 'the host name is not printable, bounded and free of ":", "@" and spaces' });
      continue;
    }
    if (seen.has(name)) {
      // Two values for one user: neither is trusted over the other.
      if (!duplicates.has(name)) problems.push({ entry: name, problem: 'listed more than once; every entry for it is skipped' });
      duplicates.add(name);
      continue;
    }
    seen.add(name);
    const entry = parseValue(item.value, seedUser !== undefined, opts.allowPlaintext === true);
    if (typeof entry === 'string') problems.push({ entry: name, problem: entry });
    else entries.set(name, entry);
  }
  for (const name of duplicates) entries.delete(name);
  return { table: new AccessUserTable(entries), problems };
}

function parseValue(value: string, seedForm: boolean, allowPlaintext: boolean): AccessUserEntry | string {
  if (value === '') return 'empty value';
  const isHash = value.startsWith('scrypt$') || value.startsWith('pbkdf2-sha256$');
  const plaintext = value.startsWith('plain$') ? value.slice('plain$'.length) : seedForm && !isHash ? value : undefined;
  if (plaintext !== undefined) {
    if (!allowPlaintext) return 'a plaintext password, and plaintext passwords are not enabled';
    const bytes = Buffer.from(plaintext, 'utf8');
    if (bytes.length === 0 || bytes.length > MAX_PASSWORD_BYTES) return `a plaintext password must be 1-${MAX_PASSWORD_BYTES} bytes`;
    return { plain: plainDigest(bytes), encoded: value };
  }
  const kdf = parseHash(value);
  if (typeof kdf === 'string') return kdf;
  return { kdf, encoded: value };
}

/** Fixed-length digests, so plaintext passwords of different lengths compare in constant time. */
const plainDigest = (b: Buffer): Buffer => createHmac('sha256', 'velero-download-server plaintext').update(b).digest();

// ---------------------------------------------------------------------------------------------------
// Verification

export interface VerifierOptions {
  derive?: Derive;
  /** How long a success is remembered (default 30 s); 0 disables the cache. */
  cacheTtlMs?: number;
  /** Successes remembered (default 1,000). */
  cacheMax?: number;
  /**
   * Derivations run at once (default 2) and waiting (default 16); one more is refused with
   * RateLimitedError. Every stranger's guess costs a derivation (64 MiB and ~0.1 s for scrypt at
   * Kopia's cost) on libuv's small thread pool, which file reads and DNS share: without this bound a
   * spray from many addresses would starve the downloads themselves. Cache hits never wait here.
   */
  maxConcurrent?: number;
  maxQueued?: number;
  /** Clock for the cache, injectable for tests (default performance.now). */
  now?: () => number;
}

/**
 * Verifies passwords against a table. Every attempt that is not a recent success costs one derivation
 * of the same kind: an unknown user is verified against a dummy hash with the default cost, and a
 * plaintext entry also runs that dummy derivation, so the time taken says neither whether the user
 * exists nor how it is stored. (An entry with a higher or lower cost than the default does take another
 * time: that says "this user exists", which an operator choosing costs per user accepts.)
 *
 * Cache trade-off: a client downloading in many requests would pay ~100 ms of scrypt (and 64 MiB) per
 * request; a success is therefore remembered for a short TTL, keyed by HMAC(process-random key, user,
 * password, the entry's value). Only a right password can hit it, so the fast path tells an attacker
 * nothing they did not know. The cost: for the TTL, someone who dumps this process's memory (key and
 * tags) can test guesses at HMAC speed instead of scrypt speed for those users; a changed or removed
 * entry misses at once (its value is in the key, and the table is consulted first).
 */
export class AccessUserVerifier {
  readonly #derive: Derive;
  readonly #ttlMs: number;
  readonly #now: () => number;
  readonly #key = randomBytes(32);
  readonly #successes: LRUCache<string, { expires: number }>;
  readonly #dummy: { spec: KdfSpec; expected: Buffer };
  readonly #maxConcurrent: number;
  readonly #maxQueued: number;
  #running = 0;
  readonly #waiting: (() => void)[] = [];

  constructor(opts: VerifierOptions = {}) {
    this.#derive = opts.derive ?? deriveKey;
    this.#ttlMs = opts.cacheTtlMs ?? 30_000;
    this.#now = opts.now ?? (() => performance.now());
    this.#successes = new LRUCache({ max: opts.cacheMax ?? 1000 });
    this.#maxConcurrent = opts.maxConcurrent ?? 2;
    this.#maxQueued = opts.maxQueued ?? 16;
    // Same cost as hashPassword's default, random salt and expected value no password derives to.
    this.#dummy = { spec: { algorithm: 'scrypt', N: 65536, r: 8, p: 1, salt: randomBytes(32), keyLength: 32 }, expected: randomBytes(32) };
  }

  /**
   * True when `password` is `name`'s. Never throws for a wrong or hostile input; rejects with
   * RateLimitedError when too many checks wait already, or with the derivation's own error.
   */
  async verify(table: AccessUserTable, name: string, password: string): Promise<boolean> {
    const entry = table.entry(name);
    const pw = Buffer.from(password, 'utf8');
    const usable = entry !== undefined && pw.length > 0 && pw.length <= MAX_PASSWORD_BYTES;
    const tag = usable ? this.#tag(name, pw, entry.encoded) : undefined;
    if (tag !== undefined && this.#ttlMs > 0) {
      const hit = this.#successes.get(tag);
      if (hit && hit.expires > this.#now()) return true;
      if (hit) this.#successes.delete(tag);
    }
    await this.#acquire();
    let ok: boolean;
    try {
      ok = await this.#check(entry, usable, pw);
    } finally {
      this.#release();
    }
    if (ok && tag !== undefined && this.#ttlMs > 0) this.#successes.set(tag, { expires: this.#now() + this.#ttlMs });
    return ok;
  }

  async #check(entry: AccessUserEntry | undefined, usable: boolean, pw: Buffer): Promise<boolean> {
    let ok: boolean;
    if (usable && entry?.kdf) {
      ok = safeEqual(await this.#derive(entry.kdf.spec, pw), entry.kdf.expected);
    } else {
      // Unknown user, plaintext entry, or an out-of-bounds password: the same derivation either way.
      const probe = pw.length <= MAX_PASSWORD_BYTES ? pw : pw.subarray(0, MAX_PASSWORD_BYTES);
      // The comparison's result is dropped: it only makes this path's work the same as a real entry's.
      safeEqual(await this.#derive(this.#dummy.spec, probe), this.#dummy.expected);
      ok = usable && entry?.plain !== undefined ? safeEqual(plainDigest(pw), entry.plain) : false;
    }
    return ok;
  }

  async #acquire(): Promise<void> {
    if (this.#running < this.#maxConcurrent) {
      this.#running++;
      return;
    }
    if (this.#waiting.length >= this.#maxQueued) throw new RateLimitedError('too many sign-ins being checked at once; retry later', 1);
    // The slot is handed over by #release, so #running stays counted for the waiter.
    await new Promise<void>((resolve) => this.#waiting.push(resolve));
  }

  #release(): void {
    const next = this.#waiting.shift();
    if (next) next();
    else this.#running--;
  }

  #tag(name: string, pw: Buffer, encoded: string): string {
    const h = createHmac('sha256', this.#key);
    // Length-prefixed, so no two different triples give the same input.
    for (const part of [Buffer.from(name, 'utf8'), pw, Buffer.from(encoded, 'utf8')]) {
      const len = Buffer.alloc(4);
      len.writeUInt32BE(part.length);
      h.update(len).update(part);
    }
    return h.digest('base64');
  }
}

function safeEqual(a: Buffer, b: Buffer): boolean {
  return a.length === b.length && timingSafeEqual(a, b);
}

const defaultVerifier = new AccessUserVerifier();

/** {@link AccessUserVerifier.verify} with the process-wide verifier (real derivation, 30 s cache). */
export function verify(table: AccessUserTable, name: string, password: string): Promise<boolean> {
  return defaultVerifier.verify(table, name, password);
}

// ---------------------------------------------------------------------------------------------------
// HTTP Basic

/** Longest Authorization header considered (a user, a 1 KiB password, base64, the scheme: well under). */
export const MAX_BASIC_HEADER = 4096;

/**
 * `Authorization: Basic <base64(user:password)>` (RFC 7617, UTF-8) → its user and password, split at
 * the first `:` (a password may hold more). Undefined for anything else: another scheme, an oversized
 * header, bad base64, bytes that are not UTF-8, an empty user, a user with control characters. The
 * header is the caller's: untrusted, and never echoed.
 */
export function parseBasic(header: string | undefined): { user: string; password: string } | undefined {
  if (header === undefined || header.length > MAX_BASIC_HEADER) return undefined;
  const m = /^Basic[ \t]+([A-Za-z0-9+/]+={0,2})[ \t]*$/i.exec(header);
  return m?.[1] === undefined ? undefined : decodeBasic(m[1]);
}

/** The credentials part of a Basic header (what follows `Basic `), decoded as {@link parseBasic} does. */
export function decodeBasic(token68: string): { user: string; password: string } | undefined {
  if (token68.length > MAX_BASIC_HEADER) return undefined;
  const bytes = base64(token68);
  if (!bytes) return undefined;
  let text: string;
  try {
    text = new TextDecoder('utf-8', { fatal: true }).decode(bytes);
  } catch {
    return undefined;
  }
  const colon = text.indexOf(':');
  if (colon <= 0) return undefined;
  const user = text.slice(0, colon);
  // eslint-disable-next-line no-control-regex
  if (/[\u0000-\u001f\u007f]/.test(user)) return undefined;
  return { user, password: text.slice(colon + 1) };
}

// ---------------------------------------------------------------------------------------------------
// Failed attempts

export interface FailedAttemptLimiterOptions {
  /** Failed attempts a claimed user may have in a burst, and refilled per second (defaults 10, 0.1). */
  perUser?: { burst: number; qps: number };
  /** The same per client address (defaults 20, 0.2). */
  perClient?: { burst: number; qps: number };
  /** Users and clients remembered, each (LRU; default 10,000). A forgotten one starts full again. */
  max?: number;
  /** Clock in ms, injectable for tests (default performance.now). */
  now?: () => number;
}

/**
 * Token buckets of failed attempts, one per claimed user and one per client address, for the LRU-most
 * recent ones (a spray of names or addresses costs bounded memory). An attempt takes a token from both
 * before the password is checked, so parallel guesses cannot overrun the budget, and gives them back
 * when it succeeds. Per-user limiting lets a stranger who knows a user name slow that user's logins
 * down (to the refill rate): the issue asks for it, and the per-client buckets keep one address from
 * doing it cheaply; a right password from a cached success still costs a token only for its moment.
 */
export class FailedAttemptLimiter {
  readonly #users: LRUCache<string, TokenBucket>;
  readonly #clients: LRUCache<string, TokenBucket>;
  readonly #perUser: { burst: number; qps: number };
  readonly #perClient: { burst: number; qps: number };
  readonly #now: () => number;

  constructor(opts: FailedAttemptLimiterOptions = {}) {
    this.#perUser = opts.perUser ?? { burst: 10, qps: 0.1 };
    this.#perClient = opts.perClient ?? { burst: 20, qps: 0.2 };
    this.#users = new LRUCache({ max: opts.max ?? 10_000 });
    this.#clients = new LRUCache({ max: opts.max ?? 10_000 });
    this.#now = opts.now ?? (() => performance.now());
  }

  /**
   * Takes an attempt for (`user`, `client`). Returns 0 and a `release` to call on success, or the
   * milliseconds until an attempt is possible (nothing taken).
   */
  attempt(user: string, client: string): { waitMs: 0; release: () => void } | { waitMs: number } {
    const now = this.#now();
    const u = this.#bucket(this.#users, user, this.#perUser, now);
    const c = this.#bucket(this.#clients, client, this.#perClient, now);
    const uw = u.tryTake(now);
    const cw = c.tryTake(now);
    if (uw === 0 && cw === 0) return { waitMs: 0, release: () => (u.refund(), c.refund()) };
    if (uw === 0) u.refund();
    if (cw === 0) c.refund();
    return { waitMs: Math.max(uw, cw) };
  }

  /** Users and clients remembered (for tests and metrics). */
  get size(): { users: number; clients: number } {
    return { users: this.#users.size, clients: this.#clients.size };
  }

  #bucket(cache: LRUCache<string, TokenBucket>, key: string, rate: { burst: number; qps: number }, now: number): TokenBucket {
    let b = cache.get(key);
    if (!b) {
      b = new TokenBucket(rate.qps, rate.burst, now);
      cache.set(key, b);
    }
    return b;
  }
}

// ---------------------------------------------------------------------------------------------------
// The authenticator

export const ACCESS_USER_PREFIX = 'velero-download-server:';
export const ACCESS_USERS_GROUP = 'velero-download-server:access-users';

export interface AccessUserAuthenticatorOptions {
  /** The current table; called per attempt, so a watcher swaps tables and removed users fail at once. */
  table: () => AccessUserTable;
  verifier?: AccessUserVerifier;
  limiter?: FailedAttemptLimiter;
}

/**
 * HTTP Basic for access users. `authenticate`'s `token` is the credentials of `Authorization: Basic
 * <token>` (the part after the scheme). Outcomes: a UserInfo named `velero-download-server:<user>@<host>`
 * in group `velero-download-server:access-users` (then authorized by SAR like anyone); null for
 * malformed or wrong credentials; RateLimitedError (429 + Retry-After) when the user's or the client's
 * failed-attempt budget is spent. The password lives only in this call and in the verifier's call.
 */
export class AccessUserAuthenticator implements Authenticator {
  readonly #table: () => AccessUserTable;
  readonly #verifier: AccessUserVerifier;
  readonly #limiter: FailedAttemptLimiter;

  constructor(opts: AccessUserAuthenticatorOptions) {
    this.#table = opts.table;
    this.#verifier = opts.verifier ?? new AccessUserVerifier();
    this.#limiter = opts.limiter ?? new FailedAttemptLimiter();
  }

  async authenticate(token: string, signal: AbortSignal, client = ''): Promise<UserInfo | null> {
    signal.throwIfAborted();
    const creds = decodeBasic(token);
    if (!creds) return null;
    // A claimed name that is not a valid name cannot be a user; it is not worth a bucket either, but
    // still counts against the client (one bucket under a fixed key for all such names).
    const userKey = isAccessUserName(creds.user) ? creds.user : '\u0000invalid';
    const slot = this.#limiter.attempt(userKey, client);
    if (!('release' in slot)) {
      throw new RateLimitedError('too many failed sign-ins for this user or from this client address; retry later', slot.waitMs / 1000);
    }
    let ok: boolean;
    try {
      ok = await this.#verifier.verify(this.#table(), creds.user, creds.password);
    } catch (err) {
      // Nothing was checked (too busy, or the derivation failed): not a failed attempt.
      slot.release();
      throw err;
    }
    if (!ok) return null;
    slot.release();
    return { username: `${ACCESS_USER_PREFIX}${creds.user}`, groups: [ACCESS_USERS_GROUP] };
  }
}

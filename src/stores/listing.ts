/**
 * What every store's `list` shares: the order keys are listed in, which prefixes and resume points
 * are accepted, and the loop over a provider's pages that turns object names into store-relative keys.
 */
import { InvalidKeyError, StoreUnavailableError } from './errors.ts';
import { keySegments, normalizePrefix } from './keys.ts';
import type { ListedObject, ListOptions, ObjectInfo } from './types.ts';

/** The most objects S3 (MaxKeys) and GCS (maxResults) return per request; Azure's 5000 is capped to it. */
export const MAX_PAGE_SIZE = 1000;

// Code units from U+D800 up: surrogates encode code points above U+FFFF, so in code point order they
// come after U+E000-U+FFFF, while plain UTF-16 comparison puts them before.
function rank(unit: number): number {
  if (unit < 0xd800) return unit;
  return unit >= 0xe000 ? unit - 0x800 : unit + 0x2000;
}

/**
 * Orders keys by Unicode code point, which is the order of their UTF-8 bytes: the order S3 and GCS
 * list in. JavaScript's `<` compares UTF-16 code units, which differs for characters above U+FFFF.
 */
export function compareKeys(a: string, b: string): number {
  const n = Math.min(a.length, b.length);
  for (let i = 0; i < n; i++) {
    const x = a.charCodeAt(i);
    const y = b.charCodeAt(i);
    if (x !== y) return rank(x) - rank(y);
  }
  return a.length - b.length;
}

/** Whether `get` would accept `key` (a store may hold names it refuses: `a//b`, `dir/` markers...). */
export function isValidKey(key: string): boolean {
  try {
    keySegments(key);
    return true;
  } catch {
    return false;
  }
}

/**
 * Checks a list prefix: a key whose last segment may be cut short (`backups/a` matches `backups/ab/x`),
 * or ending in one `/`; the empty prefix lists everything. Whatever could name something outside the
 * location as a key could (`..`, `.`, empty segments, a leading `/`, a backslash, a control character)
 * throws InvalidKeyError.
 */
function checkListPrefix(prefix: string): void {
  if (prefix === '') return;
  const asKey = prefix.endsWith('/') ? prefix.slice(0, -1) : prefix;
  try {
    if (asKey === '') throw new InvalidKeyError('it is absolute');
    keySegments(asKey);
  } catch (err) {
    const text = prefix.length > 80 ? `${prefix.slice(0, 80)}…` : prefix;
    throw new InvalidKeyError(`list prefix ${JSON.stringify(text)} is refused: ${(err as Error).message}`);
  }
}

/** Checks a listing's prefix and options (InvalidKeyError for a prefix or `after` that could leave); returns the page size. */
export function checkListOptions(prefix: string, opts: ListOptions): number {
  checkListPrefix(prefix);
  if (opts.after !== undefined) keySegments(opts.after);
  const size = opts.pageSize ?? MAX_PAGE_SIZE;
  if (!Number.isInteger(size) || size < 1 || size > MAX_PAGE_SIZE) {
    throw new RangeError(`list page size must be an integer from 1 to ${MAX_PAGE_SIZE}`);
  }
  return size;
}

/** What an SDK-based adapter lends its listing besides the client: names, and its shaping of answers and errors. */
export interface AdapterListing {
  /** The location's name, for messages. */
  location: string;
  /** The location's prefix inside the bucket or container. */
  root: string;
  /** The same ObjectInfo `stat` makes of a size, an ETag and a Last-Modified. */
  info(size: number, etag: string | undefined, lastModified: Date | undefined): ObjectInfo;
  /** The adapter's error translation (SDK and network errors → store errors, the abort reason as it is). */
  translate(err: unknown, signal: AbortSignal): unknown;
}

/** One provider request's worth of a listing. */
export interface PageRequest {
  /** Full object names must start with this (the location's prefix, `/`, the list prefix). */
  namePrefix: string;
  /** First page only: the full name to start strictly after, for stores that can (S3, GCS). */
  startAfter: string | undefined;
  /** The provider's token for the next page; undefined for the first. */
  token: string | undefined;
  pageSize: number;
  signal: AbortSignal;
}

export interface ListPage {
  /** Full object names and what the listing says of them, in the provider's order. */
  objects: { name: string; info: ObjectInfo }[];
  /** The next page's token; undefined after the last page. */
  next: string | undefined;
}

/** A provider's listing: its name for messages, the location's prefix, and one request per page. */
export interface PagedSource {
  /** `location <name>`, to start error messages with. */
  location: string;
  /** The location's prefix (normalized here); '' for a whole bucket or container. */
  root: string;
  /** Fetches one page; errors it throws must already be store errors (or the signal's reason). */
  fetchPage(request: PageRequest): Promise<ListPage>;
}

/**
 * Lists `prefix` a provider page at a time: the next page is asked for only when the caller has taken
 * every object of the one before, so at most one page is held. Names are checked to be under the
 * prefix and strictly ascending (a provider that lists out of order fails the listing rather than
 * break `after`); names `get` would refuse are left out.
 */
export async function* listPages(source: PagedSource, prefix: string, opts: ListOptions): AsyncGenerator<ListedObject> {
  const { signal, after } = opts;
  signal.throwIfAborted();
  const pageSize = checkListOptions(prefix, opts);
  const root = normalizePrefix(source.root);
  const base = root === '' ? '' : `${root}/`;
  const namePrefix = base + prefix;
  const startAfter = after === undefined ? undefined : base + after;
  const unavailable = (what: string): StoreUnavailableError =>
    new StoreUnavailableError(`${source.location}: listing ${JSON.stringify(prefix)}: ${what}`);
  let token: string | undefined;
  let last: string | undefined;
  do {
    signal.throwIfAborted();
    const page = await source.fetchPage({ namePrefix, startAfter: token === undefined ? startAfter : undefined, token, pageSize, signal });
    for (const { name, info } of page.objects) {
      signal.throwIfAborted();
      if (!name.startsWith(namePrefix)) throw unavailable('the store listed an object outside the prefix asked');
      if (last !== undefined && compareKeys(name, last) <= 0) throw unavailable('the store listed objects out of order');
      last = name;
      if (startAfter !== undefined && compareKeys(name, startAfter) <= 0) continue;
      const key = name.slice(base.length);
      if (isValidKey(key)) yield { key, ...info };
    }
    if (page.next !== undefined && page.next === token) throw unavailable('the store repeated a page token');
    token = page.next;
  } while (token !== undefined);
}

/**
 * Bounds on what strangers can make the gateway hold at once: concurrent downloads (answered with 503
 * and Retry-After past the cap) and open connections per client address (the listener closes those
 * over the cap). Memory is what runs out first; README "Bounds" says how the defaults follow
 * from the measured cost of a connection and of a download.
 */
import type { Response } from 'express';
import { HttpError } from './status.ts';

/** What a refused download is told to wait: downloads last seconds to minutes, so sooner is noise. */
export const DOWNLOAD_RETRY_AFTER_SECONDS = 5;

/**
 * Marks a response holding a slot (a property of the response, which dies with it): no per-request
 * entry in a WeakSet or Set, whose tables V8 rehashes as entries come and go (see server/listener.ts,
 * ACTIVE, for what that cost).
 */
const HOLDS_SLOT = Symbol('holds a download slot');

/**
 * A counter of download slots. A download takes one once its caller is authorized and its object
 * located (strangers, whose requests end at authentication, never hold one: a flood of them must not
 * turn away allowed users) and gives it back when its response closes, however it ends.
 */
export class DownloadSlots {
  readonly max: number;
  #inUse = 0;
  readonly #onRefused: (() => void) | undefined;

  constructor(max: number, opts: { onRefused?: () => void } = {}) {
    if (!Number.isInteger(max) || max < 1) throw new Error(`the download cap must be a positive integer; got ${max}`);
    this.max = max;
    this.#onRefused = opts.onRefused;
  }

  /** Downloads holding a slot now. */
  get inUse(): number {
    return this.#inUse;
  }

  /**
   * Takes a slot for `res` until it closes; an HttpError (503, Retry-After) when none is free. Taking
   * twice for one response holds one slot.
   */
  claim(res: Response): HttpError | undefined {
    const holder = res as Response & { [HOLDS_SLOT]?: DownloadSlots };
    if (holder[HOLDS_SLOT] === this) return undefined;
    if (this.#inUse >= this.max) {
      this.#onRefused?.();
      return new HttpError(
        503,
        'ServiceUnavailable',
        `the gateway is serving as many downloads as it may at once (--max-concurrent-downloads); retry in ${DOWNLOAD_RETRY_AFTER_SECONDS} s`,
        { 'Retry-After': String(DOWNLOAD_RETRY_AFTER_SECONDS) },
      );
    }
    this.#inUse++;
    holder[HOLDS_SLOT] = this;
    res.on('close', () => {
      this.#inUse--;
    });
    return undefined;
  }
}

/**
 * The key a per-client connection cap counts under: the IPv4 address, or the /64 of an IPv6 address
 * (one host or one subscriber commonly holds a whole /64, so per-address counting would not bound it).
 */
export function connectionKey(address: string): string {
  const v4 = /^(?:::ffff:)?(\d{1,3}(?:\.\d{1,3}){3})$/i.exec(address);
  if (v4) return v4[1]!;
  const [head = '', tail] = address.split('%')[0]!.toLowerCase().split('::');
  const left = head === '' ? [] : head.split(':');
  if (tail === undefined) return `${left.slice(0, 4).join(':')}::/64`;
  // `a:b::c:d`: the groups before `::` come first; the rest of the first four are zeros unless they
  // come after `::` and reach into the first half.
  const right = tail === '' ? [] : tail.split(':');
  // A dotted IPv4 tail (`64:ff9b::192.0.2.1`) is two groups.
  if (right.at(-1)?.includes('.')) right.splice(-1, 1, '0', '0');
  const groups = [...left, ...Array<string>(8 - left.length - right.length).fill('0'), ...right];
  return `${groups
    .slice(0, 4)
    .map((g) => g.replace(/^0+(?=.)/, ''))
    .join(':')}::/64`;
}

/** Open connections per key, against a cap. */
export class ConnectionCounter {
  readonly max: number;
  readonly #open = new Map<string, number>();

  constructor(max: number) {
    this.max = max;
  }

  /** Counts one more connection under `key`; false (and nothing counted) when that would pass the cap. */
  tryOpen(key: string): boolean {
    const n = this.#open.get(key) ?? 0;
    if (n >= this.max) return false;
    this.#open.set(key, n + 1);
    return true;
  }

  close(key: string): void {
    const n = (this.#open.get(key) ?? 0) - 1;
    if (n <= 0) this.#open.delete(key);
    else this.#open.set(key, n);
  }

  /** Open connections under `key`. */
  count(key: string): number {
    return this.#open.get(key) ?? 0;
  }

  /** Keys with open connections. */
  get keys(): number {
    return this.#open.size;
  }
}

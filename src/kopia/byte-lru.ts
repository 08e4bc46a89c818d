/**
 * One memory budget for every open repository's caches (content indexes, directories, manifests):
 * a least-recently-used map whose entries carry their estimated size in bytes. Adding past the budget
 * drops the least recently used entries until the total fits again; an entry larger than the whole
 * budget is not kept at all (its owner loads it again when next needed). Entries belong to an owner
 * (one repository) so that a repository leaving the pool takes its entries with it.
 */
export interface ByteLRUStats {
  /** Bytes of the entries held (their estimates). */
  bytes: number;
  entries: number;
  hits: number;
  misses: number;
  /** Entries dropped to make room (not those replaced or deleted by their owner). */
  evictions: number;
}

interface Slot {
  value: unknown;
  bytes: number;
  owner: number;
}

export class ByteLRU {
  readonly budget: number;
  /** Insertion order is recency order: a hit re-inserts. */
  readonly #slots = new Map<string, Slot>();
  #bytes = 0;
  #nextOwner = 1;
  #hits = 0;
  #misses = 0;
  #evictions = 0;

  /** `budget` in bytes (a positive integer). */
  constructor(budget: number) {
    if (!Number.isSafeInteger(budget) || budget <= 0) throw new RangeError(`a cache budget must be a positive number of bytes, not ${budget}`);
    this.budget = budget;
  }

  /** A new owner id: one per repository. */
  newOwner(): number {
    return this.#nextOwner++;
  }

  #key(owner: number, key: string): string {
    return `${owner}\0${key}`;
  }

  get<T>(owner: number, key: string): T | undefined {
    const k = this.#key(owner, key);
    const slot = this.#slots.get(k);
    if (!slot) {
      this.#misses++;
      return undefined;
    }
    this.#hits++;
    this.#slots.delete(k);
    this.#slots.set(k, slot);
    return slot.value as T;
  }

  /** Keeps `value` (replacing any under the same key) and drops the least recently used entries past the budget. */
  set(owner: number, key: string, value: unknown, bytes: number): void {
    const k = this.#key(owner, key);
    this.#drop(k);
    if (bytes > this.budget) return;
    this.#slots.set(k, { value, bytes, owner });
    this.#bytes += bytes;
    for (const [oldest, slot] of this.#slots) {
      if (this.#bytes <= this.budget) break;
      this.#slots.delete(oldest);
      this.#bytes -= slot.bytes;
      this.#evictions++;
    }
  }

  delete(owner: number, key: string): void {
    this.#drop(this.#key(owner, key));
  }

  /** Drops every entry of `owner` (a walk over all entries: done when a repository leaves the pool). */
  deleteOwner(owner: number): void {
    for (const [k, slot] of this.#slots) if (slot.owner === owner) this.#drop(k);
  }

  #drop(k: string): void {
    const slot = this.#slots.get(k);
    if (!slot) return;
    this.#slots.delete(k);
    this.#bytes -= slot.bytes;
  }

  stats(): ByteLRUStats {
    return { bytes: this.#bytes, entries: this.#slots.size, hits: this.#hits, misses: this.#misses, evictions: this.#evictions };
  }
}

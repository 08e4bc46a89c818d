/**
 * Following files an operator replaces while the gateway runs (a certificate pair, the access-user
 * table), by polling their stat with `fs.watchFile`: it notices in-place writes, atomic renames and
 * Kubernetes' `..data` symlink swaps of mounted Secrets alike, where inotify-based `fs.watch` loses a
 * renamed or re-linked file. The cost is the delay: a change is seen within one interval.
 */
import { unwatchFile, watchFile } from 'node:fs';

/** How often the files are stat'ed unless told otherwise. */
export const DEFAULT_POLL_INTERVAL_MS = 2000;

/**
 * Calls `check` whenever one of `files` changes, and on {@link poll}. Checks run one after another,
 * so two files changing together cannot interleave two swaps. `check` must not reject: its callers
 * report their own failures. Call {@link stop} so the process can exit.
 */
export class FilePoller<T> {
  readonly #files: readonly string[];
  readonly #check: () => Promise<T>;
  #queue: Promise<unknown> = Promise.resolve();
  #stopped = false;
  readonly #listener = (): void => {
    void this.poll();
  };

  constructor(files: readonly string[], check: () => Promise<T>, intervalMs = DEFAULT_POLL_INTERVAL_MS) {
    this.#files = [...new Set(files)];
    this.#check = check;
    for (const file of this.#files) watchFile(file, { interval: intervalMs, persistent: true }, this.#listener);
  }

  get stopped(): boolean {
    return this.#stopped;
  }

  /** Runs a check now (after any running one), as a change would. */
  poll(): Promise<T> {
    const run = this.#queue.then(() => this.#check());
    this.#queue = run.catch(() => undefined);
    return run;
  }

  stop(): void {
    if (this.#stopped) return;
    this.#stopped = true;
    for (const file of this.#files) unwatchFile(file, this.#listener);
  }
}

/**
 * Work shared by every caller who asks for the same thing while it runs (opening a repository,
 * loading its index). The work never runs under a caller's signal: a first caller who goes away
 * must not fail the others who joined. It runs under a signal of its own, which aborts after
 * `timeoutMs` (so shared work cannot hang forever) or when every caller has stopped waiting (work
 * nobody waits for is not worth its reads). Each caller waits with its own signal, whose abort
 * rejects only that caller's wait. Whatever the outcome, a finished flight is forgotten: results
 * are kept, if at all, by whoever started the work; failures are never kept.
 */
import { abortable } from '../util/abortable.ts';
import { KopiaTimeoutError } from './errors.ts';

interface Flight<T> {
  promise: Promise<T>;
  controller: AbortController;
  waiters: number;
  settled: boolean;
}

export class Flights<K> {
  readonly #timeoutMs: number;
  readonly #running = new Map<K, Flight<unknown>>();

  constructor(timeoutMs: number) {
    this.#timeoutMs = timeoutMs;
  }

  /** Flights in progress (for tests and metrics). */
  get size(): number {
    return this.#running.size;
  }

  /**
   * The result of the flight for `key`: joins the one in progress, or starts `work` under the
   * flight's own signal. `what` names the work in a timeout's message.
   */
  async run<T>(key: K, what: string, signal: AbortSignal, work: (signal: AbortSignal) => Promise<T>): Promise<T> {
    signal.throwIfAborted();
    const flight = (this.#running.get(key) as Flight<T> | undefined) ?? this.#start(key, what, work);
    flight.waiters++;
    try {
      return await abortable(flight.promise, signal);
    } finally {
      flight.waiters--;
      if (flight.waiters === 0 && !flight.settled) {
        flight.controller.abort(signal.reason);
        // Forgotten at once: a caller arriving now starts afresh rather than join doomed work.
        if (this.#running.get(key) === flight) this.#running.delete(key);
      }
    }
  }

  #start<T>(key: K, what: string, work: (signal: AbortSignal) => Promise<T>): Flight<T> {
    const controller = new AbortController();
    const timer = setTimeout(() => controller.abort(new KopiaTimeoutError(`${what} did not finish within ${this.#timeoutMs} ms`)), this.#timeoutMs);
    timer.unref();
    const flight: Flight<T> = { controller, waiters: 0, settled: false, promise: Promise.resolve() as Promise<T> };
    flight.promise = (async () => {
      try {
        const value = await work(controller.signal);
        // Work that ignored its signal still must not report success after its time bound.
        controller.signal.throwIfAborted();
        return value;
      } finally {
        flight.settled = true;
        clearTimeout(timer);
        if (this.#running.get(key) === flight) this.#running.delete(key);
      }
    })();
    // Every waiter sees a rejection through its own await; none is unhandled when all have left.
    flight.promise.catch(() => undefined);
    this.#running.set(key, flight);
    return flight;
  }
}

/**
 * A one-line progress bar (bytes, percentage, recent rate, ETA or "stalled") redrawn on a terminal,
 * for large transfers only, and only when stderr is a terminal: piped or redirected output gets
 * nothing extra.
 */
import type { Progress } from './transfer.ts';

/** Transfers smaller than this finish before a bar would help. */
export const PROGRESS_MIN_BYTES = 1024 * 1024;

const UNITS = ['B', 'KiB', 'MiB', 'GiB', 'TiB'];

/** 1536 → "1.5 KiB". */
export function formatBytes(n: number): string {
  let v = n;
  let u = 0;
  while (v >= 1024 && u < UNITS.length - 1) {
    v /= 1024;
    u++;
  }
  return u === 0 ? `${v} B` : `${v.toFixed(1)} ${UNITS[u]!}`;
}

/** 75 → "1m15s". */
export function formatSeconds(s: number): string {
  if (!Number.isFinite(s)) return '--';
  const t = Math.max(0, Math.round(s));
  if (t < 60) return `${t}s`;
  if (t < 3600) return `${Math.floor(t / 60)}m${String(t % 60).padStart(2, '0')}s`;
  return `${Math.floor(t / 3600)}h${String(Math.floor((t % 3600) / 60)).padStart(2, '0')}m`;
}

/** How far back the rate looks: long enough to smooth bursts, short enough to show a stall soon. */
export const RATE_WINDOW_MS = 5000;
/** Without a byte for this long, the line says "stalled" instead of an ETA. */
export const STALL_MS = 3000;

/**
 * The transfer rate over the last RATE_WINDOW_MS: the bytes counted since the moment one window ago,
 * divided by the window. When bytes stop coming, that moment slides
 * past the last of them and the rate falls smoothly to 0, instead of staying at its last value.
 */
export class RateWindow {
  /** [time, bytes received by then], oldest first; the first is where counting began. */
  readonly #samples: [number, number][] = [];

  add(now: number, received: number): void {
    this.#samples.push([now, received]);
    // Keep one sample at or before the window's start, for interpolating there.
    while (this.#samples.length > 2 && this.#samples[1]![0] <= now - RATE_WINDOW_MS) this.#samples.shift();
  }

  /** Bytes per second at `now`. */
  rate(now: number): number {
    const first = this.#samples[0];
    const last = this.#samples.at(-1);
    if (!first || !last || now <= first[0]) return 0;
    const from = Math.max(first[0], now - RATE_WINDOW_MS);
    return ((last[1] - this.#receivedAt(from)) * 1000) / (now - from);
  }

  /** Milliseconds since the last byte (or since counting began). */
  idle(now: number): number {
    const last = this.#samples.at(-1);
    return last ? now - last[0] : 0;
  }

  /** Bytes received by time `t`: those of the last sample at or before it (bytes count when they arrive). */
  #receivedAt(t: number): number {
    let at = this.#samples[0]![1];
    for (const [time, received] of this.#samples) {
      if (time > t) break;
      at = received;
    }
    return at;
  }
}

/**
 * The bar's text for `received` of `total` bytes at `rate` bytes per second, at most `width`
 * characters; `idleMs` of STALL_MS or more says "stalled" (and for how long) where the ETA would be.
 */
export function formatProgress(received: number, total: number | undefined, rate: number, width = 80, idleMs = 0): string {
  const rateText = `${formatBytes(Math.round(rate))}/s`;
  const stalled = idleMs >= STALL_MS ? `stalled ${formatSeconds(idleMs / 1000)}` : '';
  if (total === undefined || total <= 0) return `${formatBytes(received)}  ${rateText}${stalled && `  ${stalled}`}`.slice(0, width);
  const fraction = Math.min(1, received / total);
  const eta = rate > 0 ? (total - received) / rate : Infinity;
  const tail = ` ${String(Math.floor(fraction * 100)).padStart(3)}%  ${formatBytes(received)} / ${formatBytes(total)}  ${rateText}  ${stalled || `ETA ${formatSeconds(eta)}`}`;
  const barWidth = Math.max(0, Math.min(30, width - tail.length - 2));
  if (barWidth < 5) return tail.trim().slice(0, width);
  const filled = Math.round(fraction * barWidth);
  return `[${'='.repeat(filled)}${filled < barWidth ? '>' : ''}${' '.repeat(Math.max(0, barWidth - filled - 1))}]${tail}`;
}

/** Where a bar can be drawn: a terminal stream. */
export interface TerminalLike {
  isTTY?: boolean;
  columns?: number;
  write(s: string): boolean;
}

/** The clock a bar reads and the timer that redraws it; tests pass their own. */
export interface BarClock {
  now(): number;
  /** Calls `tick` every `ms` until the returned function is called. */
  every(ms: number, tick: () => void): () => void;
}

const realClock: BarClock = {
  now: () => performance.now(),
  every(ms, tick) {
    // unref: a bar never keeps the process alive.
    const timer = setInterval(tick, ms).unref();
    return () => clearInterval(timer);
  },
};

/**
 * Redraws at most every `intervalMs` as bytes arrive, and on a timer as well, so a transfer that
 * stalls shows its rate falling and then "stalled" instead of a frozen line; `finish()` leaves the
 * final line and a newline.
 */
export class ProgressBar implements Progress {
  readonly #out: TerminalLike;
  readonly #clock: BarClock;
  readonly #intervalMs: number;
  readonly #window = new RateWindow();
  #stopTimer: (() => void) | undefined;
  #last = -Infinity;
  #drawn = false;
  #received = 0;
  #total: number | undefined;

  constructor(out: TerminalLike, intervalMs = 200, clock: BarClock = realClock) {
    this.#out = out;
    this.#intervalMs = intervalMs;
    this.#clock = clock;
  }

  update(received: number, total: number | undefined): void {
    const now = this.#clock.now();
    this.#received = received;
    this.#total = total;
    this.#window.add(now, received);
    // The timer starts with the first bytes: nothing is drawn for a transfer that never begins.
    this.#stopTimer ??= this.#clock.every(Math.max(this.#intervalMs, 100), () => this.#draw());
    if (now - this.#last < this.#intervalMs) return;
    this.#draw();
  }

  #draw(): void {
    const now = this.#clock.now();
    this.#last = now;
    const width = (this.#out.columns ?? 80) - 1;
    this.#out.write(`\r${formatProgress(this.#received, this.#total, this.#window.rate(now), width, this.#window.idle(now))}\x1b[K`);
    this.#drawn = true;
  }

  /** Stops the timer, draws the final state (when anything was drawn) and ends the line. */
  finish(): void {
    this.#stopTimer?.();
    this.#stopTimer = undefined;
    if (!this.#drawn) return;
    this.#draw();
    this.#out.write('\n');
    this.#drawn = false;
  }
}

/** A bar when `out` is a terminal and the transfer is large or of unknown size; otherwise none. */
export function progressFor(out: TerminalLike, total: number | undefined): ProgressBar | undefined {
  if (!out.isTTY) return undefined;
  if (total !== undefined && total < PROGRESS_MIN_BYTES) return undefined;
  return new ProgressBar(out);
}

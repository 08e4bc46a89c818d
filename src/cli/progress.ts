/**
 * A one-line progress bar (bytes, percentage, rate, ETA) redrawn on a terminal, for large transfers
 * only, and only when stderr is a terminal: piped or redirected output gets nothing extra.
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

/** The bar's text for `received` of `total` bytes after `elapsedMs`, at most `width` characters. */
export function formatProgress(received: number, total: number | undefined, elapsedMs: number, width = 80): string {
  const rate = elapsedMs > 0 ? (received * 1000) / elapsedMs : 0;
  const rateText = `${formatBytes(Math.round(rate))}/s`;
  if (total === undefined || total <= 0) return `${formatBytes(received)}  ${rateText}`.slice(0, width);
  const fraction = Math.min(1, received / total);
  const eta = rate > 0 ? (total - received) / rate : Infinity;
  const tail = ` ${String(Math.floor(fraction * 100)).padStart(3)}%  ${formatBytes(received)} / ${formatBytes(total)}  ${rateText}  ETA ${formatSeconds(eta)}`;
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

/** Redraws at most every `intervalMs`; `finish()` leaves the final line and a newline. */
export class ProgressBar implements Progress {
  readonly #out: TerminalLike;
  readonly #start = Date.now();
  readonly #intervalMs: number;
  #last = 0;
  #drawn = false;
  #received = 0;
  #total: number | undefined;

  constructor(out: TerminalLike, intervalMs = 200) {
    this.#out = out;
    this.#intervalMs = intervalMs;
  }

  update(received: number, total: number | undefined): void {
    this.#received = received;
    this.#total = total;
    const now = Date.now();
    if (now - this.#last < this.#intervalMs) return;
    this.#last = now;
    this.#draw();
  }

  #draw(): void {
    const width = (this.#out.columns ?? 80) - 1;
    this.#out.write(`\r${formatProgress(this.#received, this.#total, Date.now() - this.#start, width)}\x1b[K`);
    this.#drawn = true;
  }

  /** Draws the final state (when anything was drawn) and ends the line. */
  finish(): void {
    if (!this.#drawn) return;
    this.#draw();
    this.#out.write('\n');
  }
}

/** A bar when `out` is a terminal and the transfer is large or of unknown size; otherwise none. */
export function progressFor(out: TerminalLike, total: number | undefined): ProgressBar | undefined {
  if (!out.isTTY) return undefined;
  if (total !== undefined && total < PROGRESS_MIN_BYTES) return undefined;
  return new ProgressBar(out);
}

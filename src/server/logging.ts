/** JSON logs (pino). Credentials are redacted by path as a second line of defence; no code logs them. */
import { pino } from 'pino';
import type { DestinationStream, Logger } from 'pino';
import type { LogLevel } from '../config/config.ts';

export const REDACT_PATHS = [
  'req.headers.authorization',
  'headers.authorization',
  '*.authorization',
  '*.token',
  '*.password',
  '*.secret',
  '*.credential',
];

/** Characters a {@link TurnBatchedDestination} holds before it writes without waiting for the turn's end. */
export const TURN_BATCH_MAX = 64 * 1024;

/**
 * Joins the lines logged during one turn of the event loop and hands them to `dest` as one write at
 * the end of the turn (setImmediate), or at once past {@link TURN_BATCH_MAX} characters, or at exit. Under
 * load one turn finishes many requests, each with an access line and an audit line: with a
 * synchronous `dest` that is one write(2) per turn instead of two per request. A line is out within
 * the turn that logged it; `flushSync` (pino calls it for fatal lines) and process exit write what is
 * pending.
 */
export class TurnBatchedDestination implements DestinationStream {
  readonly #dest: DestinationStream;
  #pending = '';
  #scheduled = false;

  constructor(dest: DestinationStream) {
    this.#dest = dest;
    process.once('exit', () => this.flushSync());
  }

  write(line: string): void {
    this.#pending += line;
    if (this.#pending.length >= TURN_BATCH_MAX) {
      this.flushSync();
    } else if (!this.#scheduled) {
      this.#scheduled = true;
      setImmediate(() => {
        this.#scheduled = false;
        this.flushSync();
      });
    }
  }

  flushSync(): void {
    if (this.#pending === '') return;
    const lines = this.#pending;
    this.#pending = '';
    this.#dest.write(lines);
  }
}

let stdout: TurnBatchedDestination | undefined;

/**
 * Standard output, written synchronously (as nginx writes its logs), one write per event-loop turn
 * ({@link TurnBatchedDestination}); one instance per process, shared by the main and audit loggers.
 * Nothing waits in memory past the turn, and a closed stdout (EPIPE) just turns logging off. pino's
 * default asynchronous stream flushes synchronously on exit and retries EPIPE forever there, so a
 * gateway whose log reader had gone never exited on SIGTERM (test/reliability/sigterm.test.ts).
 */
export function stdoutDestination(): DestinationStream {
  stdout ??= new TurnBatchedDestination(pino.destination({ dest: 1, sync: true }));
  return stdout;
}

export function createLogger(level: LogLevel, destination: DestinationStream = stdoutDestination()): Logger {
  return pino(
    {
      level,
      base: { service: 'velero-download-server' },
      redact: { paths: REDACT_PATHS, censor: '[REDACTED]' },
      timestamp: pino.stdTimeFunctions.isoTime,
      formatters: { level: (label) => ({ level: label }) },
    },
    destination,
  );
}

/**
 * The audit logger: the same JSON lines on the main log's destination and, with `file`, appended to
 * that file as well (created 0600 if missing).
 */
export function createAuditLogger(level: LogLevel, file?: string, destination?: DestinationStream): Logger {
  if (!file) return createLogger(level, destination);
  const streams = [
    { stream: destination ?? stdoutDestination() },
    { stream: new TurnBatchedDestination(pino.destination({ dest: file, append: true, mkdir: true, sync: true, mode: 0o600 })) },
  ];
  return createLogger(level, pino.multistream(streams));
}

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

/**
 * Standard output, written synchronously (as nginx writes its logs): a line is out when the call
 * returns, nothing waits in memory at exit, and a closed stdout (EPIPE) just turns logging off. pino's
 * default asynchronous stream flushes synchronously on exit and retries EPIPE forever there, so a
 * gateway whose log reader had gone never exited on SIGTERM (test/reliability/sigterm.test.ts).
 */
export function stdoutDestination(): DestinationStream {
  return pino.destination({ dest: 1, sync: true });
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
    { stream: pino.destination({ dest: file, append: true, mkdir: true, sync: true, mode: 0o600 }) },
  ];
  return createLogger(level, pino.multistream(streams));
}

/** The real curl as the benchmark client, with its own timing (`-w`). */
import { writeFile } from 'node:fs/promises';
import { join } from 'node:path';
import { commandLine, run } from './proc.ts';

export interface CurlTiming {
  httpCode: number;
  /** Bytes of the body received. */
  size: number;
  /** Average download speed, bytes per second. */
  speed: number;
  /** Seconds from start until the first byte of the response. */
  ttfb: number;
  total: number;
}

const WRITE_OUT = '%{http_code} %{size_download} %{speed_download} %{time_starttransfer} %{time_total}';

export interface CurlOptions {
  /** CA file to trust (never -k). */
  cacert?: string;
  /** A file holding the `Authorization: Bearer <token>` header line (see {@link tokenHeaderFile}). */
  headerFile?: string;
  extra?: string[];
}

/**
 * Writes the bearer header into `dir` (mode 0600) for `curl -H @file`: the token stays off every
 * command line, where `ps` would show it.
 */
export async function tokenHeaderFile(dir: string, token: string): Promise<string> {
  const file = join(dir, 'auth-header');
  await writeFile(file, `Authorization: Bearer ${token}\n`, { mode: 0o600 });
  return file;
}

/** curl's arguments; `-w` prints http_code, size, speed, time to first byte, total time. */
export function curlArgs(url: string, o: CurlOptions, writeOut = WRITE_OUT): string[] {
  return [
    '--silent', '--show-error', '--http1.1', '-o', '/dev/null', '-w', writeOut,
    ...(o.cacert ? ['--cacert', o.cacert] : []),
    ...(o.headerFile ? ['-H', `@${o.headerFile}`] : []),
    ...(o.extra ?? []),
    url,
  ];
}

/** The command line. */
export function curlCommand(url: string, o: CurlOptions = {}): string {
  return commandLine('curl', curlArgs(url, o));
}

/** One download to /dev/null; throws unless curl exits 0 with a 2xx. */
export async function curlTimed(url: string, o: CurlOptions = {}): Promise<CurlTiming> {
  const r = await run('curl', curlArgs(url, o));
  const [code, size, speed, ttfb, total] = r.stdout.trim().split(' ').map(Number) as [number, number, number, number, number];
  if (r.code !== 0 || code < 200 || code > 299) {
    throw new Error(`curl ${url} failed: exit ${String(r.code)}, HTTP ${code}: ${r.stderr.trim()}`);
  }
  return { httpCode: code, size, speed, ttfb, total };
}

/** The TLS protocol and cipher curl negotiated with `url` (from `curl -v`), e.g. "TLSv1.3 / TLS_AES_256_GCM_SHA384". */
export async function negotiatedTls(url: string, o: CurlOptions = {}): Promise<string> {
  const r = await run('curl', ['-v', ...curlArgs(url, { ...o, extra: [...(o.extra ?? []), '-r', '0-0'] })]);
  return /SSL connection using (.+)/.exec(r.stderr)?.[1]?.trim() ?? 'unknown';
}

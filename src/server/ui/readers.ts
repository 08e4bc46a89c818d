/**
 * What the page reads out of artifacts to show them: a page of a log (gunzipped and split as it
 * streams, never held whole) and the results file as rows. Both read through the store like a
 * download, after the same authorization, and both are bounded: a line is cut at MAX_LINE
 * characters, a log is scanned for at most MAX_LOG_SCAN bytes of text, a results file is read up to
 * MAX_RESULTS_BYTES once gunzipped. Artifacts are the cluster's data: nothing in them is trusted.
 */
import { createInterface } from 'node:readline';
import type { Readable } from 'node:stream';
import { createGunzip } from 'node:zlib';
import type { Gunzip } from 'node:zlib';
import { own, record } from '../../util/untrusted.ts';

export const LOG_PAGE_LINES = 500;
export const MAX_LINE = 4096;
/** Bytes of gunzipped log text scanned for one page at most (paging far into a huge log stops here). */
export const MAX_LOG_SCAN = 512 * 1024 * 1024;
export const MAX_RESULTS_BYTES = 8 * 1024 * 1024;

export const LOG_LEVELS = ['all', 'error', 'warning', 'info', 'debug'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];

export interface LogLine {
  /** 1-based line number in the whole log. */
  n: number;
  level: string;
  text: string;
}

export interface LogPage {
  lines: LogLine[];
  /** More lines of the filter follow this page. */
  more: boolean;
  /** The scan stopped at MAX_LOG_SCAN before the page was complete. */
  cut: boolean;
}

/**
 * The body gunzipped as it streams: an upstream error or the request's abort fails the gunzip (so a
 * reader of it rejects, never ends quietly); `release` stops both and releases the object.
 */
function gunzipping(body: Readable, signal: AbortSignal): { gunzip: Gunzip; release: () => void } {
  const gunzip = createGunzip();
  body.on('error', (err) => gunzip.destroy(err));
  body.pipe(gunzip);
  const onAbort = (): void => void gunzip.destroy(signal.reason instanceof Error ? signal.reason : new Error('aborted'));
  signal.addEventListener('abort', onAbort, { once: true });
  return {
    gunzip,
    release: () => {
      signal.removeEventListener('abort', onAbort);
      gunzip.destroy();
      body.destroy();
    },
  };
}

// logrus's text format, as Velero writes it: time="..." level=info msg="..." key=value ...
const LEVEL = /(?:^|\s)level=(\w+)/;

function levelOf(line: string): string {
  const l = LEVEL.exec(line)?.[1]?.toLowerCase() ?? '';
  return l === 'warn' ? 'warning' : l === 'fatal' || l === 'panic' ? 'error' : l;
}

/**
 * Page `page` (0-based) of the lines of a gzipped log that match `level`, read as it streams: the
 * read stops (and the stream is destroyed, which releases the object) once the page and one line
 * after it are found. A gzip error or a broken upstream rejects: the page is never shown as if the
 * log ended there.
 */
export async function readLogPage(body: Readable, page: number, level: LogLevel, signal: AbortSignal): Promise<LogPage> {
  const { gunzip, release } = gunzipping(body, signal);
  let scanned = 0;
  let cut = false;
  const lines = createInterface({ input: gunzip, crlfDelay: Infinity });
  const skip = page * LOG_PAGE_LINES;
  const out: LogLine[] = [];
  let matched = 0;
  let more = false;
  let n = 0;
  try {
    for await (const raw of lines) {
      n++;
      scanned += raw.length + 1;
      const lv = levelOf(raw);
      if (level === 'all' || lv === level) {
        if (matched >= skip + LOG_PAGE_LINES) {
          more = true;
          break;
        }
        if (matched >= skip) out.push({ n, level: lv, text: raw.length > MAX_LINE ? `${raw.slice(0, MAX_LINE)} …` : raw });
        matched++;
      }
      if (scanned > MAX_LOG_SCAN) {
        cut = true;
        break;
      }
    }
  } finally {
    lines.close();
    release();
  }
  return { lines: out, more, cut };
}

export interface ResultRow {
  kind: 'error' | 'warning';
  /** `Velero`, `cluster`, or `namespace <name>`. */
  scope: string;
  message: string;
}

/** Gunzips a whole (small) artifact; RangeError past `max` bytes. */
export async function gunzipBounded(body: Readable, max: number, signal: AbortSignal): Promise<Buffer> {
  const { gunzip, release } = gunzipping(body, signal);
  const chunks: Buffer[] = [];
  let size = 0;
  try {
    for await (const c of gunzip as AsyncIterable<Buffer>) {
      size += c.length;
      if (size > max) throw new RangeError(`larger than ${max} bytes once gunzipped`);
      chunks.push(c);
    }
  } finally {
    release();
  }
  return Buffer.concat(chunks);
}

function messages(v: unknown): string[] {
  if (!Array.isArray(v)) return [];
  return v.map((m) => (typeof m === 'string' ? m : JSON.stringify(m))).map((m) => (m.length > MAX_LINE ? `${m.slice(0, MAX_LINE)} …` : m));
}


/**
 * The rows of Velero's results file (`{"errors": {"velero": [...], "cluster": [...], "namespaces":
 * {"ns": [...]}}, "warnings": {...}}`), each message as text. Anything of another shape gives no row
 * (the raw file stays a download away); SyntaxError when it is not JSON.
 */
export function resultRows(json: string): ResultRow[] {
  const doc = record(JSON.parse(json) as unknown);
  const rows: ResultRow[] = [];
  for (const kind of ['error', 'warning'] as const) {
    const r = record(own(doc, `${kind}s`));
    for (const m of messages(own(r, 'velero'))) rows.push({ kind, scope: 'Velero', message: m });
    for (const m of messages(own(r, 'cluster'))) rows.push({ kind, scope: 'cluster', message: m });
    const ns = record(own(r, 'namespaces'));
    for (const name of Object.keys(ns ?? {}).sort()) for (const m of messages(own(ns, name))) rows.push({ kind, scope: `namespace ${name}`, message: m });
  }
  return rows;
}

/**
 * A download to a file that outlives an interruption. The bytes go, exactly as the source sends them,
 * into `<output>.partial`; `<output>.partial.json` records what they are (which artifact from where,
 * which version of it, how many bytes are good), so the next run of the same command asks for the
 * rest with `Range` + `If-Range` instead of starting over. The output's own name only ever holds a
 * complete file.
 *
 * Trust: both files sit next to the output, in a directory others may be able to write (a shared
 * /tmp), so what is found there is data to check, never to believe. A symbolic link, a file of
 * another owner, a record larger than a few KiB, of another shape, for another source, or claiming
 * more bytes than the partial file holds is ignored and the download starts over (the worst a
 * hostile record can do is make the server send a different range, which the transfer checks). The
 * record holds no secret: the source is the route (the server's origin and path, without query or
 * user info, and the artifact's path), never a pre-signed URL, token or password.
 */
import { constants } from 'node:fs';
import { open, rename, unlink } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';
import type { WriteStream } from 'node:fs';
import type { Readable } from 'node:stream';
import { randomBytes } from 'node:crypto';
import { basename, dirname, join } from 'node:path';
import { CliError, EXIT } from './errors.ts';
import type { Resume } from './transfer.ts';

/** What the partial bytes are a prefix of: the same for every run of the same command. */
export interface SourceIdentity {
  /** The API server or download server the command talks to: origin and path only. */
  server: string;
  /** The artifact's route on the download server (path, and the query that shapes the bytes). */
  route: string;
}

/** The sidecar's format version: a record of another version is ignored. */
const VERSION = 1;
/** A record is a few hundred bytes; anything much larger is not one of ours. */
const MAX_RECORD_BYTES = 8 * 1024;
/** Validators are short quoted strings or HTTP dates; visible ASCII only, so one cannot split a header. */
const VALIDATOR = /^[\x21-\x7e][\x20-\x7e]{0,255}$/;

/** The server part of a source identity: origin and path, never user info, query or fragment. */
export function serverIdentity(url: URL): string {
  return `${url.origin}${url.pathname.replace(/\/+$/, '')}`;
}

interface PartialRecord {
  version: number;
  source: SourceIdentity;
  validator: string;
  total: number;
  bytes: number;
}

function parseRecord(text: string): PartialRecord | string {
  let r: unknown;
  try {
    r = JSON.parse(text);
  } catch {
    return 'it is not JSON';
  }
  if (typeof r !== 'object' || r === null) return 'it is not a record';
  const o = r as Record<string, unknown>;
  const src = o.source as Record<string, unknown> | null | undefined;
  if (o.version !== VERSION) return 'it is of another version';
  if (typeof src !== 'object' || src === null || typeof src.server !== 'string' || typeof src.route !== 'string') return 'it names no source';
  if (typeof o.validator !== 'string' || !VALIDATOR.test(o.validator)) return 'it holds no usable ETag';
  if (!Number.isSafeInteger(o.total) || !Number.isSafeInteger(o.bytes)) return 'its sizes are not numbers';
  const total = o.total as number;
  const bytes = o.bytes as number;
  if (bytes <= 0 || bytes >= total) return 'its byte count is out of range';
  return { version: VERSION, source: { server: src.server, route: src.route }, validator: o.validator, total, bytes };
}

/** Opens `path` without following a symbolic link, as a regular file of this user, or says why not. */
async function openOwn(path: string, flags: number): Promise<{ fh: FileHandle; size: number } | string> {
  let fh: FileHandle;
  try {
    fh = await open(path, flags | constants.O_NOFOLLOW);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    return code === 'ENOENT' ? '' : code === 'ELOOP' ? 'it is a symbolic link' : `it cannot be opened (${code ?? 'error'})`;
  }
  const st = await fh.stat();
  const why = !st.isFile() ? 'it is not a regular file' : process.getuid && st.uid !== process.getuid() ? 'another user owns it' : '';
  if (why) {
    await fh.close();
    return why;
  }
  return { fh, size: st.size };
}

async function readRecord(path: string): Promise<PartialRecord | string> {
  const opened = await openOwn(path, constants.O_RDONLY);
  if (typeof opened === 'string') return opened || 'there is no record of what it holds';
  try {
    if (opened.size > MAX_RECORD_BYTES) return 'its record is too large';
    const buf = Buffer.alloc(MAX_RECORD_BYTES + 1);
    const { bytesRead } = await opened.fh.read(buf, 0, buf.length, 0);
    if (bytesRead > MAX_RECORD_BYTES) return 'its record is too large';
    return parseRecord(buf.subarray(0, bytesRead).toString('utf8'));
  } finally {
    await opened.fh.close();
  }
}

/** The file being written, from `from` on. */
export interface PartialWriter {
  readonly stream: WriteStream;
  /** Where this run started writing. */
  readonly from: number;
}

/** `<output>.partial` and its record, for one output file and one source. */
export class PartialDownload {
  readonly path: string;
  readonly recordPath: string;
  readonly #source: SourceIdentity;
  /** Set when an earlier run left a partial file this run can continue. */
  resume: Resume | undefined;
  #writer: PartialWriter | undefined;
  #validator: string | undefined;
  #total: number | undefined;

  private constructor(output: string, source: SourceIdentity) {
    this.path = `${output}.partial`;
    this.recordPath = `${this.path}.json`;
    this.#source = source;
  }

  /**
   * Looks for what an earlier run of the same command left next to `output` (an absolute path).
   * `say` is told why a partial file that is there cannot be continued.
   */
  static async find(output: string, source: SourceIdentity, say: (msg: string) => void): Promise<PartialDownload> {
    const p = new PartialDownload(output, source);
    const data = await openOwn(p.path, constants.O_RDONLY);
    if (data === '') return p;
    let why: string;
    if (typeof data === 'string') {
      why = data;
    } else {
      await data.fh.close();
      const record = await readRecord(p.recordPath);
      if (typeof record === 'string') why = record;
      else if (record.source.server !== source.server || record.source.route !== source.route) why = 'it is from another source';
      else if (record.bytes > data.size) why = 'its record counts more bytes than it holds';
      else {
        p.resume = { offset: record.bytes, validator: record.validator, total: record.total };
        return p;
      }
    }
    say(`ignoring ${p.path} (${why}): starting over`);
    return p;
  }

  /**
   * Opens the partial file for this run's bytes: after the first `from` bytes (those of a resumed
   * download), or empty. `validator` and `total` describe the object; without both a partial file
   * cannot be continued, so no record is written and `keep` will remove it.
   */
  async begin(from: number, validator: string | undefined, total: number | undefined): Promise<PartialWriter> {
    let fh: FileHandle;
    if (from > 0) {
      const opened = await openOwn(this.path, constants.O_WRONLY);
      if (typeof opened === 'string' || opened.size < from) throw new CliError(EXIT.notFound, `${this.path} changed while it was being resumed: run the command again`);
      fh = opened.fh;
      await fh.truncate(from);
    } else {
      await this.remove();
      try {
        // O_EXCL: a name someone else put there in the meantime (a link to elsewhere) is refused, never followed.
        fh = await open(this.path, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
      } catch (err) {
        throw new CliError(EXIT.notFound, `cannot create ${this.path}: ${(err as Error).message}`);
      }
    }
    this.#validator = validator !== undefined && VALIDATOR.test(validator) ? validator : undefined;
    this.#total = total;
    // flush: the bytes are on disk before the record counts them, and before the final rename.
    const stream = fh.createWriteStream({ start: from, flush: true });
    this.#writer = { stream, from };
    if (from > 0 || this.#resumable(0)) await this.#writeRecord(from);
    return this.#writer;
  }

  #resumable(bytes: number): boolean {
    return this.#validator !== undefined && this.#total !== undefined && bytes < this.#total;
  }

  /**
   * After a failure: waits for the file to be closed, then keeps it with its record when it can be
   * continued (bytes written, a validator, a known size), else removes it. Returns the bytes kept (0: none).
   */
  async keep(): Promise<number> {
    const w = this.#writer;
    if (!w) return 0;
    if (!w.stream.closed) {
      w.stream.destroy();
      await new Promise<void>((r) => w.stream.once('close', () => r()));
    }
    const bytes = w.from + w.stream.bytesWritten;
    if (bytes > 0 && this.#resumable(bytes)) {
      try {
        await this.#writeRecord(bytes);
        return bytes;
      } catch {
        // A record that cannot be written makes the bytes useless.
      }
    }
    await this.remove();
    return 0;
  }

  /** The record, written to a new file and renamed over the old one: never half a record. */
  async #writeRecord(bytes: number): Promise<void> {
    const record: PartialRecord = { version: VERSION, source: this.#source, validator: this.#validator!, total: this.#total!, bytes };
    const tmp = join(dirname(this.recordPath), `.${basename(this.recordPath)}.${randomBytes(6).toString('hex')}`);
    const fh = await open(tmp, constants.O_WRONLY | constants.O_CREAT | constants.O_EXCL | constants.O_NOFOLLOW, 0o600);
    try {
      await fh.writeFile(`${JSON.stringify(record)}\n`);
      await fh.sync();
    } finally {
      await fh.close();
    }
    await rename(tmp, this.recordPath).catch(async (err: unknown) => {
      await unlink(tmp).catch(() => {});
      throw err;
    });
  }

  /** The complete bytes, for gunzipping into the output (never through a link someone put in its place). */
  async read(): Promise<Readable> {
    const fh = await open(this.path, constants.O_RDONLY | constants.O_NOFOLLOW);
    return fh.createReadStream();
  }

  /** Removes the partial file and its record (after success, or when they cannot be continued). */
  async remove(): Promise<void> {
    // unlink removes a symbolic link itself, never what it points to.
    await unlink(this.path).catch(() => {});
    await unlink(this.recordPath).catch(() => {});
  }
}

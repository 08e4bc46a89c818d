/**
 * The one way the gateway reads a file that a setting names (an SSE-C key, a client certificate, a
 * credential or CA file): only a regular file, at most 1 MiB, read with a bound. A FIFO, a device
 * (`/dev/zero`, `/dev/stdin`), a socket or a directory is refused before a byte is read: a FIFO would
 * block a thread of the pool forever, `/dev/zero` would fill the heap until the pod is OOM-killed, and
 * a device can act on open. Errors name the setting and what is wrong, never the file's content.
 */
import { constants } from 'node:fs';
import type { Stats } from 'node:fs';
import { open, stat } from 'node:fs/promises';
import type { FileHandle } from 'node:fs/promises';

/** The largest file a setting may name: far above any key, certificate chain or credential file. */
export const SETTING_FILE_MAX_BYTES = 1024 * 1024;

/** A file a setting names cannot be used; `message` names the setting, never the file's bytes. */
export class SettingFileError extends Error {
  /** The setting, as given by the caller (e.g. `config customerKeyEncryptionFile`, `--ca-bundle`). */
  readonly setting: string;
  /** The errno code when the file system refused (ENOENT, EACCES, ...). */
  readonly code: string | undefined;
  constructor(setting: string, problem: string, code?: string) {
    super(`${setting} ${problem}`);
    this.name = 'SettingFileError';
    this.setting = setting;
    this.code = code;
  }
}

export interface ReadSettingFileOptions {
  /** Default SETTING_FILE_MAX_BYTES. */
  maxBytes?: number;
}

function kindOf(s: Stats): string {
  if (s.isDirectory()) return 'a directory';
  if (s.isFIFO()) return 'a FIFO (named pipe)';
  if (s.isCharacterDevice()) return 'a character device';
  if (s.isBlockDevice()) return 'a block device';
  if (s.isSocket()) return 'a socket';
  return 'not a regular file';
}

function sizeLimit(maxBytes: number): string {
  return maxBytes % (1024 * 1024) === 0 ? `${maxBytes / (1024 * 1024)} MiB` : `${maxBytes} bytes`;
}

function fsFailure(setting: string, err: unknown): SettingFileError {
  const code = (err as { code?: unknown } | null)?.code;
  const c = typeof code === 'string' && /^[A-Z0-9_]{1,32}$/.test(code) ? code : undefined;
  const what =
    c === 'ENOENT' ? 'names a file that does not exist' : c === 'EACCES' || c === 'EPERM' ? 'names a file the gateway may not read' : 'names a file that cannot be read';
  return new SettingFileError(setting, `${what}${c === undefined ? '' : ` (${c})`}`, c);
}

/**
 * Reads the file at `path` for `setting`. The path is stat'ed (following symlinks, as Kubernetes'
 * Secret and ConfigMap mounts are symlinks) and refused unless it is a regular file within the size
 * limit; only then is it opened, with O_NONBLOCK and O_NOCTTY so that a file swapped for a FIFO or a
 * terminal in between neither blocks nor becomes the controlling terminal, and the open descriptor is
 * checked again (same file, still regular) before reading at most `maxBytes + 1` bytes: a file that
 * grew past the limit, or a /proc file whose size reads as 0, is still cut off.
 * Throws SettingFileError.
 */
export async function readSettingFile(path: string, setting: string, opts: ReadSettingFileOptions = {}): Promise<Buffer> {
  const maxBytes = opts.maxBytes ?? SETTING_FILE_MAX_BYTES;
  const tooLarge = (): SettingFileError => new SettingFileError(setting, `names a file larger than ${sizeLimit(maxBytes)}`, 'EFBIG');
  let before: Stats;
  try {
    before = await stat(path);
  } catch (err) {
    throw fsFailure(setting, err);
  }
  if (!before.isFile()) throw new SettingFileError(setting, `names ${kindOf(before)}, not a regular file`, 'ENOTREG');
  if (before.size > maxBytes) throw tooLarge();

  let handle: FileHandle;
  try {
    handle = await open(path, constants.O_RDONLY | constants.O_NONBLOCK | constants.O_NOCTTY);
  } catch (err) {
    // A socket refuses open() with ENXIO: say what it is.
    if ((err as { code?: unknown }).code === 'ENXIO') throw new SettingFileError(setting, 'names a socket or a device, not a regular file', 'ENOTREG');
    throw fsFailure(setting, err);
  }
  try {
    const opened = await handle.stat();
    if (!opened.isFile() || opened.dev !== before.dev || opened.ino !== before.ino) {
      throw new SettingFileError(setting, 'names a file that changed while it was opened; try again', 'ECHANGED');
    }
    const chunks: Buffer[] = [];
    let total = 0;
    const buffer = Buffer.alloc(Math.min(maxBytes + 1, 64 * 1024));
    for (;;) {
      const { bytesRead } = await handle.read(buffer, 0, buffer.length, null);
      if (bytesRead === 0) break;
      total += bytesRead;
      if (total > maxBytes) throw tooLarge();
      chunks.push(Buffer.from(buffer.subarray(0, bytesRead)));
    }
    return Buffer.concat(chunks, total);
  } catch (err) {
    if (err instanceof SettingFileError) throw err;
    throw fsFailure(setting, err);
  } finally {
    await handle.close();
  }
}

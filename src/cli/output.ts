/**
 * Where the finished bytes go. A file is written to a temporary file in the same directory and moved
 * to its name only when complete, so the name holds the whole artifact or nothing (a download's raw
 * bytes collect first in a partial file that outlives an interruption: see partial.ts). Files are
 * created readable by their owner only: a backup holds every backed-up Secret.
 */
import { randomBytes } from 'node:crypto';
import { createWriteStream } from 'node:fs';
import { link, rename, stat, unlink } from 'node:fs/promises';
import { basename, dirname, join, resolve } from 'node:path';
import type { Writable } from 'node:stream';
import type { OutputSpec } from './args.ts';
import { CliError, EXIT, UsageError } from './errors.ts';

export interface Output {
  /** For messages: the file name, or "stdout". */
  readonly name: string;
  readonly stream: Writable;
  /** After the stream finished: give the file its name. */
  commit(): Promise<void>;
  /** After a failure: remove what was written (a file only; stdout cannot be taken back). */
  discard(): Promise<void>;
}

const exists = async (path: string): Promise<boolean> =>
  stat(path).then(
    () => true,
    (err: NodeJS.ErrnoException) => {
      if (err.code === 'ENOENT') return false;
      throw err;
    },
  );

/** Checks an output file before anything is fetched: refuses to overwrite without `force`, a directory, a missing parent. */
export async function checkOutput(spec: OutputSpec, force: boolean, cwd: string): Promise<void> {
  if (spec.kind !== 'file') return;
  const path = resolve(cwd, spec.path);
  const st = await stat(path).catch(() => undefined);
  if (st?.isDirectory()) throw new UsageError(`-o ${spec.path}: is a directory; give a file name`);
  if (st && !force) throw new UsageError(`${spec.path} already exists: pass --force to overwrite it, or -o another file`);
  const parent = await stat(dirname(path)).catch(() => undefined);
  if (!parent?.isDirectory()) throw new UsageError(`-o ${spec.path}: directory ${dirname(path)} does not exist`);
}

/** Opens the output: stdout as is, a file through a temporary file next to it. */
export async function openOutput(spec: OutputSpec, force: boolean, cwd: string, stdout: Writable): Promise<Output> {
  if (spec.kind === 'stdout') {
    return { name: 'stdout', stream: stdout, commit: async () => {}, discard: async () => {} };
  }
  const path = resolve(cwd, spec.path);
  const tmp = join(dirname(path), `.${basename(path)}.${randomBytes(6).toString('hex')}.part`);
  // flush: the data is on disk before the rename makes it visible under its name.
  const stream = createWriteStream(tmp, { flags: 'wx', mode: 0o600, flush: true });
  await new Promise<void>((ok, fail) => {
    stream.once('open', () => ok());
    stream.once('error', (err) => fail(new CliError(EXIT.notFound, `cannot create ${tmp}: ${err.message}`)));
  });
  let committed = false;
  return {
    name: spec.path,
    stream,
    async commit() {
      await placeFile(tmp, path, force, spec.path);
      committed = true;
    },
    async discard() {
      if (committed) return;
      stream.destroy();
      await unlink(tmp).catch(() => {});
    },
  };
}

/**
 * Gives the complete file `tmp` its name `path` (`shown` in messages): replacing what is there only
 * with `force`, otherwise refusing a name that appeared meanwhile.
 */
export async function placeFile(tmp: string, path: string, force: boolean, shown: string): Promise<void> {
  if (force) return rename(tmp, path);
  const appeared = (): UsageError => new UsageError(`${shown} appeared while downloading: pass --force to overwrite it, or -o another file`);
  // link() refuses an existing name atomically, where "check, then rename" would race.
  try {
    await link(tmp, path);
  } catch (err) {
    const code = (err as NodeJS.ErrnoException).code;
    if (code === 'EEXIST') throw appeared();
    if (code !== 'EPERM' && code !== 'ENOTSUP' && code !== 'EOPNOTSUPP') throw err;
    // A file system without hard links: the small race is the price.
    if (await exists(path)) throw appeared();
    return rename(tmp, path);
  }
  await unlink(tmp);
}

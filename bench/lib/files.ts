/** Test objects on disk: real random bytes, or a sparse file with real bytes only where clients read. */
import { randomBytes } from 'node:crypto';
import { createReadStream, createWriteStream } from 'node:fs';
import { mkdir, open } from 'node:fs/promises';
import { dirname } from 'node:path';
import { Writable } from 'node:stream';
import { pipeline } from 'node:stream/promises';

const BLOCK = 8 * 1024 * 1024;

/**
 * Writes `size` bytes of incompressible data: an 8 MiB random block, repeated, or with `unique`
 * fresh random bytes throughout (for a deduplicating store such as Kopia, which would keep one copy
 * of a repeated block).
 */
export async function writeRandomFile(path: string, size: number, unique = false): Promise<void> {
  await mkdir(dirname(path), { recursive: true });
  const block = randomBytes(BLOCK);
  const out = createWriteStream(path);
  for (let left = size; left > 0; left -= BLOCK) {
    const chunk = unique ? randomBytes(Math.min(left, BLOCK)) : left >= BLOCK ? block : block.subarray(0, left);
    if (!out.write(chunk)) await new Promise<void>((r) => out.once('drain', () => r()));
  }
  await new Promise<void>((resolve, reject) => out.end((err?: Error | null) => (err ? reject(err) : resolve())));
}

/**
 * A file of `size` bytes whose first `dataBytes` are random and the rest a hole (zero pages that
 * cost no disk): for memory measurements where clients only ever reach the first part.
 */
export async function writeSparseFile(path: string, size: number, dataBytes: number): Promise<void> {
  await writeRandomFile(path, Math.min(size, dataBytes));
  const h = await open(path, 'r+');
  try {
    await h.truncate(size);
  } finally {
    await h.close();
  }
}

/** Reads the file once so every server starts from a warm page cache. */
export async function warmPageCache(path: string): Promise<void> {
  await pipeline(createReadStream(path, { highWaterMark: BLOCK }), new Writable({ write: (_c, _e, cb) => cb() }));
}

/**
 * A committed real-kopia fixture laid out as Velero finds it in a bucket: blob `<id>` at the key
 * `<prefix><id>` (object naming), where kopia's filesystem storage wrote the file `<id>.f`.
 */
import { copyFile, mkdir, readFile, readdir } from 'node:fs/promises';
import { join } from 'node:path';
import { FIXTURES } from '../kopia/fixture-support.ts';

/** Copies fixture `name`'s blobs under `root/<prefix>` with object naming; returns the blob ids. */
export async function copyFixtureAsObjects(name: string, root: string, prefix: string): Promise<string[]> {
  const from = join(FIXTURES, name, 'repo');
  const to = join(root, ...prefix.split('/').filter(Boolean));
  await mkdir(to, { recursive: true });
  const ids: string[] = [];
  for (const file of await readdir(from)) {
    if (!file.endsWith('.f')) continue; // `.shards` describes the layout, it is no blob
    const id = file.slice(0, -2);
    await copyFile(join(from, file), join(to, id));
    ids.push(id);
  }
  return ids;
}

/**
 * The blobs of a repository the real kopia wrote with its filesystem storage (sharded: the blob
 * `p33061650d…` is the file `p/330/61650d….f`): id → bytes, the id joined back from the path as
 * kopia's sharding cut it; `sharded` counts the blobs found in shard directories.
 */
export async function readShardedBlobs(repoDir: string): Promise<{ blobs: Map<string, Buffer>; sharded: number }> {
  const blobs = new Map<string, Buffer>();
  let sharded = 0;
  for (const e of await readdir(repoDir, { recursive: true, withFileTypes: true })) {
    if (!e.isFile() || !e.name.endsWith('.f')) continue; // .shards is the layout, not a blob
    const rel = join(e.parentPath, e.name).slice(repoDir.length + 1);
    if (rel.includes('/')) sharded++;
    blobs.set(rel.replaceAll('/', '').slice(0, -'.f'.length), await readFile(join(e.parentPath, e.name)));
  }
  return { blobs, sharded };
}

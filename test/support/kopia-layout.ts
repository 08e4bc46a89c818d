/**
 * A committed real-kopia fixture laid out as Velero finds it in a bucket: blob `<id>` at the key
 * `<prefix><id>` (object naming), where kopia's filesystem storage wrote the file `<id>.f`.
 */
import { copyFile, mkdir, readdir } from 'node:fs/promises';
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

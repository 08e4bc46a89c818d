/**
 * FilesystemStore.list on what only a filesystem has: symlinks (followed as get follows them, never
 * out of the root, never round a loop), special files, names get refuses, and directories swapped
 * while the walk is under way. The shared cases run in fs.test.ts through the conformance suite.
 */
import { execFile } from 'node:child_process';
import { mkdir, mkdtemp, rename, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { promisify } from 'node:util';
import assert from 'node:assert/strict';
import { FilesystemStore } from '../../src/stores/fs.ts';
import type { ListedObject, ObjectStore } from '../../src/stores/types.ts';
import { bodyOf, collect } from '../support/streams.ts';

const execFileAsync = promisify(execFile);

function signal(): AbortSignal {
  return new AbortController().signal;
}

async function listed(store: ObjectStore, prefix: string): Promise<ListedObject[]> {
  const out: ListedObject[] = [];
  for await (const o of store.list(prefix, { signal: signal() })) out.push(o);
  return out;
}

describe('FilesystemStore.list', () => {
  let base = '';
  let root = '';
  let store: FilesystemStore;

  before(async () => {
    base = await mkdtemp(join(tmpdir(), 'vds-fs-list-'));
    root = join(base, 'root');
    const outside = join(base, 'outside');
    await mkdir(join(root, 'plain'), { recursive: true });
    await mkdir(outside);
    await writeFile(join(root, 'plain', 'a.txt'), 'abc');
    await writeFile(join(outside, 'secret'), 'secret bytes');
    await symlink('plain/a.txt', join(root, 'link-in-file'));
    await symlink('plain', join(root, 'link-in-dir'));
    await symlink(join(outside, 'secret'), join(root, 'link-out-file'));
    await symlink('../outside', join(root, 'link-out-dir'));
    await symlink('link-out-file', join(root, 'link-chain-out'));
    await symlink('.', join(root, 'loop-self'));
    await symlink('..', join(root, 'plain', 'loop-up'));
    await symlink('nothing-here', join(root, 'dangling'));
    await execFileAsync('mkfifo', [join(root, 'a-fifo')]);
    await writeFile(join(root, 'back\\slash'), 'x');
    await writeFile(join(root, 'new\nline'), 'x');
    store = new FilesystemStore({ root });
  });
  after(() => rm(base, { recursive: true, force: true }));

  test('a prefix of several characters without a slash matches file names at the root', async () => {
    assert.deepEqual(
      (await listed(store, 'link-in')).map((o) => o.key),
      ['link-in-dir/a.txt', 'link-in-file'],
    );
    assert.deepEqual((await listed(store, 'pl')).map((o) => o.key), ['plain/a.txt']);
  });

  // A walk that follows a loop would not end (until keys grow past their length limit): bounded here.
  test('symlinks inside the root are listed under their own names; nothing outside, no loop, no special file', { timeout: 10_000 }, async () => {
    const all = await listed(store, '');
    assert.deepEqual(
      all.map((o) => o.key),
      ['link-in-dir/a.txt', 'link-in-file', 'plain/a.txt'],
    );
  });

  test('every listed object reads as listed: same size and etag as stat, the bytes get returns', async () => {
    for (const o of await listed(store, '')) {
      const info = await store.stat(o.key, { signal: signal() });
      assert.equal(o.size, info.size);
      assert.equal(o.etag, info.etag);
      assert.equal((await collect(bodyOf(await store.get(o.key, { signal: signal() })))).toString(), 'abc');
    }
  });

  test('a prefix through a symlink that leaves the root lists nothing', async () => {
    assert.deepEqual(await listed(store, 'link-out-dir/'), []);
    assert.deepEqual(await listed(store, 'link-out'), []);
  });

  test('a prefix through a symlink to the root lists the root once under it, not round the loop again', async () => {
    assert.deepEqual(
      (await listed(store, 'loop-self/')).map((o) => o.key),
      ['loop-self/link-in-dir/a.txt', 'loop-self/link-in-file', 'loop-self/plain/a.txt'],
    );
  });

  test('a prefix through a symlinked directory inside the root lists it', async () => {
    assert.deepEqual(
      (await listed(store, 'link-in-dir/')).map((o) => o.key),
      ['link-in-dir/a.txt'],
    );
  });

  test('a root that is itself a symlink is listed through it', async () => {
    const linked = join(base, 'root-link');
    await symlink(root, linked);
    assert.deepEqual(
      (await listed(new FilesystemStore({ root: linked }), '')).map((o) => o.key),
      ['link-in-dir/a.txt', 'link-in-file', 'plain/a.txt'],
    );
  });

  test('a directory swapped for a symlink out of the root after its parent was read is not walked', async () => {
    const dir = join(base, 'swap');
    await mkdir(join(dir, 'a'), { recursive: true });
    await mkdir(join(dir, 'b'));
    await writeFile(join(dir, 'a', 'x'), 'x');
    await writeFile(join(dir, 'b', 'y'), 'y');
    const swapped = new FilesystemStore({ root: dir });
    const seen: string[] = [];
    for await (const o of swapped.list('', { signal: signal() })) {
      if (seen.length === 0) {
        await rename(join(dir, 'b'), join(base, 'b-moved-out'));
        await symlink(join(base, 'outside'), join(dir, 'b'));
      }
      seen.push(o.key);
    }
    assert.deepEqual(seen, ['a/x']);
  });

  test('a file swapped for a symlink out of the root after its directory was read is not listed', async () => {
    const dir = join(base, 'swap-file');
    await mkdir(dir);
    await writeFile(join(dir, 'a'), 'a');
    await writeFile(join(dir, 'b'), 'b');
    const swapped = new FilesystemStore({ root: dir });
    const seen: string[] = [];
    for await (const o of swapped.list('', { signal: signal() })) {
      if (seen.length === 0) {
        await rm(join(dir, 'b'));
        await symlink(join(base, 'outside', 'secret'), join(dir, 'b'));
      }
      seen.push(o.key);
    }
    assert.deepEqual(seen, ['a']);
  });
});

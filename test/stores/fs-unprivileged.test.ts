/**
 * The filesystem store's permissions check (test/stores/fs.test.ts) run from a clone under a directory
 * other users cannot enter, as root's home or a `mktemp -d` folder (mode 0700) is: the unprivileged
 * reader must still report AccessDenied, not fail to start.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { chmod, cp, mkdir, mkdtemp, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath, pathToFileURL } from 'node:url';
import { promisify } from 'node:util';
import { NOBODY, readAsUnprivileged } from '../support/unprivileged.ts';

const execFileAsync = promisify(execFile);
const STORES = fileURLToPath(new URL('../../src/stores/', import.meta.url));

describe('the unprivileged permissions check from a clone under a 0700 directory', () => {
  let parent: string;
  let clone: string;
  let data: string;
  before(async () => {
    parent = await mkdtemp(join(tmpdir(), 'vds-private-'));
    clone = join(parent, 'clone');
    // What the check needs of a clone: the store's modules and a Node binary inside it. A link to
    // the binary is enough: exec resolves it through the 0700 parent, as it would a copy.
    await mkdir(join(clone, 'src'), { recursive: true });
    await cp(STORES, join(clone, 'src', 'stores'), { recursive: true });
    await mkdir(join(clone, 'src', 'util'));
    await cp(new URL('../../src/util/promise-or.ts', import.meta.url), join(clone, 'src', 'util', 'promise-or.ts'));
    await writeFile(join(clone, 'package.json'), '{ "type": "module" }\n');
    await symlink(process.execPath, join(clone, 'node'));
    data = await mkdtemp(join(tmpdir(), 'vds-fs-perm-'));
    await chmod(data, 0o755);
    await writeFile(join(data, 'locked'), 'no peeking');
    await chmod(join(data, 'locked'), 0o000);
  });
  after(async () => {
    await rm(parent, { recursive: true, force: true });
    await rm(data, { recursive: true, force: true });
  });

  test('the parent is one other users cannot enter (as root: nobody cannot even start Node from it)', async () => {
    assert.equal((await stat(parent)).mode & 0o777, 0o700);
    if (process.getuid!() !== 0) return;
    await assert.rejects(execFileAsync(join(clone, 'node'), ['-e', ''], { uid: NOBODY, gid: NOBODY }), { code: 'EACCES' });
  });

  test('the store run from that clone reads the mode-000 file as an unprivileged user: AccessDenied', { timeout: 30_000 }, async () => {
    const report = await readAsUnprivileged({ node: join(clone, 'node'), module: pathToFileURL(join(clone, 'src', 'stores', 'fs.ts')), root: data, key: 'locked', metadata: 'sync' });
    assert.deepEqual(report, { uid: process.getuid!() === 0 ? NOBODY : process.getuid!(), stat: 'AccessDenied', get: 'AccessDenied' });
  });
});

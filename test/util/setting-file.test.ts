/**
 * readSettingFile, the one way the gateway reads a file a setting names: a regular file of at most
 * 1 MiB; a FIFO, a device, a socket, a directory or a larger file is refused without being read.
 */
import assert from 'node:assert/strict';
import { mkdtemp, rm, symlink, writeFile } from 'node:fs/promises';
import { createServer } from 'node:net';
import type { Server } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { SETTING_FILE_MAX_BYTES, SettingFileError, readSettingFile } from '../../src/util/setting-file.ts';
import { tripwire } from '../support/tripwire.ts';
import type { Tripwire } from '../support/tripwire.ts';

const MiB = 1024 * 1024;

async function refused(path: string, pattern: RegExp, code: string, maxBytes?: number): Promise<void> {
  const err = await readSettingFile(path, 'config someFile', maxBytes === undefined ? {} : { maxBytes }).then(
    () => assert.fail(`${path} was read`),
    (e: unknown) => e,
  );
  assert.ok(err instanceof SettingFileError, String(err));
  assert.equal(err.setting, 'config someFile');
  assert.equal(err.code, code);
  assert.match(err.message, /^config someFile names /);
  assert.match(err.message, pattern);
  assert.ok(!err.message.includes(path), 'the message names the setting, not the path');
}

describe('readSettingFile', () => {
  let dir = '';
  let wire: Tripwire;
  let socketServer: Server;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-setting-file-'));
    await writeFile(join(dir, 'key'), 'a key\n');
    await writeFile(join(dir, 'exactly-1MiB'), Buffer.alloc(MiB, 1));
    await writeFile(join(dir, 'over-1MiB'), Buffer.alloc(MiB + 1, 1));
    await symlink(join(dir, 'key'), join(dir, 'link-to-key'));
    await symlink('/dev/zero', join(dir, 'link-to-zero'));
    wire = await tripwire(join(dir, 'fifo'));
    socketServer = createServer();
    await new Promise<void>((r) => socketServer.listen(join(dir, 'socket'), r));
  });
  after(async () => {
    await wire.close();
    socketServer.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('a regular file is read whole, also through a symlink (Secret mounts are symlinks)', async () => {
    assert.equal((await readSettingFile(join(dir, 'key'), 'config someFile')).toString(), 'a key\n');
    assert.equal((await readSettingFile(join(dir, 'link-to-key'), 'config someFile')).toString(), 'a key\n');
  });

  test('1 MiB is the limit: exactly 1 MiB is read, one byte more is refused', async () => {
    assert.equal(SETTING_FILE_MAX_BYTES, MiB);
    assert.equal((await readSettingFile(join(dir, 'exactly-1MiB'), 'config someFile')).length, MiB);
    await refused(join(dir, 'over-1MiB'), /larger than 1 MiB/, 'EFBIG');
  });

  test('a FIFO is refused at once and never read (the tripwire keeps its bytes)', async () => {
    await refused(wire.path, /a FIFO \(named pipe\), not a regular file/, 'ENOTREG');
    assert.ok(await wire.intact(), 'nothing read from the FIFO');
  });

  test('/dev/zero and a symlink to it are refused as devices', async () => {
    await refused('/dev/zero', /a character device, not a regular file/, 'ENOTREG');
    await refused(join(dir, 'link-to-zero'), /a character device/, 'ENOTREG');
  });

  test('a directory and a socket are refused', async () => {
    await refused(dir, /a directory, not a regular file/, 'ENOTREG');
    await refused(join(dir, 'socket'), /a socket, not a regular file/, 'ENOTREG');
  });

  test('a missing file says so with its errno', async () => {
    await refused(join(dir, 'absent'), /does not exist \(ENOENT\)/, 'ENOENT');
  });

  test('the read itself is bounded: a /proc file whose size reads as 0 is cut off at the limit', async () => {
    // /proc/self/maps is a regular file of size 0 by stat, with far more than 64 bytes to read.
    await refused('/proc/self/maps', /larger than 64 bytes/, 'EFBIG', 64);
  });
});

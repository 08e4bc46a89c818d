/**
 * The files --default-credentials-file and --ca-bundle name are read as every setting's file is: a
 * regular file of at most 1 MiB. A FIFO once hung the start for ever (the read waited for a writer),
 * /dev/zero filled the heap; now the start fails at once, naming the flag.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Writable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { createStoreFactory } from '../../src/compose/stores.ts';
import { loadConfig } from '../../src/config/config.ts';
import { createLogger } from '../../src/server/logging.ts';
import { startGateway } from '../support/processes.ts';
import { createTestPki } from '../support/test-ca.ts';
import { tripwire } from '../support/tripwire.ts';
import type { Tripwire } from '../support/tripwire.ts';

describe('--default-credentials-file and --ca-bundle', () => {
  let dir = '';
  let wire: Tripwire;
  const log = createLogger('silent', new Writable({ write: (_c, _e, cb) => cb() }));
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-flag-files-'));
    wire = await tripwire(join(dir, 'fifo'));
    await mkdir(join(dir, 'a-directory'));
    await writeFile(join(dir, 'large'), Buffer.alloc(1024 * 1024 + 1, 0x61));
    await writeFile(join(dir, 'credentials'), '[default]\naws_access_key_id = A\naws_secret_access_key = S\n');
    await writeFile(join(dir, 'ca.pem'), (await createTestPki()).caCert);
  });
  after(async () => {
    await wire.close();
    await rm(dir, { recursive: true, force: true });
  });

  const factoryFor = async (...args: string[]) => {
    const loaded = loadConfig(['--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), ...args], {});
    assert.equal(loaded.kind, 'config', JSON.stringify(loaded));
    if (loaded.kind !== 'config') throw new Error('unreachable');
    return createStoreFactory(loaded.config, log);
  };

  test('regular files are read', async () => {
    const factory = await factoryFor('--default-credentials-file', join(dir, 'credentials'), '--ca-bundle', join(dir, 'ca.pem'));
    factory.close();
  });

  for (const flag of ['--default-credentials-file', '--ca-bundle']) {
    test(`${flag}: a FIFO, /dev/zero, a directory, a file over 1 MiB fail the start, naming the flag`, async () => {
      for (const [path, why] of [
        [wire.path, 'names a FIFO (named pipe), not a regular file'],
        ['/dev/zero', 'names a character device, not a regular file'],
        [join(dir, 'a-directory'), 'names a directory, not a regular file'],
        [join(dir, 'large'), 'names a file larger than 1 MiB'],
      ] as const) {
        await assert.rejects(factoryFor(flag, path), (err: Error) => {
          assert.equal(err.message, `${flag} ${why}: ${path}`);
          return true;
        });
      }
      assert.ok(await wire.intact(), 'the FIFO was never read');
    });
  }

  test('the real process exits 1 at once instead of hanging on a FIFO', async () => {
    const err = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), '--default-credentials-file', wire.path]).then(
      async (gw) => {
        await gw.stop();
        return assert.fail('the gateway started');
      },
      (e: unknown) => e as Error,
    );
    assert.match(err.message, /exited with 1 before listening/);
    assert.ok(err.message.includes(`velero-download-server: --default-credentials-file names a FIFO (named pipe), not a regular file: ${wire.path}`), err.message);
    assert.ok(await wire.intact());
  });
});

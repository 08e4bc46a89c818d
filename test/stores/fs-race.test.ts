/**
 * A filesystem location's volume is written by others (Velero, its node agent, anyone with the share),
 * who can swap a directory for a symlink at any moment. Whatever the interleaving of that swap with a
 * request, the store must never hand out bytes from outside its root. A child process swaps the key's
 * directory with a symlink to a directory outside the root as fast as it can while the store reads the
 * key in a loop; every answer must be the inside bytes or a refusal, and a listing never names what is
 * outside.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { mkdir, mkdtemp, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { InvalidKeyError, ObjectNotFoundError } from '../../src/stores/errors.ts';
import { FilesystemStore } from '../../src/stores/fs.ts';
import { bodyOf, collect } from '../support/streams.ts';

// Renames only: `d` is in turn the real directory, missing, the symlink, missing.
const SWAPPER = `
const { renameSync } = require('node:fs');
const root = process.argv[1];
process.stdout.write('ready\\n');
for (;;) {
  renameSync(root + '/real-dir', root + '/d');
  renameSync(root + '/d', root + '/real-dir');
  renameSync(root + '/link', root + '/d');
  renameSync(root + '/d', root + '/link');
}
`;

const ATTEMPTS = 20_000;

describe('filesystem store: a directory swapped for a symlink while reading', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  /**
   * root/real-dir/f ("inside") and outside/f and outside/secret-name ("OUTSIDE"), root/link → outside;
   * runs `body` with the root while the swapper turns `d` into one then the other, and stops it after.
   */
  async function duringSwaps(body: (root: string) => Promise<void>): Promise<void> {
    const base = await realpath(await mkdtemp(join(tmpdir(), 'vds-fs-race-')));
    dirs.push(base);
    const root = join(base, 'root');
    const outside = join(base, 'outside');
    await mkdir(join(root, 'real-dir'), { recursive: true });
    await mkdir(outside);
    await writeFile(join(root, 'real-dir', 'f'), 'inside');
    await writeFile(join(outside, 'f'), 'OUTSIDE');
    await writeFile(join(outside, 'secret-name'), 'OUTSIDE');
    await symlink(outside, join(root, 'link'));
    const swapper = spawn(process.execPath, ['-e', SWAPPER, root], { stdio: ['ignore', 'pipe', 'inherit'] });
    const exited = once(swapper, 'exit');
    try {
      await once(swapper.stdout, 'data');
      await body(root);
    } finally {
      swapper.kill('SIGKILL');
      await exited;
    }
  }
  const never = new AbortController().signal;

  test('a listing during the swaps never names what lies outside', { timeout: 60_000 }, async (t) => {
    const seen = { listings: 0, inside: 0, outside: 0 };
    await duringSwaps(async (root) => {
      const store = new FilesystemStore({ root });
      for (let i = 0; i < 5_000; i++) {
        seen.listings++;
        for await (const o of store.list('d/', { signal: never })) {
          if (o.key === 'd/f') seen.inside++;
          else seen.outside++;
        }
      }
    });
    t.diagnostic(JSON.stringify(seen));
    assert.equal(seen.outside, 0, `names from outside listed: ${JSON.stringify(seen)}`);
    assert.ok(seen.inside > 0, JSON.stringify(seen));
  });

  for (const metadata of ['sync', 'async'] as const) {
    test(`metadata ${metadata}: ${ATTEMPTS} reads during the swaps never return the outside bytes`, { timeout: 60_000 }, async (t) => {
      const seen = { inside: 0, outside: 0, refused: 0, missing: 0 };
      await duringSwaps(async (root) => {
        const store = new FilesystemStore({ root, metadata });
        for (let i = 0; i < ATTEMPTS; i++) {
          try {
            const body = (await collect(bodyOf(await store.get('d/f', { signal: never })))).toString();
            if (body === 'inside') seen.inside++;
            else seen.outside++;
          } catch (err) {
            if (err instanceof InvalidKeyError) seen.refused++;
            else if (err instanceof ObjectNotFoundError) seen.missing++;
            else throw err;
          }
        }
      });
      t.diagnostic(JSON.stringify(seen));
      assert.equal(seen.outside, 0, `outside bytes served: ${JSON.stringify(seen)}`);
      // The loop met both states: the check above is not vacuous.
      assert.ok(seen.inside > 0 && seen.refused > 0, JSON.stringify(seen));
    });
  }
});

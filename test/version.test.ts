/**
 * The build's revision for build_info: a REVISION file, else the git checkout (plain, worktree, packed
 * refs), else unknown; anything but a commit id is ignored, so a label never carries arbitrary text.
 */
import assert from 'node:assert/strict';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { revisionOf } from '../src/version.ts';

const A = 'a'.repeat(40);
const B = 'b'.repeat(40);

describe('revisionOf', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-revision-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const root = async (name: string, files: Record<string, string>): Promise<string> => {
    const r = join(dir, name);
    for (const [path, text] of Object.entries(files)) {
      await mkdir(join(r, path, '..'), { recursive: true });
      await writeFile(join(r, path), text);
    }
    await mkdir(r, { recursive: true });
    return r;
  };

  test('a REVISION file wins over the checkout', async () => {
    assert.equal(revisionOf(await root('file', { REVISION: `${A}\n`, '.git/HEAD': B })), A);
  });

  test('a detached HEAD, a loose ref, a packed ref', async () => {
    assert.equal(revisionOf(await root('detached', { '.git/HEAD': `${A}\n` })), A);
    assert.equal(revisionOf(await root('loose', { '.git/HEAD': 'ref: refs/heads/main\n', '.git/refs/heads/main': `${B}\n` })), B);
    assert.equal(revisionOf(await root('packed', { '.git/HEAD': 'ref: refs/heads/main\n', '.git/packed-refs': `# pack-refs\n${A} refs/heads/other\n${B} refs/heads/main\n` })), B);
  });

  test('a linked worktree: .git names its git directory, refs live in the common one', async () => {
    const r = await root('wt', {
      'repo/.git/refs/heads/topic': `${A}\n`,
      'repo/.git/worktrees/w/HEAD': 'ref: refs/heads/topic\n',
      'repo/.git/worktrees/w/commondir': '../..\n',
      'w/.git': `gitdir: ${join(dir, 'wt', 'repo/.git/worktrees/w')}\n`,
    });
    assert.equal(revisionOf(join(r, 'w')), A);
  });

  test('hostile or missing content is unknown, never echoed', async () => {
    assert.equal(revisionOf(await root('none', {})), 'unknown');
    assert.equal(revisionOf(await root('text', { REVISION: '"} evil_metric 1\n' })), 'unknown');
    assert.equal(revisionOf(await root('short', { '.git/HEAD': 'abc123\n' })), 'unknown');
    assert.equal(revisionOf(await root('climb', { '.git/HEAD': 'ref: refs/../../secret\n', secret: A })), 'unknown');
  });
});

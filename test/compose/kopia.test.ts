import assert from 'node:assert/strict';
import { mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { localRepositoryPassword } from '../../src/compose/kopia.ts';
import { loadConfig } from '../../src/config/config.ts';
import type { Config } from '../../src/config/config.ts';
import { VELERO_DEFAULT_REPOSITORY_PASSWORD } from '../../src/velero/volumes.ts';

describe("local mode's repository password", () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-password-'));
  });
  after(async () => {
    await rm(dir, { recursive: true, force: true });
  });

  const configWith = async (content?: string): Promise<Config> => {
    const args: string[] = [];
    if (content !== undefined) {
      const file = join(dir, `pw-${Math.random().toString(36).slice(2)}`);
      await writeFile(file, content);
      args.push('--repository-password-file', file);
    }
    const r = loadConfig(args, {}, dir);
    assert.equal(r.kind, 'config');
    return (r as { config: Config }).config;
  };

  test("Velero's default without a file; the file's content without its final line break", async () => {
    assert.equal(await localRepositoryPassword(await configWith()), VELERO_DEFAULT_REPOSITORY_PASSWORD);
    assert.equal(await localRepositoryPassword(await configWith('s3cret\n')), 's3cret');
    assert.equal(await localRepositoryPassword(await configWith('s3cret\r\n')), 's3cret');
    assert.equal(await localRepositoryPassword(await configWith(' with spaces \n\n')), ' with spaces \n', 'only one line break goes');
  });

  test('an empty file stops the start, and the message shows no content', async () => {
    await assert.rejects(localRepositoryPassword(await configWith('\n')), (err: Error) => /is empty/.test(err.message));
  });
});

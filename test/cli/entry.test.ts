/**
 * The command's entry on an unsupported Node: the real older Node this machine has (the system's
 * v20) runs the entry exactly as written and must print "needs Node 24" and exit 1, not a SyntaxError
 * or a missing export from the modules behind it. On Node 24 the other tests run the same entry.
 */
import assert from 'node:assert/strict';
import { execFileSync, spawnSync } from 'node:child_process';
import { existsSync } from 'node:fs';
import { copyFile, mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { delimiter, join } from 'node:path';
import { test } from 'node:test';
import { fileURLToPath } from 'node:url';

const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));

/** A Node older than 24 on PATH or in /usr/bin, outside node_modules. */
function olderNode(): { path: string; version: string } | undefined {
  const dirs = [...(process.env.PATH ?? '').split(delimiter).filter((d) => d && !d.includes('node_modules')), '/usr/bin', '/usr/local/bin'];
  for (const dir of dirs) {
    const path = join(dir, 'node');
    if (!existsSync(path)) continue;
    const version = execFileSync(path, ['--version'], { encoding: 'utf8' }).trim();
    if (Number(version.replace(/^v/, '').split('.')[0]) < 24) return { path, version };
  }
  return undefined;
}

test('an older Node prints "needs Node 24" and exits 1 (no SyntaxError, nothing else loaded)', async () => {
  const old = olderNode();
  assert.ok(old, 'this test runs the entry on an older Node: the machine\'s system Node (v20 here)');
  const dir = await mkdtemp(join(tmpdir(), 'vds-cli-entry-'));
  try {
    // The entry as written (it has no TypeScript syntax) next to a process module that must never load.
    await copyFile(MAIN, join(dir, 'main.mjs'));
    const r = spawnSync(old.path, [join(dir, 'main.mjs'), 'backup', 'logs', 'nightly'], { encoding: 'utf8', timeout: 30_000 });
    assert.equal(r.status, 1, r.stderr);
    assert.equal(r.stdout, '');
    const version = old.version.replace(/^v/, '').replaceAll('.', '\\.');
    assert.match(r.stderr, new RegExp(`^velero-download: needs Node 24 or later; this is Node ${version} \\(\\S*node\\)\\n$`));
    assert.doesNotMatch(r.stderr, /SyntaxError|ERR_/);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
});

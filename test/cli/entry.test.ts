/**
 * Shell completion (`completion bash|zsh`), run by a real bash. And the command's entry on an unsupported Node: the real older Node this machine has (the system's
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
import { runInProcess } from '../support/cli.ts';

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

/** What the completion function offers for `words` (the last one being completed), in a real bash. */
function complete(script: string, words: string[]): string[] {
  const r = spawnSync(
    'bash',
    ['--norc', '--noprofile', '-c', 'eval "$SCRIPT"; COMP_WORDS=("$@"); COMP_CWORD=$(($# - 1)); _velero_download; printf "%s\\n" "${COMPREPLY[@]}"', 'bash', 'velero-download', ...words],
    { encoding: 'utf8', env: { ...process.env, SCRIPT: script }, cwd: tmpdir() },
  );
  assert.equal(r.status, 0, r.stderr);
  return r.stdout.split('\n').filter(Boolean).sort();
}

test('completion bash: commands, subcommands, flags, file names after file flags; zsh gets the same through bashcompinit', async () => {
  const bash = await runInProcess(['completion', 'bash']);
  assert.equal(bash.code, 0, bash.stderr);
  const script = bash.stdout.toString();
  assert.deepEqual(complete(script, ['']), ['backup', 'completion', 'get', 'hash-password', 'restore']);
  assert.deepEqual(complete(script, ['backup', 'd']), ['describe', 'download']);
  assert.deepEqual(complete(script, ['-n', 'velero', 'restore', 'r']), ['resource-list', 'results']);
  assert.deepEqual(complete(script, ['--velero-server-url', 'backup', 'v']), ['volume-info', 'volumes']);
  assert.deepEqual(complete(script, ['backup', 'logs', 'nightly', '--token']), ['--token', '--token-file']);
  assert.deepEqual(complete(script, ['get', 'restores/NAME/vol']), ['restores/NAME/volumeinfo']);
  assert.deepEqual(complete(script, ['completion', '']), ['bash', 'zsh']);
  const dir = await mkdtemp(join(tmpdir(), 'vds-cli-complete-'));
  try {
    await copyFile(MAIN, join(dir, 'token.txt'));
    assert.deepEqual(complete(script, ['backup', 'logs', 'x', '--token-file', join(dir, 'tok')]), [join(dir, 'token.txt')]);
    // A flag's value is not a command word; a namespace is not completed from a cluster.
    assert.deepEqual(complete(script, ['-n', '']), []);
  } finally {
    await rm(dir, { recursive: true, force: true });
  }
  const zsh = await runInProcess(['completion', 'zsh']);
  assert.equal(zsh.code, 0, zsh.stderr);
  assert.match(zsh.stdout.toString(), /^#compdef velero-download\n.*\nautoload -U \+X bashcompinit && bashcompinit\n_velero_download\(\) \{/);
  assert.ok(zsh.stdout.toString().endsWith(script.slice(script.indexOf('_velero_download() {'))));
  const bad = await runInProcess(['completion', 'fish']);
  assert.equal(bad.code, 2);
  assert.match(bad.stderr, /completion takes one argument, bash or zsh/);
});

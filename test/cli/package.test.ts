/**
 * What `npm pack` (and so `npm install -g ./velero-download-server-*.tgz` and a publish) ships: the
 * real npm runs the real prepack build in a copy of the package, next to the things a working clone
 * also holds (tests, local state with tokens, an .env, a key, a stale build output), none of which
 * may reach the tarball.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { cp, mkdir, mkdtemp, readFile, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { dirname, join } from 'node:path';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { after, before, test } from 'node:test';

const ROOT = fileURLToPath(new URL('../..', import.meta.url));

let dir: string;
before(async () => {
  dir = await mkdtemp(join(tmpdir(), 'vds-pack-'));
  for (const f of ['package.json', 'README.md', 'tsconfig.json', 'tsconfig.build.json']) await cp(join(ROOT, f), join(dir, f));
  for (const d of ['src', 'demo']) await cp(join(ROOT, d), join(dir, d), { recursive: true });
  await symlink(join(ROOT, 'node_modules'), join(dir, 'node_modules'));
  const planted: Record<string, string> = {
    'test/cli/x.test.ts': 'test',
    'state/static-tokens.csv': 'planted-secret-token,alice,1',
    '.env': 'VELERO_DOWNLOAD_TOKEN=planted-secret-token',
    'server.key': '-----BEGIN PRIVATE KEY-----',
    'dist/stale-leftover.js': 'from an older build',
  };
  for (const [name, text] of Object.entries(planted)) {
    await mkdir(dirname(join(dir, name)), { recursive: true });
    await writeFile(join(dir, name), text);
  }
});
after(() => rm(dir, { recursive: true, force: true }));

test('npm pack builds dist/ afresh and ships the two commands, and nothing from the working tree besides', async () => {
  // PATH as `npm run` sees it here: the package's own Node 24 and tsc first.
  const env = { ...process.env, PATH: `${join(ROOT, 'node_modules', '.bin')}:${process.env.PATH ?? ''}` };
  const { stdout } = await promisify(execFile)('npm', ['pack', '--dry-run', '--json'], { cwd: dir, env, maxBuffer: 16 * 1024 * 1024 });
  const [pack] = JSON.parse(stdout.slice(stdout.indexOf('['))) as [{ files: { path: string }[] }];
  const files = pack.files.map((f) => f.path);
  const pkg = JSON.parse(await readFile(join(ROOT, 'package.json'), 'utf8')) as { bin: Record<string, string> };
  assert.deepEqual(Object.keys(pkg.bin).sort(), ['velero-download', 'velero-download-server']);
  for (const target of Object.values(pkg.bin)) assert.ok(files.includes(target), `${target} is in the package`);
  assert.ok(files.includes('dist/cli/process.js') && files.includes('dist/cli/kube.js'), 'what the entry loads later is there too');
  assert.ok(!files.includes('dist/stale-leftover.js'), 'the build starts from an empty dist/');
  const outside = files.filter((f) => !f.startsWith('dist/') && !f.startsWith('demo/') && !['package.json', 'README.md', 'LICENSE'].includes(f));
  assert.deepEqual(outside, [], 'only the build, the demo data and the package files');
  assert.ok(!files.some((f) => f.endsWith('.ts') && !f.endsWith('.d.ts')), 'no TypeScript sources or tests');
  assert.ok(!stdout.includes('planted-secret-token'));
});

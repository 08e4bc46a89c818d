/**
 * The gateway's Node flags (src/node-flags.ts) are the same in `npm start`, the image's ENTRYPOINT and
 * the processes the tests and benchmarks start, and they take effect: V8's young generation stays
 * capped where an unflagged start lets module loading grow it (why that matters: src/node-flags.ts).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { GATEWAY_NODE_FLAGS } from '../src/node-flags.ts';
import { curl, startGateway } from './support/processes.ts';

const ROOT = new URL('../', import.meta.url);

describe('the Node flags the gateway ships with', () => {
  const dirs: string[] = [];
  after(async () => {
    for (const d of dirs) await rm(d, { recursive: true, force: true });
  });

  test('npm start runs the build with exactly these flags', async () => {
    const pkg = JSON.parse(await readFile(new URL('package.json', ROOT), 'utf8')) as { scripts: Record<string, string> };
    const run = pkg.scripts.start!.split('&&').map((s) => s.trim()).at(-1)!;
    assert.deepEqual(run.split(/\s+/), ['node', ...GATEWAY_NODE_FLAGS, 'dist/main.js']);
  });

  test('the image\'s ENTRYPOINT runs the build with exactly these flags', async () => {
    const dockerfile = await readFile(new URL('Dockerfile', ROOT), 'utf8');
    const entrypoints = [...dockerfile.matchAll(/^ENTRYPOINT\s+(\[.*\])\s*$/gm)];
    assert.equal(entrypoints.length, 1, 'one ENTRYPOINT, in exec form');
    const argv = JSON.parse(entrypoints[0]![1]!) as string[];
    assert.deepEqual(argv.slice(1), [...GATEWAY_NODE_FLAGS, 'dist/main.js']);
    assert.match(argv[0]!, /\/node$/);
  });

  /** The young generation's size (both semi-spaces) the gateway reports on /metrics, in MiB. */
  async function newSpaceMiB(nodeFlags: readonly string[] | undefined): Promise<number> {
    const dir = await mkdtemp(join(tmpdir(), 'vds-node-flags-'));
    dirs.push(dir);
    const gw = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state')], {}, nodeFlags ? { nodeFlags } : {});
    try {
      const r = await curl(['--cacert', join(dir, 'state', 'tls.crt'), '--fail', `https://127.0.0.1:${gw.metricsPort}/metrics`]);
      assert.equal(r.code, 0, r.stderr);
      const m = /^nodejs_heap_space_size_total_bytes\{space="new"\} (\d+)$/m.exec(r.stdout.toString());
      assert.ok(m, 'the new space on /metrics');
      return Number(m[1]) / 1048576;
    } finally {
      await gw.stop();
    }
  }

  test('they take effect: the young generation stays at 2 × 4 MiB, where an unflagged gateway grows it while loading', async () => {
    const shipped = await newSpaceMiB(undefined);
    const unflagged = await newSpaceMiB([]);
    assert.ok(shipped <= 8, `new space ${shipped} MiB with ${GATEWAY_NODE_FLAGS.join(' ')}`);
    assert.ok(unflagged > 8, `new space ${unflagged} MiB without flags (the check can tell the two apart)`);
  });
});

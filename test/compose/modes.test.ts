/**
 * The modes behind the one Mode interface. Local mode is built and started without loading the
 * Kubernetes client library (about 70 MiB of memory), which only kubernetes mode imports; checked in
 * a child process whose module loads are recorded, since this test process may have loaded it.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, describe, test } from 'node:test';
import { promisify } from 'node:util';

const run = promisify(execFile);

/** Builds and starts the mode that `args` configure in a fresh process; prints what it loaded and the Mode's shape. */
const CHILD = `
import { registerHooks } from 'node:module';
const loaded = [];
registerHooks({ resolve(specifier, context, next) { const r = next(specifier, context); loaded.push(r.url); return r; } });
const { loadConfig } = await import(process.env.SRC + '/config/config.ts');
const { createMode } = await import(process.env.SRC + '/compose/create-mode.ts');
const { createStoreFactory } = await import(process.env.SRC + '/compose/stores.ts');
const { createLogger } = await import(process.env.SRC + '/server/logging.ts');
const loadedConfig = loadConfig(JSON.parse(process.env.ARGS), {});
const log = createLogger('error');
const factory = await createStoreFactory(loadedConfig.config, log);
const mode = await createMode(loadedConfig.config, log, factory);
const services = await mode.start();
const info = mode.info();
await mode.stop();
factory.close();
process.stdout.write(JSON.stringify({ name: mode.name, parts: Object.keys(mode.parts).sort(), services: Object.keys(services), info, kubeClient: loaded.some((u) => u.includes('@kubernetes/client-node')) }));
`;

describe('modes', () => {
  let dir = '';
  after(async () => {
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('local mode: the routes\' parts, nothing started beside them, and no Kubernetes client loaded', async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-modes-'));
    const args = ['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state')];
    const { stdout } = await run(process.execPath, ['--input-type=module', '-e', CHILD], {
      env: { ...process.env, SRC: new URL('../../src', import.meta.url).href, ARGS: JSON.stringify(args) },
    });
    assert.deepEqual(JSON.parse(stdout), {
      name: 'local',
      parts: ['authenticator', 'authorizer', 'catalog', 'resolver', 'stores', 'volumeResolver'],
      services: [],
      info: {},
      kubeClient: false,
    });
  });
});

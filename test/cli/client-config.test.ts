/**
 * The velero CLI's client config ($HOME/.config/velero/config.json: namespace, cacert) and
 * $VELERO_NAMESPACE, in the velero CLI's order: the flag, then the config file, then the variable,
 * then "velero". A temporary HOME per case; the download server is a small HTTPS server recording the
 * paths it is asked for (the namespace is in them) and trusted only through the config's cacert.
 */
import assert from 'node:assert/strict';
import { execFileSync } from 'node:child_process';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { parseCommandLine } from '../../src/cli/args.ts';
import type { ClientConfig, Command } from '../../src/cli/args.ts';
import { loadClientConfig } from '../../src/cli/client-config.ts';
import { runInProcess, startRecorder } from '../support/cli.ts';
import type { Recorder } from '../support/cli.ts';
import { createTestPki } from '../support/test-ca.ts';

const LOG = 'a log line\n';

describe('the velero client config and $VELERO_NAMESPACE', () => {
  let gw: Recorder;
  let root: string;
  let caFile: string;
  let homes = 0;

  before(async () => {
    const pki = await createTestPki('client-config CA');
    gw = await startRecorder(pki, gzipSync(LOG));
    root = await mkdtemp(join(tmpdir(), 'vds-cli-config-'));
    caFile = join(root, 'ca.pem');
    await writeFile(caFile, pki.caCert);
    await writeFile(join(root, 'token'), 'a-token\n', { mode: 0o600 });
  });
  after(async () => {
    await new Promise((r) => gw.server.close(r));
    await rm(root, { recursive: true, force: true });
  });

  /** A fresh HOME holding `config` as ~/.config/velero/config.json (a string as is, else as JSON); none when undefined. */
  const home = async (config?: unknown): Promise<string> => {
    const dir = join(root, `home-${++homes}`);
    await mkdir(join(dir, '.config', 'velero'), { recursive: true });
    if (config !== undefined) await writeFile(join(dir, '.config', 'velero', 'config.json'), typeof config === 'string' ? config : JSON.stringify(config));
    return dir;
  };
  const load = async (config?: unknown): Promise<{ config: ClientConfig; warnings: string[] }> => {
    const warnings: string[] = [];
    const c = await loadClientConfig({ HOME: await home(config) }, (m) => warnings.push(m));
    return { config: c, warnings };
  };
  const cmd = (argv: string[], env: Record<string, string>, config: ClientConfig): Command =>
    (parseCommandLine(['backup', 'logs', 'b', ...argv], env, config) as { command: Command }).command;

  test('the namespace: the flag, else the config file, else $VELERO_NAMESPACE, else "velero" (the velero CLI\'s order)', async () => {
    const { config } = await load({ namespace: 'from-config', features: '', colorized: 'false' });
    const env = { VELERO_NAMESPACE: 'from-env' };
    assert.equal(cmd(['-n', 'from-flag'], env, config).namespace, 'from-flag');
    assert.equal(cmd([], env, config).namespace, 'from-config');
    assert.equal(cmd([], env, {}).namespace, 'from-env');
    assert.equal(cmd([], {}, {}).namespace, 'velero');
    // An empty value sets nothing, as in the velero CLI.
    assert.equal(cmd([], env, (await load({ namespace: '' })).config).namespace, 'from-env');
  });

  test('cacert from the config file unless --cacert or --insecure-skip-tls-verify says otherwise', async () => {
    const { config } = await load({ cacert: '/etc/velero/ca.pem' });
    assert.equal(cmd([], {}, config).cacert, '/etc/velero/ca.pem');
    assert.match(cmd([], {}, config).cacertFrom!, /"cacert" in the velero client config .*config\.json/);
    assert.equal(cmd(['--cacert', 'mine.pem'], {}, config).cacert, 'mine.pem');
    const insecure = cmd(['--insecure-skip-tls-verify'], {}, config);
    assert.equal(insecure.cacert, undefined);
    assert.equal(insecure.insecureSkipTlsVerify, true);
  });

  test('no file is no configuration; a malformed file or value is a warning and is ignored', async () => {
    assert.deepEqual((await load()).warnings, []);
    assert.equal((await load()).config.namespace, undefined);
    for (const [bad, why] of [
      ['{"namespace": "x",', /not JSON/],
      ['["namespace"]', /not a JSON object/],
      ['null', /not a JSON object/],
      [`{"namespace": "${'x'.repeat(70_000)}"}`, /larger than 65536 bytes/],
      [{ namespace: 7, cacert: ['a'] }, /ignoring "namespace" .*not a string/],
    ] as const) {
      const { config, warnings } = await load(bad);
      assert.equal(config.namespace, undefined);
      assert.equal(config.cacert, undefined);
      assert.match(warnings.join('\n'), why);
    }
  });

  test('a config path that is a FIFO or a directory is a warning, read without blocking', { timeout: 10_000 }, async () => {
    const fifoHome = await home();
    execFileSync('mkfifo', [join(fifoHome, '.config', 'velero', 'config.json')]);
    const dirHome = await home();
    await mkdir(join(dirHome, '.config', 'velero', 'config.json'));
    for (const [HOME, why] of [[fifoHome, /FIFO/], [dirHome, /directory/]] as const) {
      const warnings: string[] = [];
      const config = await loadClientConfig({ HOME }, (m) => warnings.push(m));
      assert.equal(config.namespace, undefined);
      assert.match(warnings.join('\n'), why);
    }
  });

  test('end to end: the namespace and the CA come from $HOME\'s config, the flag still wins; a bad namespace there is exit 2, printed safely', async () => {
    const HOME = await home({ namespace: 'team-a', cacert: caFile });
    const logs = (...extra: string[]): string[] => ['backup', 'logs', 'nightly', '--velero-server-url', gw.url, '--token-file', join(root, 'token'), ...extra];
    gw.requests.length = 0;
    const viaConfig = await runInProcess(logs(), { env: { HOME, VELERO_NAMESPACE: 'from-env' } });
    assert.equal(viaConfig.code, 0, viaConfig.stderr);
    assert.equal(viaConfig.stdout.toString(), LOG);
    const viaFlag = await runInProcess(logs('-n', 'team-b'), { env: { HOME } });
    assert.equal(viaFlag.code, 0, viaFlag.stderr);
    assert.deepEqual(
      gw.requests.map((r) => r.path),
      ['/v1/namespaces/team-a/backups/nightly/log', '/v1/namespaces/team-b/backups/nightly/log'],
    );

    const hostile = await runInProcess(logs(), { env: { HOME: await home({ namespace: 'x/../../kube-system\u001b[2J' }) } });
    assert.equal(hostile.code, 2);
    assert.match(hostile.stderr, /"namespace" in the velero client config .*: "x\/\.\.\/\.\.\/kube-system\\x1b\[2J" is not a valid namespace name/);
    const missingCa = await runInProcess(logs(), { env: { HOME: await home({ cacert: join(root, 'nope.pem') }) } });
    assert.equal(missingCa.code, 2);
    assert.match(missingCa.stderr, /"cacert" in the velero client config .*: cannot read .*nope\.pem: ENOENT/);
    assert.equal(gw.requests.length, 2, 'nothing was sent for either');
  });
});

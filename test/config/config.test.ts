import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import { loadConfig } from '../../src/config/config.ts';
import { bytes, duration, envName, hostPort } from '../../src/config/flags.ts';

describe('loadConfig', () => {
  test('defaults', () => {
    const r = loadConfig([], {}, '/srv');
    assert.equal(r.kind, 'config');
    if (r.kind !== 'config') return;
    assert.deepEqual(r.config.listen, { host: '0.0.0.0', port: 8443 });
    assert.deepEqual(r.config.metricsListen, { host: '0.0.0.0', port: 8085 });
    assert.equal(r.config.mode, 'local');
    assert.equal(r.config.dataDir, '/srv/data');
    assert.equal(r.config.stateDir, '/srv/state');
    assert.equal(r.config.tokenFile, '/srv/state/tokens.csv');
    assert.equal(r.config.namespace, 'velero');
    assert.equal(r.config.logLevel, 'info');
    assert.equal(r.config.shutdownGraceMs, 25_000);
    assert.equal(r.config.demo, true);
    assert.equal(r.config.tlsCertFile, undefined);
  });

  test('flags win over environment, environment over defaults', () => {
    const r = loadConfig(['--listen', '127.0.0.1:9443', '--no-demo'], { VDS_LISTEN: '1.2.3.4:1', VDS_LOG_LEVEL: 'debug', VDS_DATA_DIR: '/d' }, '/srv');
    assert.equal(r.kind, 'config');
    if (r.kind !== 'config') return;
    assert.deepEqual(r.config.listen, { host: '127.0.0.1', port: 9443 });
    assert.equal(r.config.logLevel, 'debug');
    assert.equal(r.config.dataDir, '/d');
    assert.equal(r.config.demo, false);
  });

  test('every problem is reported at once', () => {
    const r = loadConfig(['--listen', 'nope', '--log-level', 'loud', '--shutdown-grace', '5 minutes', '--tls-cert-file', '/no/such/file', '--namespace', 'Bad_NS'], {}, '/srv');
    assert.equal(r.kind, 'errors');
    if (r.kind !== 'errors') return;
    const text = r.errors.join('\n');
    for (const expected of ['--listen', '--log-level', '--shutdown-grace', '--tls-cert-file and --tls-key-file go together', '/no/such/file', 'Bad_NS']) {
      assert.ok(text.includes(expected), `missing "${expected}" in:\n${text}`);
    }
    assert.ok(r.errors.length >= 6, text);
  });

  test('--shutdown-delay: 5s by default, a duration, at most 10m (a larger timer would overflow and fire at once)', () => {
    const ok = loadConfig([], {}, '/srv');
    assert.equal(ok.kind === 'config' && ok.config.shutdownDelayMs, 5_000);
    const zero = loadConfig(['--shutdown-delay=0s'], {}, '/srv');
    assert.equal(zero.kind === 'config' && zero.config.shutdownDelayMs, 0);
    for (const bad of ['1000h', '601s', 'soon', '-1s', '']) {
      const r = loadConfig([`--shutdown-delay=${bad}`], {}, '/srv');
      assert.equal(r.kind, 'errors', bad);
      assert.ok(r.kind === 'errors' && r.errors.some((e) => e.includes('--shutdown-delay')), JSON.stringify(r));
    }
  });

  test('--metrics-plain-http-port: off by default, a port of its own', () => {
    const off = loadConfig([], {}, '/srv');
    assert.equal(off.kind === 'config' && off.config.metricsPlainHttpPort, undefined);
    const on = loadConfig(['--metrics-plain-http-port', '8086'], {}, '/srv');
    assert.equal(on.kind === 'config' && on.config.metricsPlainHttpPort, 8086);
    for (const args of [['--metrics-plain-http-port=0'], ['--metrics-plain-http-port=65536'], ['--metrics-plain-http-port=80a'], ['--metrics-plain-http-port=8085'], ['--metrics-plain-http-port=8443'], ['--listen=:9000', '--metrics-plain-http-port=9000']]) {
      const r = loadConfig(args, {}, '/srv');
      assert.ok(r.kind === 'errors' && r.errors.some((e) => e.includes('--metrics-plain-http-port')), `${args.join(' ')}: ${JSON.stringify(r)}`);
    }
  });

  test('store flags: --fs-root default, AWS_CA_BUNDLE as the install bundle, files must exist', () => {
    const r = loadConfig([], { AWS_CA_BUNDLE: '/etc/hostname' }, '/srv');
    assert.equal(r.kind, 'config');
    if (r.kind !== 'config') return;
    assert.equal(r.config.fsRoot, '/mnt/velero');
    assert.equal(r.config.caBundleFile, '/etc/hostname');
    assert.equal(r.config.locationsFile, undefined);
    const bad = loadConfig(['--locations-file', 'nope.yaml', '--ca-bundle', '/no/ca.pem', '--default-credentials-file', '/no/creds'], {}, '/srv');
    assert.equal(bad.kind, 'errors');
    if (bad.kind === 'errors') assert.equal(bad.errors.length, 3, bad.errors.join('\n'));
  });

  test('--ca-configmap: published by default, off when empty; --webhook-configuration: kubernetes mode with the Secret only', () => {
    const k8s = ['--mode', 'kubernetes'];
    const ok = (argv: string[]) => {
      const r = loadConfig([...k8s, ...argv], {}, '/srv');
      assert.equal(r.kind, 'config', r.kind === 'errors' ? r.errors.join('\n') : '');
      return r.kind === 'config' ? r.config : assert.fail();
    };
    assert.equal(ok([]).caConfigMap, 'velero-download-server-ca');
    assert.equal(ok([]).webhookConfiguration, undefined);
    assert.equal(ok(['--ca-configmap=']).caConfigMap, undefined, 'empty: not published');
    assert.equal(ok(['--ca-configmap', 'my-ca']).caConfigMap, 'my-ca');
    assert.equal(ok(['--webhook-configuration', 'velero-velero-download-server']).webhookConfiguration, 'velero-velero-download-server');
    const errors = (argv: string[], env: Record<string, string> = {}): string => {
      const r = loadConfig(argv, env, '/srv');
      assert.equal(r.kind, 'errors', argv.join(' '));
      return r.kind === 'errors' ? r.errors.join('\n') : '';
    };
    assert.match(errors([...k8s, '--ca-configmap', 'Bad_Name']), /--ca-configmap: "Bad_Name" is not a valid ConfigMap name/);
    assert.match(errors([...k8s, '--webhook-configuration', '../x']), /--webhook-configuration: "\.\.\/x" is not a valid MutatingWebhookConfiguration name/);
    assert.match(errors([...k8s], { VDS_WEBHOOK_CONFIGURATION: 'a'.repeat(254) }), /not a valid MutatingWebhookConfiguration name/);
    assert.match(errors(['--mode', 'local', '--webhook-configuration', 'mwc']), /--webhook-configuration: needs kubernetes mode with the certificate in its Secret/);
    assert.match(errors([...k8s, '--webhook-configuration', 'mwc', '--tls-cert-file', '/etc/hostname', '--tls-key-file', '/etc/hostname']), /not --tls-cert-file/);
  });

  test('connection bounds: defaults, and hostile values refused at start', () => {
    const r = loadConfig([], {}, '/srv');
    assert.equal(r.kind, 'config');
    if (r.kind !== 'config') return;
    assert.deepEqual(
      [r.config.requestTimeoutMs, r.config.sendStallTimeoutMs, r.config.maxConnections, r.config.maxConnectionsPerClient, r.config.maxConcurrentDownloads, r.config.trustedProxies],
      [30_000, 60_000, 1024, 64, 64, []],
    );
    const ok = loadConfig(['--trusted-proxies', '10.0.0.0/8, 192.0.2.7,fd00::/8'], {}, '/srv');
    assert.equal(ok.kind, 'config');
    if (ok.kind === 'config') assert.deepEqual(ok.config.trustedProxies, ['10.0.0.0/8', '192.0.2.7', 'fd00::/8']);
    const bad = loadConfig(
      ['--request-timeout', '0s', '--send-stall-timeout', '50ms', '--max-connections', '0', '--max-connections-per-client', '1.5', '--max-concurrent-downloads=-1', '--trusted-proxies', 'ingress.example,10.0.0.0/40'],
      {},
      '/srv',
    );
    assert.equal(bad.kind, 'errors');
    if (bad.kind !== 'errors') return;
    const text = bad.errors.join('\n');
    for (const expected of ['--request-timeout', '--send-stall-timeout', '--max-connections:', '--max-connections-per-client', '--max-concurrent-downloads', '"ingress.example"', '"10.0.0.0/40"']) {
      assert.ok(text.includes(expected), `missing "${expected}" in:\n${text}`);
    }
    const over = loadConfig(['--max-connections', '10', '--max-connections-per-client', '20'], {}, '/srv');
    assert.equal(over.kind, 'errors');
    if (over.kind === 'errors') assert.match(over.errors.join('\n'), /--max-connections-per-client \(20\) is more than --max-connections \(10\)/);
  });

  test('volume data: cache size and index age defaults, the password file local mode only and present', () => {
    const r = loadConfig([], {}, '/srv');
    assert.equal(r.kind, 'config');
    if (r.kind !== 'config') return;
    assert.deepEqual([r.config.kopiaCacheBytes, r.config.kopiaIndexMaxAgeMs, r.config.repositoryPasswordFile], [256 * 1024 ** 2, 300_000, undefined]);
    const set = loadConfig(['--kopia-cache-size', '1Gi', '--kopia-index-max-age', '30s', '--repository-password-file', '/etc/hostname'], {}, '/srv');
    assert.equal(set.kind, 'config');
    if (set.kind === 'config') assert.deepEqual([set.config.kopiaCacheBytes, set.config.kopiaIndexMaxAgeMs, set.config.repositoryPasswordFile], [1024 ** 3, 30_000, '/etc/hostname']);
    const bad = loadConfig(['--mode', 'kubernetes', '--kubeconfig', '/etc/hostname', '--kopia-cache-size', '0', '--kopia-index-max-age', 'soon', '--repository-password-file', '/etc/hostname'], {}, '/srv');
    assert.equal(bad.kind, 'errors');
    if (bad.kind !== 'errors') return;
    const text = bad.errors.join('\n');
    for (const expected of ['--kopia-cache-size', '--kopia-index-max-age', '--repository-password-file: local mode only']) assert.ok(text.includes(expected), `missing "${expected}" in:\n${text}`);
    const missing = loadConfig(['--repository-password-file', '/no/such/password'], {}, '/srv');
    assert.equal(missing.kind, 'errors');
  });

  test('access users: the Secret by default in kubernetes mode (empty: off), the file local mode only, flags checked at start', () => {
    const kube = loadConfig(['--mode', 'kubernetes', '--kubeconfig', '/etc/hostname'], {}, '/srv');
    assert.equal(kube.kind, 'config');
    if (kube.kind === 'config') assert.deepEqual([kube.config.accessUsersSecret, kube.config.accessUsersAllowPlaintext, kube.config.accessUsersSeedUsername], ['velero-download-server-users', false, undefined]);
    const off = loadConfig(['--mode', 'kubernetes', '--kubeconfig', '/etc/hostname', '--access-users-secret', ''], {}, '/srv');
    assert.equal(off.kind === 'config' && off.config.accessUsersSecret, undefined);
    const local = loadConfig([], {}, '/srv');
    assert.equal(local.kind === 'config' && (local.config.accessUsersSecret ?? local.config.accessUsersFile), undefined, 'local mode: off without the flag');
    const file = loadConfig(['--access-users-file', '/etc/hostname', '--access-users-allow-plaintext'], {}, '/srv');
    assert.equal(file.kind, 'config');
    if (file.kind === 'config') assert.deepEqual([file.config.accessUsersFile, file.config.accessUsersAllowPlaintext], ['/etc/hostname', true]);
    const seed = loadConfig(['--mode', 'kubernetes', '--kubeconfig', '/etc/hostname', '--access-users-seed-username', 'robot'], {}, '/srv');
    assert.equal(seed.kind === 'config' && seed.config.accessUsersSeedUsername, 'robot');
    const cases: [string[], string][] = [
      [['--mode', 'kubernetes', '--kubeconfig', '/etc/hostname', '--access-users-secret', 'Not_A_Name'], '--access-users-secret: "Not_A_Name" is not a valid Secret name'],
      [['--access-users-file', '/no/such/users'], '--access-users-file: /no/such/users does not exist'],
      [['--mode', 'kubernetes', '--kubeconfig', '/etc/hostname', '--access-users-file', '/etc/hostname'], '--access-users-file: local mode only'],
      [['--access-users-seed-username', 'robot'], '--access-users-seed-username: kubernetes mode only'],
      [['--mode', 'kubernetes', '--kubeconfig', '/etc/hostname', '--access-users-seed-username', 'ro:bot\nx'], '--access-users-seed-username: not a valid user name'],
      [['--mode', 'kubernetes', '--kubeconfig', '/etc/hostname', '--access-users-seed-username', 'robot', '--access-users-secret', ''], '--access-users-seed-username: needs --access-users-secret'],
      [['--access-users-allow-plaintext=maybe'], '--access-users-allow-plaintext: a switch takes no value (--access-users-allow-plaintext or --no-access-users-allow-plaintext)'],
    ];
    for (const [args, expected] of cases) {
      const r = loadConfig(args, {}, '/srv');
      assert.equal(r.kind, 'errors', args.join(' '));
      if (r.kind === 'errors') assert.ok(r.errors.some((e) => e.startsWith(expected)), `missing "${expected}" in:\n${r.errors.join('\n')}`);
    }
    // The hostile seed user name is not echoed.
    const hostile = loadConfig(['--mode', 'kubernetes', '--kubeconfig', '/etc/hostname', '--access-users-seed-username', 'evil\u001b[2J'], {}, '/srv');
    assert.ok(hostile.kind === 'errors' && !hostile.errors.join('').includes('evil'));
    const help = loadConfig(['--help'], {});
    assert.ok(help.kind === 'help' && ['--access-users-secret', '--access-users-file', '--[no-]access-users-allow-plaintext', '--access-users-seed-username', 'VDS_ACCESS_USERS_FILE', 'default: velero-download-server-users'].every((f) => help.text.includes(f)));
  });

  test('environment errors name the variable', () => {
    const r = loadConfig([], { VDS_METRICS_LISTEN: 'x' });
    assert.equal(r.kind, 'errors');
    if (r.kind === 'errors') assert.match(r.errors[0]!, /VDS_METRICS_LISTEN/);
  });

  test('unknown flags are errors', () => {
    const r = loadConfig(['--lisen', ':1'], {});
    assert.equal(r.kind, 'errors');
  });

  test('a value starting with "-" is read in both forms, and every other problem is still reported', () => {
    for (const qps of [['--kube-api-qps', '-3'], ['--kube-api-qps=-3']]) {
      const r = loadConfig([...qps, '--listen', 'nope', '--bogus', 'x', '-q', '--no-listen', '--demo=maybe', '--log-level', 'loud', '--data-dir'], {}, '/srv');
      assert.equal(r.kind, 'errors', qps.join(' '));
      if (r.kind !== 'errors') continue;
      assert.deepEqual(r.errors, [
        '"--bogus": unknown flag',
        'unexpected argument "x": every flag is --name value or --name=value',
        '"-q": unknown flag',
        '"--no-listen": unknown flag',
        '--demo: a switch takes no value (--demo or --no-demo)',
        '--data-dir: needs a value (--data-dir <value>, or --data-dir=<value> for a value starting with "--")',
        '--listen: must be host:port (e.g. 0.0.0.0:8443, [::]:8443 or :8443); got "nope"',
        '--log-level: must be one of trace, debug, info, warn, error, fatal, silent; got "loud"',
        '--kube-api-qps: must be a positive number; got "-3"',
      ]);
    }
    // A negative number is a value, a "--" argument is the next flag.
    const missing = loadConfig(['--listen', '--log-level', 'loud'], {}, '/srv');
    assert.ok(missing.kind === 'errors' && missing.errors.length === 2 && missing.errors[0]!.startsWith('--listen: needs a value'), JSON.stringify(missing));
    const dashValue = loadConfig(['--data-dir', '-odd-name', '--state-dir=--odd'], {}, '/srv');
    assert.ok(dashValue.kind === 'config' && dashValue.config.dataDir === '/srv/-odd-name' && dashValue.config.stateDir === '/srv/--odd', JSON.stringify(dashValue));
  });

  test('a hostile argument is echoed inert: control characters are escaped', () => {
    const r = loadConfig(['--\u001b[2Jevil', '\u001b]0;title\u0007'], {}, '/srv');
    assert.equal(r.kind, 'errors');
    if (r.kind !== 'errors') return;
    assert.equal(r.errors.length, 2);
    assert.ok(![...r.errors.join('')].some((c) => c.charCodeAt(0) < 0x20), JSON.stringify(r.errors));
    assert.ok(r.errors[0]!.includes('\\u001b[2Jevil'), r.errors[0]);
  });

  test('-h is --help, in the real process too', async () => {
    for (const h of ['-h', '--help']) {
      const r = loadConfig(['--listen', 'nope', h], {});
      assert.equal(r.kind, 'help', h);
      if (r.kind === 'help') assert.ok(r.text.includes('-h, --help'));
    }
    const { stdout } = await promisify(execFile)(process.execPath, [fileURLToPath(new URL('../../src/main.ts', import.meta.url)), '-h']);
    assert.match(stdout, /^Usage: velero-download-server \[flags\]/);
    assert.match(stdout, /--kube-api-qps <value>/);
  });

  test('--help lists every flag with its default and variable', () => {
    const r = loadConfig(['--help'], {});
    assert.equal(r.kind, 'help');
    if (r.kind !== 'help') return;
    for (const f of ['--listen', '--metrics-listen', '--data-dir', '--state-dir', '--namespace', '--tls-cert-file', '--tls-key-file', '--log-level', '--mode', 'VDS_DATA_DIR', 'default: 0.0.0.0:8443']) {
      assert.ok(r.text.includes(f), f);
    }
  });
});

describe('--tenant-filesystem-allow: which namespace may use which filesystem bucket', () => {
  const parsed = (...args: string[]): Map<string, Set<string>> | string[] => {
    const r = loadConfig(args, {}, '/srv');
    if (r.kind === 'errors') return r.errors;
    assert.equal(r.kind, 'config');
    return r.kind === 'config' ? new Map([...r.config.tenantFilesystemAllow].map(([k, v]) => [k, new Set(v)])) : [];
  };
  const asObject = (m: Map<string, Set<string>> | string[]): unknown =>
    Array.isArray(m) ? m : Object.fromEntries([...m].map(([k, v]) => [k, [...v].sort()]));

  test('namespace=bucket pairs; a namespace may repeat; nested bucket directories are fine', () => {
    assert.deepEqual(asObject(parsed('--tenant-filesystem-allow', 'team-a=velero-nfs,team-b=shared, team-a=scratch,team-a=velero-nfs,team-c=nfs/team-c')), {
      'team-a': ['scratch', 'velero-nfs'],
      'team-b': ['shared'],
      'team-c': ['nfs/team-c'],
    });
    const env = loadConfig([], { VDS_TENANT_FILESYSTEM_ALLOW: 'team-a=velero-nfs' }, '/srv');
    assert.ok(env.kind === 'config' && env.config.tenantFilesystemAllow.get('team-a')?.has('velero-nfs'));
  });

  test('the default, false, no, 0 and empty mean none (the old default keeps working)', () => {
    for (const args of [[], ['--tenant-filesystem-allow', 'false'], ['--tenant-filesystem-allow=false'], ['--tenant-filesystem-allow', ''], ['--tenant-filesystem-allow', 'no'], ['--tenant-filesystem-allow', '0'], ['--no-tenant-filesystem-allow']]) {
      assert.deepEqual(asObject(parsed(...args)), {}, args.join(' '));
    }
  });

  test('the old true is refused at start, in every form, with the new syntax in the message', () => {
    for (const [args, env] of [
      [['--tenant-filesystem-allow'], {}],
      [['--tenant-filesystem-allow', '--watch-namespaces', 'team-*'], {}],
      [['--tenant-filesystem-allow', 'true'], {}],
      [['--tenant-filesystem-allow=TRUE'], {}],
      [[], { VDS_TENANT_FILESYSTEM_ALLOW: 'true' }],
      [[], { VDS_TENANT_FILESYSTEM_ALLOW: 'yes' }],
    ] as const) {
      const r = loadConfig([...args], env, '/srv');
      assert.equal(r.kind, 'errors', JSON.stringify([args, env]));
      if (r.kind !== 'errors') continue;
      assert.equal(r.errors.length, 1, r.errors.join('\n'));
      assert.match(r.errors[0]!, /^(--tenant-filesystem-allow|VDS_TENANT_FILESYSTEM_ALLOW): ".*" no longer lets every namespace use every filesystem bucket; name which namespace may use which bucket: --tenant-filesystem-allow team-a=velero-nfs,team-b=shared \(false or empty: none\)$/);
    }
    // The flag after the bare switch is still read (no "argument missing" swallowing the rest).
    const r = loadConfig(['--tenant-filesystem-allow', '--watch-namespaces', 'team-*', '--log-level', 'loud'], {}, '/srv');
    assert.ok(r.kind === 'errors' && r.errors.length === 2 && r.errors.some((e) => e.startsWith('--log-level')), JSON.stringify(r));
  });

  test('malformed entries, namespace globs and climbing buckets are refused, each named', () => {
    const errors = parsed('--tenant-filesystem-allow', 'team-a,=b,team-*=shared,Team_A=x,team-b=../etc,team-c=/abs,team-d=a/./b,team-e=ok');
    assert.ok(Array.isArray(errors) && errors.length === 1, JSON.stringify(errors));
    const text = errors[0]!;
    for (const part of ['"team-a" is not namespace=bucket', '"=b" is not namespace=bucket', '"team-*": namespace globs are not allowed', '"Team_A" is not a namespace name', '"../etc" is not a bucket', '"/abs" is not a bucket', '"a/./b" is not a bucket', 'expected --tenant-filesystem-allow team-a=velero-nfs,team-b=shared']) {
      assert.ok(text.includes(part), `${part} in ${text}`);
    }
    assert.ok(!text.includes('team-e'), 'a good entry is not reported');
  });
});

describe('value parsers', () => {
  test('envName', () => assert.equal(envName('metrics-listen'), 'VDS_METRICS_LISTEN'));
  test('durations', () => {
    assert.equal(duration('500ms'), 500);
    assert.equal(duration('30s'), 30_000);
    assert.equal(duration('2m'), 120_000);
    assert.equal(duration('1.5h'), 5_400_000);
    assert.throws(() => duration('30'), /duration/);
  });
  test('sizes', () => {
    assert.equal(bytes('4096'), 4096);
    assert.equal(bytes('64Mi'), 64 * 1024 ** 2);
    assert.equal(bytes('2Gi'), 2 * 1024 ** 3);
    for (const bad of ['0', '-1Mi', '1.5Gi', '1GB', '', 'Mi', '99999999999999999999']) assert.throws(() => bytes(bad), /size/, bad);
  });
  test('host:port forms', () => {
    assert.deepEqual(hostPort(':8443'), { host: '0.0.0.0', port: 8443 });
    assert.deepEqual(hostPort('[::1]:8443'), { host: '::1', port: 8443 });
    assert.deepEqual(hostPort('localhost:1'), { host: 'localhost', port: 1 });
    assert.throws(() => hostPort('localhost:70000'));
    assert.throws(() => hostPort('localhost'));
  });
});

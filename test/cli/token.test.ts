/**
 * `velero-download --token / --token-file / $VELERO_DOWNLOAD_TOKEN`: a bearer token and a gateway URL,
 * no kubeconfig. What the gateway receives (the Authorization header, from each source), what is
 * refused before anything is sent (a token with a CR/LF, --insecure-skip-tls-verify, a kubeconfig as
 * well), and that the token never appears in a message. The gateway is a small HTTPS server that
 * records what it receives; the real gateway reviews such tokens as it does a kubeconfig's.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdir, mkdtemp, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gzipSync } from 'node:zlib';
import { parseCommandLine } from '../../src/cli/args.ts';
import type { Command } from '../../src/cli/args.ts';
import { UsageError } from '../../src/cli/errors.ts';
import { runInProcess, startRecorder } from '../support/cli.ts';
import type { CliResult, InProcessOptions, Recorder } from '../support/cli.ts';
import { createTestPki } from '../support/test-ca.ts';

const TOKEN = 'eyJhbGciOiJSUzI1NiJ9.c2VjcmV0LXRva2Vu.sig-nature_123';
const LOG = 'line one\nline two\n';
const URL_ = 'https://gw.example';

const usage = (argv: string[], message: RegExp, env: Record<string, string> = {}): UsageError => {
  let caught: unknown;
  assert.throws(() => parseCommandLine(argv, env), (err: unknown) => ((caught = err), err instanceof UsageError && err.exitCode === 2 && message.test(err.message)));
  return caught as UsageError;
};
const cmd = (argv: string[], env: Record<string, string> = {}): Command => (parseCommandLine(argv, env) as { command: Command }).command;

describe('--token, --token-file and $VELERO_DOWNLOAD_TOKEN on the command line', () => {
  const base = ['backup', 'logs', 'b', '--velero-server-url', URL_];

  test('each source; flags win over the variable, which counts only with a base URL and no kubeconfig or --user', () => {
    assert.deepEqual(cmd([...base, '--token', TOKEN]).token, { from: '--token', value: TOKEN });
    assert.deepEqual(cmd([...base, '--token-file', 't']).token, { from: '--token-file', file: 't' });
    const env = { VELERO_DOWNLOAD_TOKEN: `${TOKEN}\n` };
    assert.deepEqual(cmd(base, env).token, { from: '$VELERO_DOWNLOAD_TOKEN', value: TOKEN });
    assert.deepEqual(cmd([...base, '--token-file', 't'], env).token, { from: '--token-file', file: 't' });
    // A shell that exports it keeps its kubeconfig commands working.
    assert.equal(cmd(['backup', 'logs', 'b'], env).token, undefined);
    assert.equal(cmd(['backup', 'logs', 'b', '--velero-server-url'], env).token, undefined);
    assert.equal(cmd([...base, '--kubeconfig', 'k'], env).token, undefined);
    assert.equal(cmd([...base, '--user', 'ci@host'], env).token, undefined);
  });

  test('refused: no base URL, a kubeconfig or --user as well, skipping TLS verification, both flags, an empty file name', () => {
    usage(['backup', 'logs', 'b', '--token', TOKEN], /--token needs --velero-server-url=https:\/\/HOST/);
    usage(['backup', 'logs', 'b', '--velero-server-url', '--token-file', 't'], /--token-file needs --velero-server-url=https:\/\/HOST/);
    usage([...base, '--token', TOKEN, '--kubeconfig', 'k'], /replaces the kubeconfig: leave out --kubeconfig and --context/);
    usage([...base, '--token-file', 't', '--context', 'c'], /replaces the kubeconfig/);
    usage([...base, '--token', TOKEN, '--user', 'ci@host'], /--token and --user: sign in with one of them/);
    usage([...base, '--token', TOKEN, '--insecure-skip-tls-verify'], /cannot be used with --token: the token would go to whoever answers/);
    usage([...base, '--insecure-skip-tls-verify'], /cannot be used with \$VELERO_DOWNLOAD_TOKEN/, { VELERO_DOWNLOAD_TOKEN: TOKEN });
    usage([...base, '--token', TOKEN, '--token-file', 't'], /give one of them/);
    usage([...base, '--token-file', ''], /--token-file: empty file name/);
    usage(['hash-password', '--token', TOKEN], /hash-password takes only --user and --password-file, not --token/);
  });

  test('a hostile value (CR/LF to add a header, spaces, NUL, too long, empty) is refused without being repeated', () => {
    for (const bad of [`${TOKEN}\r\nX-Evil: 1`, 'two words', `a\0b`, 'ä-token', 'x'.repeat(8193), '  ']) {
      for (const [argv, env] of [
        [[...base, '--token', bad], {}],
        [base, { VELERO_DOWNLOAD_TOKEN: bad }],
      ] as const) {
        const err = usage([...argv], /the token (is empty|is longer than 8192|holds spaces, control or non-ASCII)/, env);
        if (bad.trim()) assert.ok(!err.message.includes(bad.trim()), JSON.stringify(bad).slice(0, 40));
      }
    }
  });
});

describe('a token against an HTTPS gateway', () => {
  let gw: Recorder;
  let dir: string;
  let caFile: string;
  let fingerprint: string;

  before(async () => {
    const pki = await createTestPki('token CA');
    gw = await startRecorder(pki, gzipSync(LOG));
    fingerprint = new X509Certificate(pki.cert).fingerprint256.replaceAll(':', '').toLowerCase();
    dir = await mkdtemp(join(tmpdir(), 'vds-cli-token-'));
    caFile = join(dir, 'ca.pem');
    await writeFile(caFile, pki.caCert);
    await writeFile(join(dir, 'token'), `  ${TOKEN}\n\n`, { mode: 0o600 });
  });
  after(async () => {
    await new Promise((r) => gw.server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  const logs = (...extra: string[]): string[] => ['backup', 'logs', 'nightly', '--velero-server-url', gw.url, '--cacert', caFile, ...extra];
  const cli = (argv: string[], opts: InProcessOptions = {}): Promise<CliResult> => runInProcess(argv, { cwd: dir, ...opts });
  const noToken = (r: CliResult): void => assert.ok(!r.stderr.includes(TOKEN) && !r.stdout.toString().includes(TOKEN), 'the token is never printed');
  const WARNING = /warning: the value of --token can be seen by other users in process listings \(ps\)/;

  test('the gateway receives "Bearer TOKEN" from --token-file, $VELERO_DOWNLOAD_TOKEN and --token; only --token is warned about', async () => {
    for (const [argv, env, warned] of [
      [logs('--token-file', 'token'), {}, false],
      [logs(), { VELERO_DOWNLOAD_TOKEN: TOKEN }, false],
      [logs('--token', TOKEN), {}, true],
      // The flag wins over the variable.
      [logs('--token-file', 'token'), { VELERO_DOWNLOAD_TOKEN: 'other-token' }, false],
    ] as const) {
      gw.requests.length = 0;
      const r = await cli([...argv], { env });
      assert.equal(r.code, 0, r.stderr);
      assert.equal(r.stdout.toString(), LOG);
      assert.equal(gw.requests.length, 1);
      assert.equal(gw.requests[0]!.path, '/v1/namespaces/velero/backups/nightly/log');
      assert.equal(gw.requests[0]!.headers.authorization, `Bearer ${TOKEN}`, argv.join(' '));
      assert.equal(WARNING.test(r.stderr), warned, r.stderr);
      noToken(r);
    }
  });

  test('a pinned fingerprint vouches as well; an unknown certificate gets nothing, not even the token', async () => {
    gw.requests.length = 0;
    const pinned = await cli(['backup', 'logs', 'nightly', '--velero-server-url', gw.url, '--server-cert-fingerprint', fingerprint, '--token-file', 'token']);
    assert.equal(pinned.code, 0, pinned.stderr);
    assert.equal(gw.requests.length, 1);
    const unknown = await cli(['backup', 'logs', 'nightly', '--velero-server-url', gw.url, '--token-file', 'token']);
    assert.equal(unknown.code, 4, unknown.stderr);
    assert.match(unknown.stderr, /certificate is not trusted: nothing vouches for it .*nothing was sent/);
    assert.equal(gw.requests.length, 1, 'no request reached the server');
    noToken(unknown);
  });

  test('a 401 says the token was refused and how to get a new one, without the token', async () => {
    gw.answer = (_p, res) => void res.writeHead(401, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'Status', message: 'Unauthorized' }));
    try {
      const r = await cli(logs('--token-file', 'token'));
      assert.equal(r.code, 3, r.stderr);
      assert.match(r.stderr, /did not accept the token from --token-file .*kubectl create token NAME/);
      noToken(r);
    } finally {
      gw.answer = (_p, res) => void res.writeHead(200).end(gzipSync(LOG));
    }
  });

  test('--token-file: a missing file, a directory, an empty or oversized file, a token with a space: exit 2, nothing sent, nothing echoed', async () => {
    await mkdir(join(dir, 'a-dir'), { recursive: true });
    await writeFile(join(dir, 'empty'), '\n');
    await writeFile(join(dir, 'huge'), 'x'.repeat(100_000));
    await writeFile(join(dir, 'spaced'), `${TOKEN} ${TOKEN}\n`);
    gw.requests.length = 0;
    for (const [file, message] of [
      ['missing', /--token-file: cannot read .*missing: ENOENT/],
      ['a-dir', /is a directory/],
      ['empty', /the token is empty/],
      ['huge', /longer than 8192 characters/],
      ['spaced', /holds spaces/],
    ] as const) {
      const r = await cli(logs('--token-file', file));
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, message);
      noToken(r);
    }
    assert.equal(gw.requests.length, 0);
  });
});

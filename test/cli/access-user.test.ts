/**
 * `velero-download --user USER@HOST` and `hash-password`: the command line (no password as a flag
 * value, the gateway's name rule), where the password comes from (file, stdin, the no-echo prompt),
 * and what goes over the wire: HTTP Basic only to a server whose certificate a CA or a pin vouches for,
 * never again after a redirect, and 401 / 429 said plainly without the password. The gateway here is a
 * small HTTPS server that records what it receives; the real gateway is in test/e2e.
 */
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import { once } from 'node:events';
import { X509Certificate } from 'node:crypto';
import { chmod, mkdtemp, rm, symlink, writeFile, mkdir } from 'node:fs/promises';
import type { IncomingHttpHeaders } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { PassThrough, Readable } from 'node:stream';
import { after, before, describe, test } from 'node:test';
import { fileURLToPath } from 'node:url';
import { gzipSync } from 'node:zlib';
import { parseCommandLine } from '../../src/cli/args.ts';
import type { Command } from '../../src/cli/args.ts';
import { CliError, UsageError } from '../../src/cli/errors.ts';
import { firstLine, promptPassword, readPasswordFile } from '../../src/cli/password.ts';
import type { PromptTerminal } from '../../src/cli/password.ts';
import { MAX_BASIC_HEADER, parseAccessUsers, parseBasic, verify } from '../../src/auth/access-users.ts';
import { runInProcess, startRecorder } from '../support/cli.ts';
import type { CliResult, InProcessOptions, Recorder } from '../support/cli.ts';
import { createTestPki } from '../support/test-ca.ts';
import type { TestPki } from '../support/test-ca.ts';

const PASSWORD = 'pä:ss wörd:1';
const USER = 'alice@ci.example';
const LOG = 'line one\nline two\n';
const LOG_GZ = gzipSync(LOG);

const usage = (argv: string[], message: RegExp): UsageError => {
  let caught: unknown;
  assert.throws(() => parseCommandLine(argv), (err: unknown) => ((caught = err), err instanceof UsageError && err.exitCode === 2 && message.test(err.message)));
  return caught as UsageError;
};
const cmd = (...argv: string[]): Command => (parseCommandLine(argv) as { command: Command }).command;

describe('--user on the command line', () => {
  const base = ['backup', 'logs', 'b', '--velero-server-url', 'https://gw.example'];

  test('a password as a flag value is refused in both forms, and never repeated', () => {
    for (const argv of [
      [...base, '--user', USER, '--password=hunter2'],
      [...base, '--user', USER, '--password', 'hunter2'],
      ['--password', 'hunter2', ...base],
      [...base, '--password'],
      ['hash-password', '--password=hunter2'],
    ]) {
      const err = usage(argv, /--password is not accepted: .*--password-file FILE .*asked on the terminal/);
      assert.ok(!err.message.includes('hunter2'), argv.join(' '));
    }
    // After "--" it is an argument like any other (and refused as one), not a flag.
    usage([...base.slice(0, 3), '--', '--password=x'], /unexpected argument/);
  });

  test('the name follows the gateway\'s rule; a ":" (which Basic cannot carry) is refused without echoing the value', () => {
    assert.deepEqual(cmd(...base, '--user', USER).accessUser, { name: USER });
    assert.deepEqual(cmd(...base, '--user', USER, '--password-file', 'pw.txt').accessUser, { name: USER, passwordFile: 'pw.txt' });
    for (const bad of ['alice:hunter2@ci', 'alice', '@ci', 'alice@', 'a@b@c', 'al ice@ci', 'alice@c\ni', `${'u'.repeat(65)}@ci`, 'älice@ci']) {
      const err = usage([...base, '--user', bad], /--user: expected USER@HOST/);
      assert.ok(!err.message.includes(bad), bad);
    }
  });

  test('--user needs a base URL and no kubeconfig, and never skips TLS verification', () => {
    usage(['backup', 'logs', 'b', '--user', USER], /--user needs --velero-server-url=https:\/\/HOST/);
    usage(['backup', 'logs', 'b', '--velero-server-url', '--user', USER], /--user needs --velero-server-url=https:\/\/HOST/);
    usage([...base, '--user', USER, '--kubeconfig', 'k'], /without a kubeconfig: leave out --kubeconfig and --context/);
    usage([...base, '--user', USER, '--context', 'c'], /leave out --kubeconfig and --context/);
    usage([...base, '--user', USER, '--insecure-skip-tls-verify'], /cannot be used with --user: the password would go to whoever answers/);
    usage(['backup', 'logs', 'b', '--velero-server-url', 'http://gw.example', '--user', USER], /never sent over plain HTTP/);
    usage([...base, '--password-file', 'pw'], /--password-file goes with --user/);
    usage([...base, '--user', USER, '--password-file', ''], /empty file name/);
    // Pinning and a CA file both go with --user.
    const c = cmd(...base, '--user', USER, '--server-cert-fingerprint', 'AB'.repeat(32), '--cacert', 'ca.pem');
    assert.equal(c.serverCertFingerprint, 'ab'.repeat(32));
    assert.equal(c.cacert, 'ca.pem');
  });

  test('hash-password takes only --user and --password-file', () => {
    assert.deepEqual(parseCommandLine(['hash-password']), { help: false, hashPassword: {} });
    assert.deepEqual(parseCommandLine(['hash-password', '--user', USER, '--password-file', '-']), { help: false, hashPassword: { user: USER, passwordFile: '-' } });
    usage(['hash-password', '-n', 'x'], /takes only --user and --password-file, not --namespace/);
    usage(['hash-password', 'extra'], /unexpected argument "extra"/);
    usage(['hash-password', '--user', 'a:b@c'], /--user: expected USER@HOST/);
  });
});

describe('reading a password', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-cli-pw-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  const chunks = (...parts: (string | Buffer)[]): AsyncIterable<Buffer> => Readable.from(parts.map((p) => Buffer.from(p)));

  test('the first line, its line end dropped; ":" and UTF-8 kept', async () => {
    assert.equal(await firstLine(chunks(`${PASSWORD}\n`), 'x'), PASSWORD);
    assert.equal(await firstLine(chunks(`${PASSWORD}\r\nsecond line\n`), 'x'), PASSWORD);
    assert.equal(await firstLine(chunks(PASSWORD), 'x'), PASSWORD);
    // A multi-byte character split across reads.
    const bytes = Buffer.from(`${PASSWORD}\n`);
    assert.equal(await firstLine(chunks(bytes.subarray(0, 2), bytes.subarray(2)), 'x'), PASSWORD);
    assert.equal(await firstLine(chunks(' lead and trail \n'), 'x'), ' lead and trail ', 'spaces are part of a password');
  });

  test('empty, too long or not UTF-8: refused, the message names the source only', async () => {
    await assert.rejects(firstLine(chunks('\nsecret-on-line-2\n'), 'F'), /F: the first line is empty/);
    await assert.rejects(firstLine(chunks(''), 'F'), /the first line is empty/);
    await assert.rejects(firstLine(chunks('x'.repeat(1025)), 'F'), /longer than 1024 bytes/);
    assert.equal(await firstLine(chunks(`${'x'.repeat(1024)}\r\n`), 'F'), 'x'.repeat(1024));
    await assert.rejects(firstLine(chunks(Buffer.from([0x73, 0xff, 0x0a])), 'F'), (e: unknown) => e instanceof UsageError && /not UTF-8/.test(e.message));
  });

  test('an endless source is read only a little past the limit', async () => {
    let pulled = 0;
    async function* endless(): AsyncGenerator<Buffer> {
      for (;;) {
        pulled++;
        yield Buffer.alloc(512, 0x61);
      }
    }
    await assert.rejects(firstLine(endless(), 'F'), /longer than 1024 bytes/);
    assert.ok(pulled <= 3, `pulled ${pulled} chunks`);
    const t = Date.now();
    await assert.rejects(readPasswordFile('/dev/zero', '--password-file', () => {}), /longer than 1024 bytes/);
    assert.ok(Date.now() - t < 5000);
  });

  test('a file readable by others is read with a warning; one only the owner reads, without', async () => {
    const file = join(dir, 'pw');
    await writeFile(file, `${PASSWORD}\n`, { mode: 0o600 });
    await chmod(file, 0o600);
    const warnings: string[] = [];
    assert.equal(await readPasswordFile(file, '--password-file', (m) => warnings.push(m)), PASSWORD);
    assert.equal(warnings.length, 0);
    await chmod(file, 0o644);
    assert.equal(await readPasswordFile(file, '--password-file', (m) => warnings.push(m)), PASSWORD);
    assert.equal(warnings.length, 1);
    assert.match(warnings[0]!, /warning: .*pw \(mode 0644\) can be read by other users: chmod 600/);
    await chmod(file, 0o640);
    await readPasswordFile(file, '--password-file', (m) => warnings.push(m));
    assert.equal(warnings.length, 2, 'group-readable warns too');
    assert.ok(!warnings.join('').includes(PASSWORD));
  });

  test('a symbolic link is followed with the user\'s own rights; a directory or a missing file is a usage error', async () => {
    const target = join(dir, 'real');
    await writeFile(target, 'linked\n', { mode: 0o600 });
    await symlink(target, join(dir, 'link'));
    assert.equal(await readPasswordFile(join(dir, 'link'), 'L', () => {}), 'linked');
    await mkdir(join(dir, 'adir'));
    await assert.rejects(readPasswordFile(join(dir, 'adir'), 'L', () => {}), (e: unknown) => e instanceof UsageError && /is a directory/.test(e.message));
    await assert.rejects(readPasswordFile(join(dir, 'missing'), 'L', () => {}), (e: unknown) => e instanceof UsageError && /cannot read .*missing: ENOENT/.test(e.message));
  });
});

/** A terminal made of streams: records raw-mode switches and what is written to it. */
function fakeTerminal(): PromptTerminal & { keys: PassThrough; modes: boolean[]; shown: () => string; closed: () => boolean } {
  const keys = new PassThrough();
  const modes: boolean[] = [];
  let shown = '';
  let closed = false;
  const input = Object.assign(keys, { setRawMode: (raw: boolean) => void modes.push(raw) });
  return { input, keys, modes, write: (t) => void (shown += t), close: () => void (closed = true), shown: () => shown, closed: () => closed };
}

describe('the password prompt', () => {
  test('raw mode (no echo) while typing, restored after Enter; line editing and escape sequences', async () => {
    const t = fakeTerminal();
    const p = promptPassword(t, 'Password for a@b: ', new AbortController().signal);
    assert.deepEqual(t.modes, [true]);
    assert.equal(t.shown(), 'Password for a@b: ');
    const bytes = Buffer.from('wrongö\u0015pä\u007fä:\u001b[Dss wörd:1\r');
    t.keys.write(bytes.subarray(0, 13)); // splits a UTF-8 character
    t.keys.write(bytes.subarray(13));
    assert.equal(await p, 'pä:ss wörd:1');
    assert.deepEqual(t.modes, [true, false]);
    assert.equal(t.shown(), 'Password for a@b: \n', 'nothing typed is shown');
    assert.ok(t.closed());
  });

  test('Ctrl-C, an abort (SIGTERM), Ctrl-D on an empty line and a closed terminal all restore the mode', async () => {
    const cases: [string, (t: ReturnType<typeof fakeTerminal>, ac: AbortController) => void, (e: unknown) => boolean][] = [
      ['Ctrl-C', (t) => t.keys.write('abc\u0003'), (e) => e instanceof CliError && e.exitCode === 130],
      ['abort', (_t, ac) => ac.abort(new Error('SIGTERM')), (e) => e instanceof CliError && e.exitCode === 130],
      ['Ctrl-D', (t) => t.keys.write('\u0004'), (e) => e instanceof UsageError && /no password entered/.test(e.message)],
      ['Enter alone', (t) => t.keys.write('\r'), (e) => e instanceof UsageError && /no password entered/.test(e.message)],
      ['closed', (t) => t.keys.end(), (e) => e instanceof UsageError && /terminal closed/.test(e.message)],
      ['too long', (t) => t.keys.write(`${'é'.repeat(513)}\r`), (e) => e instanceof UsageError && /longer than 1024 bytes/.test(e.message)],
    ];
    for (const [name, act, expected] of cases) {
      const t = fakeTerminal();
      const ac = new AbortController();
      const p = promptPassword(t, 'P: ', ac.signal);
      act(t, ac);
      await assert.rejects(p, expected, name);
      assert.deepEqual(t.modes, [true, false], name);
      assert.ok(t.closed(), name);
    }
  });
});

const recorder = (pki: TestPki): Promise<Recorder> => startRecorder(pki, LOG_GZ);

describe('--user against an HTTPS gateway', () => {
  let pki: TestPki;
  let gw: Recorder;
  let other: Recorder;
  let dir: string;
  let caFile: string;
  let pwFile: string;
  let fingerprint: string;

  before(async () => {
    pki = await createTestPki('access-user CA');
    gw = await recorder(pki);
    other = await recorder(pki);
    fingerprint = new X509Certificate(pki.cert).fingerprint256.replaceAll(':', '').toLowerCase();
    dir = await mkdtemp(join(tmpdir(), 'vds-cli-user-'));
    caFile = join(dir, 'ca.pem');
    await writeFile(caFile, pki.caCert);
    pwFile = join(dir, 'password');
    await writeFile(pwFile, `${PASSWORD}\n`, { mode: 0o600 });
  });
  after(async () => {
    await new Promise((r) => gw.server.close(r));
    await new Promise((r) => other.server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  const logs = (...extra: string[]): string[] => ['backup', 'logs', 'nightly', '--velero-server-url', gw.url, '--user', USER, ...extra];
  const cli = (argv: string[], opts: InProcessOptions = {}): Promise<CliResult> => runInProcess(argv, { cwd: dir, ...opts });
  const basic = (h: IncomingHttpHeaders): { user: string; password: string } | undefined => parseBasic(h.authorization);
  const noPassword = (r: CliResult): void => assert.ok(!r.stderr.includes(PASSWORD) && !r.stdout.toString().includes(PASSWORD), 'the password is never printed');
  const reset = (): void => {
    gw.requests.length = 0;
    other.requests.length = 0;
    gw.answer = (_p, res) => void res.writeHead(200, { 'Content-Length': LOG_GZ.length }).end(LOG_GZ);
  };

  test('Basic credentials (a password with ":" and UTF-8) from --password-file, to a server a pin vouches for; no kubeconfig', async () => {
    reset();
    const r = await cli(logs('--password-file', 'password', '--server-cert-fingerprint', fingerprint));
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), LOG);
    assert.equal(gw.requests.length, 1);
    assert.equal(gw.requests[0]!.path, '/v1/namespaces/velero/backups/nightly/log');
    assert.deepEqual(basic(gw.requests[0]!.headers), { user: USER, password: PASSWORD });
    noPassword(r);
  });

  test('the longest name and password the client accepts fit the gateway\'s bound on a Basic header', async () => {
    reset();
    const name = `${'u'.repeat(64)}@${'h'.repeat(253)}`;
    const longest = 'é'.repeat(512);
    await writeFile(join(dir, 'long'), `${longest}\n`, { mode: 0o600 });
    const r = await cli(['backup', 'logs', 'nightly', '--velero-server-url', gw.url, '--user', name, '--password-file', 'long', '--cacert', caFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(gw.requests[0]!.headers.authorization!.length <= MAX_BASIC_HEADER);
    assert.deepEqual(basic(gw.requests[0]!.headers), { user: name, password: longest });
  });

  test('--cacert vouches as well; the password from $VELERO_DOWNLOAD_PASSWORD_FILE or from stdin (--password-file -)', async () => {
    reset();
    const viaEnv = await cli(logs('--cacert', caFile), { env: { VELERO_DOWNLOAD_PASSWORD_FILE: pwFile } });
    assert.equal(viaEnv.code, 0, viaEnv.stderr);
    const viaStdin = await cli(logs('--cacert', caFile, '--password-file', '-'), { stdin: () => Readable.from([Buffer.from(`${PASSWORD}\nrest`)]) });
    assert.equal(viaStdin.code, 0, viaStdin.stderr);
    assert.deepEqual(gw.requests.map((q) => basic(q.headers)), [{ user: USER, password: PASSWORD }, { user: USER, password: PASSWORD }]);
    const ttyStdin = await cli(logs('--cacert', caFile, '--password-file', '-'), { stdin: () => Object.assign(new PassThrough(), { isTTY: true }) });
    assert.equal(ttyStdin.code, 2);
    assert.match(ttyStdin.stderr, /stdin is a terminal, where the password would show as you type/);
  });

  test('the prompt: asked on the terminal when no file is given', async () => {
    reset();
    const t = fakeTerminal();
    const run = cli(logs('--cacert', caFile), {
      openTerminal: () => {
        setImmediate(() => t.keys.write(`${PASSWORD}\r`));
        return t;
      },
    });
    const r = await run;
    assert.equal(r.code, 0, r.stderr);
    assert.equal(t.shown(), `Password for ${USER}: \n`);
    assert.deepEqual(basic(gw.requests[0]!.headers), { user: USER, password: PASSWORD });
  });

  test('no file and no terminal: exit 2 with what to do, before anything is sent', async () => {
    reset();
    const r = await cli(logs('--cacert', caFile), { openTerminal: () => undefined });
    assert.equal(r.code, 2);
    assert.match(r.stderr, new RegExp(`--user ${USER}: no password: pass --password-file FILE .* or set VELERO_DOWNLOAD_PASSWORD_FILE=FILE; there is no terminal`));
    assert.equal(gw.requests.length, 0);
  });

  test('an untrusted or wrongly pinned certificate: refused before a byte is sent, saying how to get the fingerprint', async () => {
    reset();
    const unpinned = await cli(logs('--password-file', pwFile));
    assert.equal(unpinned.code, 4, unpinned.stderr);
    assert.match(unpinned.stderr, new RegExp(`nothing vouches for it \\(SHA-256 fingerprint ${fingerprint}\\); nothing was sent`));
    assert.match(unpinned.stderr, /--server-cert-fingerprint with the fingerprint the operator publishes, read over a channel you already trust \(GET \/v1\/info field tlsFingerprint/);
    assert.match(unpinned.stderr, /annotation download-server\.velero\.io\/tls-fingerprint on ConfigMap velero-download-server-ca/);
    const wrong = await cli(logs('--password-file', pwFile, '--server-cert-fingerprint', '00'.repeat(32)));
    assert.equal(wrong.code, 4);
    assert.match(wrong.stderr, new RegExp(`its SHA-256 fingerprint ${fingerprint} is not the pinned ${'00'.repeat(32)}`));
    const otherCa = await createTestPki('another CA');
    await writeFile(join(dir, 'other-ca.pem'), otherCa.caCert);
    const wrongCa = await cli(logs('--password-file', pwFile, '--cacert', 'other-ca.pem'));
    assert.equal(wrongCa.code, 4);
    assert.equal(gw.requests.length, 0, 'the server never received the credentials');
    noPassword(unpinned);
  });

  test('401: "user or password not accepted", exit 3, nothing retried, the password not repeated', async () => {
    reset();
    gw.answer = (_p, res) =>
      void res
        .writeHead(401, { 'Content-Type': 'application/json', 'WWW-Authenticate': 'Basic realm="velero-download-server"' })
        .end(JSON.stringify({ kind: 'Status', status: 'Failure', reason: 'Unauthorized', message: 'Unauthorized', code: 401 }));
    const r = await cli(logs('--password-file', pwFile, '--cacert', caFile));
    assert.equal(r.code, 3);
    assert.match(r.stderr, new RegExp(`did not accept user or password for ${USER} \\(Unauthorized\\): check the password`));
    assert.equal(gw.requests.length, 1);
    noPassword(r);
  });

  test('403 names the user RBAC must grant; the server\'s words cannot drive the terminal', async () => {
    reset();
    gw.answer = (_p, res) => void res.writeHead(403, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'Status', message: 'forbidden\u001b]0;owned\u0007\u001b[2J', code: 403 }));
    const r = await cli(logs('--password-file', pwFile, '--cacert', caFile));
    assert.equal(r.code, 3);
    assert.match(r.stderr, new RegExp(`"get" on backups/log named "nightly" .* for user "velero-download-server:${USER}"`));
    assert.ok(r.stderr.startsWith('velero-download: forbidden\\x1b]0;owned\\x07\\x1b[2J: ask'), r.stderr);
    assert.ok(!r.stderr.includes('\u001b'), 'no escape character reaches the terminal');
  });

  test('429: the server\'s Retry-After is said and respected (no retry sooner), exit 4', async () => {
    reset();
    gw.answer = (_p, res) =>
      void res
        .writeHead(429, { 'Content-Type': 'application/json', 'Retry-After': '42' })
        .end(JSON.stringify({ kind: 'Status', message: 'too many failed sign-ins for this user or from this client address; retry later', code: 429 }));
    const r = await cli(logs('--password-file', pwFile, '--cacert', caFile));
    assert.equal(r.code, 4);
    assert.match(r.stderr, /refused the request for now \(too many failed sign-ins for this user or from this client address; retry later\): try again in 42 s/);
    assert.equal(gw.requests.length, 1, 'not asked again before the server\'s time');
    noPassword(r);
  });

  test('a redirect is not followed: the credentials never reach another host', async () => {
    reset();
    gw.answer = (_p, res) => void res.writeHead(302, { Location: `${other.url.replace('127.0.0.1', 'localhost')}/steal` }).end();
    const r = await cli(logs('--password-file', pwFile, '--cacert', caFile));
    assert.notEqual(r.code, 0);
    assert.match(r.stderr, /answered HTTP 302/);
    assert.equal(gw.requests.length, 1);
    assert.equal(other.requests.length, 0, 'the other host got nothing');
  });

  test('volume data with --user sends the same credentials', async () => {
    reset();
    gw.answer = (_p, res) => void res.writeHead(200, { 'Content-Type': 'application/json' }).end(JSON.stringify({ kind: 'VolumeList', items: [] }));
    const r = await cli(['backup', 'volumes', 'nightly', '-o', 'json', '--velero-server-url', gw.url, '--user', USER, '--password-file', pwFile, '--cacert', caFile]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(gw.requests[0]!.path, '/v1/namespaces/velero/backups/nightly/volumes');
    assert.deepEqual(basic(gw.requests[0]!.headers), { user: USER, password: PASSWORD });
  });
});

describe('the prompt on a real pseudo-terminal, and without one (real processes)', () => {
  const MAIN = fileURLToPath(new URL('../../src/cli/main.ts', import.meta.url));
  let pki: TestPki;
  let gw: Recorder;
  let dir: string;
  let caFile: string;
  const env = (): NodeJS.ProcessEnv => {
    const e = { ...process.env };
    delete e.KUBECONFIG;
    delete e.VELERO_DOWNLOAD_PASSWORD_FILE;
    return e;
  };

  before(async () => {
    pki = await createTestPki('pty CA');
    gw = await recorder(pki);
    dir = await mkdtemp(join(tmpdir(), 'vds-cli-pty-'));
    caFile = join(dir, 'ca.pem');
    await writeFile(caFile, pki.caCert);
  });
  after(async () => {
    await new Promise((r) => gw.server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  /**
   * Runs the command under `script` (util-linux), whose pseudo-terminal becomes the command's
   * controlling terminal, types `keys` once the prompt shows, and returns what the terminal showed,
   * then `exit=<code>` and `stty -a` as the terminal is left afterwards.
   */
  async function onTerminal(keys: string | undefined, ...extra: string[]): Promise<string> {
    const line = `'${process.execPath}' '${MAIN}' backup logs nightly --velero-server-url ${gw.url} --user ${USER} --cacert '${caFile}' ${extra.join(' ')}; echo "exit=$?"; stty -a`;
    const proc = spawn('script', ['-q', '-e', '-c', line, '/dev/null'], { cwd: dir, env: env(), stdio: ['pipe', 'pipe', 'pipe'] });
    let shown = '';
    const closed = once(proc, 'close');
    proc.stdout.on('data', (c: Buffer) => (shown += c.toString()));
    proc.stderr.on('data', (c: Buffer) => (shown += c.toString()));
    if (keys !== undefined) {
      for (let i = 0; i < 600 && !shown.includes('Password for'); i++) await new Promise((r) => setTimeout(r, 50));
      assert.match(shown, new RegExp(`Password for ${USER}: `));
      proc.stdin.write(keys);
    }
    for (let i = 0; i < 600 && !/exit=\d+[\s\S]*speed/.test(shown); i++) await new Promise((r) => setTimeout(r, 50));
    proc.stdin.end();
    await closed;
    return shown;
  }

  test('what is typed is not shown, and the terminal is back to echo and line editing afterwards', async () => {
    gw.requests.length = 0;
    const shown = await onTerminal(`${PASSWORD}\r`);
    assert.match(shown, /exit=0/, shown);
    assert.ok(shown.includes(LOG.replaceAll('\n', '\r\n')), shown);
    assert.ok(!shown.includes(PASSWORD) && !shown.includes('ss wörd'), 'no echo');
    const stty = shown.slice(shown.indexOf('exit='));
    assert.match(stty, /(^|\s)echo(\s|$)/m);
    assert.match(stty, /(^|\s)icanon(\s|$)/m);
    assert.deepEqual(parseBasic(gw.requests[0]?.headers.authorization), { user: USER, password: PASSWORD });
  });

  test('Ctrl-C at the prompt: exit 130, nothing sent, the terminal restored', async () => {
    gw.requests.length = 0;
    const shown = await onTerminal('half-typed\u0003');
    assert.match(shown, /interrupted: nothing was sent/);
    assert.match(shown, /exit=130/);
    assert.match(shown.slice(shown.indexOf('exit=')), /(^|\s)echo(\s|$)/m);
    assert.ok(!shown.includes('half-typed'));
    assert.equal(gw.requests.length, 0);
  });

  test('--password-file naming the terminal is refused: it would echo', async () => {
    const shown = await onTerminal(undefined, '--password-file', '/dev/tty');
    assert.match(shown, /--password-file: \/dev\/tty is a terminal, where the password would show as you type/);
    assert.match(shown, /exit=2/);
  });

  test('no controlling terminal and no file: exit 2 with what to do', async () => {
    // A new session (setsid) has no controlling terminal, whatever runs the tests.
    const proc = spawn(process.execPath, [MAIN, 'backup', 'logs', 'nightly', '--velero-server-url', gw.url, '--user', USER], { env: env(), detached: true, stdio: ['ignore', 'pipe', 'pipe'] });
    let err = '';
    proc.stderr.on('data', (c: Buffer) => (err += c.toString()));
    const [code] = (await once(proc, 'close')) as [number];
    assert.equal(code, 2);
    assert.match(err, /no password: pass --password-file FILE .*there is no terminal to ask on/);
  });
});

describe('hash-password', () => {
  const check = async (line: string, name: string, password: string): Promise<void> => {
    const { table, problems } = parseAccessUsers({ text: line });
    assert.deepEqual(problems, []);
    assert.equal(await verify(table, name, password), true, 'the gateway accepts the password');
    assert.equal(await verify(table, name, `${password}x`), false, 'and only it');
  };

  test('from stdin: prints the entry, which the gateway\'s own parser and verifier accept', async () => {
    const r = await runInProcess(['hash-password', '--user', USER], { stdin: () => Readable.from([Buffer.from(`${PASSWORD}\n`)]) });
    assert.equal(r.code, 0, r.stderr);
    const out = r.stdout.toString();
    assert.match(out, new RegExp(`^${USER}: scrypt\\$65536\\$8\\$1\\$[A-Za-z0-9+/=]{44}\\$[A-Za-z0-9+/=]{44}\\n$`));
    assert.ok(!out.includes(PASSWORD) && !r.stderr.includes(PASSWORD));
    await check(out, USER, PASSWORD);
  });

  test('asked twice on a terminal; without --user only the hash; differing answers print nothing', async () => {
    const typing = (answers: string[]): (() => PromptTerminal) => () => {
      const t = fakeTerminal();
      setImmediate(() => t.keys.write(`${answers.shift()!}\r`));
      return t;
    };
    const tty = (): Readable & { isTTY: boolean } => Object.assign(new PassThrough(), { isTTY: true });
    const r = await runInProcess(['hash-password'], { stdin: tty, openTerminal: typing(['sëcret', 'sëcret']) });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /^scrypt\$65536\$8\$1\$\S+\n$/);
    await check(`bob@host: ${r.stdout.toString()}`, 'bob@host', 'sëcret');
    const differ = await runInProcess(['hash-password'], { stdin: tty, openTerminal: typing(['sëcret', 'secret']) });
    assert.equal(differ.code, 2);
    assert.match(differ.stderr, /the two passwords differ: nothing was printed/);
    assert.equal(differ.stdout.length, 0);
  });
});

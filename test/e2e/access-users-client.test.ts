/**
 * End to end: the real `velero-download --user` process against the real gateway process in local
 * mode with `--access-users-file`, whose one entry the real `velero-download hash-password` wrote. No
 * kubeconfig anywhere: the password comes from a file, the certificate is pinned by the fingerprint
 * GET /v1/info reports (read over a channel trusted through the CA file), or trusted through the CA.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { runCli } from '../support/cli.ts';
import type { CliResult } from '../support/cli.ts';
import { curl, startLocalGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';

const USER = 'ci@build.example';
// ":" (Basic splits user and password at the first one), a space and non-ASCII UTF-8.
const PASSWORD = 'pä:ss wörd:1';

describe('velero-download --user against the real gateway (local mode, --access-users-file)', () => {
  let dir: string;
  let gw: GatewayProcess;
  let cacert: string;
  let fingerprint: string;
  let entry: string;
  const pw = (): string => join(dir, 'password');
  const logs = (...extra: string[]): Promise<CliResult> =>
    runCli(['backup', 'logs', 'demo-backup', '--velero-server-url', gw.url, '--user', USER, ...extra], { cwd: dir });
  const requestLines = (): Record<string, unknown>[] => gw.logs.filter((l) => l.msg === 'request' && String(l.path).includes('/backups/demo-backup/'));
  const demoLog = async (): Promise<string> => gunzipSync(await readFile(join(dir, 'data', 'backups', 'demo-backup', 'demo-backup-logs.gz'))).toString();
  const logged = async (n: number): Promise<void> => {
    for (let i = 0; i < 200 && requestLines().length < n; i++) await new Promise((r) => setTimeout(r, 25));
  };

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-e2e-user-'));
    await writeFile(pw(), `${PASSWORD}\n`, { mode: 0o600 });
    const hashed = await runCli(['hash-password', '--user', USER, '--password-file', pw()]);
    assert.equal(hashed.code, 0, hashed.stderr);
    entry = hashed.stdout.toString();
    await writeFile(join(dir, 'users'), `# written by velero-download hash-password\n${entry}`, { mode: 0o600 });
    ({ gw, cacert } = await startLocalGateway(dir, '--access-users-file', join(dir, 'users')));
    // The fingerprint as a client gets it over a channel it already trusts.
    const info = await curl(['--cacert', cacert, '--fail', `${gw.url}/v1/info`]);
    assert.equal(info.code, 0, info.stderr);
    fingerprint = (JSON.parse(info.stdout.toString()) as { tlsFingerprint: string }).tlsFingerprint.replaceAll(':', '').toLowerCase();
    assert.match(fingerprint, /^[0-9a-f]{64}$/);
  });

  after(async () => {
    await gw?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('hash-password wrote one table line, without the password', () => {
    assert.match(entry, new RegExp(`^${USER}: scrypt\\$65536\\$8\\$1\\$\\S+\\n$`));
    assert.ok(!entry.includes(PASSWORD));
  });

  test('pinned by the /v1/info fingerprint: the log, and the gateway names the access user', async () => {
    const r = await logs('--password-file', pw(), '--server-cert-fingerprint', fingerprint);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), await demoLog());
    await logged(1);
    assert.equal(requestLines().at(-1)?.user, `velero-download-server:${USER}`);
    assert.equal(requestLines().at(-1)?.status, 200);
  });

  test('trusted through --cacert: the tarball, saved byte for byte', async () => {
    const out = join(dir, 'demo.tar.gz');
    const r = await runCli(['backup', 'download', 'demo-backup', '-o', out, '--velero-server-url', gw.url, '--user', USER, '--password-file', pw(), '--cacert', cacert], { cwd: dir });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readFile(out), await readFile(join(dir, 'data', 'backups', 'demo-backup', 'demo-backup.tar.gz')));
  });

  test('neither pinned nor trusted: refused before any request, saying where the fingerprint comes from', async () => {
    const before = requestLines().length;
    const r = await logs('--password-file', pw());
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, new RegExp(`SHA-256 fingerprint ${fingerprint}\\); nothing was sent`));
    assert.match(r.stderr, /GET \/v1\/info field tlsFingerprint/);
    // A request made after it is logged after it: only that one appears.
    const next = await logs('--password-file', pw(), '--cacert', cacert);
    assert.equal(next.code, 0, next.stderr);
    await logged(before + 1);
    assert.equal(requestLines().length, before + 1, 'the refused run sent no request');
  });

  test('a wrong password: exit 3, "user or password", the password in no output', async () => {
    const wrong = join(dir, 'wrong');
    await writeFile(wrong, 'not-the-password\n', { mode: 0o600 });
    const r = await logs('--password-file', wrong, '--cacert', cacert);
    assert.equal(r.code, 3, r.stderr);
    assert.match(r.stderr, new RegExp(`did not accept user or password for ${USER}`));
    assert.ok(!r.stderr.includes('not-the-password'));
    assert.ok(!gw.output().includes('not-the-password') && !gw.output().includes(PASSWORD), 'no password in the gateway\'s output');
  });

  // Last: it spends the user's failed-attempt budget.
  test('too many failed attempts: 429, the client says when to try again and does not hammer', async () => {
    const basic = `Authorization: Basic ${Buffer.from(`${USER}:guess`).toString('base64')}`;
    const guess = async (): Promise<{ status: string; retryAfter: number }> => {
      const r = await curl(['--cacert', cacert, '-o', '/dev/null', '-w', '%{http_code} %header{retry-after}', '-H', basic, `${gw.url}/v1/namespaces/velero/backups/demo-backup/log`]);
      const [status, retryAfter] = r.stdout.toString().split(' ');
      return { status: status!, retryAfter: Number(retryAfter) };
    };
    let last = { status: '', retryAfter: 0 };
    for (let i = 0; i < 30 && last.status !== '429'; i++) last = await guess();
    assert.equal(last.status, '429');
    // The user's bucket refills one attempt every 10 s. Wait for that one and spend it, so the next
    // comes a full refill period later: the client's request, made at once, meets an empty bucket.
    await new Promise((r) => setTimeout(r, last.retryAfter * 1000 + 300));
    assert.equal((await guess()).status, '401');
    const before = requestLines().length;
    const r = await logs('--password-file', pw(), '--cacert', cacert);
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /refused the request for now \(.*\): try again in \d+ s/);
    await logged(before + 1);
    assert.equal(requestLines().length, before + 1, 'one request, not a retry loop');
    assert.equal(requestLines().at(-1)?.status, 429);
  });
});

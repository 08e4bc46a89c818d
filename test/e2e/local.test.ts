/**
 * End to end: the real gateway process in local mode, driven by the real curl, trusting the generated
 * certificate with --cacert (never -k).
 */
import assert from 'node:assert/strict';
import { createHash, randomBytes } from 'node:crypto';
import { mkdtemp, readFile, rm, truncate, writeFile, mkdir } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { curl, curlLive, putBackupContents, startGateway, startLocalGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';

const BIG = 'big-backup';
const BIG_SIZE = 64 * 1024 * 1024;

describe('local mode end to end', () => {
  let dir: string;
  let gw: GatewayProcess;
  let token: string;
  let cacert: string;
  const base = (): string => `${gw.url}/v1/namespaces/velero`;
  const authed = (): string[] => ['--cacert', cacert, '-H', `Authorization: Bearer ${token}`];

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-e2e-'));
    ({ gw, cacert } = await startLocalGateway(dir, '--shutdown-grace', '10s'));
    token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
    // A large object next to the demo, for range and cut-off tests.
    await putBackupContents(join(dir, 'data'), BIG, randomBytes(BIG_SIZE));
  });

  after(async () => {
    await gw?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('first start prints the URL, the fingerprint and a curl command without the token', () => {
    const out = gw.output();
    assert.ok(out.includes(gw.url), 'URL');
    const fp = /SHA-256 fingerprint:\s+([0-9a-f]{64})/.exec(out)?.[1];
    assert.ok(fp, out);
    assert.ok(out.includes(`curl --cacert ${cacert} -H "Authorization: Bearer $(head -n1`), out);
    assert.ok(!out.includes(token), 'the token must not be printed or logged');
  });

  test('200: the demo log, byte for byte, trusted through --cacert', async () => {
    const r = await curl([...authed(), '--fail', `${base()}/backups/demo-backup/log`]);
    assert.equal(r.code, 0, r.stderr);
    const onDisk = await readFile(join(dir, 'data', 'backups', 'demo-backup', 'demo-backup-logs.gz'));
    assert.deepEqual(r.stdout, onDisk);
    assert.match(gunzipSync(r.stdout).toString(), /Backed up a total of 3 items/);
  });

  test('the printed curl command works as printed', async () => {
    const line = /curl --cacert .*\\\n\s+(\S+)/.exec(gw.output());
    assert.ok(line);
    const url = line[1]!;
    const r = await curl([...authed(), '--fail', url]);
    assert.equal(r.code, 0, r.stderr);
  });

  test('206: a byte range of a large object', async () => {
    const r = await curl([...authed(), '--fail', '-r', '1000-1999', '-D', '-', '-o', join(dir, 'range.bin'), `${base()}/backups/${BIG}/contents`]);
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stdout.toString(), /^HTTP\/1\.1 206/);
    assert.match(r.stdout.toString(), new RegExp(`content-range: bytes 1000-1999/${BIG_SIZE}`, 'i'));
    const whole = await readFile(join(dir, 'data', 'backups', BIG, `${BIG}.tar.gz`));
    assert.deepEqual(await readFile(join(dir, 'range.bin')), whole.subarray(1000, 2000));
  });

  test('a large object arrives complete (SHA-256)', async () => {
    const r = await curl([...authed(), '--fail', '-o', join(dir, 'big.bin'), `${base()}/backups/${BIG}/contents`]);
    assert.equal(r.code, 0, r.stderr);
    const sha = async (p: string): Promise<string> => createHash('sha256').update(await readFile(p)).digest('hex');
    assert.equal(await sha(join(dir, 'big.bin')), await sha(join(dir, 'data', 'backups', BIG, `${BIG}.tar.gz`)));
  });

  test('401 without a token, with a Status body', async () => {
    const r = await curl(['--cacert', cacert, '-w', '\n%{http_code}', `${base()}/backups/demo-backup/log`]);
    const [body, code] = r.stdout.toString().split('\n');
    assert.equal(code, '401');
    assert.equal((JSON.parse(body!) as { reason: string }).reason, 'Unauthorized');
  });

  test('404 for a missing backup', async () => {
    const r = await curl([...authed(), '-w', '\n%{http_code}', `${base()}/backups/no-such-backup/log`]);
    assert.equal(r.stdout.toString().split('\n').at(-1), '404');
  });

  test('TLS 1.1 is refused', async () => {
    const r = await curl(['--cacert', cacert, '--tls-max', '1.1', `${gw.url}/healthz`]);
    assert.notEqual(r.code, 0);
  });

  test('plain HTTP to an HTTPS port: a plain-text 400 saying so, then the connection closes; HTTPS unaffected', async () => {
    for (const port of [gw.port, gw.metricsPort]) {
      // The path and header are the client's; nothing of them comes back.
      const r = await curl(['-i', '-H', 'X-Probe: <script>', `http://127.0.0.1:${port}/v1/namespaces/velero/backups/demo-backup/log?<script>`]);
      assert.equal(r.code, 0, r.stderr);
      const reply = r.stdout.toString();
      assert.match(reply, /^HTTP\/1\.1 400 Bad Request\r\n/);
      assert.match(reply, /\r\nContent-Type: text\/plain; charset=utf-8\r\n/);
      assert.match(reply, /\r\nConnection: close\r\n/);
      assert.ok(reply.endsWith('\r\n\r\nThis is an HTTPS port: use https:// instead of http://.\n'), reply);
      assert.ok(!reply.includes('<script>'));
    }
    const ok = await curl(['--cacert', cacert, '--fail', `${gw.url}/healthz`]);
    assert.equal(ok.code, 0, ok.stderr);
  });

  test('health and readiness on the metrics listener, over HTTPS', async () => {
    const r = await curl(['--cacert', cacert, '--fail', `https://127.0.0.1:${gw.metricsPort}/readyz`]);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), 'ok');
  });

  test('a download the server cuts off mid-stream makes curl fail, not succeed', async () => {
    const path = join(dir, 'data', 'backups', BIG, `${BIG}.tar.gz`);
    const live = curlLive([...authed(), '--limit-rate', '4M', '-o', join(dir, 'cut.bin'), `${base()}/backups/${BIG}/contents`]);
    // Let the transfer start, then shrink the object under it: the store's length check turns the
    // short read into an error and the gateway tears the connection down.
    await new Promise((r) => setTimeout(r, 700));
    await truncate(path, 1024 * 1024);
    const r = await live.done;
    assert.ok(r.code === 18 || r.code === 56, `curl exit ${String(r.code)}: ${r.stderr}`);
    assert.ok(gw.logs.some((l) => l.msg === 'upstream failed mid-stream'));
  });

  test('no token in any log line', () => {
    assert.ok(!gw.output().includes(token));
  });
});

describe('restarts and shutdown', () => {
  test('a second start reuses the token file and the certificate', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-e2e-'));
    try {
      const args = ['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state')];
      const first = await startGateway(args);
      const fp1 = /SHA-256 fingerprint:\s+([0-9a-f]{64})/.exec(first.output())?.[1];
      const tokens1 = await readFile(join(dir, 'state', 'tokens.csv'), 'utf8');
      assert.equal(await first.stop(), 0, first.output());
      const second = await startGateway(args);
      const fp2 = /SHA-256 fingerprint:\s+([0-9a-f]{64})/.exec(second.output())?.[1];
      assert.equal(await second.stop(), 0, second.output());
      assert.ok(fp1);
      assert.equal(fp2, fp1);
      assert.equal(await readFile(join(dir, 'state', 'tokens.csv'), 'utf8'), tokens1);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });

  test('SIGTERM lets a running download finish, refuses new connections, exits 0', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-e2e-'));
    const gw = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), '--shutdown-grace', '20s']);
    try {
      const token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
      const cacert = join(dir, 'state', 'tls.crt');
      const size = 8 * 1024 * 1024;
      await mkdir(join(dir, 'data', 'backups', 'slow'), { recursive: true });
      const bytes = randomBytes(size);
      await writeFile(join(dir, 'data', 'backups', 'slow', 'slow.tar.gz'), bytes);
      const live = curlLive(['--cacert', cacert, '-H', `Authorization: Bearer ${token}`, '--fail', '--limit-rate', '4M', '-o', join(dir, 'slow.bin'), `${gw.url}/v1/namespaces/velero/backups/slow/contents`]);
      await new Promise((r) => setTimeout(r, 500));
      const exit = gw.stop('SIGTERM');
      // Once the gateway says it is draining, its listener is closed.
      for (let i = 0; i < 200 && !gw.logs.some((l) => l.msg === 'shutting down: draining in-flight downloads'); i++) await new Promise((r) => setTimeout(r, 25));
      const refused = await curl(['--cacert', cacert, '--max-time', '3', `${gw.url}/healthz`]);
      assert.equal(refused.code, 7, `a new connection must be refused: ${refused.stderr}`);
      const r = await live.done;
      assert.equal(r.code, 0, r.stderr);
      assert.deepEqual(await readFile(join(dir, 'slow.bin')), bytes);
      assert.equal(await exit, 0);
    } finally {
      await gw.stop();
      await rm(dir, { recursive: true, force: true });
    }
  });
});

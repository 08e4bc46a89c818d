/**
 * `velero-download` end to end, part 2: what lands on disk, resuming broken transfers, interruption,
 * every exit code, and the cluster-local fallback. The real gateway process behind an HTTPS proxy
 * that cuts or stalls responses on purpose.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, stat, writeFile } from 'node:fs/promises';
import type { LookupFunction } from 'node:net';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import { after, before, describe, test } from 'node:test';
import { cliFixture, closedPort, runCli, runInProcess, startCli, startGatewayProxy } from '../support/cli.ts';
import type { CliFixture, CuttingProxy } from '../support/cli.ts';
import { NS } from '../support/kube-fixture.ts';

const MiB = 1024 * 1024;

describe('velero-download: output, resume and exit codes', () => {
  let f: CliFixture;
  let proxy: CuttingProxy;
  let proxyCaFile: string;
  let contents: Buffer;

  before(async () => {
    f = await cliFixture();
    contents = f.fx.files.contents;
    ({ proxy, caFile: proxyCaFile } = await startGatewayProxy(f));
  });
  after(async () => {
    await proxy?.close();
    await f?.close();
  });

  const scratch = (): Promise<string> => mkdtemp(join(f.dir, 'out-'));
  const creates = (): number => f.api.calls.count({ resource: 'downloadrequests', verb: 'create' });
  const viaProxy = (): void => {
    f.answer = (dr) => ({ gatewayURL: f.drUrl(dr.metadata.name!, proxy.url) });
  };
  const direct = (): void => {
    f.answer = (dr) => ({ gatewayURL: f.drUrl(dr.metadata.name!) });
  };

  test('backup download saves the raw tarball as NAME-data.tar.gz, and never overwrites without --force', async () => {
    direct();
    const cwd = await scratch();
    const r = await f.cli('alice', ['backup', 'download', 'nightly'], { cwd });
    assert.equal(r.code, 0, r.stderr);
    const file = join(cwd, 'nightly-data.tar.gz');
    assert.deepEqual(await readFile(file), contents, 'saved as is, not gunzipped');
    assert.equal((await stat(file)).mode & 0o777, 0o600, 'readable by its owner only');
    assert.equal(r.stderr, '', 'no progress bar when stderr is not a terminal');
    assert.match(r.stdout.toString(), /backup "nightly" contents saved to .*nightly-data\.tar\.gz/);

    await writeFile(file, 'precious');
    const n = creates();
    const again = await f.run('alice', ['backup', 'download', 'nightly'], { cwd });
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /nightly-data\.tar\.gz already exists: pass --force to overwrite it, or -o another file/);
    assert.equal(await readFile(file, 'utf8'), 'precious');
    assert.equal(creates(), n, 'refused before asking the cluster for anything');

    const forced = await f.run('alice', ['backup', 'download', 'nightly', '--force'], { cwd });
    assert.equal(forced.code, 0, forced.stderr);
    assert.deepEqual(await readFile(file), contents);

    const piped = await f.run('alice', ['get', 'backups/nightly/contents', '-o', '-'], { cwd });
    assert.equal(piped.code, 0, piped.stderr);
    assert.deepEqual(piped.stdout, contents);
    assert.deepEqual(await readdir(cwd), ['nightly-data.tar.gz'], 'no temporary file left behind');
  });

  test('shows a progress bar with rate and ETA on a terminal', async () => {
    direct();
    const cwd = await scratch();
    const r = await f.run('alice', ['backup', 'download', 'nightly'], { cwd, tty: true });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, /\r\[=+\] 100% {2}3\.0 MiB \/ 3\.0 MiB {2}[\d.]+ [KMG]?i?B\/s {2}ETA 0s/);
    assert.ok(r.stderr.endsWith('\n'));
  });

  test('resumes with Range and If-Range after the connection is cut mid-transfer', async () => {
    viaProxy();
    const cwd = await scratch();
    const seen = proxy.requests.length;
    proxy.set({ cuts: [MiB] });
    const r = await f.cli('alice', ['backup', 'download', 'nightly', '-o', 'resumed.tgz', '--cacert', proxyCaFile], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readFile(join(cwd, 'resumed.tgz')), contents);
    const reqs = proxy.requests.slice(seen);
    assert.equal(reqs.length, 2);
    assert.equal(reqs[0]!.headers.range, undefined);
    // From the first byte the client did not get: at most what the proxy sent before cutting (bytes
    // still buffered in the client's socket when the connection closed are not counted as received).
    const from = Number(/^bytes=(\d+)-$/.exec(String(reqs[1]!.headers.range))?.[1]);
    assert.ok(from > 0 && from <= MiB, `Range: ${String(reqs[1]!.headers.range)}`);
    assert.match(String(reqs[1]!.headers['if-range']), /^(W\/)?".+"$/, 'If-Range carries the ETag');
    assert.equal(reqs[1]!.path, reqs[0]!.path);
    assert.match(r.stderr, new RegExp(`resuming the transfer at byte ${from} of ${contents.length}`));
    assert.deepEqual(await readdir(cwd), ['resumed.tgz']);

    // A gunzipped artifact resumes inside the same gzip stream.
    proxy.set({ cuts: [2000, 3000] });
    const log = await f.run('alice', ['backup', 'logs', 'nightly', '--cacert', proxyCaFile]);
    assert.equal(log.code, 0, log.stderr);
    assert.equal(log.stdout.toString(), f.logText);
    assert.equal(log.stderr.match(/resuming the transfer at byte \d+ of/g)?.length, 2, log.stderr);
    proxy.set({});
  });

  const PARTIAL = 'nightly-data.tar.gz.partial';
  const RECORD = `${PARTIAL}.json`;
  const keptNote = (total: number): RegExp => new RegExp(`the partial download is kept in \\S*${PARTIAL.replaceAll('.', '\\.')} \\((\\d+) of ${total} bytes\\): run the same command again to resume it`);

  test('a transfer that keeps breaking keeps its partial file, never under the final name, and the next run resumes it', async () => {
    viaProxy();
    const cwd = await scratch();
    proxy.set({ cuts: [512 * 1024, 0, 0, 0, 0, 0, 0] });
    const r = await f.run('alice', ['backup', 'download', 'nightly', '--cacert', proxyCaFile], { cwd });
    proxy.set({});
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /broke after \d+ of 3145728 bytes and could not be resumed \(aborted\); run the command again/);
    const kept = Number(keptNote(contents.length).exec(r.stderr)?.[1]);
    assert.ok(kept > 0 && kept <= 512 * 1024, r.stderr);
    assert.deepEqual((await readdir(cwd)).sort(), [PARTIAL, RECORD]);
    assert.deepEqual(await readFile(join(cwd, PARTIAL)), contents.subarray(0, kept));
    assert.deepEqual(f.leftoverDownloadRequests(), []);

    const seen = proxy.requests.length;
    const again = await f.run('alice', ['backup', 'download', 'nightly', '--cacert', proxyCaFile], { cwd });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, new RegExp(`resuming \\S*${PARTIAL.replaceAll('.', '\\.')} at byte ${kept} of ${contents.length}`));
    assert.equal(proxy.requests.length - seen, 1, 'one request: the rest only');
    assert.equal(proxy.requests.at(-1)!.headers.range, `bytes=${kept}-`);
    assert.deepEqual(await readFile(join(cwd, 'nightly-data.tar.gz')), contents);
    assert.deepEqual(await readdir(cwd), ['nightly-data.tar.gz']);
  });

  test('--timeout bounds the whole transfer; what arrived is kept for the next run', async () => {
    viaProxy();
    const cwd = await scratch();
    proxy.set({ stallAfter: 100 * 1024 });
    const r = await f.run('alice', ['backup', 'download', 'nightly', '--cacert', proxyCaFile, '--timeout', '1500ms'], { cwd });
    proxy.set({});
    assert.equal(r.code, 4, r.stderr);
    assert.match(r.stderr, /did not finish within --timeout 1\.5s: raise --timeout \(0 means no limit\); the partial download is kept in/);
    assert.deepEqual((await readdir(cwd)).sort(), [PARTIAL, RECORD]);
  });

  test('on a terminal, a stalled transfer shows its rate falling and "stalled" instead of a frozen line', async () => {
    viaProxy();
    const cwd = await scratch();
    proxy.set({ stallAfter: 1024 * 1024 });
    const r = await f.run('alice', ['backup', 'download', 'nightly', '--cacert', proxyCaFile, '--timeout', '5s'], { cwd, tty: true });
    proxy.set({});
    assert.equal(r.code, 4, r.stderr);
    const lines = r.stderr.split('\r').filter((l) => l.includes('1.0 MiB / 3.0 MiB'));
    assert.ok(lines.length >= 10, `redrawn while nothing arrives: ${lines.length} lines`);
    const kib = lines.map((l) => Number(/ ([\d.]+) (K|M)iB\/s/.exec(l)?.[1]) * (/ MiB\/s/.test(l) ? 1024 : 1));
    for (let i = 1; i < kib.length; i++) assert.ok(kib[i]! <= kib[i - 1]!, `the rate falls while nothing arrives: ${lines[i - 1]!} -> ${lines[i]!}`);
    assert.ok(kib.at(-1)! < kib[0]! / 2, `${lines[0]!} -> ${lines.at(-1)!}`);
    assert.match(lines.at(-1)!, /stalled [345]s/);
    assert.ok(!lines.at(-1)!.includes('ETA'));
  });

  /** Starts the real command under a stalling proxy, waits for `stall` bytes in its partial file, and interrupts it. */
  async function interrupted(cwd: string, args: string[], stall: number, partial: string): Promise<{ code: number | null; stderr: string; kept: number }> {
    proxy.set({ stallAfter: stall });
    const live = startCli(['--kubeconfig', f.kubeconfigs.alice, ...args, '--cacert', proxyCaFile], { cwd });
    let size = 0;
    for (let i = 0; i < 300 && size < stall; i++) {
      await sleep(50);
      size = (await stat(join(cwd, partial)).catch(() => undefined))?.size ?? 0;
    }
    assert.equal(size, stall, 'the partial file fills while downloading');
    assert.ok(!(await readdir(cwd)).includes(partial.replace(/\.partial$/, '')), 'never under its final name while incomplete');
    live.proc.kill('SIGINT');
    const r = await live.done;
    proxy.set({});
    f.outputs.push(r.stderr);
    return { code: r.code, stderr: r.stderr, kept: Number(/\((\d+) of \d+ bytes\)/.exec(r.stderr)?.[1]) };
  }

  test('SIGINT keeps the partial file and a record without secrets; the next run resumes; a changed object starts over', async () => {
    viaProxy();
    const cwd = await scratch();
    const stall = 256 * 1024;
    const r = await interrupted(cwd, ['backup', 'download', 'nightly'], stall, PARTIAL);
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, new RegExp(`interrupted: ${keptNote(contents.length).source}`));
    assert.equal(r.kept, stall);
    assert.deepEqual((await readdir(cwd)).sort(), [PARTIAL, RECORD]);
    assert.deepEqual(f.leftoverDownloadRequests(), []);
    for (const name of [PARTIAL, RECORD]) assert.equal((await stat(join(cwd, name))).mode & 0o777, 0o600, `${name} is readable by its owner only`);
    const recordText = await readFile(join(cwd, RECORD), 'utf8');
    const record = JSON.parse(recordText) as Record<string, unknown>;
    assert.deepEqual(record.source, { server: f.api.url, route: '/v1/namespaces/velero/backups/nightly/contents' });
    assert.equal(record.total, contents.length);
    assert.equal(record.bytes, stall);
    assert.match(String(record.validator), /^"/);
    for (const t of f.secrets()) assert.ok(!recordText.includes(t), 'a token in the record');
    assert.ok(!/downloadrequests|\?|X-Amz|signature/i.test(recordText), `no DownloadRequest or signed URL in the record: ${recordText}`);

    const seen = proxy.requests.length;
    const again = await f.cli('alice', ['backup', 'download', 'nightly', '--cacert', proxyCaFile], { cwd });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, new RegExp(`resuming \\S*${PARTIAL.replaceAll('.', '\\.')} at byte ${stall} of ${contents.length}`));
    const resumed = proxy.requests.slice(seen);
    assert.equal(resumed.length, 1);
    assert.equal(resumed[0]!.headers.range, `bytes=${stall}-`);
    assert.equal(resumed[0]!.headers['if-range'], record.validator);
    assert.deepEqual(await readFile(join(cwd, 'nightly-data.tar.gz')), contents);
    assert.deepEqual(await readdir(cwd), ['nightly-data.tar.gz']);

    // The object changes between the runs: the gateway answers the If-Range with all of the new one.
    const out = 'changed.tgz';
    const second = await interrupted(cwd, ['backup', 'download', 'nightly', '-o', out], stall, `${out}.partial`);
    assert.equal(second.code, 130, second.stderr);
    const stored = join(f.fx.fsRoot, 'bsl-bucket', 'cluster-a', 'backups', 'nightly', 'nightly.tar.gz');
    const changed = Buffer.from(contents).reverse();
    await writeFile(stored, changed);
    try {
      const fresh = await f.run('alice', ['backup', 'download', 'nightly', '-o', out, '--cacert', proxyCaFile], { cwd });
      assert.equal(fresh.code, 0, fresh.stderr);
      assert.match(fresh.stderr, /sent the whole backup "nightly" contents again instead of the rest: it changed since \S*changed\.tgz\.partial was written; starting over/);
      assert.deepEqual(await readFile(join(cwd, out)), changed);
      assert.deepEqual((await readdir(cwd)).sort(), [out, 'nightly-data.tar.gz']);
    } finally {
      await writeFile(stored, contents);
    }
  });

  test('an interrupted gzip artifact resumes in its stored form and is gunzipped once complete', async () => {
    viaProxy();
    const cwd = await scratch();
    const r = await interrupted(cwd, ['backup', 'logs', 'nightly', '-o', 'nightly.log'], 2000, 'nightly.log.partial');
    assert.equal(r.code, 130, r.stderr);
    assert.equal(r.kept, 2000);
    const again = await f.run('alice', ['backup', 'logs', 'nightly', '-o', 'nightly.log', '--cacert', proxyCaFile], { cwd });
    assert.equal(again.code, 0, again.stderr);
    assert.match(again.stderr, /resuming \S*nightly\.log\.partial at byte 2000 of/);
    assert.equal(await readFile(join(cwd, 'nightly.log'), 'utf8'), f.logText);
    assert.deepEqual(await readdir(cwd), ['nightly.log']);
  });

  test('a forged or damaged record next to the output never puts foreign bytes into it: the download starts over', async () => {
    direct();
    const cwd = await scratch();
    const source = { server: f.api.url, route: '/v1/namespaces/velero/backups/nightly/contents' };
    const garbage = Buffer.alloc(4096, 0x41);
    // The right source, a validator the server never issued: the gateway sends the whole object.
    await writeFile(join(cwd, PARTIAL), garbage);
    await writeFile(join(cwd, RECORD), JSON.stringify({ version: 1, source, validator: '"forged"', total: contents.length, bytes: garbage.length }));
    const forged = await f.run('alice', ['backup', 'download', 'nightly'], { cwd });
    assert.equal(forged.code, 0, forged.stderr);
    assert.match(forged.stderr, /sent the whole backup "nightly" contents again instead of the rest: it changed since .* starting over/);
    assert.deepEqual(await readFile(join(cwd, 'nightly-data.tar.gz')), contents);
    assert.deepEqual(await readdir(cwd), ['nightly-data.tar.gz']);

    // A record claiming more bytes than the file holds: not even asked for.
    const out = 'claims.tgz';
    await writeFile(join(cwd, `${out}.partial`), garbage);
    await writeFile(join(cwd, `${out}.partial.json`), JSON.stringify({ version: 1, source, validator: '"x"', total: contents.length, bytes: garbage.length + 1 }));
    const claims = await f.run('alice', ['backup', 'download', 'nightly', '-o', out], { cwd });
    assert.equal(claims.code, 0, claims.stderr);
    assert.match(claims.stderr, /ignoring \S*claims\.tgz\.partial \(its record counts more bytes than it holds\): starting over/);
    assert.deepEqual(await readFile(join(cwd, out)), contents);
    assert.deepEqual((await readdir(cwd)).sort(), [out, 'nightly-data.tar.gz']);
  });

  test('an interrupted download to stdout says it cannot be resumed', async () => {
    viaProxy();
    proxy.set({ stallAfter: 64 * 1024 });
    const sentBefore = proxy.sent;
    const live = startCli(['--kubeconfig', f.kubeconfigs.alice, 'backup', 'download', 'nightly', '-o', '-', '--cacert', proxyCaFile]);
    for (let i = 0; i < 300 && proxy.sent - sentBefore < 64 * 1024; i++) await sleep(20);
    live.proc.kill('SIGINT');
    const r = await live.done;
    proxy.set({});
    assert.equal(r.code, 130, r.stderr);
    assert.match(r.stderr, /interrupted: a download to stdout cannot be resumed: run the command again \(with -o FILE, an interrupted download is kept and resumes\)/);
  });

  test('a damaged gzip artifact is reported and not saved', async () => {
    direct();
    const cwd = await scratch();
    // The fixture's restore log is random bytes, not gzip.
    const r = await f.run('alice', ['restore', 'logs', 'nightly-restore', '-o', 'restore.log'], { cwd });
    assert.equal(r.code, 1, r.stderr);
    assert.match(r.stderr, /the log of restore "nightly-restore" is not valid gzip/);
    assert.deepEqual(await readdir(cwd), []);
  });

  test('exit 1: the backup or the artifact does not exist', async () => {
    direct();
    const n = creates();
    const missing = await f.run('alice', ['backup', 'logs', 'no-such-backup']);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /backup "no-such-backup" not found in namespace "velero" \(pass -n NAMESPACE/);
    assert.equal(creates(), n, 'no DownloadRequest for a backup that does not exist');
    const noFile = await f.run('alice', ['backup', 'volume-info', 'nightly']);
    assert.equal(noFile.code, 1, noFile.stderr);
    assert.match(noFile.stderr, /backup "nightly" volumeinfos not found/);
  });

  test('exit 2: usage errors', async () => {
    // One from the process (exit status and stderr as a shell sees them), the rest in this process.
    const flag = await runCli(['backup', 'logs', 'nightly', '--bogus']);
    const [noName, artifact, both] = await Promise.all([
      runInProcess(['backup', 'logs']),
      runInProcess(['get', 'backups/nightly/secrets']),
      runInProcess(['backup', 'logs', 'nightly', '--insecure-skip-tls-verify', '--cacert', 'x.pem']),
    ]);
    for (const r of [flag, noName, artifact, both]) {
      assert.equal(r.code, 2, r.stderr);
      assert.match(r.stderr, /Run "velero-download --help" for usage/);
      assert.equal(r.stdout.length, 0);
    }
    assert.match(flag.stderr, /^velero-download: Unknown option '--bogus'/);
    assert.match(artifact.stderr, /backups have no artifact "secrets"; choose one of log, contents/);
    assert.match(both.stderr, /cannot be combined/);
    const help = await runInProcess(['--help']);
    assert.equal(help.code, 0);
    assert.match(help.stdout.toString(), /^Usage: velero-download COMMAND NAME/);
  });

  test('exit 3: the gateway forbids, the API server rejects the token', async () => {
    direct();
    const [bob, bad] = await Promise.all([
      f.run('bob', ['backup', 'download', 'nightly', '-o', '-', '--cacert', f.gatewayCertFile]),
      f.run('badToken', ['backup', 'logs', 'nightly']),
    ]);
    assert.equal(bob.code, 3, bob.stderr);
    assert.match(bob.stderr, /bob.*: ask your cluster admin for "get" on backups\/contents named "nightly" and on downloadrequests/);
    assert.equal(bob.stdout.length, 0);
    assert.equal(bad.code, 3, bad.stderr);
    assert.match(bad.stderr, /did not accept your credentials while reading backups\.velero\.io "nightly": log in again/);
  });

  test('exit 4: nothing answers, or the gateway and the API server cannot be reached', async () => {
    const port = await closedPort();
    f.answer = (dr) => ({ gatewayURL: f.drUrl(dr.metadata.name!, `https://127.0.0.1:${port}`) });
    const down = await f.run('alice', ['backup', 'logs', 'nightly']);
    assert.equal(down.code, 4, down.stderr);
    assert.match(down.stderr, new RegExp(`the download server at https://127\\.0\\.0\\.1:${port}: .*ECONNREFUSED.*: check that the download server is running`));

    f.answer = () => ({});
    const silent = await f.run('alice', ['backup', 'logs', 'nightly', '--wait-timeout', '300ms']);
    assert.equal(silent.code, 4, silent.stderr);
    assert.match(silent.stderr, /no download URL appeared on DownloadRequest "nightly-[0-9a-f]{8}" .* within --wait-timeout 0\.3s: is Velero running/);

    f.answer = () => ({ downloadURL: 'https://store.example/x' });
    const noGateway = await f.run('alice', ['--velero-server-url', 'backup', 'logs', 'nightly', '--wait-timeout', '300ms']);
    assert.equal(noGateway.code, 4, noGateway.stderr);
    assert.match(noGateway.stderr, /no download server URL \(annotation download-server\.velero\.io\/url\) appeared/);
    assert.deepEqual(f.leftoverDownloadRequests(), []);

    const doc = f.api.kubeconfig(f.fx.tokens.alice);
    doc.clusters[0]!.cluster.server = `https://127.0.0.1:${port}`;
    const kubeconfig = await f.api.writeKubeconfig(join(f.dir, 'nowhere.kubeconfig'), doc);
    const noApi = await f.run(kubeconfig, ['backup', 'logs', 'nightly']);
    assert.equal(noApi.code, 4, noApi.stderr);
    assert.match(noApi.stderr, new RegExp(`cannot reach the Kubernetes API server at https://127\\.0\\.0\\.1:${port} .*ECONNREFUSED.*check --kubeconfig and --context`));
  });

  test('inside the cluster, falls back to the Service\'s cluster-local name', async () => {
    f.answer = (dr) => ({ gatewayURL: f.drUrl(dr.metadata.name!, `https://gateway.example.invalid:${f.gw.port}`) });
    f.api.put({
      apiVersion: 'v1',
      kind: 'Service',
      metadata: { name: 'velero-download-server', namespace: NS },
      spec: { type: 'ClusterIP', ports: [{ name: 'https', port: f.gw.port, targetPort: 8443 }] },
    });
    const resolved: string[] = [];
    // The pod's resolver: the Service's name resolves, the public name does not.
    const lookup = ((host: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void) => {
      resolved.push(host);
      if (host !== `velero-download-server.${NS}.svc`) return void cb(Object.assign(new Error(`getaddrinfo ENOTFOUND ${host}`), { code: 'ENOTFOUND' }));
      if (opts.all) cb(null, [{ address: '127.0.0.1', family: 4 }]);
      else cb(null, '127.0.0.1', 4);
    }) as unknown as LookupFunction;
    const r = await f.run('alice', ['backup', 'logs', 'nightly'], { env: { KUBERNETES_SERVICE_HOST: '10.96.0.1' }, lookup });
    f.api.remove('v1', 'Service', 'velero-download-server', NS);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), f.logText);
    assert.match(r.stderr, new RegExp(`ENOTFOUND gateway\\.example\\.invalid; trying the cluster-local name https://velero-download-server\\.${NS}\\.svc:${f.gw.port}`));
    assert.deepEqual(resolved, ['gateway.example.invalid', `velero-download-server.${NS}.svc`]);
  });

  test('a host name the certificate does not cover is accepted through the Secret\'s fingerprint annotation', async () => {
    direct();
    f.answer = (dr) => ({ gatewayURL: f.drUrl(dr.metadata.name!, `https://gateway.example.test:${f.gw.port}`) });
    const lookup = ((_host: string, opts: { all?: boolean }, cb: (...args: unknown[]) => void) =>
      opts.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)) as unknown as LookupFunction;
    const [alice, dave] = await Promise.all([f.run('alice', ['backup', 'logs', 'nightly'], { lookup }), f.run('dave', ['backup', 'logs', 'nightly'], { lookup })]);
    assert.equal(alice.code, 0, alice.stderr);
    assert.equal(alice.stdout.toString(), f.logText);
    // dave may not read the Secret: neither its CA nor its fingerprint, so nothing vouches for the name.
    assert.equal(dave.code, 4, dave.stderr);
    assert.match(dave.stderr, /not trusted/);
  });

  test('no token ever appears in the command output or the gateway log', () => {
    const all = f.outputs.join('\n');
    for (const t of f.secrets()) {
      assert.ok(!all.includes(t), 'a token leaked into the command output');
      assert.ok(!f.gw.output().includes(t), 'a token leaked into the gateway log');
    }
  });
});

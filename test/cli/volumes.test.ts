/**
 * `velero-download backup volumes|ls|files|archive`: the client's side of volume data. The real
 * command (in this process, as the other client tests run their matrices) against a test double of
 * the download server's volume API over HTTPS, and the Kubernetes API test double for the token and
 * the DownloadRequest that tells the client where the download server is. Checked: the exact URLs
 * (every segment percent-encoded), pagination and its bound, what lands on disk (and that a broken
 * archive leaves nothing), errors with the server's Status message and the commands' exit codes, and
 * names from the backup printed so they cannot drive the terminal.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import tar from 'tar-stream';
import { printable, volumePath } from '../../src/cli/args.ts';
import type { VolumeCommand } from '../../src/cli/args.ts';
import { CliError } from '../../src/cli/errors.ts';
import { openSource } from '../../src/cli/transfer.ts';
import { MAX_PAGES, listDirectory, readJson, volumeUrl } from '../../src/cli/volumes.ts';
import { user } from '../support/kube-apiserver/index.ts';
import { answerDownloadRequests, runInProcess } from '../support/cli.ts';
import type { CliResult, DownloadRequestAnswer } from '../support/cli.ts';
import { BACKUP, NS, kubeFixture } from '../support/kube-fixture.ts';
import type { KubeFixture } from '../support/kube-fixture.ts';
import { createTestPki } from '../support/test-ca.ts';
import { startVolumeApiDouble } from '../support/volume-api-double.ts';
import type { Node, VolumeApiDouble } from '../support/volume-api-double.ts';

const VOLUME = 'team-a:web-0:data';
const VOLUME_URL = `/v1/namespaces/${NS}/backups/${BACKUP}/volumes/team-a%3Aweb-0%3Adata`;
const ODD = 'a?b#c%d e ü.txt';
const EVIL = 'evil\x1b[2J\n\u202etxt.exe';
/** A pod name as a tenant could write it into a PodVolumeBackup: a title-setting escape, a C1 CSI, a bidi override. */
const HOSTILE_POD = 'x\x1b]0;pwned\x07\u009b31m\u202e';
/** Characters a terminal acts on, or shows as something else. */
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const TERMINAL_ACTIVE = /[\u0000-\u0009\u000b-\u001f\u007f-\u009f\u202a-\u202e\u2066-\u2069]/;
const file = (data: string | Buffer, mode?: number): Node => ({ type: 'file', data: Buffer.from(data), ...(mode !== undefined && { mode }) });
const dir = (entries: Record<string, Node>): Node => ({ type: 'dir', entries });

/** Reads a tar into name → {type, mode, linkname, data}. */
async function untar(bytes: Buffer): Promise<Map<string, { type: string; mode: number; linkname?: string; data: Buffer }>> {
  const out = new Map<string, { type: string; mode: number; linkname?: string; data: Buffer }>();
  const extract = tar.extract();
  const done = new Promise<void>((ok, fail) => extract.on('finish', ok).on('error', fail));
  extract.on('entry', (h, stream, next) => {
    const chunks: Buffer[] = [];
    stream.on('data', (c: unknown) => void chunks.push(c as Buffer));
    stream.on('end', () => {
      out.set(h.name, { type: h.type ?? 'file', mode: h.mode ?? 0, ...(h.linkname && { linkname: h.linkname }), data: Buffer.concat(chunks) });
      next();
    });
  });
  extract.end(bytes);
  await done;
  return out;
}

describe('velero-download: volume data', () => {
  let fx: KubeFixture;
  let api: VolumeApiDouble;
  let dirTmp: string;
  let caFile: string;
  let kubeconfig: { alice: string; bob: string };
  let answer: (name: string) => DownloadRequestAnswer = () => ({});
  let stopAnswering: () => void;
  const big = randomBytes(3 * 1024 * 1024 + 17);
  const outputs: string[] = [];

  before(async () => {
    fx = await kubeFixture({ authorizeCallers: true });
    const useDownloadRequests = { apiGroups: ['velero.io'], resources: ['downloadrequests'], verbs: ['create', 'get', 'delete'] };
    fx.api.rbac.grant([user('alice'), user('bob')], [useDownloadRequests, { apiGroups: ['velero.io'], resources: ['backups'], verbs: ['get'] }], NS);
    dirTmp = await mkdtemp(join(tmpdir(), 'vds-cli-volumes-'));
    const pki = await createTestPki('volume API double CA');
    caFile = join(dirTmp, 'ca.crt');
    await writeFile(caFile, pki.caCert);
    const many = Object.fromEntries(Array.from({ length: 2500 }, (_, i) => [`f${String(i).padStart(4, '0')}`, file(String(i))]));
    api = await startVolumeApiDouble({
      pki,
      token: fx.tokens.alice,
      forbiddenToken: fx.tokens.bob,
      namespace: NS,
      backup: BACKUP,
      volumes: [
        { id: VOLUME, kind: 'PodVolumeBackup', namespace: 'team-a', pod: 'web-0', volume: 'data', uploader: 'kopia', snapshotID: 'k0123456789abcdef', size: 3145745, phase: 'Completed' },
        { id: 'team-a:db-pvc', kind: 'DataUpload', namespace: 'team-a', pvc: 'db-pvc', uploader: 'kopia', snapshotID: 'kfedcba', size: 1024 },
        { id: 'team-a:x:y', kind: 'PodVolumeBackup', namespace: 'team-a', pod: HOSTILE_POD, volume: 'y', uploader: 'restic', snapshotID: '' },
      ],
      trees: {
        [VOLUME]: dir({
          'big.bin': file(big, 0o600),
          'dir with space': dir({ [ODD]: file('odd name\n') }),
          conf: dir({ 'app.yaml': file('a: 1\n'), run: dir({ 'start.sh': file('#!/bin/sh\n', 0o755) }), current: { type: 'symlink', target: 'app.yaml' } }),
          escape: { type: 'symlink', target: '../../etc/passwd' },
          many: dir(many),
          [EVIL]: file('x'),
        }),
      },
    });
    kubeconfig = {
      alice: await fx.api.writeKubeconfig(join(dirTmp, 'alice.kubeconfig'), fx.api.kubeconfig(fx.tokens.alice)),
      bob: await fx.api.writeKubeconfig(join(dirTmp, 'bob.kubeconfig'), fx.api.kubeconfig(fx.tokens.bob)),
    };
    stopAnswering = answerDownloadRequests(fx.api, NS, (dr) => answer(dr.metadata.name!));
  });
  after(async () => {
    stopAnswering?.();
    await api?.close();
    await fx?.close();
    await rm(dirTmp, { recursive: true, force: true });
  });

  const scratch = (): Promise<string> => mkdtemp(join(dirTmp, 'out-'));
  /** The command as alice (or `who`), with the double as the download server unless `discover`. */
  const cli = async (args: string[], opts: { cwd?: string; who?: 'alice' | 'bob'; discover?: boolean } = {}): Promise<CliResult> => {
    const r = await runInProcess(
      ['--kubeconfig', kubeconfig[opts.who ?? 'alice'], ...args, '--cacert', caFile, ...(opts.discover ? [] : [`--velero-server-url=${api.url}`])],
      { ...(opts.cwd && { cwd: opts.cwd }) },
    );
    outputs.push(r.stdout.toString('latin1'), r.stderr);
    return r;
  };
  const since = (n: number): string[] => api.requests.slice(n).map((r) => r.url);

  test('backup volumes: a table of the volumes, or the server\'s JSON with -o json', async () => {
    const n = api.requests.length;
    const table = await cli(['backup', 'volumes', BACKUP]);
    assert.equal(table.code, 0, table.stderr);
    assert.deepEqual(since(n), [`/v1/namespaces/${NS}/backups/${BACKUP}/volumes`]);
    assert.equal(api.requests.at(-1)!.headers.authorization, `Bearer ${fx.tokens.alice}`);
    const lines = table.stdout.toString().split('\n');
    assert.match(lines[0]!, /^ID +KIND +NAMESPACE +POD\/VOLUME OR PVC +UPLOADER +SIZE +SNAPSHOT$/);
    assert.match(lines[1]!, /^team-a:web-0:data +PodVolumeBackup +team-a +web-0\/data +kopia +3145745 +k0123456789abcdef$/);
    assert.match(lines[2]!, /^team-a:db-pvc +DataUpload +team-a +db-pvc +kopia +1024 +kfedcba$/);
    // A pod name with an escape sequence (a tenant can write PodVolumeBackups) is printed inert.
    assert.ok(lines[3]!.includes('x\\x1b]0;pwned\\x07\\x9b31m\\u{202e}/y'), lines[3]);
    assert.doesNotMatch(table.stdout.toString(), TERMINAL_ACTIVE, 'no control or bidi character reaches the terminal');

    const json = await cli(['backup', 'volumes', BACKUP, '-o', 'json']);
    assert.equal(json.code, 0, json.stderr);
    const doc = JSON.parse(json.stdout.toString()) as { kind: string; volumes: { id: string; pod?: string }[] };
    assert.equal(doc.kind, 'BackupVolumeList');
    assert.deepEqual(doc.volumes.map((v) => v.id), [VOLUME, 'team-a:db-pvc', 'team-a:x:y']);
    assert.equal(doc.volumes[2]!.pod, HOSTILE_POD, 'JSON keeps the value exactly');
    assert.doesNotMatch(json.stdout.toString(), TERMINAL_ACTIVE, 'written as \\u escapes');
  });

  test('backup ls: the root, a directory with spaces, symlinks with their targets, hostile names escaped', async () => {
    const n = api.requests.length;
    const root = await cli(['backup', 'ls', BACKUP, VOLUME]);
    assert.equal(root.code, 0, root.stderr);
    const out = root.stdout.toString();
    const rows = out.trimEnd().split('\n');
    assert.match(rows[0]!, /^TYPE +MODE +SIZE +MTIME +NAME$/);
    assert.match(out, /\nfile +0600 +3145745 +2026-11-30T12:00:00\.000Z +big\.bin\n/);
    assert.match(out, /\ndir +0755 +0 +\S+ +conf\/\n/);
    assert.match(out, /\nsymlink +0777 +0 +\S+ +escape -> \.\.\/\.\.\/etc\/passwd\n/);
    assert.ok(out.includes('evil\\x1b[2J\\x0a\\u{202e}txt.exe'), out);
    assert.ok(!out.includes('\x1b') && !out.includes('\u202e'), 'no control or bidi character reaches the terminal');
    assert.equal(rows.length, 7, 'a header and six entries: a name with a newline stays on its line');

    const spaced = await cli(['backup', 'ls', BACKUP, VOLUME, '/dir with space']);
    assert.equal(spaced.code, 0, spaced.stderr);
    assert.match(spaced.stdout.toString(), /\nfile +0644 +9 +\S+ +a\?b#c%d e ü\.txt\n$/);
    const link = await cli(['backup', 'ls', BACKUP, VOLUME, 'conf/current']);
    assert.equal(link.code, 0, link.stderr);
    assert.match(link.stdout.toString(), /\nsymlink +0777 +- +\S+ +current -> app\.yaml\n$/);
    assert.deepEqual(since(n), [`${VOLUME_URL}/files/`, `${VOLUME_URL}/files/dir%20with%20space/`, `${VOLUME_URL}/files/conf/current/`]);
  });

  test('backup ls follows continue tokens to the end, encoded exactly; -o json is one document of every page', async () => {
    const n = api.requests.length;
    const r = await cli(['backup', 'ls', BACKUP, VOLUME, 'many']);
    assert.equal(r.code, 0, r.stderr);
    const token = (k: number): string => encodeURIComponent(`${k} +/=&?#%ü`);
    assert.deepEqual(since(n), [`${VOLUME_URL}/files/many/`, `${VOLUME_URL}/files/many/?continue=${token(1000)}`, `${VOLUME_URL}/files/many/?continue=${token(2000)}`]);
    const names = r.stdout.toString().trimEnd().split('\n').slice(1).map((l) => l.split(/ +/).at(-1));
    assert.deepEqual(names, Array.from({ length: 2500 }, (_, i) => `f${String(i).padStart(4, '0')}`));

    const json = await cli(['backup', 'ls', BACKUP, VOLUME, 'many', '-o', 'json']);
    assert.equal(json.code, 0, json.stderr);
    const doc = JSON.parse(json.stdout.toString()) as { kind: string; path: string; entries: { name: string; type: string; size: number }[]; continue?: string };
    assert.equal(doc.kind, 'Directory');
    assert.equal(doc.path, 'many/');
    assert.equal(doc.entries.length, 2500);
    assert.deepEqual(doc.entries[2499], { name: 'f2499', type: 'file', size: 4, mode: '0644', mtime: '2026-11-30T12:00:00.000Z' });
    assert.equal(doc.continue, undefined);

    const root = await cli(['backup', 'ls', BACKUP, VOLUME, '-o', 'json']);
    assert.equal(root.code, 0, root.stderr);
    assert.ok((JSON.parse(root.stdout.toString()) as typeof doc).entries.some((e) => e.name === EVIL));
    assert.doesNotMatch(root.stdout.toString(), TERMINAL_ACTIVE);
  });

  test('a JSON answer is read up to a bound, never parsed truncated', async () => {
    const res = await openSource(
      { kind: 'gateway', label: 'the double', url: new URL(`${api.url}/v1/namespaces/${NS}/backups/${BACKUP}/volumes`), headers: { Authorization: `Bearer ${fx.tokens.alice}` }, trust: { ca: [await readFile(caFile, 'utf8')], chain: true, pins: [], insecure: false } },
      { signal: AbortSignal.timeout(10_000), timeoutMs: 5000 },
    );
    await assert.rejects(readJson(res, 'the volume list', 100), (err: unknown) => err instanceof CliError && /the volume list is larger than 100 bytes: not read/.test(err.message));
  });

  // The command's bound is MAX_PAGES (1000 connections, seconds of handshakes here): the same code
  // with a bound of 5 proves it, against the same double.
  test('a listing that never ends is stopped after the bound of pages, with an error', async () => {
    assert.equal(MAX_PAGES, 1000);
    api.set({ endlessContinue: true });
    const n = api.requests.length;
    const trust = { ca: [await readFile(caFile, 'utf8')], chain: true, pins: [], insecure: false };
    const cmd: VolumeCommand = { action: 'ls', volume: VOLUME, path: ['conf'], json: false, gzip: false };
    const open = (t: string | undefined) =>
      openSource({ kind: 'gateway', label: 'the double', url: volumeUrl(new URL(api.url), NS, BACKUP, cmd, t), headers: { Authorization: `Bearer ${fx.tokens.alice}` }, trust }, { signal: AbortSignal.timeout(10_000), timeoutMs: 5000 });
    let printed = '';
    await assert.rejects(
      listDirectory(open, false, async (s) => void (printed += s), 5),
      (err: unknown) => err instanceof CliError && err.exitCode === 1 && /the listing did not end after 5 pages/.test(err.message),
    );
    api.set({});
    assert.equal(api.requests.length - n, 5);
    assert.match(printed, /^TYPE +MODE +SIZE +MTIME +NAME\n(.*\n){3}$/, 'the first page printed as it came, once');
  });

  test('backup files saves one file under its own name (not the server\'s Content-Disposition); any name round-trips through the URL', async () => {
    const cwd = await scratch();
    const n = api.requests.length;
    const r = await cli(['backup', 'files', BACKUP, VOLUME, `dir with space/${ODD}`], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(since(n), [`${VOLUME_URL}/files/dir%20with%20space/a%3Fb%23c%25d%20e%20%C3%BC.txt`]);
    assert.equal(await readFile(join(cwd, ODD), 'utf8'), 'odd name\n');
    assert.equal((await stat(join(cwd, ODD))).mode & 0o777, 0o600, 'readable by its owner only, whatever the mode in the backup');
    assert.match(r.stdout.toString(), /"team-a:web-0:data:\/dir with space\/a\?b#c%d e ü\.txt" saved to .*a\?b#c%d e ü\.txt\n$/);
    assert.deepEqual(await readdir(cwd), [ODD]);

    const piped = await cli(['backup', 'files', BACKUP, VOLUME, '/conf/run/start.sh', '-o', '-']);
    assert.equal(piped.code, 0, piped.stderr);
    assert.equal(piped.stdout.toString(), '#!/bin/sh\n');
  });

  test('backup files resumes a cut transfer with Range and If-Range, and never overwrites without --force', async () => {
    const cwd = await scratch();
    api.set({ cutAfter: 1024 * 1024 });
    const n = api.requests.length;
    const r = await cli(['backup', 'files', BACKUP, VOLUME, 'big.bin'], { cwd });
    api.set({});
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(await readFile(join(cwd, 'big.bin')), big);
    const reqs = api.requests.slice(n);
    assert.equal(reqs.length, 2);
    const from = Number(/^bytes=(\d+)-$/.exec(String(reqs[1]!.headers.range))?.[1]);
    assert.ok(from > 0 && from <= 1024 * 1024, String(reqs[1]!.headers.range));
    assert.equal(reqs[1]!.headers['if-range'], `"obj-${VOLUME}-7-${big.length}"`);
    assert.match(r.stderr, new RegExp(`resuming the transfer at byte ${from} of ${big.length}`));

    await writeFile(join(cwd, 'big.bin'), 'precious');
    const m = api.requests.length;
    const again = await cli(['backup', 'files', BACKUP, VOLUME, 'big.bin'], { cwd });
    assert.equal(again.code, 2, again.stderr);
    assert.match(again.stderr, /big\.bin already exists: pass --force to overwrite it/);
    assert.equal(api.requests.length, m, 'refused before any request');
    assert.equal(await readFile(join(cwd, 'big.bin'), 'utf8'), 'precious');
    const forced = await cli(['backup', 'files', BACKUP, VOLUME, 'big.bin', '--force'], { cwd });
    assert.equal(forced.code, 0, forced.stderr);
    assert.deepEqual(await readFile(join(cwd, 'big.bin')), big);
    assert.deepEqual(await readdir(cwd), ['big.bin']);
  });

  test('backup files continues the partial file an earlier run left, asking for the rest of that route', async () => {
    const cwd = await scratch();
    const route = `/v1/namespaces/${NS}/backups/${BACKUP}/volumes/${encodeURIComponent(VOLUME)}/files/big.bin`;
    await writeFile(join(cwd, 'big.bin.partial'), big.subarray(0, 1000));
    await writeFile(join(cwd, 'big.bin.partial.json'), JSON.stringify({ version: 1, source: { server: api.url, route }, validator: `"obj-${VOLUME}-7-${big.length}"`, total: big.length, bytes: 1000 }));
    const n = api.requests.length;
    const r = await cli(['backup', 'files', BACKUP, VOLUME, 'big.bin'], { cwd });
    assert.equal(r.code, 0, r.stderr);
    assert.match(r.stderr, new RegExp(`resuming \\S*big\\.bin\\.partial at byte 1000 of ${big.length}`));
    assert.deepEqual(since(n), [route]);
    assert.equal(api.requests.at(-1)!.headers.range, 'bytes=1000-');
    assert.deepEqual(await readFile(join(cwd, 'big.bin')), big);
    assert.deepEqual(await readdir(cwd), ['big.bin']);
  });

  test('backup files on a directory or a symlink says to use ls or archive, and saves nothing', async () => {
    const cwd = await scratch();
    const [directory, link] = [await cli(['backup', 'files', BACKUP, VOLUME, 'conf'], { cwd }), await cli(['backup', 'files', BACKUP, VOLUME, 'escape'], { cwd })];
    assert.equal(directory.code, 1, directory.stderr);
    assert.match(directory.stderr, /"team-a:web-0:data:\/conf" is a directory: use backup ls to list it, or backup archive to download it/);
    assert.equal(link.code, 1, link.stderr);
    assert.match(link.stderr, /"team-a:web-0:data:\/escape" is a symbolic link: use backup ls/);
    assert.deepEqual(await readdir(cwd), []);
  });

  test('backup archive saves VOLUME-DIR.tar (--gzip: .tar.gz) with modes and symlinks', async () => {
    const cwd = await scratch();
    const n = api.requests.length;
    const plain = await cli(['backup', 'archive', BACKUP, VOLUME, 'conf'], { cwd });
    assert.equal(plain.code, 0, plain.stderr);
    const gz = await cli(['backup', 'archive', BACKUP, VOLUME, 'conf', '--gzip'], { cwd });
    assert.equal(gz.code, 0, gz.stderr);
    assert.deepEqual(since(n), [`${VOLUME_URL}/archive/conf`, `${VOLUME_URL}/archive/conf?format=tar.gz`]);
    assert.deepEqual((await readdir(cwd)).sort(), ['team-a_web-0_data-conf.tar', 'team-a_web-0_data-conf.tar.gz']);
    const tarBytes = await readFile(join(cwd, 'team-a_web-0_data-conf.tar'));
    assert.deepEqual(gunzipSync(await readFile(join(cwd, 'team-a_web-0_data-conf.tar.gz'))), tarBytes);
    const entries = await untar(tarBytes);
    assert.deepEqual([...entries.keys()], ['conf/', 'conf/app.yaml', 'conf/current', 'conf/run/', 'conf/run/start.sh']);
    assert.equal(entries.get('conf/current')!.linkname, 'app.yaml');
    assert.equal(entries.get('conf/run/start.sh')!.mode, 0o755);
    assert.equal(entries.get('conf/app.yaml')!.data.toString(), 'a: 1\n');
    assert.match(plain.stdout.toString(), /the archive of "team-a:web-0:data:\/conf" saved to .*team-a_web-0_data-conf\.tar\n$/);

    const whole = await cli(['backup', 'archive', BACKUP, VOLUME, '-o', '-']);
    assert.equal(whole.code, 0, whole.stderr);
    assert.equal((await untar(whole.stdout)).get('big.bin')?.data.length, big.length);
    assert.equal(api.requests.at(-1)!.url, `${VOLUME_URL}/archive/`);
  });

  test('a broken archive leaves no file, whole-looking or partial', async () => {
    const cases: [string, Parameters<VolumeApiDouble['set']>[0], string[], RegExp][] = [
      ['cut mid-stream', { cutArchivesAfter: 200 * 1024 }, [], /broke after \d+ bytes .*(does not support resuming it|could not be resumed).*; run the command again/],
      ['ended cleanly, short', { endAfter: 300 * 1024 }, [], /is incomplete \(it does not end with the end-of-archive blocks\): nothing was saved/],
      ['gzip ended cleanly, short', { endAfter: 100 * 1024 }, ['--gzip'], /is incomplete \(not valid gzip: unexpected end of file\): nothing was saved/],
      ['gzip cut', { cutArchivesAfter: 1000 }, ['--gzip'], /broke after \d+ bytes/],
    ];
    for (const [what, fault, flags, message] of cases) {
      const cwd = await scratch();
      api.set(fault);
      const r = await cli(['backup', 'archive', BACKUP, VOLUME, ...flags], { cwd });
      api.set({});
      assert.equal(r.code, 4, `${what}: ${r.stderr}`);
      assert.match(r.stderr, message, what);
      assert.deepEqual(await readdir(cwd), [], `${what}: nothing in the directory`);
    }
  });

  test('errors: the server\'s Status message and the exit codes of the other commands', async () => {
    const n = api.requests.length;
    const missing = await cli(['backup', 'ls', BACKUP, 'team-a:nope:x']);
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /backup "nightly" volumedata not found \(backup "nightly" has no volume "team-a:nope:x"\)/);
    assert.deepEqual(since(n), [`${VOLUME_URL.replace('team-a%3Aweb-0%3Adata', 'team-a%3Anope%3Ax')}/files/`]);
    const noPath = await cli(['backup', 'files', BACKUP, VOLUME, 'conf/missing.yaml']);
    assert.equal(noPath.code, 1, noPath.stderr);
    assert.match(noPath.stderr, /\("conf\/missing\.yaml" not found in volume "team-a:web-0:data" of backup "nightly"\)/);

    const bob = await cli(['backup', 'volumes', BACKUP], { who: 'bob' });
    assert.equal(bob.code, 3, bob.stderr);
    assert.match(bob.stderr, /cannot get resource "backups\/volumedata".*: ask your cluster admin for "get" on backups\/volumedata named "nightly" \(API group velero\.io\) in namespace "velero"/);

    api.set({ status: { code: 502, reason: 'BadGateway', message: 'the repository password is wrong (velero-repo-credentials)' } });
    const m = api.requests.length;
    const password = await cli(['backup', 'ls', BACKUP, VOLUME]);
    assert.equal(password.code, 4, password.stderr);
    assert.match(password.stderr, /the download server at https:\/\/127\.0\.0\.1:\d+ is unavailable \(HTTP 502 \(the repository password is wrong \(velero-repo-credentials\)\)\)/);
    assert.equal(api.requests.length - m, 4, 'a 502 is retried as for every artifact, then reported');
    api.set({ status: { code: 400, reason: 'BadRequest', message: 'the repository uses a feature this reader refuses: ecc' } });
    const refused = await cli(['backup', 'files', BACKUP, VOLUME, 'big.bin', '-o', '-']);
    api.set({});
    assert.equal(refused.code, 1, refused.stderr);
    assert.match(refused.stderr, /answered HTTP 400 \(the repository uses a feature this reader refuses: ecc\)/);
    assert.equal(refused.stdout.length, 0);
  });

  test('usage errors, before any request: "..", a directory for files, wrong -o and flags, a bad volume id', async () => {
    const n = api.requests.length;
    const cases: [string[], RegExp][] = [
      [['backup', 'files', BACKUP, VOLUME, 'conf/../../etc/passwd'], /PATH "conf\/\.\.\/\.\.\/etc\/passwd": "\.\." is not allowed/],
      [['backup', 'ls', BACKUP, VOLUME, '..'], /"\.\." is not allowed/],
      [['backup', 'archive', BACKUP, VOLUME, 'a/..'], /"\.\." is not allowed/],
      [['backup', 'files', BACKUP, VOLUME, 'conf/'], /names a directory: use backup ls to list it, or backup archive/],
      [['backup', 'files', BACKUP, VOLUME, '/'], /names a directory/],
      [['backup', 'files', BACKUP, VOLUME, 'a\0b'], /NUL/],
      [['backup', 'files', BACKUP, VOLUME], /backup files takes NAME VOLUME PATH/],
      [['backup', 'ls', BACKUP, VOLUME, 'a', 'b'], /backup ls takes NAME VOLUME \[PATH\]: unexpected argument "b"/],
      [['backup', 'ls', BACKUP, VOLUME, '-o', 'yaml'], /backup ls prints a table, or JSON with -o json \(not "yaml"\)/],
      [['backup', 'files', BACKUP, VOLUME, 'big.bin', '--gzip'], /--gzip is a flag of backup archive only/],
      [['backup', 'ls', BACKUP, 'team-a/../x'], /"team-a\/\.\.\/x" is not a volume id/],
      [['backup', 'ls', BACKUP, 'a\x1bb'], /"a\\x1bb" is not a volume id/],
      [['backup', 'volumes', 'Not_A_Name'], /not a valid backup name/],
    ];
    for (const [argv, message] of cases) {
      const r = await cli(argv);
      assert.equal(r.code, 2, `${argv.join(' ')}: ${r.stderr}`);
      assert.match(r.stderr, message, argv.join(' '));
    }
    assert.equal(api.requests.length, n, 'no request was made');
    const help = await runInProcess(['--help']);
    assert.match(help.stdout.toString(), /backup files NAME VOLUME PATH one file of a volume's backup/);
  });

  test('without --velero-server-url: the download server\'s URL from a DownloadRequest, its path prefix kept', async () => {
    answer = (name) => ({ gatewayURL: `${api.url}/gateway/v1/namespaces/${NS}/downloadrequests/${name}` });
    const n = api.requests.length;
    const r = await cli(['backup', 'ls', BACKUP, VOLUME, 'conf'], { discover: true });
    assert.equal(r.code, 0, r.stderr);
    assert.deepEqual(since(n), [`/gateway${VOLUME_URL}/files/conf/`]);
    const created = fx.api.calls.list({ resource: 'downloadrequests', verb: 'create', user: 'alice' });
    assert.ok(created.length >= 1);
    assert.deepEqual(fx.api.list('velero.io/v1', 'DownloadRequest', NS).map((o) => o.metadata.name).filter((x) => x !== 'dr-log' && x !== 'dr-restore-log'), [], 'the DownloadRequest is deleted');

    // A URL the client must not send the token to, or not take as the download server's.
    for (const [url, message] of [
      [(name: string) => `http://127.0.0.1:1/v1/namespaces/${NS}/downloadrequests/${name}`, /refusing to send your bearer token over plain HTTP to http:\/\/127\.0\.0\.1:1/],
      [() => `${api.url}/v1/namespaces/${NS}/downloadrequests/someone-elses`, /is not that DownloadRequest's URL: pass --velero-server-url/],
    ] as const) {
      answer = (name) => ({ gatewayURL: url(name) });
      const m = api.requests.length;
      const bad = await cli(['backup', 'volumes', BACKUP], { discover: true });
      assert.equal(bad.code, 4, bad.stderr);
      assert.match(bad.stderr, message);
      assert.equal(api.requests.length, m);
    }
    answer = () => ({});
    const missing = await cli(['backup', 'volumes', 'no-such-backup'], { discover: true });
    assert.equal(missing.code, 1, missing.stderr);
    assert.match(missing.stderr, /backup "no-such-backup" not found in namespace "velero"/);
  });

  test('URLs: every segment percent-encoded under the base path; names printed inert', () => {
    const v = (action: VolumeCommand['action'], path: string, extra: Partial<VolumeCommand> = {}): VolumeCommand => ({ action, volume: 'ns:pod:vol', path: volumePath(path), json: false, gzip: false, ...extra });
    const base = new URL('https://gw.example:8443/prefix/');
    assert.equal(volumeUrl(base, 'velero', 'b', v('volumes', '')).href, 'https://gw.example:8443/prefix/v1/namespaces/velero/backups/b/volumes');
    assert.equal(volumeUrl(base, 'velero', 'b', v('files', '/./a//b c/%2e%2e/ü?#')).href, 'https://gw.example:8443/prefix/v1/namespaces/velero/backups/b/volumes/ns%3Apod%3Avol/files/a/b%20c/%252e%252e/%C3%BC%3F%23');
    assert.equal(volumeUrl(new URL('https://gw.example'), 'velero', 'b', v('ls', 'x'), 'a&b=c').href, 'https://gw.example/v1/namespaces/velero/backups/b/volumes/ns%3Apod%3Avol/files/x/?continue=a%26b%3Dc');
    assert.equal(volumeUrl(base, 'velero', 'b', v('archive', '', { gzip: true })).href, 'https://gw.example:8443/prefix/v1/namespaces/velero/backups/b/volumes/ns%3Apod%3Avol/archive/?format=tar.gz');
    assert.equal(printable('a\tb\u202ec\u0085'), 'a\\x09b\\u{202e}c\\x85');
    assert.equal(printable('ü 日本'), 'ü 日本');
  });

  test('no token ever appears in the command output', () => {
    const all = outputs.join('\n');
    for (const t of [fx.tokens.alice, fx.tokens.bob]) assert.ok(!all.includes(t), 'a token leaked into the command output');
  });
});

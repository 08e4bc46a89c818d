/**
 * `backup describe NAME` (HEAD per artifact: sizes as stored), `-o json` for it and for the JSON
 * artifacts, and `--version`: against the real gateway process in local mode, signed in with a token
 * from its tokens.csv (no kubeconfig anywhere), and against a small HTTPS server for answers the real
 * gateway never gives (a hostile Content-Length, a 403 on one artifact, a 500).
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, rm, stat, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { gunzipSync } from 'node:zlib';
import { parseCommandLine } from '../../src/cli/args.ts';
import { UsageError } from '../../src/cli/errors.ts';
import { VERSION } from '../../src/version.ts';
import { runInProcess, startRecorder } from '../support/cli.ts';
import type { CliResult, Recorder } from '../support/cli.ts';
import { startLocalGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { createTestPki } from '../support/test-ca.ts';

const BACKUP = 'demo-backup';
const ARTIFACTS = ['log', 'contents', 'volumesnapshots', 'itemoperations', 'resourcelist', 'results', 'csivolumesnapshots', 'csivolumesnapshotcontents', 'volumeinfos'];

describe('the command line: --version, describe, -o json', () => {
  const usage = (argv: string[], message: RegExp): void =>
    void assert.throws(() => parseCommandLine(argv), (err: unknown) => err instanceof UsageError && message.test(err.message));

  test('--version prints the package version; with anything else it is a usage error', async () => {
    const r = await runInProcess(['--version']);
    assert.equal(r.code, 0, r.stderr);
    assert.equal(r.stdout.toString(), `velero-download ${VERSION}\n`);
    assert.equal(VERSION, (JSON.parse(await readFile(new URL('../../package.json', import.meta.url), 'utf8')) as { version: string }).version);
    usage(['--version', 'backup', 'logs', 'b'], /--version takes no command or other flag/);
    usage(['--version', '-n', 'x'], /--version takes no command or other flag/);
  });

  test('-o json: stdout for describe and the JSON artifacts; refused for the log and the tarball, which are not JSON', () => {
    const cmd = (...argv: string[]) => (parseCommandLine(argv) as { command: { output: unknown; describe?: unknown } }).command;
    assert.deepEqual(cmd('backup', 'results', 'b', '-o', 'json').output, { kind: 'stdout' });
    assert.deepEqual(cmd('restore', 'resource-list', 'r', '-o', 'json').output, { kind: 'stdout' });
    assert.deepEqual(cmd('get', 'backups/b/volumesnapshots', '-o', 'json').output, { kind: 'stdout' });
    assert.deepEqual(cmd('backup', 'results', 'b', '-o', './json').output, { kind: 'file', path: './json' });
    assert.deepEqual(cmd('backup', 'describe', 'b', '-o', 'json').describe, { json: true });
    assert.deepEqual(cmd('backup', 'describe', 'b').describe, { json: false });
    usage(['backup', 'logs', 'b', '-o', 'json'], /-o json: the backup log is text, not JSON; to write a file named json, pass -o \.\/json/);
    usage(['backup', 'download', 'b', '-o', 'json'], /the backup contents are a tarball/);
    usage(['backup', 'describe', 'b', '-o', 'out.txt'], /backup describe prints a table, or JSON with -o json/);
    usage(['backup', 'describe'], /backup describe takes NAME/);
    usage(['backup', 'describe', 'b', 'c'], /unexpected argument "c"/);
    usage(['restore', 'describe', 'r'], /restore has no subcommand "describe"/);
  });
});

describe('backup describe and -o json against the real gateway (local mode, a token from its tokens.csv)', () => {
  let dir: string;
  let gw: GatewayProcess;
  let cacert: string;
  let tokenFile: string;
  const cli = (...argv: string[]): Promise<CliResult> => runInProcess([...argv, '--velero-server-url', gw.url, '--cacert', cacert, '--token-file', tokenFile], { cwd: dir });
  const stored = async (file: string): Promise<number> => (await stat(join(dir, 'data', 'backups', BACKUP, file))).size;

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-cli-describe-'));
    ({ gw, cacert } = await startLocalGateway(dir));
    tokenFile = join(dir, 'token');
    // The README's way: the first field of the first line.
    await writeFile(tokenFile, `${(await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split('\n')[0]!.split(',')[0]!}\n`, { mode: 0o600 });
  });
  after(async () => {
    await gw?.stop();
    await rm(dir, { recursive: true, force: true });
  });

  test('-o json lists every artifact with its stored size, the same bytes as on disk, and the command that downloads it', async () => {
    const r = await cli('backup', 'describe', BACKUP, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const doc = JSON.parse(r.stdout.toString()) as { namespace: string; backup: string; artifacts: { artifact: string; status: string; size?: number; command: string }[] };
    assert.equal(doc.namespace, 'velero');
    assert.equal(doc.backup, BACKUP);
    assert.deepEqual(doc.artifacts.map((a) => a.artifact), ARTIFACTS);
    assert.ok(doc.artifacts.every((a) => a.status === 'stored'));
    const byName = new Map(doc.artifacts.map((a) => [a.artifact, a]));
    assert.equal(byName.get('log')!.size, await stored(`${BACKUP}-logs.gz`));
    assert.equal(byName.get('contents')!.size, await stored(`${BACKUP}.tar.gz`));
    assert.equal(byName.get('volumeinfos')!.size, await stored(`${BACKUP}-volumeinfo.json.gz`));
    assert.equal(byName.get('log')!.command, `velero-download backup logs ${BACKUP}`);
    assert.equal(byName.get('csivolumesnapshots')!.command, `velero-download get backups/${BACKUP}/csivolumesnapshots`);
  });

  test('the table; a backup that does not exist lists nothing stored and exits 1; a refused token exits 3 without being shown', async () => {
    const table = await cli('backup', 'describe', BACKUP);
    assert.equal(table.code, 0, table.stderr);
    const lines = table.stdout.toString().split('\n');
    assert.match(lines[0]!, /^Backup velero\/demo-backup, as the download server stores it/);
    assert.match(lines[1]!, /^ARTIFACT\s+SIZE\s+DOWNLOAD WITH$/);
    assert.match(table.stdout.toString(), new RegExp(`\\nlog\\s+${await stored(`${BACKUP}-logs.gz`)} B\\s+velero-download backup logs ${BACKUP}\\n`));

    const missing = await cli('backup', 'describe', 'no-such-backup');
    assert.equal(missing.code, 1, missing.stderr);
    assert.equal((missing.stdout.toString().match(/not stored/g) ?? []).length, ARTIFACTS.length);
    assert.match(missing.stderr, /no artifact of backup "no-such-backup" is stored: does it exist in namespace "velero"\?/);

    await writeFile(join(dir, 'wrong'), 'not-the-token\n');
    const refused = await runInProcess(['backup', 'describe', BACKUP, '--velero-server-url', gw.url, '--cacert', cacert, '--token-file', join(dir, 'wrong')]);
    assert.equal(refused.code, 3, refused.stderr);
    assert.match(refused.stderr, /did not accept the token from --token-file/);
    assert.ok(!refused.stderr.includes('not-the-token'));
  });

  test('backup results -o json prints the results JSON (gunzipped) to stdout; no file named json appears', async () => {
    const r = await cli('backup', 'results', BACKUP, '-o', 'json');
    assert.equal(r.code, 0, r.stderr);
    const expected = gunzipSync(await readFile(join(dir, 'data', 'backups', BACKUP, `${BACKUP}-results.gz`))).toString();
    assert.equal(r.stdout.toString(), expected);
    JSON.parse(r.stdout.toString());
    await assert.rejects(stat(join(dir, 'json')), { code: 'ENOENT' });
  });
});

describe('backup describe against answers the real gateway does not give', () => {
  let gw: Recorder;
  let dir: string;
  let caFile: string;

  before(async () => {
    const pki = await createTestPki('describe CA');
    gw = await startRecorder(pki, Buffer.alloc(0));
    dir = await mkdtemp(join(tmpdir(), 'vds-cli-describe-'));
    caFile = join(dir, 'ca.pem');
    await writeFile(caFile, pki.caCert);
  });
  after(async () => {
    await new Promise((r) => gw.server.close(r));
    await rm(dir, { recursive: true, force: true });
  });

  test('HEAD requests only; a hostile Content-Length shows as unknown, a 403 as forbidden, a 500 as an error, and the output stays one table', async () => {
    gw.answer = (path, res) => {
      const artifact = path.split('/').at(-1)!;
      if (artifact === 'log') res.writeHead(200, { 'Content-Length': '1024' }).end();
      else if (artifact === 'contents') res.writeHead(403, { 'Content-Type': 'application/json' }).end('{"message":"forbidden \\u001b[2J"}');
      else if (artifact === 'results') res.writeHead(500).end();
      // Beyond what the client takes as a size (15 digits): shown as unknown, never as a wrong number.
      else if (artifact === 'resourcelist') res.writeHead(200, { 'Content-Length': '1234567890123456' }).end();
      else res.writeHead(404).end();
    };
    const r = await runInProcess(['backup', 'describe', 'nightly', '--velero-server-url', gw.url, '--cacert', caFile, '--token', 'a-token', '--connect-timeout', '5s']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(gw.requests.length >= ARTIFACTS.length);
    assert.ok(gw.requests.every((q) => q.method === 'HEAD' && q.headers.authorization === 'Bearer a-token'));
    const out = r.stdout.toString();
    assert.match(out, /\nlog\s+1\.0 KiB\s+velero-download backup logs nightly\n/);
    assert.match(out, /\ncontents\s+forbidden\s+-\n/);
    assert.match(out, /\nresults\s+error \(HTTP 500\)\s+-\n/);
    assert.match(out, /\nvolumeinfos\s+not stored\s+-\n/);
    assert.ok(!out.includes('\u001b'), 'nothing of the server\'s words reaches the terminal');
    assert.match(out, /\nresourcelist\s+stored, size unknown\s+velero-download backup resource-list nightly\n/);
  });
});

/**
 * `velero-download` units: the command line, durations and fingerprints, failure classification, the
 * progress bar, the output file's commit rules, and the TLS check that runs before a request is written.
 */
import assert from 'node:assert/strict';
import { X509Certificate } from 'node:crypto';
import { mkdtemp, readFile, readdir, rm, writeFile } from 'node:fs/promises';
import { createServer } from 'node:https';
import type { AddressInfo, LookupFunction } from 'node:net';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { parseCommandLine, parseDuration, normalizeFingerprint } from '../../src/cli/args.ts';
import type { Command } from '../../src/cli/args.ts';
import { TimeoutError, UntrustedCertificateError, UsageError, networkFailure } from '../../src/cli/errors.ts';
import { httpGet } from '../../src/cli/http.ts';
import { openOutput } from '../../src/cli/output.ts';
import { ProgressBar, RATE_WINDOW_MS, RateWindow, STALL_MS, formatBytes, formatProgress, formatSeconds, progressFor } from '../../src/cli/progress.ts';
import type { BarClock } from '../../src/cli/progress.ts';
import { BACKUP_ARTIFACTS, RESTORE_ARTIFACTS } from '../../src/velero/artifacts.ts';
import { createTestPki } from '../support/test-ca.ts';
import type { TestPki } from '../support/test-ca.ts';

const cmd = (...argv: string[]): Command => {
  const r = parseCommandLine(argv);
  assert.equal(r.help, false);
  return (r as { command: Command }).command;
};
const usage = (argv: string[], message: RegExp): void => {
  assert.throws(() => parseCommandLine(argv), (err: unknown) => err instanceof UsageError && err.exitCode === 2 && message.test(err.message));
};

describe('command line', () => {
  test('each subcommand maps to its artifact and DownloadRequest kind', () => {
    const table: [string[], string, string, string][] = [
      [['backup', 'logs', 'b'], 'backups', 'log', 'BackupLog'],
      [['backup', 'download', 'b'], 'backups', 'contents', 'BackupContents'],
      [['backup', 'results', 'b'], 'backups', 'results', 'BackupResults'],
      [['backup', 'resource-list', 'b'], 'backups', 'resourcelist', 'BackupResourceList'],
      [['backup', 'volume-info', 'b'], 'backups', 'volumeinfos', 'BackupVolumeInfos'],
      [['backup', 'item-operations', 'b'], 'backups', 'itemoperations', 'BackupItemOperations'],
      [['restore', 'logs', 'r'], 'restores', 'log', 'RestoreLog'],
      [['restore', 'results', 'r'], 'restores', 'results', 'RestoreResults'],
      [['restore', 'resource-list', 'r'], 'restores', 'resourcelist', 'RestoreResourceList'],
    ];
    for (const [argv, owner, artifact, kind] of table) {
      const c = cmd(...argv);
      assert.deepEqual([c.owner, c.artifact, c.kind], [owner, artifact, kind], argv.join(' '));
    }
  });

  test('get reaches every artifact of backups and restores', () => {
    for (const [owner, defs] of [['backups', BACKUP_ARTIFACTS], ['restores', RESTORE_ARTIFACTS]] as const) {
      for (const d of defs) {
        const c = cmd('get', `${owner}/my.backup-1/${d.artifact}`);
        assert.deepEqual([c.owner, c.name, c.artifact, c.kind], [owner, 'my.backup-1', d.artifact, d.kind]);
        assert.equal(c.gunzip, !(owner === 'backups' && d.artifact === 'contents'), 'gunzip all but backup contents');
      }
    }
  });

  test('defaults', () => {
    const c = cmd('backup', 'logs', 'nightly');
    assert.equal(c.namespace, 'velero');
    assert.deepEqual(c.gateway, { forced: false });
    assert.deepEqual(c.output, { kind: 'stdout' });
    assert.equal(c.waitTimeoutMs, 60_000);
    assert.equal(c.timeoutMs, 0);
    assert.equal(c.connectTimeoutMs, 15_000);
    assert.equal(c.force, false);
    assert.equal(c.insecureSkipTlsVerify, false);
    assert.deepEqual(cmd('backup', 'download', 'nightly').output, { kind: 'file', path: 'nightly-data.tar.gz' });
    assert.deepEqual(cmd('backup', 'download', 'nightly', '-o', '-').output, { kind: 'stdout' });
    assert.deepEqual(cmd('backup', 'logs', 'nightly', '--output', 'x.log').output, { kind: 'file', path: 'x.log' });
  });

  test('global flags anywhere, short and long', () => {
    const c = cmd('-n', 'team-a', 'backup', '--kubeconfig', '/k', 'logs', '--context', 'prod', 'nightly', '--wait-timeout', '1m30s', '--timeout=2h', '--force', '--connect-timeout', '500ms');
    assert.deepEqual(
      [c.namespace, c.kubeconfig, c.context, c.waitTimeoutMs, c.timeoutMs, c.force, c.connectTimeoutMs],
      ['team-a', '/k', 'prod', 90_000, 7_200_000, true, 500],
    );
  });

  test('--velero-server-url with or without a base URL', () => {
    assert.deepEqual(cmd('--velero-server-url', 'backup', 'logs', 'b').gateway, { forced: true });
    assert.deepEqual(cmd('backup', 'logs', 'b', '--velero-server-url').gateway, { forced: true });
    assert.equal(cmd('backup', 'logs', 'b', '--velero-server-url', 'https://gw.example:8443').gateway.baseUrl?.href, 'https://gw.example:8443/');
    assert.equal(cmd('--velero-server-url=https://gw.example/prefix', 'backup', 'logs', 'b').gateway.baseUrl?.href, 'https://gw.example/prefix');
    usage(['--velero-server-url', 'http://gw.example', 'backup', 'logs', 'b'], /never sent over plain HTTP/);
    usage(['--velero-server-url=ftp://gw', 'backup', 'logs', 'b'], /must be an https:\/\/ URL/);
    usage(['--velero-server-url=https://u:p@gw', 'backup', 'logs', 'b'], /without credentials/);
  });

  test('usage errors say what to do', () => {
    usage([], /missing command/);
    usage(['frobnicate'], /unknown command "frobnicate": use backup, restore, get, hash-password or completion/);
    usage(['backup'], /backup needs a subcommand: use one of logs, download/);
    usage(['backup', 'frob', 'b'], /has no subcommand "frob": use one of .*, describe, volumes/);
    usage(['backup', 'logs'], /missing the backup name/);
    usage(['backup', 'logs', 'a', 'b'], /unexpected argument "b"/);
    usage(['backup', 'logs', 'Not_Valid'], /not a valid backup name/);
    usage(['get', 'backups/b'], /not backups\/NAME\/ARTIFACT/);
    usage(['get', 'restores/r/contents'], /restores have no artifact "contents"/);
    usage(['backup', 'logs', 'b', '-n', 'Bad_NS'], /not a valid namespace/);
    usage(['backup', 'logs', 'b', '--wait-timeout', 'soon'], /--wait-timeout: "soon" is not a duration/);
    usage(['backup', 'logs', 'b', '--wait-timeout', '0'], /more than 0/);
    usage(['backup', 'logs', 'b', '--server-cert-fingerprint', 'abc'], /64 hex digits/);
    usage(['backup', 'logs', 'b', '--insecure-skip-tls-verify', '--server-cert-fingerprint', 'a'.repeat(64)], /cannot be combined/);
    usage(['backup', 'logs', 'b', '--bogus'], /Unknown option '--bogus'/);
    usage(['backup', 'logs', 'b', '-o', ''], /empty file name/);
    assert.deepEqual(parseCommandLine(['backup', '-h']), { help: true });
  });

  test('durations and fingerprints', () => {
    assert.equal(parseDuration('t', '0'), 0);
    assert.equal(parseDuration('t', '250ms'), 250);
    assert.equal(parseDuration('t', '1.5s'), 1500);
    assert.equal(parseDuration('t', '1h2m3s'), 3_723_000);
    assert.throws(() => parseDuration('t', '5'), UsageError);
    const fp = 'ab'.repeat(32);
    assert.equal(normalizeFingerprint(fp.toUpperCase().match(/../g)!.join(':')), fp);
    assert.equal(normalizeFingerprint(`sha256:${fp}`), fp);
    assert.equal(normalizeFingerprint(fp.slice(2)), undefined);
    assert.equal(normalizeFingerprint('zz'.repeat(32)), undefined);
  });
});

describe('failure classification', () => {
  test('network failures allow a fallback; other errors do not', () => {
    const sys = (code: string): Error => Object.assign(new Error(code), { code });
    assert.equal(networkFailure(sys('ECONNREFUSED')), 'connect');
    assert.equal(networkFailure(sys('ENOTFOUND')), 'dns');
    assert.equal(networkFailure(sys('EAI_AGAIN')), 'dns');
    assert.equal(networkFailure(new TimeoutError('slow')), 'timeout');
    assert.equal(networkFailure(sys('ECONNRESET')), 'reset');
    assert.equal(networkFailure(sys('DEPTH_ZERO_SELF_SIGNED_CERT')), 'tls');
    assert.equal(networkFailure(sys('ERR_TLS_CERT_ALTNAME_INVALID')), 'tls');
    assert.equal(networkFailure(new UntrustedCertificateError('h', 'r', 'f')), 'tls');
    assert.equal(networkFailure(new TypeError('fetch failed', { cause: sys('ECONNREFUSED') })), 'connect');
    assert.equal(networkFailure(sys('ENOSPC')), undefined);
    assert.equal(networkFailure(new Error('boom')), undefined);
  });
});

describe('progress bar', () => {
  test('formats bytes, durations and the bar', () => {
    assert.equal(formatBytes(512), '512 B');
    assert.equal(formatBytes(1536), '1.5 KiB');
    assert.equal(formatBytes(3 * 1024 ** 3), '3.0 GiB');
    assert.equal(formatSeconds(5), '5s');
    assert.equal(formatSeconds(75), '1m15s');
    assert.equal(formatSeconds(3 * 3600 + 120), '3h02m');
    assert.equal(formatSeconds(Infinity), '--');
    const line = formatProgress(25 * 1024 * 1024, 100 * 1024 * 1024, 5 * 1024 * 1024, 80);
    assert.equal(line, '[========>                     ]  25%  25.0 MiB / 100.0 MiB  5.0 MiB/s  ETA 15s');
    assert.ok(line.length <= 80);
    assert.equal(formatProgress(2048, undefined, 2048), '2.0 KiB  2.0 KiB/s');
    assert.ok(formatProgress(1, 10, 1, 30).length <= 30);
    assert.equal(formatProgress(25 * 1024 * 1024, 100 * 1024 * 1024, 0, 80, STALL_MS - 1), '[========>                     ]  25%  25.0 MiB / 100.0 MiB  0 B/s  ETA --');
    assert.equal(formatProgress(25 * 1024 * 1024, 100 * 1024 * 1024, 0, 80, 7000), '[========>                     ]  25%  25.0 MiB / 100.0 MiB  0 B/s  stalled 7s');
    assert.equal(formatProgress(2048, undefined, 0, 80, 4000), '2.0 KiB  0 B/s  stalled 4s');
  });

  /** A clock the test moves by hand, and the bar's timer as a function the test calls. */
  const fakeClock = (): BarClock & { t: number; tick: () => void; stopped: boolean } => {
    const c = {
      t: 0,
      stopped: false,
      tick: () => {},
      now: () => c.t,
      every(_ms: number, tick: () => void) {
        c.tick = tick;
        return () => void (c.stopped = true);
      },
    };
    return c;
  };

  test('the rate is a moving window: steady while bytes come, falling to 0 within the window once they stop', () => {
    const w = new RateWindow();
    const MiB = 1024 * 1024;
    for (let t = 0; t <= 10_000; t += 100) w.add(t, (t / 1000) * MiB);
    assert.equal(w.rate(10_000), MiB);
    assert.equal(w.idle(10_000), 0);
    const later = [10_500, 11_000, 12_500, 14_000, 15_000, 20_000].map((t) => w.rate(t));
    assert.deepEqual(later, [0.9 * MiB, 0.8 * MiB, 0.5 * MiB, 0.2 * MiB, 0, 0]);
    assert.equal(w.idle(12_500), 2500);
    // A burst after a long silence counts over the window, not since the start.
    w.add(21_000, 10 * MiB + 512 * 1024);
    assert.equal(w.rate(21_000), (512 * 1024) / (RATE_WINDOW_MS / 1000));
    assert.equal(new RateWindow().rate(5), 0);
  });

  test('a stalled transfer is redrawn by the timer: the rate falls and the line says "stalled"', () => {
    const clock = fakeClock();
    let out = '';
    const bar = new ProgressBar({ isTTY: true, columns: 100, write: (s) => ((out += s), true) }, 200, clock);
    const MiB = 1024 * 1024;
    for (clock.t = 0; clock.t <= 2000; clock.t += 100) bar.update(clock.t * 1024, 100 * MiB);
    const lines = (): string[] => out.split('\r').filter(Boolean);
    assert.match(lines().at(-1)!, /1000\.0 KiB\/s {2}ETA/);
    // No more bytes: only the timer draws.
    const drawn = lines().length;
    const seen: string[] = [];
    for (let t = 2100; t <= 9000; t += 100) {
      clock.t = t;
      clock.tick();
      seen.push(lines().at(-1)!);
    }
    assert.equal(lines().length, drawn + seen.length, 'a line per tick while nothing arrives');
    const rates = seen.map((l) => Number(/ ([\d.]+) (K|M)?i?B\/s/.exec(l)![1]) * (/ KiB\/s/.test(l) ? 1024 : / MiB\/s/.test(l) ? MiB : 1));
    for (let i = 1; i < rates.length; i++) assert.ok(rates[i]! <= rates[i - 1]!, `the rate never rises without bytes: ${seen[i - 1]!} -> ${seen[i]!}`);
    assert.ok(rates[0]! > 0);
    assert.equal(rates.at(-1), 0);
    const stalledFrom = seen.findIndex((l) => /stalled/.test(l));
    assert.equal(2100 + stalledFrom * 100, 2000 + STALL_MS, 'says "stalled" once STALL_MS pass without a byte');
    assert.match(seen.at(-1)!, /0 B\/s {2}stalled 7s/);
    assert.ok(!seen.at(-1)!.includes('ETA'));
    // Bytes again: the stall is over.
    clock.t = 9100;
    bar.update(3 * MiB, 100 * MiB);
    clock.t = 9300;
    clock.tick();
    assert.ok(!lines().at(-1)!.includes('stalled'));
    bar.finish();
    assert.ok(clock.stopped, 'finish stops the timer');
    assert.ok(out.endsWith('\n'));
  });

  test('only on a terminal, only for large or unknown sizes', () => {
    const tty = { isTTY: true, columns: 100, write: () => true };
    assert.ok(progressFor(tty, 10 * 1024 * 1024));
    assert.ok(progressFor(tty, undefined));
    assert.equal(progressFor(tty, 1000), undefined);
    assert.equal(progressFor({ isTTY: false, write: () => true }, 10 * 1024 * 1024), undefined);
    assert.equal(progressFor({ write: () => true }, 10 * 1024 * 1024), undefined);
  });

  test('redraws in place and ends its line', () => {
    let out = '';
    const bar = new ProgressBar({ isTTY: true, columns: 80, write: (s) => ((out += s), true) }, 0);
    bar.update(512 * 1024, 2 * 1024 * 1024);
    bar.update(2 * 1024 * 1024, 2 * 1024 * 1024);
    bar.finish();
    assert.equal(out.split('\r').length - 1, 3);
    assert.match(out, /100% {2}2\.0 MiB \/ 2\.0 MiB/);
    assert.ok(out.endsWith('\n'));
  });
});

describe('output file', () => {
  let dir: string;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-cli-out-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  test('appears only on commit; a file that appeared meanwhile is not overwritten', async () => {
    const out = await openOutput({ kind: 'file', path: 'a.bin' }, false, dir, process.stdout);
    out.stream.end('data');
    await new Promise((r) => out.stream.once('close', r));
    assert.deepEqual((await readdir(dir)).filter((n) => n === 'a.bin'), [], 'not under its name before commit');
    await out.commit();
    assert.equal(await readFile(join(dir, 'a.bin'), 'utf8'), 'data');
    assert.deepEqual(await readdir(dir), ['a.bin']);

    const late = await openOutput({ kind: 'file', path: 'b.bin' }, false, dir, process.stdout);
    late.stream.end('new');
    await new Promise((r) => late.stream.once('close', r));
    await writeFile(join(dir, 'b.bin'), 'someone else');
    await assert.rejects(late.commit(), /b\.bin appeared while downloading: pass --force/);
    await late.discard();
    assert.equal(await readFile(join(dir, 'b.bin'), 'utf8'), 'someone else');
    assert.deepEqual((await readdir(dir)).sort(), ['a.bin', 'b.bin']);
  });

  test('discard removes the temporary file', async () => {
    const out = await openOutput({ kind: 'file', path: 'c.bin' }, true, dir, process.stdout);
    out.stream.write('half');
    await out.discard();
    assert.ok(!(await readdir(dir)).some((n) => n.includes('c.bin')));
  });
});

describe('TLS check before the request', () => {
  let pki: TestPki;
  let port: number;
  let fingerprint: string;
  let requests = 0;
  let server: ReturnType<typeof createServer>;
  before(async () => {
    pki = await createTestPki('units CA');
    fingerprint = new X509Certificate(pki.cert).fingerprint256.replaceAll(':', '').toLowerCase();
    server = createServer({ cert: pki.cert, key: pki.key }, (_req, res) => {
      requests++;
      res.end('ok');
    });
    await new Promise<void>((r) => server.listen(0, '127.0.0.1', r));
    port = (server.address() as AddressInfo).port;
  });
  after(() => new Promise<void>((r) => server.close(() => r())));

  // Every name resolves to the test server.
  const lookup = ((_h: string, o: { all?: boolean }, cb: (...a: unknown[]) => void) =>
    o.all ? cb(null, [{ address: '127.0.0.1', family: 4 }]) : cb(null, '127.0.0.1', 4)) as unknown as LookupFunction;
  const get = (host: string, trust: Parameters<typeof httpGet>[1]['trust']) =>
    httpGet(new URL(`https://${host}:${port}/x`), { trust, headers: { Authorization: 'Bearer t' }, timeoutMs: 5000, signal: new AbortController().signal, lookup });

  test('a CA, a pin, or nothing: untrusted servers never receive the request', async () => {
    const ok = async (p: Promise<unknown>): Promise<void> => {
      const res = (await p) as { statusCode: number; resume(): void };
      assert.equal(res.statusCode, 200);
      res.resume();
    };
    await ok(get('127.0.0.1', { ca: [pki.caCert], chain: true, pins: [], insecure: false }));
    await ok(get('127.0.0.1', { chain: false, pins: [fingerprint], insecure: false }));
    await ok(get('127.0.0.1', { chain: false, pins: [], insecure: true }));
    // A name the certificate does not cover: the CA is not enough, the pin is.
    await ok(get('gw.example.test', { ca: [pki.caCert], chain: true, pins: [fingerprint], insecure: false }));
    const seen = requests;
    await assert.rejects(get('gw.example.test', { ca: [pki.caCert], chain: true, pins: [], insecure: false }), /ERR_TLS_CERT_ALTNAME_INVALID|Hostname\/IP does not match/);
    await assert.rejects(get('127.0.0.1', { chain: true, pins: [], insecure: false }), (e: unknown) => e instanceof UntrustedCertificateError && e.fingerprint === fingerprint);
    await assert.rejects(get('127.0.0.1', { chain: false, pins: ['00'.repeat(32)], insecure: false }), /its fingerprint is not the pinned one/);
    const other = await createTestPki('another CA');
    await assert.rejects(get('127.0.0.1', { ca: [other.caCert], chain: true, pins: [], insecure: false }), UntrustedCertificateError);
    assert.equal(requests, seen, 'no request (and so no token) reached an untrusted server');
  });
});

/**
 * Reliability: an object store failing mid-object. The real gateway process (local mode, a
 * --locations-file S3 location) streams from the S3 TEST DOUBLE (test/support/s3-double.ts), which
 * resets, stalls, answers 500 / 503 / SlowDown, or sends fewer bytes than it announced, to the real
 * curl. Whatever happens, the client sees an error or a retried success, never a short 200: either
 * curl's exit code says the transfer broke (18 partial, 56 receive failure, 28 its own timeout) or
 * the status is 5xx with a Status body and no object bytes. Meanwhile a download from the data
 * directory runs beside each failure and completes; afterwards the gateway's open descriptors return
 * to what they were before (counted in /proc/<pid>/fd, compared once the double's connections are
 * dropped, since keep-alive sockets to it are pooled).
 *
 * A stall is cut by the client here (curl --max-time): the process's store timeouts are the
 * defaults (60 s idle), with no flag to shorten them. The second suite builds the same wiring
 * in-process with short store timeouts to show the gateway itself ends a stalled upstream.
 */
import assert from 'node:assert/strict';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, rm, writeFile } from 'node:fs/promises';
import type { Server } from 'node:https';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { localMode } from '../../src/compose/local.ts';
import { loadConfig } from '../../src/config/config.ts';
import { createApp } from '../../src/server/app.ts';
import { listenHttps, shutdown } from '../../src/server/listener.ts';
import { createLogger } from '../../src/server/logging.ts';
import { DefaultStoreFactory } from '../../src/stores/factory.ts';
import { RETRIES } from '../../src/stores/retry.ts';
import { curl, curlLive, startGateway } from '../support/processes.ts';
import type { GatewayProcess } from '../support/processes.ts';
import { fdCount, fdTargets, waitFor } from '../support/reliability.ts';
import { startS3Double } from '../support/s3-double.ts';
import type { S3Double, S3FaultRule } from '../support/s3-double.ts';
import { writeS3LocationsFile } from '../support/locations-file.ts';
import { createTestPki } from '../support/test-ca.ts';
import type { TestPki } from '../support/test-ca.ts';

const SIZE = 2 * 1024 * 1024;
const LOCAL = 'local-big';
const LOCAL_SIZE = 3 * 1024 * 1024;
const keyOf = (name: string): string => `prod/backups/${name}/${name}.tar.gz`;

type Expect =
  | { kind: 'broken'; curlCodes: number[] }
  | { kind: 'complete' }
  | { kind: 'status'; status: number; retryAfter?: string };

interface Scenario {
  name: string;
  rules: Omit<S3FaultRule, 'key'>[];
  expect: Expect;
  /** GetObject requests the double must have seen (retries included). */
  gets: number;
  curlArgs?: string[];
}

const BROKEN = [18, 56];
const SCENARIOS: Scenario[] = [
  { name: 'reset-mid', rules: [{ method: 'GET', fault: { kind: 'reset-mid' } }], expect: { kind: 'broken', curlCodes: BROKEN }, gets: 1 },
  { name: 'short-body', rules: [{ method: 'GET', fault: { kind: 'short' } }], expect: { kind: 'broken', curlCodes: BROKEN }, gets: 1 },
  {
    name: 'stall-mid',
    rules: [{ method: 'GET', fault: { kind: 'stall-mid' } }],
    expect: { kind: 'broken', curlCodes: [28] },
    gets: 1,
    curlArgs: ['--max-time', '2'],
  },
  { name: 'reset-once', rules: [{ method: 'GET', fault: { kind: 'reset-before-headers' }, times: 1 }], expect: { kind: 'complete' }, gets: 2 },
  { name: 'reset-always', rules: [{ method: 'GET', fault: { kind: 'reset-before-headers' } }], expect: { kind: 'status', status: 502 }, gets: RETRIES + 1 },
  { name: 'error-500-once', rules: [{ method: 'GET', fault: { kind: 'status', status: 500, code: 'InternalError' }, times: 1 }], expect: { kind: 'complete' }, gets: 2 },
  { name: 'error-500', rules: [{ method: 'GET', fault: { kind: 'status', status: 500, code: 'InternalError' } }], expect: { kind: 'status', status: 502 }, gets: RETRIES + 1 },
  {
    name: 'unavailable-503',
    rules: [{ method: 'GET', fault: { kind: 'status', status: 503, code: 'ServiceUnavailable' } }],
    expect: { kind: 'status', status: 503, retryAfter: '1' },
    // A 503 is the store asking to slow down: handed to the client at once, never retried.
    gets: 1,
  },
  {
    name: 'slowdown-503',
    rules: [{ method: 'GET', fault: { kind: 'status', status: 503, code: 'SlowDown', retryAfter: '7' } }],
    expect: { kind: 'status', status: 503, retryAfter: '7' },
    // Throttling is handed to the client with Retry-After, not retried while it waits.
    gets: 1,
  },
  {
    name: 'stat-slowdown',
    rules: [{ method: 'HEAD', fault: { kind: 'status', status: 503, code: 'SlowDown', retryAfter: '4' } }],
    expect: { kind: 'status', status: 503, retryAfter: '4' },
    gets: 0,
  },
];

interface Download {
  code: number | null;
  stderr: string;
  status: number;
  headers: string;
  body: Buffer;
}

/** The locations file for an S3 location at the double, trusted through its CA. */
function writeLocations(dir: string, s3: S3Double, pki: TestPki): Promise<string> {
  return writeS3LocationsFile(dir, { name: 'double', bucket: s3.bucket, endpoint: s3.endpoint, region: 'test-1', accessKeyId: 'TESTDOUBLE', secretAccessKey: 'not-checked', caPem: pki.caCert });
}

describe('store failures mid-object: real gateway process, S3 test double', () => {
  let dir: string;
  let pki: TestPki;
  let s3: S3Double;
  let gw: GatewayProcess;
  let token: string;
  let cacert: string;
  let baselineFds: number;
  let baselineTargets: string[];
  const objects = new Map<string, Buffer>();
  let localBytes: Buffer;
  let n = 0;

  const base = (): string => `${gw.url}/v1/namespaces/velero/backups`;

  async function download(name: string, extra: string[] = []): Promise<Download> {
    const out = join(dir, `dl-${++n}.bin`);
    const hdr = join(dir, `dl-${n}.headers`);
    const r = await curl(['--cacert', cacert, '-H', `Authorization: Bearer ${token}`, '-D', hdr, '-o', out, '-w', '%{http_code}', ...extra, `${base()}/${name}/contents`]);
    return {
      code: r.code,
      stderr: r.stderr,
      status: Number(r.stdout.toString()),
      headers: await readFile(hdr, 'utf8').catch(() => ''),
      body: await readFile(out).catch(() => Buffer.alloc(0)),
    };
  }

  /** A data-directory download, paced to overlap the failing one; resolves once checked complete. */
  function localBeside(): Promise<void> {
    const out = join(dir, `local-${++n}.bin`);
    const live = curlLive(['--cacert', cacert, '-H', `Authorization: Bearer ${token}`, '--fail', '--limit-rate', '6M', '-o', out, `${base()}/${LOCAL}/contents`]);
    return live.done.then(async (r) => {
      assert.equal(r.code, 0, `the data-dir download beside the failure failed: ${r.stderr}`);
      assert.ok((await readFile(out)).equals(localBytes), 'the data-dir download beside the failure is not byte for byte');
    });
  }

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-rel-store-'));
    pki = await createTestPki();
    s3 = await startS3Double({ pki });
    for (const name of ['warm-up', ...SCENARIOS.map((s) => s.name)]) {
      const bytes = randomBytes(SIZE);
      objects.set(name, bytes);
      s3.put(keyOf(name), bytes);
    }
    localBytes = randomBytes(LOCAL_SIZE);
    await mkdir(join(dir, 'data', 'backups', LOCAL), { recursive: true });
    await writeFile(join(dir, 'data', 'backups', LOCAL, `${LOCAL}.tar.gz`), localBytes);
    const locations = await writeLocations(dir, s3, pki);
    gw = await startGateway(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), '--locations-file', locations]);
    token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
    cacert = join(dir, 'state', 'tls.crt');

    // Warm up both paths (the S3 client is built on first use), then count with no pooled socket left.
    const warm = await download('warm-up', ['--fail']);
    assert.equal(warm.code, 0, warm.stderr);
    assert.ok(warm.body.equals(objects.get('warm-up')!));
    await localBeside();
    await s3.dropConnections();
    await new Promise((r) => setTimeout(r, 300));
    baselineFds = await fdCount(gw.proc.pid!);
    baselineTargets = await fdTargets(gw.proc.pid!);
  });

  after(async () => {
    await gw?.stop();
    await s3?.close();
    await rm(dir, { recursive: true, force: true });
  });

  for (const sc of SCENARIOS) {
    test(`${sc.name}: ${sc.expect.kind === 'complete' ? 'a retried success' : sc.expect.kind === 'broken' ? 'a broken transfer' : `${sc.expect.status} before any byte`}, and the data-dir download beside it completes`, async () => {
      s3.faults.length = 0;
      for (const rule of sc.rules) s3.faults.push({ ...rule, key: keyOf(sc.name) });
      const beside = localBeside();
      const r = await download(sc.name, sc.curlArgs);
      const want = objects.get(sc.name)!;
      const why = `curl exit ${String(r.code)}, HTTP ${r.status}, ${r.body.length} bytes: ${r.stderr}`;

      // Never a short success, whatever the scenario.
      if (r.code === 0 && r.status === 200) assert.ok(r.body.equals(want), `a 200 that is not the whole object: ${why}`);
      switch (sc.expect.kind) {
        case 'complete':
          assert.equal(r.code, 0, why);
          assert.equal(r.status, 200, why);
          break;
        case 'broken':
          assert.ok(sc.expect.curlCodes.includes(r.code ?? -1), `expected curl exit ${sc.expect.curlCodes.join('/')}: ${why}`);
          assert.equal(r.status, 200, why);
          assert.ok(r.body.length < SIZE, why);
          assert.ok(r.body.equals(want.subarray(0, r.body.length)), 'the bytes that did arrive are the object’s');
          break;
        case 'status': {
          assert.equal(r.code, 0, why);
          assert.equal(r.status, sc.expect.status, why);
          const status = JSON.parse(r.body.toString()) as { kind: string; code: number; message: string };
          assert.equal(status.kind, 'Status');
          assert.equal(status.code, sc.expect.status);
          assert.ok(!r.body.toString().includes('not-checked'), 'no credential in the error body');
          const retryAfter = /^retry-after:\s*(\S+)/im.exec(r.headers)?.[1];
          if (sc.expect.retryAfter) assert.equal(retryAfter, sc.expect.retryAfter, r.headers);
          break;
        }
      }
      assert.equal(s3.count({ method: 'GET', key: keyOf(sc.name) }), sc.gets, `GetObject calls: ${JSON.stringify(s3.calls.filter((c) => c.key === keyOf(sc.name)))}`);
      if (sc.expect.kind === 'broken') {
        // The gateway let go of the failed upstream connection (for a stall: because its client left).
        const failed = s3.calls.filter((c) => c.key === keyOf(sc.name) && c.fault !== undefined);
        assert.ok(await waitFor(() => failed.every((c) => c.closed), 3000), 'the upstream connection of the failed read is still open');
      }
      await beside;
    });
  }

  test('the gateway still serves S3 objects after all that', async () => {
    s3.faults.length = 0;
    const r = await download('reset-mid', ['--fail']);
    assert.equal(r.code, 0, r.stderr);
    assert.ok(r.body.equals(objects.get('reset-mid')!));
  });

  test('no descriptor is left open: the count returns to the baseline', async () => {
    await s3.dropConnections();
    let now = 0;
    const settled = await waitFor(async () => (now = await fdCount(gw.proc.pid!)) <= baselineFds, 5000, 200);
    const extra = settled ? [] : (await fdTargets(gw.proc.pid!)).filter((t) => !baselineTargets.includes(t));
    assert.ok(settled, `open descriptors: ${now}, baseline ${baselineFds}; new: ${extra.join(', ')}`);
    assert.ok(gw.logs.some((l) => l.msg === 'upstream failed mid-stream'), 'the mid-stream failures are logged');
    assert.ok(!gw.output().includes(token), 'no token in the log');
  });
});

describe('a stalled store is cut by the gateway itself (same wiring in-process, short store timeouts)', () => {
  let dir: string;
  let s3: S3Double;
  let server: Server;
  let factory: DefaultStoreFactory;
  let token: string;
  let caFile: string;
  let url: string;
  const bytes = randomBytes(SIZE);

  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-rel-stall-'));
    const pki = await createTestPki();
    s3 = await startS3Double({ pki });
    s3.put(keyOf('stall-mid'), bytes);
    s3.put(keyOf('stall-head'), bytes);
    const locations = await writeLocations(dir, s3, pki);
    const loaded = loadConfig(['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', join(dir, 'state'), '--locations-file', locations], {});
    if (loaded.kind !== 'config') throw new Error(JSON.stringify(loaded));
    const log = createLogger('silent');
    factory = new DefaultStoreFactory({ fsRoot: loaded.config.fsRoot, timeouts: { connectMs: 2000, requestMs: 800, socketIdleMs: 800 } });
    const { parts } = await localMode(loaded.config, log, factory);
    const app = createApp({ ...parts, log, health: { ready: true }, info: () => ({}) });
    server = await listenHttps(app, { key: pki.key, cert: pki.cert, minVersion: 'TLSv1.2' }, { host: '127.0.0.1', port: 0 });
    url = `https://127.0.0.1:${(server.address() as { port: number }).port}/v1/namespaces/velero/backups`;
    caFile = join(dir, 'ca.pem');
    token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
  });

  after(async () => {
    await shutdown([server], 1000);
    factory.close();
    await s3.close();
    await rm(dir, { recursive: true, force: true });
  });

  test('a stall mid-object breaks the transfer at the idle timeout, not the client’s', async () => {
    s3.faults.push({ method: 'GET', key: keyOf('stall-mid'), fault: { kind: 'stall-mid' } });
    const started = Date.now();
    const r = await curl(['--cacert', caFile, '-H', `Authorization: Bearer ${token}`, '--max-time', '15', '-o', join(dir, 'stall.bin'), '-w', '%{http_code}', `${url}/stall-mid/contents`]);
    const elapsed = Date.now() - started;
    assert.ok(BROKEN.includes(r.code ?? -1), `curl exit ${String(r.code)}: ${r.stderr}`);
    assert.ok(elapsed < 5000, `cut after ${elapsed} ms`);
    assert.ok((await readFile(join(dir, 'stall.bin'))).length < SIZE);
    const stalled = s3.calls.filter((c) => c.fault === 'stall-mid');
    assert.ok(await waitFor(() => stalled.every((c) => c.closed), 2000), 'the stalled upstream connection was not closed');
  });

  test('a store that never answers is a 504 before any byte', async () => {
    s3.faults.push({ method: 'GET', key: keyOf('stall-head'), fault: { kind: 'stall-before-headers' } });
    const started = Date.now();
    const r = await curl(['--cacert', caFile, '-H', `Authorization: Bearer ${token}`, '--max-time', '15', '-w', '\n%{http_code}', `${url}/stall-head/contents`]);
    const elapsed = Date.now() - started;
    const lines = r.stdout.toString().split('\n');
    assert.equal(lines.at(-1), '504', r.stdout.toString());
    assert.equal((JSON.parse(lines.slice(0, -1).join('\n')) as { reason: string }).reason, 'Timeout');
    assert.ok(elapsed < 5000, `answered after ${elapsed} ms`);
    const stalled = s3.calls.filter((c) => c.fault === 'stall-before-headers');
    assert.ok(await waitFor(() => stalled.every((c) => c.closed), 2000), 'the unanswered upstream connection was not closed');
  });
});

/**
 * Reliability: a fuzz run of generated requests (10,000 by default) against the real gateway process
 * in local mode, over raw TLS sockets so that malformed requests reach it as sent
 * (test/support/request-fuzzer.ts: encodings, `..`, NUL, overlong segments, odd and lower-case
 * methods, bad versions, huge and malformed headers, framing tricks, Range / conditional /
 * Authorization forms). Checked for every request:
 * - the status is one the request may get: clean requests get exactly the predicted one, junk
 *   requests one of 200/206/304 (only with the right token, or on /healthz /readyz /v1/info) or
 *   400/401/403/404/405/413/416/431, and 417 only for a junk Expect header; never a 5xx. Only a
 *   CONNECT (Node has no 'connect' handler), or broken framing together with Expect: 100-continue
 *   (Node answers 100, then its parser fails and destroys the socket), may close without an answer;
 * - a 200 or 206 of a download carries exactly the object's bytes (or the range of them it claims);
 * - the canary's marker never appears in a body.
 * At the end the process still answers /healthz, exits 0 on SIGTERM, and logged no internal error.
 *
 * "No key outside the store's root is ever opened" is proven with strace (Debian package `strace`;
 * the test installs nothing and fails with that message if it is missing): the gateway runs under
 * `strace -f --seccomp-bpf -e trace=open,openat,openat2,creat`, and afterwards no traced open names a
 * path under the test directory outside the data and state directories, nor the canaries: a file next
 * to the data directory, and objects reached only through symlinks inside the data directory that
 * point out of it (a directory symlink and a file symlink, both requested with valid names). A
 * positive control (the demo log was opened) shows the trace sees the gateway's reads.
 *
 * The seed is printed; rerun one with FUZZ_SEED=<n> (and FUZZ_REQUESTS=<n> to change the count).
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, realpath, rm, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join, resolve } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { BACKUP_ARTIFACTS, RESTORE_ARTIFACTS } from '../../src/velero/artifacts.ts';
import { RawConnection, seededRandom, startWrappedGateway } from '../support/reliability.ts';
import type { RawResponse, WrappedGateway } from '../support/reliability.ts';
import { generateCase } from '../support/request-fuzzer.ts';
import type { FuzzCase, FuzzContext, FuzzTarget } from '../support/request-fuzzer.ts';

const SEED = (process.env.FUZZ_SEED ? Number(process.env.FUZZ_SEED) : randomBytes(4).readUInt32BE(0)) >>> 0;
const REQUESTS = Number(process.env.FUZZ_REQUESTS ?? 10_000);
const WORKERS = 8;
const ALLOWED = new Set([200, 206, 304, 400, 401, 403, 404, 405, 413, 416, 431]);

function hasStrace(): Promise<boolean> {
  return new Promise((res) => execFile('strace', ['-V'], (err) => res(!err)));
}

/** Checks one response; returns a problem, or undefined when it is as expected. */
function judge(c: FuzzCase, r: RawResponse | undefined, canary: string): string | undefined {
  if (r === undefined) return c.mayCloseWithoutAnswer ? undefined : 'the connection closed without a response';
  const s = r.status;
  if (s >= 500) return `a ${s}`;
  if (c.expect && !c.expect.includes(s)) return `status ${s}, expected ${c.expect.join('/')}`;
  // The browser page's redirects (`/` → the page, the page → sign-in) go only to the page's own paths: never an open redirect.
  if (s === 303) return /^\/ui\/(sign-in(\?[a-z-]+)?)?$/.test(r.headers.location ?? '') ? undefined : `a 303 to ${r.headers.location}`;
  if (!ALLOWED.has(s) && !(s === 417 && c.junkExpect)) return `unexpected status ${s}`;
  if (r.body.includes(canary)) return 'the canary’s content was served';
  if (!c.hasRange && (s === 206 || s === 416)) return `a ${s} without a Range header`;
  const success = s === 200 || s === 206 || s === 304;
  if (!success) return undefined;
  if (c.downloadPath && !c.authorized) return `a ${s} for a download without the right token`;
  if (!c.conditional && s === 304) return 'a 304 without a conditional header';
  if (!c.downloadPath || s === 304) return undefined;
  const want = c.target?.bytes;
  if (!want) return `a ${s} for a target that has no object`;
  if (s === 200) {
    if (c.head) return r.headers['content-length'] === String(want.length) ? undefined : `HEAD Content-Length ${r.headers['content-length']} for ${want.length} bytes`;
    return r.body.equals(want) ? undefined : `a 200 whose ${r.body.length} bytes are not the object's ${want.length}`;
  }
  const m = /^bytes (\d+)-(\d+)\/(\d+)$/.exec(r.headers['content-range'] ?? '');
  if (!m) return `a 206 with Content-Range ${r.headers['content-range']}`;
  const [start, end, size] = [Number(m[1]), Number(m[2]), Number(m[3])];
  if (size !== want.length || end >= size || start > end) return `a 206 with Content-Range ${m[0]} for ${want.length} bytes`;
  if (c.head) return undefined;
  return r.body.equals(want.subarray(start, end + 1)) ? undefined : `a 206 whose body is not bytes ${start}-${end}`;
}

describe(`fuzz: ${REQUESTS} generated requests against the real process (local mode, under strace), seed ${SEED}`, () => {
  let dir: string;
  let dataDir: string;
  let stateDir: string;
  let outsideDir: string;
  let canaryFile: string;
  let traceFile: string;
  let gw: WrappedGateway;
  let ca: Buffer;
  let ctx: FuzzContext;
  const canary = `CANARY-${randomBytes(8).toString('hex')}`;

  before(async () => {
    if (!(await hasStrace())) throw new Error('this test needs strace (Debian: apt-get install -y strace)');
    console.log(`fuzz seed ${SEED} (rerun with FUZZ_SEED=${SEED})`);
    dir = await mkdtemp(join(tmpdir(), 'vds-rel-fuzz-'));
    dataDir = join(dir, 'data');
    stateDir = join(dir, 'state');
    outsideDir = join(dir, 'outside');
    canaryFile = join(dir, 'canary.txt');
    traceFile = join(dir, 'openat.trace');
    gw = await startWrappedGateway(
      ['strace', '-f', '--seccomp-bpf', '-qq', '-e', 'trace=open,openat,openat2,creat', '-o', traceFile],
      ['--mode', 'local', '--data-dir', dataDir, '--state-dir', stateDir],
    );
    ca = await readFile(join(stateDir, 'tls.crt'));
    const token = (await readFile(join(stateDir, 'tokens.csv'), 'utf8')).split(',')[0]!;

    // Canaries outside the root: a file beside the data directory, and objects that valid names reach
    // through symlinks inside it (added after the start: the demo is written only into an empty directory).
    await writeFile(canaryFile, canary);
    await mkdir(join(outsideDir, 'backups', 'escape'), { recursive: true });
    await writeFile(join(outsideDir, 'backups', 'escape', 'escape-logs.gz'), canary);
    await symlink(join(outsideDir, 'backups', 'escape'), join(dataDir, 'backups', 'escape'));
    await mkdir(join(dataDir, 'backups', 'linked'));
    await symlink(canaryFile, join(dataDir, 'backups', 'linked', 'linked-logs.gz'));

    const targets: FuzzTarget[] = [];
    for (const [owner, name, defs] of [['backups', 'demo-backup', BACKUP_ARTIFACTS], ['restores', 'demo-restore', RESTORE_ARTIFACTS]] as const) {
      for (const def of defs) {
        const bytes = await readFile(join(dataDir, def.key(name))).catch(() => undefined);
        targets.push(bytes ? { owner, name, artifact: def.artifact, bytes, status: 200 } : { owner, name, artifact: def.artifact, status: 404 });
      }
    }
    targets.push({ owner: 'backups', name: 'escape', artifact: 'log', status: 400 }, { owner: 'backups', name: 'linked', artifact: 'log', status: 400 });
    // Validators as the gateway reports them, for conditional requests that should match.
    const c = await RawConnection.open(gw.port, { ca });
    for (const t of targets.filter((x) => x.bytes)) {
      const r = await c.exchange(`HEAD /v1/namespaces/velero/${t.owner}/${t.name}/${t.artifact} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`, { head: true });
      assert.equal(r?.status, 200);
      t.etag = r.headers.etag;
      t.lastModified = r.headers['last-modified'];
    }
    c.destroy();
    ctx = { token, namespace: 'velero', targets };
  });

  after(async () => {
    await gw?.stop('SIGKILL');
    if (dir) await rm(dir, { recursive: true, force: true });
  });

  test('every response is an expected one: no 5xx, no bytes without the token, no foreign bytes', async (t) => {
    const rand = seededRandom(SEED);
    const cases = Array.from({ length: REQUESTS }, () => generateCase(rand, ctx));
    const failures: string[] = [];
    const statuses = new Map<string, number>();
    let next = 0;
    let session: Buffer | undefined;
    const started = performance.now();

    const worker = async (): Promise<void> => {
      let conn: RawConnection | undefined;
      const open = async (): Promise<RawConnection> => {
        const c = await RawConnection.open(gw.port, { ca, ...(session && { session }) });
        c.socket.on('session', (s: Buffer) => (session = s));
        return c;
      };
      while (next < cases.length) {
        const i = next++;
        const c = cases[i]!;
        if (c.isolate || !conn || conn.closed) {
          conn?.destroy();
          conn = await open();
        }
        let r: RawResponse | undefined;
        try {
          r = await conn.exchange(c.raw, { head: c.head, timeoutMs: 15_000 });
        } catch (err) {
          failures.push(`#${i} ${c.what}: ${(err as Error).message}`);
          conn.destroy();
          continue;
        }
        const key = r === undefined ? 'closed' : String(r.status);
        statuses.set(key, (statuses.get(key) ?? 0) + 1);
        const problem = judge(c, r, canary);
        if (problem) failures.push(`#${i} ${c.clean ? 'clean' : 'junk'}: ${problem}; request ${JSON.stringify(c.raw.subarray(0, 600).toString('latin1'))}`);
        if (c.isolate || r === undefined || /close/i.test(r.headers.connection ?? '')) {
          conn.destroy();
          conn = undefined;
        }
      }
      conn?.destroy();
    };
    await Promise.all(Array.from({ length: WORKERS }, worker));
    const seconds = (performance.now() - started) / 1000;
    const summary = `${REQUESTS} requests in ${seconds.toFixed(1)} s, seed ${SEED}; statuses ${JSON.stringify(Object.fromEntries([...statuses].sort()))}`;
    t.diagnostic(summary);
    console.log(summary);
    assert.deepEqual(failures.slice(0, 25), [], `${failures.length} unexpected responses (seed ${SEED}, rerun with FUZZ_SEED=${SEED})`);
    // The run exercised what it claims to.
    for (const s of ['200', '206', '304', '400', '401', '404', '405', '431']) assert.ok((statuses.get(s) ?? 0) > 0, `no ${s} in the run`);
  });

  test('the process never crashed: it still answers /healthz, logged no internal error, exits 0', async () => {
    const c = await RawConnection.open(gw.port, { ca });
    const r = await c.exchange('GET /healthz HTTP/1.1\r\nHost: localhost\r\nConnection: close\r\n\r\n');
    c.destroy();
    assert.equal(r?.status, 200);
    assert.equal(r.body.toString(), 'ok');
    assert.equal(gw.proc.exitCode, null);
    assert.ok(!gw.logs.some((l) => l.msg === 'unhandled error' || (typeof l.status === 'number' && l.status >= 500)), 'an internal error was logged');
    assert.ok(!gw.output().includes(ctx.token), 'the token reached the log');
    assert.equal(await gw.stop('SIGTERM'), 0, gw.output().slice(-2000));
  });

  test('no path outside the data (and state) directory was ever opened (strace)', async () => {
    const trace = await readFile(traceFile, 'utf8');
    const opened = new Set<string>();
    // An O_NOFOLLOW open refused with ELOOP opened nothing: the kernel stopped at the link itself (the
    // filesystem store tries the key's last segment that way, then resolves a symlink with realpath).
    const refusedLinks = new Set<string>();
    for (const m of trace.matchAll(/^\d+\s+(?:open|openat|openat2|creat)\((?:[^,]+, )?"((?:[^"\\]|\\.)*)"(.*)$/gm)) {
      if (/O_NOFOLLOW/.test(m[2]!) && /= -1 ELOOP/.test(m[2]!)) refusedLinks.add(m[1]!);
      else opened.add(m[1]!);
    }
    const inside = (root: string, p: string): boolean => p === root || p.startsWith(root + '/');
    const demoLog = join(dataDir, 'backups', 'demo-backup', 'demo-backup-logs.gz');
    assert.ok(opened.has(demoLog), `the trace does not show the demo log being read (${opened.size} paths traced)`);
    const offending = [...opened].filter((p) => {
      const abs = resolve(p.startsWith('/') ? p : join(process.cwd(), p));
      if (p.includes(canary) || abs === canaryFile || inside(outsideDir, abs) || p.includes('/..')) return true;
      return inside(dir, abs) && !inside(dataDir, abs) && !inside(stateDir, abs);
    });
    assert.deepEqual(offending, [], 'paths outside the store root were opened');
    // A path inside the data directory that is a symlink out of it would be read from outside too.
    const viaLinks: string[] = [];
    for (const p of opened) {
      if (!inside(dataDir, p)) continue;
      const real = await realpath(p).catch(() => undefined);
      if (real !== undefined && !inside(await realpath(dataDir), real)) viaLinks.push(`${p} -> ${real}`);
    }
    assert.deepEqual(viaLinks, [], 'a path opened inside the data directory leads outside it');
    // The planted link out of the store was requested (400), and never opened: at most refused as a link.
    assert.ok(!opened.has(join(dataDir, 'backups', 'linked', 'linked-logs.gz')), 'the link out of the store was opened');
  });
});

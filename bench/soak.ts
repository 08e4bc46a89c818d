/**
 * `npm run bench:soak`: 200,000 requests against the real gateway process (local mode) from 32
 * keep-alive clients: mostly 4 KiB artifacts, some 256 KiB and 1 MiB, a few 16 MiB, byte ranges,
 * HEADs, 404s, 401s, and downloads the client abandons (mid-body, or before the answer). RSS and
 * open descriptors of the gateway are read after a warm-up (the first 10%) and at the end, both
 * times with the load paused and the clients' connections closed; the soak passes when both end
 * within 10% of their warm-up values, with no 5xx and no short body. BENCH_QUICK=1: 20,000 requests;
 * BENCH_SOAK_REQUESTS=N: N.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { Agent, request } from 'node:https';
import type { IncomingMessage } from 'node:http';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setTimeout as sleep } from 'node:timers/promises';
import type { BenchContext } from './lib/context.ts';
import { fdCount, rssBytes, tempDir } from './lib/proc.ts';
import { check, fmt, median, MiB } from './lib/report.ts';
import type { BenchResult } from './lib/report.ts';
import { startGateway } from './lib/servers.ts';
import type { Gateway } from './lib/servers.ts';

const CONCURRENCY = 32;
const BACKUPS = 4;

/** What one request does; `weight` out of the total decides how often. */
interface Kind {
  name: string;
  weight: number;
  method: 'GET' | 'HEAD';
  path: (b: string) => string;
  headers?: (token: string) => Record<string, string>;
  /** Abandon the download: after the first body chunk, or right after sending. */
  abort?: 'mid-body' | 'before-response';
  /** Statuses that are right for this kind. */
  expect: number[];
}

const auth = (token: string): Record<string, string> => ({ authorization: `Bearer ${token}` });
const base = (b: string): string => `/v1/namespaces/velero/backups/${b}`;

const KINDS: Kind[] = [
  { name: 'small 4 KiB', weight: 690, method: 'GET', path: (b) => `${base(b)}/log`, headers: auth, expect: [200] },
  { name: '256 KiB', weight: 100, method: 'GET', path: (b) => `${base(b)}/results`, headers: auth, expect: [200] },
  { name: '1 MiB', weight: 40, method: 'GET', path: (b) => `${base(b)}/resourcelist`, headers: auth, expect: [200] },
  { name: '16 MiB', weight: 2, method: 'GET', path: (b) => `${base(b)}/contents`, headers: auth, expect: [200] },
  { name: 'range of 1 MiB', weight: 50, method: 'GET', path: (b) => `${base(b)}/resourcelist`, headers: (t) => ({ ...auth(t), range: 'bytes=1000-99999' }), expect: [206] },
  { name: 'HEAD', weight: 30, method: 'HEAD', path: (b) => `${base(b)}/contents`, headers: auth, expect: [200] },
  { name: '404 missing backup', weight: 30, method: 'GET', path: () => `${base('no-such-backup')}/log`, headers: auth, expect: [404] },
  { name: '401 wrong token', weight: 20, method: 'GET', path: (b) => `${base(b)}/log`, headers: () => auth('not-a-token'), expect: [401] },
  { name: 'aborted mid-body', weight: 30, method: 'GET', path: (b) => `${base(b)}/contents`, headers: auth, abort: 'mid-body', expect: [200] },
  { name: 'aborted before the answer', weight: 8, method: 'GET', path: (b) => `${base(b)}/resourcelist`, headers: auth, abort: 'before-response', expect: [200] },
];
const TOTAL_WEIGHT = KINDS.reduce((a, k) => a + k.weight, 0);

/** Deterministic pick of the i-th request's kind (a fixed permutation of the weights). */
function kindOf(i: number): Kind {
  let x = (Math.imul(i + 1, 2654435761) >>> 0) % TOTAL_WEIGHT;
  for (const k of KINDS) {
    if (x < k.weight) return k;
    x -= k.weight;
  }
  return KINDS[0]!;
}

interface Outcome {
  status: number;
  /** Body bytes received, and what Content-Length said. */
  bytes: number;
  length: number | undefined;
  aborted: boolean;
  error?: string;
}

function once(agent: Agent, ca: string, port: number, kind: Kind, path: string, token: string): Promise<Outcome> {
  return new Promise((resolve) => {
    const req = request({ host: '127.0.0.1', port, ca, agent, method: kind.method, path, headers: kind.headers?.(token) ?? {} });
    let settled = false;
    const done = (o: Outcome): void => {
      if (!settled) {
        settled = true;
        resolve(o);
      }
    };
    req.on('error', (err) => done({ status: 0, bytes: 0, length: undefined, aborted: kind.abort !== undefined, error: err.message }));
    req.on('response', (res: IncomingMessage) => {
      const length = res.headers['content-length'] === undefined ? undefined : Number(res.headers['content-length']);
      let bytes = 0;
      res.on('data', (c: Buffer) => {
        bytes += c.length;
        if (kind.abort === 'mid-body') {
          req.destroy();
          done({ status: res.statusCode ?? 0, bytes, length, aborted: true });
        }
      });
      res.on('end', () => done({ status: res.statusCode ?? 0, bytes, length, aborted: false }));
      res.on('error', (err) => done({ status: res.statusCode ?? 0, bytes, length, aborted: kind.abort !== undefined, error: err.message }));
      res.on('close', () => done({ status: res.statusCode ?? 0, bytes, length, aborted: true, error: 'closed before the end' }));
    });
    req.end();
    if (kind.abort === 'before-response') {
      setTimeout(() => {
        req.destroy();
        done({ status: 0, bytes: 0, length: undefined, aborted: true });
      }, 2);
    }
  });
}

interface Snapshot {
  atRequest: number;
  rssMiB: number;
  fds: number;
}

export async function soak(ctx: BenchContext): Promise<BenchResult> {
  const total = Number(process.env.BENCH_SOAK_REQUESTS ?? (ctx.quick ? 20_000 : 200_000));
  const warmup = Math.round(total / 10);
  const dir = tempDir(await mkdtemp(join(tmpdir(), 'vds-bench-soak-')));
  const data = join(dir, 'data');
  const sizes: [string, number][] = [['-logs.gz', 4096], ['-results.gz', 256 * 1024], ['-resource-list.json.gz', MiB], ['.tar.gz', 16 * MiB]];
  for (let i = 0; i < BACKUPS; i++) {
    const b = `soak-${i}`;
    await mkdir(join(data, 'backups', b), { recursive: true });
    for (const [suffix, size] of sizes) await writeFile(join(data, 'backups', b, `${b}${suffix}`), randomBytes(size));
  }

  let gw: Gateway | undefined;
  try {
    gw = await startGateway(['--mode', 'local', '--data-dir', data, '--state-dir', join(dir, 'state'), '--no-demo'], join(dir, 'gateway.log'));
    const g = gw;
    const token = (await readFile(join(dir, 'state', 'tokens.csv'), 'utf8')).split(',')[0]!;
    const ca = await readFile(join(dir, 'state', 'tls.crt'), 'utf8');
    const port = Number(new URL(g.url).port);

    const byKind = new Map<string, { count: number; statuses: Record<string, number> }>();
    const problems: string[] = [];
    let unexpected = 0;
    let shortBodies = 0;
    let serverErrors = 0;
    const trend: Snapshot[] = [];

    // Pauses the load, closes the clients' connections, lets the gateway settle, then reads RSS and
    // descriptors a few times (median), so both snapshots see the gateway in the same state.
    const snapshot = async (atRequest: number): Promise<Snapshot> => {
      await sleep(2_000);
      const rss: number[] = [];
      const fds: number[] = [];
      for (let i = 0; i < 10; i++) {
        rss.push(await rssBytes(g.pid));
        fds.push(await fdCount(g.pid));
        await sleep(200);
      }
      return { atRequest, rssMiB: median(rss) / MiB, fds: median(fds) };
    };

    const phase = async (from: number, to: number): Promise<void> => {
      const agent = new Agent({ keepAlive: true, maxSockets: CONCURRENCY });
      let next = from;
      const started = Date.now();
      const worker = async (): Promise<void> => {
        while (next < to) {
          const i = next++;
          const kind = kindOf(i);
          const o = await once(agent, ca, port, kind, kind.path(`soak-${i % BACKUPS}`), token);
          const k = byKind.get(kind.name) ?? { count: 0, statuses: {} };
          k.count++;
          const key = o.status === 0 ? (o.aborted ? 'aborted' : 'error') : String(o.status);
          k.statuses[key] = (k.statuses[key] ?? 0) + 1;
          byKind.set(kind.name, k);
          if (o.status >= 500) serverErrors++;
          if (kind.abort) continue;
          if (!kind.expect.includes(o.status)) {
            unexpected++;
            if (problems.length < 10) problems.push(`${kind.name}: status ${o.status}${o.error ? ` (${o.error})` : ''}`);
          } else if (kind.method === 'GET' && o.length !== undefined && o.bytes !== o.length) {
            shortBodies++;
            if (problems.length < 10) problems.push(`${kind.name}: ${o.bytes} of ${o.length} bytes`);
          }
          if (i % 20_000 === 0 && i > from) {
            trend.push({ atRequest: i, rssMiB: (await rssBytes(g.pid)) / MiB, fds: await fdCount(g.pid) });
            ctx.log(`  ${i.toLocaleString('en-US')} requests: RSS ${fmt(trend.at(-1)!.rssMiB, 1)} MiB, ${trend.at(-1)!.fds} fds, ${fmt((i - from) / ((Date.now() - started) / 1000), 0)} req/s`);
          }
        }
      };
      await Promise.all(Array.from({ length: CONCURRENCY }, worker));
      agent.destroy();
    };

    const t0 = Date.now();
    await phase(0, warmup);
    const warm = await snapshot(warmup);
    ctx.log(`  after warm-up (${warmup.toLocaleString('en-US')} requests): RSS ${fmt(warm.rssMiB, 1)} MiB, ${warm.fds} fds`);
    await phase(warmup, total);
    const end = await snapshot(total);
    const seconds = (Date.now() - t0) / 1000;
    ctx.log(`  at the end (${total.toLocaleString('en-US')} requests): RSS ${fmt(end.rssMiB, 1)} MiB, ${end.fds} fds`);

    const rssDrift = (end.rssMiB - warm.rssMiB) / warm.rssMiB;
    const fdDrift = (end.fds - warm.fds) / warm.fds;
    const aborted = [...byKind.entries()].filter(([n]) => n.startsWith('aborted')).reduce((a, [, k]) => a + k.count, 0);
    return {
      id: 'soak',
      title: `5. Soak: ${total.toLocaleString('en-US')} requests (mixed sizes, ${aborted.toLocaleString('en-US')} abandoned by the client), ${CONCURRENCY} keep-alive clients, ${fmt(seconds, 0)} s`,
      table: {
        columns: ['after warm-up', 'end'],
        ratios: [['end', 'after warm-up']],
        rows: [
          { metric: 'gateway RSS', unit: 'MiB', values: { 'after warm-up': warm.rssMiB, end: end.rssMiB }, digits: 1 },
          { metric: 'open descriptors', unit: 'fds', values: { 'after warm-up': warm.fds, end: end.fds }, digits: 0 },
        ],
      },
      checks: [
        check('RSS at the end within 10% of after warm-up', `${rssDrift >= 0 ? '+' : ''}${fmt(rssDrift * 100, 1)}%`, Math.abs(rssDrift) <= 0.1),
        check('open descriptors at the end within 10% of after warm-up', `${fdDrift >= 0 ? '+' : ''}${fmt(fdDrift * 100, 1)}% (${warm.fds} → ${end.fds})`, Math.abs(fdDrift) <= 0.1),
        check('no 5xx, no unexpected status, no short body', `${serverErrors} 5xx, ${unexpected} unexpected, ${shortBodies} short${problems.length ? `: ${problems.join('; ')}` : ''}`, serverErrors + unexpected + shortBodies === 0),
      ],
      commands: [g.command, `${total.toLocaleString('en-US')} requests from node:https clients in bench/soak.ts (${CONCURRENCY} concurrent, keep-alive)`],
      notes: [
        `mix per ${TOTAL_WEIGHT} requests: ${KINDS.map((k) => `${k.weight} ${k.name}`).join(', ')}.`,
        'snapshots: load paused, client connections closed, 2 s to settle, median of 10 readings over 2 s (VmRSS, ls /proc/<pid>/fd).',
      ],
      raw: { total, warmup, seconds, warm, end, trend, byKind: Object.fromEntries(byKind) },
    };
  } finally {
    await gw?.stop();
  }
}

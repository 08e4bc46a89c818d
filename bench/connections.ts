/**
 * Benchmark 6, the cost of a connection and of a download that a client holds open, measured on the
 * real gateway process (RSS from /proc, file descriptors): what the defaults of --max-connections,
 * --max-connections-per-client and --max-concurrent-downloads are sized from (README "Security notes").
 *
 * One gateway process per store (the filesystem: the reader path of src/server/send.ts; S3 through
 * s3rver over HTTPS: the stream pipeline of src/server/download.ts), its own caps raised out of the
 * way and the stall deadline set to an hour, then, each from a settled baseline:
 * - N idle TLS connections (handshake done, nothing sent), then one small request on each (what a
 *   kept-alive connection holds), then closed;
 * - M stalled downloads: a GET of a 256 MiB object whose client never reads, held until the
 *   gateway's writes stop (its buffers and the kernel's are full), then closed.
 * Each figure is (RSS with them − RSS before) / count. BENCH_QUICK=1: 200 connections, 20 downloads.
 */
import { once } from 'node:events';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { connect } from 'node:tls';
import type { ConnectionOptions, TLSSocket } from 'node:tls';
import type { BenchContext } from './lib/context.ts';
import { writeSparseFile } from './lib/files.ts';
import { fdCount, rssBytes, tempDir } from './lib/proc.ts';
import { check, fmt, MiB } from './lib/report.ts';
import type { BenchResult } from './lib/report.ts';
import { startS3Location } from './lib/s3-location.ts';
import { startGateway } from './lib/servers.ts';

const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** RSS after it has stopped moving (two readings 500 ms apart within 256 KiB), at most 5 s. */
async function settledRss(pid: number): Promise<number> {
  let last = await rssBytes(pid);
  for (let i = 0; i < 10; i++) {
    await sleep(500);
    const now = await rssBytes(pid);
    if (Math.abs(now - last) < 256 * 1024) return now;
    last = now;
  }
  return last;
}

interface Phase {
  store: string;
  connections: number;
  downloads: number;
  idleBaseline: number;
  idleRss: number;
  afterRequestRss: number;
  idleFdsPerConnection: number;
  downloadBaseline: number;
  stalledRss: number;
  /** Bytes the gateway had sent per stalled download when measured (kernel buffers hold them). */
  sentPerDownload: number;
  releasedRss: number;
}

/** Opens `n` TLS connections from 127.0.0.2–127.0.0.201 in waves of 100. */
async function openConnections(port: number, ca: string, n: number): Promise<TLSSocket[]> {
  const out: TLSSocket[] = [];
  for (let i = 0; i < n; i += 100) {
    await Promise.all(
      Array.from({ length: Math.min(100, n - i) }, async (_, j) => {
        // localAddress reaches net.Socket#connect (Node's types for tls.connect leave it out).
        const s = connect({ host: '127.0.0.1', port, ca, servername: 'localhost', localAddress: `127.0.0.${2 + ((i + j) % 200)}` } as ConnectionOptions);
        s.on('error', () => undefined);
        out.push(s);
        await once(s, 'secureConnect');
      }),
    );
  }
  return out;
}

export async function connections(ctx: BenchContext): Promise<BenchResult> {
  const nConn = ctx.quick ? 200 : 1000;
  const nDown = ctx.quick ? 20 : 100;
  const dir = tempDir(await mkdtemp(join(tmpdir(), 'vds-bench-connections-')));
  const data = join(dir, 'data');
  const state = join(dir, 'state');
  await writeSparseFile(join(data, 'backups', 'big', 'big.tar.gz'), 256 * MiB, 16 * MiB);
  const args = ['--mode', 'local', '--data-dir', data, '--state-dir', state, '--no-demo', '--max-connections', '100000', '--max-connections-per-client', '100000', '--max-concurrent-downloads', '100000', '--send-stall-timeout', '1h'];
  const phases: Phase[] = [];
  const commands: string[] = [];

  const phase = async (store: string, extra: string[], path: string): Promise<void> => {
    const gw = await startGateway([...args, ...extra], join(dir, `gateway-${store}.log`));
    commands.push(gw.command);
    try {
      const ca = await readFile(join(state, 'tls.crt'), 'utf8');
      const token = (await readFile(join(state, 'tokens.csv'), 'utf8')).split(',')[0]!;
      const port = Number(new URL(gw.url).port);
      // Warm up: one download and one small request, so code paths and pools exist before the baseline.
      const warm = await openConnections(port, ca, 1);
      warm[0]!.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\nRange: bytes=0-1048575\r\n\r\n`);
      await sleep(1000);
      warm[0]!.destroy();

      const idleBaseline = await settledRss(gw.pid);
      const fds0 = await fdCount(gw.pid);
      const conns = await openConnections(port, ca, nConn);
      const idleRss = await settledRss(gw.pid);
      const idleFdsPerConnection = ((await fdCount(gw.pid)) - fds0) / nConn;
      for (const s of conns) s.write('GET /healthz HTTP/1.1\r\nHost: localhost\r\n\r\n');
      await sleep(1000);
      const afterRequestRss = await settledRss(gw.pid);
      for (const s of conns) s.destroy();
      await sleep(1000);

      const downloadBaseline = await settledRss(gw.pid);
      const clients = await openConnections(port, ca, nDown);
      // The clients never read: each socket is paused before any byte arrives.
      for (const s of clients) {
        s.pause();
        s.write(`GET ${path} HTTP/1.1\r\nHost: localhost\r\nAuthorization: Bearer ${token}\r\n\r\n`);
      }
      // Until the gateway's writes stop: the bytes it sent no longer grow (read from its access log at the end).
      await sleep(3000);
      const stalledRss = await settledRss(gw.pid);
      for (const s of clients) s.destroy();
      await sleep(1500);
      const releasedRss = await settledRss(gw.pid);
      const lines = (await readFile(join(dir, `gateway-${store}.log`), 'utf8')).split('\n').filter((l) => l.includes('"msg":"request"') && l.includes('/contents'));
      const sent = lines.slice(-nDown).map((l) => Number(/"bytes":(\d+)/.exec(l)?.[1] ?? 0));
      phases.push({
        store,
        connections: nConn,
        downloads: nDown,
        idleBaseline,
        idleRss,
        afterRequestRss,
        idleFdsPerConnection,
        downloadBaseline,
        stalledRss,
        sentPerDownload: sent.reduce((a, b) => a + b, 0) / Math.max(1, sent.length),
        releasedRss,
      });
      const p = phases.at(-1)!;
      ctx.log(
        `  ${store}: idle TLS ${fmt((p.idleRss - p.idleBaseline) / nConn / 1024, 1)} KiB/connection, after a request ${fmt((p.afterRequestRss - p.idleBaseline) / nConn / 1024, 1)} KiB; ` +
          `stalled download ${fmt((p.stalledRss - p.downloadBaseline) / nDown / MiB, 2)} MiB each (${fmt(p.sentPerDownload / MiB, 1)} MiB sent each); released to ${fmt(p.releasedRss / MiB, 1)} MiB`,
      );
    } finally {
      await gw.stop();
    }
  };

  await phase('filesystem', [], '/v1/namespaces/velero/backups/big/contents');
  const location = await startS3Location(tempDir(await mkdtemp(join(tmpdir(), 'vds-bench-connections-s3-'))), 'prod', true);
  try {
    await location.s3.putFile('prod/backups/bigs3/bigs3.tar.gz', join(data, 'backups', 'big', 'big.tar.gz'));
    await phase('S3', ['--locations-file', location.locationsFile], '/v1/namespaces/velero/backups/bigs3/contents');
  } finally {
    await location.stop();
  }

  const values = (f: (p: Phase) => number): Record<string, number> => Object.fromEntries(phases.map((p) => [p.store, f(p)]));
  const s3 = phases.find((p) => p.store === 'S3')!;
  const perDownloadS3 = (s3.stalledRss - s3.downloadBaseline) / s3.downloads;
  return {
    id: 'connections',
    title: `6. What a held connection costs: ${nConn} idle TLS connections and ${nDown} stalled downloads, gateway RSS`,
    table: {
      columns: phases.map((p) => p.store),
      ratios: [],
      rows: [
        { metric: 'RSS before the connections', unit: 'MiB', values: values((p) => p.idleBaseline / MiB), digits: 1 },
        { metric: 'per idle TLS connection', unit: 'KiB', values: values((p) => (p.idleRss - p.idleBaseline) / p.connections / 1024), digits: 1 },
        { metric: 'per kept-alive connection after one request', unit: 'KiB', values: values((p) => (p.afterRequestRss - p.idleBaseline) / p.connections / 1024), digits: 1 },
        { metric: 'file descriptors per connection', unit: '', values: values((p) => p.idleFdsPerConnection), digits: 2 },
        { metric: 'RSS before the downloads', unit: 'MiB', values: values((p) => p.downloadBaseline / MiB), digits: 1 },
        { metric: 'per stalled download', unit: 'MiB', values: values((p) => (p.stalledRss - p.downloadBaseline) / p.downloads / MiB), digits: 2 },
        { metric: 'sent per stalled download before it stalled', unit: 'MiB', values: values((p) => p.sentPerDownload / MiB), digits: 2 },
        { metric: 'RSS after they closed', unit: 'MiB', values: values((p) => p.releasedRss / MiB), digits: 1 },
      ],
    },
    checks: [check('every stalled download measured (S3)', `${fmt(perDownloadS3 / MiB, 2)} MiB each`, Number.isFinite(perDownloadS3))],
    commands,
    notes: [
      'connections come from 127.0.0.2–127.0.0.201 (per-client counting as in production), TLS 1.3 with the gateway\'s generated EC certificate.',
      'a stalled download is a raw TLS client that sends its GET and never reads; RSS is read after it settles (two readings 500 ms apart within 256 KiB).',
      'the paced figure (a client reading at 1 MiB/s) is benchmark 3\'s: peak − idle over 64 downloads.',
    ],
    raw: { phases },
  };
}

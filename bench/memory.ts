/**
 * Benchmark 3, bounded memory: 64 concurrent downloads of one object by curl clients limited to
 * 1 MiB/s each (`--limit-rate 1M`), ended after 30 s (`--max-time`), while the gateway's RSS
 * (VmRSS) is sampled every 100 ms; the peak is reported. Repeated with a 256 MiB, a 1 GiB and a 4 GiB
 * object from the filesystem store, and a 256 MiB and a 4 GiB object from S3 (s3rver over HTTPS: the
 * stream path, where every TLS read is a new Buffer), each with a fresh gateway process, and the
 * 256 MiB S3 object through the bare Node proxy (the floor of any Node HTTPS-to-HTTPS proxy). The
 * objects are sparse files whose first 64 MiB are random bytes: clients at 1 MiB/s for 30 s never read
 * past that, so every byte served is real data, and a 4 GiB object costs 64 MiB of disk (s3rver keeps
 * its copies whole). Then the burst: a fresh gateway serves 8 full-speed downloads of each store's
 * 256 MiB object at once, then sits idle for 10 s; its RSS then is compared with its RSS before the
 * burst (after one small warm-up download, which loads the code of that store's path).
 * BENCH_QUICK=1: 16 clients for 5 s.
 */
import { randomBytes } from 'node:crypto';
import { mkdir, mkdtemp, readFile, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import type { BenchContext } from './lib/context.ts';
import { curlArgs, tokenHeaderFile } from './lib/curl.ts';
import { writeSparseFile } from './lib/files.ts';
import { commandLine, rssBytes, run, sampleRss, tempDir } from './lib/proc.ts';
import { check, fmt, GiB, MiB, sizeLabel } from './lib/report.ts';
import type { BenchResult } from './lib/report.ts';
import { startS3Location } from './lib/s3-location.ts';
import { nodeMemory, startBareProxy, startGateway } from './lib/servers.ts';

const S3_SMALL = '256 MiB, S3';
const S3_LARGE = '4 GiB, S3';
const S3_PROXY_LABEL = '256 MiB, S3, bare proxy';
const S3_BARE_BURST = 'S3, bare proxy';
const BURST_CLIENTS = 8;
const BURST_IDLE_S = 10;

interface Burst {
  store: string;
  /** RSS 1 s after start, before any request. */
  freshRss: number;
  /** RSS after one small warm-up download (the store's code loaded), before the burst. */
  startRss: number;
  peakRss: number;
  /** RSS after the burst and BURST_IDLE_S seconds of idleness. */
  afterRss: number;
  bytes: number;
}

interface Phase {
  /** Column label: the size, and the store when it is not the filesystem. */
  label: string;
  size: number;
  /** Heap and external (Buffer) memory two thirds into the phase. */
  midRun: Record<string, number>;
  baselineRss: number;
  peakRss: number;
  samples: number;
  /** Bytes each client received, as curl reported them. */
  clientBytes: number[];
  clientsFailed: number;
}

export async function memory(ctx: BenchContext): Promise<BenchResult> {
  const clients = ctx.quick ? 16 : 64;
  const seconds = ctx.quick ? 5 : 30;
  const sizes = [256 * MiB, GiB, 4 * GiB];
  const dir = tempDir(await mkdtemp(join(tmpdir(), 'vds-bench-memory-')));
  const data = join(dir, 'data');
  const realBytes = 64 * MiB;
  for (const size of sizes) {
    const name = `obj-${size / MiB}m`;
    await writeSparseFile(join(data, 'backups', name, `${name}.tar.gz`), size, realBytes);
  }

  // The 4 KiB log the bursts' warm-up download fetches (from S3, a copy in s3rver).
  await mkdir(join(data, 'backups', 'small'), { recursive: true });
  await writeFile(join(data, 'backups', 'small', 'small-logs.gz'), randomBytes(4096));

  const phases: Phase[] = [];
  let command = '';
  let s3Command: string;
  let proxyCommand = '';
  let curlLine = '';
  const state = join(dir, 'state');
  const cacert = join(state, 'tls.crt');

  /** 64 paced clients against `url` while the server's RSS is sampled. */
  const measure = async (label: string, size: number, server: { pid: number; url: string; headerFile?: string; metricsUrl?: string }): Promise<void> => {
    await new Promise((r) => setTimeout(r, 1000));
    const sampler = await sampleRss(server.pid);
    const baselineRss = sampler.start;
    const extra = ['--limit-rate', '1M', '--max-time', String(seconds)];
    const args = curlArgs(server.url, { cacert, headerFile: server.headerFile, extra }, '%{size_download}');
    if (label === sizeLabel(GiB)) curlLine = `${commandLine('curl', args)}   # × ${clients}, concurrently`;
    const downloads = Promise.all(Array.from({ length: clients }, () => run('curl', args)));
    await new Promise((r) => setTimeout(r, (seconds * 2000) / 3));
    const midRun = server.metricsUrl ? await nodeMemory(server.metricsUrl, await readFile(cacert, 'utf8')).catch(() => ({})) : {};
    const results = await downloads;
    // One more second of sampling: buffers are released as the sockets close.
    await new Promise((r) => setTimeout(r, 1000));
    const { peak: peakRss, samples } = sampler.stop();
    const clientBytes = results.map((r) => Number(r.stdout.trim()) || 0);
    // 28: curl's own --max-time ended the transfer, which is how every client should end.
    const clientsFailed = results.filter((r) => r.code !== 28 && r.code !== 0).length;
    phases.push({ label, size, midRun, baselineRss, peakRss, samples, clientBytes, clientsFailed });
    const avg = clientBytes.reduce((a, b) => a + b, 0) / clients;
    ctx.log(`  ${label.padEnd(22)} peak RSS ${fmt(peakRss / MiB, 1)} MiB (idle ${fmt(baselineRss / MiB, 1)} MiB), ${samples} samples, ${fmt(avg / MiB, 1)} MiB per client${clientsFailed ? `, ${clientsFailed} clients failed` : ''}`);
  };

  const gatewayPhase = async (label: string, size: number, name: string, extraArgs: string[] = []): Promise<string> => {
    const gw = await startGateway(['--mode', 'local', '--data-dir', data, '--state-dir', state, '--no-demo', ...extraArgs], join(dir, `gateway-${name}.log`));
    try {
      const headerFile = await tokenHeaderFile(dir, (await readFile(join(state, 'tokens.csv'), 'utf8')).split(',')[0]!);
      await measure(label, size, { pid: gw.pid, url: `${gw.url}/v1/namespaces/velero/backups/${name}/contents`, headerFile, metricsUrl: gw.metricsUrl });
      return gw.command;
    } finally {
      await gw.stop();
    }
  };

  const bursts: Burst[] = [];
  /**
   * A fresh server, one small warm-up download (`warmUrl`), then BURST_CLIENTS full-speed downloads of
   * `url` at once, then BURST_IDLE_S seconds idle: does the memory the burst took come back?
   */
  const burst = async (store: string, server: { pid: number; url: string; warmUrl: string; headerFile?: string }): Promise<void> => {
    const { pid, url, warmUrl, headerFile } = server;
    await new Promise((r) => setTimeout(r, 1000));
    const freshRss = await rssBytes(pid);
    await run('curl', curlArgs(warmUrl, { cacert, headerFile }, '%{http_code}'));
    await new Promise((r) => setTimeout(r, 1000));
    const sampler = await sampleRss(pid);
    const args = curlArgs(url, { cacert, headerFile }, '%{size_download}');
    const results = await Promise.all(Array.from({ length: BURST_CLIENTS }, () => run('curl', args)));
    await new Promise((r) => setTimeout(r, BURST_IDLE_S * 1000));
    const { peak } = sampler.stop();
    const afterRss = await rssBytes(pid);
    const bytes = results.reduce((a, r) => a + (Number(r.stdout.trim()) || 0), 0);
    bursts.push({ store, freshRss, startRss: sampler.start, peakRss: peak, afterRss, bytes });
    ctx.log(`  burst, ${store.padEnd(22)} RSS fresh ${fmt(freshRss / MiB, 1)}, before ${fmt(sampler.start / MiB, 1)}, peak ${fmt(peak / MiB, 1)}, ${BURST_IDLE_S} s after ${fmt(afterRss / MiB, 1)} MiB; ${fmt(bytes / MiB, 0)} MiB served`);
  };
  const burstPhase = async (store: string, name: string, extraArgs: string[] = []): Promise<void> => {
    const gw = await startGateway(['--mode', 'local', '--data-dir', data, '--state-dir', state, '--no-demo', ...extraArgs], join(dir, `gateway-burst-${store}.log`));
    try {
      const headerFile = await tokenHeaderFile(dir, (await readFile(join(state, 'tokens.csv'), 'utf8')).split(',')[0]!);
      const url = `${gw.url}/v1/namespaces/velero/backups/${name}/contents`;
      await burst(store, { pid: gw.pid, url, warmUrl: `${gw.url}/v1/namespaces/velero/backups/small/log`, headerFile });
    } finally {
      await gw.stop();
    }
  };

  // The 1 GiB object first: it is the target's; the others check that the peak does not follow size.
  for (const size of [GiB, 256 * MiB, 4 * GiB]) {
    const c = await gatewayPhase(sizeLabel(size), size, `obj-${size / MiB}m`);
    if (size === GiB) command = c;
  }
  await burstPhase('filesystem', 'obj-256m');
  // From S3: a 256 MiB and a 4 GiB object through the gateway, the 256 MiB one through the bare proxy.
  const location = await startS3Location(tempDir(await mkdtemp(join(tmpdir(), 'vds-bench-memory-s3-'))), 'prod', true);
  try {
    const s3Args = ['--locations-file', location.locationsFile];
    for (const size of [256 * MiB, 4 * GiB]) {
      ctx.log(`seeding s3rver (${location.s3.endpoint}) with the ${sizeLabel(size)} object`);
      await location.s3.putFile(`prod/backups/s3-${size / MiB}m/s3-${size / MiB}m.tar.gz`, join(data, 'backups', `obj-${size / MiB}m`, `obj-${size / MiB}m.tar.gz`));
    }
    await location.s3.put('prod/backups/small/small-logs.gz', randomBytes(4096));
    s3Command = await gatewayPhase(S3_SMALL, 256 * MiB, 's3-256m', s3Args);
    await gatewayPhase(S3_LARGE, 4 * GiB, 's3-4096m', s3Args);
    const routes = join(dir, 'routes.json');
    await writeFile(routes, JSON.stringify({ '/obj': await location.presign('prod/backups/s3-256m/s3-256m.tar.gz'), '/small': await location.presign('prod/backups/small/small-logs.gz') }), { mode: 0o600 });
    for (const phase of ['slow', 'burst'] as const) {
      const proxy = await startBareProxy(cacert, join(state, 'tls.key'), routes, location.caFile);
      try {
        proxyCommand = proxy.command;
        const server = { pid: (await proxy.pids())[0]!, url: `${proxy.url}/obj` };
        if (phase === 'slow') await measure(S3_PROXY_LABEL, 256 * MiB, server);
        else await burst(S3_BARE_BURST, { ...server, warmUrl: `${proxy.url}/small` });
      } finally {
        await proxy.stop();
      }
    }
    await burstPhase('S3', 's3-256m', s3Args);
  } finally {
    await location.stop();
  }

  const burstLine = (store: string): string => {
    const b = bursts.find((x) => x.store === store);
    return b ? `The same through the bare Node proxy (the floor): ${fmt(b.afterRss / b.startRss)}× (${fmt(b.afterRss / MiB, 1)} vs ${fmt(b.startRss / MiB, 1)} MiB; peak ${fmt(b.peakRss / MiB, 1)}).` : '';
  };
  const byLabel = (label: string): Phase => phases.find((p) => p.label === label)!;
  const cols = phases.map((p) => p.label).sort((a, b) => byLabel(a).size - byLabel(b).size || a.length - b.length);
  const values = (f: (p: Phase) => number): Record<string, number> => Object.fromEntries(phases.map((p) => [p.label, f(p)]));
  const peak1g = byLabel(sizeLabel(GiB)).peakRss / MiB;
  const peakS3 = Math.max(byLabel(S3_SMALL).peakRss, byLabel(S3_LARGE).peakRss) / MiB;
  const spreadOf = (a: string, b: string): { small: number; large: number; spread: number } => {
    const small = byLabel(a).peakRss;
    const large = byLabel(b).peakRss;
    return { small, large, spread: Math.abs(large - small) / Math.min(large, small) };
  };
  const fsSpread = spreadOf(sizeLabel(256 * MiB), sizeLabel(4 * GiB));
  const s3Spread = spreadOf(S3_SMALL, S3_LARGE);
  const floor = byLabel(S3_PROXY_LABEL);
  const failed = phases.reduce((a, p) => a + p.clientsFailed, 0);
  return {
    id: 'memory',
    title: `3. Bounded memory: ${clients} concurrent downloads at 1 MiB/s each for ${seconds} s, gateway RSS sampled every 100 ms`,
    table: {
      columns: cols,
      ratios: [[sizeLabel(4 * GiB), sizeLabel(256 * MiB)], [S3_LARGE, S3_SMALL]],
      rows: [
        { metric: 'peak RSS', unit: 'MiB', values: values((p) => p.peakRss / MiB), digits: 1 },
        { metric: 'idle RSS before', unit: 'MiB', values: values((p) => p.baselineRss / MiB), digits: 1 },
        { metric: 'peak − idle', unit: 'MiB', values: values((p) => (p.peakRss - p.baselineRss) / MiB), digits: 1 },
        { metric: 'V8 heap used, mid-run', unit: 'MiB', values: values((p) => (p.midRun.heapUsed ?? NaN) / MiB), digits: 1 },
        { metric: 'external (Buffers), mid-run', unit: 'MiB', values: values((p) => (p.midRun.external ?? NaN) / MiB), digits: 1 },
        { metric: 'mean received per client', unit: 'MiB', values: values((p) => p.clientBytes.reduce((a, b) => a + b, 0) / p.clientBytes.length / MiB), digits: 1 },
      ],
    },
    checks: [
      check('peak RSS ≤ 150 MiB (1 GiB object)', `${fmt(peak1g, 1)} MiB`, peak1g <= 150),
      check(
        'peak RSS ≤ 150 MiB (S3, 256 MiB and 4 GiB objects)',
        `${fmt(peakS3, 1)} MiB (the bare Node proxy: ${fmt(floor.peakRss / MiB, 1)} MiB, ${fmt((floor.peakRss - floor.baselineRss) / MiB, 1)} above its idle ${fmt(floor.baselineRss / MiB, 1)})`,
        peakS3 <= 150,
      ),
      ...([['filesystem', fsSpread], ['S3', s3Spread]] as const).map(([store, { small, large, spread }]) =>
        check(`256 MiB vs 4 GiB peaks within 10% (${store})`, `${fmt(spread * 100, 1)}% (${fmt(small / MiB, 1)} vs ${fmt(large / MiB, 1)} MiB)`, spread <= 0.1),
      ),
      ...bursts.filter((b) => b.store !== S3_BARE_BURST).map((b) =>
        check(
          `RSS ${BURST_IDLE_S} s after a burst ≤ 1.2× before it (${b.store})`,
          `${fmt(b.afterRss / b.startRss)}× (${fmt(b.afterRss / MiB, 1)} vs ${fmt(b.startRss / MiB, 1)} MiB; peak ${fmt(b.peakRss / MiB, 1)}, fresh ${fmt(b.freshRss / MiB, 1)})`,
          b.afterRss <= 1.2 * b.startRss,
        ),
      ),
      ...(failed ? [check('every client ran until --max-time', `${failed} clients ended otherwise`, false)] : []),
    ],
    commands: [command, `${s3Command}   # the S3 phase: the same, with a --locations-file naming s3rver (HTTPS)`, `${proxyCommand}   # the reference: routes.json maps /obj to a pre-signed URL of the object`, curlLine],
    notes: [
      `objects: sparse files, the first ${sizeLabel(realBytes)} random bytes, the rest a hole; clients never read past ${fmt((seconds * MiB) / MiB, 0)} MiB.`,
      'a fresh gateway process per phase; RSS from /proc/<pid>/status VmRSS; curl --limit-rate 1M is 1 MiB/s.',
      `${S3_SMALL}, ${S3_LARGE}: the objects in s3rver (HTTPS, a test CA), reached through a --locations-file; s3rver runs beside the gateway and is not counted.`,
      `${S3_PROXY_LABEL}: the same object through bench/bare-proxy.ts (https.get of a pre-signed URL, piped; no SDK), the floor any Node HTTPS-to-HTTPS proxy sets here.`,
      `burst: a fresh gateway; one 4 KiB download (the store's code loaded); RSS "before"; ${BURST_CLIENTS} full-speed downloads of the 256 MiB object at once; ${BURST_IDLE_S} s idle; RSS "after". ${burstLine(S3_BARE_BURST)}`,
    ],
    raw: { clients, seconds, phases, bursts },
  };
}

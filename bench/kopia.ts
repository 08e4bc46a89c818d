/**
 * Benchmark 7, files out of a volume backup: a Kopia repository made by the real kopia with Velero's
 * settings (AES256-GCM-HMAC-SHA256, BLAKE2B-256-128, DYNAMIC-4M-BUZHASH, compression none as Velero's
 * uploader leaves it), copied into s3rver (HTTPS, a test CA) as Velero lays it out
 * (`<prefix>/kopia/<ns>/<blob>`, the backup's `<b>-podvolumebackups.json.gz`), read through the real
 * gateway process (local mode, a --locations-file naming s3rver) by curl; side by side with the same
 * 1 GiB of bytes as a plain backup object from the same s3rver, through the same gateway, and with
 * the reader itself in this process (no HTTP). In one run:
 *  - throughput: the 1 GiB file vs the 1 GiB object vs the reader, interleaved rounds (median);
 *  - first byte: warm; with the index cold and the key derived (a gateway with a 1 s
 *    --kopia-index-max-age: one request, a wait past the age, then a file in a directory not read
 *    yet; s3rver's request log shows every sample read the index blobs again); and the first
 *    request of a fresh gateway (key derivation, index, directories), next to a plain object's;
 *  - a directory listing of 10,000 entries, warm (?limit=10000);
 *  - peak RSS while 16 Range requests of 1/16 of the file each stream at once, vs the same on the
 *    plain object (a fresh gateway each);
 *  - the index's memory per million contents, in a separate process (bench/kopia-index-memory.ts).
 * BENCH_QUICK=1: a 64 MiB file, 2,000 files in the listed directory, 100,000 index entries, fewer samples.
 */
import { createHash } from 'node:crypto';
import { createReadStream } from 'node:fs';
import { mkdtemp, readFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { performance } from 'node:perf_hooks';
import { setTimeout as sleep } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { openRepository } from '../src/kopia/repository.ts';
import { DefaultStoreFactory } from '../src/stores/factory.ts';
import type { BenchContext } from './lib/context.ts';
import { curlCommand, curlTimed, tokenHeaderFile } from './lib/curl.ts';
import type { CurlOptions } from './lib/curl.ts';
import { makeVolume, treeDirName, uploadBackupRecords, uploadRepository, VELERO_PASSWORD } from './lib/kopia-volume.ts';
import type { MadeVolume } from './lib/kopia-volume.ts';
import { commandLine, cpuSecondsOf, run, sampleRss, tempDir } from './lib/proc.ts';
import { check, fmt, GiB, median, MiB, sizeLabel } from './lib/report.ts';
import type { BenchResult } from './lib/report.ts';
import { startS3Location } from './lib/s3-location.ts';
import type { S3Location } from './lib/s3-location.ts';
import { NODE, nodeMemory, requestDurations, startGateway } from './lib/servers.ts';
import type { Gateway } from './lib/servers.ts';

const PREFIX = 'prod';
const BACKUP = 'vol-bench';
const PLAIN = 'plain';
const OWNER = { namespace: 'bench-app', pod: 'db-0', volume: 'data' };
const VOLUME_ID = `${OWNER.namespace}:${OWNER.pod}:${OWNER.volume}`;
const STREAMS = 16;
const INDEX_MAX_AGE_MS = 1000;
const KOPIA_FILE = 'kopia file';
const KOPIA_ZSTD = 'kopia file, zstd';
const PLAIN_OBJECT = 'plain object';
const READER = 'reader in-process';
const INDEX_MEMORY = fileURLToPath(new URL('./kopia-index-memory.ts', import.meta.url));

interface IndexMemory {
  entries: number;
  indexBytes: number;
  buildMs: number;
  lookupMs: number;
  lookups: number;
  rssDelta: number;
  arrayBuffersDelta: number;
  heapUsedDelta: number;
  peakRssDelta: number;
}

async function sha256File(path: string): Promise<string> {
  const h = createHash('sha256');
  for await (const c of createReadStream(path, { highWaterMark: 8 * MiB })) h.update(c as Buffer);
  return h.digest('hex');
}

/** The body of a GET through curl, as text (for the bytes check and the listing's entry count). */
async function curlBody(url: string, o: CurlOptions, pipeTo = ''): Promise<string> {
  const args = ['--silent', '--show-error', '--fail', '--http1.1', ...(o.cacert ? ['--cacert', o.cacert] : []), ...(o.headerFile ? ['-H', `@${o.headerFile}`] : []), url];
  const r = pipeTo ? await run('bash', ['-c', `set -o pipefail; ${commandLine('curl', args)} | ${pipeTo}`]) : await run('curl', args);
  if (r.code !== 0) throw new Error(`curl ${url} failed (exit ${String(r.code)}): ${r.stderr.trim()}`);
  return r.stdout;
}

export async function kopiaVolume(ctx: BenchContext): Promise<BenchResult> {
  const bigSize = ctx.quick ? 64 * MiB : GiB;
  const flatFiles = ctx.quick ? 2_000 : 10_000;
  const coldSamples = ctx.quick ? 3 : 10;
  const kdfSamples = ctx.quick ? 2 : 5;
  const rounds = ctx.quick ? 1 : 3;
  const listingSamples = ctx.quick ? 5 : 20;
  const ttfbSamples = ctx.quick ? 5 : 20;
  const indexEntries = ctx.quick ? 100_000 : 1_000_000;
  const dir = tempDir(await mkdtemp(join(tmpdir(), 'vds-bench-kopia-')));
  const state = join(dir, 'state');
  const cacert = join(state, 'tls.crt');
  let location: S3Location | undefined;
  const gateways: Gateway[] = [];
  try {
    location = await startS3Location(dir, PREFIX, true);
    const s3 = location.s3;
    const t0 = Date.now();
    ctx.log(`making the repository with kopia: a ${sizeLabel(bigSize)} random file, ${flatFiles} files of 1 KiB in one directory, ${coldSamples + 1} directories of one 64 KiB file`);
    const vol: MadeVolume = await makeVolume(join(dir, 'volume'), { bigSize, flatFiles, treeDirs: coldSamples + 1, zstdSize: bigSize }, OWNER);
    const zstd = vol.zstd!;
    ctx.log(`  snapshot ${vol.snapshotID}: ${vol.contents} contents, the largest ${fmt(vol.largestContent / MiB, 2)} MiB (${Math.round((Date.now() - t0) / 1000)} s)`);
    const bigFile = join(vol.source, 'big', 'volume.img');
    const blobs = await uploadRepository(s3, vol.repo, PREFIX, OWNER.namespace);
    await uploadBackupRecords(s3, PREFIX, BACKUP, [
      { ...OWNER, snapshotID: vol.snapshotID, size: bigSize },
      { ...OWNER, volume: zstd.volume, snapshotID: zstd.snapshotID, size: bigSize },
    ]);
    // The reference: the same bytes as a plain backup object, and a 64 KiB one for first-byte times.
    await s3.putFile(`${PREFIX}/backups/${PLAIN}/${PLAIN}.tar.gz`, bigFile);
    await s3.putFile(`${PREFIX}/backups/${PLAIN}/${PLAIN}-logs.gz`, join(vol.source, 'tree', treeDirName(0), 'file.bin'));
    ctx.log(`  ${blobs} blobs and the ${sizeLabel(bigSize)} object in s3rver (${Math.round((Date.now() - t0) / 1000)} s)`);

    const gatewayArgs = ['--mode', 'local', '--data-dir', join(dir, 'data'), '--state-dir', state, '--no-demo', '--locations-file', location.locationsFile];
    const startOne = async (name: string, extra: string[] = []): Promise<{ gw: Gateway; o: CurlOptions }> => {
      const gw = await startGateway([...gatewayArgs, ...extra], join(dir, `gateway-${name}.log`));
      gateways.push(gw);
      const headerFile = await tokenHeaderFile(dir, (await readFile(join(state, 'tokens.csv'), 'utf8')).split(',')[0]!);
      return { gw, o: { cacert, headerFile } };
    };
    const volumeURL = (gw: Gateway, path: string, id = VOLUME_ID): string => `${gw.url}/v1/namespaces/velero/backups/${BACKUP}/volumes/${id}/files/${path}`;
    const plainURL = (gw: Gateway, artifact: 'contents' | 'log'): string => `${gw.url}/v1/namespaces/velero/backups/${PLAIN}/${artifact}`;
    const stopGateway = async (gw: Gateway): Promise<void> => {
      await gw.stop();
      gateways.splice(gateways.indexOf(gw), 1);
    };

    // ---------------------------------------------------------------- throughput, warm first byte, listing
    const main = await startOne('main');
    const { gw } = main;
    const mainCommand = gw.command;
    const sides = {
      [KOPIA_FILE]: { big: volumeURL(gw, 'big/volume.img'), small: volumeURL(gw, `tree/${treeDirName(0)}/file.bin`) },
      [PLAIN_OBJECT]: { big: plainURL(gw, 'contents'), small: plainURL(gw, 'log') },
    };
    const bigURL = { [KOPIA_FILE]: sides[KOPIA_FILE].big, [KOPIA_ZSTD]: volumeURL(gw, 'big/volume.txt', `${OWNER.namespace}:${OWNER.pod}:${zstd.volume}`), [PLAIN_OBJECT]: sides[PLAIN_OBJECT].big };
    for (const [url, source] of [[bigURL[KOPIA_FILE], bigFile], [bigURL[KOPIA_ZSTD], join(zstd.source, 'big', 'volume.txt')]] as const) {
      const expected = await sha256File(source);
      const got = (await curlBody(url, main.o, 'sha256sum')).split(' ')[0];
      if (got !== expected) throw new Error(`${url} differs from its source (sha256 ${got} vs ${expected})`);
    }
    ctx.log(`  both ${sizeLabel(bigSize)} files (compression none and zstd) through the gateway have their source's sha256`);

    // The reader in this process, over the same s3rver: what the gateway adds is HTTP and TLS out.
    const factory = new DefaultStoreFactory({ fsRoot: dir });
    const store = await factory.forSpec({
      name: 'bench/s3rver',
      provider: 'aws',
      bucket: s3.bucket,
      prefix: PREFIX,
      config: { region: 'us-east-1', s3Url: s3.endpoint, s3ForcePathStyle: 'true' },
      credential: await readFile(join(dir, 'credentials')),
      caBundle: await readFile(location.caFile!, 'utf8'),
    });
    const signal = new AbortController().signal;
    const repo = await openRepository(store, { prefix: `kopia/${OWNER.namespace}/`, password: VELERO_PASSWORD, signal });
    const snapshot = await repo.snapshot(vol.snapshotID, signal);
    const readInProcess = async (): Promise<{ mbps: number; cpuPerGiB: number; s3rverPerGiB: number }> => {
      const cpu0 = process.cpuUsage();
      const s0 = await cpuSecondsOf([s3.pid]);
      const start = performance.now();
      const f = await repo.openFile(snapshot, 'big/volume.img', { signal });
      let n = 0;
      for await (const c of f.stream) n += (c as Buffer).length;
      const seconds = (performance.now() - start) / 1000;
      if (n !== bigSize) throw new Error(`reader: got ${n} of ${bigSize} bytes`);
      const cpu = process.cpuUsage(cpu0);
      return { mbps: n / seconds / 1e6, cpuPerGiB: (cpu.user + cpu.system) / 1e6 / (n / GiB), s3rverPerGiB: ((await cpuSecondsOf([s3.pid])) - s0) / (n / GiB) };
    };

    // Warm-up: the gateway's S3 client and connections, the repository's index and directories.
    for (const n of [KOPIA_FILE, PLAIN_OBJECT] as const) {
      await curlTimed(sides[n].big, main.o);
      for (let i = 0; i < 3; i++) await curlTimed(sides[n].small, main.o);
    }
    await readInProcess();

    const names = [KOPIA_FILE, KOPIA_ZSTD, PLAIN_OBJECT, READER] as const;
    const mbps: Record<string, number[]> = Object.fromEntries(names.map((n) => [n, []]));
    const cpu: Record<string, { proxy: number[]; s3rver: number[] }> = Object.fromEntries(names.map((n) => [n, { proxy: [], s3rver: [] }]));
    for (let round = 0; round < rounds; round++) {
      for (let i = 0; i < names.length; i++) {
        const n = names[(i + round) % names.length]!;
        if (n === READER) {
          const r = await readInProcess();
          mbps[n]!.push(r.mbps);
          cpu[n]!.proxy.push(r.cpuPerGiB);
          cpu[n]!.s3rver.push(r.s3rverPerGiB);
        } else {
          const before = [await cpuSecondsOf([gw.pid]), await cpuSecondsOf([s3.pid])];
          const r = await curlTimed(bigURL[n], main.o);
          const after = [await cpuSecondsOf([gw.pid]), await cpuSecondsOf([s3.pid])];
          if (r.size !== bigSize) throw new Error(`${n}: got ${r.size} of ${bigSize} bytes`);
          mbps[n]!.push(r.speed / 1e6);
          cpu[n]!.proxy.push((after[0]! - before[0]!) / (bigSize / GiB));
          cpu[n]!.s3rver.push((after[1]! - before[1]!) / (bigSize / GiB));
        }
        ctx.log(`  ${n.padEnd(17)} round ${round + 1}: ${fmt(mbps[n]!.at(-1), 0)} MB/s; CPU-s/GiB: ${n === READER ? 'reader' : 'gateway'} ${fmt(cpu[n]!.proxy.at(-1))}, s3rver ${fmt(cpu[n]!.s3rver.at(-1))}`);
      }
    }
    factory.close();

    const ttfbWarm: Record<string, number[]> = { [KOPIA_FILE]: [], [PLAIN_OBJECT]: [] };
    for (let i = 0; i < ttfbSamples; i++) {
      for (const n of i % 2 ? ([PLAIN_OBJECT, KOPIA_FILE] as const) : ([KOPIA_FILE, PLAIN_OBJECT] as const)) ttfbWarm[n]!.push((await curlTimed(sides[n].small, main.o)).ttfb * 1000);
    }

    // What one warm request costs in store round trips (the object: one GetObject).
    const storeRequests: Record<string, number> = {};
    const storeRequestLog: Record<string, string[]> = {};
    for (const n of [KOPIA_FILE, PLAIN_OBJECT] as const) {
      await s3.flush();
      const before = s3.requests.length;
      await curlTimed(sides[n].small, main.o);
      await s3.flush();
      storeRequestLog[n] = s3.requests.slice(before).map((r) => `${r.method} ${r.url.replace(/^\/[^/]+\//, '')}${r.headers.range ? ` (${r.headers.range})` : ''}`);
      storeRequests[n] = storeRequestLog[n].length;
    }
    ctx.log(`  store requests of one warm 64 KiB request of the file:\n    ${storeRequestLog[KOPIA_FILE]!.join('\n    ')}`);

    const listURL = volumeURL(gw, 'flat/?limit=10000');
    const listing = JSON.parse(await curlBody(listURL, main.o)) as { entries: unknown[]; continue?: string };
    if (listing.entries.length !== flatFiles || listing.continue !== undefined) throw new Error(`the listing holds ${listing.entries.length} entries${listing.continue ? ' and a continue token' : ''}, expected ${flatFiles}`);
    const listMs: number[] = [];
    for (let i = 0; i < listingSamples; i++) listMs.push((await curlTimed(listURL, main.o)).total * 1000);
    // A warm request that reads index blobs again means the repository was not kept from the last one.
    const warmIndexReads = storeRequestLog[KOPIA_FILE]!.filter((r) => r.includes(`/kopia/${OWNER.namespace}/x`)).length;
    const inGateway = {
      [KOPIA_FILE]: median((await requestDurations(gw.logPath, `/files/tree/${treeDirName(0)}/file.bin`)).slice(-ttfbSamples)),
      [PLAIN_OBJECT]: median((await requestDurations(gw.logPath, `/backups/${PLAIN}/log`)).slice(-ttfbSamples)),
    };
    const listInGateway = median((await requestDurations(gw.logPath, '/files/flat/')).slice(-listingSamples));
    ctx.log(`  listing of ${flatFiles} entries: median ${fmt(median(listMs), 1)} ms; first byte warm: ${fmt(median(ttfbWarm[KOPIA_FILE]!), 1)} ms (file) vs ${fmt(median(ttfbWarm[PLAIN_OBJECT]!), 1)} ms (object)`);
    await stopGateway(gw);

    // ---------------------------------------------------------------- first byte, index cold, key derived
    const cold = await startOne('cold-index', ['--kopia-index-max-age', `${INDEX_MAX_AGE_MS}ms`]);
    const coldCommand = cold.gw.command;
    const indexGets = async (): Promise<number> => {
      await s3.flush();
      return s3.requests.filter((r) => r.method === 'GET' && r.url.includes(`/${PREFIX}/kopia/${OWNER.namespace}/x`)).length;
    };
    await curlTimed(volumeURL(cold.gw, `tree/${treeDirName(0)}/file.bin`), cold.o);
    const coldMs: number[] = [];
    const coldIndexReads: number[] = [];
    for (let i = 1; i <= coldSamples; i++) {
      await sleep(INDEX_MAX_AGE_MS + 500);
      const before = await indexGets();
      coldMs.push((await curlTimed(volumeURL(cold.gw, `tree/${treeDirName(i)}/file.bin`), cold.o)).ttfb * 1000);
      coldIndexReads.push((await indexGets()) - before);
    }
    ctx.log(`  first byte, index cold (${vol.contents} contents), key derived: median ${fmt(median(coldMs), 1)} ms; index blob GETs per sample: ${coldIndexReads.join(' ')}`);
    await stopGateway(cold.gw);

    // ---------------------------------------------------------------- first request of a fresh gateway
    const firstMs: Record<string, number[]> = { [KOPIA_FILE]: [], [PLAIN_OBJECT]: [] };
    for (let i = 0; i < kdfSamples; i++) {
      for (const n of [KOPIA_FILE, PLAIN_OBJECT] as const) {
        const fresh = await startOne(`fresh-${i}-${n.replace(' ', '-')}`);
        const url = n === KOPIA_FILE ? volumeURL(fresh.gw, `tree/${treeDirName(0)}/file.bin`) : plainURL(fresh.gw, 'log');
        firstMs[n]!.push((await curlTimed(url, fresh.o)).ttfb * 1000);
        await stopGateway(fresh.gw);
      }
    }
    ctx.log(`  first request of a fresh gateway: ${fmt(median(firstMs[KOPIA_FILE]!), 1)} ms (file: key derivation, index, directories) vs ${fmt(median(firstMs[PLAIN_OBJECT]!), 1)} ms (object)`);

    // ---------------------------------------------------------------- 16 ranged streams at once
    const part = Math.floor(bigSize / STREAMS);
    const streamPhase = async (
      n: typeof KOPIA_FILE | typeof PLAIN_OBJECT,
    ): Promise<{ idle: number; peak: number; samples: number; seconds: number; external: number; heapUsed: number; line: string }> => {
      const g = await startOne(`streams-${n.replace(' ', '-')}`);
      try {
        const url = n === KOPIA_FILE ? volumeURL(g.gw, 'big/volume.img') : plainURL(g.gw, 'contents');
        // One small request first: the repository open (or the S3 client) is not what is measured.
        await curlTimed(n === KOPIA_FILE ? volumeURL(g.gw, `tree/${treeDirName(0)}/file.bin`) : plainURL(g.gw, 'log'), g.o);
        await sleep(1000);
        const sampler = await sampleRss(g.gw.pid);
        const start = performance.now();
        let running = true;
        const downloads = Promise.all(
          Array.from({ length: STREAMS }, (_, i) => curlTimed(url, { ...g.o, extra: ['-r', `${i * part}-${(i + 1) * part - 1}`] })),
        ).finally(() => (running = false));
        // Node's own view while they run (the largest of samples every 500 ms): Buffers outside the heap, and the heap.
        let external = 0;
        let heapUsed = 0;
        const ca = await readFile(cacert, 'utf8');
        while (running) {
          await Promise.race([downloads.catch(() => undefined), sleep(500)]);
          if (!running) break;
          const m = await nodeMemory(g.gw.metricsUrl, ca).catch((): Record<string, number> => ({}));
          external = Math.max(external, m.external ?? 0);
          heapUsed = Math.max(heapUsed, m.heapUsed ?? 0);
        }
        const results = await downloads;
        const seconds = (performance.now() - start) / 1000;
        await sleep(1000);
        const { peak, samples } = sampler.stop();
        for (const r of results) if (r.httpCode !== 206 || r.size !== part) throw new Error(`${n}: a ranged stream got HTTP ${r.httpCode}, ${r.size} of ${part} bytes`);
        ctx.log(`  ${STREAMS} ranged streams, ${n}: peak RSS ${fmt(peak / MiB, 1)} MiB (idle ${fmt(sampler.start / MiB, 1)} MiB), ${samples} samples, ${fmt((part * STREAMS) / seconds / 1e6, 0)} MB/s in all`);
        return { idle: sampler.start, peak, samples, seconds, external, heapUsed, line: `${curlCommand(url, { ...g.o, extra: ['-r', `<i×${part}>-<(i+1)×${part}−1>`] })}   # i = 0..${STREAMS - 1}, concurrently` };
      } finally {
        await stopGateway(g.gw);
      }
    };
    const streams = { [KOPIA_FILE]: await streamPhase(KOPIA_FILE), [PLAIN_OBJECT]: await streamPhase(PLAIN_OBJECT) };

    // ---------------------------------------------------------------- the index alone
    const indexArgs = ['--expose-gc', INDEX_MEMORY, String(indexEntries)];
    const ir = await run(NODE, indexArgs);
    if (ir.code !== 0) throw new Error(`${commandLine(NODE, indexArgs)} failed:\n${ir.stderr}`);
    const index = JSON.parse(ir.stdout.trim().split('\n').at(-1)!) as IndexMemory;
    const perMillion = (bytes: number): number => (bytes / MiB) * (1_000_000 / index.entries);
    ctx.log(`  index of ${index.entries} entries: RSS +${fmt(index.rssDelta / MiB, 1)} MiB settled, peak +${fmt(index.peakRssDelta / MiB, 1)} MiB while loading, ${fmt(index.indexBytes / index.entries, 1)} B/entry`);

    // ---------------------------------------------------------------- the table
    const tp = Object.fromEntries(names.map((n) => [n, median(mbps[n]!)]));
    const ratio = tp[KOPIA_FILE]! / tp[PLAIN_OBJECT]!;
    const coldMedian = median(coldMs);
    const listMedian = median(listMs);
    const peakKopia = streams[KOPIA_FILE].peak / MiB;
    const indexPerMillion = perMillion(index.rssDelta);
    const perStream = (s: { idle: number; peak: number }): number => (s.peak - s.idle) / STREAMS / MiB;
    const both = (f: (n: typeof KOPIA_FILE | typeof PLAIN_OBJECT) => number): Record<string, number> => ({ [KOPIA_FILE]: f(KOPIA_FILE), [PLAIN_OBJECT]: f(PLAIN_OBJECT) });
    const worstPerStream = (3 * vol.largestContent) / MiB;
    return {
      id: 'kopia',
      title: `7. Files out of a volume backup: a ${sizeLabel(bigSize)} file of an encrypted Kopia repository (compression none, Velero's default; and zstd) in s3rver (HTTPS), through the gateway vs the same bytes as a plain object, curl (reference: the reader in-process)`,
      table: {
        columns: [...names],
        ratios: [[KOPIA_FILE, PLAIN_OBJECT], [KOPIA_ZSTD, PLAIN_OBJECT], [KOPIA_FILE, READER]],
        rows: [
          { metric: `throughput ${sizeLabel(bigSize)}, median of ${rounds}`, unit: 'MB/s', values: tp, digits: 0 },
          { metric: 'CPU of the gateway (or this process for the reader)', unit: 's/GiB', values: Object.fromEntries(names.map((n) => [n, median(cpu[n]!.proxy)])), digits: 2 },
          { metric: 's3rver CPU', unit: 's/GiB', values: Object.fromEntries(names.map((n) => [n, median(cpu[n]!.s3rver)])), digits: 2 },
          { metric: `first byte, 64 KiB, warm, median of ${ttfbSamples}`, unit: 'ms', values: both((n) => median(ttfbWarm[n]!)), digits: 1 },
          { metric: '64 KiB, warm, time inside the gateway (access log)', unit: 'ms', values: inGateway, digits: 1 },
          { metric: 's3rver requests per warm 64 KiB request', unit: '', values: storeRequests, digits: 0 },
          { metric: `first byte, index cold (${vol.contents} contents), key derived, median of ${coldSamples}`, unit: 'ms', values: { [KOPIA_FILE]: coldMedian }, digits: 1 },
          { metric: `first byte, first request of a fresh gateway (key derivation), median of ${kdfSamples}`, unit: 'ms', values: both((n) => median(firstMs[n]!)), digits: 1 },
          { metric: `directory listing, ${flatFiles} entries, warm, median of ${listingSamples}`, unit: 'ms', values: { [KOPIA_FILE]: listMedian }, digits: 1 },
          { metric: 'directory listing, time inside the gateway (access log)', unit: 'ms', values: { [KOPIA_FILE]: listInGateway }, digits: 1 },
          { metric: `peak RSS, ${STREAMS} ranged streams of ${sizeLabel(part)} at once`, unit: 'MiB', values: both((n) => streams[n].peak / MiB), digits: 1 },
          { metric: 'idle RSS before them', unit: 'MiB', values: both((n) => streams[n].idle / MiB), digits: 1 },
          { metric: '(peak − idle) per stream', unit: 'MiB', values: both((n) => perStream(streams[n])), digits: 1 },
          { metric: 'external (Buffers), largest while streaming', unit: 'MiB', values: both((n) => streams[n].external / MiB), digits: 1 },
          { metric: 'V8 heap used, largest while streaming', unit: 'MiB', values: both((n) => streams[n].heapUsed / MiB), digits: 1 },
          { metric: `index: RSS per million contents, settled (${index.entries} built)`, unit: 'MiB', values: { [READER]: indexPerMillion }, digits: 1 },
          { metric: 'index: arrayBuffers per million contents', unit: 'MiB', values: { [READER]: perMillion(index.arrayBuffersDelta) }, digits: 1 },
          { metric: 'index: V8 heap per million contents', unit: 'MiB', values: { [READER]: perMillion(index.heapUsedDelta) }, digits: 1 },
          { metric: 'index: peak RSS per million while loading', unit: 'MiB', values: { [READER]: perMillion(index.peakRssDelta) }, digits: 1 },
        ],
      },
      checks: [
        check('throughput ≥ 0.5× the plain object', `${fmt(ratio)}× (${fmt(tp[KOPIA_FILE], 0)} vs ${fmt(tp[PLAIN_OBJECT], 0)} MB/s)`, ratio >= 0.5),
        check('first byte ≤ 300 ms, index cold, key derived (median)', `${fmt(coldMedian, 1)} ms (index of ${vol.contents} contents)`, coldMedian <= 300),
        check(`peak RSS ≤ 350 MiB, ${STREAMS} streams at once`, `${fmt(peakKopia, 1)} MiB`, peakKopia <= 350),
        check('index memory ≤ 80 MiB per million contents', `${fmt(indexPerMillion, 1)} MiB (RSS, settled; ${fmt(index.indexBytes / index.entries, 0)} B/entry in one Buffer)`, indexPerMillion <= 80),
        check(`directory listing of ${flatFiles} entries ≤ 200 ms warm (median)`, `${fmt(listMedian, 1)} ms`, listMedian <= 200),
      ],
      commands: [
        `s3rver in a child process (test/support/s3rver.ts), HTTPS with a test CA, at ${s3.endpoint}`,
        ...vol.commands,
        `# then every blob <id>.f of the repository into the bucket at ${PREFIX}/kopia/${OWNER.namespace}/<id>, ${PREFIX}/backups/${BACKUP}/${BACKUP}-podvolumebackups.json.gz naming snapshot ${vol.snapshotID}, and big/volume.img again as ${PREFIX}/backups/${PLAIN}/${PLAIN}.tar.gz`,
        mainCommand,
        `${coldCommand}   # the cold-index gateway`,
        curlCommand(sides[KOPIA_FILE].big, main.o),
        curlCommand(bigURL[KOPIA_ZSTD], main.o),
        curlCommand(sides[PLAIN_OBJECT].big, main.o),
        curlCommand(listURL, main.o),
        streams[KOPIA_FILE].line,
        commandLine(NODE, indexArgs),
      ],
      notes: [
        `repository: kopia ${vol.kopiaVersion} with Velero's settings (AES256-GCM-HMAC-SHA256, BLAKE2B-256-128, DYNAMIC-4M-BUZHASH, scrypt-65536-8-1, format v3, index v2), compression none (what Velero's uploader sets); one snapshot holding the ${sizeLabel(bigSize)} file (fresh random bytes), ${flatFiles} files of 1 KiB in flat/ and ${coldSamples + 1} directories of one 64 KiB file: ${vol.contents} contents, ${blobs} blobs.`,
        `${KOPIA_ZSTD}: a second volume (${zstd.volume}, snapshot ${zstd.snapshotID}) in the same repository, one ${sizeLabel(bigSize)} file of hex text of fresh random bytes (about 2:1 for zstd, nothing to deduplicate), kopia policy --compression=zstd; it is compared with the same plain object (the plain path does not look at the bytes).`,
        `the plain object holds the file's bytes; both come from the same s3rver through the same gateway process, interleaved; the reader column reads the same file with openRepository over the S3 store in the benchmark's own process (no HTTP, no TLS out).`,
        `index cold: a gateway with --kopia-index-max-age ${INDEX_MAX_AGE_MS}ms; after one request, each sample waits ${(INDEX_MAX_AGE_MS + 500) / 1000} s and asks for tree/dNNN/file.bin of a directory not read before; s3rver saw ${coldIndexReads.join(', ')} index blob GETs in the samples (0 would mean the index was not reloaded). The key stays derived (the key cache outlives the index).`,
        `first request of a fresh gateway: a new process per sample, the file or the 64 KiB object first; for the file this includes scrypt-65536-8-1, the index and the directory objects.`,
        `streams: ${STREAMS} curl processes at once, each with -r over its own 1/${STREAMS} of the file (${sizeLabel(part)}), at full speed; RSS from /proc VmRSS every 100 ms, a fresh gateway per side. Per stream the reader holds the content being sent plus one read ahead (and, while one decrypts, its ciphertext): about 3 contents at the worst moment, ${fmt(worstPerStream, 0)} MiB with this repository's largest content (${fmt(vol.largestContent / MiB, 2)} MiB; DYNAMIC-4M-BUZHASH averages 4 MiB).`,
        `index: ${index.entries} synthetic entries as kopia's v2 index blobs (10 blobs, 1,000 packs), parsed and merged by the reader's own code in a fresh process${index.entries < 1_000_000 ? ' (per-million figures scaled up from fewer entries: RSS moves in allocator-sized steps, so they are rough)' : ''}; ${fmt(index.indexBytes / index.entries, 0)} bytes per entry in one Buffer; build ${fmt(index.buildMs, 0)} ms, ${index.lookups} lookups ${fmt(index.lookupMs, 0)} ms.`,
        ...(warmIndexReads > 0
          ? [`the gateway did NOT keep the repository between requests: a warm request made ${storeRequests[KOPIA_FILE]} store requests, ${warmIndexReads} of them index blob reads, opening the repository again (format blob, index, directories; the key stays derived); see raw.storeRequestLog.`]
          : [`a warm request made ${storeRequests[KOPIA_FILE]} store requests (the repository, its index and directories kept from earlier requests); see raw.storeRequestLog.`]),
        's3rver, the gateway, the reader and curl share the same 2 cores.',
      ],
      raw: { bigSize, flatFiles, contents: vol.contents, largestContent: vol.largestContent, blobs, rounds, mbps, cpuPerGiB: cpu, ttfbWarmMs: ttfbWarm, inGatewayMs: inGateway, listInGatewayMs: listInGateway, storeRequests, storeRequestLog, coldMs, coldIndexReads, firstMs, listMs, streams, index },
    };
  } finally {
    for (const g of [...gateways]) await g.stop();
    await location?.stop();
  }
}

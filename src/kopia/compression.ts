import { gunzipSync, inflateRawSync, zstdDecompressSync } from 'node:zlib';
import { CorruptRepositoryError, UnsupportedFeatureError } from './errors.ts';
import { decodeS2Stream } from './s2.ts';

/**
 * Kopia's compression header ids (repo/compression/): the 4-byte big-endian id that begins a
 * compressed content's plaintext, and the decoder for it. pgzip writes standard gzip; lz4 (0x1400)
 * was removed from kopia and is refused, as is any id not listed.
 */
const DECODERS = new Map<number, { name: string; decode: (b: Buffer) => Buffer }>();
function register(ids: number[], name: string, decode: (b: Buffer) => Buffer): void {
  for (const id of ids) DECODERS.set(id, { name, decode });
}
register([0x1000, 0x1001, 0x1002], 'gzip', (b) => gunzipSync(b));
register([0x1100, 0x1101, 0x1102, 0x1103], 'zstd', (b) => zstdDecompressSync(b));
register([0x1200, 0x1201, 0x1202, 0x1203], 's2', decodeS2Stream);
register([0x1300, 0x1301, 0x1302], 'pgzip', (b) => gunzipSync(b));
register([0x1500, 0x1501, 0x1502], 'deflate', (b) => inflateRawSync(b));

/**
 * Decompresses `data` = `headerID(4, BE) ‖ compressed`. `expected`, when the index names the
 * algorithm, must match the header. The result is checked against `originalLength` when given.
 */
export function decompress(data: Buffer, what: string, expected?: number, originalLength?: number): Buffer {
  if (data.length < 4) throw new CorruptRepositoryError('decompression', `${what}: compressed data without a header`);
  const id = data.readUInt32BE(0);
  if (expected !== undefined && expected !== id) {
    throw new CorruptRepositoryError('decompression', `${what}: compression header 0x${id.toString(16)} where the index says 0x${expected.toString(16)}`);
  }
  const decoder = DECODERS.get(id);
  if (!decoder) throw new UnsupportedFeatureError(`compression:0x${id.toString(16)}`, `${what}: compression 0x${id.toString(16)} is not supported`);
  let out: Buffer;
  try {
    out = decoder.decode(data.subarray(4));
  } catch (err) {
    if (err instanceof CorruptRepositoryError) throw err;
    throw new CorruptRepositoryError('decompression', `${what}: ${decoder.name} data does not decompress`, { cause: err });
  }
  if (originalLength !== undefined && out.length !== originalLength) {
    throw new CorruptRepositoryError('decompression', `${what}: decompressed to ${out.length} bytes, the index says ${originalLength}`);
  }
  return out;
}

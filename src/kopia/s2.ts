import { CorruptRepositoryError } from './errors.ts';

/*
 * A decoder for klauspost's S2 stream format, which kopia's `s2-*` compressors write and Kanister
 * sets as its global policy. No npm package decodes it: `snappyjs` and `snappy` handle Snappy only, and
 * S2 adds a repeat-offset form of the 1-byte-offset copy that Snappy decoders reject, so this is ours,
 * written from the format's description (klauspost/compress s2: README "Format", decode_other.go).
 *
 * Stream: chunks of `type(1) ‖ length(3, LE) ‖ body`; 0xff the stream identifier (`S2sTwO`, or
 * Snappy's `sNaPpY`), 0x00 a compressed block and 0x01 uncompressed data (both after a 4-byte masked
 * CRC-32C, not checked here: the content's AEAD tag has already authenticated every byte), 0x02-0x7f
 * reserved (an error), 0x80-0xfe skippable (padding, S2's seek index).
 */

function corrupt(why: string): CorruptRepositoryError {
  return new CorruptRepositoryError('decompression', `s2 data is corrupt: ${why}`);
}

/** Decodes one S2 block: a uvarint decoded length, then literal and copy elements. */
export function decodeS2Block(src: Buffer): Buffer {
  let s = 0;
  let n = 0;
  for (let shift = 0; ; shift += 7) {
    const b = src[s++];
    if (b === undefined || shift > 28) throw corrupt('bad block length');
    n += (b & 0x7f) * 2 ** shift;
    if (b < 0x80) break;
  }
  const dst = Buffer.allocUnsafe(n);
  let d = 0;
  let offset = 0;
  const need = (k: number): void => {
    if (s + k > src.length) throw corrupt('element past the end of the block');
  };
  while (s < src.length) {
    const tag = src[s] ?? 0;
    let length: number;
    switch (tag & 3) {
      case 0: {
        let x = tag >> 2;
        if (x < 60) s += 1;
        else {
          const bytes = x - 59;
          need(1 + bytes);
          x = src.readUIntLE(s + 1, bytes);
          s += 1 + bytes;
        }
        length = x + 1;
        if (length > n - d || length > src.length - s) throw corrupt('literal too long');
        src.copy(dst, d, s, s + length);
        d += length;
        s += length;
        continue;
      }
      case 1: {
        need(2);
        length = (tag >> 2) & 7;
        const toffset = ((tag & 0xe0) << 3) | (src[s + 1] ?? 0);
        s += 2;
        if (toffset === 0) {
          // S2's repeat: copy again from the previous offset.
          if (length === 5) {
            need(1);
            length = (src[s] ?? 0) + 4;
            s += 1;
          } else if (length === 6) {
            need(2);
            length = src.readUInt16LE(s) + (1 << 8);
            s += 2;
          } else if (length === 7) {
            need(3);
            length = src.readUIntLE(s, 3) + (1 << 16);
            s += 3;
          }
        } else {
          offset = toffset;
        }
        length += 4;
        break;
      }
      case 2:
        need(3);
        length = 1 + (tag >> 2);
        offset = src.readUInt16LE(s + 1);
        s += 3;
        break;
      default:
        need(5);
        length = 1 + (tag >> 2);
        offset = src.readUInt32LE(s + 1);
        s += 5;
    }
    if (offset <= 0 || d < offset || length > n - d) throw corrupt('copy outside the output');
    if (offset >= length) {
      dst.copy(dst, d, d - offset, d - offset + length);
      d += length;
    } else {
      for (let i = 0; i < length; i++, d++) dst[d] = dst[d - offset] ?? 0;
    }
  }
  if (d !== n) throw corrupt('block shorter than its stated length');
  return dst;
}

/** Decodes an S2 (or Snappy framed) stream. */
export function decodeS2Stream(src: Buffer): Buffer {
  const out: Buffer[] = [];
  let s = 0;
  let sawIdentifier = false;
  while (s < src.length) {
    if (s + 4 > src.length) throw corrupt('chunk header past the end');
    const type = src[s] ?? 0;
    const len = src.readUIntLE(s + 1, 3);
    const body = s + 4;
    if (body + len > src.length) throw corrupt('chunk past the end');
    const chunk = src.subarray(body, body + len);
    s = body + len;
    if (type === 0xff) {
      const id = chunk.toString('latin1');
      if (id !== 'S2sTwO' && id !== 'sNaPpY') throw corrupt('unknown stream identifier');
      sawIdentifier = true;
      continue;
    }
    if (!sawIdentifier) throw corrupt('no stream identifier');
    if (type === 0x00) {
      if (len < 4) throw corrupt('short compressed chunk');
      out.push(decodeS2Block(chunk.subarray(4)));
    } else if (type === 0x01) {
      if (len < 4) throw corrupt('short uncompressed chunk');
      out.push(chunk.subarray(4));
    } else if (type < 0x80) {
      throw corrupt(`reserved chunk type 0x${type.toString(16)}`);
    }
  }
  return Buffer.concat(out);
}

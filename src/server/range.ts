/**
 * Range and conditional-request handling for one representation (RFC 9110). Range syntax is parsed by
 * range-parser, the parser Express itself uses.
 */
import parseRange from 'range-parser';
import type { ByteRange, ObjectInfo } from '../stores/types.ts';

export type RangeDecision =
  | { kind: 'full' }
  | { kind: 'partial'; range: ByteRange }
  | { kind: 'unsatisfiable' };

/**
 * What to send for a Range header: one satisfiable range → partial; a malformed header, a multi-range
 * request, a non-bytes unit or a failed If-Range → the whole object; nothing satisfiable → 416.
 */
export function decideRange(info: ObjectInfo, rangeHeader: string | undefined, ifRange: string | undefined): RangeDecision {
  if (rangeHeader === undefined) return { kind: 'full' };
  if (ifRange !== undefined && !ifRangeMatches(info, ifRange)) return { kind: 'full' };
  const parsed = parseRange(info.size, rangeHeader, { combine: true });
  if (parsed === -2) return { kind: 'full' };
  if (parsed === -1) return { kind: 'unsatisfiable' };
  if (parsed.type !== 'bytes' || parsed.length !== 1) return { kind: 'full' };
  const [only] = parsed;
  return only ? { kind: 'partial', range: { start: only.start, end: only.end } } : { kind: 'full' };
}

function ifRangeMatches(info: ObjectInfo, ifRange: string): boolean {
  const v = ifRange.trim();
  if (v.startsWith('"') || v.startsWith('W/')) {
    // If-Range needs a strong comparison: a weak validator never matches.
    return info.etag !== undefined && !v.startsWith('W/') && v === info.etag;
  }
  const date = Date.parse(v);
  return info.lastModified !== undefined && !Number.isNaN(date) && Math.floor(info.lastModified.getTime() / 1000) * 1000 === date;
}

/** True when the client's cached copy is current (If-None-Match, else If-Modified-Since) → 304. */
export function notModified(info: ObjectInfo, ifNoneMatch: string | undefined, ifModifiedSince: string | undefined): boolean {
  if (ifNoneMatch !== undefined) {
    if (info.etag === undefined) return false;
    if (ifNoneMatch.trim() === '*') return true;
    const opaque = (tag: string): string => tag.trim().replace(/^W\//, '');
    const mine = opaque(info.etag);
    return ifNoneMatch.split(',').some((t) => opaque(t) === mine);
  }
  if (ifModifiedSince !== undefined && info.lastModified !== undefined) {
    const since = Date.parse(ifModifiedSince);
    return !Number.isNaN(since) && Math.floor(info.lastModified.getTime() / 1000) * 1000 <= since;
  }
  return false;
}

/**
 * The decisions every network adapter makes about a store's HTTP answer, in one place: which store
 * error a status (and the provider's error code) means, and how long Retry-After asks to wait. Each
 * adapter still words its own messages, with what its SDK tells it.
 */

export type StatusKind = 'notFound' | 'range' | 'redirect' | 'denied' | 'throttled' | 'timeout' | 'other';

/** A provider's error codes that mean the same as a status, e.g. S3's NoSuchKey for 404. */
export interface ProviderCodes {
  notFound?: ReadonlySet<string>;
  denied?: ReadonlySet<string>;
  throttled?: ReadonlySet<string>;
  timeout?: ReadonlySet<string>;
  range?: ReadonlySet<string>;
}

/** Classifies a non-success answer. Redirects are never followed by any adapter: they are failures. */
export function classifyStatus(status: number | undefined, code: string | undefined, codes: ProviderCodes = {}): StatusKind {
  const has = (set: ReadonlySet<string> | undefined): boolean => code !== undefined && set !== undefined && set.has(code);
  if (status === 404 || has(codes.notFound)) return 'notFound';
  if (status === 416 || has(codes.range)) return 'range';
  if (status !== undefined && status >= 300 && status < 400) return 'redirect';
  // A provider's "slow down" code wins over its status: GCS sends rateLimitExceeded as a 403.
  if (has(codes.throttled)) return 'throttled';
  if (status === 401 || status === 403 || has(codes.denied)) return 'denied';
  if (status === 429 || status === 503) return 'throttled';
  if (status === 408 || status === 504 || has(codes.timeout)) return 'timeout';
  return 'other';
}

/** Seconds a Retry-After header asks for (delta-seconds or an HTTP date); undefined when absent or unreadable. */
export function parseRetryAfter(value: string | null | undefined): number | undefined {
  const v = value?.trim();
  if (!v) return undefined;
  if (/^\d+$/.test(v)) return Number(v);
  const at = Date.parse(v);
  return Number.isNaN(at) ? undefined : Math.max(0, Math.ceil((at - Date.now()) / 1000));
}

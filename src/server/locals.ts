/**
 * What the middlewares of one request hand each other and the access log, in `res.locals`: declared
 * here once, read and written only through `localsOf`.
 */
import type { Response } from 'express';
import type { UserInfo } from '../auth/types.ts';
import type { Target } from '../velero/artifacts.ts';
import type { ProfileRepository, ProfileTarget } from '../velero/kanister-profiles.ts';
import type { Location } from '../velero/resolve.ts';
import type { VolumeRepository } from '../velero/volumes.ts';
import type { RouteLabel } from './metrics.ts';

/** A path inside a Kopia snapshot, once parsed. */
export interface SnapshotPath {
  segments: string[];
  /** The request path ended with `/` (a directory is expected). */
  directory: boolean;
}

/** What a volume route's path names once parsed: the volume id and the segments inside the snapshot. */
export interface VolumePath extends SnapshotPath {
  volume: string;
}

export interface RequestLocals {
  /** The request id (X-Request-Id), set first. */
  requestId?: string;
  /** performance.now() when the request arrived. */
  startedAt?: number;
  /** A download route (audited); `onDownload` tells the access log its route label. */
  download?: boolean;
  onDownload?: (route: RouteLabel) => void;
  /** Everything this request does upstream is aborted when its client leaves (signalOf). */
  signal?: AbortSignal;
  /** The authenticated caller. */
  user?: UserInfo;
  /** How the caller was authenticated when not by a bearer token. */
  via?: 'signed-url' | 'session';
  /** A browser's request (it came with the page's session cookie): errors are shown as a page. */
  browser?: boolean;
  /** The DownloadRequest a DownloadRequest route names, before it is read. */
  downloadRequest?: { namespace: string; name: string };
  /** The artifact asked for, once known. */
  target?: Target;
  /** A Profile route's target (Kanister), once parsed. */
  profileTarget?: ProfileTarget;
  /** Where the target lives, once resolved. */
  location?: Location;
  /** A volume route's volume and path inside the snapshot, once parsed; its repository once resolved. */
  volumePath?: VolumePath;
  volumeRepository?: VolumeRepository;
  /** A Profile snapshot route's snapshot id and path inside it, once parsed; its repository once resolved. */
  profileSnapshot?: SnapshotPath & { id: string };
  profileRepository?: ProfileRepository;
  /** Bytes sent of the body, and ms until the headers of a download. */
  bytes?: number;
  ttfb?: number;
}

export function localsOf(res: Response): RequestLocals {
  return res.locals as RequestLocals;
}

/**
 * The request's one AbortSignal, created on first use: it aborts when the client goes away before
 * the response is finished, so every upstream call of the request (reviews, reads, the store) stops.
 */
export function signalOf(res: Response): AbortSignal {
  const locals = localsOf(res);
  if (!locals.signal) {
    const ac = new AbortController();
    res.on('close', () => {
      if (!res.writableFinished) ac.abort(new Error('client closed the connection'));
    });
    locals.signal = ac.signal;
  }
  return locals.signal;
}

/** A value an earlier middleware of the chain must have set: its absence is a wiring mistake (500). */
export function earlier<T>(value: T | undefined, what: string): T {
  if (value === undefined) throw new Error(`the route's chain did not set ${what} before it was needed`);
  return value;
}

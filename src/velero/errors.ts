/** Domain errors of resolving a download target; the server maps `reason` to an HTTP status. */

/** A Kubernetes or Velero object (or an artifact of one) does not exist or is not served. */
export class NotFoundError extends Error {
  readonly reason = 'NotFound';
  /** `{group, kind, name}` for the Status body's details, as kube-apiserver fills them. */
  readonly details: { group?: string; kind: string; name: string };
  constructor(message: string, details: { group?: string; kind: string; name: string }) {
    super(message);
    this.name = 'NotFoundError';
    this.details = details;
  }
}

/** The request is well-formed but asks for something that can never exist (bad name, unknown artifact). */
export class InvalidTargetError extends Error {
  readonly reason = 'BadRequest';
  constructor(message: string) {
    super(message);
    this.name = 'InvalidTargetError';
  }
}

/** A Velero rule refuses the request although the caller was authenticated: 403. */
export class ForbiddenError extends Error {
  readonly reason = 'Forbidden';
  constructor(message: string) {
    super(message);
    this.name = 'ForbiddenError';
  }
}

/** A tenancy rule refuses the request (a tenant location without its own credential, ...): 403. */
export class TenancyError extends ForbiddenError {
  constructor(message: string) {
    super(message);
    this.name = 'TenancyError';
  }
}

/** A signed DownloadRequest URL that is not (or no longer) honoured: 403, with the same answer whatever exists. */
export class SignedUrlRefusedError extends ForbiddenError {
  constructor(message: string) {
    super(message);
    this.name = 'SignedUrlRefusedError';
  }
}

/** A reference that would cross namespaces: refused with 403, whatever the object says. */
export class CrossNamespaceError extends TenancyError {
  constructor(message: string) {
    super(message);
    this.name = 'CrossNamespaceError';
  }
}

/** The errors of a backup's volumes: each has a stable reason and its class's name. */
abstract class VolumeError extends Error {
  abstract readonly reason: string;
  constructor(message: string) {
    super(message);
    this.name = new.target.name;
  }
}

/**
 * A backup's volume exists but its data is in a form the gateway cannot read (a restic repository, an
 * uploader or data mover other than Velero's Kopia one, a namespace that cannot name a repository).
 * Proposed status 501: the request is valid and the volume is there; this server lacks the ability,
 * which a later version may gain. (422 would blame the request, which is not at fault.)
 */
export class UnsupportedVolumeError extends VolumeError {
  readonly reason = 'UnsupportedVolume';
}

/**
 * A backup's volume has no snapshot to read: its upload is still running, failed, or was cancelled, or
 * the volume was empty (Velero records no snapshot for it). Proposed status 409: the volume's state, not
 * the request, prevents the read; a running upload may have one later.
 */
export class VolumeNotReadyError extends VolumeError {
  readonly reason = 'VolumeNotReady';
}

/**
 * The repository password could not be obtained (Velero's repository Secret or its key is missing, or
 * a Kanister Profile's password Secret is missing or not Kanister's password Secret).
 * Proposed status 502, like a wrong password: what sits behind the gateway is not as it should be,
 * and the caller can do nothing about it. The message names the Secret and key, never a value.
 */
export class RepositoryPasswordUnavailableError extends VolumeError {
  readonly reason = 'RepositoryPasswordUnavailable';
}

/**
 * A file of a backup in the store (its podvolumebackups or volume info file) breaks a bound or is not
 * what Velero writes (not gzip, not a JSON array, too large once inflated). Proposed status 502: the
 * store behind the gateway holds something it will not read. The message names the file and the
 * bound, never the content.
 */
export class InvalidBackupFileError extends VolumeError {
  readonly reason = 'InvalidBackupFile';
}

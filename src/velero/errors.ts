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

/**
 * Typed errors of the Kopia reader. Inner layers never know HTTP status codes: whoever serves the
 * reader maps `reason` to a status in one table. Messages never contain the repository password or
 * any key material.
 */
export type KopiaErrorReason =
  /** The password does not open the format blob (its AES-GCM tag fails). */
  | 'WrongPassword'
  /** The repository uses a feature this reader refuses (ECC, an upgrade lock, an unknown algorithm...). */
  | 'UnsupportedFeature'
  /** A blob, content, object, snapshot or path does not exist. */
  | 'NotFound'
  /** Bytes in the repository are damaged: an AEAD tag fails, a blob is truncated, a structure is malformed. */
  | 'Corrupt'
  /** The caller asked for something malformed (a path with `..`, a bad object id, a range outside the file). */
  | 'InvalidRequest'
  /** Too many repository keys are being derived at once (see key-cache.ts): try again shortly. */
  | 'Busy'
  /** Opening a repository or loading its index, shared by several requests, ran past its time bound. */
  | 'Timeout';

export abstract class KopiaError extends Error {
  abstract readonly reason: KopiaErrorReason;
  constructor(message: string, options?: ErrorOptions) {
    super(message, options);
    this.name = new.target.name;
  }
}

/** The password does not decrypt `kopia.repository`. The message never repeats the password. */
export class WrongPasswordError extends KopiaError {
  readonly reason = 'WrongPassword';
  constructor() {
    super('the repository password is wrong: it does not decrypt the format blob kopia.repository');
  }
}

/** The repository needs a feature this reader does not implement; `feature` names it (e.g. `ecc:REED-SOLOMON-CRC32`). */
export class UnsupportedFeatureError extends KopiaError {
  readonly reason = 'UnsupportedFeature';
  readonly feature: string;
  constructor(feature: string, message: string) {
    super(message);
    this.feature = feature;
  }
}

/** A blob, content, object, snapshot or path that is not there. `what` says which kind. */
export class KopiaNotFoundError extends KopiaError {
  readonly reason = 'NotFound';
  readonly what: 'blob' | 'content' | 'snapshot' | 'path';
  constructor(what: 'blob' | 'content' | 'snapshot' | 'path', message: string, options?: ErrorOptions) {
    super(message, options);
    this.what = what;
  }
}

/** Damaged repository data; `kind` says how (an AEAD tag that fails is `aead`). */
export class CorruptRepositoryError extends KopiaError {
  readonly reason = 'Corrupt';
  readonly kind: 'aead' | 'truncated' | 'malformed' | 'decompression';
  constructor(kind: 'aead' | 'truncated' | 'malformed' | 'decompression', message: string, options?: ErrorOptions) {
    super(message, options);
    this.kind = kind;
  }
}

/** A malformed request: a path that would leave the snapshot, a bad object id, a range outside the file. */
export class InvalidRequestError extends KopiaError {
  readonly reason = 'InvalidRequest';
}

/** Too many different repositories' keys are being derived at once: try again shortly. */
export class KeyDerivationBusyError extends KopiaError {
  readonly reason = 'Busy';
  constructor() {
    super('too many repository keys are being derived at once; try again shortly');
  }
}

/** Work shared by several requests (opening a repository, loading its index) ran past its time bound. */
export class KopiaTimeoutError extends KopiaError {
  readonly reason = 'Timeout';
}

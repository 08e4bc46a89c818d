import { createHash } from 'node:crypto';
import { readFile } from 'node:fs/promises';
import { DEFAULT_POLL_INTERVAL_MS, FilePoller } from '../util/file-poll.ts';
import { CertificateError, isCertificateError } from './errors.ts';
import { loadCertificatePair } from './pair.ts';
import type { LoadedCertificate } from './types.ts';

/** Poll interval for the certificate files unless told otherwise. */
export const DEFAULT_RELOAD_INTERVAL_MS = DEFAULT_POLL_INTERVAL_MS;

/** Options for {@link CertificateReloader.start}. */
export interface CertificateReloaderOptions {
  /** How often both files are stat'ed, in milliseconds; default 2000. */
  intervalMs?: number;
  /** Called when a changed pair is refused (the old one stays in use); default `console.warn`. */
  onError?: (err: CertificateError) => void;
}

/** Called with the new pair after each swap. */
export type CertificateChangeListener = (cert: LoadedCertificate) => void;

interface Snapshot {
  cert: Buffer;
  key: Buffer;
  loaded: LoadedCertificate;
}

async function readBoth(certFile: string, keyFile: string): Promise<{ cert: Buffer; key: Buffer }> {
  const read = async (file: string): Promise<Buffer> => {
    try {
      return await readFile(file);
    } catch (err) {
      throw new CertificateError('CertificateUnreadable', `cannot read ${file}: ${(err as Error).message}`, [certFile, keyFile], {
        cause: err,
      });
    }
  };
  const [cert, key] = await Promise.all([read(certFile), read(keyFile)]);
  return { cert, key };
}

function toError(err: unknown, files: readonly string[]): CertificateError {
  if (isCertificateError(err)) return err;
  return new CertificateError('CertificateUnusable', err instanceof Error ? err.message : String(err), files, { cause: err });
}

/**
 * Serves a certificate/key pair from two files and follows changes to them without a restart
 * (kube-rbac-proxy's reloader). The first load must succeed. Afterwards both files are polled
 * (util/file-poll.ts), which also notices atomic renames and Kubernetes' `..data` symlink swaps; when their
 * bytes change and the new pair is valid (certificate parses, key matches, a secure context can be
 * built) it becomes {@link current} and the `change` listeners are called, typically with
 * `server.setSecureContext(tlsServerOptions(cert))`. A broken or half-written pair is reported to
 * `onError` and ignored; the next change is tried again. Call {@link stop} so the process can exit.
 */
export class CertificateReloader {
  readonly certFile: string;
  readonly keyFile: string;
  #snapshot: Snapshot;
  #listeners = new Set<CertificateChangeListener>();
  #onError: (err: CertificateError) => void;
  readonly #poller: FilePoller<boolean>;
  // The last refused bytes (or read failure), so one bad state is reported once, not on every poll.
  #lastRefused: string | undefined;

  private constructor(certFile: string, keyFile: string, opts: CertificateReloaderOptions, first: Snapshot) {
    this.certFile = certFile;
    this.keyFile = keyFile;
    this.#snapshot = first;
    this.#onError = opts.onError ?? ((err) => console.warn(err.message));
    this.#poller = new FilePoller([certFile, keyFile], () => this.#check(), opts.intervalMs ?? DEFAULT_RELOAD_INTERVAL_MS);
  }

  /**
   * Loads the pair and starts watching. Rejects with a CertificateError naming the files when the
   * first load fails: a server must not start without a usable certificate.
   */
  static async start(certFile: string, keyFile: string, opts: CertificateReloaderOptions = {}): Promise<CertificateReloader> {
    const { cert, key } = await readBoth(certFile, keyFile);
    const loaded = loadCertificatePair({ certPem: cert.toString('utf8'), keyPem: key.toString('utf8') }, { certFile, keyFile });
    return new CertificateReloader(certFile, keyFile, opts, { cert, key, loaded });
  }

  /** The pair in use: PEMs, fingerprint and notAfter. */
  get current(): LoadedCertificate {
    return this.#snapshot.loaded;
  }

  /** Adds a listener called with each newly swapped-in pair. */
  on(event: 'change', listener: CertificateChangeListener): this {
    if (event === 'change') this.#listeners.add(listener);
    return this;
  }

  /** Removes a listener added with {@link on}. */
  off(event: 'change', listener: CertificateChangeListener): this {
    if (event === 'change') this.#listeners.delete(listener);
    return this;
  }

  /**
   * Reads both files now (as a poll would, e.g. on SIGHUP) and swaps when their bytes changed and
   * form a valid pair. Resolves true when it swapped; never rejects (refusals go to `onError`).
   */
  reload(): Promise<boolean> {
    return this.#poller.poll();
  }

  /** Stops watching; later changes are ignored and the process is free to exit. */
  stop(): void {
    this.#poller.stop();
  }

  async #check(): Promise<boolean> {
    if (this.#poller.stopped) return false;
    const { certFile, keyFile } = this;
    const files = [certFile, keyFile];
    let cert: Buffer;
    let key: Buffer;
    try {
      ({ cert, key } = await readBoth(certFile, keyFile));
    } catch (err) {
      this.#refuse(toError(err, files), `unreadable:${(err as Error).message}`);
      return false;
    }
    const old = this.#snapshot;
    if (cert.equals(old.cert) && key.equals(old.key)) {
      this.#lastRefused = undefined;
      return false;
    }
    let loaded: LoadedCertificate;
    try {
      loaded = loadCertificatePair({ certPem: cert.toString('utf8'), keyPem: key.toString('utf8') }, { certFile, keyFile });
    } catch (err) {
      this.#refuse(toError(err, files), createHash('sha256').update(cert).update('\0').update(key).digest('hex'));
      return false;
    }
    if (this.#poller.stopped) return false;
    this.#snapshot = { cert, key, loaded };
    this.#lastRefused = undefined;
    for (const listener of this.#listeners) {
      try {
        listener(loaded);
      } catch (err) {
        const message = `a certificate reload listener failed: ${err instanceof Error ? err.message : String(err)}`;
        this.#report(new CertificateError('CertificateUnusable', message, files, { cause: err }));
      }
    }
    return true;
  }

  #refuse(err: CertificateError, state: string): void {
    if (this.#poller.stopped || state === this.#lastRefused) return;
    this.#lastRefused = state;
    const fp = this.#snapshot.loaded.fingerprint;
    this.#report(
      new CertificateError(err.reason, `${err.message}; keeping the current certificate (sha256 ${fp})`, err.files, { cause: err }),
    );
  }

  #report(err: CertificateError): void {
    try {
      this.#onError(err);
    } catch {
      // A throwing error handler must not break the watcher.
    }
  }
}

/**
 * The credential of a GCS location. With a service-account key, every request carries a self-signed
 * JWT (RS256, signed locally with the key, `scope` claim devstorage.read_only), which Google accepts as
 * a bearer token for Cloud Storage: no OAuth token exchange, so it works the same against
 * storage.googleapis.com, a private endpoint, another universe and a test double offline. Without a
 * key and with `ambientCredentials`, application default credentials (GoogleAuth).
 */
import { GoogleAuth, JWT, gaxios } from 'google-auth-library';
import type { AdapterOptions } from './adapter.ts';
import { parseGcpServiceAccountKey } from './credentials/gcp.ts';
import { InvalidLocationError, StoreUnavailableError } from './errors.ts';
import { systemCause } from './translate.ts';

/** The only scope the gateway asks for: it never writes. */
export const GCS_READ_SCOPE = 'https://www.googleapis.com/auth/devstorage.read_only';

const DEFAULT_UNIVERSE = 'googleapis.com';
const UNIVERSE_DOMAIN = /^[a-z0-9]([a-z0-9-]*[a-z0-9])?(\.[a-z0-9]([a-z0-9-]*[a-z0-9])?)+$/i;

/** Something that yields the auth headers for the next request. */
export interface AuthSource {
  headers(): Promise<Headers>;
}

function checkUniverse(location: string, value: string, source: string): string {
  if (!UNIVERSE_DOMAIN.test(value)) throw new InvalidLocationError(`location ${location}: ${source} is not a domain name`);
  return value.toLowerCase();
}

/** The location's credential and the universe it belongs to; throws InvalidLocationError. */
export function gcsAuth(options: AdapterOptions): { auth: AuthSource; universe: string } {
  const { spec } = options;
  const location = spec.name;
  let auth: AuthSource;
  const configured = spec.config.universeDomain?.trim()
    ? checkUniverse(location, spec.config.universeDomain.trim(), 'config universeDomain')
    : undefined;

  let universe = configured ?? DEFAULT_UNIVERSE;
  if (spec.credential !== undefined) {
    const key = parseGcpServiceAccountKey(spec.credential, location);
    const fromKey = key.universeDomain ? checkUniverse(location, key.universeDomain, 'the credential\'s universe_domain') : undefined;
    if (configured !== undefined && fromKey !== undefined && configured !== fromKey) {
      throw new InvalidLocationError(
        `location ${location}: config universeDomain "${configured}" does not match the credential's universe_domain "${fromKey}"`,
      );
    }
    universe = configured ?? fromKey ?? DEFAULT_UNIVERSE;
    const jwt = new JWT({
      email: key.clientEmail,
      key: key.privateKey,
      keyId: key.privateKeyId,
      scopes: [GCS_READ_SCOPE],
      universeDomain: universe,
    });
    // Not a constructor option in google-auth-library 11: without it the JWT client exchanges the
    // key for an OAuth token at oauth2.googleapis.com.
    jwt.useJWTAccessWithScope = true;
    // No URL: the token then depends on the scope only, so one signature serves every object for its hour.
    auth = { headers: () => jwt.getRequestHeaders() };
  } else if (options.ambientCredentials) {
    const adc = new GoogleAuth({ scopes: [GCS_READ_SCOPE], ...(configured ? { universeDomain: configured } : {}) });
    // A key file found through GOOGLE_APPLICATION_CREDENTIALS signs its own JWTs too.
    adc.useJWTAccessWithScope = true;
    auth = { headers: () => adc.getRequestHeaders() };
  } else {
    throw new InvalidLocationError(
      `location ${location} needs a credential: give it a GCP service-account key (the BSL's spec.credential)`,
    );
  }

  return { auth, universe };
}

/** Authorization (and, for ADC user credentials with a quota project, x-goog-user-project). */
export async function authHeaders(source: AuthSource, signal: AbortSignal, what: string): Promise<Record<string, string>> {
  let headers: Headers;
  try {
    headers = await new Promise<Headers>((resolve, reject) => {
      const onAbort = (): void => reject(signal.reason as Error);
      signal.addEventListener('abort', onAbort, { once: true });
      source.headers().then(resolve, reject).finally(() => signal.removeEventListener('abort', onAbort));
    });
  } catch (err) {
    if (signal.aborted) throw err;
    // google-auth-library's messages describe what is missing, never a token or key.
    throw new StoreUnavailableError(`${what}: could not obtain GCP credentials`, {
      cause: err instanceof gaxios.GaxiosError ? systemCause(err) : err,
    });
  }
  const authorization = headers.get('authorization');
  if (!authorization) throw new StoreUnavailableError(`${what}: GCP credentials gave no Authorization header`);
  const userProject = headers.get('x-goog-user-project');
  return userProject ? { authorization, 'x-goog-user-project': userProject } : { authorization };
}

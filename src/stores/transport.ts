/**
 * The one transport under the S3, Azure and GCS adapters: a location's sockets (keep-alive pool, TLS
 * trust, endpoint guard), its three timeouts, and its endpoint's validation. An adapter hands these
 * agents to its SDK and wraps its calls; it decides none of this itself.
 *
 * The timeouts, each implemented once:
 * - connect: a socket not connected (for TLS: handshake done) within `connectMs` is destroyed, in the
 *   agent, so it holds whatever SDK sends the request;
 * - headers: `withHeaderDeadline` aborts a call whose response headers have not come within `requestMs`
 *   (credential requests included), and never touches the body that follows;
 * - idle: `watchIdle` ends a body whose upstream sends nothing for `socketIdleMs` while the body is
 *   being read. A body paused because the gateway's own client reads slowly is not idle: that client
 *   is the server's to cut (its send-stall deadline), and the upstream must not be blamed for it.
 */
import http from 'node:http';
import https from 'node:https';
import { addAbortSignal } from 'node:stream';
import type { Duplex, Readable } from 'node:stream';
import type { AdapterOptions } from './adapter.ts';
import { guardAgent } from './endpoint-guard.ts';
import { InvalidLocationError, isStoreError, StoreTimeoutError, StoreUnavailableError } from './errors.ts';
import { cut } from './range.ts';
import type { Reconciled } from './range.ts';
import { withRetries } from './retry.ts';
import { errnoOf, systemCause } from './translate.ts';
import type { ProviderCodes, ProviderFacts } from './translate.ts';
import { agentTlsOptions } from './trust.ts';

/** What our own timers raise: `ETIMEDOUT`, which the error table maps to StoreTimeoutError. */
export class TransportTimeout extends Error {
  readonly code = 'ETIMEDOUT';
}

/** A location's two agents: one per scheme, both under its trust, timeouts and endpoint guard. */
export interface Agents {
  http: http.Agent;
  https: https.Agent;
  /** The agent for a request to `url`. */
  for(url: string): http.Agent;
  /** Closes every socket of both pools. */
  destroy(): void;
}

/** Destroys a socket that has not connected (and, for TLS, finished its handshake) within `ms`. */
function armConnectTimeout(socket: Duplex | null | undefined, ms: number, secure: boolean): void {
  if (!socket) return;
  const timer = setTimeout(() => socket.destroy(new TransportTimeout(`no connection to the store within ${ms} ms`)), ms);
  const clear = (): void => clearTimeout(timer);
  socket.once(secure ? 'secureConnect' : 'connect', clear);
  socket.once('close', clear);
}

function withConnectTimeout<A extends http.Agent>(agent: A, ms: number, secure: boolean): A {
  const create = agent.createConnection.bind(agent);
  agent.createConnection = (...args: Parameters<http.Agent['createConnection']>): ReturnType<http.Agent['createConnection']> => {
    const socket = create(...args);
    armConnectTimeout(socket, ms, secure);
    return socket;
  };
  return agent;
}

/**
 * The agents of one location: keep-alive, at most `maxSockets` sockets, the most recently used socket
 * first (so idle ones age out), the location's TLS trust, the connect timeout, and (for a tenant's
 * location) the endpoint guard on every connection.
 */
export function createAgents({ spec, trust, timeouts, maxSockets, endpointPolicy }: AdapterOptions): Agents {
  const common = { keepAlive: true, maxSockets, scheduling: 'lifo' as const };
  const plain = guardAgent(withConnectTimeout(new http.Agent(common), timeouts.connectMs, false), endpointPolicy, spec.name);
  const secure = guardAgent(
    withConnectTimeout(new https.Agent({ ...common, ...agentTlsOptions(trust) }), timeouts.connectMs, true),
    endpointPolicy,
    spec.name,
  );
  return {
    http: plain,
    https: secure,
    for: (url) => (url.startsWith('https:') ? secure : plain),
    destroy() {
      plain.destroy();
      secure.destroy();
    },
  };
}

/**
 * Runs `call` with a signal that aborts when `signal` does or when `ms` pass, whichever first; the
 * timer ends when `call` settles (at the response headers), so the body is never cut by it. A call cut
 * by the timer rejects with a TransportTimeout, whatever the SDK made of the abort.
 */
export async function withHeaderDeadline<T>(ms: number, signal: AbortSignal, call: (signal: AbortSignal) => Promise<T>): Promise<T> {
  const deadline = new AbortController();
  const timer = setTimeout(() => deadline.abort(new TransportTimeout(`no response from the store within ${ms} ms`)), ms);
  try {
    return await call(AbortSignal.any([signal, deadline.signal]));
  } catch (err) {
    if (deadline.signal.aborted && !signal.aborted) throw deadline.signal.reason;
    throw err;
  } finally {
    clearTimeout(timer);
  }
}

/**
 * One call to the store up to its response headers: retried by the one retry policy (retry.ts), the
 * whole within the header deadline `ms` and the caller's `signal`. `attempt` gets the signal to give
 * its SDK; `factsOf` reads a failed attempt's facts for the policy.
 */
export function callStore<T>(
  ms: number,
  signal: AbortSignal,
  codes: ProviderCodes,
  factsOf: (err: unknown) => ProviderFacts,
  attempt: (signal: AbortSignal) => Promise<T>,
): Promise<T> {
  return withHeaderDeadline(ms, signal, (combined) => withRetries(combined, codes, factsOf, () => attempt(combined)));
}

/**
 * Ends `source` with a StoreTimeoutError (`what` says whose bytes) when it delivers nothing for `ms`
 * while its consumer wants bytes. Time spent paused (the consumer's backpressure) does not count, and
 * the clock restarts when it resumes. Attach after `source` is piped: a 'data' listener on an unpiped
 * stream would start it flowing.
 */
function watchIdle(source: Readable, ms: number, what: string): void {
  const timer = setTimeout(function check() {
    if (source.destroyed || source.readableEnded) return;
    if (source.isPaused()) {
      timer.refresh();
      return;
    }
    source.destroy(new StoreTimeoutError(`${what}: the store sent nothing for ${ms} ms`));
  }, ms);
  // The body's socket keeps the process alive while it matters; the timer alone must not.
  timer.unref();
  const refresh = (): void => void timer.refresh();
  source.on('data', refresh);
  source.on('resume', refresh);
  source.once('close', () => clearTimeout(timer));
}

/** How an upstream body is handed out (see `upstreamBody`). */
export interface BodyOptions {
  /** `location L: object "k"`, for messages. */
  what: string;
  idleMs: number;
  /** Destroys the body when aborted; absent when the adapter ties the abort to its SDK itself. */
  signal?: AbortSignal;
}

/**
 * The body the caller gets from an upstream's: exactly the range reconciled (range.ts), length-checked,
 * under the idle timeout, and failing only with store errors: a connection that breaks mid-body (reset,
 * closed early) is a StoreUnavailableError whatever the SDK called it.
 */
export function upstreamBody(source: Readable, { sent, want }: Pick<Reconciled, 'sent' | 'want'>, opts: BodyOptions): Readable {
  // Registered before `cut` pipes the source, so this listener runs first and the consumer sees a store error.
  source.once('error', (err: unknown) => {
    const mapped = isStoreError(err)
      ? err
      : new StoreUnavailableError(`${opts.what}: the store connection broke while sending the object (${errnoOf(err) ?? 'closed'})`, {
          cause: systemCause(err),
        });
    body.destroy(mapped);
  });
  const body = cut(source, sent, want);
  watchIdle(source, opts.idleMs, opts.what);
  return opts.signal === undefined ? body : addAbortSignal(opts.signal, body);
}

/**
 * A location's endpoint setting (`s3Url`, `storageAccountURI`, `storeEndpoint`), checked the same way
 * for every provider: an http(s) URL with a host, and no user info, query or fragment (a credential
 * there, such as a SAS token, would be configuration and would appear wherever the endpoint is shown).
 * `schemeOptional` adds `https://` to a bare host (Velero's Azure docs show the URI without one).
 */
export function parseEndpoint(location: string, setting: string, value: string, schemeOptional = false): URL {
  const given = value.trim();
  const fail = (what: string): never => {
    throw new InvalidLocationError(`location ${location}: config ${setting} ${what}`);
  };
  let url: URL | undefined;
  try {
    url = new URL(schemeOptional && !/^[a-z][a-z0-9+.-]*:\/\//i.test(given) ? `https://${given}` : given);
  } catch {
    url = undefined;
  }
  if (url === undefined || (url.protocol !== 'http:' && url.protocol !== 'https:') || url.hostname === '') {
    return fail('must be an http:// or https:// URL');
  }
  if (url.username !== '' || url.password !== '') fail('must not contain user information');
  if (url.search !== '' || url.hash !== '') fail('must not have a query or fragment');
  return url;
}

/**
 * The Kubernetes client: a KubeConfig (in-cluster service account or a kubeconfig file), the few API
 * groups the gateway uses, a rate limiter, and per-call abort signals and timeouts.
 */
import {
  AdmissionregistrationV1Api,
  ApiException,
  ApiextensionsV1Api,
  AuthenticationV1Api,
  AuthorizationV1Api,
  CoreV1Api,
  CustomObjectsApi,
  KubeConfig,
  Observable,
} from '@kubernetes/client-node';
import type { ConfigurationOptions, RequestContext, ResponseContext } from '@kubernetes/client-node';
import { Budgets } from './limiter.ts';
import type { BudgetName, BudgetObserver } from './limiter.ts';

export type { BudgetName } from './limiter.ts';

export const SERVICE_ACCOUNT_DIR = '/var/run/secrets/kubernetes.io/serviceaccount';

export interface KubeClientOptions {
  /** A kubeconfig file; without it, the in-cluster service account. */
  kubeconfig?: string;
  context?: string;
  qps: number;
  burst: number;
  /** Each API call is abandoned after this long. */
  timeoutMs: number;
  /** Told when a budget refuses a call (metrics). */
  onBudgetRejected?: BudgetObserver;
}

export interface KubeClients {
  kc: KubeConfig;
  core: CoreV1Api;
  custom: CustomObjectsApi;
  authn: AuthenticationV1Api;
  authz: AuthorizationV1Api;
  apiext: ApiextensionsV1Api;
  /** MutatingWebhookConfigurations (the webhook's caBundle). */
  admission: AdmissionregistrationV1Api;
  /**
   * Runs one API call under `budget`'s limiter (default `background`: the gateway's own work), with
   * `signal` and the call timeout applied to the request. `call` receives the per-request options to
   * pass as the generated API's last argument. A budget that is spent rejects with RateLimitedError.
   */
  call<T>(signal: AbortSignal, call: (options: ConfigurationOptions) => Promise<T>, budget?: BudgetName): Promise<T>;
}

export function createKubeClients(opts: KubeClientOptions): KubeClients {
  const kc = new KubeConfig();
  if (opts.kubeconfig) kc.loadFromFile(opts.kubeconfig);
  else kc.loadFromCluster();
  if (opts.context) kc.setCurrentContext(opts.context);
  const budgets = new Budgets(opts.qps, opts.burst, opts.onBudgetRejected);
  return {
    kc,
    core: kc.makeApiClient(CoreV1Api),
    custom: kc.makeApiClient(CustomObjectsApi),
    authn: kc.makeApiClient(AuthenticationV1Api),
    authz: kc.makeApiClient(AuthorizationV1Api),
    apiext: kc.makeApiClient(ApiextensionsV1Api),
    admission: kc.makeApiClient(AdmissionregistrationV1Api),
    async call(signal, call, budget = 'background') {
      const timed = AbortSignal.any([signal, AbortSignal.timeout(opts.timeoutMs)]);
      await budgets.take(budget, timed);
      return call(signalOptions(timed));
    },
  };
}

/**
 * Per-request options that attach an AbortSignal to the generated client's request. The object-style
 * API hands these options to its observable layer, so the middleware returns its (minimal) Observable.
 */
export function signalOptions(signal: AbortSignal): ConfigurationOptions {
  return {
    middleware: [
      {
        pre: (ctx: RequestContext) => {
          ctx.setSignal(signal);
          return new Observable(Promise.resolve(ctx));
        },
        post: (ctx: ResponseContext) => new Observable(Promise.resolve(ctx)),
      },
    ],
    middlewareMergeStrategy: 'append',
  };
}

/**
 * The HTTP status of a failed API call, if the API server answered: only the client library's
 * ApiException carries one. Other errors have a numeric `code` that is no status (a timeout is a
 * DOMException whose legacy `code` is 23), so they give undefined.
 */
export function statusOf(err: unknown): number | undefined {
  if (!(err instanceof ApiException)) return undefined;
  const code: unknown = err.code;
  return typeof code === 'number' && Number.isInteger(code) && code >= 100 && code <= 599 ? code : undefined;
}

/**
 * A short, body-free account of why an API call failed, for messages: `HTTP 403`, `timed out`,
 * `aborted`, a network error code (`ECONNREFUSED`), else the error's name. Never the ApiException's
 * message, which embeds the response body.
 */
export function describeApiFailure(err: unknown): string {
  const code = statusOf(err);
  if (code !== undefined) return `HTTP ${code}`;
  const name = (err as { name?: unknown } | null)?.name;
  if (name === 'TimeoutError') return 'timed out';
  if (name === 'AbortError') return 'aborted';
  // fetch wraps network failures: TypeError "fetch failed" with the socket error as its cause.
  const net = (err as { cause?: { code?: unknown } } | null)?.cause?.code ?? (err as { code?: unknown } | null)?.code;
  if (typeof net === 'string' && /^E[A-Z0-9_]+$/.test(net)) return net;
  return typeof name === 'string' && name !== '' ? name : 'error';
}

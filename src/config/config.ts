/**
 * Flags and environment variables → one validated, typed Config. Every problem is reported together;
 * the caller exits non-zero when there is any.
 */
import { existsSync } from 'node:fs';
import { resolve } from 'node:path';
import { bool, duration, helpText, hostPort, oneOf, parseFlags, str } from './flags.ts';
import type { FlagDef, HostPort } from './flags.ts';

export type { HostPort } from './flags.ts';

export const LOG_LEVELS = ['trace', 'debug', 'info', 'warn', 'error', 'fatal', 'silent'] as const;
export type LogLevel = (typeof LOG_LEVELS)[number];
export type Mode = 'local' | 'kubernetes';

export interface Config {
  mode: Mode;
  /** Where the HTTPS download API listens. */
  listen: HostPort;
  /** Where /healthz, /readyz (and later /metrics) listen, also over HTTPS. */
  metricsListen: HostPort;
  /** Local mode: the directory laid out like a BackupStorageLocation (absolute). */
  dataDir: string;
  /** Local mode: token file and generated certificate live here (absolute). */
  stateDir: string;
  /** Local mode: the static token file in kube-apiserver's CSV format (absolute). */
  tokenFile: string;
  /** The namespace path segment local mode answers to. */
  namespace: string;
  /** A certificate/key pair of the user's own; both or neither. */
  tlsCertFile?: string;
  tlsKeyFile?: string;
  logLevel: LogLevel;
  /** How long in-flight downloads may run after SIGTERM before connections are cut. */
  shutdownGraceMs: number;
  /** Write the demo backup and restore into an empty data directory. */
  demo: boolean;
}

const flag = <T>(d: FlagDef<T>): FlagDef<T> => d;

/** The flag table; keys are Config fields (or inputs to them). */
export const FLAGS = {
  mode: flag({ name: 'mode', kind: 'string', default: 'local', help: 'local (static tokens, filesystem store) or kubernetes', parse: oneOf('local', 'kubernetes') }),
  listen: flag({ name: 'listen', kind: 'string', default: '0.0.0.0:8443', help: 'HTTPS address of the download API', parse: hostPort }),
  metricsListen: flag({ name: 'metrics-listen', kind: 'string', default: '0.0.0.0:8085', help: 'HTTPS address of /healthz, /readyz and /metrics', parse: hostPort }),
  dataDir: flag({ name: 'data-dir', kind: 'string', default: './data', help: 'local mode: directory laid out like a BackupStorageLocation', parse: str }),
  stateDir: flag({ name: 'state-dir', kind: 'string', default: './state', help: 'local mode: token file and generated certificate', parse: str }),
  tokenFile: flag({ name: 'token-file', kind: 'string', help: 'local mode: static token CSV (token,user,uid,"group1,group2")', default: undefined, parse: str }),
  namespace: flag({ name: 'namespace', kind: 'string', default: 'velero', help: 'namespace the gateway answers for (local mode: the path segment)', parse: str }),
  tlsCertFile: flag({ name: 'tls-cert-file', kind: 'string', help: 'serving certificate (PEM) instead of the generated one; reloaded on change', parse: str }),
  tlsKeyFile: flag({ name: 'tls-key-file', kind: 'string', help: 'private key (PEM) of --tls-cert-file', parse: str }),
  logLevel: flag({ name: 'log-level', kind: 'string', default: 'info', help: LOG_LEVELS.join('|'), parse: oneOf(...LOG_LEVELS) }),
  shutdownGrace: flag({ name: 'shutdown-grace', kind: 'string', default: '25s', help: 'time in-flight downloads get after SIGTERM', parse: duration }),
  demo: flag({ name: 'demo', kind: 'boolean', default: 'true', help: 'write a demo backup and restore into an empty --data-dir', parse: bool }),
};

export const USAGE = 'Usage: velero-download-server [flags]';

export type ConfigResult =
  | { kind: 'config'; config: Config }
  | { kind: 'help'; text: string }
  | { kind: 'version' }
  | { kind: 'errors'; errors: string[] };

/** Parses and validates; relative paths are resolved against `cwd`. */
export function loadConfig(
  argv: readonly string[],
  env: Readonly<Record<string, string | undefined>>,
  cwd: string = process.cwd(),
): ConfigResult {
  const { values: v, errors, help, version } = parseFlags(FLAGS, argv, env);
  if (help) return { kind: 'help', text: helpText(USAGE, FLAGS) };
  if (version) return { kind: 'version' };

  if (v.mode === 'kubernetes') errors.push('--mode kubernetes: not available in this release yet; use --mode local');
  if (v.namespace !== undefined && !/^[a-z0-9]([-a-z0-9]{0,61}[a-z0-9])?$/.test(v.namespace)) {
    errors.push(`--namespace: "${v.namespace}" is not a valid namespace name (DNS-1123 label)`);
  }
  if ((v.tlsCertFile === undefined) !== (v.tlsKeyFile === undefined)) {
    errors.push('--tls-cert-file and --tls-key-file go together: give both or neither');
  }
  for (const [name, file] of [
    ['--tls-cert-file', v.tlsCertFile],
    ['--tls-key-file', v.tlsKeyFile],
    ['--token-file', v.tokenFile],
  ] as const) {
    if (file !== undefined && !existsSync(resolve(cwd, file))) errors.push(`${name}: ${resolve(cwd, file)} does not exist`);
  }
  if (errors.length > 0) return { kind: 'errors', errors };

  // Every value with a default is set once no error was reported.
  const stateDir = resolve(cwd, v.stateDir!);
  return {
    kind: 'config',
    config: {
      mode: v.mode!,
      listen: v.listen!,
      metricsListen: v.metricsListen!,
      dataDir: resolve(cwd, v.dataDir!),
      stateDir,
      tokenFile: v.tokenFile === undefined ? resolve(stateDir, 'tokens.csv') : resolve(cwd, v.tokenFile),
      namespace: v.namespace!,
      ...(v.tlsCertFile !== undefined && { tlsCertFile: resolve(cwd, v.tlsCertFile) }),
      ...(v.tlsKeyFile !== undefined && { tlsKeyFile: resolve(cwd, v.tlsKeyFile) }),
      logLevel: v.logLevel!,
      shutdownGraceMs: v.shutdownGrace!,
      demo: v.demo!,
    },
  };
}

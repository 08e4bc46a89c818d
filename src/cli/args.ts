/**
 * The command line of `velero-download`: commands, global flags, validation. Everything here is pure
 * (no I/O), so a wrong command line fails in milliseconds with exit code 2, before any Kubernetes
 * client is loaded.
 */
import { parseArgs } from 'node:util';
import { artifactNames, findArtifact, isDns1123Label, isDns1123Subdomain } from '../velero/artifacts.ts';
import type { OwnerKind } from '../velero/artifacts.ts';
import { isAccessUserName } from '../util/passwords.ts';
import { UsageError } from './errors.ts';

/** Subcommands of `backup` and `restore`, mapped to the artifact they fetch. */
export const SUBCOMMANDS: Record<OwnerKind, Readonly<Record<string, string>>> = {
  backups: {
    logs: 'log',
    download: 'contents',
    results: 'results',
    'resource-list': 'resourcelist',
    'volume-info': 'volumeinfos',
    'item-operations': 'itemoperations',
  },
  restores: {
    logs: 'log',
    results: 'results',
    'resource-list': 'resourcelist',
    'item-operations': 'itemoperations',
    'volume-info': 'volumeinfo',
  },
};

/** The subcommands of `backup` that read volume data through the download server (no DownloadRequest target exists for it). */
export const VOLUME_SUBCOMMANDS = ['volumes', 'ls', 'files', 'archive'] as const;
export type VolumeAction = (typeof VOLUME_SUBCOMMANDS)[number];

/** What a volume-data command reads. */
export interface VolumeCommand {
  action: VolumeAction;
  /** The volume's id as `backup volumes` lists it (free of `/`); '' for `volumes`. */
  volume: string;
  /** The path inside the volume's snapshot, as segments (no `.`, `..` or empty ones); [] is the root. */
  path: string[];
  /** `-o json` for `volumes` and `ls`: the server's JSON instead of a table. */
  json: boolean;
  /** `--gzip` for `archive`: a tar.gz. */
  gzip: boolean;
}

export const DEFAULT_NAMESPACE = 'velero';
export const DEFAULT_WAIT_TIMEOUT_MS = 60_000;
export const DEFAULT_CONNECT_TIMEOUT_MS = 15_000;

/** Where the bytes go. */
export type OutputSpec = { kind: 'stdout' } | { kind: 'file'; path: string };

/** A validated command line. */
export interface Command {
  owner: OwnerKind;
  /** The Backup or Restore name. */
  name: string;
  /** The artifact, as in the gateway's URLs (`log`, `contents`, ...). */
  artifact: string;
  /** Velero's DownloadRequest target kind for it (`BackupLog`, ...). */
  kind: string;
  namespace: string;
  kubeconfig?: string;
  context?: string;
  /** `--velero-server-url`: use only the download server; `baseUrl` skips the DownloadRequest. */
  gateway: { forced: boolean; baseUrl?: URL };
  cacert?: string;
  /** Where `cacert` was named, for messages: `--cacert`, or the velero client config. */
  cacertFrom?: string;
  insecureSkipTlsVerify: boolean;
  /** Normalized: 64 lower-case hex digits. */
  serverCertFingerprint?: string;
  waitTimeoutMs: number;
  /** Whole transfer, resumes included; 0 = no limit. */
  timeoutMs: number;
  /** Each connection: connecting and waiting for headers, and the longest silence while reading. */
  connectTimeoutMs: number;
  output: OutputSpec;
  force: boolean;
  /** Gunzip before writing: everything but backup contents, as Velero's CLI does. */
  gunzip: boolean;
  /** `backup describe`: the artifacts and their sizes (`json`: -o json); `artifact` and `kind` are then ''. */
  describe?: { json: boolean };
  /** Set for the volume-data commands (`backup volumes|ls|files|archive`); `artifact` is then `volumedata`. */
  volume?: VolumeCommand;
  /**
   * `--user USER@HOST`: an access user of the download server, sending HTTP Basic instead of a
   * kubeconfig's token; `gateway.baseUrl` is then set and no kubeconfig is read.
   */
  accessUser?: AccessUserOptions;
  /**
   * A bearer token for the download server instead of a kubeconfig's (`--token`, `--token-file`, or
   * $VELERO_DOWNLOAD_TOKEN); `gateway.baseUrl` is then set and no kubeconfig is read.
   */
  token?: TokenOptions;
}

/** What the velero CLI's client config file sets (see client-config.ts); `file` names it in messages. */
export interface ClientConfig {
  file?: string;
  namespace?: string;
  cacert?: string;
}

/** Where the bearer token comes from. The value is never put into a message. */
export type TokenOptions = { from: '--token'; value: string } | { from: `$${typeof TOKEN_ENV}`; value: string } | { from: '--token-file'; file: string };

/** The variable that may hold a bearer token (as kubectl users keep one in CI secrets). */
export const TOKEN_ENV = 'VELERO_DOWNLOAD_TOKEN';

/** An access user's name and where its password comes from (no file: $VELERO_DOWNLOAD_PASSWORD_FILE, else a prompt). */
export interface AccessUserOptions {
  name: string;
  /** `--password-file`: a file name, or `-` for stdin. */
  passwordFile?: string;
}

/** `hash-password`: prints a table entry's hash (`USER@HOST: hash` with --user). */
export interface HashPasswordCommand {
  user?: string;
  passwordFile?: string;
}

export type ParseResult = { help: true } | { help: false; version: true } | { help: false; completion: 'bash' | 'zsh' } | { help: false; command: Command } | { help: false; hashPassword: HashPasswordCommand };

export const OPTIONS = {
  kubeconfig: { type: 'string' },
  context: { type: 'string' },
  namespace: { type: 'string', short: 'n' },
  'velero-server-url': { type: 'string' },
  cacert: { type: 'string' },
  'insecure-skip-tls-verify': { type: 'boolean' },
  'server-cert-fingerprint': { type: 'string' },
  user: { type: 'string' },
  'password-file': { type: 'string' },
  token: { type: 'string' },
  'token-file': { type: 'string' },
  'wait-timeout': { type: 'string' },
  timeout: { type: 'string' },
  'connect-timeout': { type: 'string' },
  output: { type: 'string', short: 'o' },
  force: { type: 'boolean' },
  gzip: { type: 'boolean' },
  help: { type: 'boolean', short: 'h' },
  version: { type: 'boolean' },
} as const;

export const USAGE = `Usage: velero-download COMMAND NAME [flags]

Fetch a Velero backup's or restore's files: from the store's pre-signed URL (status.downloadURL of a
DownloadRequest, as the velero CLI does), falling back to the velero-download-server gateway when the
store cannot be reached, or only from the gateway with --velero-server-url.

Commands:
  backup logs NAME              the backup log (gunzipped)
  backup download NAME          the backup tarball, saved as is to NAME-data.tar.gz (or -o FILE, -o - for stdout)
  backup results NAME           warnings and errors (JSON)
  backup resource-list NAME     the backed-up resources (JSON)
  backup volume-info NAME       volume information (JSON)
  backup item-operations NAME   async item operations (JSON)
  backup describe NAME          the backup's artifacts and their stored sizes, from the download
                                server (HEAD requests); -o json
  backup volumes NAME           the backup's volumes (file-system backups, data-mover uploads); -o json
  backup ls NAME VOLUME [PATH]  a directory of a volume's backup (default: its root); -o json
  backup files NAME VOLUME PATH one file of a volume's backup, saved to its base name (or -o FILE, -o -)
  backup archive NAME VOLUME [PATH]
                                a tar of a directory of a volume's backup (--gzip: tar.gz), saved to
                                VOLUME-DIR.tar[.gz] with ":" in VOLUME written "_" (or -o FILE, -o -)
  restore logs NAME             the restore log
  restore results NAME          warnings and errors (JSON)
  restore resource-list NAME    the restored resources (JSON)
  restore item-operations NAME  async item operations (JSON)
  restore volume-info NAME      volume information (JSON)
  get backups/NAME/ARTIFACT     any artifact: ${artifactNames('backups').join(', ')}
  get restores/NAME/ARTIFACT    any artifact: ${artifactNames('restores').join(', ')}
  completion bash|zsh           print a shell completion script: source <(velero-download completion bash)
  hash-password [--user USER@HOST] [--password-file FILE]
                                print the hash of a password for the download server's access-user
                                table (asked twice on a terminal, else read from stdin's first line);
                                with --user, the whole entry "USER@HOST: scrypt$..."

Flags:
      --kubeconfig FILE              kubeconfig to use (default: $KUBECONFIG, ~/.kube/config, in-cluster)
      --context NAME                 kubeconfig context to use
  -n, --namespace NS                 Velero's namespace (default: "namespace" of the velero client config
                                     ~/.config/velero/config.json, else $VELERO_NAMESPACE, else "${DEFAULT_NAMESPACE}")
      --velero-server-url[=URL]      only use the download server; with a base URL (https://host:port),
                                     fetch from it directly without creating a DownloadRequest
      --cacert FILE                  CA bundle trusted for the store's and the download server's TLS
                                     (default: "cacert" of the velero client config)
      --server-cert-fingerprint HEX  trust the download server's certificate with this SHA-256
                                     fingerprint (64 hex digits of the DER certificate, as Kopia pins)
      --insecure-skip-tls-verify     do not verify TLS certificates (insecure: anyone in the path can
                                     read the data and your token)
      --user USER@HOST               sign in to the download server as this access user (HTTP Basic)
                                     instead of with a kubeconfig's token; needs --velero-server-url=URL
      --password-file FILE           the access user's password: the first line of FILE (- for stdin);
                                     default: the file $VELERO_DOWNLOAD_PASSWORD_FILE names, else a
                                     prompt on the terminal (no echo); never a command-line value
      --token-file FILE              a bearer token for the download server (a service account's:
                                     kubectl create token NAME > FILE) instead of a kubeconfig's;
                                     needs --velero-server-url=URL; default: $${TOKEN_ENV}
      --token TOKEN                  the same as a value (warned about: other users see it in ps)
      --wait-timeout DURATION        how long to wait for the download URL (default 1m)
      --timeout DURATION             limit for the whole transfer, resumes included (default 0: none)
      --connect-timeout DURATION     limit for connecting and for a stalled transfer (default 15s)
  -o, --output FILE                  write to FILE (- for stdout); default stdout, NAME-data.tar.gz for
                                     backup contents; for describe, volumes and ls: -o json prints JSON
                                     (a table otherwise); for the JSON artifacts (results, resource-list,
                                     ...) -o json prints them to stdout (a file named json: -o ./json)
      --force                        overwrite an existing output file
      --gzip                         archive: ask for a gzip-compressed tar
  -h, --help                         show this help
      --version                      print the client's version

The download server trusts your Kubernetes identity: the bearer token your kubeconfig provides (static
token, token file, exec plugin, OIDC) is sent to it, over verified HTTPS only. Its certificate is checked
against --cacert, else ca.crt of ConfigMap velero-download-server-ca (get on it is all you need; for
older download servers, of Secret velero-download-server-certs when you may read it), else the pinned
fingerprint (--server-cert-fingerprint, or the published annotation), else the system CAs.

Access users (--user) need no kubeconfig: the download server checks the password and reviews the user
as "velero-download-server:USER@HOST" with Kubernetes RBAC. No CA ConfigMap is read then: trust the
server with --cacert, or pin its certificate with --server-cert-fingerprint (its SHA-256, as GET
/v1/info shows it, the server's start-up output, or annotation download-server.velero.io/tls-fingerprint
on ConfigMap velero-download-server-ca: get it over a channel you already trust), else the system CAs.
--insecure-skip-tls-verify is refused with --user: the password would go to whoever answers.

Volume data (volumes, ls, files, archive) comes from the download server only: the one given with
--velero-server-url=https://HOST, else the one that answers a DownloadRequest for the backup. VOLUME
is an id from "backup volumes"; PATH is inside the volume (a leading "/" is optional; ".." is refused).
It needs "get" on backups/volumedata, which holds every file of the backed-up volumes.

A download to a file collects in FILE.partial and takes its name only when complete. When it is
interrupted (Ctrl-C, SIGTERM, --timeout, a connection that keeps breaking), FILE.partial stays, with
FILE.partial.json recording the source and the object's ETag (no token, no URL query); running the same
command again continues it with a Range request, or starts over when the object changed. A download to
stdout cannot be resumed.

Exit codes: 0 success, 1 not found (or another failure), 2 usage, 3 unauthorized or forbidden,
4 unreachable (API server, Velero, store or download server; or an untrusted certificate),
130 interrupted.
`;

const UNITS: Record<string, number> = { ms: 1, s: 1000, m: 60_000, h: 3_600_000 };

/** Go-style durations (`500ms`, `30s`, `2m`, `1h30m`) or `0`; milliseconds. Throws UsageError. */
export function parseDuration(flag: string, raw: string): number {
  const s = raw.trim();
  if (s === '0') return 0;
  if (!/^(\d+(\.\d+)?(ms|s|m|h))+$/.test(s)) throw new UsageError(`--${flag}: "${raw}" is not a duration such as 500ms, 30s, 2m or 1h`);
  let ms = 0;
  for (const m of s.matchAll(/(\d+(?:\.\d+)?)(ms|s|m|h)/g)) ms += Number(m[1]) * UNITS[m[2]!]!;
  return Math.round(ms);
}

/**
 * A SHA-256 fingerprint as 64 lower-case hex digits; accepts upper case and the colon-separated form
 * `openssl x509 -fingerprint -sha256` prints. Undefined when it is not one.
 */
export function normalizeFingerprint(raw: string): string | undefined {
  const hex = raw.trim().replace(/^sha256[:=]/i, '').replaceAll(':', '').toLowerCase();
  return /^[0-9a-f]{64}$/.test(hex) ? hex : undefined;
}

// `--velero-server-url` takes an optional value, which parseArgs cannot express: a bare flag followed
// by something that is not a URL means "force the gateway, no base URL".
function foldOptionalValue(argv: readonly string[]): string[] {
  const out: string[] = [];
  for (let i = 0; i < argv.length; i++) {
    const a = argv[i]!;
    if (a === '--') {
      out.push(...argv.slice(i));
      break;
    }
    if (a === '--velero-server-url') {
      const next = argv[i + 1];
      if (next !== undefined && /^[a-z][a-z0-9+.-]*:\/\//i.test(next)) {
        out.push(`${a}=${next}`);
        i++;
      } else {
        out.push(`${a}=`);
      }
    } else {
      out.push(a);
    }
  }
  return out;
}

function parseBaseUrl(raw: string): URL {
  let url: URL;
  try {
    url = new URL(raw);
  } catch {
    throw new UsageError(`--velero-server-url: "${raw}" is not a URL; use https://HOST[:PORT]`);
  }
  if (url.protocol === 'http:') {
    throw new UsageError(`--velero-server-url: refusing ${url.origin}: your token or password is never sent over plain HTTP; use https://`);
  }
  if (url.protocol !== 'https:') throw new UsageError(`--velero-server-url: "${raw}" must be an https:// URL`);
  if (url.username || url.password || url.search || url.hash) {
    throw new UsageError('--velero-server-url: give only https://HOST[:PORT][/PATH], without credentials, query or fragment');
  }
  return url;
}

// Control characters and the bidirectional overrides that make a name print as another one.
// eslint-disable-next-line no-control-regex -- matching control characters is the point
const UNPRINTABLE = /[\u0000-\u001f\u007f-\u009f\u200e\u200f\u202a-\u202e\u2066-\u2069]/g;

/** `s` with control and bidi-override characters written as `\xNN` / `\u{NNNN}`: safe on a terminal, one line. */
export function printable(s: string): string {
  return s.replace(UNPRINTABLE, (c) => {
    const code = c.codePointAt(0)!;
    return code < 0x100 ? `\\x${code.toString(16).padStart(2, '0')}` : `\\u{${code.toString(16)}}`;
  });
}

/**
 * A PATH inside a volume's snapshot as segments. The path is the user's, but it becomes URL segments
 * and (for `files`) the default output file's name: `..` is refused here rather than trusted to the
 * server, NUL cannot be in a file name, `.` and empty segments are dropped.
 */
export function volumePath(raw: string): string[] {
  if (raw.includes('\0')) throw new UsageError('PATH: a NUL character cannot be in a file name');
  const segments = raw.split('/').filter((s) => s !== '' && s !== '.');
  if (segments.includes('..')) {
    throw new UsageError(`PATH "${printable(raw)}": ".." is not allowed: a path names a file inside the volume's backup, from its root`);
  }
  return segments;
}

/** A VOLUME id as `backup volumes` lists it: one URL segment, and part of a default file name. */
export function volumeId(raw: string): string {
  if (raw === '' || raw === '.' || raw === '..' || raw.includes('/') || raw.length > 1024 || printable(raw) !== raw) {
    throw new UsageError(`"${printable(raw)}" is not a volume id: use an ID that "velero-download backup volumes NAME" lists`);
  }
  return raw;
}

interface ParsedTarget {
  owner: OwnerKind;
  name: string;
  artifact: string;
  volume?: { action: VolumeAction; volume: string; path: string | undefined };
  describe?: true;
}

function volumeTarget(sub: VolumeAction, args: string[]): ParsedTarget {
  const [name, volume, path, ...extra] = args;
  const shape = { volumes: 'NAME', ls: 'NAME VOLUME [PATH]', files: 'NAME VOLUME PATH', archive: 'NAME VOLUME [PATH]' }[sub];
  const max = { volumes: 1, ls: 3, files: 3, archive: 3 }[sub];
  const min = { volumes: 1, ls: 2, files: 3, archive: 2 }[sub];
  const given = args.length;
  if (given < min || given > max || extra.length) {
    throw new UsageError(`backup ${sub} takes ${shape}${given > max ? `: unexpected argument "${printable(args[max]!)}"` : ''}`);
  }
  return { owner: 'backups', name: name!, artifact: 'volumedata', volume: { action: sub, volume: volume ?? '', path } };
}

function target(positionals: string[]): ParsedTarget {
  const [verb, ...rest] = positionals;
  if (verb === 'get') {
    if (rest.length !== 1) throw new UsageError('get takes one argument: backups/NAME/ARTIFACT or restores/NAME/ARTIFACT');
    const parts = rest[0]!.split('/');
    const owner = parts[0] === 'backup' ? 'backups' : parts[0] === 'restore' ? 'restores' : parts[0];
    if (parts.length !== 3 || (owner !== 'backups' && owner !== 'restores')) {
      throw new UsageError(`get: "${rest[0]!}" is not backups/NAME/ARTIFACT or restores/NAME/ARTIFACT`);
    }
    const artifact = parts[2]!;
    if (!findArtifact(owner, artifact)) {
      throw new UsageError(`get: ${owner} have no artifact "${artifact}"; choose one of ${artifactNames(owner).join(', ')}`);
    }
    return { owner, name: parts[1]!, artifact };
  }
  const owner = verb === 'backup' ? 'backups' : verb === 'restore' ? 'restores' : undefined;
  if (!owner) {
    throw new UsageError(verb === undefined ? 'missing command: try "velero-download backup logs NAME" or --help' : `unknown command "${verb}": use backup, restore, get, hash-password or completion (see --help)`);
  }
  const [sub, name, ...extra] = rest;
  const subs = SUBCOMMANDS[owner];
  if (owner === 'backups' && (VOLUME_SUBCOMMANDS as readonly (string | undefined)[]).includes(sub)) return volumeTarget(sub as VolumeAction, rest.slice(1));
  if (owner === 'backups' && sub === 'describe') {
    if (name === undefined || extra.length) throw new UsageError(`backup describe takes NAME${extra.length ? `: unexpected argument "${printable(extra[0]!)}"` : ''}`);
    return { owner, name, artifact: '', describe: true };
  }
  if (sub === undefined || !Object.hasOwn(subs, sub)) {
    const all = [...Object.keys(subs), ...(owner === 'backups' ? ['describe', ...VOLUME_SUBCOMMANDS] : [])];
    throw new UsageError(`${verb} ${sub === undefined ? 'needs a subcommand' : `has no subcommand "${sub}"`}: use one of ${all.join(', ')}`);
  }
  if (name === undefined) throw new UsageError(`${verb} ${sub}: missing the ${verb} name`);
  if (extra.length) throw new UsageError(`${verb} ${sub}: unexpected argument "${extra[0]!}"`);
  return { owner, name, artifact: subs[sub]! };
}

/** `files` and `archive` write bytes (to a file by default); `volumes` and `ls` print to stdout. */
const hasFileOutput = (v: VolumeCommand): boolean => v.action === 'files' || v.action === 'archive';

function volumeCommand(t: NonNullable<ParsedTarget['volume']>, output: string | undefined, gzip: boolean): VolumeCommand {
  const cmd: VolumeCommand = {
    action: t.action,
    volume: t.action === 'volumes' ? '' : volumeId(t.volume),
    path: t.path === undefined ? [] : volumePath(t.path),
    json: false,
    gzip,
  };
  if (!hasFileOutput(cmd)) {
    if (output !== undefined && output !== 'json') throw new UsageError(`backup ${t.action} prints a table, or JSON with -o json (not "${printable(output)}")`);
    cmd.json = output === 'json';
  }
  if (t.action === 'files') {
    if (cmd.path.length === 0 || t.path!.endsWith('/')) {
      throw new UsageError(`backup files: PATH "${printable(t.path!)}" names a directory: use backup ls to list it, or backup archive to download it`);
    }
  }
  return cmd;
}

/**
 * The default output file of `files` (the file's own name) and `archive` (VOLUME-DIR.tar[.gz]): in
 * the current directory, built from the user's arguments, never from a name the server sends.
 */
function defaultVolumeOutput(v: VolumeCommand): string {
  const last = v.path.at(-1);
  if (v.action === 'files') return last!;
  return `${v.volume.replaceAll(':', '_')}${last ? `-${last}` : ''}.tar${v.gzip ? '.gz' : ''}`;
}

/**
 * A password given as a flag's value is refused before anything else reads the command line (and so
 * before any message could repeat it): other users see it in `ps`, shells keep it in their history,
 * CI systems print command lines.
 */
function refusePasswordValue(argv: readonly string[]): void {
  for (const a of argv) {
    if (a === '--') return;
    if (a === '--password' || a.startsWith('--password=')) {
      throw new UsageError(
        '--password is not accepted: a password on the command line is visible to other users (ps) and kept in shell history; put it on the first line of a file readable only by you and pass --password-file FILE (or - for stdin), or leave both out to be asked on the terminal',
      );
    }
  }
}

const USER_RULE =
  'expected USER@HOST: printable ASCII without spaces, ":" (HTTP Basic cannot carry one in a user name) or a second "@", the user at most 64 characters, the host 1 to 253';

/** `--user`: the gateway's own name rule. The value is not repeated in the error: it may hold a password typed by mistake. */
function accessUserName(raw: string): string {
  if (!isAccessUserName(raw)) throw new UsageError(`--user: ${USER_RULE}`);
  return raw;
}

type Values = ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>['values'];

function passwordFile(v: Values): string | undefined {
  if (v['password-file'] === '') throw new UsageError('--password-file: empty file name');
  return v['password-file'];
}

function hashPasswordCommand(positionals: string[], v: Values): ParseResult {
  if (positionals.length > 1) throw new UsageError(`hash-password: unexpected argument "${printable(positionals[1]!)}"`);
  const other = Object.keys(v).find((k) => k !== 'user' && k !== 'password-file');
  if (other) throw new UsageError(`hash-password takes only --user and --password-file, not --${other}`);
  const file = passwordFile(v);
  return { help: false, hashPassword: { ...(v.user !== undefined && { user: accessUserName(v.user) }), ...(file !== undefined && { passwordFile: file }) } };
}

/**
 * `--user` and `--password-file` against the other flags. An access user has no kubeconfig, so
 * nothing but --velero-server-url=URL says where the download server is, and no ConfigMap publishes
 * its CA; --insecure-skip-tls-verify would hand the password to whoever answers, so it is refused.
 */
function accessUserOptions(v: Values, gateway: Command['gateway']): AccessUserOptions | undefined {
  const file = passwordFile(v);
  if (v.user === undefined) {
    if (file !== undefined) throw new UsageError('--password-file goes with --user USER@HOST (an access user\'s password)');
    return undefined;
  }
  const name = accessUserName(v.user);
  if (v.kubeconfig !== undefined || v.context !== undefined) throw new UsageError('--user signs in without a kubeconfig: leave out --kubeconfig and --context');
  if (v['insecure-skip-tls-verify']) {
    throw new UsageError('--insecure-skip-tls-verify cannot be used with --user: the password would go to whoever answers; pass --cacert FILE or pin the certificate with --server-cert-fingerprint');
  }
  if (!gateway.baseUrl) throw new UsageError('--user needs --velero-server-url=https://HOST[:PORT]: without a kubeconfig nothing else says where the download server is');
  return { name, ...(file !== undefined && { passwordFile: file }) };
}

/** The longest token accepted: a service account's JWT is about 1 KiB, an OIDC one a few. */
export const MAX_TOKEN_CHARS = 8192;

/**
 * A bearer token as it goes into the Authorization header: visible ASCII only, so a CR, LF or space
 * cannot add a header or split the value. The message names where it came from, never the value.
 */
export function checkToken(value: string, from: string): string {
  const token = value.trim();
  if (token === '') throw new UsageError(`${from}: the token is empty`);
  if (token.length > MAX_TOKEN_CHARS) throw new UsageError(`${from}: the token is longer than ${MAX_TOKEN_CHARS} characters`);
  if (!/^[\x21-\x7e]+$/.test(token)) throw new UsageError(`${from}: the token holds spaces, control or non-ASCII characters; a bearer token has none`);
  return token;
}

/**
 * `--token`, `--token-file`, `$VELERO_DOWNLOAD_TOKEN`: a bearer token instead of a kubeconfig's, as
 * kubectl and the velero CLI take one; flags win over the variable. Like --user it means "no
 * kubeconfig", so only --velero-server-url=URL says where the download server is, and
 * --insecure-skip-tls-verify is refused: the token would go to whoever answers. The variable counts
 * only where it can be meant (a base URL, no --user, --kubeconfig or --context): a shell that exports
 * it keeps its kubeconfig commands working.
 */
function tokenOptions(v: Values, gateway: Command['gateway'], env: Readonly<Record<string, string | undefined>>): TokenOptions | undefined {
  if (v.token !== undefined && v['token-file'] !== undefined) throw new UsageError('--token and --token-file: give one of them');
  let token: TokenOptions | undefined;
  if (v.token !== undefined) token = { from: '--token', value: checkToken(v.token, '--token') };
  else if (v['token-file'] !== undefined) {
    if (v['token-file'] === '') throw new UsageError('--token-file: empty file name');
    token = { from: '--token-file', file: v['token-file'] };
  } else {
    const fromEnv = env[TOKEN_ENV];
    const meant = fromEnv && gateway.baseUrl && v.user === undefined && v.kubeconfig === undefined && v.context === undefined;
    if (!meant) return undefined;
    token = { from: `$${TOKEN_ENV}`, value: checkToken(fromEnv, `$${TOKEN_ENV}`) };
  }
  if (v.user !== undefined) throw new UsageError(`${token.from} and --user: sign in with one of them`);
  if (v.kubeconfig !== undefined || v.context !== undefined) throw new UsageError(`${token.from} replaces the kubeconfig: leave out --kubeconfig and --context`);
  if (v['insecure-skip-tls-verify']) {
    throw new UsageError(`--insecure-skip-tls-verify cannot be used with ${token.from}: the token would go to whoever answers; pass --cacert FILE or pin the certificate with --server-cert-fingerprint`);
  }
  if (!gateway.baseUrl) throw new UsageError(`${token.from} needs --velero-server-url=https://HOST[:PORT]: without a kubeconfig nothing else says where the download server is`);
  return token;
}

/**
 * Parses and validates `argv` (without node and the script); `env` is read, never changed. Throws
 * UsageError.
 */
export function parseCommandLine(argv: readonly string[], env: Readonly<Record<string, string | undefined>> = {}, config: ClientConfig = {}): ParseResult {
  refusePasswordValue(argv);
  let parsed: ReturnType<typeof parseArgs<{ options: typeof OPTIONS; allowPositionals: true; strict: true }>>;
  try {
    parsed = parseArgs({ args: foldOptionalValue(argv), options: OPTIONS, allowPositionals: true, strict: true });
  } catch (err) {
    throw new UsageError((err as Error).message.replace(/\. To specify a positional argument.*$/s, ''));
  }
  const v = parsed.values;
  if (v.help) return { help: true };
  if (v.version) {
    if (Object.keys(v).length > 1 || parsed.positionals.length) throw new UsageError('--version takes no command or other flag');
    return { help: false, version: true };
  }
  if (parsed.positionals[0] === 'hash-password') return hashPasswordCommand(parsed.positionals, v);
  if (parsed.positionals[0] === 'completion') {
    const shell = parsed.positionals[1];
    if ((shell !== 'bash' && shell !== 'zsh') || parsed.positionals.length > 2 || Object.keys(v).length) {
      throw new UsageError('completion takes one argument, bash or zsh: source <(velero-download completion bash)');
    }
    return { help: false, completion: shell };
  }

  const t = target(parsed.positionals);
  const kind = t.owner === 'backups' ? 'backup' : 'restore';
  if (!isDns1123Subdomain(t.name)) throw new UsageError(`"${t.name}" is not a valid ${kind} name (a DNS-1123 subdomain: lower case, digits, "-" and ".")`);
  // The velero CLI's order: the flag, then its client config, then $VELERO_NAMESPACE, then "velero".
  const [namespace, namespaceFrom] =
    v.namespace !== undefined
      ? [v.namespace, '-n/--namespace']
      : config.namespace !== undefined
        ? [config.namespace, `"namespace" in the velero client config ${config.file ?? ''}`]
        : env.VELERO_NAMESPACE
          ? [env.VELERO_NAMESPACE, '$VELERO_NAMESPACE']
          : [DEFAULT_NAMESPACE, ''];
  if (!isDns1123Label(namespace)) throw new UsageError(`${namespaceFrom}: "${printable(namespace)}" is not a valid namespace name`);

  let fingerprint: string | undefined;
  if (v['server-cert-fingerprint'] !== undefined) {
    fingerprint = normalizeFingerprint(v['server-cert-fingerprint']);
    if (!fingerprint) throw new UsageError('--server-cert-fingerprint: expected the SHA-256 of the certificate as 64 hex digits (colons allowed)');
  }
  const insecure = v['insecure-skip-tls-verify'] ?? false;
  if (insecure && (v.cacert !== undefined || fingerprint)) {
    throw new UsageError('--insecure-skip-tls-verify cannot be combined with --cacert or --server-cert-fingerprint: choose one way to trust the server');
  }
  if (v.cacert === '') throw new UsageError('--cacert: empty file name');
  // The flags win: --insecure-skip-tls-verify sets aside a cacert the client config names.
  const cacert: [string, string] | undefined =
    v.cacert !== undefined ? [v.cacert, '--cacert'] : config.cacert !== undefined && !insecure ? [config.cacert, `"cacert" in the velero client config ${config.file ?? ''}`] : undefined;
  if (v.kubeconfig === '') throw new UsageError('--kubeconfig: empty file name');

  const rawGateway = v['velero-server-url'];
  const gateway: Command['gateway'] =
    rawGateway === undefined ? { forced: false } : rawGateway === '' ? { forced: true } : { forced: true, baseUrl: parseBaseUrl(rawGateway) };

  const accessUser = accessUserOptions(v, gateway);
  const token = tokenOptions(v, gateway, env);

  const contents = t.owner === 'backups' && t.artifact === 'contents';
  const volume = t.volume && volumeCommand(t.volume, v.output, v.gzip ?? false);
  if (v.gzip && volume?.action !== 'archive') throw new UsageError('--gzip is a flag of backup archive only');
  let output: OutputSpec;
  if (v.output === '') throw new UsageError('-o/--output: empty file name (use - for stdout)');
  else if (t.describe) {
    if (v.output !== undefined && v.output !== 'json') throw new UsageError(`backup describe prints a table, or JSON with -o json (not "${printable(v.output)}")`);
    output = { kind: 'stdout' };
  } else if (volume && !hasFileOutput(volume)) output = { kind: 'stdout' };
  else if (v.output === 'json') {
    // A word, not a file name, as for the listings: the JSON artifacts go to stdout as they are.
    if (t.artifact === 'log' || contents) {
      throw new UsageError(`-o json: the ${contents ? 'backup contents are a tarball' : `${kind} log is text`}, not JSON; to write a file named json, pass -o ./json`);
    }
    output = { kind: 'stdout' };
  }
  else if (v.output === '-') output = { kind: 'stdout' };
  else if (v.output !== undefined) output = { kind: 'file', path: v.output };
  else if (volume) output = { kind: 'file', path: defaultVolumeOutput(volume) };
  else output = contents ? { kind: 'file', path: `${t.name}-data.tar.gz` } : { kind: 'stdout' };

  const wait = v['wait-timeout'] === undefined ? DEFAULT_WAIT_TIMEOUT_MS : parseDuration('wait-timeout', v['wait-timeout']);
  if (wait === 0) throw new UsageError('--wait-timeout must be more than 0');
  const connect = v['connect-timeout'] === undefined ? DEFAULT_CONNECT_TIMEOUT_MS : parseDuration('connect-timeout', v['connect-timeout']);
  if (connect === 0) throw new UsageError('--connect-timeout must be more than 0');

  return {
    help: false,
    command: {
      owner: t.owner,
      name: t.name,
      artifact: t.artifact,
      // Volume data and describe have no DownloadRequest target of their own.
      kind: volume || t.describe ? '' : findArtifact(t.owner, t.artifact)!.kind,
      ...(volume && { volume }),
      ...(t.describe && { describe: { json: v.output === 'json' } }),
      namespace,
      ...(v.kubeconfig !== undefined && { kubeconfig: v.kubeconfig }),
      ...(v.context !== undefined && { context: v.context }),
      gateway,
      ...(cacert && { cacert: cacert[0], cacertFrom: cacert[1] }),
      insecureSkipTlsVerify: insecure,
      ...(fingerprint && { serverCertFingerprint: fingerprint }),
      waitTimeoutMs: wait,
      timeoutMs: v.timeout === undefined ? 0 : parseDuration('timeout', v.timeout),
      connectTimeoutMs: connect,
      output,
      force: v.force ?? false,
      gunzip: !contents && !volume && !t.describe,
      ...(accessUser && { accessUser }),
      ...(token && { token }),
    },
  };
}

/**
 * Where the access-user table comes from, kept current while the gateway runs: a Secret in the
 * gateway's namespace (kubernetes mode), or a file (local mode). Each change builds a whole new table
 * and swaps it in; the authenticator reads the current table on every attempt, so a removed user is
 * refused from the next request on, while a download already running (authorized when it started)
 * finishes.
 *
 * The Secret's layout. A Secret's keys may not contain `@`, so:
 * - key `users`: lines `<user>@<host>: <hash>` (the file's format: `#` comments, blank lines);
 * - with a seed user name (`--access-users-seed-username NAME`), every other key is a host name and
 *   its value that host's password or hash, for user `NAME@<key>` (the shape of Kanister's
 *   repository-server user Secret); without one, other keys are reported and ignored.
 * A name given both ways is skipped altogether, as a name listed twice in one place is.
 *
 * Who reaches what: the Secret is written by whoever may write Secrets in the gateway's namespace
 * (trusted for what it says, not for its shape); the file by the local operator. Neither's values
 * (hashes, passwords) ever reach a log line: problems name the entry or its position, and the key.
 * Size: a Secret holds at most 1 MiB (the API server's limit), a file is read through the bounded
 * setting-file reader (1 MiB); parsing is linear in it.
 *
 * The Secret's watch is access-user-secret.ts, apart, so that local mode never loads the Kubernetes
 * client.
 */
import { FilePoller } from '../util/file-poll.ts';
import { readSettingFile } from '../util/setting-file.ts';
import { AccessUserTable, parseAccessUsers } from './access-users.ts';
import type { AccessUserEntry, AccessUserProblem, ParseOptions, ParseResult } from './access-users.ts';

/** The Secret key holding `<user>@<host>: <hash>` lines. */
export const USERS_KEY = 'users';

/** What a follower reports when it swaps a table in. Never a value of the source. */
export interface AccessUsersLoaded {
  /** `Secret <ns>/<name>` or `file <path>`. */
  source: string;
  /** loaded: read and parsed; missing: the Secret does not exist (yet); deleted / unreadable: no users now. */
  event: 'loaded' | 'missing' | 'deleted' | 'unreadable';
  users: number;
  problems: AccessUserProblem[];
  /** For `unreadable`: why (the file reader's message: the setting and the path, never content). */
  detail?: string;
}

export interface AccessUserFollowerOptions {
  parse: ParseOptions;
  /** Told of every swap; must not throw. */
  onLoaded: (e: AccessUsersLoaded) => void;
  /** A failed read or watch of the Secret (status, never a body); it is retried after `retryInMs`, the table kept. */
  onError?: (message: string, retryInMs: number) => void;
}

/** The current table of a source, followed until `stop`. */
export interface AccessUserFollower {
  table(): AccessUserTable;
  stop(): Promise<void>;
}

/** Decodes a Secret's `data` (base64 values, as the API returns them) and parses it (see the layout above). */
export function parseAccessUserSecret(data: Readonly<Record<string, string>> | undefined, opts: ParseOptions): ParseResult {
  const bytes = (b64: string): Buffer => Buffer.from(b64, 'base64');
  const parts: ParseResult[] = [];
  const ignored: AccessUserProblem[] = [];
  const hosts: Record<string, Buffer> = {};
  for (const [key, value] of Object.entries(data ?? {})) {
    if (key === USERS_KEY) {
      // Its lines name their users themselves: the seed user name is for host keys only.
      const r = parseAccessUsers({ text: bytes(value).toString('utf8') }, { ...(opts.allowPlaintext !== undefined && { allowPlaintext: opts.allowPlaintext }) });
      // A line number alone would not say which key it is in.
      parts.push({ table: r.table, problems: r.problems.map((p) => (p.entry.startsWith('line ') ? { ...p, entry: `${USERS_KEY} ${p.entry}` } : p)) });
    } else if (opts.seedUsername !== undefined) {
      hosts[key] = bytes(value);
    } else {
      // Secret keys are [-._a-zA-Z0-9]+ (the API server checks): safe to name.
      ignored.push({ entry: `key ${key}`, problem: `ignored: only key "${USERS_KEY}" is read unless a seed user name is configured` });
    }
  }
  if (Object.keys(hosts).length > 0) parts.push(parseAccessUsers({ data: hosts }, opts));
  const merged = mergeTables(parts);
  return { table: merged.table, problems: [...ignored, ...merged.problems] };
}

/** One table of several; a name in more than one is skipped altogether, as a name listed twice is. */
function mergeTables(parts: ParseResult[]): ParseResult {
  const problems = parts.flatMap((p) => p.problems);
  if (parts.length === 1) return { table: parts[0]!.table, problems };
  const entries = new Map<string, AccessUserEntry>();
  const twice = new Set<string>();
  for (const { table } of parts) {
    for (const name of table.names()) {
      if (entries.has(name)) twice.add(name);
      else entries.set(name, table.entry(name)!);
    }
  }
  for (const name of twice) {
    entries.delete(name);
    problems.push({ entry: name, problem: `given both in key "${USERS_KEY}" and as a seed host key; every entry for it is skipped` });
  }
  return { table: new AccessUserTable(entries), problems };
}

/**
 * Follows a file of `<user>@<host>: <hash>` lines, polled as the certificate files are (a change is
 * seen within `intervalMs`, 2 s by default). The first read must succeed (it throws the setting-file
 * reader's error: the gateway does not start). Afterwards a file that disappears or cannot be read is
 * no users, reported once, until it can be read again.
 */
export async function followAccessUserFile(path: string, setting: string, opts: AccessUserFollowerOptions & { intervalMs?: number }): Promise<AccessUserFollower> {
  const source = `file ${path}`;
  const first = await readSettingFile(path, setting);
  let bytes: Buffer | undefined;
  let table = AccessUserTable.EMPTY;
  let unreadable: string | undefined;
  const load = (read: Buffer): void => {
    bytes = read;
    unreadable = undefined;
    const r = parseAccessUsers({ text: read.toString('utf8') }, opts.parse);
    table = r.table;
    opts.onLoaded({ source, event: 'loaded', users: table.size, problems: r.problems });
  };
  load(first);
  const poller = new FilePoller([path], async () => {
    let read: Buffer;
    try {
      read = await readSettingFile(path, setting);
    } catch (err) {
      const detail = (err as Error).message;
      bytes = undefined;
      table = AccessUserTable.EMPTY;
      if (unreadable !== detail) opts.onLoaded({ source, event: 'unreadable', users: 0, problems: [], detail });
      unreadable = detail;
      return;
    }
    if (bytes === undefined || !read.equals(bytes)) load(read);
  }, opts.intervalMs);
  return {
    table: () => table,
    stop: async () => poller.stop(),
  };
}

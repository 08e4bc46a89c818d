/**
 * `backup describe NAME`: what can be downloaded of a backup, as the download server sees it. One
 * HEAD request per artifact gives its stored size (Content-Length: the gzip-compressed size Velero
 * wrote) without reading it; the answer is shown as a table or JSON. Everything shown comes from the
 * artifact table and the command line, except each size and status, which the server's answer
 * decides and which are checked here (a Content-Length that is not a plain number shows as unknown).
 */
import type { IncomingMessage } from 'node:http';
import { SUBCOMMANDS } from './args.ts';
import { formatBytes } from './progress.ts';
import { formatTable } from './volumes.ts';
import { BACKUP_ARTIFACTS } from '../velero/artifacts.ts';

/** One artifact's line: `stored` with its size, `absent` (404), `forbidden` (403), or `error` with the HTTP status. */
export interface ArtifactState {
  artifact: string;
  status: 'stored' | 'absent' | 'forbidden' | 'error';
  /** Bytes as stored, when the server said (stored only). */
  size?: number;
  /** The HTTP status behind `error`. */
  httpStatus?: number;
  /** The command that downloads it. */
  command: string;
}

/** The artifacts `describe` asks about, in Velero's order. */
export const DESCRIBED_ARTIFACTS: readonly string[] = BACKUP_ARTIFACTS.map((a) => a.artifact);

/** The command that fetches `artifact` of backup `name`: its own subcommand when it has one, else `get`. */
export function downloadCommand(name: string, artifact: string): string {
  const sub = Object.entries(SUBCOMMANDS.backups).find(([, a]) => a === artifact)?.[0];
  return sub ? `velero-download backup ${sub} ${name}` : `velero-download get backups/${name}/${artifact}`;
}

/** A Content-Length as a size: only a plain decimal number that fits a safe integer counts. */
export function sizeOf(res: IncomingMessage): number | undefined {
  const raw = res.headers['content-length'];
  return raw !== undefined && /^\d{1,15}$/.test(raw) ? Number(raw) : undefined;
}

/** The table `backup describe` prints. */
export function describeTable(namespace: string, name: string, states: readonly ArtifactState[]): string {
  const rows = [['ARTIFACT', 'SIZE', 'DOWNLOAD WITH']];
  for (const s of states) {
    const size =
      s.status === 'stored' ? (s.size === undefined ? 'stored, size unknown' : formatBytes(s.size)) : s.status === 'error' ? `error (HTTP ${s.httpStatus ?? '?'})` : s.status === 'absent' ? 'not stored' : 'forbidden';
    rows.push([s.artifact, size, s.status === 'stored' ? s.command : '-']);
  }
  return `Backup ${namespace}/${name}, as the download server stores it (sizes gzip-compressed):\n${formatTable(rows)}Files inside its volume backups: velero-download backup volumes ${name}\n`;
}

/** The JSON `backup describe -o json` prints. */
export function describeJson(namespace: string, name: string, states: readonly ArtifactState[]): string {
  return `${JSON.stringify({ namespace, backup: name, artifacts: states }, null, 2)}\n`;
}

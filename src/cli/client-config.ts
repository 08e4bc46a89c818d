/**
 * The velero CLI's client configuration, `$HOME/.config/velero/config.json` (what `velero client
 * config set namespace=... cacert=...` writes): a JSON object whose `namespace` and `cacert` keys the
 * velero CLI reads; other keys (features, colorized) are not this command's business. As in the
 * velero CLI, a missing file is no configuration and an unreadable or malformed one is a warning, not
 * a failure. The file is the user's own, read with the user's rights; its values are checked where
 * they are used as flags' values are (the namespace is a DNS-1123 label, cacert must hold a PEM
 * certificate), so a hostile file can do no more than the same flags could.
 */
import { homedir } from 'node:os';
import { join } from 'node:path';
import { readSettingFile, SettingFileError } from '../util/setting-file.ts';
import type { ClientConfig } from './args.ts';

/** A config file is a few lines; reading more would only let a wrong path (/dev/zero) stall the command. */
const MAX_CONFIG_BYTES = 64 * 1024;

/** Where the velero CLI keeps it: $HOME, as velero reads it. */
export const clientConfigPath = (env: NodeJS.ProcessEnv): string => join(env.HOME || homedir(), '.config', 'velero', 'config.json');

/** The namespace and cacert the velero client config sets, if any; `warn` gets one line per problem. */
export async function loadClientConfig(env: NodeJS.ProcessEnv, warn: (msg: string) => void): Promise<ClientConfig> {
  const file = clientConfigPath(env);
  const problem = (why: string): ClientConfig => {
    warn(`warning: ignoring the velero client config ${file}: ${why}`);
    return { file };
  };
  let text: string;
  try {
    // The gateway's bounded read: only a regular file (a FIFO would block the command, /dev/zero fill it).
    text = (await readSettingFile(file, 'the path', { maxBytes: MAX_CONFIG_BYTES })).toString('utf8');
  } catch (err) {
    if (!(err instanceof SettingFileError)) throw err;
    if (err.code === 'ENOENT' || err.code === 'ENOTDIR') return { file };
    return problem(err.message);
  }
  let doc: unknown;
  try {
    doc = JSON.parse(text);
  } catch {
    return problem('not JSON');
  }
  if (typeof doc !== 'object' || doc === null || Array.isArray(doc)) return problem('not a JSON object');
  const out: ClientConfig = { file };
  for (const key of ['namespace', 'cacert'] as const) {
    const value = (doc as Record<string, unknown>)[key];
    if (value === undefined || value === '') continue;
    if (typeof value !== 'string') warn(`warning: ignoring "${key}" in the velero client config ${file}: not a string`);
    else out[key] = value;
  }
  return out;
}

/**
 * Reading a file store as a user without privileges. Root (CAP_DAC_OVERRIDE) reads a mode-000 file
 * anyway, so a test that wants the store's EACCES path runs it in a child process that is not root.
 *
 * The child starts as the test's own user and drops to `nobody` (65534) itself, after it has loaded
 * the store's module. Spawning it as `nobody` directly would need `nobody` to reach the Node binary and
 * the module, which fails with EACCES wherever the clone sits under a directory other users cannot
 * enter (root's home, a `mktemp -d` folder).
 */
import { execFile } from 'node:child_process';
import { promisify } from 'node:util';

const execFileAsync = promisify(execFile);

export const NOBODY = 65534;

export interface StoreReadReport {
  /** The uid the reads ran as. */
  uid: number;
  /** What `stat` and `get` of the key gave: `read`, or the error's reason (or code). */
  stat: string;
  get: string;
}

export interface StoreReadOptions {
  /** The module that exports FilesystemStore (a path or file: URL). */
  module: string | URL;
  root: string;
  key: string;
  metadata: 'sync' | 'async';
  /** The Node binary to run (default this process's). */
  node?: string;
}

// The module is imported before the drop, the reads after it; as root the drop is to nobody's uid, gid
// and groups (root's own supplementary groups would otherwise stay).
const SCRIPT = `
  const { FilesystemStore } = await import(process.env.VDS_MODULE);
  const store = new FilesystemStore({ root: process.env.VDS_ROOT, metadata: process.env.VDS_METADATA });
  if (process.getuid() === 0) {
    const nobody = Number(process.env.VDS_NOBODY);
    process.setgroups([nobody]);
    process.setgid(nobody);
    process.setuid(nobody);
  }
  const out = { uid: process.getuid() };
  for (const op of ['stat', 'get']) {
    try {
      const r = await store[op](process.env.VDS_KEY, { signal: new AbortController().signal });
      r.body?.destroy();
      out[op] = 'read';
    } catch (err) {
      out[op] = err.reason ?? err.code ?? String(err);
    }
  }
  console.log(JSON.stringify(out));`;

/** Runs `stat` and `get` of one key of a FilesystemStore in a child that is never root. */
export async function readAsUnprivileged(opts: StoreReadOptions): Promise<StoreReadReport> {
  const { stdout } = await execFileAsync(opts.node ?? process.execPath, ['--input-type=module', '-e', SCRIPT], {
    cwd: opts.root,
    env: {
      PATH: process.env.PATH ?? '/usr/bin:/bin',
      VDS_MODULE: opts.module instanceof URL ? opts.module.href : opts.module,
      VDS_METADATA: opts.metadata,
      VDS_ROOT: opts.root,
      VDS_KEY: opts.key,
      VDS_NOBODY: String(NOBODY),
    },
  });
  return JSON.parse(stdout) as StoreReadReport;
}

import { readFileSync, statSync } from 'node:fs';
import { fileURLToPath } from 'node:url';
import { join, resolve } from 'node:path';

/** Set by the single-executable bundle (esbuild --define), which has no package.json beside it. */
declare const VELERO_DOWNLOAD_VERSION: string | undefined;
const BUNDLED_VERSION = typeof VELERO_DOWNLOAD_VERSION === 'string' ? VELERO_DOWNLOAD_VERSION : undefined;

/** The package root: src/ and dist/ both sit one level below package.json; none in the bundle. */
const ROOT = BUNDLED_VERSION === undefined ? fileURLToPath(new URL('..', import.meta.url)) : undefined;

/** The package version. */
export const VERSION: string = BUNDLED_VERSION ?? (JSON.parse(readFileSync(join(ROOT!, 'package.json'), 'utf8')) as { version: string }).version;

const COMMIT = /^[0-9a-f]{40}(?:[0-9a-f]{24})?$/;

/**
 * The source commit, for build_info: a `REVISION` file at the package root (an image build writes
 * it, since an image carries no .git), else the git checkout the code runs from, else `unknown`.
 * Only files of the installation are read, never a command run; anything but a commit id is ignored,
 * so a label never carries arbitrary text.
 */
export function buildRevision(): string {
  // Read on first use: only the gateway's build_info needs it, not every start of the client.
  return (revision ??= ROOT === undefined ? 'unknown' : revisionOf(ROOT));
}
let revision: string | undefined;

/** The revision of the installation at `root` (see buildRevision). */
export function revisionOf(root: string): string {
  return commit(read(join(root, 'REVISION'))) ?? readGitHead(root) ?? 'unknown';
}

function read(path: string): string | undefined {
  try {
    return readFileSync(path, 'utf8').trim();
  } catch {
    return undefined;
  }
}

function commit(text: string | undefined): string | undefined {
  return text !== undefined && COMMIT.test(text) ? text : undefined;
}

function readGitHead(root: string): string | undefined {
  let gitDir = join(root, '.git');
  try {
    // A linked worktree's .git is a file naming its git directory.
    if (statSync(gitDir).isFile()) gitDir = resolve(root, (read(gitDir) ?? '').replace(/^gitdir: /, ''));
  } catch {
    return undefined;
  }
  const head = read(join(gitDir, 'HEAD'));
  const ref = /^ref: (refs\/[^\s]+)$/.exec(head ?? '')?.[1];
  if (!ref) return commit(head);
  if (ref.includes('..')) return undefined;
  const commonDir = resolve(gitDir, read(join(gitDir, 'commondir')) ?? '.');
  const loose = commit(read(join(commonDir, ref)));
  if (loose) return loose;
  const packed = (read(join(commonDir, 'packed-refs')) ?? '').split('\n').find((l) => l.endsWith(` ${ref}`));
  return commit(packed?.split(' ')[0]);
}

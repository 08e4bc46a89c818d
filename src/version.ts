import { readFileSync } from 'node:fs';

/** Set by the single-executable bundle (esbuild --define), which has no package.json beside it. */
declare const VELERO_DOWNLOAD_VERSION: string | undefined;

/** The package version; src/ and dist/ both sit one level below package.json. */
export const VERSION: string =
  typeof VELERO_DOWNLOAD_VERSION === 'string'
    ? VELERO_DOWNLOAD_VERSION
    : (JSON.parse(readFileSync(new URL('../package.json', import.meta.url), 'utf8')) as { version: string }).version;

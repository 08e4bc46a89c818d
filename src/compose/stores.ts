/** The store factory every mode shares, from the flags that configure it. */
import type { Logger } from 'pino';
import type { Config } from '../config/config.ts';
import { DefaultStoreFactory } from '../stores/factory.ts';
import { SettingFileError, readSettingFile } from '../util/setting-file.ts';

/** A file a flag names, read as every setting's file is: a regular file of at most 1 MiB. */
async function flagFile(flag: string, path: string): Promise<Buffer> {
  try {
    return await readSettingFile(path, flag);
  } catch (err) {
    // A start error for the operator: the path helps, and it is no secret.
    if (err instanceof SettingFileError) throw new Error(`${err.message}: ${path}`, { cause: err });
    throw err;
  }
}

/** The store factory every mode shares: install-time CA, default credential, a warning for insecure locations. */
export async function createStoreFactory(config: Config, log: Logger): Promise<DefaultStoreFactory> {
  return new DefaultStoreFactory({
    fsRoot: config.fsRoot,
    tenantEndpointAllow: config.tenantEndpointAllow,
    ...(config.caBundleFile && { installCaBundle: (await flagFile('--ca-bundle', config.caBundleFile)).toString('utf8') }),
    ...(config.defaultCredentialsFile && { defaultCredential: await flagFile('--default-credentials-file', config.defaultCredentialsFile) }),
    onInsecure: (location) => log.warn({ location }, 'TLS verification towards this location is disabled (insecureSkipTLSVerify)'),
  });
}

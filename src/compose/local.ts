/** Local mode: no cluster; the data directory (with a demo on first start), a locations file, static tokens. */
import type { Logger } from 'pino';
import { AllowAuthenticatedAuthorizer, StaticTokenAuthenticator, ensureTokenFile } from '../auth/static-tokens.ts';
import type { Config } from '../config/config.ts';
import { ObjectNotFoundError, StoreError } from '../stores/errors.ts';
import type { DefaultStoreFactory } from '../stores/factory.ts';
import { FilesystemStore } from '../stores/fs.ts';
import type { StoreSpec } from '../stores/spec.ts';
import type { ObjectStore } from '../stores/types.ts';
import { writeDemoIfEmpty } from '../velero/demo.ts';
import { LocationsFileError, loadLocationsFile } from '../velero/local-locations.ts';
import { LocalResolver, LocalVolumeResolver } from '../velero/resolve.ts';
import { localRepositoryPassword } from './kopia.ts';
import type { Location } from '../velero/resolve.ts';
import { ConfigurationError } from './mode.ts';
import type { Mode } from './mode.ts';
import { followAccessUserFile } from '../auth/access-user-source.ts';
import { accessUserAuthenticator, accessUserOptions } from './access-users.ts';
import type { PromiseOr } from '../util/promise-or.ts';
import { LocalCatalog } from '../velero/catalog.ts';

/** Local mode: nothing runs beside the routes. */
export async function localMode(config: Config, log: Logger, factory: DefaultStoreFactory): Promise<Mode> {
  // Checked before anything is written: a start that fails on its configuration leaves no trace.
  const fileLocations = config.locationsFile ? await checkedLocations(config.locationsFile, factory) : [];
  const demoKeys = config.demo ? await writeDemoIfEmpty(config.dataDir) : [];
  if (demoKeys.length > 0) log.info({ dataDir: config.dataDir, files: demoKeys.length }, 'wrote the demo backup and restore');
  if (await ensureTokenFile(config.tokenFile)) log.info({ tokenFile: config.tokenFile }, 'created a token file with one token for local-admin');

  // The data directory is a filesystem location of its own, whatever --fs-root says.
  const dataDirSpec: StoreSpec = { name: 'data-dir', provider: 'filesystem', bucket: '', prefix: '', config: {} };
  const dataDirStore = new FilesystemStore({ root: config.dataDir });
  const storeFor = (spec: StoreSpec): PromiseOr<ObjectStore> => (spec === dataDirSpec ? Promise.resolve(dataDirStore) : factory.forSpec(spec));
  const locations = [dataDirSpec, ...fileLocations];
  log.info({ locations: locations.map((l) => `${l.name} (${l.provider})`) }, 'store locations');
  const probe = async (loc: Location, signal: AbortSignal): Promise<boolean> => {
    try {
      await (await storeFor(loc.spec)).stat(loc.key, { signal });
      return true;
    } catch (err) {
      if (err instanceof ObjectNotFoundError) return false;
      throw err;
    }
  };
  const resolver = new LocalResolver(config.namespace, locations, probe);
  const stores = { forSpec: storeFor };
  // Only with the flag: local mode has no access users otherwise. The first read must succeed.
  const accessUsers = config.accessUsersFile ? await followAccessUserFile(config.accessUsersFile, '--access-users-file', accessUserOptions(config, log)) : undefined;
  const parts = {
    ...(accessUsers && { accessUsers: accessUserAuthenticator(accessUsers) }),
    authenticator: await StaticTokenAuthenticator.fromFile(config.tokenFile),
    authorizer: new AllowAuthenticatedAuthorizer(),
    resolver,
    stores,
    volumeResolver: new LocalVolumeResolver(resolver, stores, { password: await localRepositoryPassword(config) }),
    catalog: new LocalCatalog(config.namespace, locations, stores),
  };
  return {
    name: 'local',
    parts,
    start: async () => ({}),
    stop: async () => accessUsers?.stop(),
    info: () => ({}),
  };
}

/**
 * The --locations-file's locations, each built into its store once (provider known, config, URLs,
 * credential and CA parsed: nothing is connected to), so that a mistake in the file stops the start
 * with exit 2 instead of turning every download from that location into a 502. The operator wrote the
 * file, so its paths appear in the messages; the store errors never hold a credential's content.
 */
async function checkedLocations(file: string, factory: DefaultStoreFactory): Promise<StoreSpec[]> {
  const check = async (spec: StoreSpec): Promise<string | undefined> => {
    try {
      await factory.forSpec(spec);
      return undefined;
    } catch (err) {
      if (!(err instanceof StoreError)) throw err;
      // The file's report names the location already.
      const own = `location ${spec.name}`;
      return err.message.startsWith(own) ? err.message.slice(own.length).replace(/^:?\s*/, '') : err.message;
    }
  };
  try {
    return await loadLocationsFile(file, check);
  } catch (err) {
    if (err instanceof LocationsFileError) throw new ConfigurationError(err.problems.map((p) => `--locations-file ${file}: ${p}`));
    throw err;
  }
}

import type { ContainerClient } from '@azure/storage-blob';
import { StoreUnavailableError } from './errors.ts';
import { listPages } from './listing.ts';
import type { AdapterListing } from './listing.ts';
import type { ListedObject, ListOptions } from './types.ts';

export interface AzureListing extends AdapterListing {
  /** The container's client; throws once the store is closed. */
  container(): ContainerClient;
  /** One request under the transport's header deadline and retry policy. */
  call<T>(signal: AbortSignal, attempt: (signal: AbortSignal) => Promise<T>): Promise<T>;
}

/**
 * List Blobs (flat), a page per request through the SDK's `byPage`. The service has no "start after"
 * for flat listings of ordinary accounts, so `after` is applied here: a resumed listing reads the
 * pages before it again, without holding them.
 */
export function listAzure(azure: AzureListing, prefix: string, opts: ListOptions): AsyncIterable<ListedObject> {
  return listPages(
    {
      location: `location ${azure.location}`,
      root: azure.root,
      async fetchPage({ namePrefix, token, pageSize, signal }) {
        let pages: ReturnType<ReturnType<ContainerClient['listBlobsFlat']>['byPage']> | undefined;
        try {
          const got = await azure.call(signal, (s) => {
            // A new iterator per attempt: the previous one, if any, is ended first.
            void pages?.return?.(undefined);
            pages = azure
              .container()
              .listBlobsFlat({ ...(namePrefix === '' ? {} : { prefix: namePrefix }), abortSignal: s })
              .byPage({ ...(token === undefined ? {} : { continuationToken: token }), maxPageSize: pageSize });
            return pages.next();
          });
          if (got.done === true) return { objects: [], next: undefined };
          const objects = got.value.segment.blobItems.map(({ name, properties }) => {
            if (properties.contentLength === undefined) {
              throw new StoreUnavailableError(`location ${azure.location}: the store listed an object without a size`);
            }
            return { name, info: azure.info(properties.contentLength, properties.etag, properties.lastModified) };
          });
          const next = got.value.continuationToken;
          return { objects, next: next === undefined || next === '' ? undefined : next };
        } catch (err) {
          throw azure.translate(err, signal);
        } finally {
          // Only the first page is taken from the SDK's iterator: ending it keeps no request pending.
          await pages?.return?.(undefined);
        }
      },
    },
    prefix,
    opts,
  );
}

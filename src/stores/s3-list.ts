import { ListObjectsV2Command } from '@aws-sdk/client-s3';
import type { S3Client } from '@aws-sdk/client-s3';
import { StoreUnavailableError } from './errors.ts';
import { listPages } from './listing.ts';
import type { AdapterListing } from './listing.ts';
import type { ListedObject, ListOptions } from './types.ts';

export interface S3Listing extends AdapterListing {
  bucket: string;
  client(signal: AbortSignal): Promise<S3Client>;
  /** One request under the transport's header deadline and retry policy. */
  call<T>(signal: AbortSignal, attempt: (signal: AbortSignal) => Promise<T>): Promise<T>;
}

/**
 * ListObjectsV2, a page per request: S3 lists in UTF-8 byte order, `StartAfter` starts the first
 * page after a key, `ContinuationToken` goes on from there.
 */
export function listS3(s3: S3Listing, prefix: string, opts: ListOptions): AsyncIterable<ListedObject> {
  return listPages(
    {
      location: `location ${s3.location}`,
      root: s3.root,
      async fetchPage({ namePrefix, startAfter, token, pageSize, signal }) {
        try {
          const client = await s3.client(signal);
          const command = new ListObjectsV2Command({
            Bucket: s3.bucket,
            ...(namePrefix === '' ? {} : { Prefix: namePrefix }),
            ...(startAfter === undefined ? {} : { StartAfter: startAfter }),
            ...(token === undefined ? {} : { ContinuationToken: token }),
            MaxKeys: pageSize,
          });
          const out = await s3.call(signal, (s) => client.send(command, { abortSignal: s }));
          const objects = (out.Contents ?? []).map(({ Key: name, Size: size, ETag, LastModified }) => {
            if (name === undefined || size === undefined) {
              throw new StoreUnavailableError(`location ${s3.location}: the store listed an object without a name or size`);
            }
            return { name, info: s3.info(size, ETag, LastModified) };
          });
          return { objects, next: out.IsTruncated === true ? out.NextContinuationToken : undefined };
        } catch (err) {
          throw s3.translate(err, signal);
        }
      },
    },
    prefix,
    opts,
  );
}

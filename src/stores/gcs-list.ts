import type { Readable } from 'node:stream';
import { StoreUnavailableError } from './errors.ts';
import { listPages } from './listing.ts';
import type { ListedObject, ListOptions, ObjectInfo } from './types.ts';

/** A page of objects.list names at most 1000 objects; their metadata is far below this. */
const PAGE_LIMIT = 16 * 1024 * 1024;

/** What the GCS adapter lends its listing: its request, the names, its reading of metadata fields. */
export interface GcsListing {
  location: string;
  /** `<api root>/storage/v1/b/<bucket>/o`, the objects collection. */
  objectsUrl: string;
  /** The location's prefix inside the bucket. */
  root: string;
  /**
   * One authenticated GET as the adapter sends it (agent, timeouts, credentials), resolving to the body
   * of a 200 answer; anything else it throws as a store error (or the signal's reason).
   */
  send(url: string, signal: AbortSignal): Promise<Readable>;
  /** How `stat` turns `generation` into an ETag and `updated` into a date, so list and stat agree. */
  etag(generation: unknown): string | undefined;
  date(value: string | undefined): Date | undefined;
}

interface ListedItem {
  name?: unknown;
  size?: unknown;
  generation?: unknown;
  updated?: unknown;
}

async function readJson(body: Readable, signal: AbortSignal): Promise<{ items?: unknown; nextPageToken?: unknown }> {
  const chunks: Buffer[] = [];
  let total = 0;
  try {
    for await (const chunk of body) {
      total += (chunk as Buffer).length;
      if (total > PAGE_LIMIT) throw new Error(`a page of more than ${PAGE_LIMIT} bytes`);
      chunks.push(chunk as Buffer);
    }
    return JSON.parse(Buffer.concat(chunks).toString('utf8')) as { items?: unknown; nextPageToken?: unknown };
  } catch (err) {
    if (signal.aborted) throw signal.reason;
    throw err;
  } finally {
    body.destroy();
  }
}

/**
 * The JSON API's objects.list, a page per request: GCS lists in UTF-8 byte order, `startOffset`
 * starts the first page at a name (inclusive: the name itself is dropped by listPages), `pageToken`
 * goes on from there.
 */
export function listGcs(gcs: GcsListing, prefix: string, opts: ListOptions): AsyncIterable<ListedObject> {
  const unreadable = (cause?: unknown): StoreUnavailableError =>
    new StoreUnavailableError(`location ${gcs.location}: listing ${JSON.stringify(prefix)}: the store sent an unreadable page`, { cause });
  return listPages(
    {
      location: `location ${gcs.location}`,
      root: gcs.root,
      async fetchPage({ namePrefix, startAfter, token, pageSize, signal }) {
        const query = new URLSearchParams({ maxResults: String(pageSize), projection: 'noAcl', fields: 'nextPageToken,items(name,size,generation,updated)' });
        if (namePrefix !== '') query.set('prefix', namePrefix);
        if (startAfter !== undefined) query.set('startOffset', startAfter);
        if (token !== undefined) query.set('pageToken', token);
        const body = await gcs.send(`${gcs.objectsUrl}?${query.toString()}`, signal);
        let doc: { items?: unknown; nextPageToken?: unknown };
        try {
          doc = await readJson(body, signal);
        } catch (err) {
          if (signal.aborted) throw signal.reason;
          throw unreadable(err);
        }
        const items: unknown = doc.items ?? [];
        if (!Array.isArray(items)) throw unreadable();
        const objects = (items as ListedItem[]).map((item) => {
          const { name, size } = item;
          if (typeof name !== 'string' || typeof size !== 'string' || !/^\d+$/.test(size) || !Number.isSafeInteger(Number(size))) {
            throw unreadable();
          }
          const info: ObjectInfo = { size: Number(size) };
          const etag = gcs.etag(item.generation);
          if (etag !== undefined) info.etag = etag;
          const lastModified = gcs.date(typeof item.updated === 'string' ? item.updated : undefined);
          if (lastModified !== undefined) info.lastModified = lastModified;
          return { name, info };
        });
        const next = doc.nextPageToken;
        return { objects, next: typeof next === 'string' && next !== '' ? next : undefined };
      },
    },
    prefix,
    opts,
  );
}

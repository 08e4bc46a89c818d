/**
 * An object's bytes out of a store body, for the small files the gateway reads itself (volume lists,
 * `velero-backup.json`, the page's results and log): as a stream whichever way the store delivers
 * them, or whole under a bound that holds on what arrives, not only on what the store announced.
 */
import type { Readable } from 'node:stream';
import type { ObjectBody } from '../stores/types.ts';

/** The body's bytes as a stream (a reader body's own length-checked stream). */
export function bodyStream(body: ObjectBody): Readable {
  return body.kind === 'stream' ? body.body : body.stream();
}

/**
 * The whole body, or undefined when it is larger than `max` bytes (by its announced size, or by
 * what arrives: a store may deliver more than it announced). The body is released either way.
 */
export async function bytesOf(body: ObjectBody, max: number): Promise<Buffer | undefined> {
  const stream = bodyStream(body);
  if (body.size > max) {
    stream.destroy();
    return undefined;
  }
  const chunks: Buffer[] = [];
  let n = 0;
  for await (const chunk of stream as AsyncIterable<Buffer>) {
    n += chunk.length;
    if (n > max) {
      stream.destroy();
      return undefined;
    }
    chunks.push(chunk);
  }
  return Buffer.concat(chunks);
}

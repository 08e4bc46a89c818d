import { createHash } from 'node:crypto';
import { readdirSync } from 'node:fs';
import { setTimeout as sleep } from 'node:timers/promises';
import type { Readable } from 'node:stream';
import type { ObjectBody } from '../../src/stores/types.ts';

/** Reads a byte stream to the end; rejects with the stream's error. */
export async function collect(stream: Readable): Promise<Buffer> {
  const chunks: Buffer[] = [];
  for await (const chunk of stream) chunks.push(chunk as Buffer);
  return Buffer.concat(chunks);
}

/**
 * Reads a stream to its end or error without holding its bytes. Resolves (never rejects) with the
 * byte count and the error, if any: for tests that assert how a stream fails.
 */
export async function drain(stream: Readable): Promise<{ bytes: number; error: unknown }> {
  let bytes = 0;
  try {
    for await (const chunk of stream) bytes += (chunk as Buffer).length;
    return { bytes, error: undefined };
  } catch (error) {
    return { bytes, error };
  }
}

export function sha256(data: Uint8Array): string {
  return createHash('sha256').update(data).digest('hex');
}

/** Open file descriptors of this process (sockets included), from /proc/self/fd. */
export function openFdCount(): number {
  return readdirSync('/proc/self/fd').length;
}

/**
 * Polls until at most `limit` descriptors are open or `timeoutMs` passes; returns the last count, so
 * a test asserts on it (closing a file handle or a socket completes asynchronously).
 */
export async function waitForFdCount(limit: number, timeoutMs = 2000): Promise<number> {
  const deadline = Date.now() + timeoutMs;
  let count = openFdCount();
  while (count > limit && Date.now() < deadline) {
    await sleep(10);
    count = openFdCount();
  }
  return count;
}

/** Resolves with the first chunk the stream emits, then leaves it paused. */
export function firstChunk(stream: Readable): Promise<Buffer> {
  return new Promise((resolve, reject) => {
    const onError = (err: unknown): void => {
      stream.off('data', onData);
      reject(err instanceof Error ? err : new Error(String(err)));
    };
    const onData = (chunk: Buffer): void => {
      stream.pause();
      stream.off('error', onError);
      resolve(chunk);
    };
    stream.once('data', onData);
    stream.once('error', onError);
  });
}

const streams = new WeakMap<ObjectBody, Readable>();

/** An object's bytes as a stream, whichever kind of body its store gave (the same stream on every call). */
export function bodyOf(obj: ObjectBody): Readable {
  if (obj.kind === 'stream') return obj.body;
  let stream = streams.get(obj);
  if (stream === undefined) {
    stream = obj.stream();
    streams.set(obj, stream);
  }
  return stream;
}

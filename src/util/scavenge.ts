/**
 * A scavenge (V8's young-generation GC) for every 32 MiB of network body bytes the gateway passes on.
 *
 * Every TLS read of a network store's response body is a fresh 16 KiB Buffer: memory outside V8's
 * heap, freed only when the small JavaScript object holding it is collected. Such objects die young,
 * so a scavenge frees them; but a scavenge comes only when the young generation is full of JavaScript
 * objects, and a download allocates few of those per byte. When V8's external-memory limit (64 MB over
 * the last collection) comes first, it starts a full mark-compact of the whole heap instead: 8–16 per
 * 256 MiB from S3, each marking the gateway's ~40 MiB heap, the gateway's whole CPU gap to a bare Node
 * proxy (bench/README.md, "Why the gateway scavenges by bytes"). The young-generation cap the gateway
 * ships with (src/node-flags.ts) made scavenges come first only while enough JavaScript was allocated
 * per chunk, which a small unrelated change undid (a response-header change halved the scavenges per
 * 256 MiB and the full GCs came back). Counting bytes does not depend on that: one scavenge per 32 MiB
 * (~1 ms of a 4 MiB young generation) keeps the young buffers below the limit whatever else allocates.
 *
 * Who reaches it: nothing outside the process; the count is the bodies' own byte counts. `gc` is
 * taken from a separate context (V8's `--expose-gc` set at load, for that one context only), never
 * put on the global object.
 */
import { setFlagsFromString } from 'node:v8';
import { runInNewContext } from 'node:vm';

/** Body bytes between two scavenges: well under V8's 64 MB external-memory step, whatever the concurrency. */
export const SCAVENGE_EVERY_BYTES = 32 * 1024 * 1024;

setFlagsFromString('--expose-gc');
const gc = runInNewContext('gc') as (options: { type: 'minor' }) => void;
// Off again at once: a context created later (a library's vm use) gets no `gc` of its own.
setFlagsFromString('--no-expose-gc');

let since = 0;

/** Counts `bytes` of a network body passed on; every SCAVENGE_EVERY_BYTES, one scavenge. */
export function bodyBytesPassed(bytes: number): void {
  since += bytes;
  if (since >= SCAVENGE_EVERY_BYTES) {
    since = 0;
    gc({ type: 'minor' });
  }
}

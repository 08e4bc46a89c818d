/**
 * The Node flags the gateway ships with: `npm start` and the image's ENTRYPOINT pass exactly these
 * (a test holds all three together), and the benchmarks and tests start the gateway with them, so
 * what is measured is what runs.
 *
 * `--max-semi-space-size=4` (MiB): loading the gateway's modules grows V8's young generation from
 * 1 MiB to 32 MiB, and it never shrinks back. A download allocates few JavaScript objects but many
 * fresh 16 KiB TLS read buffers (external memory, freed only when the JavaScript object holding them
 * is collected). With a 32 MiB young generation scavenges are rare, so V8's 64 MB external-memory
 * limit starts a full mark-compact first, 8–14 of them per 256 MiB downloaded, each marking the
 * whole ~25 MiB heap. Capped at 4 MiB, scavenges free the buffers first and no full GC runs while
 * downloading: the gateway's CPU per GiB through S3 falls to the bare Node proxy's (measured in
 * bench/README.md, "Why the gateway caps V8's young generation"). 8 MiB is too large (the full GCs
 * stay); 2 MiB doubles the scavenges for nothing. The price: small requests scavenge more often
 * (~15 % more CPU per 4 KiB download with auth), accepted because large downloads are the job.
 * The cap alone proved fragile (it relies on each chunk allocating enough JavaScript to fill the young
 * generation first); src/util/scavenge.ts now also scavenges every 32 MiB of network body bytes.
 * The scavenges by bytes do not replace it: lifted (`--max-semi-space-size=16`), S3 went back to
 * 2.34× the bare proxy's CPU and a 295 MiB peak for 64 slow downloads (bench/README.md).
 */
export const GATEWAY_NODE_FLAGS: readonly string[] = ['--max-semi-space-size=4'];

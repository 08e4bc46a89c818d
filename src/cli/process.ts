/**
 * The `velero-download` process: wires argv, streams, environment and signals to `run`. Called by
 * main.ts once the Node version is known to be one this code runs on, and by sea.ts in a single
 * executable (whose Node is the one it was built with).
 */
import { openTerminal } from './password.ts';
import { run } from './run.ts';

/** Runs the command on this process's argv, streams, environment and signals, then exits with its code. */
export async function main(): Promise<never> {
  const interrupt = new AbortController();
  let signals = 0;
  for (const sig of ['SIGINT', 'SIGTERM'] as const) {
    process.on(sig, () => {
      // A second signal means "now": skip the cleanup the first one started.
      if (signals++) process.exit(sig === 'SIGINT' ? 130 : 143);
      interrupt.abort(new Error(`interrupted by ${sig}`));
    });
  }
  
  const code = await run(process.argv.slice(2), {
    stdout: process.stdout,
    stderr: process.stderr,
    env: process.env,
    cwd: process.cwd(),
    signal: interrupt.signal,
    stdin: () => process.stdin,
    openTerminal: () => openTerminal(() => process.stdin, process.stderr),
  });
  // Idle keep-alive connections of the Kubernetes client must not hold the process open; exit once
  // stdout has taken everything (writes to pipes are asynchronous on some platforms).
  const out = process.stdout;
  if (!out.writableEnded && out.writableLength > 0) await new Promise<void>((r) => out.write('', () => r()));
  else if (out.writableEnded && !out.writableFinished) await new Promise<void>((r) => out.once('finish', () => r()).once('error', () => r()));
  process.exit(code);
}

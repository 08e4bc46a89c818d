/**
 * Helpers for the reliability tests: counting a process's open file descriptors, polling for a
 * condition, a seeded PRNG, the gateway process started under another command (strace), and a raw
 * HTTP/1.1-over-TLS client that can send malformed requests and still parse what comes back.
 */
import type { ChildProcess } from 'node:child_process';
import { once } from 'node:events';
import { readdir, readFile, readlink } from 'node:fs/promises';
import { connect } from 'node:tls';
import type { SecureContextOptions, TLSSocket } from 'node:tls';
import { startGateway } from './processes.ts';


/** Open file descriptors of a process (Linux /proc). */
export async function fdCount(pid: number): Promise<number> {
  return (await readdir(`/proc/${pid}/fd`)).length;
}

/** What each open descriptor of a process points at (`socket:[123]`, `/path`, `anon_inode:[eventpoll]`). */
export async function fdTargets(pid: number): Promise<string[]> {
  const fds = await readdir(`/proc/${pid}/fd`);
  const out: string[] = [];
  for (const fd of fds) out.push(await readlink(`/proc/${pid}/fd/${fd}`).catch(() => '(gone)'));
  return out.sort();
}

export const sleep = (ms: number): Promise<void> => new Promise((r) => setTimeout(r, ms));

/** Polls `check` until it returns true or `timeoutMs` passes; returns the last result. */
export async function waitFor(check: () => boolean | Promise<boolean>, timeoutMs: number, intervalMs = 100): Promise<boolean> {
  const until = Date.now() + timeoutMs;
  for (;;) {
    if (await check()) return true;
    if (Date.now() >= until) return false;
    await sleep(intervalMs);
  }
}

/** mulberry32: a small, fast, seeded 32-bit PRNG, so a fuzz run is reproducible from its seed. */
export function seededRandom(seed: number): () => number {
  let a = seed >>> 0;
  return () => {
    a = (a + 0x6d2b79f5) >>> 0;
    let t = a;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  };
}

export interface WrappedGateway {
  /** The wrapper (e.g. strace). */
  proc: ChildProcess;
  /** The gateway's own pid (the wrapper's child). */
  pid: number;
  url: string;
  port: number;
  logs: Record<string, unknown>[];
  output: () => string;
  /** Signals the gateway itself, waits for the wrapper to exit; returns the wrapper's exit code. */
  stop(signal?: NodeJS.Signals): Promise<number | null>;
}

/**
 * Starts the gateway as `wrapper... node src/main.ts args` (e.g. under `strace -f -o FILE`) through
 * startGateway (processes.ts), and finds the gateway's own pid, the wrapper's one child.
 */
export async function startWrappedGateway(wrapper: string[], args: string[]): Promise<WrappedGateway> {
  const gw = await startGateway(args, {}, { wrapper, startTimeoutMs: 40_000 });
  const { proc } = gw;
  const children = (await readFile(`/proc/${proc.pid}/task/${proc.pid}/children`, 'utf8')).trim().split(/\s+/).filter(Boolean).map(Number);
  if (children.length !== 1) throw new Error(`expected one child of ${String(wrapper[0])}, found ${children.join(',')}`);
  const pid = children[0]!;
  const exited = proc.exitCode !== null ? Promise.resolve([proc.exitCode]) : once(proc, 'exit');
  return {
    ...gw,
    pid,
    async stop(signal = 'SIGTERM') {
      if (proc.exitCode !== null) return proc.exitCode;
      try {
        process.kill(pid, signal);
      } catch {
        proc.kill('SIGKILL');
      }
      const [code] = (await exited) as [number | null];
      return code;
    },
  };
}

export interface RawResponse {
  status: number;
  /** Lower-case names; repeated headers joined with ", ". */
  headers: Record<string, string>;
  body: Buffer;
  /** Interim (1xx) statuses seen before the final one. */
  interim: number[];
}

/**
 * One client TLS connection speaking HTTP/1.1 by hand: `exchange` writes any bytes and reads one
 * response (skipping 1xx), or resolves `undefined` when the server closes the connection first.
 */
export class RawConnection {
  readonly socket: TLSSocket;
  #buf: Buffer = Buffer.alloc(0);
  #closed = false;
  #wake: (() => void) | undefined;

  private constructor(socket: TLSSocket) {
    this.socket = socket;
    socket.on('data', (d: Buffer) => {
      this.#buf = this.#buf.length === 0 ? d : Buffer.concat([this.#buf, d]);
      this.#wake?.();
    });
    const onEnd = (): void => {
      this.#closed = true;
      this.#wake?.();
    };
    socket.on('end', onEnd);
    socket.on('close', onEnd);
    socket.on('error', onEnd);
  }

  static async open(port: number, tls: SecureContextOptions & { session?: Buffer }, host = '127.0.0.1'): Promise<RawConnection> {
    const socket = connect({ host, port, servername: 'localhost', ...tls });
    await new Promise<void>((resolve, reject) => {
      socket.once('secureConnect', resolve);
      socket.once('error', reject);
    });
    return new RawConnection(socket);
  }

  get closed(): boolean {
    return this.#closed;
  }

  destroy(): void {
    this.#closed = true;
    this.socket.destroy();
  }

  async #more(deadline: number): Promise<boolean> {
    if (this.#closed) return false;
    const left = deadline - Date.now();
    if (left <= 0) throw new Error('no complete response in time');
    await new Promise<void>((resolve) => {
      const t = setTimeout(resolve, left);
      this.#wake = () => {
        clearTimeout(t);
        this.#wake = undefined;
        resolve();
      };
    });
    return true;
  }

  /** Sends `request`; resolves with the response, or undefined when the connection closed without one. */
  async exchange(request: Buffer | string, opts: { head?: boolean; timeoutMs?: number } = {}): Promise<RawResponse | undefined> {
    const deadline = Date.now() + (opts.timeoutMs ?? 10_000);
    if (!this.#closed) this.socket.write(request);
    const interim: number[] = [];
    for (;;) {
      let end: number;
      while ((end = this.#buf.indexOf('\r\n\r\n')) < 0) {
        if (!(await this.#more(deadline)) && this.#buf.indexOf('\r\n\r\n') < 0) return undefined;
      }
      const lines = this.#buf.subarray(0, end).toString('latin1').split('\r\n');
      this.#buf = this.#buf.subarray(end + 4);
      const status = Number(/^HTTP\/\d\.\d (\d{3})/.exec(lines[0] ?? '')?.[1]);
      if (!Number.isInteger(status)) throw new Error(`not an HTTP status line: ${JSON.stringify(lines[0])}`);
      const headers: Record<string, string> = {};
      for (const l of lines.slice(1)) {
        const i = l.indexOf(':');
        const k = l.slice(0, i).trim().toLowerCase();
        const v = l.slice(i + 1).trim();
        headers[k] = headers[k] === undefined ? v : `${headers[k]}, ${v}`;
      }
      if (status >= 100 && status < 200 && status !== 101) {
        interim.push(status);
        continue;
      }
      let body: Buffer;
      if (opts.head || status === 204 || status === 304) body = Buffer.alloc(0);
      else if (/chunked/i.test(headers['transfer-encoding'] ?? '')) body = await this.#chunked(deadline);
      else if (headers['content-length'] !== undefined) {
        const n = Number(headers['content-length']);
        while (this.#buf.length < n) if (!(await this.#more(deadline))) break;
        body = this.#buf.subarray(0, n);
        this.#buf = this.#buf.subarray(body.length);
      } else {
        while (await this.#more(deadline));
        body = this.#buf;
        this.#buf = Buffer.alloc(0);
      }
      return { status, headers, body, interim };
    }
  }

  async #chunked(deadline: number): Promise<Buffer> {
    const parts: Buffer[] = [];
    for (;;) {
      let nl: number;
      while ((nl = this.#buf.indexOf('\r\n')) < 0) if (!(await this.#more(deadline))) return Buffer.concat(parts);
      const size = parseInt(this.#buf.subarray(0, nl).toString('latin1'), 16);
      this.#buf = this.#buf.subarray(nl + 2);
      while (this.#buf.length < size + 2) if (!(await this.#more(deadline))) return Buffer.concat(parts);
      if (size === 0) {
        this.#buf = this.#buf.subarray(2);
        return Buffer.concat(parts);
      }
      parts.push(this.#buf.subarray(0, size));
      this.#buf = this.#buf.subarray(size + 2);
    }
  }
}

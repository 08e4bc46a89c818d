/**
 * A tripwire file: proof, without strace, that nothing read a path. It is a FIFO the test itself
 * holds open for reading and writing, with a random marker waiting in the pipe. Anyone who opens the
 * path and reads takes bytes out of the pipe (a pipe's bytes are read once), so `intact()` is false
 * from then on; a reader that blocks for more (readFile on a FIFO) is released with an end-of-file
 * when the tripwire closes. Opening alone is not seen, reading is: reading is what sends a file's
 * bytes anywhere or fills memory with them.
 */
import { execFile } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { constants } from 'node:fs';
import { open } from 'node:fs/promises';
import { promisify } from 'node:util';

export interface Tripwire {
  path: string;
  /** True while the whole marker is still in the pipe: nobody read from the path. */
  intact(): Promise<boolean>;
  close(): Promise<void>;
}

const MARKER_BYTES = 512;

export async function tripwire(path: string): Promise<Tripwire> {
  await promisify(execFile)('mkfifo', [path]);
  // O_RDWR on a FIFO never blocks (Linux): the test is its own reader and writer.
  const fh = await open(path, constants.O_RDWR | constants.O_NONBLOCK);
  const marker = randomBytes(MARKER_BYTES);
  await fh.write(marker);
  return {
    path,
    async intact() {
      const buf = Buffer.alloc(MARKER_BYTES * 2);
      let got: number;
      try {
        got = (await fh.read(buf, 0, buf.length, null)).bytesRead;
      } catch (err) {
        if ((err as { code?: unknown }).code === 'EAGAIN') return false; // emptied by someone else
        throw err;
      }
      const whole = got === MARKER_BYTES && buf.subarray(0, got).equals(marker);
      // Armed again for the next check.
      if (whole) await fh.write(marker);
      return whole;
    },
    async close() {
      await fh.close();
    },
  };
}

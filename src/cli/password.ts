/**
 * An access user's password, from where a password may come: a file (`--password-file`, or the file
 * $VELERO_DOWNLOAD_PASSWORD_FILE names), stdin (`--password-file -`, and `hash-password` when stdin is
 * not a terminal), or a prompt on the terminal with echo off. Never from a command-line value, which
 * `ps`, shell history and CI logs keep. The password is only returned: nothing here prints it, and
 * every message names the file, never its contents.
 */
import { openSync, closeSync, writeSync } from 'node:fs';
import { open } from 'node:fs/promises';
import type { Readable } from 'node:stream';
import { StringDecoder } from 'node:string_decoder';
import { ReadStream as TtyReadStream, isatty } from 'node:tty';
import { MAX_PASSWORD_BYTES } from '../util/passwords.ts';
import { CliError, EXIT, UsageError } from './errors.ts';

/** The variable that may name a password file (a file name is no secret, unlike a password in the environment). */
export const PASSWORD_FILE_ENV = 'VELERO_DOWNLOAD_PASSWORD_FILE';

/** A terminal to prompt on: its input switches to raw mode (no echo, no line editing, no signals). */
export interface PromptTerminal {
  input: Readable & { setRawMode(raw: boolean): unknown };
  write(text: string): void;
  /** Releases the terminal (closes what openTerminal opened). */
  close(): void;
}

// Enough for the longest password, a "\r\n", and one byte more to tell "too long" from "just fits".
const LINE_LIMIT = MAX_PASSWORD_BYTES + 3;

/**
 * The first line of `chunks` as a password: up to the first `\n` (a `\r` before it dropped), UTF-8,
 * 1 to MAX_PASSWORD_BYTES bytes. Reads at most a few bytes past the limit, so `/dev/zero` or a huge
 * file ends quickly. `what` names the source in errors.
 */
export async function firstLine(chunks: AsyncIterable<Buffer>, what: string): Promise<string> {
  const parts: Buffer[] = [];
  let size = 0;
  let ended = false;
  for await (const chunk of chunks) {
    const nl = chunk.indexOf(0x0a);
    parts.push(nl < 0 ? chunk : chunk.subarray(0, nl));
    size += nl < 0 ? chunk.length : nl;
    if (nl >= 0 || size >= LINE_LIMIT) {
      ended = nl >= 0;
      break;
    }
  }
  let line = Buffer.concat(parts);
  if (!ended && line.length >= LINE_LIMIT) throw new UsageError(`${what}: the password is longer than ${MAX_PASSWORD_BYTES} bytes`);
  if (line.at(-1) === 0x0d) line = line.subarray(0, -1);
  if (line.length === 0) throw new UsageError(`${what}: the first line is empty: write the password on it`);
  if (line.length > MAX_PASSWORD_BYTES) throw new UsageError(`${what}: the password is longer than ${MAX_PASSWORD_BYTES} bytes`);
  try {
    return new TextDecoder('utf-8', { fatal: true }).decode(line);
  } catch {
    throw new UsageError(`${what}: the password is not UTF-8 text`);
  }
}

/**
 * Reads a password file's first line. The file is the user's own (a symbolic link is followed, with
 * the user's own rights: nothing is read that the user could not `cat`). A file others may read gets
 * a warning, not a refusal: Secrets mounted into pods (mode 0644 by default) and Docker secrets (0444)
 * are the usual home of a CI job's password, and there "others" is nobody; refusing them would push
 * users to copies in worse places. `warn` gets the one line.
 */
export async function readPasswordFile(file: string, label: string, warn: (msg: string) => void): Promise<string> {
  let handle;
  try {
    handle = await open(file, 'r');
  } catch (err) {
    throw new UsageError(`${label}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  }
  try {
    const st = await handle.stat();
    if (st.isDirectory()) throw new UsageError(`${label}: ${file} is a directory`);
    // /dev/tty or /dev/stdin on a terminal: reading it in its normal mode would show the password.
    if (isatty(handle.fd)) throw new UsageError(`${label}: ${file} is a terminal, where the password would show as you type; leave out ${label} to be asked without echo`);
    if (st.isFile() && (st.mode & 0o044) !== 0) {
      warn(`warning: ${file} (mode ${(st.mode & 0o777).toString(8).padStart(4, '0')}) can be read by other users: chmod 600 ${file}`);
    }
    // A FIFO or a process substitution (<(pass show ...)) has no position: read from where it is.
    const h = handle;
    async function* chunks(): AsyncGenerator<Buffer> {
      for (;;) {
        const { bytesRead, buffer } = await h.read(Buffer.alloc(LINE_LIMIT), 0, LINE_LIMIT, null);
        if (bytesRead === 0) return;
        yield buffer.subarray(0, bytesRead);
      }
    }
    return await firstLine(chunks(), `${label} ${file}`);
  } catch (err) {
    if (err instanceof CliError) throw err;
    throw new UsageError(`${label}: cannot read ${file}: ${(err as NodeJS.ErrnoException).code ?? (err as Error).message}`);
  } finally {
    await handle.close();
  }
}

// A CSI escape sequence (arrow keys, Home, ...): ESC [ parameters, then one final byte.
const CSI_FINAL = /[@-~]/;

/**
 * Prompts on `term` with echo off and returns what was typed before Enter. Backspace deletes a
 * character, Ctrl-U the line; escape sequences (arrow keys) and other control characters are ignored.
 * Ctrl-C (which raw mode delivers as a byte, not a signal) and `signal` end the prompt with exit 130;
 * Ctrl-D on an empty line, or the terminal closing, with a usage error. The terminal's mode is
 * restored on every way out, the process exiting included.
 */
export function promptPassword(term: PromptTerminal, prompt: string, signal: AbortSignal): Promise<string> {
  return new Promise<string>((resolve, reject) => {
    const chars: string[] = [];
    const decoder = new StringDecoder('utf8');
    let escape: '' | 'esc' | 'csi' = '';
    const restore = (): void => void term.input.setRawMode(false);
    const finish = (err: Error | undefined): void => {
      term.input.off('data', onData);
      term.input.off('end', onEnd);
      term.input.off('error', onError);
      signal.removeEventListener('abort', onAbort);
      process.off('exit', restore);
      restore();
      term.input.pause();
      term.write('\n');
      term.close();
      if (err) reject(err);
      else resolve(chars.join(''));
    };
    const onData = (chunk: Buffer | string): void => {
      const text = typeof chunk === 'string' ? chunk : decoder.write(chunk);
      for (const c of text) {
        if (escape === 'esc') {
          escape = c === '[' ? 'csi' : '';
          continue;
        }
        if (escape === 'csi') {
          if (CSI_FINAL.test(c)) escape = '';
          continue;
        }
        if (c === '\r' || c === '\n') {
          if (Buffer.byteLength(chars.join(''), 'utf8') > MAX_PASSWORD_BYTES) {
            return finish(new UsageError(`the password is longer than ${MAX_PASSWORD_BYTES} bytes`));
          }
          return finish(chars.length ? undefined : new UsageError('no password entered'));
        }
        if (c === '\u0003') return finish(new CliError(EXIT.interrupted, 'interrupted: nothing was sent'));
        if (c === '\u0004') {
          if (chars.length === 0) return finish(new UsageError('no password entered'));
        } else if (c === '\u007f' || c === '\b') {
          chars.pop();
        } else if (c === '\u0015') {
          chars.length = 0;
        } else if (c === '\u001b') {
          escape = 'esc';
        } else if (c >= ' ') {
          chars.push(c);
        }
      }
    };
    const onEnd = (): void => finish(new UsageError('no password entered (the terminal closed)'));
    const onError = (err: Error): void => finish(new UsageError(`cannot read the password from the terminal: ${err.message}`));
    const onAbort = (): void => finish(new CliError(EXIT.interrupted, 'interrupted: nothing was sent'));
    if (signal.aborted) {
      reject(new CliError(EXIT.interrupted, 'interrupted: nothing was sent'));
      term.close();
      return;
    }
    term.input.setRawMode(true);
    // process.exit() (a second Ctrl-C from another terminal, say) skips finally blocks, not 'exit'.
    process.once('exit', restore);
    signal.addEventListener('abort', onAbort, { once: true });
    term.input.on('data', onData);
    term.input.once('end', onEnd);
    term.input.once('error', onError);
    term.input.resume();
    term.write(prompt);
  });
}

/**
 * The controlling terminal (/dev/tty, as ssh and sudo prompt: stdin and stdout may be pipes), else
 * stdin when it is a terminal, with the prompt on stderr; undefined when there is none (a CI job, a
 * cron job, a process started without a terminal).
 */
export function openTerminal(stdin: () => Readable & { isTTY?: boolean; setRawMode?: (raw: boolean) => unknown }, stderr: { write(s: string): unknown }): PromptTerminal | undefined {
  let readFd: number | undefined;
  try {
    readFd = openSync('/dev/tty', 'r');
    const writeFd = openSync('/dev/tty', 'w');
    const input = new TtyReadStream(readFd);
    return {
      input,
      write: (text) => void writeSync(writeFd, text),
      close: () => {
        input.destroy();
        closeSync(writeFd);
      },
    };
  } catch {
    if (readFd !== undefined) closeSync(readFd);
  }
  const input = stdin();
  if (!input.isTTY || !input.setRawMode) return undefined;
  return { input: input as PromptTerminal['input'], write: (text) => void stderr.write(text), close: () => {} };
}

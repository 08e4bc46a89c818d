/**
 * Log destinations: the lines of one event-loop turn reach the underlying destination as one write,
 * in order, by the end of the turn; a large turn does not wait; fatal lines and process exit flush
 * what is pending. The exit cases run a real child process writing to a real stdout pipe and file.
 */
import assert from 'node:assert/strict';
import { execFile } from 'node:child_process';
import { mkdtemp, readFile, rm } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { setImmediate as nextTurn } from 'node:timers/promises';
import { fileURLToPath } from 'node:url';
import { promisify } from 'node:util';
import { describe, test } from 'node:test';
import type { DestinationStream } from 'pino';
import { createLogger, TURN_BATCH_MAX, TurnBatchedDestination } from '../../src/server/logging.ts';

const LOGGING = fileURLToPath(new URL('../../src/server/logging.ts', import.meta.url));

/** A destination that records each write it is given. */
function recorder(): DestinationStream & { writes: string[] } {
  const writes: string[] = [];
  return { writes, write: (s: string) => void writes.push(s) };
}

describe('TurnBatchedDestination', () => {
  test('the lines of one turn arrive as one write, in order, when the turn ends', async () => {
    const dest = recorder();
    const log = createLogger('info', new TurnBatchedDestination(dest));
    log.info({ n: 1 }, 'first');
    log.info({ n: 2 }, 'second');
    log.warn({ n: 3 }, 'third');
    assert.equal(dest.writes.length, 0, 'nothing is written before the turn ends');
    await nextTurn();
    assert.equal(dest.writes.length, 1);
    const lines = dest.writes[0]!.trimEnd().split('\n').map((l) => JSON.parse(l) as { msg: string; n: number });
    assert.deepEqual(lines.map((l) => [l.msg, l.n]), [['first', 1], ['second', 2], ['third', 3]]);

    log.info('next turn');
    await nextTurn();
    assert.equal(dest.writes.length, 2, 'a later turn is a later write');
    assert.match(dest.writes[1]!, /"msg":"next turn"/);
    await nextTurn();
    assert.equal(dest.writes.length, 2, 'a turn without lines writes nothing');
  });

  test(`more than ${TURN_BATCH_MAX} characters in one turn are written without waiting`, () => {
    const dest = recorder();
    const batched = new TurnBatchedDestination(dest);
    const line = `${'x'.repeat(1023)}\n`;
    for (let i = 0; i < 64; i++) batched.write(line);
    assert.equal(dest.writes.length, 1);
    assert.equal(dest.writes[0]!.length, TURN_BATCH_MAX);
    batched.write(line);
    assert.equal(dest.writes.length, 1, 'the rest waits for the end of the turn again');
  });

  test('flushSync writes what is pending (pino calls it for fatal lines), and nothing twice', async () => {
    const dest = recorder();
    const log = createLogger('info', new TurnBatchedDestination(dest));
    log.info('before');
    log.fatal('fatal');
    assert.equal(dest.writes.length, 1, 'the fatal line does not wait for the turn');
    assert.match(dest.writes[0]!, /"msg":"before"[^\n]*\n[^\n]*"msg":"fatal"/);
    await nextTurn();
    assert.equal(dest.writes.length, 1);
  });

  test('stdout and the audit file get the lines of a process that exits in the turn that logged them', async () => {
    const dir = await mkdtemp(join(tmpdir(), 'vds-logging-'));
    try {
      const auditFile = join(dir, 'audit.log');
      const script = [
        `import { createAuditLogger, createLogger } from ${JSON.stringify(LOGGING)};`,
        `const log = createLogger('info');`,
        `const audit = createAuditLogger('info', ${JSON.stringify(auditFile)});`,
        `log.info('one'); audit.info('two'); log.info('three');`,
        'process.exit(0);',
      ].join('\n');
      const { stdout } = await promisify(execFile)(process.execPath, ['--input-type=module', '-e', script]);
      assert.deepEqual(stdout.trimEnd().split('\n').map((l) => (JSON.parse(l) as { msg: string }).msg), ['one', 'two', 'three']);
      const audited = (await readFile(auditFile, 'utf8')).trimEnd().split('\n');
      assert.deepEqual(audited.map((l) => (JSON.parse(l) as { msg: string }).msg), ['two']);
    } finally {
      await rm(dir, { recursive: true, force: true });
    }
  });
});

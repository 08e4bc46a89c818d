/**
 * The partial file and its record (src/cli/partial.ts) on the real file system: what an earlier run
 * left is continued only when every check passes; anything hostile or damaged is ignored, never
 * followed, and the download starts over.
 */
import assert from 'node:assert/strict';
import { mkdtemp, readFile, readdir, rm, stat, symlink, writeFile } from 'node:fs/promises';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { after, before, describe, test } from 'node:test';
import { PartialDownload, serverIdentity } from '../../src/cli/partial.ts';
import type { SourceIdentity } from '../../src/cli/partial.ts';

const SOURCE: SourceIdentity = { server: 'https://api.example:6443', route: '/v1/namespaces/velero/backups/nightly/contents' };
const GOOD = { version: 1, source: SOURCE, validator: '"abc-123"', total: 1000, bytes: 100 };

describe('partial downloads', () => {
  let dir: string;
  let n = 0;
  before(async () => {
    dir = await mkdtemp(join(tmpdir(), 'vds-partial-'));
  });
  after(() => rm(dir, { recursive: true, force: true }));

  /** A fresh output name with `data` as its partial file and `record` (text, or JSON of an object) as its record. */
  async function leftover(data: Buffer | undefined, record: unknown): Promise<{ out: string; messages: string[]; p: PartialDownload }> {
    const out = join(dir, `out-${n++}.bin`);
    if (data) await writeFile(`${out}.partial`, data);
    if (record !== undefined) await writeFile(`${out}.partial.json`, typeof record === 'string' ? record : JSON.stringify(record));
    const messages: string[] = [];
    const p = await PartialDownload.find(out, SOURCE, (m) => messages.push(m));
    return { out, messages, p };
  }

  test('a matching record over a large enough partial file is continued', async () => {
    const { p, messages } = await leftover(Buffer.alloc(150, 1), GOOD);
    assert.deepEqual(p.resume, { offset: 100, validator: '"abc-123"', total: 1000 });
    assert.deepEqual(messages, []);
  });

  test('nothing left: a fresh start, without a word', async () => {
    const { p, messages } = await leftover(undefined, undefined);
    assert.equal(p.resume, undefined);
    assert.deepEqual(messages, []);
  });

  const hostile: [string, Buffer | undefined, unknown, RegExp][] = [
    ['no record', Buffer.alloc(10), undefined, /there is no record of what it holds/],
    ['a record that is not JSON', Buffer.alloc(200), '{"version":1,', /it is not JSON/],
    ['a huge record', Buffer.alloc(200), JSON.stringify({ ...GOOD, pad: 'x'.repeat(100_000) }), /its record is too large/],
    ['JSON of another shape', Buffer.alloc(200), [1, 2, 3], /it is of another version|not a record/],
    ['another version', Buffer.alloc(200), { ...GOOD, version: 2 }, /another version/],
    ['another server', Buffer.alloc(200), { ...GOOD, source: { ...SOURCE, server: 'https://evil.example' } }, /it is from another source/],
    ['another artifact', Buffer.alloc(200), { ...GOOD, source: { ...SOURCE, route: '/v1/namespaces/velero/backups/other/contents' } }, /it is from another source/],
    ['more bytes than the file holds', Buffer.alloc(50), GOOD, /counts more bytes than it holds/],
    ['a byte count beyond the object', Buffer.alloc(5000), { ...GOOD, bytes: 2000 }, /out of range/],
    ['a negative byte count', Buffer.alloc(200), { ...GOOD, bytes: -5 }, /out of range/],
    ['a fractional byte count', Buffer.alloc(200), { ...GOOD, bytes: 1.5 }, /not numbers/],
    ['a validator that would split the If-Range header', Buffer.alloc(200), { ...GOOD, validator: '"x"\r\nAuthorization: Bearer stolen' }, /no usable ETag/],
    ['no validator', Buffer.alloc(200), { ...GOOD, validator: '' }, /no usable ETag/],
  ];
  for (const [what, data, record, why] of hostile) {
    test(`ignored, and the download starts over: ${what}`, async () => {
      const { p, messages } = await leftover(data, record);
      assert.equal(p.resume, undefined);
      assert.equal(messages.length, 1);
      assert.match(messages[0]!, why);
      assert.match(messages[0]!, /^ignoring \S+\.partial \(.*\): starting over$/);
    });
  }

  test('a partial file or record that is a symbolic link is never followed, read or written through', async () => {
    const victim = join(dir, 'victim');
    await writeFile(victim, 'precious');
    const out = join(dir, 'linked.bin');
    await symlink(victim, `${out}.partial`);
    await writeFile(`${out}.partial.json`, JSON.stringify({ ...GOOD, bytes: 3 }));
    const messages: string[] = [];
    const p = await PartialDownload.find(out, SOURCE, (m) => messages.push(m));
    assert.equal(p.resume, undefined);
    assert.match(messages.join(), /it is a symbolic link/);
    const w = await p.begin(0, '"v"', 10);
    await new Promise<void>((ok, fail) => w.stream.end(Buffer.from('new'), (err?: Error | null) => (err ? fail(err) : ok())));
    assert.equal(await readFile(victim, 'utf8'), 'precious', 'the link target is untouched');
    assert.ok((await stat(`${out}.partial`)).isFile());

    const out2 = join(dir, 'linked-record.bin');
    await writeFile(`${out2}.partial`, Buffer.alloc(200));
    await writeFile(victim, JSON.stringify(GOOD));
    await symlink(victim, `${out2}.partial.json`);
    const p2 = await PartialDownload.find(out2, SOURCE, (m) => messages.push(m));
    assert.equal(p2.resume, undefined, 'a record through a link is not believed');
  });

  test('keep() records the bytes written when the object can be resumed, and removes them when it cannot', async () => {
    const out = join(dir, 'keep.bin');
    const p = await PartialDownload.find(out, SOURCE, () => {});
    const w = await p.begin(0, '"etag-1"', 100);
    await new Promise((r) => w.stream.write(Buffer.alloc(40, 7), r));
    assert.equal(await p.keep(), 40);
    const record = JSON.parse(await readFile(`${out}.partial.json`, 'utf8')) as Record<string, unknown>;
    assert.deepEqual(record, { version: 1, source: SOURCE, validator: '"etag-1"', total: 100, bytes: 40 });
    assert.equal((await stat(`${out}.partial.json`)).mode & 0o777, 0o600);

    // Continued: the bytes after the offset are replaced, those before stay.
    const again = await PartialDownload.find(out, SOURCE, () => {});
    assert.equal(again.resume?.offset, 40);
    const w2 = await again.begin(40, '"etag-1"', 100);
    await new Promise<void>((ok) => w2.stream.end(Buffer.alloc(60, 9), () => ok()));
    const bytes = await readFile(`${out}.partial`);
    assert.deepEqual(bytes, Buffer.concat([Buffer.alloc(40, 7), Buffer.alloc(60, 9)]));

    // No validator (a server that cannot resume): nothing is kept.
    const out2 = join(dir, 'nokeep.bin');
    const q = await PartialDownload.find(out2, SOURCE, () => {});
    const wq = await q.begin(0, undefined, 100);
    await new Promise((r) => wq.stream.write(Buffer.alloc(40), r));
    assert.equal(await q.keep(), 0);
    assert.ok(!(await readdir(dir)).some((f) => f.startsWith('nokeep.bin')), 'no partial file, no record');
  });

  test('the server part of an identity drops user info, query and fragment', () => {
    assert.equal(serverIdentity(new URL('https://user:pw@gw.example:8443/base/?X-Amz-Signature=abc#frag')), 'https://gw.example:8443/base');
  });
});

/**
 * The client address behind trusted proxies (X-Forwarded-For read only from them), the parsing of
 * --trusted-proxies, the per-client connection key, and the download slots: table-driven, with
 * fake requests and responses (the real process replays the attacks in
 * test/reliability/connection-limits.test.ts).
 */
import assert from 'node:assert/strict';
import { EventEmitter } from 'node:events';
import type { IncomingMessage } from 'node:http';
import { describe, test } from 'node:test';
import type { Response } from 'express';
import { clientAddress, isTrustedProxy } from '../../src/server/client-address.ts';
import { ConnectionCounter, DownloadSlots, connectionKey } from '../../src/server/limits.ts';
import { HttpError } from '../../src/server/status.ts';
import { parseAddressList } from '../../src/util/address-list.ts';

const req = (peer: string | undefined, xff?: string | string[]): IncomingMessage =>
  ({ socket: { remoteAddress: peer }, headers: xff === undefined ? {} : { 'x-forwarded-for': xff } }) as unknown as IncomingMessage;

describe('clientAddress', () => {
  const { list: trusted, errors } = parseAddressList(['10.0.0.0/8', '192.0.2.7', 'fd00::/8'], '--trusted-proxies');
  assert.deepEqual(errors, []);

  const cases: [why: string, peer: string | undefined, xff: string | string[] | undefined, expected: string][] = [
    ['an untrusted peer without the header', '198.51.100.1', undefined, '198.51.100.1'],
    ['an untrusted peer with a spoofed header: the header is ignored', '198.51.100.1', '203.0.113.9', '198.51.100.1'],
    ['an untrusted peer claiming to be behind a trusted proxy', '198.51.100.1', '203.0.113.9, 10.0.0.5', '198.51.100.1'],
    ['a trusted peer: the client it names', '10.1.2.3', '203.0.113.9', '203.0.113.9'],
    ['a trusted peer: the right-most untrusted hop; the client\'s own claims to its left are not read', '10.1.2.3', '1.1.1.1, 203.0.113.9', '203.0.113.9'],
    ['a trusted peer behind another trusted proxy', '10.1.2.3', '203.0.113.9, 192.0.2.7, 10.9.9.9', '203.0.113.9'],
    ['a trusted peer, every hop trusted: the left-most', '10.1.2.3', '10.0.0.1, 10.0.0.2', '10.0.0.1'],
    ['a trusted peer without the header: the peer', '10.1.2.3', undefined, '10.1.2.3'],
    ['a trusted peer with an empty header: the peer', '10.1.2.3', ' ', '10.1.2.3'],
    ['a trusted peer with garbage: the peer', '10.1.2.3', 'garbage', '10.1.2.3'],
    ['a trusted peer with a port in the hop: malformed, the peer', '10.1.2.3', '203.0.113.9:4711', '10.1.2.3'],
    ['a trusted peer with `unknown`: the peer', '10.1.2.3', 'unknown', '10.1.2.3'],
    ['a trusted peer with an empty hop: the peer', '10.1.2.3', '203.0.113.9,,', '10.1.2.3'],
    ['garbage left of the client is never reached', '10.1.2.3', '<script>, 203.0.113.9', '203.0.113.9'],
    ['an IPv4-mapped trusted peer', '::ffff:10.1.2.3', '203.0.113.9', '203.0.113.9'],
    ['an IPv4-mapped untrusted peer is reported as IPv4', '::ffff:198.51.100.1', '203.0.113.9', '198.51.100.1'],
    ['an IPv4-mapped hop is reported as IPv4', '10.1.2.3', '::ffff:203.0.113.9', '203.0.113.9'],
    ['an IPv6 trusted peer and an IPv6 client', 'fd00::1', '2001:db8::9', '2001:db8::9'],
    ['a socket already gone', undefined, '203.0.113.9', ''],
  ];
  for (const [why, peer, xff, expected] of cases) {
    test(why, () => {
      assert.equal(clientAddress(req(peer, xff), trusted), expected);
    });
  }

  test('without trusted proxies the header is never read', () => {
    assert.equal(clientAddress(req('10.1.2.3', '203.0.113.9'), undefined), '10.1.2.3');
    assert.equal(clientAddress(req('10.1.2.3', '203.0.113.9'), parseAddressList([], 'x').list), '10.1.2.3');
  });

  test('isTrustedProxy: addresses, mapped forms, not names', () => {
    assert.equal(isTrustedProxy('192.0.2.7', trusted), true);
    assert.equal(isTrustedProxy('192.0.2.8', trusted), false);
    assert.equal(isTrustedProxy('::ffff:192.0.2.7', trusted), true);
    assert.equal(isTrustedProxy('localhost', trusted), false);
    assert.equal(isTrustedProxy(undefined, trusted), false);
  });
});

describe('parseAddressList', () => {
  test('reports every bad entry, naming the setting, and keeps the good ones', () => {
    const { list, errors } = parseAddressList(['10.0.0.0/8', 'proxy.example', '10.0.0.0/33', '::1/129', '1.2.3.4/8/9', '300.1.1.1', ' 2001:db8::/32 ', ''], '--trusted-proxies');
    assert.equal(errors.length, 5, errors.join('\n'));
    for (const e of errors) assert.match(e, /^--trusted-proxies: ".+" is neither an IP address nor a CIDR/);
    assert.equal(list.check('10.9.9.9', 'ipv4'), true);
    assert.equal(list.check('2001:db8::1', 'ipv6'), true);
  });
});

describe('connectionKey', () => {
  const cases: [string, string][] = [
    ['192.0.2.1', '192.0.2.1'],
    ['::ffff:192.0.2.1', '192.0.2.1'],
    ['2001:db8:1:2:3:4:5:6', '2001:db8:1:2::/64'],
    ['2001:db8:1:2::7', '2001:db8:1:2::/64'],
    ['2001:db8:1:2:ffff::1', '2001:db8:1:2::/64'],
    ['2001:db8::1', '2001:db8:0:0::/64'],
    ['2001:0db8:0000:0001::1', '2001:db8:0:1::/64'],
    ['::1', '0:0:0:0::/64'],
    ['fe80::1%eth0', 'fe80:0:0:0::/64'],
    ['64:ff9b::192.0.2.1', '64:ff9b:0:0::/64'],
  ];
  for (const [address, key] of cases) {
    test(`${address} counts under ${key}`, () => {
      assert.equal(connectionKey(address), key);
    });
  }

  test('one IPv6 /64 is one client: addresses inside it share the cap', () => {
    const c = new ConnectionCounter(2);
    assert.equal(c.tryOpen(connectionKey('2001:db8:1:2::1')), true);
    assert.equal(c.tryOpen(connectionKey('2001:db8:1:2::ffff')), true);
    assert.equal(c.tryOpen(connectionKey('2001:db8:1:2:abcd::9')), false);
    assert.equal(c.tryOpen(connectionKey('2001:db8:1:3::1')), true);
    c.close(connectionKey('2001:db8:1:2::1'));
    assert.equal(c.tryOpen(connectionKey('2001:db8:1:2::2')), true);
    assert.equal(c.count(connectionKey('2001:db8:1:2::2')), 2);
  });
});

describe('DownloadSlots', () => {
  const res = (): Response & EventEmitter => new EventEmitter() as Response & EventEmitter;

  test('the cap is held from claim to close; past it a 503 with Retry-After; a second claim of one response holds one slot', () => {
    let refused = 0;
    const slots = new DownloadSlots(2, { onRefused: () => refused++ });
    const a = res();
    const b = res();
    assert.equal(slots.claim(a), undefined);
    assert.equal(slots.claim(a), undefined);
    assert.equal(slots.inUse, 1);
    assert.equal(slots.claim(b), undefined);
    const err = slots.claim(res());
    assert.ok(err instanceof HttpError);
    assert.equal(err.code, 503);
    assert.equal(err.reason, 'ServiceUnavailable');
    assert.equal(err.headers['Retry-After'], '5');
    assert.equal(refused, 1);
    a.emit('close');
    assert.equal(slots.inUse, 1);
    assert.equal(slots.claim(res()), undefined);
    assert.equal(slots.inUse, 2);
  });
});

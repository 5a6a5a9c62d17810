/**
 * Host names, IP literals and address classes (runtime/egress/address.ts): every
 * spelling of an address is read as that address, and the SSRF guard's classes.
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import {
  AddressClass, EgressAddressError, cidrBounds, cidrContains, classifyAddress, isBlockedClass,
  normalizeHost, parseCidr, parseIpLiteral,
} from '../../runtime/egress/address';

const v4 = (address: string) => ({ family: 4, address });
const v6 = (address: string) => ({ family: 6, address });

test('a dotted decimal IPv4 literal is read as itself', () => {
  assert.deepEqual(parseIpLiteral('127.0.0.1'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('8.8.8.8'), v4('8.8.8.8'));
  assert.deepEqual(parseIpLiteral('255.255.255.255'), v4('255.255.255.255'));
});

test('a decimal integer literal is read as the IPv4 address it encodes', () => {
  assert.deepEqual(parseIpLiteral('2130706433'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('0'), v4('0.0.0.0'));
  assert.deepEqual(parseIpLiteral('4294967295'), v4('255.255.255.255'));
});

test('octal parts and a whole octal number are read as inet_aton reads them', () => {
  assert.deepEqual(parseIpLiteral('0177.0.0.1'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('017700000001'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('0251.0376.0251.0376'), v4('169.254.169.254'));
  assert.deepEqual(parseIpLiteral('010.0.0.1'), v4('8.0.0.1'), 'a leading zero means octal, not decimal');
});

test('hex parts and a whole hex number are read as inet_aton reads them', () => {
  assert.deepEqual(parseIpLiteral('0x7f.0.0.1'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('0x7f000001'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('0X7F.0X0.0X0.0X1'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('0xa9fea9fe'), v4('169.254.169.254'));
});

test('short forms let the last part fill the remaining bytes', () => {
  assert.deepEqual(parseIpLiteral('127.1'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('127.0.1'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('10.65535'), v4('10.0.255.255'));
  assert.deepEqual(parseIpLiteral('0x7f.1'), v4('127.0.0.1'));
});

test('notations can be mixed within one address', () => {
  assert.deepEqual(parseIpLiteral('0x7f.0.01'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('0xa9.0376.43518'), v4('169.254.169.254'));
  assert.deepEqual(parseIpLiteral('127.0.0.1.'), v4('127.0.0.1'), 'one trailing dot is allowed');
});

test('out-of-range or malformed IPv4 parts are not an IP literal', () => {
  for (const s of ['256.0.0.1', '1.2.3.256', '127.16777216', '4294967296', '1.2.3.4.5', '08.0.0.1', '0x1g.0.0.1', '1..2', '', 'example.com', '127.0.0.1 ']) {
    assert.equal(parseIpLiteral(s), null, s);
  }
});

test('IPv6 literals are canonical: lower case and RFC 5952 compressed, brackets or not', () => {
  assert.deepEqual(parseIpLiteral('[::1]'), v6('::1'));
  assert.deepEqual(parseIpLiteral('::1'), v6('::1'));
  assert.deepEqual(parseIpLiteral('0:0:0:0:0:0:0:1'), v6('::1'));
  assert.deepEqual(parseIpLiteral('2001:DB8:0:0:0:0:0:1'), v6('2001:db8::1'));
  assert.deepEqual(parseIpLiteral('2001:0db8:0000:0001:0001:0001:0001:0001'), v6('2001:db8:0:1:1:1:1:1'), 'one zero group is not compressed');
  assert.deepEqual(parseIpLiteral('1:0:0:1:0:0:0:1'), v6('1:0:0:1::1'), 'the longest run is compressed');
  assert.deepEqual(parseIpLiteral('1:0:0:1:1:0:0:1'), v6('1::1:1:0:0:1'), 'the first of equal runs is compressed');
  assert.deepEqual(parseIpLiteral('::'), v6('::'));
  assert.deepEqual(parseIpLiteral('64:ff9b::1.2.3.4'), v6('64:ff9b::102:304'), 'an embedded IPv4 tail is read');
});

test('an IPv4-mapped IPv6 address is reported as the IPv4 address it carries', () => {
  assert.deepEqual(parseIpLiteral('::ffff:127.0.0.1'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('::ffff:7f00:1'), v4('127.0.0.1'));
  assert.deepEqual(parseIpLiteral('[::FFFF:169.254.169.254]'), v4('169.254.169.254'));
  assert.deepEqual(parseIpLiteral('0:0:0:0:0:ffff:a00:1'), v4('10.0.0.1'));
});

test('zone ids, malformed IPv6 and bracketed IPv4 are not IP literals', () => {
  for (const s of ['fe80::1%eth0', '[fe80::1%25eth0]', '1::2::3', '1:2:3:4:5:6:7:8:9', '::ffff:0177.0.0.1', '::g', '[127.0.0.1]', '[::1']) {
    assert.equal(parseIpLiteral(s), null, s);
  }
});

test('normalizeHost lower-cases a name and strips one trailing dot', () => {
  assert.deepEqual(normalizeHost('Example.COM'), { kind: 'name', name: 'example.com' });
  assert.deepEqual(normalizeHost('example.com.'), { kind: 'name', name: 'example.com' });
  assert.deepEqual(normalizeHost('localhost.'), { kind: 'name', name: 'localhost' });
  assert.deepEqual(normalizeHost('_dmarc.my-host.example'), { kind: 'name', name: '_dmarc.my-host.example' });
  assert.throws(() => normalizeHost('example.com..'), EgressAddressError, 'only one trailing dot');
});

test('normalizeHost turns IDN into punycode', () => {
  assert.deepEqual(normalizeHost('bücher.de'), { kind: 'name', name: 'xn--bcher-kva.de' });
  assert.deepEqual(normalizeHost('ＥＸＡＭＰＬＥ。com'), { kind: 'name', name: 'example.com' });
});

test('normalizeHost reads IP literals in any notation, including ones hidden in full-width characters', () => {
  assert.deepEqual(normalizeHost('2130706433'), { kind: 'ip', family: 4, address: '127.0.0.1' });
  assert.deepEqual(normalizeHost('0x7f.1.'), { kind: 'ip', family: 4, address: '127.0.0.1' });
  assert.deepEqual(normalizeHost('[::1]'), { kind: 'ip', family: 6, address: '::1' });
  assert.deepEqual(normalizeHost('[::ffff:127.0.0.1]'), { kind: 'ip', family: 4, address: '127.0.0.1' });
  assert.deepEqual(normalizeHost('::FFFF:7F00:1'), { kind: 'ip', family: 4, address: '127.0.0.1' });
  assert.deepEqual(normalizeHost('１２７。0.0.1'), { kind: 'ip', family: 4, address: '127.0.0.1' });
});

test('normalizeHost refuses what cannot be a host name, naming the host and the reason', () => {
  const bad: Array<[string, RegExp]> = [
    ['', /empty/],
    ['.', /empty/],
    ['a'.repeat(64) + '.com', /63/],
    [('a'.repeat(50) + '.').repeat(5) + 'com', /253/],
    ['exa mple.com', /letters, digits/],
    ['ex*ample.com', /letters, digits/],
    ['a..b', /empty label/],
    ['.example.com', /empty label/],
    ['fe80::1%eth0', /%/],
    ['evil.com%2f', /%/],
    ['[example.com]', /brackets/],
    ['[127.0.0.1]', /brackets/],
    ['1::2::3', /IPv6/],
    ['256.0.0.1', /IPv4/],
    ['1.2.3.4.5', /IPv4/],
    ['xn--zz.bücher', /internationalized/],
  ];
  for (const [host, why] of bad) {
    assert.throws(() => normalizeHost(host), (e: unknown) => {
      assert.ok(e instanceof EgressAddressError, host);
      assert.ok(e.message.includes(`"${host}"`), `${host}: ${e.message}`);
      assert.match(e.message, why);
      return true;
    });
  }
});

const cls = (address: string, family: 4 | 6 = address.includes(':') ? 6 : 4): AddressClass => classifyAddress(address, family);

test('IPv4 addresses are classified by the ranges the SSRF guard blocks', () => {
  const cases: Array<[string, AddressClass]> = [
    ['127.0.0.1', 'loopback'], ['127.255.255.254', 'loopback'],
    ['10.0.0.1', 'private'], ['172.16.0.1', 'private'], ['172.31.255.255', 'private'], ['192.168.1.1', 'private'],
    ['169.254.169.254', 'metadata'], ['168.63.129.16', 'metadata'],
    ['169.254.0.1', 'link-local'], ['169.254.170.2', 'link-local'],
    ['100.64.0.1', 'cgnat'], ['100.127.255.255', 'cgnat'],
    ['224.0.0.1', 'multicast'], ['239.255.255.250', 'multicast'],
    ['0.0.0.0', 'unspecified'], ['0.1.2.3', 'unspecified'],
    ['240.0.0.1', 'reserved'], ['255.255.255.255', 'reserved'],
    ['192.0.0.170', 'reserved'], ['192.88.99.1', 'reserved'],
  ];
  for (const [a, c] of cases) assert.equal(cls(a), c, a);
});

test('documentation and benchmarking ranges are public: fake-IP resolvers and gateway-fronted registries use them', () => {
  for (const a of ['198.18.0.1', '198.19.255.255', '192.0.2.1', '198.51.100.1', '203.0.113.1']) assert.equal(cls(a), 'public', a);
});

test('IPv4 addresses just outside the blocked ranges are public', () => {
  for (const a of ['8.8.8.8', '1.1.1.1', '172.15.255.255', '172.32.0.0', '100.63.255.255', '100.128.0.0', '11.0.0.0', '126.255.255.255', '128.0.0.0', '169.253.255.255', '198.17.255.255', '198.20.0.0', '223.255.255.255', '192.169.0.0']) {
    assert.equal(cls(a), 'public', a);
  }
});

test('IPv6 addresses are classified by their own ranges', () => {
  const cases: Array<[string, AddressClass]> = [
    ['::1', 'loopback'], ['::', 'unspecified'],
    ['fc00::1', 'private'], ['fd12:3456::1', 'private'], ['fec0::1', 'private'],
    ['fd00:ec2::254', 'metadata'], ['fd00:ec2::253', 'private'],
    ['fe80::1', 'link-local'], ['febf::1', 'link-local'],
    ['ff02::1', 'multicast'],
    ['100::1', 'reserved'], ['2001:db8::1', 'reserved'], ['2001::1', 'reserved'], ['4000::1', 'reserved'],
    ['2606:4700:4700::1111', 'public'], ['2a00:1450:4001::200e', 'public'],
  ];
  for (const [a, c] of cases) assert.equal(cls(a), c, a);
});

test('IPv6 forms that embed an IPv4 address are classified by that address', () => {
  const cases: Array<[string, AddressClass]> = [
    ['::ffff:127.0.0.1', 'loopback'], ['::ffff:7f00:1', 'loopback'], ['::ffff:169.254.169.254', 'metadata'],
    ['64:ff9b::a9fe:a9fe', 'metadata'], ['64:ff9b::7f00:1', 'loopback'], ['64:ff9b::808:808', 'public'],
    ['2002:7f00:1::', 'loopback'], ['2002:a9fe:a9fe::1', 'metadata'], ['2002:808:808::1', 'public'],
    ['::7f00:1', 'loopback'], ['::10.0.0.1', 'private'], ['::8.8.8.8', 'public'],
  ];
  for (const [a, c] of cases) assert.equal(cls(a, 6), c, a);
});

test('classifyAddress reads any notation and refuses what is not an address of the family', () => {
  assert.equal(cls('2130706433', 4), 'loopback');
  assert.equal(cls('0x7f.1', 4), 'loopback');
  assert.throws(() => classifyAddress('example.com', 4), EgressAddressError);
  assert.throws(() => classifyAddress('127.0.0.1', 6), EgressAddressError);
  assert.throws(() => classifyAddress('::1', 4), EgressAddressError);
});

test('the SSRF attack list is blocked in every spelling', () => {
  const attacks = ['127.0.0.1', '10.1.2.3', '169.254.169.254', '::1', '::ffff:127.0.0.1', '::ffff:7f00:1', '2130706433', '0177.0.0.1', '0x7f.1', '0x7f000001', '127.1', '[::ffff:169.254.169.254]', '64:ff9b::a9fe:a9fe', '2002:7f00:1::', 'fd00:ec2::254', '0.0.0.0', '[::]'];
  for (const a of attacks) {
    const host = normalizeHost(a);
    assert.equal(host.kind, 'ip', a);
    if (host.kind !== 'ip') continue;
    assert.ok(isBlockedClass(classifyAddress(host.address, host.family)), a);
  }
  assert.deepEqual(normalizeHost('localhost.'), normalizeHost('localhost'));
});

test('only the public class is not blocked', () => {
  const all: AddressClass[] = ['public', 'loopback', 'private', 'link-local', 'cgnat', 'multicast', 'unspecified', 'metadata', 'reserved'];
  assert.deepEqual(all.filter((c) => !isBlockedClass(c)), ['public']);
});

test('a CIDR is read in any notation, with or without brackets, and a bare address is a single host', () => {
  assert.deepEqual(parseCidr('10.0.0.0/8'), { family: 4, address: '10.0.0.0', prefix: 8 });
  assert.deepEqual(parseCidr('0x0a.0.0.0/8'), { family: 4, address: '10.0.0.0', prefix: 8 });
  assert.deepEqual(parseCidr('fd00::/8'), { family: 6, address: 'fd00::', prefix: 8 });
  assert.deepEqual(parseCidr('[FD00::]/8'), { family: 6, address: 'fd00::', prefix: 8 });
  assert.deepEqual(parseCidr('127.0.0.1'), { family: 4, address: '127.0.0.1', prefix: 32 });
  assert.deepEqual(parseCidr('[::1]'), { family: 6, address: '::1', prefix: 128 });
  assert.deepEqual(parseCidr('0.0.0.0/0'), { family: 4, address: '0.0.0.0', prefix: 0 });
});

test('a CIDR has its host bits cleared, and a mapped IPv6 network becomes the IPv4 network it covers', () => {
  assert.deepEqual(parseCidr('10.1.2.3/8'), { family: 4, address: '10.0.0.0', prefix: 8 });
  assert.deepEqual(parseCidr('fd12:3456::1/16'), { family: 6, address: 'fd12::', prefix: 16 });
  assert.deepEqual(parseCidr('::ffff:10.0.0.0/104'), { family: 4, address: '10.0.0.0', prefix: 8 });
  assert.deepEqual(parseCidr('[::ffff:127.0.0.1]'), { family: 4, address: '127.0.0.1', prefix: 32 });
});

test('a CIDR with a bad prefix or address is refused', () => {
  for (const s of ['10.0.0.0/33', '::/129', '10.0.0.0/-1', '10.0.0.0/', '10.0.0.0/08', '10.0.0.0/8x', 'example.com/8', '256.0.0.0/8', 'fe80::%eth0/64', '[10.0.0.0]/8']) {
    assert.equal(parseCidr(s), null, s);
  }
});

test('cidrContains matches addresses inside the network in any notation, and never across families', () => {
  const ten = parseCidr('10.0.0.0/8')!;
  assert.ok(cidrContains(ten, '10.255.255.255', 4));
  assert.ok(cidrContains(ten, '012.1.2.3', 4));
  assert.ok(!cidrContains(ten, '11.0.0.0', 4));
  assert.ok(cidrContains(ten, '::ffff:10.0.0.1', 6), 'a mapped address is its IPv4 address');
  const ula = parseCidr('fd00::/8')!;
  assert.ok(cidrContains(ula, 'fd00:ec2::254', 6));
  assert.ok(!cidrContains(ula, 'fe00::1', 6));
  assert.ok(!cidrContains(parseCidr('::/0')!, '127.0.0.1', 4));
  assert.ok(!cidrContains(parseCidr('0.0.0.0/0')!, '::1', 6));
  assert.ok(cidrContains(parseCidr('0.0.0.0/0')!, '8.8.8.8', 4));
  assert.ok(!cidrContains(ten, 'not-an-address', 4));
});

test('cidrBounds gives the first and last address of a network', () => {
  assert.deepEqual(cidrBounds(parseCidr('10.0.0.0/8')!), { first: '10.0.0.0', last: '10.255.255.255' });
  assert.deepEqual(cidrBounds(parseCidr('fd00::/8')!), { first: 'fd00::', last: 'fdff:ffff:ffff:ffff:ffff:ffff:ffff:ffff' });
  assert.deepEqual(cidrBounds(parseCidr('1.2.3.4')!), { first: '1.2.3.4', last: '1.2.3.4' });
});

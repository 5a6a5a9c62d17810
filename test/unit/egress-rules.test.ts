/**
 * Egress allow/deny rules (runtime/egress/rules.ts): the rule syntax, its errors, and
 * the two stages of evaluation (the requested host, then each resolved address).
 */
import { test } from 'node:test';
import * as assert from 'node:assert/strict';
import { EgressRuleError, parseRule, Rule, RuleEntry, RuleSet } from '../../runtime/egress/rules';

const NOW = 1_700_000_000_000;
const allow = (text: string, extra: Partial<RuleEntry> = {}): RuleEntry => ({ rule: parseRule(text), effect: 'allow', source: 'cli', ...extra });
const deny = (text: string, extra: Partial<RuleEntry> = {}): RuleEntry => ({ rule: parseRule(text), effect: 'deny', source: 'policy', ...extra });
const name = (n: string) => ({ kind: 'name' as const, name: n });
const ip4 = (address: string) => ({ kind: 'ip' as const, family: 4 as const, address });
const ip6 = (address: string) => ({ kind: 'ip' as const, family: 6 as const, address });

test('a host name rule is read lower-cased, without its trailing dot, with IDN as punycode', () => {
  assert.deepEqual(parseRule('Example.COM'), { kind: 'host', name: 'example.com', text: 'example.com' });
  assert.deepEqual(parseRule('example.com.'), { kind: 'host', name: 'example.com', text: 'example.com' });
  assert.deepEqual(parseRule(' example.com '), { kind: 'host', name: 'example.com', text: 'example.com' });
  assert.deepEqual(parseRule('bücher.de'), { kind: 'host', name: 'xn--bcher-kva.de', text: 'xn--bcher-kva.de' });
});

test('a leading *. makes a suffix rule, and either form can carry a port', () => {
  assert.deepEqual(parseRule('*.Example.com'), { kind: 'suffix', suffix: 'example.com', text: '*.example.com' });
  assert.deepEqual(parseRule('example.com:443'), { kind: 'host', name: 'example.com', text: 'example.com:443', port: 443 });
  assert.deepEqual(parseRule('*.example.com:8080'), { kind: 'suffix', suffix: 'example.com', text: '*.example.com:8080', port: 8080 });
  assert.equal(parseRule('x.com:65535').port, 65535);
  assert.equal(parseRule('x.com:1').port, 1);
});

test('an IPv4 rule in any notation is a single-host CIDR rule with canonical text', () => {
  assert.deepEqual(parseRule('127.0.0.1'), { kind: 'cidr', family: 4, address: '127.0.0.1', prefix: 32, text: '127.0.0.1' });
  assert.deepEqual(parseRule('127.0.0.1:8080'), { kind: 'cidr', family: 4, address: '127.0.0.1', prefix: 32, text: '127.0.0.1:8080', port: 8080 });
  assert.deepEqual(parseRule('0x7f.1:8080'), { kind: 'cidr', family: 4, address: '127.0.0.1', prefix: 32, text: '127.0.0.1:8080', port: 8080 });
  assert.deepEqual(parseRule('2130706433'), { kind: 'cidr', family: 4, address: '127.0.0.1', prefix: 32, text: '127.0.0.1' });
});

test('an IPv6 rule is written in brackets, with an optional port', () => {
  assert.deepEqual(parseRule('[::1]'), { kind: 'cidr', family: 6, address: '::1', prefix: 128, text: '[::1]' });
  assert.deepEqual(parseRule('[0:0::1]:8080'), { kind: 'cidr', family: 6, address: '::1', prefix: 128, text: '[::1]:8080', port: 8080 });
  assert.deepEqual(parseRule('[::ffff:127.0.0.1]'), { kind: 'cidr', family: 4, address: '127.0.0.1', prefix: 32, text: '127.0.0.1' }, 'a mapped address is its IPv4 address');
});

test('a CIDR rule takes an optional port after the prefix, for both families', () => {
  assert.deepEqual(parseRule('10.0.0.0/8'), { kind: 'cidr', family: 4, address: '10.0.0.0', prefix: 8, text: '10.0.0.0/8' });
  assert.deepEqual(parseRule('10.0.0.0/8:5432'), { kind: 'cidr', family: 4, address: '10.0.0.0', prefix: 8, text: '10.0.0.0/8:5432', port: 5432 });
  assert.deepEqual(parseRule('0x0a.0.0.0/8'), { kind: 'cidr', family: 4, address: '10.0.0.0', prefix: 8, text: '10.0.0.0/8' });
  assert.deepEqual(parseRule('fd00::/8'), { kind: 'cidr', family: 6, address: 'fd00::', prefix: 8, text: 'fd00::/8' });
  assert.deepEqual(parseRule('[fd00::]/8:443'), { kind: 'cidr', family: 6, address: 'fd00::', prefix: 8, text: '[fd00::]/8:443', port: 443 });
  assert.deepEqual(parseRule('fd00::/8:443'), parseRule('[fd00::]/8:443'));
  assert.equal(parseRule('10.1.2.3/8').text, '10.0.0.0/8', 'host bits are cleared');
});

test('the canonical text of a rule reads back as the same rule', () => {
  for (const t of ['Example.com.', '*.EXAMPLE.com:80', '0x7f.1:8080', '[0::1]:22', '0x0a.1.2.3/8:5432', '[FD00::]/8:443', 'fd00::/8', '[::1]', 'bücher.de:443']) {
    const r = parseRule(t);
    assert.deepEqual(parseRule(r.text), r, t);
  }
});

function assertRuleError(text: string, why: RegExp): void {
  assert.throws(() => parseRule(text), (e: unknown) => {
    assert.ok(e instanceof EgressRuleError, text);
    assert.ok(e.message.startsWith(`network rule "${text}" is not valid: `), e.message);
    assert.match(e.message, why);
    assert.match(e.message, /\(examples: example\.com, \*\.example\.com:443, 10\.0\.0\.0\/8\)$/);
    return true;
  });
}

test('a bare * is refused with a pointer to --allow-all-network', () => {
  assertRuleError('*', /--allow-all-network/);
  assertRuleError('*:443', /--allow-all-network/);
});

test('a * anywhere but a leading *. is refused', () => {
  for (const t of ['a*.com', '*example.com', 'example.*', '*.*.example.com', 'a.*.example.com', '**.example.com']) {
    assertRuleError(t, /\*/);
  }
  assertRuleError('*.10.0.0.1', /not an IP address/);
});

test('bad names are refused with the reason', () => {
  assertRuleError('', /empty/);
  assertRuleError('exa mple.com', /letters, digits/);
  assertRuleError('a..b', /empty label/);
  assertRuleError('a'.repeat(64) + '.com', /63/);
  assertRuleError('example.com%00', /%/);
  assertRuleError('256.1.1.1', /IPv4/);
  assertRuleError('https://example.com/', /not a URL/);
  assertRuleError('example.com/path', /only belongs in a CIDR/);
});

test('bad ports are refused', () => {
  for (const t of ['example.com:0', 'example.com:65536', 'example.com:', 'example.com:http', '*.example.com:-1', '[::1]:99999', '10.0.0.0/8:', '127.0.0.1:08x']) {
    assertRuleError(t, /port/);
  }
});

test('bad IP and CIDR rules are refused', () => {
  assertRuleError('::1', /brackets/);
  assertRuleError('fe80::1:8080', /brackets/);
  assertRuleError('[::1', /matching/);
  assertRuleError('[::1]x', /follow/);
  assertRuleError('[example.com]', /not an IP address/);
  assertRuleError('[::1%eth0]', /not an IP address/);
  assertRuleError('10.0.0.0/33', /prefix/);
  assertRuleError('fd00::/129', /prefix/);
  assertRuleError('example.com/8', /not an IP address/);
});

test('a host rule matches exactly that name at any port unless a port is given', () => {
  const s = new RuleSet([allow('example.com'), allow('api.test:443')]);
  assert.deepEqual(s.matchRequest(name('example.com'), 80, NOW).effect, 'allow');
  assert.deepEqual(s.matchRequest(name('EXAMPLE.com.'), 8443, NOW).effect, 'allow');
  assert.equal(s.matchRequest(name('www.example.com'), 443, NOW).effect, 'deny');
  assert.equal(s.matchRequest(name('api.test'), 443, NOW).effect, 'allow');
  assert.deepEqual(s.matchRequest(name('api.test'), 80, NOW), { effect: 'deny', reason: 'default-deny' });
});

test('a suffix rule matches subdomains at any depth, not the domain itself nor look-alikes', () => {
  const s = new RuleSet([allow('*.example.com')]);
  assert.equal(s.matchRequest(name('a.example.com'), 443, NOW).effect, 'allow');
  assert.equal(s.matchRequest(name('a.b.example.com'), 443, NOW).effect, 'allow');
  assert.equal(s.matchRequest(name('example.com'), 443, NOW).effect, 'deny');
  assert.equal(s.matchRequest(name('badexample.com'), 443, NOW).effect, 'deny');
  assert.equal(s.matchRequest(name('example.com.evil.net'), 443, NOW).effect, 'deny');
});

test('a matching rule reports its entry and reason', () => {
  const e = allow('example.com');
  const s = new RuleSet([e]);
  assert.deepEqual(s.matchRequest(name('example.com'), 443, NOW), { effect: 'allow', entry: e, reason: 'rule' });
});

test('deny beats allow, whatever the order the rules were added in', () => {
  const d = deny('evil.example.com');
  const s = new RuleSet([allow('*.example.com'), d]);
  assert.deepEqual(s.matchRequest(name('evil.example.com'), 443, NOW), { effect: 'deny', entry: d, reason: 'rule' });
  assert.equal(s.matchRequest(name('good.example.com'), 443, NOW).effect, 'allow');
  const withAll = new RuleSet([deny('*.tracker.net')], true);
  assert.equal(withAll.matchRequest(name('x.tracker.net'), 443, NOW).effect, 'deny', 'a deny also beats allowAll');
});

test('a deny rule with a port only denies that port', () => {
  const s = new RuleSet([allow('example.com'), deny('example.com:25')]);
  assert.equal(s.matchRequest(name('example.com'), 25, NOW).effect, 'deny');
  assert.equal(s.matchRequest(name('example.com'), 443, NOW).effect, 'allow');
});

test('without a matching rule, allowAll allows and otherwise the default is deny', () => {
  assert.deepEqual(new RuleSet([], true).matchRequest(name('anything.org'), 443, NOW), { effect: 'allow', reason: 'allow-all' });
  assert.deepEqual(new RuleSet().matchRequest(name('anything.org'), 443, NOW), { effect: 'deny', reason: 'default-deny' });
  assert.deepEqual(new RuleSet([], true).matchRequest(ip4('8.8.8.8'), 53, NOW), { effect: 'allow', reason: 'allow-all' });
  assert.equal(new RuleSet().allowAll, false);
  assert.equal(new RuleSet([], true).allowAll, true);
});

test('name rules never match IP literal requests, and IP rules never match names', () => {
  const s = new RuleSet([allow('localhost'), allow('8.8.8.8'), allow('*.0.0.1.nip.io')]);
  assert.equal(s.matchRequest(ip4('127.0.0.1'), 80, NOW).effect, 'deny');
  assert.equal(s.matchRequest(name('8.8.8.8.nip.io'), 80, NOW).effect, 'deny');
  assert.equal(s.matchRequest(ip4('8.8.8.8'), 80, NOW).effect, 'allow');
  assert.equal(s.matchRequest(name('localhost'), 80, NOW).effect, 'allow');
});

test('an IP literal request is allowed in stage 1 only by a CIDR or IP rule', () => {
  const s = new RuleSet([allow('10.0.0.0/8:5432'), allow('[fd00::]/8'), deny('10.9.9.9')]);
  assert.equal(s.matchRequest(ip4('10.1.2.3'), 5432, NOW).effect, 'allow');
  assert.equal(s.matchRequest(ip4('10.1.2.3'), 22, NOW).effect, 'deny');
  assert.equal(s.matchRequest(ip4('10.9.9.9'), 5432, NOW).effect, 'deny');
  assert.equal(s.matchRequest(ip6('fd12::1'), 443, NOW).effect, 'allow');
  assert.equal(s.matchRequest(ip6('fe80::1'), 443, NOW).effect, 'deny');
});

test('expired entries never match, and prune drops and returns them', () => {
  const lapsed = allow('example.com', { source: 'grant', expiresAt: NOW });
  const live = allow('api.test', { source: 'grant', expiresAt: NOW + 1000 });
  const lapsedDeny = deny('api.test', { expiresAt: NOW - 1 });
  const s = new RuleSet([lapsed, live, lapsedDeny]);
  assert.equal(s.matchRequest(name('example.com'), 443, NOW).effect, 'deny', 'expiresAt <= now has expired');
  assert.equal(s.matchRequest(name('api.test'), 443, NOW).effect, 'allow', 'an expired deny no longer denies');
  assert.equal(s.matchRequest(name('example.com'), 443, NOW - 1).effect, 'allow');
  assert.deepEqual(s.entries(NOW), [live]);
  assert.deepEqual(s.prune(NOW), [lapsed, lapsedDeny]);
  assert.deepEqual(s.prune(NOW), []);
  assert.deepEqual(s.entries(NOW - 10), [live], 'pruned entries are gone for good');
  assert.deepEqual(s.prune(NOW + 1000), [live]);
  assert.deepEqual(s.entries(NOW), []);
});

test('add makes an entry live at once, and the constructor copies its list', () => {
  const list = [allow('a.test')];
  const s = new RuleSet(list);
  list.push(allow('b.test'));
  assert.equal(s.matchRequest(name('b.test'), 443, NOW).effect, 'deny');
  s.add(allow('b.test'));
  assert.equal(s.matchRequest(name('b.test'), 443, NOW).effect, 'allow');
});

test('a public address passes the SSRF guard without any rule', () => {
  const s = new RuleSet();
  assert.deepEqual(s.matchAddress('93.184.216.34', 4, 443, NOW), { effect: 'allow', reason: 'public', addressClass: 'public' });
  assert.deepEqual(s.matchAddress('2606:4700::1111', 6, 443, NOW), { effect: 'allow', reason: 'public', addressClass: 'public' });
});

test('the SSRF guard denies blocked addresses in every spelling, even with allowAll', () => {
  const s = new RuleSet([allow('example.com'), allow('*.example.com')], true);
  const cases: Array<[string, 4 | 6, string]> = [
    ['127.0.0.1', 4, 'loopback'], ['10.1.2.3', 4, 'private'], ['169.254.169.254', 4, 'metadata'],
    ['::1', 6, 'loopback'], ['::ffff:127.0.0.1', 6, 'loopback'], ['::ffff:7f00:1', 6, 'loopback'],
    ['2130706433', 4, 'loopback'], ['0177.0.0.1', 4, 'loopback'], ['0x7f.1', 4, 'loopback'], ['0x7f000001', 4, 'loopback'],
    ['127.1', 4, 'loopback'], ['[::ffff:169.254.169.254]', 6, 'metadata'], ['64:ff9b::a9fe:a9fe', 6, 'metadata'],
    ['2002:7f00:1::', 6, 'loopback'], ['fd00:ec2::254', 6, 'metadata'], ['0.0.0.0', 4, 'unspecified'],
    ['100.64.0.1', 4, 'cgnat'], ['fe80::1', 6, 'link-local'], ['224.0.0.1', 4, 'multicast'],
  ];
  for (const [a, f, c] of cases) {
    assert.deepEqual(s.matchAddress(a, f, 443, NOW), { effect: 'deny', reason: 'ssrf', addressClass: c }, a);
  }
});

test('an explicit CIDR allow lifts the SSRF guard for the addresses and port it names', () => {
  const lo = allow('127.0.0.1:8080');
  const net = allow('10.0.0.0/8');
  const meta = allow('169.254.169.254');
  const v6 = allow('[::1]:3000');
  const s = new RuleSet([lo, net, meta, v6]);
  assert.deepEqual(s.matchAddress('127.0.0.1', 4, 8080, NOW), { effect: 'allow', entry: lo, reason: 'rule', addressClass: 'loopback' });
  assert.deepEqual(s.matchAddress('::ffff:127.0.0.1', 6, 8080, NOW), { effect: 'allow', entry: lo, reason: 'rule', addressClass: 'loopback' });
  assert.equal(s.matchAddress('127.0.0.1', 4, 8081, NOW).reason, 'ssrf', 'another port stays blocked');
  assert.equal(s.matchAddress('127.0.0.2', 4, 8080, NOW).reason, 'ssrf', 'another address stays blocked');
  assert.deepEqual(s.matchAddress('10.20.30.40', 4, 22, NOW), { effect: 'allow', entry: net, reason: 'rule', addressClass: 'private' });
  assert.deepEqual(s.matchAddress('169.254.169.254', 4, 80, NOW), { effect: 'allow', entry: meta, reason: 'rule', addressClass: 'metadata' });
  assert.deepEqual(s.matchAddress('::1', 6, 3000, NOW), { effect: 'allow', entry: v6, reason: 'rule', addressClass: 'loopback' });
});

test('a CIDR allow wider than the blocked range it touches does not lift the guard', () => {
  const s = new RuleSet([allow('0.0.0.0/0'), allow('169.254.0.0/16'), allow('fd00::/8'), allow('::/0')]);
  assert.equal(s.matchAddress('127.0.0.1', 4, 80, NOW).reason, 'ssrf', '0.0.0.0/0 does not open loopback');
  assert.equal(s.matchAddress('169.254.169.254', 4, 80, NOW).reason, 'ssrf', 'link-local does not open metadata');
  assert.equal(s.matchAddress('169.254.1.1', 4, 80, NOW).reason, 'rule', 'but it opens link-local');
  assert.equal(s.matchAddress('fd00:ec2::254', 6, 80, NOW).reason, 'ssrf', 'ULA does not open IPv6 metadata');
  assert.equal(s.matchAddress('fd12::1', 6, 80, NOW).reason, 'rule');
  assert.equal(s.matchAddress('::1', 6, 80, NOW).reason, 'ssrf');
  assert.equal(s.matchAddress('8.8.8.8', 4, 80, NOW).reason, 'public');
});

test('a name rule never lifts the SSRF guard', () => {
  const s = new RuleSet([allow('localhost'), allow('metadata.google.internal')], true);
  assert.equal(s.matchAddress('127.0.0.1', 4, 80, NOW).reason, 'ssrf');
  assert.equal(s.matchAddress('169.254.169.254', 4, 80, NOW).reason, 'ssrf');
});

test('a CIDR deny refuses a resolved address, public or explicitly allowed', () => {
  const d = deny('93.184.216.0/24');
  const dlo = deny('127.0.0.1:5432');
  const s = new RuleSet([allow('127.0.0.0/8'), d, dlo], true);
  assert.deepEqual(s.matchAddress('93.184.216.34', 4, 443, NOW), { effect: 'deny', entry: d, reason: 'rule', addressClass: 'public' });
  assert.deepEqual(s.matchAddress('::ffff:93.184.216.34', 6, 443, NOW), { effect: 'deny', entry: d, reason: 'rule', addressClass: 'public' });
  assert.deepEqual(s.matchAddress('127.0.0.1', 4, 5432, NOW), { effect: 'deny', entry: dlo, reason: 'rule', addressClass: 'loopback' });
  assert.equal(s.matchAddress('127.0.0.1', 4, 80, NOW).effect, 'allow');
});

test('an expired CIDR allow no longer lifts the guard', () => {
  const s = new RuleSet([allow('127.0.0.1', { source: 'grant', expiresAt: NOW })]);
  assert.equal(s.matchAddress('127.0.0.1', 4, 80, NOW - 1).effect, 'allow');
  assert.equal(s.matchAddress('127.0.0.1', 4, 80, NOW).reason, 'ssrf');
});

test('matchAddress refuses what is not an address of the family', () => {
  const s = new RuleSet([], true);
  assert.throws(() => s.matchAddress('example.com', 4, 80, NOW));
  assert.throws(() => s.matchAddress('127.0.0.1', 6, 80, NOW));
});

test('rules of every kind type-check as a Rule', () => {
  const rules: Rule[] = ['a.test', '*.a.test:1', '1.2.3.4', '[::1]:2', '10.0.0.0/8'].map(parseRule);
  assert.deepEqual(rules.map((r) => r.kind), ['host', 'suffix', 'cidr', 'cidr', 'cidr']);
});

import { describe, expect, it } from 'vitest';
import { CidrTable, formatIpv4, parseCidr, parseIp } from './cidr.js';

describe('cidr', () => {
  it('parses IPv4, IPv6 and mapped addresses', () => {
    expect(parseIp('10.1.2.3')).toEqual({ family: 4, bits: 0x0a010203n });
    expect(parseIp('::ffff:10.1.2.3')).toEqual({ family: 4, bits: 0x0a010203n });
    expect(parseIp('::1')).toEqual({ family: 6, bits: 1n });
    expect(parseIp('2001:db8::1')?.bits).toBe((0x20010db8n << 96n) | 1n);
    expect(parseIp('[fe80::1%eth0]')?.family).toBe(6);
    expect(parseIp('not an ip')).toBeUndefined();
    expect(formatIpv4(0x0a010203n)).toBe('10.1.2.3');
  });

  it('matches the longest prefix', () => {
    const table = new CidrTable([
      parseCidr('10.0.0.0/8', 'wide')!,
      parseCidr('10.1.0.0/16', 'narrow')!,
      parseCidr('2001:db8::/32', 'v6')!,
      parseCidr('0.0.0.0/0', 'any')!,
    ]);
    expect(table.lookup(parseIp('10.1.9.9')!)).toBe('narrow');
    expect(table.lookup(parseIp('10.2.9.9')!)).toBe('wide');
    expect(table.lookup(parseIp('192.0.2.1')!)).toBe('any');
    expect(table.lookup(parseIp('2001:db8:1::5')!)).toBe('v6');
    expect(table.lookup(parseIp('2001:db9::5')!)).toBeUndefined();
  });

  it('rejects malformed ranges', () => {
    expect(parseCidr('10.0.0.0/33', 1)).toBeUndefined();
    expect(parseCidr('10.0.0.0', 1)).toBeUndefined();
    expect(parseCidr('nope/8', 1)).toBeUndefined();
  });
});

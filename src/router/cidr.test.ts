import { isIP } from 'node:net';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { CidrTable, parseCidr, parseIp } from './cidr.js';

/** An address's bytes with one bit flipped (bit 0: the first, most significant). */
function flipBit(bytes: number[], bit: number): number[] {
  const out = [...bytes];
  out[bit >> 3] = out[bit >> 3]! ^ (0x80 >> (bit & 7));
  return out;
}

function textOf(bytes: number[]): string {
  if (bytes.length === 4) return bytes.join('.');
  const hextets: string[] = [];
  for (let i = 0; i < 16; i += 2) hextets.push(((bytes[i]! << 8) | bytes[i + 1]!).toString(16));
  return hextets.join(':');
}

describe('cidr', () => {
  it('parses IPv4, IPv6 and mapped addresses', () => {
    expect(parseIp('10.1.2.3')?.toString()).toBe('10.1.2.3');
    expect(parseIp('::ffff:10.1.2.3')?.kind()).toBe('ipv4');
    expect(parseIp('::ffff:10.1.2.3')?.toString()).toBe('10.1.2.3');
    expect(parseIp('::1')?.toNormalizedString()).toBe('0:0:0:0:0:0:0:1');
    expect(parseIp('2001:db8::1')?.toByteArray()).toEqual([0x20, 0x01, 0x0d, 0xb8, ...Array<number>(11).fill(0), 1]);
    expect(parseIp('[fe80::1%eth0]')?.toString()).toBe('fe80::1');
    expect(parseIp(' 192.0.2.1 ')?.toString()).toBe('192.0.2.1');
    expect(parseIp('not an ip')).toBeUndefined();
  });

  it('takes IPv4 only as four decimal parts, as node:net does (not the forms ipaddr.js also reads)', () => {
    for (const odd of ['10.1', '167772161', '0x0a.0.0.1', '010.0.0.1', '256.0.0.1', '1.2.3.4.5', '']) expect(parseIp(odd)).toBeUndefined();
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
    expect(table.lookup(parseIp('::ffff:10.1.9.9')!)).toBe('narrow');
    expect(table.lookup(parseIp('2001:db8:1::5')!)).toBe('v6');
    expect(table.lookup(parseIp('2001:db9::5')!)).toBeUndefined();
  });

  it('takes a mapped range as its IPv4 part', () => {
    const table = new CidrTable([parseCidr('::ffff:10.0.0.0/104', 'mapped')!]);
    expect(table.lookup(parseIp('10.200.0.1')!)).toBe('mapped');
    expect(table.lookup(parseIp('11.0.0.1')!)).toBeUndefined();
  });

  it('rejects malformed ranges', () => {
    expect(parseCidr('10.0.0.0/33', 1)).toBeUndefined();
    expect(parseCidr('10.0.0.0', 1)).toBeUndefined();
    expect(parseCidr('nope/8', 1)).toBeUndefined();
    expect(parseCidr('2001:db8::/129', 1)).toBeUndefined();
    expect(parseCidr('10.1/16', 1)).toBeUndefined();
  });

  it('accepts exactly what node:net calls an address, and never throws', () => {
    const ipLike = fc.string({ unit: fc.constantFrom(...'0123456789abcdefABCDEF:.%[]/x '), maxLength: 45 });
    fc.assert(
      fc.property(fc.oneof(fc.ipV4(), fc.ipV4Extended(), fc.ipV6(), ipLike, fc.string()), (text) => {
        const bare = text.trim().replace(/^\[(.*)\]$/, '$1');
        expect(parseIp(text) !== undefined).toBe(isIP(bare) !== 0);
      }),
      { numRuns: 2000 },
    );
  });

  it('a range matches the addresses that share its first `length` bits, and no others', () => {
    const address = fc.oneof(
      fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 4, maxLength: 4 }),
      fc.array(fc.integer({ min: 0, max: 255 }), { minLength: 16, maxLength: 16 }),
    );
    fc.assert(
      fc.property(address, fc.nat(), fc.nat(), (bytes, lengthSeed, bitSeed) => {
        const width = bytes.length * 8;
        const length = lengthSeed % (width + 1);
        const text = textOf(bytes);
        // IPv4-mapped IPv6 addresses are IPv4 here: covered by the examples above.
        fc.pre(parseIp(text)!.kind() === (width === 32 ? 'ipv4' : 'ipv6'));
        const table = new CidrTable([parseCidr(`${text}/${length}`, 'in')!]);
        expect(table.lookup(parseIp(text)!)).toBe('in');
        const bit = bitSeed % width;
        const flipped = parseIp(textOf(flipBit(bytes, bit)))!;
        if (flipped.kind() === parseIp(text)!.kind()) expect(table.lookup(flipped)).toBe(bit < length ? undefined : 'in');
      }),
      { numRuns: 2000 },
    );
  });
});

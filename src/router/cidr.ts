// IP addresses as bigints and CIDR ranges with longest-prefix matching, for the geolocation map and
// the trusted-proxy list. IPv4 and IPv6 live in separate families; `::ffff:a.b.c.d` counts as IPv4.
import { isIPv4, isIPv6 } from 'node:net';

export interface IpAddress {
  family: 4 | 6;
  bits: bigint;
}

export interface CidrRange<T> {
  family: 4 | 6;
  prefix: bigint;
  length: number;
  value: T;
}

export function parseIp(text: string): IpAddress | undefined {
  let s = text.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  const zone = s.indexOf('%');
  if (zone >= 0) s = s.slice(0, zone);
  const mapped = /^::ffff:(\d+\.\d+\.\d+\.\d+)$/i.exec(s);
  if (mapped) s = mapped[1]!;
  if (isIPv4(s)) {
    let bits = 0n;
    for (const part of s.split('.')) bits = (bits << 8n) | BigInt(Number(part));
    return { family: 4, bits };
  }
  if (isIPv6(s)) return { family: 6, bits: parseIpv6(s) };
  return undefined;
}

function parseIpv6(s: string): bigint {
  let text = s;
  // An embedded IPv4 tail (`::1.2.3.4`) becomes two hextets.
  const v4 = /(\d+\.\d+\.\d+\.\d+)$/.exec(text);
  if (v4) {
    const p = v4[1]!.split('.').map(Number);
    text = text.slice(0, -v4[1]!.length) + `${((p[0]! << 8) | p[1]!).toString(16)}:${((p[2]! << 8) | p[3]!).toString(16)}`;
  }
  const [head, tail] = text.includes('::') ? text.split('::') : [text, undefined];
  const headParts = head ? head.split(':') : [];
  const tailParts = tail ? tail.split(':') : [];
  const missing = 8 - headParts.length - tailParts.length;
  const parts = [...headParts, ...Array<string>(tail === undefined ? 0 : missing).fill('0'), ...tailParts];
  let bits = 0n;
  for (const part of parts) bits = (bits << 16n) | BigInt(parseInt(part, 16));
  return bits;
}

export function formatIpv4(bits: bigint): string {
  return [24n, 16n, 8n, 0n].map((shift) => String((bits >> shift) & 255n)).join('.');
}

export function parseCidr<T>(text: string, value: T): CidrRange<T> | undefined {
  const slash = text.lastIndexOf('/');
  if (slash < 0) return undefined;
  const ip = parseIp(text.slice(0, slash));
  const length = Number(text.slice(slash + 1));
  if (!ip || !Number.isInteger(length)) return undefined;
  const width = ip.family === 4 ? 32 : 128;
  // `::ffff:10.0.0.0/104` style ranges are taken as their IPv4 part.
  const effective = ip.family === 4 && !isIPv4(text.slice(0, slash).trim()) ? length - 96 : length;
  if (effective < 0 || effective > width) return undefined;
  return { family: ip.family, prefix: mask(ip.bits, effective, width), length: effective, value };
}

function mask(bits: bigint, length: number, width: number): bigint {
  const hostBits = BigInt(width - length);
  return (bits >> hostBits) << hostBits;
}

/** Longest-prefix match over a small list (tens to thousands of ranges), sorted longest first. */
export class CidrTable<T> {
  private readonly ranges: CidrRange<T>[];

  constructor(ranges: CidrRange<T>[]) {
    this.ranges = [...ranges].sort((a, b) => b.length - a.length);
  }

  get size(): number {
    return this.ranges.length;
  }

  lookup(ip: IpAddress): T | undefined {
    const width = ip.family === 4 ? 32 : 128;
    for (const r of this.ranges) {
      if (r.family === ip.family && mask(ip.bits, r.length, width) === r.prefix) return r.value;
    }
    return undefined;
  }
}

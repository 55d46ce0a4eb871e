// IP addresses and CIDR ranges, on ipaddr.js, with longest-prefix matching for the geolocation map
// and the trusted-proxy list. IPv4 and IPv6 are separate families; `::ffff:a.b.c.d` counts as IPv4.
import { isIPv4, isIPv6 } from 'node:net';
import ipaddr from 'ipaddr.js';

export type IpAddress = ipaddr.IPv4 | ipaddr.IPv6;

export interface CidrRange<T> {
  network: IpAddress;
  length: number;
  value: T;
}

/**
 * An address as sockets, X-Forwarded-For and EDNS write it: plain, `[v6]`, with a zone id (dropped),
 * or IPv4-mapped (taken as IPv4). node:net decides what is an address: IPv4 only as four decimal
 * parts (ipaddr.js would also take `10.1`, `167772161` or `0x0a.0.0.1`, which no socket or proxy
 * writes), and at a fraction of the cost of ipaddr.js's own checks on this per-request path
 * (cidr.bench.ts: about 1.5 µs per address, parse and two lookups, against 6-7 µs).
 */
export function parseIp(text: string): IpAddress | undefined {
  let s = text.trim();
  if (s.startsWith('[') && s.endsWith(']')) s = s.slice(1, -1);
  if (isIPv4(s)) return ipaddr.IPv4.parse(s);
  if (!isIPv6(s)) return undefined;
  const zone = s.indexOf('%');
  const v6 = ipaddr.IPv6.parse(zone < 0 ? s : s.slice(0, zone));
  return v6.isIPv4MappedAddress() ? v6.toIPv4Address() : v6;
}

/** `10.0.0.0/8`, `2001:db8::/32`; `::ffff:10.0.0.0/104` is taken as its IPv4 part, `10.0.0.0/8`. */
export function parseCidr<T>(text: string, value: T): CidrRange<T> | undefined {
  if (ipaddr.IPv4.isValidCIDRFourPartDecimal(text)) {
    const [network, length] = ipaddr.IPv4.parseCIDR(text);
    return { network, length, value };
  }
  if (!ipaddr.IPv6.isValidCIDR(text)) return undefined;
  const [network, length] = ipaddr.IPv6.parseCIDR(text);
  if (network.isIPv4MappedAddress() && length >= 96) return { network: network.toIPv4Address(), length: length - 96, value };
  return { network, length, value };
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
    const kind = ip.kind();
    for (const r of this.ranges) {
      // ipaddr.js throws when asked to match across families.
      if (r.network.kind() === kind && ip.match(r.network, r.length)) return r.value;
    }
    return undefined;
  }
}

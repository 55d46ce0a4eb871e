// The router's MaxMind DB (`.mmdb`: GeoIP2/GeoLite2 Country and City), read with mmdb-lib. A file
// that is damaged or not an mmdb is an operating error, never a crash, and its message names the
// file: at open the router refuses to start; a damaged record found later fails that one lookup.
// mmdb-lib trusts its input more than we do, so this wrapper checks what the library leaves open:
// the metadata it needs (else its lookups walk nothing and find nothing), and the address family.
import { readFileSync } from 'node:fs';
import { Reader, type Response } from 'mmdb-lib';
import type { IpAddress } from './cidr.js';

export class MmdbError extends Error {
  override name = 'MmdbError';
}

/** "\xAB\xCD\xEFMaxMind.com", before the metadata map at the end of every MaxMind DB. */
const metadataMarker = Buffer.from('abcdef4d61784d696e642e636f6d', 'hex');
const dataSectionSeparatorBytes = 16;

export class MmdbReader {
  readonly metadata: Reader<Response>['metadata'];
  private readonly reader: Reader<Response>;

  /** @param source the file the bytes came from, for error messages */
  constructor(buf: Buffer, readonly source: string) {
    const metadataAt = buf.lastIndexOf(metadataMarker);
    if (metadataAt < 0) throw new MmdbError(`${source}: not a MaxMind DB file: metadata marker missing`);
    try {
      this.reader = new Reader<Response>(buf);
    } catch (err) {
      throw new MmdbError(`${source}: not a readable MaxMind DB file: ${(err as Error).message}`);
    }
    const { nodeCount, ipVersion, searchTreeSize } = this.reader.metadata;
    if (!Number.isInteger(nodeCount) || nodeCount <= 0) throw new MmdbError(`${source}: metadata node_count is invalid`);
    if (ipVersion !== 4 && ipVersion !== 6) throw new MmdbError(`${source}: unsupported ip_version ${String(ipVersion)}`);
    if (searchTreeSize + dataSectionSeparatorBytes > metadataAt) throw new MmdbError(`${source}: search tree overlaps the metadata`);
    this.metadata = this.reader.metadata;
  }

  static open(path: string): MmdbReader {
    let buf: Buffer;
    try {
      buf = readFileSync(path);
    } catch (err) {
      throw new MmdbError(`${path}: cannot read the MaxMind DB file: ${(err as Error).message}`);
    }
    return new MmdbReader(buf, path);
  }

  /** The record for an address, or undefined when the database has none. */
  lookup(ip: IpAddress): unknown {
    // mmdb-lib would walk an IPv4-only tree with an IPv6 address's first 32 bits.
    if (ip.kind() === 'ipv6' && this.metadata.ipVersion === 4) return undefined;
    try {
      return this.reader.get(ip.toString()) ?? undefined;
    } catch (err) {
      throw new MmdbError(`${this.source}: damaged record for ${ip.toString()}: ${(err as Error).message}`);
    }
  }
}

/** What geolocation needs from a GeoIP2 record: a country code and, in City databases, a location. */
export function geoFromRecord(record: unknown): { country?: string; lat?: number; lon?: number } {
  if (!isMap(record)) return {};
  const out: { country?: string; lat?: number; lon?: number } = {};
  const country = record['country'] ?? record['registered_country'];
  if (isMap(country) && typeof country['iso_code'] === 'string') out.country = country['iso_code'];
  const location = record['location'];
  if (isMap(location) && typeof location['latitude'] === 'number' && typeof location['longitude'] === 'number') {
    out.lat = location['latitude'];
    out.lon = location['longitude'];
  }
  return out;
}

function isMap(value: unknown): value is Record<string, unknown> {
  return typeof value === 'object' && value !== null && !Array.isArray(value) && !Buffer.isBuffer(value);
}

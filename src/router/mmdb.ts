// A reader for MaxMind DB files (`.mmdb`: GeoIP2/GeoLite2 Country and City), enough for the router's
// geolocation: find the record of an address and decode it. Format:
// https://maxmind.github.io/MaxMind-DB/ — a binary search tree over address bits, a 16-byte
// separator, a data section of typed values, and a metadata map after "\xAB\xCD\xEFMaxMind.com".
import { readFileSync } from 'node:fs';
import type { IpAddress } from './cidr.js';

export class MmdbError extends Error {
  override name = 'MmdbError';
}

const metadataMarker = Buffer.from('abcdef4d61784d696e642e636f6d', 'hex');
const dataSectionSeparatorBytes = 16;
/** Nesting bound for maps and arrays: real GeoIP records nest 3 deep. */
const decodeDepthMax = 32;

export type MmdbValue = string | number | bigint | boolean | Buffer | MmdbValue[] | { [key: string]: MmdbValue };

export interface MmdbMetadata {
  nodeCount: number;
  recordSize: 24 | 28 | 32;
  ipVersion: 4 | 6;
  databaseType: string;
}

export class MmdbReader {
  readonly metadata: MmdbMetadata;
  private readonly treeBytes: number;
  private readonly dataStart: number;
  private readonly ipv4Start: number;

  constructor(private readonly buf: Buffer) {
    const at = buf.lastIndexOf(metadataMarker);
    if (at < 0) throw new MmdbError('not a MaxMind DB file: metadata marker missing');
    const metaStart = at + metadataMarker.length;
    const meta = new Decoder(buf, metaStart).decode(metaStart).value;
    if (typeof meta !== 'object' || meta === null || Array.isArray(meta) || Buffer.isBuffer(meta))
      throw new MmdbError('metadata is not a map');
    const nodeCount = Number(meta['node_count']);
    const recordSize = Number(meta['record_size']);
    const ipVersion = Number(meta['ip_version']);
    if (!Number.isInteger(nodeCount) || nodeCount <= 0) throw new MmdbError('metadata node_count is invalid');
    if (recordSize !== 24 && recordSize !== 28 && recordSize !== 32)
      throw new MmdbError(`unsupported record_size ${recordSize}`);
    if (ipVersion !== 4 && ipVersion !== 6) throw new MmdbError(`unsupported ip_version ${ipVersion}`);
    this.metadata = { nodeCount, recordSize, ipVersion, databaseType: String(meta['database_type'] ?? '') };
    this.treeBytes = (recordSize / 4) * nodeCount;
    this.dataStart = this.treeBytes + dataSectionSeparatorBytes;
    if (this.dataStart > at) throw new MmdbError('search tree overlaps the metadata');
    // IPv4 addresses in an IPv6 tree live under ::/96.
    let node = 0;
    if (ipVersion === 6) {
      for (let i = 0; i < 96 && node < nodeCount; i++) node = this.readRecord(node, 0);
    }
    this.ipv4Start = node;
  }

  static open(path: string): MmdbReader {
    return new MmdbReader(readFileSync(path));
  }

  /** The record for an address, or undefined when the database has none. */
  lookup(ip: IpAddress): MmdbValue | undefined {
    const { nodeCount, ipVersion } = this.metadata;
    if (ip.family === 6 && ipVersion === 4) return undefined;
    const width = ip.family === 4 ? 32 : 128;
    let node = ip.family === 4 ? this.ipv4Start : 0;
    for (let i = width - 1; i >= 0 && node < nodeCount; i--) {
      node = this.readRecord(node, Number((ip.bits >> BigInt(i)) & 1n));
    }
    if (node === nodeCount) return undefined;
    if (node < nodeCount) throw new MmdbError('search tree deeper than the address');
    const offset = node - nodeCount - dataSectionSeparatorBytes;
    return new Decoder(this.buf, this.dataStart).decode(this.dataStart + offset).value;
  }

  private readRecord(node: number, bit: number): number {
    const b = this.buf;
    switch (this.metadata.recordSize) {
      case 24: {
        const at = node * 6 + bit * 3;
        return b.readUIntBE(at, 3);
      }
      case 28: {
        const at = node * 7;
        if (bit === 0) return ((b[at + 3]! & 0xf0) << 20) | b.readUIntBE(at, 3);
        return ((b[at + 3]! & 0x0f) << 24) | b.readUIntBE(at + 4, 3);
      }
      case 32:
        return b.readUInt32BE(node * 8 + bit * 4);
    }
  }
}

class Decoder {
  constructor(
    private readonly buf: Buffer,
    /** Pointers are offsets from here. */
    private readonly base: number,
  ) {}

  decode(offset: number, depth = 0): { value: MmdbValue; next: number } {
    if (depth > decodeDepthMax) throw new MmdbError('data nested too deep');
    const b = this.buf;
    const ctrl = this.byte(offset++);
    let type = ctrl >> 5;
    if (type === 1) {
      const ss = (ctrl >> 3) & 3;
      const vvv = ctrl & 7;
      let pointer: number;
      if (ss === 0) pointer = (vvv << 8) | this.byte(offset);
      else if (ss === 1) pointer = ((vvv << 16) | this.uint(offset, 2)) + 2048;
      else if (ss === 2) pointer = ((vvv << 24) | this.uint(offset, 3)) + 526_336;
      else pointer = this.uint(offset, 4);
      const target = this.decode(this.base + pointer, depth + 1);
      return { value: target.value, next: offset + ss + 1 };
    }
    if (type === 0) type = 7 + this.byte(offset++);
    let size = ctrl & 0x1f;
    if (size === 29) size = 29 + this.byte(offset++);
    else if (size === 30) {
      size = 285 + this.uint(offset, 2);
      offset += 2;
    } else if (size === 31) {
      size = 65_821 + this.uint(offset, 3);
      offset += 3;
    }
    switch (type) {
      case 2:
        this.need(offset, size);
        return { value: b.toString('utf8', offset, offset + size), next: offset + size };
      case 3:
        this.need(offset, 8);
        return { value: b.readDoubleBE(offset), next: offset + 8 };
      case 4:
        this.need(offset, size);
        return { value: Buffer.from(b.subarray(offset, offset + size)), next: offset + size };
      case 5:
      case 6:
      case 8:
        return { value: size === 0 ? 0 : this.uint(offset, size), next: offset + size };
      case 9:
      case 10: {
        this.need(offset, size);
        let v = 0n;
        for (let i = 0; i < size; i++) v = (v << 8n) | BigInt(b[offset + i]!);
        return { value: v, next: offset + size };
      }
      case 7: {
        const map: { [key: string]: MmdbValue } = {};
        let at = offset;
        for (let i = 0; i < size; i++) {
          const key = this.decode(at, depth + 1);
          const value = this.decode(key.next, depth + 1);
          map[String(key.value)] = value.value;
          at = value.next;
        }
        return { value: map, next: at };
      }
      case 11: {
        const items: MmdbValue[] = [];
        let at = offset;
        for (let i = 0; i < size; i++) {
          const item = this.decode(at, depth + 1);
          items.push(item.value);
          at = item.next;
        }
        return { value: items, next: at };
      }
      case 14:
        return { value: size !== 0, next: offset };
      case 15:
        this.need(offset, 4);
        return { value: b.readFloatBE(offset), next: offset + 4 };
      default:
        throw new MmdbError(`unsupported data type ${type} at byte ${offset - 1}`);
    }
  }

  private need(offset: number, n: number): void {
    if (offset + n > this.buf.length) throw new MmdbError('data runs past the end of the file');
  }

  private byte(offset: number): number {
    this.need(offset, 1);
    return this.buf[offset]!;
  }

  private uint(offset: number, n: number): number {
    this.need(offset, n);
    if (n > 4) throw new MmdbError(`integer of ${n} bytes`);
    return n === 0 ? 0 : this.buf.readUIntBE(offset, n);
  }
}

/** What geolocation needs from a GeoIP2 record: a country code and, in City databases, a location. */
export function geoFromRecord(record: MmdbValue | undefined): { country?: string; lat?: number; lon?: number } {
  if (typeof record !== 'object' || record === null || Array.isArray(record) || Buffer.isBuffer(record)) return {};
  const out: { country?: string; lat?: number; lon?: number } = {};
  const country = (record['country'] ?? record['registered_country']) as { [k: string]: MmdbValue } | undefined;
  if (country && typeof country['iso_code'] === 'string') out.country = country['iso_code'];
  const location = record['location'] as { [k: string]: MmdbValue } | undefined;
  if (location && typeof location['latitude'] === 'number' && typeof location['longitude'] === 'number') {
    out.lat = location['latitude'];
    out.lon = location['longitude'];
  }
  return out;
}

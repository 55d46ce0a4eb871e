import { mkdtempSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import fc from 'fast-check';
import { afterAll, describe, expect, it } from 'vitest';
import { ConfigError } from '../config/load.js';
import { geolocationSchema } from '../config/router-schema.js';
import { silentLogger, type Logger } from '../platform/env.js';
import { parseIp } from './cidr.js';
import { Geolocator } from './geolocation.js';
import { geoFromRecord, MmdbError, MmdbReader } from './mmdb.js';

// A tiny MaxMind DB writer (IPv4 tree, 24-bit records), enough to test the reader on real bytes.
type Value = string | number | { [k: string]: Value };
function encodeValue(v: Value): Buffer {
  if (typeof v === 'string') {
    const s = Buffer.from(v, 'utf8');
    return Buffer.concat([Buffer.from([(2 << 5) | s.length]), s]);
  }
  if (typeof v === 'number' && !Number.isInteger(v)) {
    const b = Buffer.alloc(9);
    b[0] = (3 << 5) | 8;
    b.writeDoubleBE(v, 1);
    return b;
  }
  if (typeof v === 'number') {
    const b = Buffer.alloc(5);
    b[0] = (6 << 5) | 4; // uint32, 4 bytes
    b.writeUInt32BE(v, 1);
    return b;
  }
  const entries = Object.entries(v);
  return Buffer.concat([Buffer.from([(7 << 5) | entries.length]), ...entries.flatMap(([k, x]) => [encodeValue(k), encodeValue(x)])]);
}

function writeMmdb(entries: { cidr: string; record: Value }[]): Buffer {
  type Slot = { node: number } | { data: number } | null;
  const nodes: [Slot, Slot][] = [[null, null]];
  const data: Buffer[] = [];
  let dataBytes = 0;
  for (const { cidr, record } of entries) {
    const [addr, len] = cidr.split('/');
    const bytes = parseIp(addr!)!.toByteArray();
    const offset = dataBytes;
    const encoded = encodeValue(record);
    data.push(encoded);
    dataBytes += encoded.length;
    let node = 0;
    for (let i = 0; i < Number(len); i++) {
      const bit = (bytes[i >> 3]! >> (7 - (i & 7))) & 1;
      if (i === Number(len) - 1) nodes[node]![bit] = { data: offset };
      else {
        const slot = nodes[node]![bit];
        if (slot !== null && slot !== undefined && 'node' in slot) node = slot.node;
        else {
          nodes.push([null, null]);
          nodes[node]![bit] = { node: nodes.length - 1 };
          node = nodes.length - 1;
        }
      }
    }
  }
  const n = nodes.length;
  const tree = Buffer.alloc(n * 6);
  nodes.forEach((pair, i) =>
    pair.forEach((slot, bit) => {
      const value = slot === null ? n : 'node' in slot ? slot.node : n + 16 + slot.data;
      tree.writeUIntBE(value, i * 6 + bit * 3, 3);
    }),
  );
  const meta = encodeValue({ node_count: n, record_size: 24, ip_version: 4, database_type: 'Test-City' });
  return Buffer.concat([tree, Buffer.alloc(16), ...data, Buffer.from('abcdef4d61784d696e642e636f6d', 'hex'), meta]);
}

const db = writeMmdb([
  { cidr: '203.0.113.0/24', record: { country: { iso_code: 'FR' }, location: { latitude: 48.85, longitude: 2.35 } } },
  { cidr: '198.51.100.0/25', record: { country: { iso_code: 'IN' } } },
]);

/** Where the first record (FR's) starts in `db`: after the search tree and the 16-byte separator. */
const firstRecordAt = new MmdbReader(db, 'test.mmdb').metadata.searchTreeSize + 16;

const dir = mkdtempSync(join(tmpdir(), 'tandem-mmdb-'));
afterAll(() => rmSync(dir, { recursive: true, force: true }));

describe('mmdb reader', () => {
  it('finds the record of an address and decodes it', () => {
    const reader = new MmdbReader(db, 'test.mmdb');
    expect(reader.metadata).toMatchObject({ recordSize: 24, ipVersion: 4, databaseType: 'Test-City' });
    expect(geoFromRecord(reader.lookup(parseIp('203.0.113.77')!))).toEqual({ country: 'FR', lat: 48.85, lon: 2.35 });
    expect(geoFromRecord(reader.lookup(parseIp('198.51.100.5')!))).toEqual({ country: 'IN' });
    expect(reader.lookup(parseIp('198.51.100.200')!)).toBeUndefined();
    expect(reader.lookup(parseIp('10.0.0.1')!)).toBeUndefined();
    expect(reader.lookup(parseIp('2001:db8::1')!)).toBeUndefined();
  });

  it('refuses files that are not MaxMind DBs, naming the file', () => {
    expect(() => new MmdbReader(Buffer.from('hello'), 'hello.mmdb')).toThrow(/^hello\.mmdb: not a MaxMind DB file/);
    expect(() => MmdbReader.open('/nonexistent/geo.mmdb')).toThrow(/^\/nonexistent\/geo\.mmdb: cannot read/);
  });

  it('a truncated or damaged file gives an MmdbError naming the file, at open or at lookup, never another error', () => {
    const addresses = ['203.0.113.77', '198.51.100.5', '10.0.0.1'].map((a) => parseIp(a)!);
    const readAll = (bytes: Buffer) => {
      try {
        const reader = new MmdbReader(bytes, 'damaged.mmdb');
        for (const ip of addresses) geoFromRecord(reader.lookup(ip));
      } catch (err) {
        expect(err).toBeInstanceOf(MmdbError);
        expect((err as Error).message).toMatch(/^damaged\.mmdb: /);
      }
    };
    for (let cut = 0; cut < db.length; cut++) readAll(db.subarray(0, cut));
    fc.assert(
      fc.property(fc.array(fc.tuple(fc.nat(db.length - 1), fc.integer({ min: 0, max: 255 })), { minLength: 1, maxLength: 8 }), (edits) => {
        const bytes = Buffer.from(db);
        for (const [at, value] of edits) bytes[at] = value;
        readAll(bytes);
      }),
      { numRuns: 3000 },
    );
  });

  it('feeds geolocation: country to site, else coordinates', () => {
    const config = geolocationSchema.parse({ countries: { IN: 'ap-south' } });
    const geo = new Geolocator(silentLogger, config, new MmdbReader(db, 'test.mmdb'));
    expect(geo.locate('198.51.100.5', '198.51.100.5', undefined).target).toBe('ap-south');
    const fr = geo.locate('203.0.113.9', '203.0.113.9', undefined);
    expect(fr.target).toBeUndefined();
    expect([fr.lat, fr.lon]).toEqual([48.85, 2.35]);
  });

  it('a damaged record leaves its addresses without a location and is logged once, naming the file', () => {
    const damaged = Buffer.from(db);
    damaged[firstRecordAt] = 0; // an extended type byte ...
    damaged[firstRecordAt + 1] = 0; // ... naming no type
    const warnings: string[] = [];
    const log: Logger = { ...silentLogger, warn: (obj) => warnings.push((obj as { err: string }).err) };
    const geo = new Geolocator(log, geolocationSchema.parse({ countries: { IN: 'ap-south' } }), new MmdbReader(damaged, 'damaged.mmdb'));
    expect(geo.locate('203.0.113.9', '203.0.113.9', undefined)).toMatchObject({ target: undefined, lat: undefined });
    expect(geo.locate('203.0.113.10', '203.0.113.10', undefined)).toMatchObject({ target: undefined, lat: undefined });
    expect(geo.locate('198.51.100.5', '198.51.100.5', undefined).target).toBe('ap-south');
    expect(warnings).toHaveLength(1);
    expect(warnings[0]).toMatch(/^damaged\.mmdb: damaged record for 203\.0\.113\.9: /);
  });

  it('a router configured with a damaged mmdb refuses to start with a config error naming the file', () => {
    const path = join(dir, 'broken.mmdb');
    writeFileSync(path, db.subarray(0, db.length - 20));
    const config = geolocationSchema.parse({ mmdb: path });
    expect(() => Geolocator.fromConfig(silentLogger, config)).toThrow(ConfigError);
    expect(() => Geolocator.fromConfig(silentLogger, config)).toThrow(`router.geolocation.mmdb: ${path}: `);
  });
});

import { decode, encode } from '@msgpack/msgpack';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { containerAt, RawWriter, valueEnd } from './msgpack-raw.js';
import { decodeLogEntry, encodeLogEntry, logEntryStateBytes } from '../store/log-codec.js';
import type { ItemState } from '../core/item.js';

// @msgpack/msgpack refuses a __proto__ key when decoding
const key = (maxLength: number) => fc.string({ maxLength }).filter((k) => k !== '__proto__');

const value = fc.letrec((tie) => ({
  v: fc.oneof(
    { depthSize: 'small' },
    fc.string({ maxLength: 300 }),
    fc.integer(),
    fc.maxSafeNat(),
    // MessagePack has no -0: the encoder writes it as 0
    fc.double({ noNaN: true }).filter((x) => !Object.is(x, -0)),
    fc.boolean(),
    fc.constant(null),
    fc.uint8Array({ maxLength: 300 }),
    fc.array(tie('v'), { maxLength: 20 }),
    fc.dictionary(key(20), tie('v'), { maxKeys: 20 }),
  ),
})).v;

describe('msgpack-raw', () => {
  it('finds the end of any value, also within concatenated values', () => {
    fc.assert(
      fc.property(fc.array(value, { minLength: 1, maxLength: 5 }), (values) => {
        const parts = values.map((v) => encode(v));
        const joined = Buffer.concat(parts);
        let at = 0;
        for (const p of parts) {
          const end = valueEnd(joined, at);
          expect(end - at).toBe(p.byteLength);
          at = end;
        }
        expect(at).toBe(joined.byteLength);
      }),
    );
  });

  it('throws on truncated input instead of reading past it', () => {
    const bytes = encode({ a: [1, 'two', { three: 3 }] });
    for (let n = 0; n < bytes.byteLength; n++) expect(() => valueEnd(bytes.subarray(0, n), 0)).toThrow(/truncated/);
  });

  it('writes headers, strings and integers exactly as the encoder does', () => {
    fc.assert(
      fc.property(fc.string({ maxLength: 70_000 }), fc.maxSafeNat(), fc.nat(70_000), (s, n, size) => {
        expect(Buffer.from(new RawWriter().str(s).finish())).toEqual(Buffer.from(encode(s)));
        expect(Buffer.from(new RawWriter().uint(n).finish())).toEqual(Buffer.from(encode(n)));
        const arr = new RawWriter().array(size).finish();
        expect(containerAt(arr, 0, 'array')).toEqual({ size, body: arr.byteLength });
      }),
      { numRuns: 50 },
    );
  });

  it('splices encoded values into a map that decodes to the whole object', () => {
    fc.assert(
      fc.property(fc.dictionary(key(10), value, { maxKeys: 20 }), (obj) => {
        const keys = Object.keys(obj);
        const w = new RawWriter().map(keys.length);
        for (const k of keys) w.str(k).raw(encode(obj[k]));
        expect(decode(new Uint8Array(w.finish()))).toEqual(obj);
      }),
    );
  });

  it('a log entry spliced from encoded states decodes to the entry and equals its plain encoding', () => {
    const state = { c: { 'a.1': 3 }, r: { '': [{ d: 'a.1:3', h: '0000000000010000', s: 'a', v: { x: 1 } }] }, k: {}, s: {}, x: [], w: { h: '0000000000010000', s: 'a', d: 'a.1:3' } };
    const entry = { origin: 'a.1', seq: 3, hlc: '0000000000010000', items: [{ table: 't', key: 'k', state }], awaitsAck: true as const };
    const { body: bytes, states } = encodeLogEntry(entry, [{ table: 't', key: 'k', state }]);
    expect(decodeLogEntry(bytes)).toEqual(entry);
    expect(Buffer.from(bytes)).toEqual(Buffer.from(encode(entry)));
    expect(states.map((b) => Buffer.from(b))).toEqual([Buffer.from(encode(state))]);
  });

  it('an entry with an Idempotency-Key carries it after the other fields, as its plain encoding does', () => {
    const state = { c: { 'a.1': 4 }, r: {}, k: {}, s: {}, x: [], w: { h: '0000000000010000', s: 'a', d: 'a.1:4' } };
    const entry = { origin: 'a.1', seq: 4, hlc: '0000000000010000', items: [{ table: 't', key: 'k', state }], idempotency: { key: 'order-17 retry', fingerprint: 'ab'.repeat(16) } };
    const { body: bytes } = encodeLogEntry(entry, [{ table: 't', key: 'k', state }]);
    expect(decodeLogEntry(bytes)).toEqual(entry);
    expect(Buffer.from(bytes)).toEqual(Buffer.from(encode(entry)));
    expect(logEntryStateBytes(bytes).map((b) => Buffer.from(b))).toEqual([Buffer.from(encode(state))]);
  });

  it("finds each item's encoded state in a log entry, whatever the states and the fields around them", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ table: key(10), key: key(40), state: fc.dictionary(key(5), value, { maxKeys: 6 }) }), { minLength: 1, maxLength: 5 }),
        fc.boolean(),
        (items, awaitsAck) => {
          const head = { origin: 'a.1', seq: 7, hlc: '0000000000010000', ...(awaitsAck ? { awaitsAck: true as const } : {}) };
          // any values as states: the writer hands what is not JSON-like (byte arrays here) to the library
          const { body: bytes, states: written } = encodeLogEntry(head, items.map((it) => ({ table: it.table, key: it.key, state: it.state as unknown as ItemState })));
          const { awaitsAck: flag, ...fields } = head;
          expect(Buffer.from(bytes)).toEqual(Buffer.from(encode({ ...fields, items, ...(flag ? { awaitsAck: flag } : {}) })));
          expect(written.map((s) => Buffer.from(s))).toEqual(items.map((it) => Buffer.from(encode(it.state))));
          const states = logEntryStateBytes(bytes);
          expect(states.map((s) => Buffer.from(s))).toEqual(items.map((it) => Buffer.from(encode(it.state))));
          // the same from the plain encoding of the entry object (a peer's bytes need not be spliced)
          const plain = encode({ ...head, items });
          expect(logEntryStateBytes(plain).map((s) => Buffer.from(s))).toEqual(items.map((it) => Buffer.from(encode(it.state))));
        },
      ),
      { numRuns: 300 },
    );
    expect(() => logEntryStateBytes(encode([1, 2]))).toThrow(/map/);
    expect(() => logEntryStateBytes(encode({ items: [{ table: 't', key: 'k' }] }))).toThrow(/without a state/);
  });

  describe('value: what the library writes, byte for byte', () => {
    const written = (v: unknown) => Buffer.from(new RawWriter().value(v).finish());
    const library = (v: unknown) => Buffer.from(encode(v));

    it('at every edge where the library changes form', () => {
      const edges: unknown[] = [
        0, -0, 1, 127, 128, 255, 256, 65_535, 65_536, 2 ** 32 - 1, 2 ** 32, Number.MAX_SAFE_INTEGER, Number.MAX_SAFE_INTEGER + 1,
        -1, -32, -33, -128, -129, -32_768, -32_769, -(2 ** 31), -(2 ** 31) - 1, Number.MIN_SAFE_INTEGER, Number.MIN_SAFE_INTEGER - 1,
        0.5, -1.25, 1e300, NaN, Infinity, -Infinity,
        '', 'a'.repeat(31), 'a'.repeat(32), 'a'.repeat(255), 'a'.repeat(256), 'a'.repeat(65_535), 'a'.repeat(65_536),
        'é', 'é'.repeat(15), 'é'.repeat(16), 'é'.repeat(200), '日本語', '😀', 'a😀b', '\ud800', 'x\udc00y', '😀'.repeat(40).slice(1),
        null, undefined, true, false, [], {}, [undefined, null], { a: undefined, b: 1 },
        Array.from({ length: 15 }, (_, i) => i), Array.from({ length: 16 }, (_, i) => i), Array.from({ length: 65_536 }, () => 0),
        Object.fromEntries(Array.from({ length: 15 }, (_, i) => [`k${i}`, i])), Object.fromEntries(Array.from({ length: 16 }, (_, i) => [`k${i}`, i])),
        Object.fromEntries(Array.from({ length: 65_536 }, (_, i) => [`k${i}`, i])),
        { ['k'.repeat(40)]: 1, ['é'.repeat(20)]: 2, '': 3, '10': 4, '2': 5, '\udfff': 6 },
        // what the library writes itself: a Date (its timestamp extension), bytes, a null-prototype object
        new Date(1_700_000_000_123), new Uint8Array([1, 2, 3]), { at: new Date(0), bin: Buffer.from('xy') }, Object.assign(Object.create(null) as object, { a: 1 }),
      ];
      for (const v of edges) expect(written(v).equals(library(v)), `value ${String(JSON.stringify(v)).slice(0, 50)}`).toBe(true);
    });

    it('for any JSON value, and for strings of any code units (property)', () => {
      fc.assert(
        fc.property(fc.jsonValue({ maxDepth: 6 }), (v) => {
          expect(written(v).equals(library(v))).toBe(true);
        }),
        { numRuns: 1_000 },
      );
      fc.assert(
        fc.property(fc.string({ unit: 'binary', maxLength: 80 }), fc.string({ unit: fc.integer({ min: 0xd7f0, max: 0xe010 }).map((c) => String.fromCharCode(c)), maxLength: 40 }), (a, b) => {
          for (const v of [a, b, { [a]: b, [b]: [a] }]) expect(written(v).equals(library(v))).toBe(true);
        }),
        { numRuns: 500 },
      );
    });

    it('after what is already written, and failing as the library does on what it refuses', () => {
      const w = new RawWriter().array(3).str('x');
      w.value({ when: new Date(5), n: [1, 2] }).value(-7);
      expect(Buffer.from(w.finish())).toEqual(Buffer.from(encode(['x', { when: new Date(5), n: [1, 2] }, -7])));
      let deep: unknown = 1;
      for (let i = 0; i < 150; i++) deep = [deep];
      expect(() => new RawWriter().value(deep)).toThrow(/Too deep/);
      expect(() => new RawWriter().value({ f: () => 1 })).toThrow(/Unrecognized object/);
    });
  });
});

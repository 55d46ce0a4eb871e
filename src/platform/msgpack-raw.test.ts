import { decode, encode } from '@msgpack/msgpack';
import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { containerAt, RawWriter, valueEnd } from './msgpack-raw.js';
import { decodeLogEntry, encodeLogEntry, logEntryStateBytes } from '../store/log-codec.js';

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
    const bytes = encodeLogEntry(entry, [{ table: 't', key: 'k', state: encode(state) }]);
    expect(decodeLogEntry(bytes)).toEqual(entry);
    expect(Buffer.from(bytes)).toEqual(Buffer.from(encode(entry)));
  });

  it("finds each item's encoded state in a log entry, whatever the states and the fields around them", () => {
    fc.assert(
      fc.property(
        fc.array(fc.record({ table: key(10), key: key(40), state: fc.dictionary(key(5), value, { maxKeys: 6 }) }), { minLength: 1, maxLength: 5 }),
        fc.boolean(),
        (items, awaitsAck) => {
          const head = { origin: 'a.1', seq: 7, hlc: '0000000000010000', ...(awaitsAck ? { awaitsAck: true as const } : {}) };
          const bytes = encodeLogEntry(head, items.map((it) => ({ table: it.table, key: it.key, state: encode(it.state) })));
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
});

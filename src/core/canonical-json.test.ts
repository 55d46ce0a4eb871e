import fc from 'fast-check';
import { describe, expect, it } from 'vitest';
import { canonicalJson, sameJson, type JsonValue } from './canonical-json.js';

/** The plain definition: sort every object's keys, recurse. */
function reference(value: JsonValue): string {
  if (value === null || typeof value !== 'object') {
    if (typeof value === 'number' && !Number.isFinite(value)) throw new TypeError('non-finite number in JSON');
    return JSON.stringify(value);
  }
  if (Array.isArray(value)) return `[${value.map(reference).join(',')}]`;
  const keys = Object.keys(value).sort();
  return `{${keys.map((k) => `${JSON.stringify(k)}:${reference(value[k]!)}`).join(',')}}`;
}

describe('canonicalJson (RFC 8785)', () => {
  it('equals the plain definition for any JSON value, keys in any order', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), (v) => {
        expect(canonicalJson(v as JsonValue)).toBe(reference(v as JsonValue));
      }),
      { numRuns: 500 },
    );
  });

  it('sorts keys by UTF-16 code units and writes numbers in shortest form', () => {
    expect(canonicalJson({ b: 1, a: [3, { d: 1e21, c: 0.1 }], é: -0, '\u{1F600}': 'x', 'ﬀ': 2 })).toBe(
      '{"a":[3,{"c":0.1,"d":1e+21}],"b":1,"é":0,"\u{1F600}":"x","ﬀ":2}',
    );
  });

  it('refuses non-finite numbers, wherever they are', () => {
    expect(() => canonicalJson({ a: [1, { b: Number.NaN }] })).toThrow(/non-finite/);
    expect(() => canonicalJson({ z: 1, a: Infinity })).toThrow(/non-finite/);
  });
});

describe('sameJson', () => {
  it('is true exactly when two values encode alike: same structure, same key order', () => {
    fc.assert(
      fc.property(fc.jsonValue({ maxDepth: 4 }), fc.jsonValue({ maxDepth: 4 }), (a, b) => {
        expect(sameJson(a, structuredClone(a))).toBe(true);
        expect(sameJson(a, b)).toBe(JSON.stringify(a) === JSON.stringify(b));
      }),
      { numRuns: 500 },
    );
    expect(sameJson({ a: 1, b: 2 }, { b: 2, a: 1 })).toBe(false);
    expect(sameJson({ a: undefined }, {})).toBe(false);
    expect(sameJson([1, [2]], [1, [2]])).toBe(true);
    expect(sameJson([], {})).toBe(false);
    expect(sameJson(null, {})).toBe(false);
  });
});

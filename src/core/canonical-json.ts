// RFC 8785 (JSON Canonicalization Scheme) for the JSON values Tandem stores: object keys sorted by
// UTF-16 code units, no whitespace, numbers in ECMAScript shortest form. Digests and set elements
// are computed over this form, so equal content hashes equally on every site.
//
// On the hot path of every write and every apply (content hashes), so: a value whose object keys
// are already in order (and whose numbers are finite) is exactly what JSON.stringify writes, and
// goes to it whole (native); only the parts that are out of order are rebuilt here.
export type JsonValue = null | boolean | number | string | JsonValue[] | { [k: string]: JsonValue };

export function canonicalJson(value: JsonValue): string {
  if (inCanonicalOrder(value)) return JSON.stringify(value);
  if (value === null || typeof value !== 'object') throw new TypeError('non-finite number in JSON');
  if (Array.isArray(value)) {
    let out = '[';
    for (let i = 0; i < value.length; i++) out += (i === 0 ? '' : ',') + canonicalJson(value[i]!);
    return `${out}]`;
  }
  const keys = Object.keys(value).sort();
  let out = '{';
  for (let i = 0; i < keys.length; i++) out += `${i === 0 ? '' : ','}${JSON.stringify(keys[i])}:${canonicalJson(value[keys[i]!]!)}`;
  return `${out}}`;
}

/** True when JSON.stringify(value) is its canonical form: keys in UTF-16 order, finite numbers. */
function inCanonicalOrder(value: JsonValue): boolean {
  if (typeof value === 'number') return Number.isFinite(value);
  if (value === null || typeof value !== 'object') return true;
  if (Array.isArray(value)) {
    for (const v of value) if (!inCanonicalOrder(v)) return false;
    return true;
  }
  let previous: string | undefined;
  for (const k in value) {
    if (previous !== undefined && !(previous < k)) return false;
    previous = k;
    if (!inCanonicalOrder(value[k]!)) return false;
  }
  return true;
}

/**
 * Structural equality of JSON-like values (undefined included), object keys in the same order:
 * equal values encode to the same bytes.
 */
export function sameJson(a: unknown, b: unknown): boolean {
  if (a === b) return true;
  if (typeof a !== 'object' || typeof b !== 'object' || a === null || b === null) return false;
  if (Array.isArray(a)) {
    if (!Array.isArray(b) || a.length !== b.length) return false;
    for (let i = 0; i < a.length; i++) if (!sameJson(a[i], b[i])) return false;
    return true;
  }
  if (Array.isArray(b)) return false;
  const ka = Object.keys(a);
  const kb = Object.keys(b);
  if (ka.length !== kb.length) return false;
  for (let i = 0; i < ka.length; i++) {
    const k = ka[i]!;
    if (k !== kb[i] || !sameJson((a as Record<string, unknown>)[k], (b as Record<string, unknown>)[k])) return false;
  }
  return true;
}

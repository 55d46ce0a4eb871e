// MessagePack spliced from parts already encoded. A log entry is stored as MessagePack; a feed frame
// holds a batch of entries; a receiver logs each entry again. Encoding the item states once and
// then splicing the stored bytes (into an entry, into a frame, back into the receiver's log) gives
// byte-for-byte the MessagePack that encoding the whole object would, without decoding and
// re-encoding every entry at every hop. `value` writes a JSON-like value (an item state) the way
// @msgpack/msgpack's encoder does, byte for byte, in about half its time; values are located with
// `valueEnd`, which understands every MessagePack type.
import { Encoder } from '@msgpack/msgpack';
import { assert } from './assert.js';

/** What `value` hands to the library: anything that is not JSON-like, whole. */
const libraryEncoder = new Encoder();
/** Thrown inside `value` at a part it does not write itself; the library then writes the whole value. */
const notJsonLike = Symbol('not JSON-like');
/** The library's nesting bound (its `maxDepth`), past which it throws. */
const depthMax = 100;

/** Writes into one growing buffer; `raw` appends bytes that already are one MessagePack value. */
export class RawWriter {
  private buf = Buffer.allocUnsafe(512);
  private at = 0;

  constructor(
    /** bytes left at the front for the caller (e.g. a frame length), zeroed */
    private readonly prefix = 0,
  ) {
    this.buf.fill(0, 0, prefix);
    this.at = prefix;
  }

  private room(n: number): void {
    if (this.at + n <= this.buf.byteLength) return;
    const next = Buffer.allocUnsafe(Math.max(this.buf.byteLength * 2, this.at + n));
    this.buf.copy(next, 0, 0, this.at);
    this.buf = next;
  }

  private bytes(...b: number[]): this {
    this.room(b.length);
    for (const x of b) this.buf[this.at++] = x;
    return this;
  }

  map(entries: number): this {
    return this.container(entries, 0x80, 0xde);
  }

  array(items: number): this {
    return this.container(items, 0x90, 0xdc);
  }

  private container(n: number, fix: number, wide16: number): this {
    assert(Number.isInteger(n) && n >= 0 && n < 0x100000000, `container size out of range: ${n}`);
    if (n < 16) return this.bytes(fix | n);
    if (n < 0x10000) return this.bytes(wide16, n >> 8, n & 0xff);
    return this.bytes(wide16 + 1, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
  }

  str(s: string): this {
    // ASCII, the usual case, is one byte a character: copied here, without two calls into the runtime
    const length = s.length;
    if (length < 32) {
      this.room(1 + length);
      let i = 0;
      for (; i < length; i++) {
        const c = s.charCodeAt(i);
        if (c >= 0x80) break;
        this.buf[this.at + 1 + i] = c;
      }
      if (i === length) {
        this.buf[this.at] = 0xa0 | length;
        this.at += 1 + length;
        return this;
      }
    }
    const n = Buffer.byteLength(s, 'utf8');
    if (n < 32) this.bytes(0xa0 | n);
    else if (n < 0x100) this.bytes(0xd9, n);
    else if (n < 0x10000) this.bytes(0xda, n >> 8, n & 0xff);
    else this.bytes(0xdb, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
    this.room(n);
    this.at += this.buf.write(s, this.at, 'utf8');
    return this;
  }

  /**
   * Any value, as @msgpack/msgpack's `encode` writes it with its default options: JSON-like values
   * (null, undefined, booleans, numbers, strings, arrays, plain objects) here, anything else (a
   * Date, a typed array, a string with a lone surrogate) by the library itself.
   */
  value(v: unknown): this {
    const start = this.at;
    try {
      this.jsonLike(v, 0);
    } catch (error) {
      if (error !== notJsonLike) throw error;
      this.at = start;
      this.raw(libraryEncoder.encode(v));
    }
    return this;
  }

  private jsonLike(v: unknown, depth: number): void {
    if (depth > depthMax) throw notJsonLike;
    if (v === null || v === undefined) this.bytes(0xc0);
    else if (typeof v === 'string') {
      if (!wellFormed(v)) throw notJsonLike;
      this.str(v);
    } else if (typeof v === 'number') this.number(v);
    else if (typeof v === 'boolean') this.bytes(v ? 0xc3 : 0xc2);
    else if (Array.isArray(v)) {
      this.array(v.length);
      for (const item of v) this.jsonLike(item, depth + 1);
    } else if (typeof v === 'object' && Object.getPrototypeOf(v) === Object.prototype) {
      const keys = Object.keys(v);
      this.map(keys.length);
      for (const k of keys) {
        if (!wellFormed(k)) throw notJsonLike;
        this.str(k);
        this.jsonLike((v as Record<string, unknown>)[k], depth + 1);
      }
    } else throw notJsonLike;
  }

  /** A number in the library's form: the smallest integer form for a safe integer, else a float 64. */
  private number(x: number): void {
    if (!Number.isSafeInteger(x)) {
      this.room(9);
      this.buf[this.at] = 0xcb;
      this.buf.writeDoubleBE(x, this.at + 1);
      this.at += 9;
    } else if (x >= 0) this.uint(x);
    else if (x >= -0x20) this.bytes(0xe0 | (x + 0x20));
    else {
      this.room(9);
      const at = this.at;
      if (x >= -0x80) {
        this.buf[at] = 0xd0;
        this.at = this.buf.writeInt8(x, at + 1);
      } else if (x >= -0x8000) {
        this.buf[at] = 0xd1;
        this.at = this.buf.writeInt16BE(x, at + 1);
      } else if (x >= -0x80000000) {
        this.buf[at] = 0xd2;
        this.at = this.buf.writeInt32BE(x, at + 1);
      } else {
        this.buf[at] = 0xd3;
        this.at = this.buf.writeBigInt64BE(BigInt(x), at + 1);
      }
    }
  }

  /** The offset the next byte is written at (prefix included): where a value about to be written starts. */
  get offset(): number {
    return this.at;
  }

  /** A non-negative safe integer, in the smallest form (as @msgpack/msgpack writes it). */
  uint(n: number): this {
    assert(Number.isSafeInteger(n) && n >= 0, `uint out of range: ${n}`);
    if (n < 0x80) return this.bytes(n);
    if (n < 0x100) return this.bytes(0xcc, n);
    if (n < 0x10000) return this.bytes(0xcd, n >> 8, n & 0xff);
    if (n < 0x100000000) return this.bytes(0xce, n >>> 24, (n >>> 16) & 0xff, (n >>> 8) & 0xff, n & 0xff);
    this.room(9);
    this.buf[this.at] = 0xcf;
    this.buf.writeBigUInt64BE(BigInt(n), this.at + 1);
    this.at += 9;
    return this;
  }

  true(): this {
    return this.bytes(0xc3);
  }

  raw(value: Uint8Array): this {
    this.room(value.byteLength);
    this.buf.set(value, this.at);
    this.at += value.byteLength;
    return this;
  }

  /** bytes written after the prefix */
  get byteLength(): number {
    return this.at - this.prefix;
  }

  /** The bytes, prefix included (a view of the writer's buffer: the writer is done). */
  finish(): Buffer {
    return this.buf.subarray(0, this.at);
  }
}

/**
 * No lone surrogate (the library writes one in a form of its own). A short ASCII string, the usual
 * case, is checked here without a call into the runtime.
 */
function wellFormed(s: string): boolean {
  if (s.length < 32) {
    let ascii = true;
    for (let i = 0; i < s.length && ascii; i++) ascii = s.charCodeAt(i) < 0x80;
    if (ascii) return true;
  }
  return (s as unknown as { isWellFormed(): boolean }).isWellFormed();
}

/** The offset just past the MessagePack value that starts at `at`; throws if `bytes` ends first. */
export function valueEnd(bytes: Uint8Array, at: number): number {
  let pending = 1;
  let i = at;
  const need = (n: number) => {
    if (i + n > bytes.byteLength) throw new Error('truncated MessagePack value');
  };
  const u16 = () => (bytes[i + 1]! << 8) | bytes[i + 2]!;
  const u32 = () => ((bytes[i + 1]! << 24) >>> 0) + (bytes[i + 2]! << 16) + (bytes[i + 3]! << 8) + bytes[i + 4]!;
  while (pending > 0) {
    need(1);
    const b = bytes[i]!;
    pending -= 1;
    if (b < 0x80 || b >= 0xe0) i += 1; // positive / negative fixint
    else if (b < 0x90) {
      pending += 2 * (b & 0x0f);
      i += 1;
    } else if (b < 0xa0) {
      pending += b & 0x0f;
      i += 1;
    } else if (b < 0xc0) i += 1 + (b & 0x1f); // fixstr
    else
      switch (b) {
        case 0xc0: case 0xc2: case 0xc3: i += 1; break; // nil, false, true
        case 0xc4: case 0xd9: need(2); i += 2 + bytes[i + 1]!; break; // bin8, str8
        case 0xc5: case 0xda: need(3); i += 3 + u16(); break; // bin16, str16
        case 0xc6: case 0xdb: need(5); i += 5 + u32(); break; // bin32, str32
        case 0xc7: need(2); i += 3 + bytes[i + 1]!; break; // ext8
        case 0xc8: need(3); i += 4 + u16(); break; // ext16
        case 0xc9: need(5); i += 6 + u32(); break; // ext32
        case 0xca: case 0xce: case 0xd2: i += 5; break; // float32, uint32, int32
        case 0xcb: case 0xcf: case 0xd3: i += 9; break; // float64, uint64, int64
        case 0xcc: case 0xd0: i += 2; break; // uint8, int8
        case 0xcd: case 0xd1: i += 3; break; // uint16, int16
        case 0xd4: i += 3; break; // fixext1
        case 0xd5: i += 4; break; // fixext2
        case 0xd6: i += 6; break; // fixext4
        case 0xd7: i += 10; break; // fixext8
        case 0xd8: i += 18; break; // fixext16
        case 0xdc: need(3); pending += u16(); i += 3; break; // array16
        case 0xdd: need(5); pending += u32(); i += 5; break; // array32
        case 0xde: need(3); pending += 2 * u16(); i += 3; break; // map16
        case 0xdf: need(5); pending += 2 * u32(); i += 5; break; // map32
        default: throw new Error(`invalid MessagePack byte 0x${b.toString(16)}`);
      }
  }
  if (i > bytes.byteLength) throw new Error('truncated MessagePack value');
  return i;
}

/** The header of the map or array at `at`: its size and where its first element starts. */
export function containerAt(bytes: Uint8Array, at: number, kind: 'map' | 'array'): { size: number; body: number } {
  const b = bytes[at];
  if (b === undefined) throw new Error('truncated MessagePack value');
  const [fixLo, wide16] = kind === 'map' ? [0x80, 0xde] : [0x90, 0xdc];
  if (b >= fixLo && b < fixLo + 16) return { size: b & 0x0f, body: at + 1 };
  if (b === wide16 && at + 3 <= bytes.byteLength) return { size: (bytes[at + 1]! << 8) | bytes[at + 2]!, body: at + 3 };
  if (b === wide16 + 1 && at + 5 <= bytes.byteLength)
    return { size: new DataView(bytes.buffer, bytes.byteOffset + at + 1, 4).getUint32(0), body: at + 5 };
  throw new Error(`expected a MessagePack ${kind}`);
}

/** The fields of the map at `at`, in order (each key's bytes, where its value starts and ends), and where the map ends. */
export function mapFields(bytes: Uint8Array, at: number): { fields: { key: Uint8Array; value: number; end: number }[]; end: number } {
  const { size, body } = containerAt(bytes, at, 'map');
  const fields: { key: Uint8Array; value: number; end: number }[] = [];
  let i = body;
  for (let f = 0; f < size; f++) {
    const value = valueEnd(bytes, i);
    const end = valueEnd(bytes, value);
    fields.push({ key: bytes.subarray(i, value), value, end });
    i = end;
  }
  return { fields, end: i };
}

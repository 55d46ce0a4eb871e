// The stored form of every backup object (snapshot or log segment):
//
//   "TNDBAK01" | u32 header length | header (JSON) | chunk* | SHA-256 of everything before (32 bytes)
//   chunk = u32 payload length | u8 last-chunk flag | payload
//
// Each chunk holds up to 1 MiB of the object's plaintext, compressed (raw deflate); encrypted, the
// payload is AES-256-GCM of that under the object's own data key (wrapped in the header), nonce =
// the chunk counter, AAD = SHA-256(header) ‖ u32 chunk index ‖ u8 last flag, tag appended. So a
// reader checks the trailer first (a flipped bit or a cut names the object before any decryption),
// and no plaintext of a chunk is used before its tag verifies; a dropped or reordered chunk, or a
// cut at a chunk boundary, fails the AAD.
//
// Encoding runs on a worker thread (encodeOnWorker): compression and encryption stay off the main
// thread and off the libuv pool that runs the store's fdatasyncs. The encoder is one self-contained
// function so the worker runs it from its source text (the same under the test runner and dist/).
import { createDecipheriv, createHash } from 'node:crypto';
import { closeSync, openSync, readSync, fstatSync, writeSync } from 'node:fs';
import { createRequire } from 'node:module';
import { Worker } from 'node:worker_threads';
import { inflateRawSync } from 'node:zlib';
import type { VersionVector } from '../core/vector.js';
import type { StoreBoundary } from '../store/types.js';
import { BackupError } from './errors.js';
import { unwrapDataKey, type Keyring, type WrappedKey } from './keyring.js';

export const objectMagic = 'TNDBAK01';
export const chunkBytesDefault = 1 << 20;

/** A restore point as shipped: the store's boundary and the wall time it was read. */
export interface ShippedBoundary extends StoreBoundary {
  atMs: number;
}

export interface ObjectHeader {
  format: 1;
  kind: 'snap' | 'seg';
  cluster: string;
  site: string;
  incarnation: number;
  /** the object's number in its incarnation's sequence of its kind */
  n: number;
  compression: 'deflate-raw';
  chunkBytes: number;
  encryption?: { alg: 'AES-256-GCM' } & WrappedKey;
  /** seg: SHA-256 (hex) of the stored bytes of segment n − 1 of this incarnation ('' for the first) */
  prevSha256?: string;
  /** seg: this site's own origin's seqs before and after it (no gaps within) */
  start?: VersionVector;
  end?: VersionVector;
  /** seg: the restore point read when it was cut (its own-origin seq is `end`'s) */
  boundary?: ShippedBoundary;
  /** seg: commit clocks of its first and last entry (hex), when it has any */
  firstClock?: string;
  lastClock?: string;
  /** seg: the entries before `start` that compaction dropped before they were archived */
  gap?: { from: number; to: number };
  /** snap: what the snapshot holds */
  snapshot?: { vector: VersionVector; gcFloor: VersionVector; maxHlc: string; items: number; atMs: number; backend: string };
}

export interface EncodeRequest {
  header: ObjectHeader;
  /** plaintext: a file to read, or bytes */
  inPath?: string;
  inBytes?: Uint8Array;
  outPath: string;
  /** the object's data key (raw), when encrypted */
  dataKey?: Uint8Array;
  level: number;
}

export interface EncodeResult {
  sha256: string;
  bytes: number;
  plainBytes: number;
}

/** Self-contained (run from its source on a worker): writes the stored object to req.outPath. */
function encodeObject(req: EncodeRequest, requireFn: (id: string) => unknown): EncodeResult {
  const crypto = requireFn('node:crypto') as typeof import('node:crypto');
  const fs = requireFn('node:fs') as typeof import('node:fs');
  const zlib = requireFn('node:zlib') as typeof import('node:zlib');
  const headerBytes = Buffer.from(JSON.stringify(req.header));
  const headerHash = crypto.createHash('sha256').update(headerBytes).digest();
  const total = crypto.createHash('sha256');
  const whole = crypto.createHash('sha256');
  const out = fs.openSync(req.outPath, 'w');
  let written = 0;
  const write = (b: Buffer) => {
    total.update(b);
    whole.update(b);
    let at = 0;
    while (at < b.length) at += fs.writeSync(out, b, at, b.length - at);
    written += b.length;
  };
  const u32 = (n: number) => {
    const b = Buffer.alloc(4);
    b.writeUInt32BE(n);
    return b;
  };
  try {
    write(Buffer.from('TNDBAK01'));
    write(u32(headerBytes.length));
    write(headerBytes);
    const chunkBytes = req.header.chunkBytes;
    const input = req.inPath !== undefined ? fs.openSync(req.inPath, 'r') : undefined;
    const inputBytes = input !== undefined ? fs.fstatSync(input).size : req.inBytes!.byteLength;
    const block = Buffer.alloc(chunkBytes);
    let plainBytes = 0;
    let index = 0;
    do {
      let plain: Buffer;
      if (input !== undefined) {
        let got = 0;
        while (got < chunkBytes && plainBytes + got < inputBytes) {
          const n = fs.readSync(input, block, got, chunkBytes - got, plainBytes + got);
          if (n === 0) break;
          got += n;
        }
        plain = block.subarray(0, got);
      } else {
        const src = req.inBytes!;
        plain = Buffer.from(src.buffer, src.byteOffset + plainBytes, Math.min(chunkBytes, inputBytes - plainBytes));
      }
      plainBytes += plain.length;
      const last = plainBytes >= inputBytes;
      let payload: Buffer = zlib.deflateRawSync(plain, { level: req.level });
      if (req.dataKey !== undefined) {
        const nonce = Buffer.alloc(12);
        nonce.writeUInt32BE(index, 8);
        const aad = Buffer.concat([headerHash, u32(index), Buffer.from([last ? 1 : 0])]);
        const cipher = crypto.createCipheriv('aes-256-gcm', req.dataKey, nonce);
        cipher.setAAD(aad);
        payload = Buffer.concat([cipher.update(payload), cipher.final(), cipher.getAuthTag()]);
      }
      write(u32(payload.length));
      write(Buffer.from([last ? 1 : 0]));
      write(payload);
      index++;
      if (last) break;
    } while (index > 0);
    if (input !== undefined) fs.closeSync(input);
    const sha = total.digest();
    whole.update(sha);
    let at = 0;
    while (at < sha.length) at += fs.writeSync(out, sha, at, sha.length - at);
    written += sha.length;
    fs.fsyncSync(out);
    return { sha256: whole.digest('hex'), bytes: written, plainBytes };
  } finally {
    fs.closeSync(out);
  }
}

const localRequire = createRequire(import.meta.url);

/** Encodes on the calling thread (tests of the format; small objects in tools). */
export function encodeHere(req: EncodeRequest): EncodeResult {
  return encodeObject(req, localRequire);
}

const workerSource = `
const { parentPort } = require('node:worker_threads');
const encodeObject = (${encodeObject.toString()});
parentPort.on('message', (msg) => {
  try { parentPort.postMessage({ id: msg.id, result: encodeObject(msg.req, require) }); }
  catch (e) { parentPort.postMessage({ id: msg.id, error: String(e && e.stack || e) }); }
});`;

/** One worker thread that encodes objects, one at a time, in order. */
export class ObjectEncoder {
  private worker: Worker | undefined;
  private nextId = 0;
  private pending = new Map<number, { resolve: (r: EncodeResult) => void; reject: (e: Error) => void }>();

  encode(req: EncodeRequest): Promise<EncodeResult> {
    if (this.worker === undefined) {
      const worker = new Worker(workerSource, { eval: true });
      worker.on('message', (msg: { id: number; result?: EncodeResult; error?: string }) => {
        const p = this.pending.get(msg.id);
        this.pending.delete(msg.id);
        if (msg.error !== undefined) p?.reject(new Error(`encoding a backup object failed: ${msg.error}`));
        else p?.resolve(msg.result!);
      });
      worker.on('error', (e: unknown) => this.failAll(e instanceof Error ? e : new Error(String(e))));
      worker.on('exit', () => {
        this.worker = undefined;
        this.failAll(new Error('backup encoder worker exited'));
      });
      this.worker = worker;
    }
    const id = this.nextId++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { resolve, reject });
      this.worker!.postMessage({ id, req });
    });
  }

  private failAll(e: Error): void {
    for (const p of this.pending.values()) p.reject(e);
    this.pending.clear();
  }

  async close(): Promise<void> {
    const w = this.worker;
    this.worker = undefined;
    if (w) await w.terminate();
  }
}

function corrupt(name: string, why: string): BackupError {
  return new BackupError('corrupt-object', `${name}: ${why}`, name);
}

/** Reads the header of a stored object from its first bytes (no checksum: for listings). */
export function parseHeader(name: string, head: Uint8Array): ObjectHeader {
  const b = Buffer.from(head.buffer, head.byteOffset, head.byteLength);
  if (b.length < 12 || b.subarray(0, 8).toString() !== objectMagic) throw corrupt(name, 'not a Tandem backup object (bad magic)');
  const len = b.readUInt32BE(8);
  if (b.length < 12 + len) throw corrupt(name, 'header cut short');
  try {
    return JSON.parse(b.subarray(12, 12 + len).toString()) as ObjectHeader;
  } catch {
    throw corrupt(name, 'header is not valid JSON');
  }
}

/** Source of a stored object's bytes: random access, so a large snapshot need not sit in memory. */
interface StoredSource {
  size: number;
  read(at: number, length: number): Buffer;
}

function bytesSource(b: Uint8Array): StoredSource {
  const buf = Buffer.from(b.buffer, b.byteOffset, b.byteLength);
  return { size: buf.length, read: (at, length) => buf.subarray(at, at + length) };
}

function fileSource(fd: number): StoredSource {
  return {
    size: fstatSync(fd).size,
    read(at, length) {
      const out = Buffer.alloc(length);
      let got = 0;
      while (got < length) {
        const n = readSync(fd, out, got, length - got, at + got);
        if (n === 0) break;
        got += n;
      }
      return out.subarray(0, got);
    },
  };
}

/** SHA-256 (hex) of a stored object's bytes, and whether its trailer matches them. */
function checkTrailer(name: string, src: StoredSource): string {
  if (src.size < 12 + 32) throw corrupt(name, `only ${src.size} bytes: cut short`);
  const h = createHash('sha256');
  const whole = createHash('sha256');
  const step = 4 << 20;
  for (let at = 0; at < src.size - 32; at += step) {
    const part = src.read(at, Math.min(step, src.size - 32 - at));
    h.update(part);
    whole.update(part);
  }
  const trailer = src.read(src.size - 32, 32);
  whole.update(trailer);
  if (!h.digest().equals(trailer)) throw corrupt(name, 'checksum mismatch (SHA-256 of its bytes): corrupt or cut short');
  return whole.digest('hex');
}

/**
 * Decodes a stored object, checking its checksum first and each chunk's tag before using it;
 * `sink` receives the plaintext chunk by chunk. Returns the header and the stored bytes' SHA-256.
 */
function decodeFrom(name: string, src: StoredSource, ring: Keyring | undefined, sink: (plain: Buffer) => void, expectSha256?: string): { header: ObjectHeader; sha256: string } {
  const sha256 = checkTrailer(name, src);
  if (expectSha256 !== undefined && expectSha256 !== sha256) throw corrupt(name, `SHA-256 ${sha256} is not the ${expectSha256} its successor or the manifest recorded`);
  const first = src.read(0, 12);
  const headerLen = first.readUInt32BE(8);
  const headerBytes = src.read(12, headerLen);
  const header = parseHeader(name, Buffer.concat([first, headerBytes]));
  const headerHash = createHash('sha256').update(headerBytes).digest();
  const key = header.encryption !== undefined ? unwrapDataKey(ring, header.encryption, name) : undefined;
  let at = 12 + headerLen;
  const end = src.size - 32;
  let index = 0;
  let sawLast = false;
  while (at < end) {
    if (sawLast) throw corrupt(name, `data after its last chunk`);
    const ch = src.read(at, 5);
    if (ch.length < 5) throw corrupt(name, `chunk ${index} cut short`);
    const len = ch.readUInt32BE(0);
    const last = ch[4] === 1;
    const payload = src.read(at + 5, len);
    if (payload.length < len) throw corrupt(name, `chunk ${index} cut short`);
    let compressed: Buffer = payload;
    if (key !== undefined) {
      if (len < 16) throw corrupt(name, `chunk ${index} too short for its tag`);
      const nonce = Buffer.alloc(12);
      nonce.writeUInt32BE(index, 8);
      const idx = Buffer.alloc(4);
      idx.writeUInt32BE(index);
      const decipher = createDecipheriv('aes-256-gcm', key, nonce);
      decipher.setAAD(Buffer.concat([headerHash, idx, Buffer.from([last ? 1 : 0])]));
      decipher.setAuthTag(payload.subarray(len - 16));
      try {
        compressed = Buffer.concat([decipher.update(payload.subarray(0, len - 16)), decipher.final()]);
      } catch {
        throw corrupt(name, `chunk ${index} fails its authentication tag`);
      }
    }
    let plain: Buffer;
    try {
      plain = inflateRawSync(compressed);
    } catch {
      throw corrupt(name, `chunk ${index} does not decompress`);
    }
    sink(plain);
    sawLast = last;
    at += 5 + len;
    index++;
  }
  if (!sawLast) throw corrupt(name, 'its last chunk is missing: cut short');
  return { header, sha256 };
}

export function decodeBytes(name: string, stored: Uint8Array, ring: Keyring | undefined, expectSha256?: string): { header: ObjectHeader; body: Buffer; sha256: string } {
  const parts: Buffer[] = [];
  const { header, sha256 } = decodeFrom(name, bytesSource(stored), ring, (p) => parts.push(p), expectSha256);
  return { header, body: Buffer.concat(parts), sha256 };
}

/** Decodes a stored object held in a file into `outPath`, streaming. */
export function decodeFile(name: string, storedPath: string, outPath: string, ring: Keyring | undefined, expectSha256?: string): { header: ObjectHeader; sha256: string } {
  const inFd = openSync(storedPath, 'r');
  const outFd = openSync(outPath, 'w');
  try {
    return decodeFrom(
      name,
      fileSource(inFd),
      ring,
      (plain) => {
        let at = 0;
        while (at < plain.length) at += writeSync(outFd, plain, at, plain.length - at);
      },
      expectSha256,
    );
  } finally {
    closeSync(inFd);
    closeSync(outFd);
  }
}

/** Checks a stored object's checksum only (what `backup verify` does for every object). */
export function checksumOf(name: string, stored: Uint8Array): string {
  return checkTrailer(name, bytesSource(stored));
}

export function checksumOfFile(name: string, path: string): string {
  const fd = openSync(path, 'r');
  try {
    return checkTrailer(name, fileSource(fd));
  } finally {
    closeSync(fd);
  }
}

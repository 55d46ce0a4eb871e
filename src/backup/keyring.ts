// The backup encryption keys (config `backup.encryptionKeyFile`): a JSON file
//   { "current": "k2", "keys": { "k1": "<base64, 32 bytes>", "k2": "<base64, 32 bytes>" } }
// New objects get a random data key wrapped (AES-256-GCM) by the current key, named by its id;
// rotation adds a key and moves `current`; old keys stay until the objects they wrapped expire.
import { createCipheriv, createDecipheriv, randomBytes } from 'node:crypto';
import { readFileSync } from 'node:fs';
import { BackupError } from './errors.js';

export interface Keyring {
  currentId: string;
  keys: Map<string, Buffer>;
}

export interface WrappedKey {
  keyId: string;
  /** base64 of iv (12) ‖ ciphertext (32) ‖ tag (16) */
  wrapped: string;
}

export function loadKeyring(path: string): Keyring {
  let parsed: unknown;
  try {
    parsed = JSON.parse(readFileSync(path, 'utf8'));
  } catch (e) {
    throw new BackupError('bad-key-file', `backup.encryptionKeyFile ${path}: ${(e as Error).message}`);
  }
  const p = parsed as { current?: unknown; keys?: unknown };
  if (typeof p.current !== 'string' || p.keys === null || typeof p.keys !== 'object')
    throw new BackupError('bad-key-file', `backup.encryptionKeyFile ${path}: expected { "current": "<key id>", "keys": { "<key id>": "<base64 of 32 bytes>" } }`);
  const keys = new Map<string, Buffer>();
  for (const [id, b64] of Object.entries(p.keys as Record<string, unknown>)) {
    const key = typeof b64 === 'string' ? Buffer.from(b64, 'base64') : Buffer.alloc(0);
    if (key.length !== 32) throw new BackupError('bad-key-file', `backup.encryptionKeyFile ${path}: keys.${id} is not base64 of 32 bytes`);
    keys.set(id, key);
  }
  if (!keys.has(p.current)) throw new BackupError('bad-key-file', `backup.encryptionKeyFile ${path}: current key ${p.current} is not in keys`);
  return { currentId: p.current, keys };
}

/** A fresh data key for one object, and its wrapped form for the object's header. */
export function newDataKey(ring: Keyring): { key: Buffer; wrapped: WrappedKey } {
  const key = randomBytes(32);
  const iv = randomBytes(12);
  const cipher = createCipheriv('aes-256-gcm', ring.keys.get(ring.currentId)!, iv);
  cipher.setAAD(Buffer.from(`tandem-backup-key:${ring.currentId}`));
  const ct = Buffer.concat([cipher.update(key), cipher.final()]);
  return { key, wrapped: { keyId: ring.currentId, wrapped: Buffer.concat([iv, ct, cipher.getAuthTag()]).toString('base64') } };
}

export function unwrapDataKey(ring: Keyring | undefined, wrapped: WrappedKey, objectName: string): Buffer {
  const master = ring?.keys.get(wrapped.keyId);
  if (master === undefined)
    throw new BackupError('missing-key', `${objectName}: encrypted with key ${wrapped.keyId}, which ${ring === undefined ? 'no key file was given for' : 'the key file does not hold'}`);
  const raw = Buffer.from(wrapped.wrapped, 'base64');
  const decipher = createDecipheriv('aes-256-gcm', master, raw.subarray(0, 12));
  decipher.setAAD(Buffer.from(`tandem-backup-key:${wrapped.keyId}`));
  decipher.setAuthTag(raw.subarray(raw.length - 16));
  try {
    return Buffer.concat([decipher.update(raw.subarray(12, raw.length - 16)), decipher.final()]);
  } catch {
    throw new BackupError('corrupt-object', `${objectName}: its data key does not unwrap with key ${wrapped.keyId}`);
  }
}

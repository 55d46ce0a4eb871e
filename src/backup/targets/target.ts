// Where backup objects go: a directory (file://) or any S3-compatible store (s3://). Objects are
// immutable once put, except the manifest, a cache rebuildable from a listing. A target checks
// nothing itself: every object carries its own SHA-256 (object-format.ts), never an ETag.
import { BackupError } from '../errors.js';
import { FileTarget } from './file-target.js';
import { S3Target } from './s3-target.js';

export interface StoredObject {
  name: string;
  size: number;
}

export interface BackupTarget {
  /** where it points, for messages */
  readonly url: string;
  /** Stores an object from a local file, whole or not at all. */
  put(name: string, fromPath: string): Promise<void>;
  putBytes(name: string, bytes: Uint8Array): Promise<void>;
  /** Throws BackupError 'missing-object' when there is none. */
  get(name: string): Promise<Buffer>;
  getToFile(name: string, path: string): Promise<void>;
  /** The first `bytes` bytes (or fewer, if the object is shorter). */
  getHead(name: string, bytes: number): Promise<Buffer>;
  /** Objects whose names start with `prefix`, in name order. */
  list(prefix: string): Promise<StoredObject[]>;
  delete(name: string): Promise<void>;
  close?(): Promise<void>;
}

/** A target from its config URL: file:///dir or s3://bucket/prefix[?endpoint=…&region=…&forcePathStyle=true]. */
export function openTarget(url: string): BackupTarget {
  if (url.startsWith('file://')) return new FileTarget(url);
  if (url.startsWith('s3://')) return new S3Target(url);
  throw new BackupError('bad-input', `backup.target: expected file:///path or s3://bucket/prefix, got ${url}`);
}

export function missing(url: string, name: string): BackupError {
  return new BackupError('missing-object', `${name}: missing from ${url}`, name);
}

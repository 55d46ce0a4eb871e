// Any S3-compatible store as a backup target, through the AWS SDK. Integrity is ours (each object
// carries its SHA-256), so the SDK's own checksums are asked only where an API requires them
// (WHEN_REQUIRED: many S3-compatible servers lack the newer checksum headers) and ETags are never
// trusted. Large objects go up in parts; a failed multipart upload is aborted, so no orphan parts
// are left behind (and billed).
//   s3://bucket/prefix?endpoint=http://127.0.0.1:9000&region=us-east-1&forcePathStyle=true
// Credentials come from the SDK's usual chain (AWS_ACCESS_KEY_ID, profiles, instance roles).
import { createWriteStream, statSync } from 'node:fs';
import { open, readFile } from 'node:fs/promises';
import { pipeline } from 'node:stream/promises';
import type { Readable } from 'node:stream';
import {
  AbortMultipartUploadCommand,
  CompleteMultipartUploadCommand,
  CreateMultipartUploadCommand,
  DeleteObjectCommand,
  GetObjectCommand,
  ListObjectsV2Command,
  PutObjectCommand,
  S3Client,
  UploadPartCommand,
} from '@aws-sdk/client-s3';
import { BackupError } from '../errors.js';
import { missing, type BackupTarget, type StoredObject } from './target.js';

/** Objects up to this size go up in one PUT; larger ones in parts of this size. */
const partBytesDefault = 16 << 20;
/** S3 refuses a part under 5 MiB (but the last) and over 5 GiB. */
const partBytesMin = 5 << 20;
const partBytesMax = 5 * 1024 ** 3;

export interface S3TargetOptions {
  /** the multipart threshold and part size (default 16 MiB; S3 allows 5 MiB to 5 GiB) */
  partBytes?: number;
}

export class S3Target implements BackupTarget {
  private readonly client: S3Client;
  private readonly bucket: string;
  private readonly prefix: string;
  private readonly partBytes: number;

  constructor(
    readonly url: string,
    options: S3TargetOptions = {},
  ) {
    this.partBytes = options.partBytes ?? partBytesDefault;
    if (!Number.isSafeInteger(this.partBytes) || this.partBytes < partBytesMin || this.partBytes > partBytesMax)
      throw new BackupError('bad-input', `S3 part size: expected ${partBytesMin} to ${partBytesMax} bytes, got ${options.partBytes}`);
    let u: URL;
    try {
      u = new URL(url);
    } catch {
      throw new BackupError('bad-input', `backup.target: not a URL: ${url}`);
    }
    if (u.hostname === '') throw new BackupError('bad-input', `backup.target: ${url} names no bucket`);
    this.bucket = u.hostname;
    const p = decodeURIComponent(u.pathname).replace(/^\/+|\/+$/g, '');
    this.prefix = p === '' ? '' : `${p}/`;
    const endpoint = u.searchParams.get('endpoint') ?? process.env['TANDEM_S3_ENDPOINT'];
    this.client = new S3Client({
      region: u.searchParams.get('region') ?? process.env['AWS_REGION'] ?? 'us-east-1',
      ...(endpoint ? { endpoint } : {}),
      forcePathStyle: u.searchParams.get('forcePathStyle') === 'true' || endpoint !== undefined,
      requestChecksumCalculation: 'WHEN_REQUIRED',
      responseChecksumValidation: 'WHEN_REQUIRED',
      maxAttempts: 3,
    });
  }

  private key(name: string): string {
    return `${this.prefix}${name}`;
  }

  private failed(what: string, name: string, e: unknown, more = ''): BackupError {
    return new BackupError('target-failed', `${what} ${name} at ${this.url}: ${(e as Error).message ?? String(e)}${more}`, name);
  }

  async put(name: string, fromPath: string): Promise<void> {
    const size = statSync(fromPath).size;
    const partBytes = this.partBytes;
    if (size <= partBytes) {
      const body = await readFile(fromPath);
      try {
        await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(name), Body: body, ContentLength: body.length }));
      } catch (e) {
        throw this.failed('PUT', name, e);
      }
      return;
    }
    let uploadId: string | undefined;
    let step = 'CreateMultipartUpload';
    try {
      const created = await this.client.send(new CreateMultipartUploadCommand({ Bucket: this.bucket, Key: this.key(name) }));
      uploadId = created.UploadId!;
      const parts: { PartNumber: number; ETag: string }[] = [];
      const fh = await open(fromPath, 'r');
      try {
        for (let at = 0, n = 1; at < size; at += partBytes, n++) {
          const buf = Buffer.alloc(Math.min(partBytes, size - at));
          const { bytesRead } = await fh.read(buf, 0, buf.length, at);
          // a file that shrank under us must not go up with a zero-filled tail
          if (bytesRead !== buf.length) throw new Error(`${fromPath} shrank while it was uploaded (read ${bytesRead} of ${buf.length} bytes at ${at})`);
          step = `UploadPart ${n} of ${Math.ceil(size / partBytes)}`;
          const res = await this.client.send(new UploadPartCommand({ Bucket: this.bucket, Key: this.key(name), UploadId: uploadId, PartNumber: n, Body: buf, ContentLength: buf.length }));
          // the ETag only names the part for CompleteMultipartUpload; integrity is the object's own SHA-256
          parts.push({ PartNumber: n, ETag: res.ETag! });
        }
      } finally {
        await fh.close();
      }
      step = 'CompleteMultipartUpload';
      await this.client.send(new CompleteMultipartUploadCommand({ Bucket: this.bucket, Key: this.key(name), UploadId: uploadId, MultipartUpload: { Parts: parts } }));
    } catch (e) {
      // abort, so that no part is left behind (and billed); say so when even that failed
      let aborted = '';
      if (uploadId !== undefined)
        try {
          await this.client.send(new AbortMultipartUploadCommand({ Bucket: this.bucket, Key: this.key(name), UploadId: uploadId }));
          aborted = `; upload ${uploadId} aborted`;
        } catch (ae) {
          aborted = `; aborting upload ${uploadId} failed too (${(ae as Error).message ?? String(ae)}): its parts stay until the bucket's lifecycle rule removes incomplete uploads`;
        }
      throw this.failed(`multipart upload (${step}) of`, name, e, aborted);
    }
  }

  async putBytes(name: string, bytes: Uint8Array): Promise<void> {
    try {
      await this.client.send(new PutObjectCommand({ Bucket: this.bucket, Key: this.key(name), Body: bytes, ContentLength: bytes.byteLength }));
    } catch (e) {
      throw this.failed('PUT', name, e);
    }
  }

  private async body(name: string, range?: string): Promise<Readable> {
    try {
      const res = await this.client.send(new GetObjectCommand({ Bucket: this.bucket, Key: this.key(name), ...(range ? { Range: range } : {}) }));
      return res.Body as Readable;
    } catch (e) {
      const code = (e as { name?: string; $metadata?: { httpStatusCode?: number } }).name;
      if (code === 'NoSuchKey' || code === 'NotFound' || (e as { $metadata?: { httpStatusCode?: number } }).$metadata?.httpStatusCode === 404) throw missing(this.url, name);
      throw this.failed('GET', name, e);
    }
  }

  async get(name: string): Promise<Buffer> {
    const stream = await this.body(name);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks);
  }

  async getToFile(name: string, path: string): Promise<void> {
    await pipeline(await this.body(name), createWriteStream(path));
  }

  async getHead(name: string, bytes: number): Promise<Buffer> {
    const stream = await this.body(name, `bytes=0-${bytes - 1}`);
    const chunks: Buffer[] = [];
    for await (const c of stream) chunks.push(c as Buffer);
    return Buffer.concat(chunks).subarray(0, bytes);
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    let token: string | undefined;
    do {
      let res;
      try {
        res = await this.client.send(new ListObjectsV2Command({ Bucket: this.bucket, Prefix: this.key(prefix), ...(token ? { ContinuationToken: token } : {}) }));
      } catch (e) {
        throw this.failed('LIST', prefix, e);
      }
      for (const o of res.Contents ?? []) out.push({ name: o.Key!.slice(this.prefix.length), size: o.Size ?? 0 });
      token = res.IsTruncated ? res.NextContinuationToken : undefined;
    } while (token !== undefined);
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async delete(name: string): Promise<void> {
    try {
      await this.client.send(new DeleteObjectCommand({ Bucket: this.bucket, Key: this.key(name) }));
    } catch (e) {
      throw this.failed('DELETE', name, e);
    }
  }

  async close(): Promise<void> {
    this.client.destroy();
  }
}


// The S3 target's multipart path against real S3-compatible servers on loopback, through the AWS
// SDK, with a lowered part size: an object over it goes up in parts and reads back byte for byte;
// a part upload that fails (a proxy in front of the server answers 500 to every try of part 2) fails
// the put with an error naming the step, leaves no object visible, and aborts the upload. s3rver has
// no AbortMultipartUpload nor ListMultipartUploads (405 / NotImplemented): there the error must say
// the abort failed; moto's server (when installed) has both: there ListMultipartUploads must list
// nothing once the put failed.
import { spawn, type ChildProcess } from 'node:child_process';
import { randomBytes } from 'node:crypto';
import { accessSync, constants, readFileSync, writeFileSync } from 'node:fs';
import { delimiter, join } from 'node:path';
import { CreateBucketCommand, ListMultipartUploadsCommand, S3Client } from '@aws-sdk/client-s3';
import S3rver from 's3rver';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { freePort } from '../cluster/ports.js';
import { realTimers } from '../platform/real/real-env.js';
import { S3Target } from './targets/s3-target.js';
import { S3FaultProxy } from './testing/s3-fault-proxy.js';
import { tempDir } from './testing/backed-up-site.js';

const partBytes = 5 << 20;
const cleanups: (() => Promise<void>)[] = [];
process.env['AWS_ACCESS_KEY_ID'] = 'S3RVER';
process.env['AWS_SECRET_ACCESS_KEY'] = 'S3RVER';

afterAll(async () => {
  for (const c of cleanups.splice(0).reverse()) await c();
});

/** A file of random bytes: two whole parts and a short last one. */
function bigFile(): { path: string; bytes: Buffer } {
  const bytes = randomBytes(2 * partBytes + 123_457);
  const path = join(tempDir('s3-object'), 'object');
  writeFileSync(path, bytes);
  return { path, bytes };
}

async function through(upstream: { host: string; port: number }, bucket: string): Promise<{ proxy: S3FaultProxy; target: S3Target }> {
  const proxy = new S3FaultProxy(upstream);
  const endpoint = await proxy.start();
  const target = new S3Target(`s3://${bucket}/mp-${randomBytes(4).toString('hex')}?endpoint=${encodeURIComponent(endpoint)}`, { partBytes });
  cleanups.push(() => proxy.stop(), () => target.close());
  return { proxy, target };
}

const failPart2 = (c: { kind: string; query: URLSearchParams }) => c.kind === 'UploadPart' && c.query.get('partNumber') === '2';

describe('multipart uploads to s3rver', () => {
  let upstream: { host: string; port: number };
  beforeAll(async () => {
    const server = new S3rver({ address: '127.0.0.1', port: 0, silent: true, directory: tempDir('s3rver'), configureBuckets: [{ name: 'backups' }] });
    const addr = await server.run();
    upstream = { host: '127.0.0.1', port: addr.port };
    cleanups.push(() => server.close());
  });

  it('puts an object over the part size in parts and reads it back byte for byte', async () => {
    const { proxy, target } = await through(upstream, 'backups');
    const { path, bytes } = bigFile();
    await target.put('snap/00000000000000000001', path);
    expect(proxy.calls.map((c) => c.kind)).toEqual(['CreateMultipartUpload', 'UploadPart', 'UploadPart', 'UploadPart', 'CompleteMultipartUpload']);
    expect(proxy.calls.filter((c) => c.kind === 'UploadPart').map((c) => c.query.get('partNumber'))).toEqual(['1', '2', '3']);
    expect((await target.get('snap/00000000000000000001')).equals(bytes)).toBe(true);
    const copy = join(tempDir('s3-copy'), 'copy');
    await target.getToFile('snap/00000000000000000001', copy);
    expect(readFileSync(copy).equals(bytes)).toBe(true);
    expect(await target.list('snap/')).toEqual([{ name: 'snap/00000000000000000001', size: bytes.length }]);
    // a part size S3 would refuse is refused up front
    expect(() => new S3Target('s3://backups/x', { partBytes: 1 << 20 })).toThrow(/S3 part size: expected 5242880/);
  });

  it('a failed part fails the put naming it, leaves no object, and reports that the server refused the abort', async () => {
    const { proxy, target } = await through(upstream, 'backups');
    proxy.fail = failPart2;
    const { path } = bigFile();
    await expect(target.put('snap/00000000000000000002', path)).rejects.toThrow(
      /multipart upload \(UploadPart 2 of 3\) of snap\/00000000000000000002 at .*; aborting upload \S+ failed too .*lifecycle rule/,
    );
    // the SDK tried part 2 three times, never part 3, and sent the abort
    expect(proxy.calls.filter((c) => c.kind === 'UploadPart').map((c) => [c.query.get('partNumber'), c.failed])).toEqual([['1', false], ['2', true], ['2', true], ['2', true]]);
    expect(proxy.calls.some((c) => c.kind === 'AbortMultipartUpload')).toBe(true);
    expect(proxy.calls.some((c) => c.kind === 'CompleteMultipartUpload')).toBe(false);
    expect(await target.list('snap/')).toEqual([]);
    await expect(target.get('snap/00000000000000000002')).rejects.toThrow(/missing/);
  });
});

/** moto's S3 server, when this machine has it (a real S3 implementation with the multipart-upload listing). */
function motoServer(): string | undefined {
  for (const dir of (process.env['PATH'] ?? '').split(delimiter)) {
    try {
      accessSync(join(dir, 'moto_server'), constants.X_OK);
      return join(dir, 'moto_server');
    } catch {
      // not here
    }
  }
  return undefined;
}

const moto = motoServer();

describe.skipIf(moto === undefined)('multipart uploads to moto', () => {
  let upstream: { host: string; port: number };
  let child: ChildProcess | undefined;
  beforeAll(async () => {
    const port = await freePort();
    child = spawn(moto!, ['-H', '127.0.0.1', '-p', String(port)], { stdio: 'ignore' });
    const exited = new Promise<void>((r) => child!.once('exit', () => r()));
    cleanups.push(async () => {
      child!.kill('SIGTERM');
      await exited;
    });
    upstream = { host: '127.0.0.1', port };
    const client = new S3Client({ region: 'us-east-1', endpoint: `http://127.0.0.1:${port}`, forcePathStyle: true });
    cleanups.push(async () => client.destroy());
    for (let i = 0; ; i++) {
      try {
        await client.send(new CreateBucketCommand({ Bucket: 'backups' }));
        break;
      } catch (e) {
        if (i >= 150) throw e;
        await realTimers.sleep(100);
      }
    }
  }, 30_000);

  it('a failed part fails the put, the upload is aborted: ListMultipartUploads lists none, no object is visible', async () => {
    const { proxy, target } = await through(upstream, 'backups');
    proxy.fail = failPart2;
    const { path, bytes } = bigFile();
    await expect(target.put('snap/00000000000000000003', path)).rejects.toThrow(/multipart upload \(UploadPart 2 of 3\) of snap\/00000000000000000003 at .*; upload \S+ aborted$/);
    const client = new S3Client({ region: 'us-east-1', endpoint: `http://${upstream.host}:${upstream.port}`, forcePathStyle: true });
    try {
      const uploads = await client.send(new ListMultipartUploadsCommand({ Bucket: 'backups' }));
      expect(uploads.Uploads ?? []).toEqual([]);
    } finally {
      client.destroy();
    }
    expect(await target.list('snap/')).toEqual([]);
    // and the same object goes up whole once the server answers again
    proxy.fail = () => false;
    await target.put('snap/00000000000000000003', path);
    expect((await target.get('snap/00000000000000000003')).equals(bytes)).toBe(true);
  });
});

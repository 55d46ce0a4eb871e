// A backup target wrapper that injects faults into a real target (tests and drills): fail the next
// operations, delay them, or hand back objects truncated or with a flipped bit. What it wraps is
// real (a directory, an S3-compatible server); nothing of the client is mocked.
import { writeFileSync } from 'node:fs';
import type { Timers } from '../../platform/env.js';
import { BackupError } from '../errors.js';
import type { BackupTarget, StoredObject } from '../targets/target.js';

export type TargetOp = 'put' | 'get' | 'list' | 'delete';

export interface TargetFaults {
  /** operations of these kinds fail (each decrements; Infinity: until cleared) */
  fail?: Partial<Record<TargetOp, number>>;
  delayMs?: number;
  /** objects whose name matches come back cut to half their length */
  truncate?: RegExp;
  /** objects whose name matches come back with one bit flipped in the middle */
  bitFlip?: RegExp;
}

export class FaultyTarget implements BackupTarget {
  faults: TargetFaults = {};
  readonly calls: Record<TargetOp, number> = { put: 0, get: 0, list: 0, delete: 0 };

  constructor(
    private readonly inner: BackupTarget,
    private readonly timers: Timers,
  ) {}

  get url(): string {
    return this.inner.url;
  }

  private async gate(op: TargetOp, name: string): Promise<void> {
    this.calls[op]++;
    if (this.faults.delayMs) await this.timers.sleep(this.faults.delayMs);
    const left = this.faults.fail?.[op];
    if (left !== undefined && left > 0) {
      this.faults.fail![op] = left - 1;
      throw new BackupError('target-failed', `injected fault: ${op} ${name} failed`, name);
    }
  }

  private mangle(name: string, b: Buffer): Buffer {
    if (this.faults.truncate?.test(name)) return b.subarray(0, Math.floor(b.length / 2));
    if (this.faults.bitFlip?.test(name)) {
      const c = Buffer.from(b);
      c[Math.floor(c.length / 2)]! ^= 0x10;
      return c;
    }
    return b;
  }

  async put(name: string, fromPath: string): Promise<void> {
    await this.gate('put', name);
    await this.inner.put(name, fromPath);
  }

  async putBytes(name: string, bytes: Uint8Array): Promise<void> {
    await this.gate('put', name);
    await this.inner.putBytes(name, bytes);
  }

  async get(name: string): Promise<Buffer> {
    await this.gate('get', name);
    return this.mangle(name, await this.inner.get(name));
  }

  async getToFile(name: string, path: string): Promise<void> {
    await this.gate('get', name);
    writeFileSync(path, this.mangle(name, await this.inner.get(name)));
  }

  async getHead(name: string, bytes: number): Promise<Buffer> {
    await this.gate('get', name);
    return this.inner.getHead(name, bytes);
  }

  async list(prefix: string): Promise<StoredObject[]> {
    await this.gate('list', prefix);
    return this.inner.list(prefix);
  }

  async delete(name: string): Promise<void> {
    await this.gate('delete', name);
    await this.inner.delete(name);
  }
}

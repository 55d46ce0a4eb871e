// A directory as a backup target. An object is written to a temporary name, synced, then renamed:
// a crash leaves either the whole object or none (temporary names are ignored by list). Puts are
// asynchronous: a snapshot's copy and sync never hold up the site's event loop.
import { closeSync, copyFileSync, openSync, readdirSync, readSync, statSync } from 'node:fs';
import { copyFile, mkdir, open, readFile, rename, rm, writeFile } from 'node:fs/promises';
import { dirname, join, relative, sep } from 'node:path';
import { fileURLToPath } from 'node:url';
import { BackupError } from '../errors.js';
import { missing, type BackupTarget, type StoredObject } from './target.js';

const tempSuffix = '.partial';

export class FileTarget implements BackupTarget {
  private readonly root: string;

  constructor(readonly url: string) {
    try {
      this.root = fileURLToPath(url);
    } catch (e) {
      throw new BackupError('bad-input', `backup.target: ${url}: ${(e as Error).message}`);
    }
  }

  private path(name: string): string {
    if (name.split('/').some((p) => p === '' || p === '.' || p === '..')) throw new BackupError('bad-input', `bad object name ${name}`);
    return join(this.root, ...name.split('/'));
  }

  private async sync(path: string, flags: string): Promise<void> {
    const fh = await open(path, flags);
    try {
      await fh.sync();
    } finally {
      await fh.close();
    }
  }

  async put(name: string, fromPath: string): Promise<void> {
    const to = this.path(name);
    await mkdir(dirname(to), { recursive: true });
    const temp = `${to}${tempSuffix}`;
    await copyFile(fromPath, temp);
    await this.sync(temp, 'r+');
    await rename(temp, to);
    await this.sync(dirname(to), 'r');
  }

  async putBytes(name: string, bytes: Uint8Array): Promise<void> {
    const to = this.path(name);
    await mkdir(dirname(to), { recursive: true });
    const temp = `${to}${tempSuffix}`;
    await writeFile(temp, bytes);
    await this.sync(temp, 'r+');
    await rename(temp, to);
  }

  async get(name: string): Promise<Buffer> {
    try {
      return await readFile(this.path(name));
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw missing(this.url, name);
      throw e;
    }
  }

  async getToFile(name: string, path: string): Promise<void> {
    try {
      copyFileSync(this.path(name), path);
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw missing(this.url, name);
      throw e;
    }
  }

  async getHead(name: string, bytes: number): Promise<Buffer> {
    let fd: number;
    try {
      fd = openSync(this.path(name), 'r');
    } catch (e) {
      if ((e as NodeJS.ErrnoException).code === 'ENOENT') throw missing(this.url, name);
      throw e;
    }
    try {
      const out = Buffer.alloc(bytes);
      const n = readSync(fd, out, 0, bytes, 0);
      return out.subarray(0, n);
    } finally {
      closeSync(fd);
    }
  }

  async list(prefix: string): Promise<StoredObject[]> {
    const out: StoredObject[] = [];
    const walk = (dir: string) => {
      let entries;
      try {
        entries = readdirSync(dir, { withFileTypes: true });
      } catch (e) {
        if ((e as NodeJS.ErrnoException).code === 'ENOENT') return;
        throw e;
      }
      for (const e of entries) {
        const full = join(dir, e.name);
        if (e.isDirectory()) walk(full);
        else if (!e.name.endsWith(tempSuffix)) {
          const name = relative(this.root, full).split(sep).join('/');
          if (name.startsWith(prefix)) out.push({ name, size: statSync(full).size });
        }
      }
    };
    // walk only the deepest directory the prefix names
    const dirPart = prefix.includes('/') ? prefix.slice(0, prefix.lastIndexOf('/')) : '';
    walk(dirPart === '' ? this.root : this.path(dirPart));
    return out.sort((a, b) => (a.name < b.name ? -1 : a.name > b.name ? 1 : 0));
  }

  async delete(name: string): Promise<void> {
    await rm(this.path(name), { force: true });
  }
}

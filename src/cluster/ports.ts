// Free loopback ports for tests, drills and benches: asks the OS for an ephemeral port and
// releases it (a small race with other processes is accepted; callers retry on EADDRINUSE).
import { createServer } from 'node:net';
import { realRandom } from '../platform/real/real-env.js';

export async function freePort(): Promise<number> {
  return new Promise((resolve, reject) => {
    const srv = createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const addr = srv.address();
      srv.close(() => (typeof addr === 'object' && addr ? resolve(addr.port) : reject(new Error('no port'))));
    });
  });
}

/** A base port P such that P..P+span are all free right now. */
export async function freePortRange(span: number, attempts = 50): Promise<number> {
  for (let i = 0; i < attempts; i++) {
    const base = 20_000 + realRandom.int(30_000);
    const ok = await Promise.all(Array.from({ length: span + 1 }, (_, j) => portFree(base + j)));
    if (ok.every(Boolean)) return base;
  }
  throw new Error(`no free range of ${span + 1} ports`);
}

function portFree(port: number): Promise<boolean> {
  return new Promise((resolve) => {
    const srv = createServer();
    srv.unref();
    srv.once('error', () => resolve(false));
    srv.listen(port, '127.0.0.1', () => srv.close(() => resolve(true)));
  });
}

// The link fault proxy on real sockets, in front of an echo server: it passes bytes; a cut link and
// a dead target refuse connections (ECONNREFUSED: nothing was sent) and reset open ones; a stalled
// link holds bytes, in order, until it heals; bandwidth and latency delay without losing anything.
import { createConnection, createServer, type Server, type Socket } from 'node:net';
import { afterAll, beforeAll, describe, expect, it } from 'vitest';
import { SeededRandom } from '../platform/sim/random.js';
import { LinkProxy } from './link-proxy.js';

let echo: Server;
let proxy: LinkProxy;

beforeAll(async () => {
  echo = createServer((s) => s.pipe(s));
  await new Promise<void>((r) => echo.listen(0, '127.0.0.1', () => r()));
  const port = (echo.address() as { port: number }).port;
  proxy = new LinkProxy('a->b', '127.0.0.1', port, new SeededRandom(1));
  await proxy.start();
});
afterAll(async () => {
  await proxy.stop();
  await new Promise<void>((r) => echo.close(() => r()));
});

const connect = () =>
  new Promise<Socket>((resolve, reject) => {
    const s = createConnection({ host: '127.0.0.1', port: proxy.port });
    s.once('connect', () => resolve(s));
    s.once('error', reject);
  });

/** Sends `text` and collects what comes back until `bytes` arrived or `waitMs` passed. */
function roundTrip(s: Socket, text: string, bytes: number, waitMs: number): Promise<string> {
  return new Promise((resolve) => {
    let got = '';
    const done = () => {
      s.off('data', onData);
      resolve(got);
    };
    const onData = (c: Buffer) => {
      got += c.toString();
      if (got.length >= bytes) done();
    };
    s.on('data', onData);
    setTimeout(done, waitMs);
    if (text !== '') s.write(text);
  });
}

describe('link fault proxy', () => {
  it('passes bytes, and delays them under latency and a bandwidth limit without losing any', async () => {
    const s = await connect();
    expect(await roundTrip(s, 'hello', 5, 5000)).toBe('hello');
    proxy.setLatency(20, 10);
    proxy.setBandwidth(64 * 1024);
    const big = 'x'.repeat(100_000);
    expect((await roundTrip(s, big, big.length, 20_000)).length).toBe(big.length);
    proxy.heal();
    s.destroy();
  });

  it('a cut link refuses new connections and resets open ones until it heals', async () => {
    const open = await connect();
    const closed = new Promise<void>((r) => open.once('close', () => r()));
    open.on('error', () => {});
    proxy.block();
    await closed;
    await expect(connect()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    proxy.heal();
    const again = await connect();
    expect(await roundTrip(again, 'back', 4, 5000)).toBe('back');
    again.destroy();
  });

  it('a dead target refuses connections; a clean shutdown lets open ones finish', async () => {
    const open = await connect();
    proxy.targetDown(false);
    await expect(connect()).rejects.toMatchObject({ code: 'ECONNREFUSED' });
    expect(await roundTrip(open, 'drain', 5, 5000)).toBe('drain');
    proxy.targetUp();
    const again = await connect();
    expect(await roundTrip(again, 'up', 2, 5000)).toBe('up');
    again.destroy();
    open.destroy();
  });

  it('a stalled link holds bytes, in order, until it heals', async () => {
    const s = await connect();
    proxy.stall();
    expect(await roundTrip(s, 'one-', 1, 300)).toBe('');
    s.write('two');
    const rest = roundTrip(s, '', 7, 5000);
    proxy.heal();
    expect(await rest).toBe('one-two');
    s.destroy();
  });
});

import { describe, expect, it } from 'vitest';
import { readBody, singleChunk, type IncomingRequest, type RequestHandler, type Timers, type TransportResponse } from '../env.js';
import { SimNetworkError, SimWorld, seedsToRun, withSeed, type SimNetworkOptions } from './index.js';

const text = new TextEncoder();
const untext = new TextDecoder();

function noJitterWorld(seed: number, network: Partial<SimNetworkOptions> = {}): SimWorld {
  return new SimWorld({ seed, network: { oneWayDelayMsMean: 10, oneWayDelayMsJitter: 0, ...network } });
}

function textResponse(body: string, status = 200): TransportResponse {
  return { status, headers: { 'content-type': 'text/plain' }, body: singleChunk(text.encode(body)) };
}

/** A feed that yields `chunk-<n>` every `everyMs` until its caller goes away; counts what it yielded. */
function endlessFeed(timers: Timers, everyMs: number, served: { chunks: number; abortedBy?: unknown }): RequestHandler {
  return async (req) => {
    req.signal.addEventListener('abort', () => (served.abortedBy = req.signal.reason));
    async function* chunks() {
      for (;;) {
        yield text.encode(`chunk-${served.chunks++}`);
        await timers.sleep(everyMs, req.signal);
      }
    }
    return { status: 200, headers: {}, body: chunks() };
  };
}

/** Reads a body in the background, recording chunks and how it ended. */
function drain(body: AsyncIterable<Uint8Array>) {
  const received = { chunks: [] as string[], error: undefined as unknown, ended: false };
  void (async () => {
    try {
      for await (const chunk of body) received.chunks.push(untext.decode(chunk));
      received.ended = true;
    } catch (error) {
      received.error = error;
    }
  })();
  return received;
}

async function settled<T>(promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  return promise.then(
    (value) => ({ value }),
    (error: unknown) => ({ error }),
  );
}

function codeOf(error: unknown): string | undefined {
  return error instanceof SimNetworkError ? error.code : undefined;
}

describe('SimNetwork exchanges', () => {
  it('delivers a request and its response, each after one one-way delay of sim time', async () => {
    const world = noJitterWorld(1);
    const seen: Array<{ atMs: number; req: Omit<IncomingRequest, 'signal'> }> = [];
    world.network.listen('http://b:8080', async ({ signal: _signal, ...req }) => {
      seen.push({ atMs: world.clock.monotonicMs(), req });
      return textResponse(`hello ${untext.decode(req.body)}`, 201);
    }, 'b');
    const client = world.envFor('a').transport;
    const response = settled(client.request({ method: 'POST', url: 'http://b:8080/greet?x=1', headers: { h: 'v' }, body: text.encode('a') }));
    await world.runUntil(() => seen.length === 1, { timeoutMs: 100 });
    expect(seen[0]).toEqual({ atMs: 10, req: { method: 'POST', path: '/greet?x=1', headers: { h: 'v' }, body: text.encode('a') } });
    await world.runFor(100);
    const { value } = await response;
    expect(value?.status).toBe(201);
    expect(untext.decode(await readBody(value!.body, 1024))).toBe('hello a');
    expect(world.network.openExchangeCount).toBe(0);
    expect(world.trace().find((entry) => entry.label.includes('response end arrives'))?.atMs).toBe(20);
  });

  it('streams body chunks in order despite jitter, with flow control on an endless producer', async () => {
    for (const seed of seedsToRun([1, 2, 3])) {
      await withSeed(seed, async () => {
        const world = new SimWorld({ seed, network: { oneWayDelayMsMean: 10, oneWayDelayMsJitter: 9, streamWindowChunks: 4 } });
        const producedCount = { value: 0 };
        world.network.listen('http://b', async () => {
          async function* fastest() {
            for (;;) yield text.encode(String(producedCount.value++));
          }
          return { status: 200, headers: {}, body: fastest() };
        }, 'b');
        const { value: response } = await settledAfter(world, world.envFor('a').transport.request({ method: 'GET', url: 'http://b/feed', headers: {} }));
        const received: string[] = [];
        const reading = (async () => {
          for await (const chunk of response!.body) {
            received.push(untext.decode(chunk));
            if (received.length === 50) break;
          }
        })();
        await settledAfter(world, reading);
        expect(received).toEqual(Array.from({ length: 50 }, (_, i) => String(i)));
        await world.runFor(1_000);
        expect(producedCount.value).toBeLessThanOrEqual(50 + 4 + 1);
        expect(world.network.openExchangeCount).toBe(0);
      });
    }
  });

  it('refuses a connection to an address nobody listens on, after a round trip', async () => {
    const world = noJitterWorld(1);
    const outcome = settled(world.envFor('a').transport.request({ method: 'GET', url: 'http://nowhere/', headers: {} }));
    await world.runFor(100);
    expect(codeOf((await outcome).error)).toBe('ECONNREFUSED');
    expect(world.trace().at(-1)?.atMs).toBe(20);
  });

  it('answers 500 when a handler throws', async () => {
    const world = noJitterWorld(1);
    world.network.listen('http://b', async () => {
      throw new Error('bug');
    }, 'b');
    const response = settled(world.envFor('a').transport.request({ method: 'GET', url: 'http://b/', headers: {} }));
    await world.runFor(100);
    expect((await response).value?.status).toBe(500);
  });

  it('cancels both sides when the request signal aborts, while handling or while streaming', async () => {
    const world = noJitterWorld(1);
    const serverSaw: unknown[] = [];
    world.network.listen('http://b', async (req) => {
      await world.timers.sleep(1_000, req.signal).catch((error: unknown) => serverSaw.push(error));
      return textResponse('late');
    }, 'b');
    const client = world.envFor('a').transport;
    const controller = new AbortController();
    const outcome = settled(client.request({ method: 'GET', url: 'http://b/', headers: {}, signal: controller.signal }));
    world.timers.after(50, () => controller.abort(new Error('caller gave up')));
    await world.runFor(100);
    expect(String((await outcome).error)).toBe('Error: caller gave up');
    expect(String(serverSaw[0])).toBe('Error: caller gave up');

    const served = { chunks: 0 } as { chunks: number; abortedBy?: unknown };
    world.network.listen('http://feed', endlessFeed(world.timers, 5, served), 'feed');
    const streamController = new AbortController();
    const { value: stream } = await settledAfter(world, client.request({ method: 'GET', url: 'http://feed/', headers: {}, signal: streamController.signal }));
    const received = drain(stream!.body);
    await world.runFor(30);
    streamController.abort(new Error('enough'));
    await world.runFor(30);
    expect(received.chunks.length).toBeGreaterThan(2);
    expect(String(received.error)).toBe('Error: enough');
    expect(String(served.abortedBy)).toBe('Error: enough');
    expect(world.network.openExchangeCount).toBe(0);
  });

  it('aborts the server when the caller stops reading early', async () => {
    const world = noJitterWorld(1);
    const served = { chunks: 0 } as { chunks: number; abortedBy?: unknown };
    world.network.listen('http://b', endlessFeed(world.timers, 5, served), 'b');
    const { value: response } = await settledAfter(world, world.envFor('a').transport.request({ method: 'GET', url: 'http://b/', headers: {} }));
    const reading = (async () => {
      for await (const chunk of response!.body) if (untext.decode(chunk) === 'chunk-3') break;
    })();
    await world.runFor(100);
    await reading;
    expect(codeOf(served.abortedBy)).toBe('ECONNRESET');
    expect(world.network.openExchangeCount).toBe(0);
  });
});

describe('SimNetwork faults', () => {
  it('an isolated site breaks long-lived streams, refuses new connections after a timeout, and heals', async () => {
    const world = noJitterWorld(1, { connectTimeoutMs: 300 });
    const served = { chunks: 0 } as { chunks: number; abortedBy?: unknown };
    world.network.listen('http://eu-west', endlessFeed(world.timers, 10, served), 'eu-west/node');
    const client = world.envFor('us-east/node').transport;
    const { value: stream } = await settledAfter(world, client.request({ method: 'GET', url: 'http://eu-west/feed', headers: {} }));
    const received = drain(stream!.body);
    await world.runFor(100);
    expect(received.chunks.length).toBeGreaterThan(5);

    world.network.partition({ kind: 'isolate-site', site: 'eu-west' });
    await world.runFor(1);
    expect(codeOf(received.error)).toBe('ECONNRESET');
    expect(codeOf(served.abortedBy)).toBe('ECONNRESET');

    const startMs = world.clock.monotonicMs();
    const refused = settled(client.request({ method: 'GET', url: 'http://eu-west/feed', headers: {} }));
    await world.runFor(1_000);
    expect(codeOf((await refused).error)).toBe('UND_ERR_CONNECT_TIMEOUT');
    expect(world.trace().find((entry) => entry.label.includes('connect timeout'))?.atMs).toBe(startMs + 300);

    world.network.heal();
    const healed = await settledAfter(world, client.request({ method: 'GET', url: 'http://eu-west/feed', headers: {} }));
    expect(healed.value?.status).toBe(200);
    const afterHeal = drain(healed.value!.body);
    await world.runFor(50);
    expect(afterHeal.chunks.length).toBeGreaterThan(2);
  });

  it('a split cuts sites in different groups and leaves the rest connected', async () => {
    const world = noJitterWorld(1);
    world.network.partition({ kind: 'split', groups: [['a', 'b'], ['c']] });
    expect(world.network.isCut('a', 'b')).toBe(false);
    expect(world.network.isCut('a/app', 'c/node')).toBe(true);
    expect(world.network.isCut('c', 'b')).toBe(true);
    expect(world.network.isCut('router', 'c')).toBe(false);
    expect(() => world.network.partition({ kind: 'split', groups: [['a'], ['a']] })).toThrow();
  });

  it('a one-way cut stops connections from one site while the other direction keeps working', async () => {
    const world = noJitterWorld(1, { connectTimeoutMs: 200 });
    world.network.listen('http://a', async () => textResponse('from a'), 'a');
    world.network.listen('http://b', async () => textResponse('from b'), 'b');
    world.network.cutLink('a', 'b');
    const aToB = settled(world.envFor('a').transport.request({ method: 'GET', url: 'http://b/', headers: {} }));
    const bToA = settled(world.envFor('b').transport.request({ method: 'GET', url: 'http://a/', headers: {} }));
    await world.runFor(500);
    expect(codeOf((await aToB).error)).toBe('UND_ERR_CONNECT_TIMEOUT');
    expect(untext.decode(await readBody((await bToA).value!.body, 100))).toBe('from a');
    world.network.heal();
    const again = await settledAfter(world, world.envFor('a').transport.request({ method: 'GET', url: 'http://b/', headers: {} }));
    expect(again.value?.status).toBe(200);
  });

  it('delivers a duplicated request twice to the handler; the caller sees one response', async () => {
    const world = noJitterWorld(1, { duplicateProbability: 1 });
    const deliveries: string[] = [];
    world.network.listen('http://b', async (req) => {
      deliveries.push(untext.decode(req.body));
      return textResponse(`ack ${deliveries.length}`);
    }, 'b');
    const response = await settledAfter(world, world.envFor('a').transport.request({ method: 'PUT', url: 'http://b/k', headers: {}, body: text.encode('v1') }));
    const body = await settledAfter(world, readBody(response.value!.body, 100));
    expect(untext.decode(body.value)).toBe('ack 1');
    await world.runFor(100);
    expect(deliveries).toEqual(['v1', 'v1']);
    expect(world.network.openExchangeCount).toBe(0);
  });

  it('a dropped request never reaches the handler; a dropped chunk resets the stream on both sides', async () => {
    const world = noJitterWorld(1, { dropProbability: 1 });
    let handled = 0;
    world.network.listen('http://b', async () => {
      handled++;
      return textResponse('x');
    }, 'b');
    const client = world.envFor('a').transport;
    const lost = settled(client.request({ method: 'GET', url: 'http://b/', headers: {} }));
    await world.runFor(100);
    expect(codeOf((await lost).error)).toBe('ECONNRESET');
    expect(handled).toBe(0);

    world.network.configure({ dropProbability: 0 });
    const served = { chunks: 0 } as { chunks: number; abortedBy?: unknown };
    world.network.listen('http://feed', endlessFeed(world.timers, 10, served), 'feed');
    const { value: stream } = await settledAfter(world, client.request({ method: 'GET', url: 'http://feed/', headers: {} }));
    const received = drain(stream!.body);
    await world.runFor(50);
    world.network.configure({ dropProbability: 1 });
    await world.runFor(50);
    expect(received.chunks.length).toBeGreaterThan(2);
    expect(codeOf(received.error)).toBe('ECONNRESET');
    expect(codeOf(served.abortedBy)).toBe('ECONNRESET');
  });

  it('reordering lets later requests overtake earlier ones, the same way for the same seed', async () => {
    async function arrivalOrder(seed: number): Promise<number[]> {
      const world = new SimWorld({ seed, network: { oneWayDelayMsMean: 10, oneWayDelayMsJitter: 0, reorderProbability: 0.5, reorderDelayMsMax: 30 } });
      const arrived: number[] = [];
      world.network.listen('http://b', async (req) => {
        arrived.push(Number(req.path.slice(1)));
        return textResponse('ok');
      }, 'b');
      const client = world.envFor('a').transport;
      for (let i = 0; i < 20; i++) {
        world.timers.after(i, () => void client.request({ method: 'GET', url: `http://b/${i}`, headers: {} }).then((res) => readBody(res.body, 10)));
      }
      await world.runFor(500);
      return arrived;
    }
    for (const seed of seedsToRun([1, 2])) {
      await withSeed(seed, async () => {
        const order = await arrivalOrder(seed);
        expect([...order].sort((x, y) => x - y)).toEqual(Array.from({ length: 20 }, (_, i) => i));
        expect(order).not.toEqual([...order].sort((x, y) => x - y));
        expect(await arrivalOrder(seed)).toEqual(order);
      });
    }
  });

  it('a crash resets connections to and from the node and stops its listener', async () => {
    const world = noJitterWorld(1);
    const served = { chunks: 0 } as { chunks: number; abortedBy?: unknown };
    world.network.listen('http://b', endlessFeed(world.timers, 10, served), 'b');
    const client = world.envFor('a').transport;
    const { value: stream } = await settledAfter(world, client.request({ method: 'GET', url: 'http://b/', headers: {} }));
    const received = drain(stream!.body);
    await world.runFor(50);
    world.crash('b');
    await world.runFor(1);
    expect(codeOf(received.error)).toBe('ECONNRESET');
    expect(codeOf(served.abortedBy)).toBe('ECONNRESET');
    const refused = settled(client.request({ method: 'GET', url: 'http://b/', headers: {} }));
    await world.runFor(100);
    expect(codeOf((await refused).error)).toBe('ECONNREFUSED');
  });

  it('a crashed caller never hears back, even from a response already on its way', async () => {
    const world = noJitterWorld(1);
    world.network.listen('http://b', async () => textResponse('ok'), 'b');
    const outcome = { settled: false };
    void world.envFor('a').transport.request({ method: 'GET', url: 'http://b/', headers: {} }).finally(() => (outcome.settled = true));
    await world.runFor(15);
    world.crash('a');
    await world.runFor(100);
    expect(outcome.settled).toBe(false);
    expect(world.network.openExchangeCount).toBe(0);
  });
});

describe('SimNetwork determinism', () => {
  /** Several nodes exchange requests under every fault knob; returns what each side observed. */
  async function faultyWorkloadTrace(seed: number): Promise<string[]> {
    const world = new SimWorld({
      seed,
      traceEventsMax: 10_000,
      network: { oneWayDelayMsMean: 8, oneWayDelayMsJitter: 6, dropProbability: 0.1, duplicateProbability: 0.1, reorderProbability: 0.2 },
    });
    const observed: string[] = [];
    const sites = ['a', 'b', 'c'];
    for (const site of sites) {
      const env = world.envFor(site);
      world.network.listen(`http://${site}`, async (req) => {
        observed.push(`${site} got ${req.path} @${env.clock.monotonicMs()}`);
        await env.timers.sleep(env.random.int(20));
        return textResponse(`${site}:${req.path}`);
      }, site);
      const caller = async () => {
        for (let i = 0; i < 10; i++) {
          await env.timers.sleep(env.random.int(30));
          const target = sites[env.random.int(sites.length)]!;
          try {
            const response = await env.transport.request({ method: 'GET', url: `http://${target}/${site}-${i}`, headers: {} });
            observed.push(`${site} <- ${untext.decode(await readBody(response.body, 100))} @${env.clock.monotonicMs()}`);
          } catch (error) {
            observed.push(`${site} failed ${codeOf(error)} @${env.clock.monotonicMs()}`);
          }
        }
      };
      void caller();
    }
    world.timers.after(100, () => world.network.partition({ kind: 'isolate-site', site: 'c' }));
    world.timers.after(200, () => world.network.heal());
    await world.runFor(2_000);
    return [...observed, ...world.trace().map((entry) => `${entry.atMs} ${entry.label}`)];
  }

  it('replays every delivery, drop and duplicate for the same seed', async () => {
    for (const seed of seedsToRun([11, 12])) {
      await withSeed(seed, async () => {
        const first = await faultyWorkloadTrace(seed);
        expect(first.some((line) => line.includes('failed ECONNRESET'))).toBe(true);
        expect(await faultyWorkloadTrace(seed)).toEqual(first);
        expect(await faultyWorkloadTrace(seed + 1)).not.toEqual(first);
      });
    }
  });
});

/** Runs the world until `promise` settles (bounded in sim time). */
async function settledAfter<T>(world: SimWorld, promise: Promise<T>): Promise<{ value?: T; error?: unknown }> {
  let outcome: { value?: T; error?: unknown } | undefined;
  void settled(promise).then((result) => (outcome = result));
  await world.runUntil(() => outcome !== undefined, { timeoutMs: 10_000 });
  return outcome!;
}

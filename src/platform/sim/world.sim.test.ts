import { describe, expect, it } from 'vitest';
import { CapturingLogger, SeededRandom, SimStalledError, SimWorld, seedsToRun, withSeed } from './index.js';

describe('SeededRandom', () => {
  it('repeats a sequence for a seed and differs across seeds', () => {
    const draw = (seed: number) => Array.from({ length: 8 }, ((random) => () => random.next())(new SeededRandom(seed)));
    expect(draw(7)).toEqual(draw(7));
    expect(draw(7)).not.toEqual(draw(8));
    for (const value of draw(7)) expect(value >= 0 && value < 1).toBe(true);
  });

  it('forks streams from the seed and label, not from how much the parent drew', () => {
    const parent = new SeededRandom(42);
    const first = parent.fork('network').next();
    parent.next();
    parent.next();
    expect(parent.fork('network').next()).toBe(first);
    expect(parent.fork('node:a').next()).not.toBe(first);
  });

  it('draws integers within bounds', () => {
    const random = new SeededRandom(3);
    const counts = [0, 0, 0];
    for (let i = 0; i < 3000; i++) counts[random.int(3)]!++;
    for (const count of counts) expect(count).toBeGreaterThan(800);
    expect(() => random.int(0)).toThrow();
  });
});

describe('SimWorld time and timers', () => {
  it('fires timers in time order, ties in scheduling order, and skips cancelled ones', async () => {
    const world = new SimWorld({ seed: 1 });
    const fired: string[] = [];
    world.timers.after(20, () => fired.push(`b@${world.clock.monotonicMs()}`));
    world.timers.after(10, () => fired.push(`a@${world.clock.monotonicMs()}`));
    world.timers.after(20, () => fired.push(`c@${world.clock.monotonicMs()}`));
    world.timers.after(15, () => fired.push('cancelled')).cancel();
    await world.runFor(19);
    expect(fired).toEqual(['a@10']);
    expect(world.clock.monotonicMs()).toBe(19);
    await world.runFor(100);
    expect(fired).toEqual(['a@10', 'b@20', 'c@20']);
    expect(world.clock.monotonicMs()).toBe(119);
  });

  it('settles long promise chains between events', async () => {
    const world = new SimWorld({ seed: 1 });
    const env = world.envFor('a');
    const seenAtMs: number[] = [];
    const chain = async () => {
      await env.timers.sleep(10);
      for (let i = 0; i < 1000; i++) await Promise.resolve();
      seenAtMs.push(env.clock.monotonicMs());
      await env.timers.sleep(5);
      seenAtMs.push(env.clock.monotonicMs());
    };
    void chain();
    expect(await world.step()).toBe(true);
    expect(seenAtMs).toEqual([10]);
    expect(await world.step()).toBe(true);
    expect(seenAtMs).toEqual([10, 15]);
    expect(await world.step()).toBe(false);
  });

  it('rejects a sleep whose signal aborts, and its timer never fires', async () => {
    const world = new SimWorld({ seed: 1 });
    const controller = new AbortController();
    const outcome = world.timers.sleep(100, controller.signal).then(
      () => 'resolved',
      (error: unknown) => `rejected: ${String(error)}`,
    );
    world.timers.after(30, () => controller.abort(new Error('stop')));
    await world.runFor(200);
    expect(await outcome).toBe('rejected: Error: stop');
    expect(world.pendingEventCount).toBe(0);
    await expect(world.timers.sleep(1, controller.signal)).rejects.toThrow('stop');
  });

  it('gives each node a skewed wall clock over one shared monotonic clock', async () => {
    const world = new SimWorld({ seed: 1, epochMs: 1_000_000 });
    const east = world.envFor('us-east', { skewMs: 250 });
    const west = world.envFor('us-west');
    await world.runFor(40);
    expect(east.clock.monotonicMs()).toBe(40);
    expect(west.clock.monotonicMs()).toBe(40);
    expect(east.clock.wallMs()).toBe(1_000_290);
    expect(west.clock.wallMs()).toBe(1_000_040);
    world.setSkew('us-west', -5_000);
    expect(west.clock.wallMs()).toBe(995_040);
    expect(world.clock.wallMs()).toBe(1_000_040);
  });

  it('runUntil stops when the condition holds, and fails with the seed on timeout or when idle', async () => {
    const world = new SimWorld({ seed: 99 });
    let ticks = 0;
    const tick = () => {
      ticks++;
      if (ticks < 10) world.timers.after(10, tick);
    };
    world.timers.after(10, tick);
    await world.runUntil(() => ticks === 3, { timeoutMs: 1_000 });
    expect(world.clock.monotonicMs()).toBe(30);
    await expect(world.runUntil(() => ticks === 100, { timeoutMs: 1_000 })).rejects.toThrow(/nothing left to run.*SEED=99/);
    world.timers.after(5_000, () => {});
    const timedOut = world.runUntil(() => false, { timeoutMs: 500 });
    await expect(timedOut).rejects.toBeInstanceOf(SimStalledError);
    await expect(timedOut).rejects.toThrow(/SEED=99/);
  });

  it('detects a livelock of zero-delay events', async () => {
    const world = new SimWorld({ seed: 5, eventsAtSameTimeMax: 1_000 });
    const spin = () => world.timers.after(0, spin);
    spin();
    await expect(world.runFor(10)).rejects.toThrow(/livelock.*SEED=5/);
  });

  it('crash silences a node: pending timers and sleeps never fire; a new env restarts it', async () => {
    const world = new SimWorld({ seed: 1 });
    const before = world.envFor('a');
    const fired: string[] = [];
    before.timers.after(10, () => fired.push('old timer'));
    void before.timers.sleep(10).then(() => fired.push('old sleep'));
    world.crash('a');
    before.timers.after(1, () => fired.push('timer after crash'));
    const after = world.envFor('a');
    after.timers.after(10, () => fired.push('new timer'));
    await world.runFor(50);
    expect(fired).toEqual(['new timer']);
    expect(after.random.next()).not.toBe(world.random.fork('node:a:0').next());
  });

  it('captures logs with sim time and node bindings', async () => {
    const log = CapturingLogger.create({ monotonicMs: () => 0, wallMs: () => 0 }, 2);
    const world = new SimWorld({ seed: 1, log });
    const env = world.envFor('eu-west');
    await world.runFor(0);
    env.log.info({ step: 1 }, 'first');
    env.log.warn({ step: 2 });
    env.log.error({ step: 3 }, 'third');
    expect(log.records().map((record) => [record.level, record.bindings, record.obj, record.msg])).toEqual([
      ['warn', { node: 'eu-west' }, { step: 2 }, undefined],
      ['error', { node: 'eu-west' }, { step: 3 }, 'third'],
    ]);
    expect(log.droppedCount).toBe(1);
  });
});

describe('SimWorld determinism', () => {
  /** Nodes wake up at random times, draw random numbers, and record what they saw. */
  async function randomWorkloadTrace(seed: number): Promise<string[]> {
    const world = new SimWorld({ seed, traceEventsMax: 10_000 });
    const seen: string[] = [];
    for (const nodeId of ['a', 'b', 'c']) {
      const env = world.envFor(nodeId, { skewMs: world.random.int(1_000) });
      const loop = async () => {
        for (let i = 0; i < 20; i++) {
          await env.timers.sleep(env.random.int(50));
          seen.push(`${nodeId}:${i}@${env.clock.monotonicMs()} wall=${env.clock.wallMs()} r=${env.random.int(1_000)}`);
        }
      };
      void loop();
    }
    await world.runFor(10_000);
    return [...seen, ...world.trace().map((entry) => `${entry.atMs} ${entry.label}`)];
  }

  it('replays the same trace for the same seed and a different one for another seed', async () => {
    for (const seed of seedsToRun([1, 2, 3])) {
      await withSeed(seed, async () => {
        const first = await randomWorkloadTrace(seed);
        expect(first.length).toBeGreaterThan(60);
        expect(await randomWorkloadTrace(seed)).toEqual(first);
        expect(await randomWorkloadTrace(seed + 1000)).not.toEqual(first);
      });
    }
  });

  it('withSeed appends the replay line to a failure', async () => {
    await expect(
      withSeed(1234, () => {
        throw new Error('boom');
      }),
    ).rejects.toThrow('boom\nreplay: SEED=1234');
  });
});

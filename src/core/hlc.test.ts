import { describe, expect, it } from 'vitest';
import fc from 'fast-check';
import { HybridClock, hlcCounter, hlcFromHex, hlcMs, hlcOf, hlcToHex } from './hlc.js';

describe('HybridClock', () => {
  it('is strictly monotonic whatever the wall clock does (jumps back, stalls, leaps)', () => {
    fc.assert(
      fc.property(fc.array(fc.integer({ min: -5_000, max: 5_000 }), { minLength: 1, maxLength: 300 }), (jumps) => {
        let wall = 1_700_000_000_000;
        const clock = new HybridClock({ wallMs: () => wall, skewMsMax: 60_000 });
        let last = clock.tick();
        for (const j of jumps) {
          wall = Math.max(0, wall + j);
          const t = clock.tick();
          expect(t > last).toBe(true);
          last = t;
        }
      }),
    );
  });

  it('orders a receive after the send (causality) when within the skew bound', () => {
    fc.assert(
      fc.property(fc.integer({ min: 0, max: 59_000 }), fc.integer({ min: 0, max: 100 }), (aheadMs, ticks) => {
        const base = 1_700_000_000_000;
        const sender = new HybridClock({ wallMs: () => base + aheadMs, skewMsMax: 60_000 });
        const receiver = new HybridClock({ wallMs: () => base, skewMsMax: 60_000 });
        let sent = sender.tick();
        for (let i = 0; i < ticks; i++) sent = sender.tick();
        receiver.observe(sent);
        expect(receiver.tick() > sent).toBe(true);
      }),
    );
  });

  it('never rejects a remote timestamp beyond the bound, does not move, and raises an alarm', () => {
    const skews: number[] = [];
    const wall = 1_700_000_000_000;
    const clock = new HybridClock({ wallMs: () => wall, skewMsMax: 1_000, onSkew: (ms) => skews.push(ms) });
    const before = clock.tick();
    clock.observe(hlcOf(wall + 3_600_000, 0));
    const after = clock.tick();
    expect(hlcMs(after)).toBe(hlcMs(before));
    expect(skews).toEqual([3_600_000]);
    expect(clock.skewAlarms).toBe(1);
  });

  it('advances the milliseconds on counter overflow instead of wrapping', () => {
    const clock = new HybridClock({ wallMs: () => 1000, skewMsMax: 60_000, floor: hlcOf(1000, 0xffff) });
    const t = clock.tick();
    expect(hlcMs(t)).toBe(1001);
    expect(hlcCounter(t)).toBe(0);
  });

  it('tickAfter orders after the given timestamp even from a clock far behind', () => {
    const clock = new HybridClock({ wallMs: () => 5, skewMsMax: 60_000 });
    const item = hlcOf(10_000_000, 7);
    expect(clock.tickAfter(item) > item).toBe(true);
  });

  it('tickAfter a timestamp beyond the skew bound stamps that write after it but does not drag the clock', () => {
    const wall = 1_000_000;
    const clock = new HybridClock({ wallMs: () => wall, skewMsMax: 60_000 });
    const hourAhead = hlcOf(wall + 3_600_000, 3);
    const stamped = clock.tickAfter(hourAhead);
    expect(stamped > hourAhead).toBe(true);
    // the next ordinary write, and what a restart resumes from, are on this site's own time
    expect(hlcMs(clock.current())).toBe(wall);
    expect(hlcMs(clock.tick())).toBe(wall);
    // within the bound, the item does pull the clock (causality)
    const minuteAhead = hlcOf(wall + 30_000, 0);
    clock.tickAfter(minuteAhead);
    expect(clock.current() > minuteAhead).toBe(true);
  });

  it('round-trips through 16 hex digits and keeps order lexicographically', () => {
    fc.assert(
      fc.property(fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), fc.bigInt({ min: 0n, max: (1n << 64n) - 1n }), (a, b) => {
        expect(hlcFromHex(hlcToHex(a))).toBe(a);
        expect(a < b).toBe(hlcToHex(a) < hlcToHex(b));
      }),
    );
  });
});

// The custom merge sandbox: its bounds are counted in interpreter steps, memory and stack, never in
// time, so a merge succeeds or falls back the same way on every machine and under any load; and no
// call can see what an earlier one did.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { Worker } from 'node:worker_threads';
import { describe, expect, it } from 'vitest';
import { loadCustomMerge, mergeBounds, type LoadOptions } from './custom-merge.js';

const dir = mkdtempSync(join(tmpdir(), 'tandem-merge-unit-'));
let files = 0;
function mergeModule(source: string, timeoutMs = 50, options: LoadOptions = {}) {
  const file = join(dir, `m${files++}.js`);
  writeFileSync(file, source);
  return loadCustomMerge(file, undefined, timeoutMs, 'docs', options);
}
const sibling = (value: Record<string, unknown>, n = 1) => ({ value: value as never, version: `000000000000000${n}-a`, origin: 'a' });
const outcome = (run: () => unknown): unknown => {
  try {
    return { ok: run() };
  } catch (e) {
    return { threw: (e as Error).message };
  }
};

/** Busy threads on every core: the machine as a slow or overloaded site sees it. */
function loadMachine(threads = 4): () => Promise<void> {
  const stop = new Int32Array(new SharedArrayBuffer(4));
  const workers = Array.from(
    { length: threads },
    () => new Worker(`const s = new Int32Array(require('node:worker_threads').workerData); while (Atomics.load(s, 0) === 0) {}`, { eval: true, workerData: stop.buffer }),
  );
  return async () => {
    Atomics.store(stop, 0, 1);
    await Promise.all(workers.map((w) => w.terminate()));
  };
}

describe('custom merge sandbox', () => {
  it('calls merge with the siblings and the table, and returns its value', () => {
    const m = mergeModule(`module.exports.merge = (siblings, context) => ({ n: siblings.length, table: context.table, first: siblings[0].value });`);
    expect(m.merge([sibling({ x: 1 }), sibling({ y: 2 }, 2)])).toEqual({ n: 2, table: 'docs', first: { x: 1 } });
  });

  it('the step budget is exact: the same loop length passes or fails on every call, on a busy machine too', async () => {
    const m = mergeModule(`exports.merge = function (siblings) { let x = 0; for (let i = 0; i < siblings[0].value.n; i++) x += i; return { x }; };`, 5);
    const passes = (n: number) => {
      try {
        m.merge([sibling({ n })]);
        return true;
      } catch {
        return false;
      }
    };
    // the longest loop that fits the budget
    let lo = 0;
    let hi = 10_000_000;
    while (hi - lo > 1) {
      const mid = Math.floor((lo + hi) / 2);
      if (passes(mid)) lo = mid;
      else hi = mid;
    }
    expect(lo).toBeGreaterThan(1000);
    const idle = [lo, hi].map((n) => Array.from({ length: 5 }, () => passes(n)));
    const release = loadMachine();
    try {
      const busy = [lo, hi].map((n) => Array.from({ length: 5 }, () => passes(n)));
      expect(busy).toEqual(idle);
    } finally {
      await release();
    }
    expect(idle).toEqual([Array(5).fill(true), Array(5).fill(false)]);
    expect(m.nondeterministicFailures()).toBe(0);
  });

  it('keeps no state between calls: a global counter, a changed builtin and a module variable all start afresh', () => {
    const m = mergeModule(`
      let calls = 0;
      globalThis.seen = (globalThis.seen || 0) + 1;
      exports.merge = function () {
        calls++;
        Array.prototype.marked = (Array.prototype.marked || 0) + 1;
        return { calls, seen: globalThis.seen, marked: [].marked };
      };`);
    const results = Array.from({ length: 3 }, () => m.merge([sibling({})]));
    expect(results).toEqual(Array(3).fill({ calls: 1, seen: 1, marked: 1 }));
  });

  it('offers nothing that differs between sites or runs: no clock, no randomness, no view of the collector', () => {
    for (const expr of ['Date.now()', 'new Date().getTime()', 'Math.random()', 'new WeakRef({})', 'new FinalizationRegistry(() => 0)']) {
      const m = mergeModule(`exports.merge = () => ({ v: ${expr} });`);
      expect(outcome(() => m.merge([sibling({})]))).toEqual({ threw: expect.stringContaining('threw') });
    }
  });

  it('a merge that loops forever fails on its step budget, the same way every time', () => {
    const m = mergeModule(`exports.merge = function () { try { for (;;) {} } catch (e) { return { caught: true }; } };`);
    const outcomes = Array.from({ length: 3 }, () => outcome(() => m.merge([sibling({})])));
    expect(outcomes).toEqual(Array(3).fill({ threw: 'custom merge for docs: exceeded its step budget' }));
    expect(m.failures()).toBe(3);
    expect(m.nondeterministicFailures()).toBe(0);
  });

  it('deep recursion and deep nesting hit QuickJS stack limit (a deterministic error), never the thread stack', () => {
    const sources = [
      `exports.merge = function r(s) { return r(s); };`,
      `exports.merge = function r(s) { return [s].map(r)[0]; };`,
      `exports.merge = function () { return JSON.parse('['.repeat(100000) + ']'.repeat(100000)); };`,
      `exports.merge = function () { let o = []; for (let i = 0; i < 100000; i++) o = [o]; return { s: String(o) }; };`,
    ];
    for (const source of sources) {
      const m = mergeModule(source);
      expect(outcome(() => m.merge([sibling({})]))).toEqual({ threw: expect.stringMatching(/stack overflow/) });
      expect(m.nondeterministicFailures()).toBe(0);
    }
    expect(mergeModule(`exports.merge = () => ({ ok: true });`).merge([sibling({})])).toEqual({ ok: true });
  });

  it('the memory bound is deterministic: where an allocation fails does not depend on earlier calls', () => {
    const fill = mergeModule(`exports.merge = function () {
      const kept = [];
      try { for (;;) kept.push(new Array(100000 + (kept.length % 7) * 1000).fill(kept.length)); } catch (e) { const n = kept.length; kept.length = 0; return { n, error: String(e) }; }
    };`);
    const first = fill.merge([sibling({})]);
    expect(first).toMatchObject({ error: 'InternalError: out of memory' });
    // 256 MiB of arrays of ~800 KB
    expect((first as { n: number }).n).toBeGreaterThan(200);
    // other allocation patterns in between (calls that free all they take share a heap)
    const churn = mergeModule(`exports.merge = function (s) {
      const parts = []; for (let i = 0; i < s[0].value.n; i++) parts.push({ i, s: 'y'.repeat(i % 997) });
      return { n: JSON.stringify(parts).length };
    };`);
    for (const n of [10, 5000, 123, 40000, 7]) churn.merge([sibling({ n })]);
    expect(fill.merge([sibling({})])).toEqual(first);
  });

  it('a result larger than an item is refused', () => {
    const m = mergeModule(`exports.merge = () => ({ big: 'x'.repeat(500 * 1024) });`);
    expect(outcome(() => m.merge([sibling({})]))).toEqual({ threw: expect.stringContaining('exceeds') });
  });

  it('refuses at load a module that does not parse, throws, or exports no merge', () => {
    expect(() => mergeModule(`exports.merge = (`)).toThrow(/failed to load: threw SyntaxError/);
    expect(() => mergeModule(`throw new Error('boom');`)).toThrow(/failed to load: threw Error: boom/);
    expect(() => mergeModule(`exports.other = () => ({});`)).toThrow(/does not export a merge function/);
  });

  it('the wall clock is only a safety net: it is counted and logged, and the sandbox recovers', () => {
    expect(mergeBounds(50)).toEqual({ interruptsMax: 50, wallMsMax: 5_000 });
    const warnings: object[] = [];
    // each step (one JSON.stringify of a large array) is slow: the time runs out long before the steps
    const m = mergeModule(
      `exports.merge = function () {
        const big = JSON.parse('[' + '{"a":1},'.repeat(300000) + '{"a":1}]');
        for (let i = 0; i < 100000; i++) JSON.stringify(big);
        return {};
      };`,
      50,
      { log: { warn: (obj) => warnings.push(obj) }, wallMsMax: 500 },
    );
    expect(outcome(() => m.merge([sibling({})]))).toEqual({ threw: expect.stringContaining('wall-clock safety net') });
    expect(m.nondeterministicFailures()).toBe(1);
    expect(m.failures()).toBe(0);
    expect(warnings).toEqual([expect.objectContaining({ table: 'docs', reply: 'wall-clock' })]);
    expect(mergeModule(`exports.merge = () => ({ ok: 1 });`).merge([sibling({})])).toEqual({ ok: 1 });
  });
});

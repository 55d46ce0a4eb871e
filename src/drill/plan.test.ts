// Replay: the same seed gives the same fault plan and the same operations at the same intended
// times; another seed gives another. And RTO: measured from intended start times, per episode,
// small buckets merged, a slow success counted bad.
import { describe, expect, it } from 'vitest';
import { demoConfig } from '../config/demo.js';
import { homeRegistryTable } from '../config/schema.js';
import { rtoOf, buckets } from './measures.js';
import type { OpRecord } from './op-history.js';
import { planDrill, scenarioNames, scenarios, type ScenarioContext } from './scenarios.js';
import { planWorkload, type WorkloadSpec } from './workload.js';

const config = demoConfig({ sites: 3, basePort: 7100 });
const ctx = (seed: number): ScenarioContext => ({
  seed,
  sites: config.sites.map((s) => s.id),
  owners: { ledger: 'us-east' },
  site: undefined,
  timeline: { loadMs: 20_000, faultAtMs: 5000, healAtMs: 12_000 },
});
const spec = (seed: number): WorkloadSpec => ({ seed, ratePerS: 200, loadMs: 5000, warmupMs: 1000, sites: config.sites, tables: config.tables, keysPerTable: 40, routedShare: 0.7 });

describe('replay', () => {
  it('gives every scenario the same fault plan for the same seed', () => {
    for (const name of scenarioNames) {
      const a = planDrill(scenarios[name], ctx(42));
      expect(planDrill(scenarios[name], ctx(42))).toEqual(a);
    }
    const seeds = [1, 2, 3, 4, 5, 6, 7, 8].map((s) => JSON.stringify(planDrill(scenarios.random, ctx(s))));
    expect(new Set(seeds).size).toBeGreaterThan(1);
  });

  it('gives the same operations at the same intended times for the same seed', () => {
    const a = [...planWorkload(spec(9))];
    expect([...planWorkload(spec(9))]).toEqual(a);
    expect([...planWorkload(spec(10))]).not.toEqual(a);
    // about the rate asked for, every table driven, through the router and pinned
    const measured = a.filter((o) => o.intendedMs >= 0);
    expect(measured.length).toBeGreaterThan(800);
    expect(measured.length).toBeLessThan(1200);
    expect(new Set(a.map((o) => o.table))).toEqual(new Set(Object.keys(config.tables).filter((t) => t !== homeRegistryTable)));
    expect(new Set(a.map((o) => o.op))).toEqual(new Set(['get', 'scan', 'put', 'patch', 'delete']));
    expect(a.some((o) => o.via === 'router') && a.some((o) => o.via === 'eu-west')).toBe(true);
    expect(new Set(a.filter((o) => o.writeId).map((o) => o.writeId)).size).toBe(a.filter((o) => o.writeId).length);
  });
});

describe('RTO', () => {
  const ops = (from: number, to: number, everyMs: number, bad: (t: number) => boolean, latencyMs = 5): OpRecord[] => {
    const out: OpRecord[] = [];
    for (let t = from; t < to; t += everyMs)
      out.push({ id: t, client: 'open', op: 'put', table: 'profiles', key: 'k', via: 'router', consistency: 'eventual', intendedMs: t, sentMs: t, endMs: t + latencyMs, outcome: bad(t) ? 'unknown' : 'ok' });
    return out;
  };
  const episode = { phase: 'fault' as const, label: 'fault', startMs: 1000, endMs: 9000, sites: [] };
  const slo = { successRateMin: 0.99, windowMs: 3000, latencyMaxMs: 1000 };

  it('runs from the fault to the end of the last outage, not to the next bucket boundary', () => {
    // the last bad operation was intended at 1720 ms
    const history = ops(0, 10_000, 10, (t) => t >= 1000 && t < 1730);
    expect(rtoOf(history, episode, slo)).toEqual({ rtoMs: 720, recovered: true });
  });

  it('counts a success slower than latencyMaxMs as bad, and an outage that never ends as the whole episode', () => {
    const slow = [...ops(0, 1500, 10, () => false, 1200), ...ops(1500, 10_000, 10, () => false)];
    expect(rtoOf(slow, episode, slo).rtoMs).toBe(490);
    expect(rtoOf(ops(0, 10_000, 10, (t) => t >= 1000), episode, slo)).toEqual({ rtoMs: 8000, recovered: false });
  });

  it('does not call it recovered while failures recur within the window', () => {
    const flapping = ops(0, 10_000, 10, (t) => t >= 1000 && t < 1200 ? true : t === 3000 || t === 5000);
    expect(rtoOf(flapping, episode, slo).rtoMs).toBe(4000);
  });

  it('merges buckets under 20 operations with their neighbours', () => {
    const sparse = ops(0, 2000, 40, () => false);
    const bs = buckets(sparse, 0, 2000, 1000);
    expect(bs.every((b) => b.ops >= 20)).toBe(true);
    expect(bs.reduce((n, b) => n + b.ops, 0)).toBe(50);
  });
});

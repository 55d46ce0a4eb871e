// Custom merge: concurrent writes become siblings, every site calls the user's merge over the same
// siblings in version order and shows the same result; a merge that throws or loops forever falls
// back to LWW over the same siblings, identically everywhere.
import { mkdtempSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { describe, expect, it } from 'vitest';
import { SimCluster } from '../cluster/sim-cluster.js';

const dir = mkdtempSync(join(tmpdir(), 'tandem-merge-'));
const unionMerge = join(dir, 'union.js');
writeFileSync(
  unionMerge,
  `module.exports.merge = function (siblings) {
     const items = new Set();
     for (const s of siblings) for (const i of s.value.items || []) items.add(i);
     return { items: [...items].sort(), merged: siblings.length };
   };`,
);
const throwingMerge = join(dir, 'throwing.js');
writeFileSync(throwingMerge, `function merge() { throw new Error('nope'); }`);
const loopingMerge = join(dir, 'looping.js');
writeFileSync(loopingMerge, `exports.merge = function () { for (;;) {} };`);

async function concurrentWrites(mergePath: string, seed: number) {
  const cluster = await SimCluster.create({
    seed,
    sites: 3,
    tables: { docs: { pattern: 'local', conflict: 'custom', merge: mergePath, mergeTimeoutMs: 20 } },
  });
  try {
    cluster.world.network.partition({ kind: 'split', groups: [['us-east'], ['eu-west', 'ap-south']] });
    await cluster.world.runFor(100);
    await Promise.all([
      cluster.write('us-east', 'docs', 'd', { op: 'put', value: { items: ['a', 'b'] } }),
      cluster.write('eu-west', 'docs', 'd', { op: 'put', value: { items: ['c'] } }),
      cluster.world.runFor(50),
    ]);
    cluster.world.network.heal();
    await cluster.world.runUntil(() => cluster.converged(), { timeoutMs: 30_000 });
    await cluster.world.runFor(500);
    const values = await Promise.all(cluster.siteIds.map(async (id) => (await cluster.site(id)!.node.store.getItem('docs', 'd'))?.value));
    return values;
  } finally {
    await cluster.stop();
  }
}

describe('custom merge', () => {
  it('gives every site the merged value of the same siblings', async () => {
    const values = await concurrentWrites(unionMerge, 7);
    expect(values[0]).toEqual({ items: ['a', 'b', 'c'], merged: 2 });
    expect(values[1]).toEqual(values[0]);
    expect(values[2]).toEqual(values[0]);
  });

  it('falls back to LWW everywhere when the merge throws or exceeds its time bound', async () => {
    for (const path of [throwingMerge, loopingMerge]) {
      const values = await concurrentWrites(path, 8);
      expect(values[0]).toBeDefined();
      expect([{ items: ['a', 'b'] }, { items: ['c'] }]).toContainEqual(values[0]);
      expect(values[1]).toEqual(values[0]);
      expect(values[2]).toEqual(values[0]);
    }
  });
});

// The drill's open-loop workload plan: every operation and its intended send time, drawn from the
// seed alone (Poisson arrivals at the requested rate), so that the same seed, version and config
// give the same operations at the same intended times. A mix of put, patch (increments, set adds,
// register sets), delete, get and scan over every table, its pattern and durability, through the
// router and pinned to each site. Counter keys only ever get increments (their bounds stay exact).
import { SeededRandom } from '../platform/sim/random.js';
import { homeRegistryTable, type TableConfig } from '../config/schema.js';
import type { OpKind } from './op-history.js';

export interface PlannedOp {
  id: number;
  intendedMs: number;
  op: OpKind;
  table: string;
  key: string;
  via: string;
  consistency: 'eventual' | 'strong';
  durability?: 'local' | 'quorum';
  patch?: 'increment' | 'add' | 'set';
  field?: string;
  amount?: number;
  writeId?: string;
}

export interface WorkloadSpec {
  seed: number;
  ratePerS: number;
  loadMs: number;
  /** operations before the measured load (intended times below 0): they warm every process up */
  warmupMs: number;
  sites: { id: string; region?: string }[];
  tables: Record<string, TableConfig>;
  /** keys per table in the shared key space (small: writes on both sides of a cut meet) */
  keysPerTable: number;
  /** share of operations sent through the router (the rest pinned to a site) */
  routedShare: number;
}

/** Tables the workload drives, and why any is left out. */
export function drivenTables(tables: Record<string, TableConfig>): { driven: string[]; skipped: Record<string, string> } {
  const driven: string[] = [];
  const skipped: Record<string, string> = {};
  for (const [name, t] of Object.entries(tables)) {
    if (name === homeRegistryTable) skipped[name] = 'the first-writer home registry: written by home claims only';
    else if (t.conflict === 'custom') skipped[name] = 'custom merge: the value a merge makes is the user\'s, so write ids cannot be checked';
    else driven.push(name);
  }
  return { driven: driven.sort(), skipped };
}

const fieldsOfKind = (t: TableConfig, kind: 'counter' | 'set') =>
  Object.entries(t.fields ?? {})
    .filter(([, k]) => k === kind)
    .map(([f]) => f)
    .sort();

/** Key-prefix partition keys name their home by site id (or region) before the separator; first-writer ones name one of a few partitions. */
function keyFor(t: TableConfig, spec: WorkloadSpec, random: SeededRandom, base: string): string {
  if (t.pattern === 'partitioned' && t.home?.from === 'key-prefix') {
    const site = spec.sites[random.int(spec.sites.length)]!;
    return `${site.id}${t.home.separator}${base}`;
  }
  if (t.pattern === 'partitioned' && t.home?.from === 'first-writer') return `p${random.int(4)}${t.home.separator}${base}`;
  return base;
}

export function* planWorkload(spec: WorkloadSpec): Generator<PlannedOp> {
  const random = new SeededRandom(spec.seed).fork('workload');
  const { driven } = drivenTables(spec.tables);
  if (driven.length === 0) return;
  const meanGapMs = 1000 / spec.ratePerS;
  let t = -spec.warmupMs;
  for (let id = 0; ; id++) {
    t += -Math.log(1 - random.next()) * meanGapMs;
    if (t >= spec.loadMs) return;
    const table = driven[random.int(driven.length)]!;
    const cfg = spec.tables[table]!;
    const via = random.next() < spec.routedShare ? 'router' : spec.sites[random.int(spec.sites.length)]!.id;
    const owned = cfg.pattern !== 'local';
    const counters = fieldsOfKind(cfg, 'counter');
    const sets = fieldsOfKind(cfg, 'set');
    const roll = random.next();
    const n = random.int(spec.keysPerTable);
    const writeId = `w${spec.seed}-${id}`;
    const durability = cfg.durability === 'local' && random.chance(0.25) ? ('quorum' as const) : undefined;
    const base = { id, intendedMs: Math.round(t * 1000) / 1000, table, via };
    if (roll < 0.3) {
      // reads of every key space, strong ones where the owner answers them
      const key = keyFor(cfg, spec, random, counters.length > 0 && random.chance(0.3) ? `ctr${n}` : `k${n}`);
      yield { ...base, op: 'get', key, consistency: owned && random.chance(0.3) ? 'strong' : 'eventual' };
    } else if (roll < 0.35) {
      yield { ...base, op: 'scan', key: keyFor(cfg, spec, random, 'k'), consistency: 'eventual' };
    } else if (roll < 0.6) {
      yield { ...base, op: 'put', key: keyFor(cfg, spec, random, `k${n}`), consistency: 'eventual', writeId, ...(durability ? { durability } : {}) };
    } else if (roll < 0.9) {
      const kind = counters.length > 0 && random.chance(0.4) ? 'increment' : sets.length > 0 && random.chance(0.4) ? 'add' : 'set';
      if (kind === 'increment') {
        const amount = random.chance(0.2) ? -(1 + random.int(3)) : 1 + random.int(5);
        yield { ...base, op: 'patch', key: keyFor(cfg, spec, random, `ctr${n}`), consistency: 'eventual', patch: 'increment', field: counters[random.int(counters.length)]!, amount, writeId, ...(durability ? { durability } : {}) };
      } else if (kind === 'add') {
        yield { ...base, op: 'patch', key: keyFor(cfg, spec, random, `k${n}`), consistency: 'eventual', patch: 'add', field: sets[random.int(sets.length)]!, writeId, ...(durability ? { durability } : {}) };
      } else {
        yield { ...base, op: 'patch', key: keyFor(cfg, spec, random, `k${n}`), consistency: 'eventual', patch: 'set', field: `f${random.int(4)}`, writeId, ...(durability ? { durability } : {}) };
      }
    } else {
      yield { ...base, op: 'delete', key: keyFor(cfg, spec, random, `k${n}`), consistency: 'eventual', writeId, ...(durability ? { durability } : {}) };
    }
  }
}

/** The body of a planned write (every written value carries its write id). */
export function bodyOf(op: PlannedOp): unknown {
  switch (op.op) {
    case 'put':
      return { w: op.writeId };
    case 'patch':
      if (op.patch === 'increment') return { increment: { [op.field!]: op.amount } };
      if (op.patch === 'add') return { add: { [op.field!]: [op.writeId] } };
      return { set: { w: op.writeId, [op.field!]: op.writeId } };
    default:
      return undefined;
  }
}

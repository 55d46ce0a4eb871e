// The randomized replication scenario run by the simulation tests and scripts/simulate: a mixed
// workload on overlapping keys at every site (puts, deletes, counter increments and deletes, field
// patches, some writes with quorum durability, reads) while the network delays, reorders,
// duplicates and drops messages, partitions (isolate, split, one-way) come and go, and sites crash,
// lose power (inside slow fsyncs), are rolled back to an earlier copy of their disk, lose their disk
// and restart; housekeeping runs on independent schedules. Some counter increments carry an
// Idempotency-Key: sent twice at once, and retried later at their site (after a crash or a power
// loss too) or at a site that has their write; each must be applied once. The disk ledger judges
// quorum acks, reissued dots and reads as they happen; after healing it checks convergence (equal
// digests) and the operation history.
import type { LogEntry } from '../store/types.js';
import type { WriteOptions } from '../site/site-node.js';
import type { ItemOp } from '../core/write.js';
import { parseDot } from '../core/vector.js';
import { checkHistory, History, type Anomaly, type FinalItem, type HistoryOp } from '../drill/history.js';
import { SimCluster } from './sim-cluster.js';

export interface ScenarioResult {
  seed: number;
  sites: number;
  ops: number;
  acked: number;
  conflicts: number;
  convergedAtMs: number;
  digestsEqual: boolean;
  anomalies: Anomaly[];
  wipes: number;
  powerLosses: number;
  rollbacks: number;
  quorumAcks: number;
  reads: number;
  /** repeats of keyed writes sent (at once, or later at their site or a site holding their entry) */
  idempotentRepeats: number;
}

/** A write sent with an Idempotency-Key, which the workload may send again. */
interface KeyedWrite {
  op: HistoryOp;
  site: string;
  itemOp: ItemOp;
  options: WriteOptions;
  /** the site's disk losses when it was sent: after one more, a repeat there is not exact (README) */
  diskLossesAtSend: number;
}

export async function runReplicationScenario(seed: number, options: { opsMax?: number } = {}): Promise<ScenarioResult> {
  const pick = (n: number) => Math.floor(rng() * n);
  let state = seed >>> 0 || 1;
  function rng(): number {
    // workload choices come from their own stream so network faults do not shift them
    state = (state + 0x6d2b79f5) >>> 0;
    let t = state;
    t = Math.imul(t ^ (t >>> 15), t | 1);
    t ^= t + Math.imul(t ^ (t >>> 7), t | 61);
    return ((t ^ (t >>> 14)) >>> 0) / 4294967296;
  }
  const nSites = 3 + pick(3);
  const cluster = await SimCluster.create({
    seed,
    sites: nSites,
    network: {
      oneWayDelayMsMean: 2 + pick(30),
      oneWayDelayMsJitter: pick(10),
      reorderProbability: rng() < 0.5 ? 0.1 : 0,
      duplicateProbability: rng() < 0.5 ? 0.05 : 0,
      dropProbability: rng() < 0.3 ? 0.002 : 0,
    },
    disk: {
      // fast disks, slow ones, and some whose syncs take long enough for crashes to land inside them
      fsyncDelayMsMax: [0, 30, 300][pick(3)]!,
      housekeepingIntervalMs: [100, 1_500],
      antiEntropyIntervalMs: [500, 4_000],
    },
  });
  const { world } = cluster;
  const history = new History();
  const ids = cluster.siteIds;
  const down = new Set<string>();
  const opsTotal = options.opsMax ?? 40 + pick(80);
  const keys = ['k0', 'k1', 'k2', 'k3'];
  let unique = 0;
  let wipes = 0;
  let powerLosses = 0;
  let rollbacks = 0;
  let quorumAcks = 0;
  let reads = 0;
  let idempotentRepeats = 0;
  const keyedWrites: KeyedWrite[] = [];
  /** per site, disks lost or rolled back: a site keeps what it indexed only as long as its disk */
  const diskLosses = new Map<string, number>();
  const loseDisk = (site: string) => diskLosses.set(site, (diskLosses.get(site) ?? 0) + 1);
  const anomalies: Anomaly[] = [];
  /**
   * Marks `tracked` done when a write (its first attempt, or a repeat under its Idempotency-Key) is
   * answered. A repeat that fails (its site starting, say) says nothing of the first attempt, whose
   * outcome stands: failed, or unknown while it never came back.
   */
  const settle = (tracked: HistoryOp, site: string, quorum: boolean, promise: Promise<{ dot: string }>, repeat = false) => {
    const writer = cluster.site(site)!;
    promise.then(
      async (outcome) => {
        if (tracked.dot !== undefined && tracked.dot !== outcome.dot && tracked.status === 'ok')
          anomalies.push({ kind: 'idempotent-write-applied-twice', detail: `op ${tracked.id} answered ${tracked.dot}, then ${outcome.dot} for the same Idempotency-Key at ${site}` });
        tracked.dot = outcome.dot;
        if (quorum) {
          // false: the outcome is unknown (timeout), not failed
          if (!(await writer.replicator.awaitDurability(outcome.dot, 'quorum'))) return;
          cluster.ledger.quorumAcked(outcome.dot, ids, `op ${tracked.id} ${tracked.kind} ${tracked.table}/${tracked.key} at ${site}`);
          quorumAcks++;
        }
        tracked.status = 'ok';
        tracked.completedAtMs = world.clock.monotonicMs();
      },
      () => {
        if (!repeat && tracked.status === 'pending') tracked.status = 'fail';
      },
    );
  };
  /**
   * Entries `victim` lost that no site holds any more are gone for real. A disk loss (wipe or
   * rollback to an older copy) may take acknowledged writes with it: their outcome becomes unknown.
   * A power loss must not take the victim's own acknowledged writes (acks come after the fsync); it
   * may take the last, unsynced copy of another site's write whose own disk was lost before.
   */
  const lostForGood = (victim: string, lost: { dot: string; hash: string }[], cause: 'disk-loss' | 'power-loss') => {
    const gone = new Set(lost.filter((f) => !cluster.ledger.isHeld(f)).map((f) => f.dot));
    for (const op of history.ops) {
      if (op.status !== 'ok' || op.dot === undefined || !gone.has(op.dot)) continue;
      if (cause === 'disk-loss' || op.site !== victim) op.status = 'pending';
      else anomalies.push({ kind: 'acked-write-lost', detail: `op ${op.id} ${op.kind} ${op.table}/${op.key} ${op.dot} acknowledged by ${op.site}, lost when ${victim} lost power` });
    }
  };
  try {
    for (let i = 0; i < opsTotal; i++) {
      const r = rng();
      if (r < 0.04) {
        const kinds = ['isolate', 'split', 'cut'] as const;
        const kind = kinds[pick(3)]!;
        if (kind === 'isolate') world.network.partition({ kind: 'isolate-site', site: ids[pick(ids.length)]! });
        else if (kind === 'split') {
          const cut = 1 + pick(ids.length - 1);
          world.network.partition({ kind: 'split', groups: [ids.slice(0, cut), ids.slice(cut)] });
        } else world.network.cutLink(ids[pick(ids.length)]!, ids[pick(ids.length)]!);
      } else if (r < 0.07) {
        world.network.heal();
      } else if (r < 0.09 && down.size < ids.length - 1) {
        const victim = ids[pick(ids.length)]!;
        if (!down.has(victim)) {
          down.add(victim);
          await cluster.crash(victim);
        }
      } else if (r < 0.095 && down.size === 0) {
        // site loss: what it acknowledged but no other site received is gone (its outcome becomes unknown)
        const victim = ids[pick(ids.length)]!;
        down.add(victim);
        loseDisk(victim);
        lostForGood(victim, await cluster.wipe(victim), 'disk-loss');
        wipes++;
      } else if (r < 0.11 && down.size > 0) {
        const back = [...down][pick(down.size)]!;
        down.delete(back);
        await cluster.start(back);
      } else if (r < 0.125 && down.size < ids.length - 1) {
        // power loss: the disk keeps what its last fdatasync covered
        const victim = ids[pick(ids.length)]!;
        if (!down.has(victim)) {
          down.add(victim);
          lostForGood(victim, await cluster.powerLoss(victim), 'power-loss');
          powerLosses++;
        }
      } else if (r < 0.14) {
        // a VM snapshot / `cp -a` of a running site's data directory, for a later rollback
        const victim = ids[pick(ids.length)]!;
        if (!down.has(victim)) cluster.snapshotDisk(victim);
      } else if (r < 0.155 && down.size < ids.length - 1) {
        // an operator puts an old copy of the data directory back: like site loss for what came after the copy
        const victim = ids[pick(ids.length)]!;
        if (!down.has(victim) && cluster.hasDiskCopy(victim)) {
          down.add(victim);
          loseDisk(victim);
          lostForGood(victim, await cluster.rollBackDisk(victim), 'disk-loss');
          rollbacks++;
        }
      } else if (r < 0.18 && keyedWrites.length > 0) {
        // a client that did not see an answer (or wants to be sure) repeats a keyed write: at its
        // site, if that site still has its disk, or at a site that has the first write (its vector
        // covers the dot: from the log, or from a snapshot, which carries the keys)
        const w = keyedWrites[pick(keyedWrites.length)]!;
        const sameSite = !down.has(w.site) && (diskLosses.get(w.site) ?? 0) === w.diskLossesAtSend;
        const first = w.op.dot === undefined ? undefined : parseDot(w.op.dot);
        const holders = first === undefined ? [] : ids.filter((s) => s !== w.site && !down.has(s) && (cluster.site(s)!.node.vector()[first.origin] ?? 0) >= first.seq);
        const candidates = [...(sameSite ? [w.site] : []), ...holders];
        if (candidates.length > 0) {
          const at = candidates[pick(candidates.length)]!;
          idempotentRepeats++;
          settle(w.op, at, w.options.awaitsAck === true, cluster.write(at, w.op.table, w.op.key, w.itemOp, w.options), true);
        }
      } else if (r < 0.21) {
        // a read at any site must not show this site's own writes before they are durable
        const up = ids.filter((s) => !down.has(s));
        const at = cluster.site(up[pick(up.length)]!)!;
        const table = ['profiles', 'counters', 'carts'][pick(3)]!;
        const key = keys[pick(keys.length)]!;
        const origin = at.node.origin;
        reads++;
        // what the store holds as the read runs (the read's query runs in this turn, its wait for durability after)
        const vector = at.node.store.committedVector();
        const runtime = at.node.table(table);
        at.node.get(runtime, key).then(
          (rec) => {
            if (cluster.site(at.id) !== at) return;
            if (rec !== undefined) cluster.ledger.readReturned(at.id, origin, rec.state.c, `read ${table}/${key}`);
            cluster.ledger.readAgainstLog(table, key, runtime.semantics, vector, rec, `read ${table}/${key} at ${at.id}`);
          },
          () => undefined,
        );
      } else {
        const up = ids.filter((s) => !down.has(s));
        const site = up[pick(up.length)]!;
        const key = keys[pick(keys.length)]!;
        const t = rng();
        const now = world.clock.monotonicMs();
        // some writes wait for a majority of sites to hold them durably
        const quorum = rng() < 0.25;
        const options = quorum ? { awaitsAck: true } : {};
        let promise;
        let op;
        if (t < 0.4) {
          op = history.invoke({ site, table: 'profiles', key, kind: 'put', invokedAtMs: now });
          promise = cluster.write(site, 'profiles', key, { op: 'put', value: { v: ++unique, by: site } }, options);
        } else if (t < 0.52) {
          op = history.invoke({ site, table: 'profiles', key, kind: 'delete', invokedAtMs: now });
          promise = cluster.write(site, 'profiles', key, { op: 'delete' }, options);
        } else if (t < 0.72) {
          const amount = 1 + pick(5);
          op = history.invoke({ site, table: 'counters', key, kind: 'increment', amount, invokedAtMs: now });
          const patch: ItemOp = { op: 'patch', patch: { increment: { n: amount }, add: { tags: [`t${pick(4)}`] } } };
          if (rng() < 0.5) {
            const keyed: KeyedWrite = { op, site, itemOp: patch, options: { ...options, idempotencyKey: `inc-${seed}-${op.id}` }, diskLossesAtSend: diskLosses.get(site) ?? 0 };
            keyedWrites.push(keyed);
            if (keyedWrites.length > 32) keyedWrites.shift();
            promise = cluster.write(site, 'counters', key, patch, keyed.options);
            // the same request twice at once (a client's hasty retry): one commit
            if (rng() < 0.25) {
              idempotentRepeats++;
              settle(op, site, quorum, cluster.write(site, 'counters', key, patch, keyed.options), true);
            }
          } else promise = cluster.write(site, 'counters', key, patch, options);
        } else if (t < 0.82) {
          // deletes of counters: increments they observed are gone, concurrent ones survive
          op = history.invoke({ site, table: 'counters', key, kind: 'delete', invokedAtMs: now });
          promise = cluster.write(site, 'counters', key, { op: 'delete' }, options);
        } else {
          op = history.invoke({ site, table: 'carts', key, kind: 'patch', invokedAtMs: now });
          promise = cluster.write(site, 'carts', key, { op: 'patch', patch: { set: { [`f${pick(3)}`]: ++unique } } }, options);
        }
        settle(op, site, quorum, promise);
      }
      await world.runFor(pick(60));
    }
    world.network.heal();
    world.network.configure({ dropProbability: 0, duplicateProbability: 0 });
    for (const s of down) await cluster.start(s);
    down.clear();
    await world.runUntil(() => cluster.converged(), { timeoutMs: 120_000 });
    const convergedAtMs = world.clock.monotonicMs();
    await world.runFor(1_000);
    const digests = await cluster.digests();
    const all = Object.values(digests).map((d) => JSON.stringify(d));
    const digestsEqual = all.every((d) => d === all[0]);

    const reference = cluster.site(ids[0]!)!.node;
    const log: LogEntry[] = cluster.ledger.entries();
    const items = new Map<string, FinalItem>();
    for (const table of ['profiles', 'counters', 'carts']) {
      for (const rec of await reference.store.scanAll(table, undefined, 100_000))
        items.set(`${table}\u0000${rec.key}`, { table, key: rec.key, state: rec.state, live: rec.live, value: rec.value });
    }
    const conflictLosers = new Set<string>();
    let conflicts = 0;
    for (const id of ids) {
      for (const row of await cluster.site(id)!.node.store.conflicts('profiles', 0, 100_000)) {
        conflictLosers.add(row.record.loserDot);
        conflicts++;
      }
    }
    anomalies.push(...cluster.ledger.anomalies);
    anomalies.push(...checkHistory({
      history,
      log,
      items,
      conflictLosers,
      lwwTables: new Set(['profiles']),
      counterField: (t) => (t === 'counters' ? 'n' : undefined),
    }));
    return {
      seed,
      sites: nSites,
      ops: history.ops.length,
      acked: history.ops.filter((o) => o.status === 'ok').length,
      conflicts,
      convergedAtMs,
      digestsEqual,
      anomalies,
      wipes,
      powerLosses,
      rollbacks,
      quorumAcks,
      reads,
      idempotentRepeats,
    };
  } finally {
    await cluster.stop();
  }
}

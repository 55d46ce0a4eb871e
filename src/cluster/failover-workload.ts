// A seeded failover scenario on the simulated cluster (topology on): clients write a `global` table
// (quorum and local durability), a partitioned table and a local table at random sites, which
// forward owned writes to the owner they know; on the seed's plan the owner crashes, is isolated
// (both ways or one way), pauses longer than its lease, a switchover runs (with a partition in the
// middle), voters restart, clocks drift; the new owner crashes before it compensates the old
// owner's void writes (`new-owner-crash`), or bootstraps from the old owner's snapshot while that
// holds them (`old-owner-snapshot`). Then everything heals and converges, and the history of
// every admitted write is checked:
//   - `two-owners`: never two sites admitting writes of one unit in overlapping intervals (per site
//     and lease epoch: from its first to its last admission);
//   - `acked-quorum-write-lost`: every acknowledged quorum write is at every site at the end;
//   - `local-write-voided`: every acknowledged write of a `local` table is at every site;
//   - `epochs-differ` / `not-converged`: every site ends at the same epoch and vector;
//   - `no-owner`: after the heal, every unit has an owner again;
//   - `switchover-voided`: a planned switchover (fenced while an fdatasync of the owner is in
//     flight) voids no write: RPO 0.
import { assert } from '../core/assert.js';
import { RequestError } from '../core/errors.js';
import { member } from '../topology/record.js';
import { simSiteIds, SimCluster, type SimSite } from './sim-cluster.js';
import type { WriteOutcome } from '../site/site-node.js';
import type { ItemRecord } from '../store/types.js';
import { units } from '../topology/record.js';
import { limits } from '../limits.js';
import { injectSiteFault, overlappingAdmissions } from './sim-faults.js';

export type FailoverFault =
  | 'crash'
  | 'isolate'
  | 'one-way'
  | 'pause'
  | 'switchover'
  | 'switchover-partition'
  | 'voter-restart'
  | 'drift'
  | 'isolate-failover'
  | 'members'
  | 'new-owner-crash'
  | 'old-owner-snapshot';
export const failoverFaults: readonly FailoverFault[] = ['crash', 'isolate', 'one-way', 'pause', 'switchover', 'switchover-partition', 'voter-restart', 'drift', 'isolate-failover', 'new-owner-crash', 'old-owner-snapshot'];

export interface FailoverAnomaly {
  kind:
    | 'two-owners'
    | 'acked-quorum-write-lost'
    | 'local-write-voided'
    | 'epochs-differ'
    | 'not-converged'
    | 'no-owner'
    | 'no-home-unit'
    | 'digests-differ'
    | 'void-not-in-feed'
    | 'acked-after-cut'
    | 'switchover-voided'
    | 'retried-increment-applied-twice';
  detail: string;
}

export interface FailoverResult {
  seed: number;
  fault: FailoverFault;
  anomalies: FailoverAnomaly[];
  acked: number;
  ackedQuorum: number;
  failed: number;
  unknown: number;
  epochs: number;
  /** sim ms from the fault until the first write of the global table admitted by another site (crash/isolate/pause) */
  promotedAfterMs: number | undefined;
}

export interface FailoverOptions {
  fault?: FailoverFault;
  leaseMs?: number;
  witnesses?: number;
  sites?: number;
  /** weakenings, for showing which check catches which rule (never in production) */
  weaken?: { ackWithoutLeaseCheck?: boolean; noExpiryWait?: boolean };
}

interface AckedWrite {
  table: string;
  key: string;
  value: string;
  durability: 'local' | 'quorum';
  site: string;
  dot: string;
  ackedAtMs: number;
}

export async function runFailoverScenario(seed: number, options: FailoverOptions = {}): Promise<FailoverResult> {
  const leaseMs = options.leaseMs ?? 1_000;
  const sites = options.sites ?? 3;
  const fault = options.fault ?? failoverFaults[seed % failoverFaults.length]!;
  const cluster = await SimCluster.create({
    seed,
    sites,
    witnesses: options.witnesses ?? 0,
    network: { oneWayDelayMsMean: 5, oneWayDelayMsJitter: 3 },
    // a pause should often land between a commit and its sync (its acknowledgement waits past it);
    // so should a switchover's fence (a write numbered before it and still syncing is in the cut)
    // (slow disks: the fence, decided a voting round after the write, still finds it syncing)
    disk: { fsyncDelayMsMax: fault === 'switchover' ? 150 : fault === 'pause' || fault === 'switchover-partition' ? 40 : 5 },
    heartbeatMs: 100,
    topology: { leaseMs, commitBudgetMs: Math.floor(leaseMs / 10), driftRateMax: 0.01 },
    ...(options.weaken?.noExpiryWait ? { unsafeTopology: { expiryMs: 0 } } : {}),
    tables: {
      ledger: { pattern: 'global', writeSite: 'us-east', durability: 'quorum' },
      tally: { pattern: 'global', writeSite: 'us-east', conflict: 'crdt', fields: { n: 'counter' }, durability: 'quorum' },
      orders: { pattern: 'partitioned', home: { from: 'key-prefix', separator: ':' } },
      profiles: { pattern: 'local' },
    },
  });
  const { world } = cluster;
  const rnd = world.random.fork('failover-workload');
  const acked: AckedWrite[] = [];
  let failed = 0;
  let unknown = 0;
  let n = 0;
  let stopWriting = false;
  let paused = false;
  let faultAtMs = -1;
  let victim = 'us-east';
  // the sites writes enter at (membership changes move it: a joining site takes none, a leaving one is drained)
  let ids = cluster.siteIds;
  /** `members`: the site added online, whose own partition of `orders` must take writes once it is active */
  let joined: string | undefined;
  const inFlight = new Set<Promise<void>>();

  const writeOnce = async (at?: string) => {
    const entry = cluster.site(at ?? ids[rnd.int(ids.length)]!);
    if (entry === undefined) return;
    const which = at !== undefined ? 0 : rnd.int(10);
    const id = `w${++n}`;
    const table = which < 5 ? 'ledger' : which < 8 ? 'orders' : 'profiles';
    const key = table === 'orders' ? `${ids[rnd.int(ids.length)]}:${id}` : id;
    const durability: 'local' | 'quorum' = table === 'ledger' ? (rnd.int(4) === 0 ? 'local' : 'quorum') : 'local';
    // the entry site sends owned writes to the owner it knows (one hop, as the HTTP layer does)
    let site: SimSite = entry;
    try {
      const owner = entry.node.writeOwner(entry.node.table(table), key);
      if (owner !== undefined) {
        const o = cluster.site(owner);
        if (o === undefined) throw RequestError.unavailable('owner-unavailable', `${owner} is down`);
        site = o;
        if (site.node.writeOwner(site.node.table(table), key) !== undefined) throw RequestError.unavailable('owner-changed', 'moved');
      }
      const outcome: WriteOutcome = await site.node.write(site.node.table(table), key, { op: 'put', value: { v: id } }, durability === 'quorum' ? { awaitsAck: true } : {});
      if (durability === 'quorum' && !(await site.replicator.awaitDurability(outcome.dot, 'quorum'))) {
        unknown++;
        return;
      }
      if (!options.weaken?.ackWithoutLeaseCheck && !site.node.acknowledgeable(outcome)) {
        unknown++;
        return;
      }
      acked.push({ table, key, value: id, durability, site: site.id, dot: outcome.dot, ackedAtMs: world.clock.monotonicMs() });
    } catch (e) {
      if (e instanceof RequestError && e.status === 503) failed++;
      else if (e instanceof RequestError && e.status >= 400 && e.status < 500) failed++;
      else unknown++;
    }
  };

  // Increments of one counter under Idempotency-Keys, each repeated at another site (at once, or
  // after an unknown outcome): every key must count once, whatever failed over in between.
  const increments = { acked: new Set<string>(), tried: new Set<string>() };
  const incrementOnce = async (idemKey: string): Promise<'acked' | 'failed' | 'unknown'> => {
    const entry = cluster.site(ids[rnd.int(ids.length)]!);
    if (entry === undefined) return 'failed';
    try {
      const table = entry.node.table('tally');
      const owner = entry.node.writeOwner(table, 't');
      const site = owner === undefined ? entry : cluster.site(owner);
      if (site === undefined || site.node.writeOwner(site.node.table('tally'), 't') !== undefined) return 'failed';
      const r = await site.node.write(site.node.table('tally'), 't', { op: 'patch', patch: { increment: { n: 1 } } }, { awaitsAck: true, idempotencyKey: idemKey });
      const dot = r.dot;
      if (!(await site.replicator.awaitDurability(dot, 'quorum'))) return 'unknown';
      return site.node.acknowledgeable(r) ? 'acked' : 'unknown';
    } catch (e) {
      return e instanceof RequestError && e.status < 500 ? 'failed' : e instanceof RequestError && e.status === 503 ? 'failed' : 'unknown';
    }
  };
  const incrementWithRetry = async () => {
    const idemKey = `inc-${++n}`;
    increments.tried.add(idemKey);
    let outcome = await incrementOnce(idemKey);
    if (outcome !== 'acked' || rnd.int(3) === 0) {
      const again = await incrementOnce(idemKey);
      if (again === 'acked') outcome = 'acked';
    }
    if (outcome === 'acked') increments.acked.add(idemKey);
  };

  const load = () => {
    if (stopWriting) return;
    if (paused) {
      world.timers.after(20, load);
      return;
    }
    if (rnd.int(4) === 0) {
      const p = incrementWithRetry();
      inFlight.add(p);
      void p.finally(() => inFlight.delete(p));
    }
    const p = writeOnce();
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
    world.timers.after(20, load);
  };

  const ownerOfLedger = () => {
    for (const id of ids) {
      const t = cluster.site(id)?.topology;
      if (t) return t.record().owners['ledger'] ?? null;
    }
    return null;
  };

  try {
    await world.runUntil(() => ids.every((id) => cluster.site(id)!.node.originConfirmed), { timeoutMs: 10_000 });
    await world.runFor(leaseMs);
    load();
    await world.runFor(500 + rnd.int(1_000));
    victim = ownerOfLedger() ?? 'us-east';
    faultAtMs = world.clock.monotonicMs();
    const others = ids.filter((s) => s !== victim);
    switch (fault) {
      case 'crash':
      case 'isolate':
      case 'one-way':
      case 'pause':
        // the owner hears everyone and nobody hears it (`one-way`): it must stop writing, and failover must not livelock
        await injectSiteFault(cluster, fault, victim, { leaseMs, holdMs: 3 * leaseMs, rnd });
        break;
      case 'switchover':
      case 'switchover-partition': {
        const to = others[rnd.int(others.length)]!;
        // a planned switchover is run by the owner itself (its fence is local, at once) or by another site
        const by = cluster.site(fault === 'switchover' && rnd.chance(0.5) ? victim : ids[rnd.int(ids.length)]!)!.topology!;
        if (fault === 'switchover') {
          // fence while a write of the owner is committed and its fdatasync still in flight: it
          // was numbered before the fence, so it must be inside the cut (or never acknowledged)
          const store = cluster.site(victim)!.node.store;
          const origin = cluster.site(victim)!.node.origin;
          const p = writeOnce(victim);
          inFlight.add(p);
          void p.finally(() => inFlight.delete(p));
          await world.runUntil(() => (store.committedVector()[origin] ?? 0) > (store.vector()[origin] ?? 0), { timeoutMs: 2_000 }).catch(() => undefined);
        }
        const plan = by.planFailover({ table: 'ledger', to });
        const done = by.switchover(plan, { by: 'sim', why: 'planned' }, 5_000).catch(() => undefined);
        if (fault === 'switchover-partition') {
          await world.runFor(rnd.int(30));
          world.network.partition({ kind: 'isolate-site', site: rnd.int(2) === 0 ? victim : to });
          await world.runFor(3 * leaseMs);
          world.network.heal();
        }
        let settled = false;
        void done.finally(() => (settled = true));
        await world.runUntil(() => settled, { timeoutMs: 30_000 });
        break;
      }
      case 'isolate-failover': {
        // an operator fails the table over at once from the majority side while the owner, cut
        // off, still holds its lease: the new owner must wait until that lease has certainly expired
        world.network.partition({ kind: 'isolate-site', site: victim });
        const to = others[rnd.int(others.length)]!;
        const by = cluster.site(to)!.topology!;
        let settled = false;
        void by
          .failover(by.planFailover({ table: 'ledger', to }), { by: 'sim', why: 'operator failover' }, 10_000)
          .catch(() => undefined)
          .finally(() => (settled = true));
        await world.runUntil(() => settled, { timeoutMs: 30_000 });
        await world.runFor(leaseMs);
        world.network.heal();
        break;
      }
      case 'voter-restart': {
        // a voter (not the owner) restarts twice in a row while the owner crashes
        const voter = others[rnd.int(others.length)]!;
        await cluster.crash(voter);
        await cluster.start(voter);
        await cluster.crash(victim);
        await world.runFor(leaseMs / 2);
        await cluster.crash(voter);
        await cluster.start(voter);
        // the restarted voter counts a site it has not granted since as failed only after its start grace
        await world.runFor(limits.ownerStartGraceMs + 2 * leaseMs);
        await cluster.start(victim);
        break;
      }
      case 'members': {
        // a site is added mid-run (joins, catches up, becomes active), then an original site that
        // does not own the ledger is drained, evacuated and removed, all under load
        const settle = async <T>(p: Promise<T>, timeoutMs = 30_000): Promise<T> => {
          let done = false;
          let value: T | undefined;
          let error: unknown;
          p.then((v) => (value = v), (e: unknown) => (error = e)).finally(() => (done = true));
          await world.runUntil(() => done, { timeoutMs });
          if (error !== undefined) throw error;
          return value!;
        };
        const who = { by: 'sim', why: 'membership online' };
        const joiner = simSiteIds[ids.length]!;
        joined = joiner;
        const by = cluster.site(others[rnd.int(others.length)]!)!.topology!;
        await settle(by.addMember({ id: joiner, url: `http://${joiner}` }, who));
        await cluster.join(joiner);
        await world.runUntil(() => member(by.record(), joiner)?.state === 'active', { timeoutMs: 30_000 });
        ids = [...ids, joiner];
        await world.runFor(1_000 + rnd.int(1_000));
        const leaving = others[rnd.int(others.length)]!;
        ids = ids.filter((s) => s !== leaving);
        const driver = cluster.site(ids[rnd.int(ids.length)]!)!.topology!;
        await settle(driver.setMemberState(leaving, 'draining', who));
        const plan = driver.planFailover({ site: leaving }).filter((m) => m.from === leaving && m.to !== '(none)');
        if (plan.length > 0) await settle(driver.switchover(plan, who, 10_000));
        await settle(driver.setMemberState(leaving, 'evacuated', who));
        await world.runFor(300);
        await settle(driver.removeMember(leaving, who, 20_000));
        await world.runFor(500);
        await cluster.retire(leaving);
        await world.runFor(1_000);
        break;
      }
      case 'new-owner-crash':
      case 'old-owner-snapshot': {
        // the owner is cut off and goes on admitting writes under its lease: beyond the cut
        world.network.partition({ kind: 'isolate-site', site: victim });
        const view = () => cluster.site(others[0]!)?.topology?.record();
        await world.runUntil(() => {
          const o = view()?.owners['ledger'];
          return o !== undefined && o !== null && o !== victim;
        }, { timeoutMs: 30_000 });
        const promoted = view()!.owners['ledger']!;
        const old = cluster.site(victim)!.node.origin;
        const cut = view()!.cuts.filter((c) => c.origin === old).reduce((m, c) => Math.max(m, c.seq), 0);
        await world.runFor(leaseMs);
        if (fault === 'new-owner-crash') {
          world.network.heal();
          // the new owner crashes as soon as it has applied the first entries beyond the cut (its
          // compensation is queued, not committed), and is back within a lease: it stays the owner
          await world.runUntil(() => (cluster.site(promoted)?.node.vector()[old] ?? 0) > cut, { timeoutMs: 10_000 });
          await cluster.crash(promoted);
          await world.runFor(rnd.int(Math.floor(leaseMs / 4)));
          await cluster.start(promoted);
          break;
        }
        // the new owner loses its disk once the others hold all it wrote, and bootstraps again while
        // it reaches only the old owner, whose state holds the void writes
        paused = true;
        const third = others.find((s) => s !== promoted)!;
        await world.runUntil(() => inFlight.size === 0, { timeoutMs: 10_000 }).catch(() => undefined);
        const mine = cluster.site(promoted)!.node.origin;
        await world.runUntil(() => (cluster.site(third)!.node.vector()[mine] ?? 0) >= (cluster.site(promoted)!.node.vector()[mine] ?? 0), { timeoutMs: 10_000 });
        world.network.heal();
        world.network.cutLink(promoted, third);
        world.network.cutLink(third, promoted);
        await cluster.wipe(promoted);
        await cluster.start(promoted);
        paused = false;
        await world.runFor(2 * leaseMs);
        world.network.heal();
        break;
      }
      case 'drift': {
        // wall clocks off by up to a lease either way, then the owner crashes
        for (const id of ids) world.setSkew(id, rnd.int(2 * leaseMs + 1) - leaseMs);
        await world.runFor(leaseMs);
        await cluster.crash(victim);
        await world.runFor(4 * leaseMs);
        await cluster.start(victim);
        break;
      }
    }
    await world.runFor(1_000);
    stopWriting = true;
    // a write at a site that crashed never settles: its outcome is unknown, like any other cut short
    await world.runUntil(() => inFlight.size === 0, { timeoutMs: 10_000 }).catch(() => undefined);
    await world.runUntil(
      () =>
        ids.every((id) => cluster.site(id) !== undefined) &&
        cluster.converged() &&
        new Set(ids.map((id) => cluster.site(id)!.topology!.epoch())).size === 1 &&
        units(cluster.site(ids[0]!)!.topology!.record()).every((u) => u.owner !== null),
      { timeoutMs: 60_000 },
    ).catch(() => undefined);
    const anomalies = await check(cluster, acked, fault);
    if (joined !== undefined && !acked.some((a) => a.table === 'orders' && a.key.startsWith(`${joined}:`)))
      anomalies.push({ kind: 'no-home-unit', detail: `no write of partition ${joined} of orders was acknowledged: the site added online homes nothing` });
    // each key's increment counts once: between the keys acknowledged and every key tried
    for (const id of ids) {
      const s = cluster.site(id);
      if (s === undefined) continue;
      const v = ((await s.node.get(s.node.table('tally'), 't'))?.value as { n?: number } | undefined)?.n ?? 0;
      if (v < increments.acked.size || v > increments.tried.size)
        anomalies.push({ kind: v > increments.tried.size ? 'retried-increment-applied-twice' : 'acked-quorum-write-lost', detail: `tally/t is ${v} at ${id}: ${increments.acked.size} keyed increments acknowledged, ${increments.tried.size} tried` });
    }
    const promoted = cluster.admissions.find((a) => a.atMs > faultAtMs && a.site !== victim && a.items.some((i) => i.table === 'ledger'));
    return {
      seed,
      fault,
      anomalies,
      acked: acked.length,
      ackedQuorum: acked.filter((a) => a.durability === 'quorum').length,
      failed,
      unknown,
      epochs: cluster.site(ids[0]!)?.topology?.epoch() ?? 0,
      promotedAfterMs: fault === 'crash' || fault === 'isolate' || fault === 'pause' || fault === 'one-way' || fault === 'isolate-failover' ? (promoted ? promoted.atMs - faultAtMs : undefined) : undefined,
    };
  } finally {
    await cluster.stop();
  }
}

async function check(cluster: SimCluster, acked: AckedWrite[], fault: FailoverFault): Promise<FailoverAnomaly[]> {
  const anomalies: FailoverAnomaly[] = [];
  const ids = cluster.siteIds;
  const live = ids.map((id) => cluster.site(id)).filter((s): s is SimSite => s !== undefined);
  assert(live.length > 0, 'some site is up');
  if (!cluster.converged()) anomalies.push({ kind: 'not-converged', detail: JSON.stringify(cluster.vectors()) });
  else {
    const digests = await cluster.digests();
    const first = JSON.stringify(digests[live[0]!.id]);
    for (const s of live)
      if (JSON.stringify(digests[s.id]) !== first)
        anomalies.push({ kind: 'digests-differ', detail: `${s.id} vs ${live[0]!.id}: ${(await itemsDiffering(live[0]!, s)).join('; ')}` });
  }
  const epochs = new Set(live.map((s) => s.topology!.epoch()));
  if (epochs.size > 1) anomalies.push({ kind: 'epochs-differ', detail: [...epochs].join(', ') });
  for (const u of units(live[0]!.topology!.record())) if (u.owner === null) anomalies.push({ kind: 'no-owner', detail: `${u.unit} has no owner after the heal` });

  // two owners: per unit, the [first, last] admission of each (site, epoch) must not overlap another site's
  const topo = live[0]!.topology!;
  const unitOf = (it: { table: string; key: string }) => {
    const unit = topo.unitFor(it.table, live[0]!.node.table(it.table).config, it.key);
    return unit === undefined ? [] : [unit];
  };
  for (const detail of overlappingAdmissions(cluster.admissions, unitOf)) anomalies.push({ kind: 'two-owners', detail });

  // every voided value is in every site's conflict feed: an admitted owned write whose item is gone
  // everywhere was voided (keys are written once), and each site lists exactly the same voided dots
  const voidedAt = new Map<string, Set<string>>();
  for (const s of live) {
    const dots = new Set<string>();
    for (const table of ['ledger', 'orders']) {
      let after = 0;
      for (;;) {
        const page = await s.node.store.conflicts(table, after, 1000);
        if (page.length === 0) break;
        after = page[page.length - 1]!.id;
        for (const c of page) if (c.record.reason === 'voided') dots.add(c.record.loserDot);
      }
    }
    voidedAt.set(s.id, dots);
  }
  const firstVoided = voidedAt.get(live[0]!.id)!;
  for (const s of live) {
    const mine = voidedAt.get(s.id)!;
    const diff = [...mine].filter((d) => !firstVoided.has(d)).concat([...firstVoided].filter((d) => !mine.has(d)));
    if (diff.length > 0) anomalies.push({ kind: 'void-not-in-feed', detail: `${s.id} and ${live[0]!.id} list different voided writes: ${diff.slice(0, 5).join(', ')}` });
  }
  // a planned switchover has RPO 0: its cut holds every write numbered before the fence, so it voids nothing
  if (fault === 'switchover' && firstVoided.size > 0)
    anomalies.push({ kind: 'switchover-voided', detail: `a planned switchover voided ${[...firstVoided].slice(0, 5).join(', ')}` });
  for (const a of cluster.admissions)
    for (const it of a.compensates ? [] : a.items) {
      const rec = await live[0]!.node.get(live[0]!.node.table(it.table), it.key);
      if (rec === undefined && !firstVoided.has(a.dot))
        anomalies.push({ kind: 'void-not-in-feed', detail: `${it.table}/${it.key} (${a.dot}, admitted by ${a.site} at epoch ${a.epoch}) is gone but in no conflict feed as voided` });
    }

  // a voided write may have been acknowledged (local durability: RPO), but never after a new owner
  // was admitting writes of its unit: by then the old lease had certainly expired
  const byDot = new Map(cluster.admissions.map((a) => [a.dot, a]));
  for (const w of acked) {
    if (!firstVoided.has(w.dot)) continue;
    const own = byDot.get(w.dot);
    if (own === undefined) continue;
    const unit = topo.unitFor(w.table, live[0]!.node.table(w.table).config, w.key);
    const later = cluster.admissions.find(
      (a) => a.site !== own.site && a.epoch > own.epoch && a.atMs < w.ackedAtMs && a.items.some((i) => topo.unitFor(i.table, live[0]!.node.table(i.table).config, i.key) === unit),
    );
    if (later !== undefined)
      anomalies.push({ kind: 'acked-after-cut', detail: `${w.table}/${w.key} (${w.dot}) was acknowledged by ${w.site} at ${w.ackedAtMs} ms, after ${later.site} admitted ${later.dot} at epoch ${later.epoch} (${later.atMs} ms), and is void` });
  }

  for (const w of acked) {
    if (w.table !== 'profiles' && w.durability !== 'quorum') continue;
    for (const s of live) {
      const rec = await s.node.get(s.node.table(w.table), w.key);
      const v = (rec?.value as { v?: string } | undefined)?.v;
      if (v !== w.value)
        anomalies.push({
          kind: w.table === 'profiles' ? 'local-write-voided' : 'acked-quorum-write-lost',
          detail: `${w.table}/${w.key} (${w.dot}, acked by ${w.site}) is ${v === undefined ? 'missing' : `"${v}"`} at ${s.id}`,
        });
    }
  }
  return anomalies;
}

/** The first items two sites hold differently (table/key and each side's value, dot and liveness). */
async function itemsDiffering(a: SimSite, b: SimSite, max = 3): Promise<string[]> {
  const out: string[] = [];
  const show = (r: ItemRecord | undefined) => (r === undefined ? 'absent' : `${r.live ? JSON.stringify(r.value) : 'deleted'} @${r.state.w.d}`);
  for (const table of [...a.node.tables.keys()]) {
    const all = async (s: SimSite) => {
      const m = new Map<string, ItemRecord>();
      for (let after: string | undefined; ; ) {
        const page = await s.node.store.scanItems({ table, limit: 1000, ...(after !== undefined ? { after } : {}) });
        if (page.length === 0) break;
        after = page[page.length - 1]!.key;
        for (const r of page) m.set(r.key, r);
      }
      return m;
    };
    const [ma, mb] = [await all(a), await all(b)];
    for (const key of new Set([...ma.keys(), ...mb.keys()])) {
      const [ra, rb] = [ma.get(key), mb.get(key)];
      if (ra?.hash === rb?.hash && ra?.live === rb?.live) continue;
      out.push(`${table}/${key}: ${a.id} ${show(ra)}, ${b.id} ${show(rb)}`);
      if (out.length >= max) return out;
    }
  }
  return out;
}

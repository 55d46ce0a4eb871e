// A seeded failover scenario driven through the real HTTP layer (SimCluster with `http` on): every
// site runs buildSiteServer behind the simulated network, so owner forwards, the owner-wait loop,
// switchover parking, 502 outcome-unknown, Idempotency-Key replays, Tandem-Session tokens, 410
// session-lost and session reads (waiting, or sent on to a covering peer) all run under the faults.
// Clients stand next to a random site (never cut from it) and send:
//   - PUTs of fresh keys to a `global` quorum table (`ledger`, owned by us-east; 1 in 4 at `local`
//     durability) and to a `local` table (`profiles`);
//   - increments of one `global` crdt counter (`tally/t`) under an Idempotency-Key, repeated at
//     another site after a 502, 503, 504 or no answer (and sometimes after a 200);
//   - compare-and-sets of one ledger key (a strong read, then If-Match), two clients racing;
//   - session clients: each holds a Tandem-Session token, writes (and now and then deletes) its own
//     keys (ledger at quorum or local durability, or profiles) and reads them back with `Tandem-Consistency: session` at random
//     sites; after a 410 session-lost it starts a new session with new keys.
// On the seed's plan the ledger's owner crashes, is isolated (both ways, or `one-way`: it reaches
// nobody, everyone reaches it), pauses longer than its lease, or hands its tables over to another
// site (a planned switchover under load; `switchover-partition`: one of the two is cut off in the
// middle of it). Then everything heals and
// converges, and the answers are checked:
//   - `session-went-back`: a session read (200 or 404) without the session's latest acknowledged
//     write of that key (an older value, or none where no delete was sent); a 410 is the reported RPO;
//   - `session-lost-quorum-write`: a 410 naming the dot of a quorum-acknowledged write;
//   - `acked-quorum-write-lost` / `local-write-lost`: every acknowledged quorum write (and every
//     write of the `local` table) is at every site at the end, or a later value of its key;
//   - `retried-increment-applied-twice` / `acked-increment-lost`: every 200 for one idempotency key
//     names the same dot; the counter is at least the number of keys acknowledged and at most the
//     number tried;
//   - `cas-lost-update`: two compare-and-sets (strong read, then PUT n + 1 with If-Match) both
//     acknowledged for one n;
//   - `strong-read-stale`: a strong read of a ledger key (at any site) without the latest write of it
//     acknowledged at quorum durability before the read was sent (older value, or none);
//   - `server-error`: any 500;
//   - `not-converged`: every site ends at the same vector.
import { assert } from '../core/assert.js';
import { units } from '../topology/record.js';
import { decodeSession } from '../site/session.js';
import type { SimNetworkOptions } from '../platform/sim/index.js';
import { SimCluster, type SimHttpAnswer, type SimSite } from './sim-cluster.js';
import { injectSiteFault } from './sim-faults.js';

export type HttpFault = 'crash' | 'isolate' | 'pause' | 'switchover' | 'one-way' | 'switchover-partition';
export const httpFaults: readonly HttpFault[] = ['crash', 'isolate', 'pause', 'switchover', 'one-way', 'switchover-partition'];

export interface HttpAnomaly {
  kind:
    | 'session-went-back'
    | 'session-lost-quorum-write'
    | 'acked-quorum-write-lost'
    | 'local-write-lost'
    | 'retried-increment-applied-twice'
    | 'acked-increment-lost'
    | 'server-error'
    | 'strong-read-stale'
    | 'cas-lost-update'
    | 'not-converged';
  detail: string;
}

export interface HttpResult {
  seed: number;
  fault: HttpFault;
  anomalies: HttpAnomaly[];
  /** answers by status (`0:refused`, `0:reset`, `0:timeout` for none) */
  statuses: Record<string, number>;
  /** 503 answers by problem type */
  unavailable: Record<string, number>;
  /** 502 answers with Tandem-Outcome: unknown */
  outcomeUnknown: number;
  /** 2xx writes (every client) */
  acked: number;
  ackedQuorum: number;
  /** 2xx writes answered by another site than the one the client sent them to */
  forwarded: number;
  /** session reads answered (any status) and those answered 200 or 404 */
  sessionReads: number;
  sessionReadsServed: number;
  /** strong reads of quorum-acknowledged ledger keys answered (any status), and those answered 200 or 404 */
  strongReads: number;
  strongReadsServed: number;
  /** 410 session-lost answers (sessions dropped: reported RPO) */
  sessionsLost: number;
  increments: { tried: number; acked: number; retried: number; replayed: number };
  /** compare-and-sets (If-Match) acknowledged, and refused 412 */
  cas: { acked: number; refused: number };
  /** 2xx ledger writes committed by another site than the failed owner after the fault */
  ackedAfterFault: number;
}

export interface HttpOptions {
  fault?: HttpFault;
  leaseMs?: number;
  /** session clients (default 4) */
  sessionClients?: number;
  /** network knobs over the scenario's (5 ± 3 ms one way, nothing lost), e.g. dropProbability */
  network?: Partial<SimNetworkOptions>;
  /** compare-and-set clients (default 2) */
  casClients?: number;
  /** a PUT (and one time in four a keyed increment, one in four a strong read) every this many ms (default 20) */
  loadIntervalMs?: number;
}

interface AckedWrite {
  table: string;
  key: string;
  /** the write's number (the value's `n`; a delete has one too, and no value) */
  n: number;
  deleted: boolean;
  durability: 'local' | 'quorum';
  site: string;
  dot: string;
}

interface SessionClient {
  id: number;
  generation: number;
  token: string | undefined;
  /** table/key → the latest acknowledged write of it in this session */
  latest: Map<string, { n: number; deleted: boolean; dot: string; durability: 'local' | 'quorum' }>;
}

const clientTimeoutMs = 12_000;

export async function runHttpScenario(seed: number, options: HttpOptions = {}): Promise<HttpResult> {
  const leaseMs = options.leaseMs ?? 1_000;
  const fault = options.fault ?? httpFaults[seed % httpFaults.length]!;
  const cluster = await SimCluster.create({
    seed,
    sites: 3,
    http: true,
    network: { oneWayDelayMsMean: 5, oneWayDelayMsJitter: 3, ...options.network },
    disk: { fsyncDelayMsMax: fault === 'switchover' || fault === 'switchover-partition' || fault === 'pause' ? 40 : 5 },
    heartbeatMs: 100,
    topology: { leaseMs, commitBudgetMs: Math.floor(leaseMs / 10), driftRateMax: 0.01 },
    tables: {
      ledger: { pattern: 'global', writeSite: 'us-east', durability: 'quorum' },
      tally: { pattern: 'global', writeSite: 'us-east', conflict: 'crdt', fields: { n: 'counter' }, durability: 'quorum' },
      profiles: { pattern: 'local' },
    },
  });
  const { world } = cluster;
  const rnd = world.random.fork('http-workload');
  const ids = cluster.siteIds;
  const anomalies: HttpAnomaly[] = [];
  const statuses: Record<string, number> = {};
  const unavailable: Record<string, number> = {};
  let outcomeUnknown = 0;
  let forwarded = 0;
  let sessionReads = 0;
  let sessionReadsServed = 0;
  let sessionsLost = 0;
  let ackedAfterFault = 0;
  const acked: AckedWrite[] = [];
  const quorumDots = new Set<string>();
  /** table/key → its quorum-acknowledged write of the highest n so far */
  const quorumLatest = new Map<string, { n: number; deleted: boolean }>();
  /** table/key → the highest n of the deletes sent for it (whatever their answer: an unknown outcome may have applied) */
  const deletesSent = new Map<string, number>();
  /** whether the item may be missing after write n of it (a delete of it sent since, or n was one) */
  const mayBeGone = (path: string, n: number) => (deletesSent.get(path) ?? -1) >= n;
  let strongReads = 0;
  let strongReadsServed = 0;
  let n = 0;
  let stopWriting = false;
  let faultAtMs = Infinity;
  let victim = 'us-east';
  const inFlight = new Set<Promise<void>>();
  const track = (p: Promise<void>) => {
    inFlight.add(p);
    void p.finally(() => inFlight.delete(p));
  };
  const anySite = () => ids[rnd.int(ids.length)]!;
  const sleep = (ms: number) => new Promise<void>((resolve) => world.timers.after(ms, resolve));

  /** Sends, and tallies the answer: statuses, 503 types, 502 unknown, 500s (always a bug). */
  const send = async (site: string, method: string, path: string, headers: Record<string, string>, body?: unknown): Promise<SimHttpAnswer> => {
    const a = await cluster.request(site, { method, path, headers, ...(body !== undefined ? { body } : {}), timeoutMs: clientTimeoutMs });
    const label = a.status === 0 ? `0:${a.error}` : String(a.status);
    statuses[label] = (statuses[label] ?? 0) + 1;
    const problem = (a.body as { type?: string; detail?: string } | undefined) ?? {};
    if (a.status === 503) {
      const t = String(problem.type ?? 'untyped').replace('https://tandem.dev/problems/', '');
      unavailable[t] = (unavailable[t] ?? 0) + 1;
    }
    if (a.status === 502 && a.headers['tandem-outcome'] === 'unknown') outcomeUnknown++;
    if (a.status >= 500 && a.status !== 502 && a.status !== 503 && a.status !== 504)
      anomalies.push({ kind: 'server-error', detail: `${method} ${path} at ${site} answered ${a.status} at ${world.clock.monotonicMs()} ms: ${problem.detail ?? JSON.stringify(a.body)}` });
    return a;
  };

  /** A 2xx write: recorded as acknowledged (and as forwarded when another site answered it). */
  const ackedWrite = (entry: string, a: SimHttpAnswer, table: string, key: string, n: number, durability: 'local' | 'quorum', deleted = false) => {
    const b = a.body as { dot: string; origin: string };
    acked.push({ table, key, n, deleted, durability, site: b.origin, dot: b.dot });
    if (durability === 'quorum' && table !== 'profiles') {
      quorumDots.add(b.dot);
      const path = `${table}/${key}`;
      if ((quorumLatest.get(path)?.n ?? -1) < n) quorumLatest.set(path, { n, deleted });
    }
    if (a.headers['tandem-site'] !== entry) forwarded++;
    if (table === 'ledger' && b.origin !== victim && world.clock.monotonicMs() > faultAtMs) ackedAfterFault++;
  };

  const itemPath = (table: string, key: string) => `/v1/tables/${table}/items/${encodeURIComponent(key)}`;

  const writeOnce = async () => {
    const entry = anySite();
    const which = rnd.int(10);
    const key = `w${++n}`;
    const table = which < 7 ? 'ledger' : 'profiles';
    const durability: 'local' | 'quorum' = table === 'ledger' && rnd.int(4) !== 0 ? 'quorum' : 'local';
    const a = await send(entry, 'PUT', itemPath(table, key), { 'tandem-durability': durability }, { v: key, n: 0 });
    if (a.status === 200) ackedWrite(entry, a, table, key, 0, durability);
  };

  // Increments of one counter under Idempotency-Keys, repeated at another site after anything
  // but a 200 (and now and then after a 200): every key must count once.
  const increments = { tried: new Set<string>(), acked: new Set<string>(), dots: new Map<string, string>(), retried: 0, replayed: 0 };
  const incrementWithRetry = async () => {
    const idemKey = `inc-${++n}`;
    increments.tried.add(idemKey);
    let site = anySite();
    for (let attempt = 0; attempt < 4; attempt++) {
      if (attempt > 0) {
        increments.retried++;
        site = ids.filter((s) => s !== site)[rnd.int(ids.length - 1)]!;
        await sleep(50 + rnd.int(300));
      }
      const a = await send(site, 'PATCH', itemPath('tally', 't'), { 'idempotency-key': idemKey }, { increment: { n: 1 } });
      if (a.status === 200) {
        increments.acked.add(idemKey);
        // a repeat answers the first write (its dot), whichever site it reached and whatever failed over since
        const dot = (a.body as { dot: string }).dot;
        const first = increments.dots.get(idemKey);
        if (first === undefined) increments.dots.set(idemKey, dot);
        else if (first !== dot) anomalies.push({ kind: 'retried-increment-applied-twice', detail: `Idempotency-Key ${idemKey} answered ${first}, then ${dot} at ${site}` });
        if (a.headers['idempotent-replayed'] === 'true') increments.replayed++;
        if (rnd.int(4) !== 0) return;
      } else if (a.status >= 400 && a.status < 500) return;
    }
  };

  // Session clients: write own keys, read them back with Tandem-Consistency: session anywhere.
  const sessionLoop = async (c: SessionClient) => {
    const lost = (a: SimHttpAnswer, what: string) => {
      sessionsLost++;
      const dots = ((a.body as { lost?: string[] } | undefined)?.lost ?? []).filter((d) => quorumDots.has(d));
      if (dots.length > 0) anomalies.push({ kind: 'session-lost-quorum-write', detail: `session ${c.id}.${c.generation}: ${what} answered 410 naming quorum-acknowledged ${dots.join(', ')}` });
      c.generation++;
      c.token = undefined;
      c.latest.clear();
    };
    while (!stopWriting) {
      const key = `s${c.id}.${c.generation}-${rnd.int(3)}`;
      const table = rnd.int(4) === 0 ? 'profiles' : 'ledger';
      const durability: 'local' | 'quorum' = table === 'ledger' && rnd.int(3) !== 0 ? 'quorum' : 'local';
      const value = ++n;
      const entry = anySite();
      // one write in five of a key this session holds is a delete
      const deleting = c.latest.get(`${table}/${key}`)?.deleted === false && rnd.int(5) === 0;
      if (deleting) deletesSent.set(`${table}/${key}`, value);
      const headers = { 'tandem-durability': durability, ...(c.token !== undefined ? { 'tandem-session': c.token } : {}) };
      const w = deleting ? await send(entry, 'DELETE', itemPath(table, key), headers) : await send(entry, 'PUT', itemPath(table, key), headers, { v: key, n: value });
      if (w.status === 410) {
        lost(w, `${deleting ? 'DELETE' : 'PUT'} ${table}/${key} at ${entry}`);
        continue;
      }
      if (w.status === 200) {
        ackedWrite(entry, w, table, key, value, durability, deleting);
        c.token = w.headers['tandem-session'] ?? c.token;
        c.latest.set(`${table}/${key}`, { n: value, deleted: deleting, dot: (w.body as { dot: string }).dot, durability });
      }
      await sleep(20 + rnd.int(40));
      if (c.latest.size === 0 || c.token === undefined) continue;
      const known = [...c.latest.keys()];
      const pick = known[rnd.int(known.length)]!;
      const [rt, rk] = [pick.slice(0, pick.indexOf('/')), pick.slice(pick.indexOf('/') + 1)];
      const expected = c.latest.get(pick)!;
      const at = anySite();
      const token = c.token;
      const r = await send(at, 'GET', itemPath(rt, rk), { 'tandem-consistency': 'session', 'tandem-session': token });
      sessionReads++;
      if (r.status === 410) {
        lost(r, `GET ${pick} at ${at}`);
        continue;
      }
      if (r.status === 200 || r.status === 404) {
        sessionReadsServed++;
        const got = r.status === 200 ? (r.body as { value?: { n?: number } }).value?.n : undefined;
        if (got === undefined ? !mayBeGone(pick, expected.n) : got < expected.n)
          anomalies.push({
            kind: 'session-went-back',
            detail: `session ${c.id}.${c.generation}: GET ${pick} at ${at} (served by ${r.headers['tandem-site']}) at ${world.clock.monotonicMs()} ms answered ${r.status} ${got === undefined ? 'without it' : `n=${got}`}, after its ${expected.deleted ? 'delete' : 'write'} n=${expected.n} (${expected.dot}, ${expected.durability}) was acknowledged (the token's voidable writes: ${decodeSession(token).w.map((x) => `${x.dot}@${x.epoch}`).join(' ') || 'none'})`,
          });
        if (r.status === 200) c.token = r.headers['tandem-session'] ?? c.token;
      }
      await sleep(20 + rnd.int(40));
    }
  };

  // A strong read of a quorum-acknowledged key, at any site (the owner answers): it shows that
  // write, or a later one, whatever failed over since it was acknowledged.
  const strongRead = async () => {
    const keys = [...quorumLatest.keys()];
    if (keys.length === 0) return;
    const pick = keys[rnd.int(keys.length)]!;
    const expected = quorumLatest.get(pick)!;
    const at = anySite();
    const r = await send(at, 'GET', itemPath('ledger', pick.slice('ledger/'.length)), { 'tandem-consistency': 'strong' });
    strongReads++;
    if (r.status !== 200 && r.status !== 404) return;
    strongReadsServed++;
    const got = r.status === 200 ? (r.body as { value?: { n?: number } }).value?.n : undefined;
    if (got === undefined ? !mayBeGone(pick, expected.n) : got < expected.n)
      anomalies.push({ kind: 'strong-read-stale', detail: `GET ${pick} strong at ${at} (served by ${r.headers['tandem-site']}) at ${world.clock.monotonicMs()} ms answered ${r.status} ${got === undefined ? 'without it' : `n=${got}`}, after a quorum ${expected.deleted ? 'delete' : 'write'} n=${expected.n} was acknowledged` });
  };

  // Compare-and-set clients: a strong read of ledger/cas, then a PUT of n + 1 with If-Match on the
  // version read (If-None-Match: * while there is none), under an Idempotency-Key, repeated at
  // another site after anything but an answer. Two acknowledged writes of one n means two
  // compare-and-sets passed on one version: a lost update.
  const casByN = new Map<number, string>();
  const cas = { acked: 0, refused: 0 };
  const casLoop = async () => {
    while (!stopWriting) {
      const r = await send(anySite(), 'GET', itemPath('ledger', 'cas'), { 'tandem-consistency': 'strong' });
      if (r.status === 200 || r.status === 404) {
        const next = r.status === 200 ? ((r.body as { value?: { n?: number } }).value?.n ?? 0) + 1 : 1;
        const condition: Record<string, string> = r.status === 200 ? { 'if-match': r.headers['etag'] ?? '""' } : { 'if-none-match': '*' };
        const idemKey = `cas-${++n}`;
        let site = anySite();
        for (let attempt = 0; attempt < 3 && !stopWriting; attempt++) {
          if (attempt > 0) {
            site = ids.filter((x) => x !== site)[rnd.int(ids.length - 1)]!;
            await sleep(50 + rnd.int(200));
          }
          const w = await send(site, 'PUT', itemPath('ledger', 'cas'), { ...condition, 'idempotency-key': idemKey }, { v: 'cas', n: next });
          if (w.status === 200) {
            cas.acked++;
            const dot = (w.body as { dot: string }).dot;
            const other = casByN.get(next);
            if (other !== undefined && other !== dot) anomalies.push({ kind: 'cas-lost-update', detail: `ledger/cas: two compare-and-sets wrote n=${next}: ${other} and ${dot} (at ${site}, ${world.clock.monotonicMs()} ms)` });
            casByN.set(next, dot);
            if (other === undefined) ackedWrite(site, w, 'ledger', 'cas', next, 'quorum');
            break;
          }
          if (w.status === 412) cas.refused++;
          if (w.status >= 400 && w.status < 500) break;
        }
      }
      await sleep(20 + rnd.int(40));
    }
  };

  const load = () => {
    if (stopWriting) return;
    if (rnd.int(4) === 0) track(incrementWithRetry());
    if (rnd.int(4) === 0) track(strongRead());
    track(writeOnce());
    world.timers.after(options.loadIntervalMs ?? 20, load);
  };

  const ownerOfLedger = () => cluster.site(ids.find((id) => cluster.site(id) !== undefined)!)?.topology?.record().owners['ledger'] ?? null;

  try {
    await world.runUntil(() => ids.every((id) => cluster.site(id)!.node.originConfirmed), { timeoutMs: 10_000 });
    await world.runFor(leaseMs);
    load();
    for (let i = 0; i < (options.sessionClients ?? 4); i++) track(sessionLoop({ id: i, generation: 0, token: undefined, latest: new Map() }));
    for (let i = 0; i < (options.casClients ?? 2); i++) track(casLoop());
    await world.runFor(500 + rnd.int(1_000));
    victim = ownerOfLedger() ?? 'us-east';
    faultAtMs = world.clock.monotonicMs();
    const others = ids.filter((s) => s !== victim);
    switch (fault) {
      case 'crash':
      case 'isolate':
      case 'one-way':
      case 'pause':
        await injectSiteFault(cluster, fault, victim, { leaseMs, holdMs: 3 * leaseMs, rnd });
        break;
      case 'switchover':
      case 'switchover-partition': {
        // every unit of the owner moves to another site while clients keep writing: parked writes go on to it
        const to = others[rnd.int(others.length)]!;
        const by = cluster.site(rnd.chance(0.5) ? victim : anySite())!.topology!;
        let settled = false;
        void by
          .switchover(by.planFailover({ site: victim, to }), { by: 'sim', why: 'planned' }, 5_000)
          .catch(() => undefined)
          .finally(() => (settled = true));
        if (fault === 'switchover-partition') {
          await world.runFor(rnd.int(30));
          world.network.partition({ kind: 'isolate-site', site: rnd.int(2) === 0 ? victim : to });
          await world.runFor(3 * leaseMs);
          world.network.heal();
        }
        await world.runUntil(() => settled, { timeoutMs: 30_000 });
        await world.runFor(leaseMs);
        break;
      }
    }
    await world.runFor(1_000);
    stopWriting = true;
    await world.runUntil(() => inFlight.size === 0, { timeoutMs: 2 * clientTimeoutMs });
    await world
      .runUntil(
        () =>
          cluster.converged() &&
          new Set(ids.map((id) => cluster.site(id)!.topology!.epoch())).size === 1 &&
          units(cluster.site(ids[0]!)!.topology!.record()).every((u) => u.owner !== null),
        { timeoutMs: 60_000 },
      )
      .catch(() => undefined);
    await check(cluster, acked, mayBeGone, anomalies);
    for (const id of ids) {
      const s = cluster.site(id)!;
      const v = ((await s.node.get(s.node.table('tally'), 't'))?.value as { n?: number } | undefined)?.n ?? 0;
      if (v < increments.acked.size || v > increments.tried.size)
        anomalies.push({
          kind: v > increments.tried.size ? 'retried-increment-applied-twice' : 'acked-increment-lost',
          detail: `tally/t is ${v} at ${id}: ${increments.acked.size} keyed increments acknowledged, ${increments.tried.size} tried`,
        });
    }
    return {
      seed,
      fault,
      anomalies,
      statuses,
      unavailable,
      outcomeUnknown,
      acked: acked.length,
      ackedQuorum: acked.filter((a) => a.durability === 'quorum').length,
      forwarded,
      sessionReads,
      sessionReadsServed,
      strongReads,
      strongReadsServed,
      sessionsLost,
      increments: { tried: increments.tried.size, acked: increments.acked.size, retried: increments.retried, replayed: increments.replayed },
      cas,
      ackedAfterFault,
    };
  } finally {
    await cluster.stop();
  }
}

/** Convergence, and every acknowledged quorum write (and every write of the local table) at every site. */
async function check(cluster: SimCluster, acked: AckedWrite[], mayBeGone: (path: string, n: number) => boolean, anomalies: HttpAnomaly[]): Promise<void> {
  const live = cluster.siteIds.map((id) => cluster.site(id)).filter((s): s is SimSite => s !== undefined);
  assert(live.length === cluster.siteIds.length, 'every site is up at the end');
  if (!cluster.converged()) anomalies.push({ kind: 'not-converged', detail: JSON.stringify(cluster.vectors()) });
  for (const w of acked) {
    if (w.table !== 'profiles' && w.durability !== 'quorum') continue;
    for (const s of live) {
      const rec = await s.node.get(s.node.table(w.table), w.key);
      const got = (rec?.value as { n?: number } | undefined)?.n;
      if (got === undefined ? !mayBeGone(`${w.table}/${w.key}`, w.n) : got < w.n)
        anomalies.push({
          kind: w.table === 'profiles' ? 'local-write-lost' : 'acked-quorum-write-lost',
          detail: `${w.table}/${w.key} ${w.deleted ? 'delete' : 'write'} n=${w.n} (${w.dot}, ${w.durability}, committed by ${w.site}) is ${got === undefined ? 'missing' : `n=${got}`} at ${s.id}`,
        });
    }
  }
}

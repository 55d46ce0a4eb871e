// A whole cluster in one process on the simulated platform: every site is a real SiteNode with a
// SQLite store on disk and a real Replicator, talking over the simulated network with seeded
// delays, drops, duplicates, partitions, crashes and restarts. Disks are simulated too: each store
// runs SQLite's real WAL with an injected fdatasync that completes after a seeded delay, so a
// crash or a power loss can land inside a sync; a power loss keeps only what the last sync
// covered; a disk can be copied while its site runs and put back later (a VM snapshot, `cp -a`).
// Housekeeping and anti-entropy run on seeded, per-site schedules. The disk ledger (drill/history.ts)
// follows every commit and sync. Used by *.sim.test.ts and the simulation script; a failing seed
// replays exactly. With `http` on, every site also runs its real HTTP server (site/http-server.ts)
// behind the simulated network: client requests and owner forwards travel it like peer traffic.
import type { FastifyInstance } from 'fastify';
import { existsSync, mkdirSync, mkdtempSync, readFileSync, rmSync, writeFileSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../config/load.js';
import type { ClusterConfig } from '../config/schema.js';
import { assert } from '../core/assert.js';
import { parseDot, vectorsEqual, type VersionVector } from '../core/vector.js';
import type { ItemOp } from '../core/write.js';
import { SimWorld, type SimNetworkOptions } from '../platform/sim/index.js';
import { readBody, singleChunk, type Env, type Headers, type IncomingRequest, type Logger, type RequestHandler, type TransportResponse } from '../platform/env.js';
import { Replicator } from '../replication/replicator.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import type { CommitRequest, Store } from '../store/types.js';
import { SiteNode, type ReplayedWrite, type WriteOptions, type WriteOutcome } from '../site/site-node.js';
import { DiskLedger, type DiskCopy } from '../drill/history.js';
import { TopologyService } from '../topology/topology-service.js';
import { SqliteVoterStorage } from '../topology/voter-storage.js';
import { Voter } from '../topology/paxos.js';
import { genesisTopology } from '../topology/record.js';
import { witnessHandler } from '../topology/witness.js';
import { followMembership } from '../topology/follow-membership.js';
import { degradedSites, quorumSets } from '../topology/members.js';
import { HomeRegistry } from '../site/home-registry.js';
import { buildSiteServer } from '../site/http-server.js';
import { SiteMetrics } from '../site/metrics.js';

export interface SimSite {
  id: string;
  env: Env;
  node: SiteNode;
  replicator: Replicator;
  /** with `topology` on: the site's topology driver (ownership from epochs and leases) */
  topology?: TopologyService;
  /** with `topology` on and a first-writer table: the site's registry of partition homes (site/home-registry.ts) */
  homes?: HomeRegistry;
  /** with `http` on: the site's real HTTP server (fastify), reached at http://<site> over the simulated network */
  app?: FastifyInstance;
}

/** A client request to a site's HTTP server (SimCluster.request). */
export interface SimHttpRequest {
  method: string;
  /** path and query, e.g. /v1/tables/ledger/items/k */
  path: string;
  headers?: Headers;
  /** a JSON body */
  body?: unknown;
  /** the client gives up after this long (default 15 s): outcome unknown */
  timeoutMs?: number;
}

/** What a client saw: an answer, or no answer (`status` 0) and why: the site refused the connection, the connection broke, or the client timed out. */
export interface SimHttpAnswer {
  status: number;
  headers: Headers;
  /** the body parsed as JSON (undefined when empty or not JSON) */
  body: unknown;
  error?: 'refused' | 'reset' | 'timeout';
}

/** The simulated disks' and schedules' fault knobs (each site draws its own values from the seed). */
export interface SimDiskOptions {
  /** a site's fdatasync takes 0..its own max ms; each site's max is drawn from 0..fsyncDelayMsMax */
  fsyncDelayMsMax: number;
  /** each site's housekeeping interval is drawn from this range (equal bounds: every site in lockstep) */
  housekeepingIntervalMs: [number, number];
  antiEntropyIntervalMs: [number, number];
}

export const simDiskDefaults: SimDiskOptions = { fsyncDelayMsMax: 0, housekeepingIntervalMs: [500, 500], antiEntropyIntervalMs: [2_000, 2_000] };

export interface SimClusterOptions {
  seed: number;
  sites: number;
  network?: Partial<SimNetworkOptions>;
  disk?: Partial<SimDiskOptions>;
  tables?: Record<string, unknown>;
  heartbeatMs?: number;
  /** run topology (voters, leases, failover) on every site; the config's `topology` block */
  topology?: Record<string, unknown>;
  /** witnesses (voters with no data), named w1, w2… */
  witnesses?: number;
  /** weakened topology rules, only for tests that show a check catches their absence */
  unsafeTopology?: { expiryMs?: number };
  /**
   * run each site's real HTTP server (buildSiteServer, with the hooks a real site wires): requests
   * to http://<site> outside /v1/peer/ go to it (fastify inject), once the site's process runs (not
   * while paused), so forwards to an owner cross the simulated network; crash and restart rebuild it
   */
  http?: boolean;
}

/** The bytes of a site's data directory: the database file and its WAL. */
interface DiskImage {
  db: Buffer;
  wal: Buffer;
  ledger: DiskCopy;
}

export const simSiteIds = ['us-east', 'eu-west', 'ap-south', 'sa-east', 'af-south', 'me-central', 'ca-central'];

export class SimCluster {
  readonly world: SimWorld;
  readonly config: ClusterConfig;
  readonly dir: string;
  private readonly live = new Map<string, SimSite>();
  private readonly stores = new Map<string, SqliteStore>();
  private readonly disk: SimDiskOptions;
  /** per site: its fdatasync delay bound and its schedules, drawn once from the seed */
  private readonly siteDisk = new Map<string, { fsyncDelayMsMax: number; housekeepingIntervalMs: number; antiEntropyIntervalMs: number }>();
  private starts = 0;
  private readonly copies = new Map<string, DiskImage>();
  /** Every write of owned items committed anywhere: by which site, under which lease epoch, when (sim time). */
  readonly admissions: { site: string; epoch: number; atMs: number; dot: string; items: { table: string; key: string }[]; compensates: boolean }[] = [];
  /** What each site's disk holds, commit by commit and sync by sync, and the judgements made on it. */
  readonly ledger = new DiskLedger();
  private readonly memberIds: string[];
  /** sites started with a config of their own (joined online: their config lists them, the others' do not) */
  private readonly siteConfigs = new Map<string, ClusterConfig>();

  private constructor(private readonly options: SimClusterOptions) {
    // TANDEM_SIM_LOG=info (or warn, debug) prints every site's log lines with the sim time, for replaying a seed
    const logLevel = process.env['TANDEM_SIM_LOG'];
    const log = logLevel ? simConsoleLogger(logLevel, () => this.world.clock.monotonicMs()) : undefined;
    this.world = new SimWorld({ seed: options.seed, ...(options.network ? { network: options.network } : {}), ...(log ? { log } : {}) });
    this.dir = mkdtempSync(join(tmpdir(), `tandem-sim-${options.seed}-`));
    this.disk = { ...simDiskDefaults, ...options.disk };
    const draw = this.world.random.fork('sim-disks');
    const within = ([lo, hi]: [number, number]) => lo + draw.int(hi - lo + 1);
    for (const id of simSiteIds.slice(0, options.sites))
      this.siteDisk.set(id, {
        fsyncDelayMsMax: draw.int(this.disk.fsyncDelayMsMax + 1),
        housekeepingIntervalMs: within(this.disk.housekeepingIntervalMs),
        antiEntropyIntervalMs: within(this.disk.antiEntropyIntervalMs),
      });
    this.rawConfig = {
        cluster: 'sim',
        secret: 'simulation-secret-0123456789',
        sites: simSiteIds.slice(0, options.sites).map((id) => ({ id, url: `http://${id}` })),
        witnesses: Array.from({ length: options.witnesses ?? 0 }, (_, i) => ({ id: `w${i + 1}`, url: `http://w${i + 1}` })),
        ...(options.topology ? { topology: options.topology } : {}),
        tables: options.tables ?? {
          profiles: { pattern: 'local', conflict: 'lww' },
          carts: { pattern: 'local', conflict: 'merge' },
          counters: { pattern: 'local', conflict: 'crdt', fields: { n: 'counter', tags: 'set' } },
        },
    };
    this.config = parseConfig(this.rawConfig, 'sim config');
    this.memberIds = this.config.sites.map((s) => s.id);
  }

  private readonly rawConfig: Record<string, unknown> & { sites: { id: string; url: string }[] };

  /**
   * A site joins online (after `members add` put it in the topology as joining): it starts empty,
   * with a config that lists the cluster's sites and itself, learns the topology from the sites,
   * bootstraps from its peers, and proposes itself active once caught up.
   */
  async join(id: string): Promise<SimSite> {
    assert(!this.memberIds.includes(id), `${id} is a member already`);
    const draw = this.world.random.fork(`sim-disk:${id}`);
    const [lo, hi] = this.disk.housekeepingIntervalMs;
    const [alo, ahi] = this.disk.antiEntropyIntervalMs;
    this.siteDisk.set(id, { fsyncDelayMsMax: draw.int(this.disk.fsyncDelayMsMax + 1), housekeepingIntervalMs: lo + draw.int(hi - lo + 1), antiEntropyIntervalMs: alo + draw.int(ahi - alo + 1) });
    this.siteConfigs.set(id, parseConfig({ ...this.rawConfig, sites: [...this.rawConfig.sites, { id, url: `http://${id}` }] }, `sim config of ${id}`));
    this.memberIds.push(id);
    return this.start(id);
  }

  /** A site removed from the cluster stops for good (its disk is kept for inspection). */
  async retire(id: string): Promise<void> {
    await this.crash(id);
    const i = this.memberIds.indexOf(id);
    if (i >= 0) this.memberIds.splice(i, 1);
  }

  static async create(options: SimClusterOptions): Promise<SimCluster> {
    const cluster = new SimCluster(options);
    for (const w of cluster.config.witnesses) cluster.startWitness(w.id);
    for (const s of cluster.config.sites) await cluster.start(s.id);
    return cluster;
  }

  private readonly witnesses = new Map<string, Voter>();

  /** A witness: a voter with no data, on the simulated network (its state file survives restarts). */
  startWitness(id: string): Voter {
    const env = this.world.envFor(id);
    const storage = this.voterStorage(id);
    const t = this.config.topology;
    const voter = new Voter({
      id,
      storage,
      genesis: genesisTopology(this.config),
      monotonicMs: () => env.clock.monotonicMs(),
      restartQuietMs: () => Math.ceil((t.leaseMs * (1 + t.driftRateMax)) / (1 - t.driftRateMax)),
    });
    const auth = { cluster: this.config.cluster, secret: this.config.secret, knownSites: new Set(this.config.sites.map((s) => s.id)) };
    this.world.network.listen(`http://${id}`, witnessHandler({ env, voter, auth }), id);
    this.witnesses.set(id, voter);
    return voter;
  }

  /** Restarts a witness (its process died; its state file is kept). */
  restartWitness(id: string): void {
    this.world.crash(id);
    this.startWitness(id);
  }

  /** the current data sites: the config's, plus those joined, minus those retired */
  get siteIds(): string[] {
    return [...this.memberIds];
  }

  site(id: string): SimSite | undefined {
    return this.live.get(id);
  }

  private dbPath(id: string): string {
    return join(this.dir, id, 'store.db');
  }

  async start(id: string): Promise<SimSite> {
    const env = this.world.envFor(id);
    const knobs = this.siteDisk.get(id)!;
    const delays = this.world.random.fork(`fsync:${id}:${this.starts++}`);
    const ledger = this.ledger;
    // syncs while the site opens complete at once: start() runs before the world is driven again;
    // so do all of a site whose disk has no delay (tests may await a store call without driving the world)
    let opening = true;
    const store = new SqliteStore({
      path: this.dbPath(id),
      siteId: id,
      wallMs: () => env.clock.wallMs(),
      conflictEntriesMax: 100_000,
      durability: 'full',
      // the WAL only grows (the main file stays as opened: see powerLoss) and no 40 MB preallocation per start
      walAutoCheckpointPages: 0,
      preallocateWal: false,
      // no real fsync: it completes after a seeded delay on the site's timers (never, if the site dies first)
      fdatasync: (_fd, callback) => {
        const token = ledger.syncStarted(id);
        if (opening || knobs.fsyncDelayMsMax === 0) {
          ledger.syncDone(id, token);
          callback(null);
          return;
        }
        env.timers.after(delays.int(knobs.fsyncDelayMsMax + 1), () => {
          ledger.syncDone(id, token);
          callback(null);
        });
      },
    });
    this.stores.set(id, store);
    const config = this.siteConfigs.get(id) ?? this.config;
    const node = new SiteNode({ env, config, siteId: id, store: this.recording(id, store), nextTurn: (fn) => env.timers.after(0, fn) });
    await node.start();
    opening = false;
    const holder: { replicator?: Replicator } = {};
    const topology = this.options.topology
      ? new TopologyService({
          env,
          config,
          host: { siteId: id, store: node.store, wakePulls: () => holder.replicator?.wakePulls(), caughtUp: () => holder.replicator?.caughtUp() ?? false },
          auth: { cluster: config.cluster, secret: config.secret, knownSites: new Set(config.sites.map((s) => s.id)) },
          // the voter's file lives apart from the store: a lost or rolled-back disk does not take a voter's promises with it
          storage: this.voterStorage(id),
          ...(this.options.unsafeTopology ? { unsafe: this.options.unsafeTopology } : {}),
        })
      : undefined;
    if (topology) {
      node.attachOwnership(topology);
      topology.onChange(() => node.ownershipChanged());
    }
    // first-writer homes, wired as a real site does (site/extension.ts)
    const homes =
      topology && Object.values(config.tables).some((t) => t.home?.from === 'first-writer')
        ? new HomeRegistry({
            env,
            node,
            topology,
            auth: { cluster: config.cluster, secret: config.secret, knownSites: new Set(config.sites.map((s) => s.id)) },
            peerUrl: (peer) => `http://${peer}`,
            awaitQuorum: (dot) => holder.replicator?.awaitDurability(dot, 'quorum') ?? Promise.resolve(false),
          })
        : undefined;
    if (topology && homes) topology.useHomeDirectory(homes);
    const replicator = new Replicator({
      env,
      node,
      config,
      ...(topology ? { extraRoutes: { ...topology.routes(), ...(homes ? homes.routes() : {}) }, quorumSets: () => quorumSets(topology.record()) } : {}),
      heartbeatMs: this.options.heartbeatMs ?? 200,
      antiEntropyIntervalMs: knobs.antiEntropyIntervalMs,
      housekeepingIntervalMs: knobs.housekeepingIntervalMs,
      logRetainEntries: 2,
    });
    holder.replicator = replicator;
    if (topology) followMembership(topology, node.store, replicator, env.log);
    const app = this.options.http ? this.siteServer(env, node, replicator, topology) : undefined;
    this.world.network.listen(`http://${id}`, app ? httpDispatch(env, app, replicator.handler) : replicator.handler, id);
    if (homes) void homes.load().catch((e: unknown) => env.log.error({ err: e }, 'the home registry could not be read: homes are looked up on demand'));
    replicator.run();
    topology?.run();
    const site: SimSite = { id, env, node, replicator, ...(topology ? { topology } : {}), ...(homes ? { homes } : {}), ...(app ? { app } : {}) };
    this.live.set(id, site);
    return site;
  }

  /** The site's HTTP server with the hooks site/extension.ts gives a real site (no backup). */
  private siteServer(env: Env, node: SiteNode, replicator: Replicator, topology: TopologyService | undefined): FastifyInstance {
    const config = node.config;
    return buildSiteServer({
      env,
      node,
      metrics: new SiteMetrics(),
      hooks: {
        peers: () => replicator.peerStatus(),
        ready: () => {
          const t = topology?.readiness() ?? { ready: true };
          return t.ready ? replicator.ready() : t;
        },
        ...(topology
          ? {
              topology,
              peerUrl: (peer: string) => config.sites.find((s) => s.id === peer)?.url ?? topology.record().members.find((m) => m.id === peer)?.url,
              degradedSites: () => degradedSites(topology.record(), config.topology.degradedDurability),
            }
          : {}),
        coveringPeer: (token) => replicator.coveringPeer(token),
        quorumReachable: (level) => replicator.quorumReachable(level),
        awaitDurability: (dot, level) => (level === 'local' ? Promise.resolve(true) : replicator.awaitDurability(dot, level)),
        peerHandler: replicator.handler,
      },
    });
  }

  /**
   * A client next to `site` (never cut from it) sends a request to its HTTP server over the
   * simulated network (`http` on). Resolves as the world runs (drive it meanwhile), never rejects:
   * a site that is down refuses the connection, a crash resets it, a silent one times out
   * (`status` 0 and `error`: the client knows nothing of the outcome).
   */
  request(site: string, req: SimHttpRequest): Promise<SimHttpAnswer> {
    assert(this.options.http === true, 'SimCluster.request needs the cluster created with http: true');
    const ac = new AbortController();
    const timer = this.world.timers.after(req.timeoutMs ?? 15_000, () => ac.abort(new Error('client timeout')));
    const body = req.body === undefined ? undefined : Buffer.from(JSON.stringify(req.body));
    const headers: Headers = { ...(body ? { 'content-type': 'application/json' } : {}), ...req.headers };
    const transport = this.world.network.transportFor(`${site}/client`);
    return (async (): Promise<SimHttpAnswer> => {
      try {
        const res = await transport.request({ method: req.method, url: `http://${site}${req.path}`, headers, ...(body ? { body } : {}), signal: ac.signal });
        const bytes = await readBody(res.body, 64 * 1024 * 1024);
        let parsed: unknown;
        try {
          parsed = bytes.byteLength > 0 ? JSON.parse(Buffer.from(bytes).toString('utf8')) : undefined;
        } catch {
          parsed = undefined;
        }
        return { status: res.status, headers: res.headers, body: parsed };
      } catch (e) {
        const code = (e as { code?: string }).code;
        return { status: 0, headers: {}, body: undefined, error: ac.signal.aborted ? 'timeout' : code === 'ECONNREFUSED' ? 'refused' : 'reset' };
      } finally {
        timer.cancel();
      }
    })();
  }

  /** `request`, driving the world until the answer comes. */
  async send(site: string, req: SimHttpRequest): Promise<SimHttpAnswer> {
    let answer: SimHttpAnswer | undefined;
    void this.request(site, req).then((a) => (answer = a));
    await this.world.runUntil(() => answer !== undefined, { timeoutMs: (req.timeoutMs ?? 15_000) + 1_000 });
    return answer!;
  }

  private readonly voterFiles = new Map<string, SqliteVoterStorage>();

  private voterStorage(id: string): SqliteVoterStorage {
    this.voterFiles.get(id)?.close();
    const storage = new SqliteVoterStorage(join(this.dir, 'voters', `${id}.db`));
    this.voterFiles.set(id, storage);
    return storage;
  }

  /**
   * The store as the site sees it, telling the ledger of every entry as its transaction writes it
   * (the builds and merges run inside the commit's transaction, before its sync).
   */
  private recording(id: string, store: Store): Store {
    const ledger = this.ledger;
    const recorded = (req: CommitRequest): CommitRequest => {
      switch (req.kind) {
        case 'local':
          return {
            ...req,
            build: (current, seq) => {
              const built = req.build(current, seq);
              // the write's own dot stamps its states (the site may have taken a new incarnation since open)
              const { origin, seq: stamped } = parseDot(built.records[0]!.state.w.d);
              assert(stamped === seq, `a local write's state carries its own dot, got ${built.records[0]!.state.w.d} for seq ${seq}`);
              ledger.committedLocal(id, {
                origin,
                seq,
                hlc: built.hlc,
                items: built.records.map((x) => ({ table: x.table, key: x.key, state: x.state })),
                ...(req.idempotency !== undefined ? { idempotency: req.idempotency } : {}),
              });
              if (built.epoch !== undefined)
                this.admissions.push({ site: id, epoch: built.epoch, atMs: this.world.clock.monotonicMs(), dot: `${origin}:${seq}`, items: built.records.map((x) => ({ table: x.table, key: x.key })), compensates: built.voids !== undefined });
              return built;
            },
          };
        case 'remote':
          return {
            ...req,
            merge: (current) => {
              const merged = req.merge(current);
              ledger.committedRemote(id, req.entry);
              return merged;
            },
          };
        case 'advance-vector':
          ledger.installedSnapshot(id, req.vector);
          return req;
        case 'repair':
          return req;
      }
    };
    return new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'commit') return (batch: CommitRequest[], options?: { sync?: boolean }) => target.commit(batch.map(recorded), options);
        const value: unknown = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  /** kill -9: the process is gone, its disk stays (the OS writes out what it buffered); queued writes never commit. */
  async crash(id: string): Promise<void> {
    const site = this.live.get(id);
    if (!site) return;
    this.live.delete(id);
    this.world.crash(id);
    this.ledger.processCrash(id);
    await site.node.store.close();
    // its HTTP server goes with the process (requests in it were reset by the crash)
    if (site.app) await site.app.close();
  }

  /**
   * Power loss: the site dies and its disk keeps only what was synced: the main database file (it
   * does not change while the store is open: automatic checkpoints are off) and the WAL up to the
   * last fdatasync. Returns the entries lost.
   */
  async powerLoss(id: string): Promise<{ dot: string; hash: string }[]> {
    const site = this.live.get(id);
    if (!site) return [];
    const store = this.stores.get(id)!;
    const path = this.dbPath(id);
    const db = readFileSync(path);
    const wal = existsSync(`${path}-wal`) ? readFileSync(`${path}-wal`).subarray(0, store.syncedWalBytes()) : Buffer.alloc(0);
    this.live.delete(id);
    this.world.crash(id);
    const lost = this.ledger.powerLoss(id);
    // closing checkpoints the WAL into the main file and deletes it: both are put back as they were
    await site.node.store.close();
    if (site.app) await site.app.close();
    this.writeDisk(id, db, wal);
    return lost;
  }

  /** A copy of a site's disk as it is now (a VM snapshot or `cp -a` of a running site), kept for rollBackDisk. */
  snapshotDisk(id: string): void {
    const path = this.dbPath(id);
    if (!existsSync(path)) return;
    const wal = existsSync(`${path}-wal`) ? readFileSync(`${path}-wal`) : Buffer.alloc(0);
    this.copies.set(id, { db: readFileSync(path), wal, ledger: this.ledger.copyDisk(id) });
  }

  hasDiskCopy(id: string): boolean {
    return this.copies.has(id);
  }

  /**
   * The site dies and its disk is replaced by the copy snapshotDisk took; start() brings it back.
   * Returns the entries it held that the copy does not.
   */
  async rollBackDisk(id: string): Promise<{ dot: string; hash: string }[]> {
    const copy = this.copies.get(id);
    if (copy === undefined) return [];
    await this.crash(id);
    this.writeDisk(id, copy.db, copy.wal);
    return this.ledger.rollBack(id, copy.ledger);
  }

  private writeDisk(id: string, db: Buffer, wal: Buffer): void {
    const path = this.dbPath(id);
    rmSync(join(this.dir, id), { recursive: true, force: true });
    mkdirSync(join(this.dir, id), { recursive: true });
    writeFileSync(path, db);
    // SQLite rebuilds the WAL index (-shm) from the WAL when it opens
    if (wal.byteLength > 0) writeFileSync(`${path}-wal`, wal);
  }

  /** Site loss: the process dies and its disk is destroyed; it comes back empty, with a new incarnation. */
  async wipe(id: string): Promise<{ dot: string; hash: string }[]> {
    await this.crash(id);
    rmSync(join(this.dir, id), { recursive: true, force: true });
    return this.ledger.rollBack(id, undefined);
  }

  /** Vectors of the sites that are up. */
  vectors(): Record<string, VersionVector> {
    return Object.fromEntries([...this.live].map(([id, s]) => [id, s.node.vector()]));
  }

  /**
   * Writes at a site; resolves with the outcome (or the first answer, for a repeat under a known
   * Idempotency-Key), rejects with the error, or never settles if the site crashes.
   */
  write(id: string, table: string, key: string, op: ItemOp, options?: WriteOptions & { idempotencyKey?: undefined }): Promise<WriteOutcome>;
  write(id: string, table: string, key: string, op: ItemOp, options: WriteOptions): Promise<WriteOutcome | ReplayedWrite>;
  write(id: string, table: string, key: string, op: ItemOp, options: WriteOptions = {}): Promise<WriteOutcome | ReplayedWrite> {
    const site = this.live.get(id);
    if (!site) return Promise.reject(new Error(`site ${id} is down`));
    return site.node.write(site.node.table(table), key, op, options);
  }

  /** True when every site is up and all hold the same vector with nothing in flight (no void items left to compensate). */
  converged(): boolean {
    const sites = [...this.live.values()];
    if (sites.length !== this.memberIds.length || !this.memberIds.every((id) => this.live.has(id))) return false;
    const first: VersionVector = sites[0]!.node.vector();
    return sites.every((s) => vectorsEqual(s.node.vector(), first) && s.node.pendingVoids() === 0);
  }

  async digests(): Promise<Record<string, Record<string, string>>> {
    const out: Record<string, Record<string, string>> = {};
    for (const [id, s] of this.live) out[id] = await s.node.store.digests();
    return out;
  }

  async stop(): Promise<void> {
    for (const [id, s] of this.live) {
      this.world.crash(id);
      await s.node.store.close();
      if (s.app) await s.app.close();
    }
    this.live.clear();
    for (const f of this.voterFiles.values()) f.close();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

/**
 * What listens at a site's address with `http` on: the peer API goes to the replicator as without
 * it; everything else to the site's HTTP server, once the site's process runs (a paused process
 * takes the request when it resumes; a crashed one never: its connection is reset).
 */
function httpDispatch(env: Env, app: FastifyInstance, peer: RequestHandler): RequestHandler {
  return async (req: IncomingRequest): Promise<TransportResponse> => {
    if (req.path.startsWith('/v1/peer/')) return peer(req);
    await env.timers.sleep(0);
    const res = await app.inject({
      method: req.method as 'GET',
      url: req.path,
      headers: req.headers,
      ...(req.body.byteLength > 0 ? { payload: Buffer.from(req.body) } : {}),
    });
    const headers: Headers = {};
    for (const [k, v] of Object.entries(res.headers)) if (v !== undefined) headers[k] = Array.isArray(v) ? v.join(', ') : String(v);
    return { status: res.statusCode, headers, body: singleChunk(new Uint8Array(res.rawPayload)) };
  };
}

/** A logger writing `<sim ms> <level> <bindings> <msg> <fields>` lines to stderr at `level` and above. */
function simConsoleLogger(level: string, nowMs: () => number, bindings: object = {}): Logger {
  const levels = ['debug', 'info', 'warn', 'error'];
  const min = Math.max(0, levels.indexOf(level));
  const at = (lvl: string) => (obj: object, msg?: string) => {
    if (levels.indexOf(lvl) < min) return;
    const fields = JSON.stringify(obj, (_k, v: unknown) => (v instanceof Error ? v.message : typeof v === 'bigint' ? String(v) : v));
    process.stderr.write(`${nowMs()} ${lvl} ${JSON.stringify(bindings)} ${msg ?? ''} ${fields}\n`);
  };
  return { debug: at('debug'), info: at('info'), warn: at('warn'), error: at('error'), child: (b) => simConsoleLogger(level, nowMs, { ...bindings, ...b }) };
}

// A whole cluster in one process on the simulated platform: every site is a real SiteNode with a
// SQLite store on disk and a real Replicator, talking over the simulated network with seeded
// delays, drops, duplicates, partitions, crashes and restarts. Used by *.sim.test.ts and the
// simulation script; a failing seed replays exactly.
import { mkdtempSync, rmSync } from 'node:fs';
import { tmpdir } from 'node:os';
import { join } from 'node:path';
import { parseConfig } from '../config/load.js';
import type { ClusterConfig } from '../config/schema.js';
import { vectorsEqual, type VersionVector } from '../core/vector.js';
import type { ItemOp } from '../core/write.js';
import { SimWorld, type SimNetworkOptions } from '../platform/sim/index.js';
import type { Env } from '../platform/env.js';
import { Replicator } from '../replication/replicator.js';
import { SqliteStore } from '../store/sqlite/sqlite-store.js';
import type { CommitRequest, LogEntry, Store } from '../store/types.js';
import { SiteNode, type WriteOutcome } from '../site/site-node.js';

export interface SimSite {
  id: string;
  env: Env;
  node: SiteNode;
  replicator: Replicator;
}

export interface SimClusterOptions {
  seed: number;
  sites: number;
  network?: Partial<SimNetworkOptions>;
  tables?: Record<string, unknown>;
  heartbeatMs?: number;
}

export const simSiteIds = ['us-east', 'eu-west', 'ap-south', 'sa-east', 'af-south', 'me-central', 'ca-central'];

export class SimCluster {
  readonly world: SimWorld;
  readonly config: ClusterConfig;
  readonly dir: string;
  private readonly live = new Map<string, SimSite>();
  /** Every local write any site ever committed (origin, seq, item states): the history checker's
   * view of the whole log, which the sites themselves compact. */
  readonly archive: LogEntry[] = [];

  private constructor(private readonly options: SimClusterOptions) {
    this.world = new SimWorld({ seed: options.seed, ...(options.network ? { network: options.network } : {}) });
    this.dir = mkdtempSync(join(tmpdir(), `tandem-sim-${options.seed}-`));
    this.config = parseConfig(
      {
        cluster: 'sim',
        secret: 'simulation-secret-0123456789',
        sites: simSiteIds.slice(0, options.sites).map((id) => ({ id, url: `http://${id}` })),
        tables: options.tables ?? {
          profiles: { pattern: 'local', conflict: 'lww' },
          carts: { pattern: 'local', conflict: 'merge' },
          counters: { pattern: 'local', conflict: 'crdt', fields: { n: 'counter', tags: 'set' } },
        },
      },
      'sim config',
    );
  }

  static async create(options: SimClusterOptions): Promise<SimCluster> {
    const cluster = new SimCluster(options);
    for (const s of cluster.config.sites) await cluster.start(s.id);
    return cluster;
  }

  get siteIds(): string[] {
    return this.config.sites.map((s) => s.id);
  }

  site(id: string): SimSite | undefined {
    return this.live.get(id);
  }

  async start(id: string): Promise<SimSite> {
    const env = this.world.envFor(id);
    const store = new SqliteStore({
      path: join(this.dir, id, 'store.db'),
      siteId: id,
      wallMs: () => env.clock.wallMs(),
      conflictEntriesMax: 100_000,
      durability: 'os-buffered',
    });
    const node = new SiteNode({ env, config: this.config, siteId: id, store: this.archiving(store), nextTurn: (fn) => env.timers.after(0, fn) });
    await node.start();
    const replicator = new Replicator({
      env,
      node,
      config: this.config,
      heartbeatMs: this.options.heartbeatMs ?? 200,
      antiEntropyIntervalMs: 2_000,
      housekeepingIntervalMs: 500,
      logRetainEntries: 2,
    });
    this.world.network.listen(`http://${id}`, replicator.handler, id);
    replicator.run();
    const site = { id, env, node, replicator };
    this.live.set(id, site);
    return site;
  }

  private archiving(store: Store): Store {
    const archive = this.archive;
    let origin = '';
    return new Proxy(store, {
      get(target, prop, receiver) {
        if (prop === 'open')
          return async () => {
            const identity = await target.open();
            origin = identity.origin;
            return identity;
          };
        if (prop === 'commit')
          return async (batch: CommitRequest[], options?: { sync?: boolean }) => {
            const results = await target.commit(batch, options);
            for (const r of results)
              if (r.kind === 'local' && r.ok)
                archive.push({ origin, seq: r.seq, hlc: r.records[0]!.state.w.h, items: r.records.map((x) => ({ table: x.table, key: x.key, state: x.state })) });
            return results;
          };
        const value: unknown = Reflect.get(target, prop, receiver);
        return typeof value === 'function' ? value.bind(target) : value;
      },
    });
  }

  /** kill -9: the process is gone, its disk stays; queued writes never commit. */
  async crash(id: string): Promise<void> {
    const site = this.live.get(id);
    if (!site) return;
    this.live.delete(id);
    this.world.crash(id);
    await site.node.store.close();
  }

  /** Site loss: the process dies and its disk is destroyed; it comes back empty, with a new incarnation. */
  async wipe(id: string): Promise<void> {
    await this.crash(id);
    rmSync(join(this.dir, id), { recursive: true, force: true });
  }

  /** Vectors of the sites that are up. */
  vectors(): Record<string, VersionVector> {
    return Object.fromEntries([...this.live].map(([id, s]) => [id, s.node.vector()]));
  }

  /** Writes at a site; resolves with the outcome, rejects with the error, or never settles if the site crashes. */
  write(id: string, table: string, key: string, op: ItemOp): Promise<WriteOutcome> {
    const site = this.live.get(id);
    if (!site) return Promise.reject(new Error(`site ${id} is down`));
    return site.node.write(site.node.table(table), key, op);
  }

  /** True when every site is up and all hold the same vector with nothing in flight. */
  converged(): boolean {
    const sites = [...this.live.values()];
    if (sites.length !== this.config.sites.length) return false;
    const first: VersionVector = sites[0]!.node.vector();
    return sites.every((s) => vectorsEqual(s.node.vector(), first));
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
    }
    this.live.clear();
    rmSync(this.dir, { recursive: true, force: true });
  }
}

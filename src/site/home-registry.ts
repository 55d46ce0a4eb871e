// A site's part of first-writer homes (topology/home-registry.ts): it keeps the in-memory cache that
// topology's unitFor reads, fills it from this site's copy of the registry table, and claims a
// partition without a home at the registry's owner — one peer call, or none when this site owns the
// registry. The owner commits a claim as a compare-and-set create of the registry item (If-None-Match:
// *), under its lease, and answers only once the item is quorum-durable, so that an answer survives
// any failover of the registry (RPO 0): the winner is the first claim committed, and every later claim
// of that partition, from any site, is answered with it.
//
// A site takes a home only from an answer that survives any failover: the owner's (a quorum-durable
// item, read under the owner's lease, and not void), or its own copy of an item a later move of the
// registry settled (settledByCut). A claim committed at the owner but not quorum-durable yet may be
// cut off by a failover of the registry and undone; a site that had taken it from its copy would home
// the partition at a site while the registry homes it elsewhere: two owners of one partition. A home
// whose registry item is undone (a compensation applied here) is forgotten all the same.
import { RequestError } from '../core/errors.js';
import { homeRegistryTable } from '../config/schema.js';
import { limits } from '../limits.js';
import type { Env, IncomingRequest, TransportResponse } from '../platform/env.js';
import type { PeerAuthConfig } from '../replication/auth.js';
import { msgpackResponse, problem } from '../replication/feed-server.js';
import { callPeer } from '../replication/peer-call.js';
import { decodeMessage } from '../replication/protocol.js';
import { HomeCache, homeCacheEntriesMax, homeOfValue, parseRegistryKey, partitionOf, registryKey, settledByCut, type HomeDirectory, type HomeResolveMode } from '../topology/home-registry.js';
import { parseDot } from '../core/vector.js';
import type { ItemRecord } from '../store/types.js';
import { unitOf } from '../topology/record.js';
import type { TopologyService } from '../topology/topology-service.js';
import type { SiteNode } from './site-node.js';

/** `site` set: claim the partition for it if it has no home; unset: only look it up. */
export interface HomeClaim {
  table: string;
  partition: string;
  site?: string;
}

/** The registry owner's answer: the home (the claimant's or an earlier one), none yet, or not now. */
export type HomeClaimReply = { site: string } | { unclaimed: true } | { refused: string };

export interface HomeRegistryOptions {
  env: Env;
  node: SiteNode;
  topology: TopologyService;
  auth: PeerAuthConfig;
  /** where a peer's peer API is reached (through link proxies in drills) */
  peerUrl: (site: string) => string | undefined;
  /** waits until the write `dot` is quorum-durable; false if it was not confirmed in time */
  awaitQuorum: (dot: string) => Promise<boolean>;
}

const claimPath = '/v1/peer/homes/claim';
/** how many times the owner reads again after losing a compare-and-set race (one race settles it) */
const claimAttemptsMax = 3;

export class HomeRegistry implements HomeDirectory {
  private readonly cache = new HomeCache();
  /** resolutions in flight, by registry key: concurrent first writes to a partition here claim once */
  private readonly pending = new Map<string, Promise<void>>();
  private readonly log;
  /** the first-writer tables: a write to any other table (every write, on most clusters) asks nothing */
  private readonly firstWriter: ReadonlySet<string>;

  constructor(private readonly options: HomeRegistryOptions) {
    this.log = options.env.log.child({ component: 'home-registry' });
    this.firstWriter = new Set(Object.entries(options.node.config.tables).flatMap(([name, t]) => (t.home?.from === 'first-writer' ? [name] : [])));
    options.node.onVoided((voids) => {
      for (const v of voids) {
        const parsed = v.table === homeRegistryTable ? parseRegistryKey(v.key) : undefined;
        const site = homeOfValue(v.value);
        if (parsed !== undefined && site !== undefined && this.cache.forget(parsed.table, parsed.partition, site))
          this.log.warn({ table: parsed.table, partition: parsed.partition, site, dot: v.dot }, 'a home whose registry item was undone by a failover: forgotten');
      }
    });
  }

  /** Fills the cache from this site's copy of the registry (before traffic; more is read on a miss). */
  async load(): Promise<number> {
    if (!this.options.node.tables.has(homeRegistryTable)) return 0;
    let after: string | undefined;
    let loaded = 0;
    while (loaded < this.cacheRoom()) {
      const page = await this.options.node.store.scanItems({ table: homeRegistryTable, limit: limits.feedBatchEntriesMax, ...(after !== undefined ? { after } : {}) });
      if (page.length === 0) break;
      after = page[page.length - 1]!.key;
      for (const rec of page) {
        const parsed = parseRegistryKey(rec.key);
        const site = rec.live ? homeOfValue(rec.value) : undefined;
        if (parsed !== undefined && site !== undefined && this.settled(rec) && this.learn(parsed.table, parsed.partition, site)) loaded++;
      }
    }
    return loaded;
  }

  homeOf(table: string, partition: string): string | undefined {
    return this.cache.get(table, partition);
  }

  async resolve(items: { table: string; key: string }[], mode: HomeResolveMode): Promise<void> {
    if (!items.some((item) => this.firstWriter.has(item.table))) return;
    const wanted = new Map<string, { table: string; partition: string }>();
    for (const item of items) {
      const home = this.options.node.config.tables[item.table]?.home;
      if (home?.from !== 'first-writer') continue;
      let partition: string;
      try {
        partition = partitionOf(item.table, home.separator, item.key);
      } catch (e) {
        // a key no partition names cannot have been written: apply leaves it to unitFor's refusal
        if (mode === 'apply') continue;
        throw e;
      }
      if (this.cache.get(item.table, partition) === undefined) wanted.set(registryKey(item.table, partition), { table: item.table, partition });
    }
    await Promise.all(
      [...wanted].map(([key, w]) => {
        // a claim and a lookup of one partition differ (a lookup may end without a home)
        const id = `${mode === 'write' ? 'claim' : 'look'}:${key}`;
        let p = this.pending.get(id);
        if (p === undefined) {
          p = this.resolveOne(w.table, w.partition, mode).finally(() => this.pending.delete(id));
          this.pending.set(id, p);
        }
        return p;
      }),
    );
  }

  /** The peer route the registry's owner answers claims and lookups on. */
  routes(): Record<string, (req: IncomingRequest, from: string) => Promise<TransportResponse>> {
    return {
      [`POST ${claimPath}`]: async (req) => {
        const claim = decodeMessage<unknown>(req.body);
        if (!this.isClaim(claim)) return problem(400, 'bad-request', 'malformed home claim: expected { table (a first-writer table), partition, site? }');
        const { topology } = this.options;
        // a lookup at a site that does not own the registry: what it knows (its copy, its cache)
        if (claim.site === undefined && topology.ownerOf(unitOf(homeRegistryTable)) !== topology.siteId) return msgpackResponse(200, await this.knownHere(claim));
        return msgpackResponse(200, await this.claimHere(claim));
      },
    };
  }

  /**
   * At the registry's owner: the partition's home, claiming it for `claim.site` if it has none. The
   * answer is a strong read: by the owner under its lease, of a quorum-durable registry item.
   */
  async claimHere(claim: HomeClaim): Promise<HomeClaimReply> {
    const { node, topology } = this.options;
    const registry = node.table(homeRegistryTable);
    const key = registryKey(claim.table, claim.partition);
    if (topology.ownerOf(unitOf(homeRegistryTable)) !== topology.siteId) return { refused: `${topology.siteId} does not own the home registry at epoch ${topology.epoch()}` };
    for (let attempt = 0; attempt < claimAttemptsMax; attempt++) {
      try {
        const current = await node.get(registry, key);
        if (current !== undefined) {
          const site = homeOfValue(current.value);
          if (site === undefined) return { refused: `the registry item ${key} is malformed` };
          // a claim a failover of the registry cut off, applied here before its compensation: never an answer
          if (!(await node.writeCounts(registry, key, current.state.w.d))) return { refused: `the assignment of ${key} was cut off by a failover of the registry and is being undone` };
          if (!(await this.options.awaitQuorum(current.state.w.d))) return { refused: `the assignment of ${key} is not quorum-durable yet` };
          node.assertStrongReadable(registry, key);
          this.learn(claim.table, claim.partition, site);
          return { site };
        }
        node.assertStrongReadable(registry, key);
        if (claim.site === undefined) return { unclaimed: true };
        if (!(claim.site in (topology.record().homes[claim.table] ?? {}))) return { refused: `${claim.site} has no unit of table ${claim.table} to home a partition in` };
        const outcome = await node.write(registry, key, { op: 'put', value: { site: claim.site } }, { ifNoneMatch: true, awaitsAck: true });
        // not confirmed: its outcome is unknown, and a retry reads whichever claim stands
        if (!(await this.options.awaitQuorum(outcome.dot))) return { refused: `the claim of ${key} was not confirmed quorum-durable in time` };
        if (!node.acknowledgeable(outcome)) return { refused: `the registry owner's lease ran out before the claim of ${key} could be confirmed` };
        this.learn(claim.table, claim.partition, claim.site);
        this.log.info({ table: claim.table, partition: claim.partition, site: claim.site, dot: outcome.dot }, 'partition homed by its first writer');
        return { site: claim.site };
      } catch (e) {
        // another claim of the partition committed between the read and the create: read it
        if (e instanceof RequestError && e.status === 412) continue;
        if (e instanceof RequestError) return { refused: e.message };
        throw e;
      }
    }
    return { refused: `the claim of ${key} lost ${claimAttemptsMax} races in a row` };
  }

  /**
   * What this site knows of a partition's home: its cache, or its copy of the registry where a move
   * of the registry settled the item (otherwise only the owner can tell whether it stands).
   */
  private async knownHere(claim: HomeClaim): Promise<HomeClaimReply> {
    const cached = this.cache.get(claim.table, claim.partition);
    if (cached !== undefined) return { site: cached };
    const key = registryKey(claim.table, claim.partition);
    const local = await this.options.node.store.getItem(homeRegistryTable, key);
    const site = local?.live ? homeOfValue(local.value) : undefined;
    if (site === undefined) return { refused: `${this.options.topology.siteId} does not know the home of ${key}` };
    if (!this.settled(local!)) return { refused: `${this.options.topology.siteId} holds an assignment of ${key} that only the registry's owner can confirm` };
    this.learn(claim.table, claim.partition, site);
    return { site };
  }

  /** Whether a registry item of this site's copy is settled by a move of the registry (settledByCut). */
  private settled(rec: ItemRecord): boolean {
    const { origin, seq } = parseDot(rec.state.w.d);
    return settledByCut(this.options.topology.record(), unitOf(homeRegistryTable), origin, seq);
  }

  /**
   * An apply whose registry owner cannot answer (moving, promoting, unreachable) asks every peer what
   * it knows: the item's writer knew the home before it wrote, and a quorum holds the registry item.
   * Without this, a new registry owner still pulling up to its cut could wait on itself.
   */
  private async askPeers(claim: HomeClaim): Promise<string | undefined> {
    const { topology } = this.options;
    const peers = topology.record().members.filter((m) => m.kind === 'site' && m.state !== 'removed' && m.id !== topology.siteId).map((m) => m.id);
    const replies = await Promise.all(peers.map((p) => this.callSite(p, claim)));
    for (const r of replies) if ('site' in r) return r.site;
    return undefined;
  }

  private async resolveOne(table: string, partition: string, mode: HomeResolveMode): Promise<void> {
    const { topology } = this.options;
    const local = await this.knownHere({ table, partition });
    if ('site' in local) return;
    const claim: HomeClaim = { table, partition, ...(mode === 'write' ? { site: this.claimant(table) } : {}) };
    const owner = topology.ownerOf(unitOf(homeRegistryTable));
    let reply: HomeClaimReply;
    if (owner === null) reply = { refused: `the home registry is being moved to a new owner (epoch ${topology.epoch()})` };
    else if (owner === topology.siteId) reply = await this.claimHere(claim);
    else reply = await this.callSite(owner, claim);
    if ('site' in reply) {
      this.learn(table, partition, reply.site);
      return;
    }
    if ('unclaimed' in reply) {
      if (mode === 'read') throw RequestError.notFound(`no item in partition "${partition}" of table ${table}: the partition has no home yet`);
      // an item whose partition the registry does not hold: its claim was cut off by a failover of
      // the registry; the item is applied as one of a key no partition names (unitFor refuses it)
      this.log.warn({ table, partition }, 'an item of a partition the home registry does not hold');
      return;
    }
    const known = mode === 'apply' ? await this.askPeers({ table, partition }) : undefined;
    if (known !== undefined) {
      this.learn(table, partition, known);
      return;
    }
    if (mode === 'apply') throw new Error(`the home of partition "${partition}" of table ${table} is not known here and the registry cannot tell now (${reply.refused}); will retry`);
    throw RequestError.unavailable('owner-changed', `the home of partition "${partition}" of table ${table} could not be settled now (${reply.refused}); nothing was written: retry shortly`);
  }

  private async callSite(owner: string, claim: HomeClaim): Promise<HomeClaimReply> {
    const { env, auth, topology } = this.options;
    const url = this.options.peerUrl(owner);
    if (url === undefined) return { refused: `no address known for the registry owner ${owner}` };
    try {
      const reply = await callPeer<unknown>({ env, auth, from: topology.siteId, peer: owner, peerUrl: url, method: 'POST', path: claimPath, body: claim, replyBytesMax: 64 << 10 });
      return isClaimReply(reply) ? reply : { refused: `the registry owner ${owner} answered a malformed reply` };
    } catch (e) {
      return { refused: `the registry owner ${owner} did not answer (${(e as Error).message})` };
    }
  }

  /** The unit a claim from this site names: its own, or (a site added online, with none) the first site's. */
  private claimant(table: string): string {
    const { topology } = this.options;
    const units = topology.record().homes[table] ?? {};
    return topology.siteId in units ? topology.siteId : (Object.keys(units)[0] ?? topology.siteId);
  }

  private learn(table: string, partition: string, site: string): boolean {
    if (this.cache.set(table, partition, site)) return true;
    this.log.error({ table, partition, site, known: this.cache.get(table, partition) }, 'a second home for a partition: the first is kept');
    return false;
  }

  private cacheRoom(): number {
    return homeCacheEntriesMax - this.cache.size;
  }

  private isClaim(x: unknown): x is HomeClaim {
    if (x === null || typeof x !== 'object') return false;
    const c = x as Partial<HomeClaim>;
    return (
      typeof c.table === 'string' &&
      this.options.node.config.tables[c.table]?.home?.from === 'first-writer' &&
      typeof c.partition === 'string' &&
      c.partition.length > 0 &&
      Buffer.byteLength(c.partition) <= limits.keyBytesMax &&
      (c.site === undefined || (typeof c.site === 'string' && c.site.length > 0))
    );
  }
}

function isClaimReply(x: unknown): x is HomeClaimReply {
  if (x === null || typeof x !== 'object') return false;
  const r = x as { site?: unknown; unclaimed?: unknown; refused?: unknown };
  return typeof r.site === 'string' || r.unclaimed === true || typeof r.refused === 'string';
}

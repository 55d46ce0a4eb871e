// What a site process adds around the bare node: replication (pullers, feed, acks, anti-entropy).
// Peer URLs come from the config; TANDEM_PEER_URLS (JSON: { siteId: url }) overrides them, so tests
// and drills can route a site's peer traffic through link fault proxies.
import { join } from 'node:path';
import { Replicator } from '../replication/replicator.js';
import { TopologyService } from '../topology/topology-service.js';
import { SqliteVoterStorage } from '../topology/voter-storage.js';
import { followMembership } from '../topology/follow-membership.js';
import { degradedSites, quorumSets } from '../topology/members.js';
import { joinVectors, type VersionVector } from '../core/vector.js';
import { limits } from '../limits.js';
import { siteBackup } from './backup-wiring.js';
import { HomeRegistry } from './home-registry.js';
import type { StartSiteOptions } from './run-site.js';

export function peerUrlsFromEnv(raw: string | undefined): Record<string, string> | undefined {
  if (raw === undefined || raw === '') return undefined;
  const parsed = JSON.parse(raw) as unknown;
  if (parsed === null || typeof parsed !== 'object' || Array.isArray(parsed) || !Object.values(parsed).every((v) => typeof v === 'string'))
    throw new Error('TANDEM_PEER_URLS must be a JSON object of site id to URL');
  return parsed as Record<string, string>;
}

export const siteExtension: NonNullable<StartSiteOptions['extend']> = (node, env, metrics, context) => {
  const peerUrls = peerUrlsFromEnv(process.env.TANDEM_PEER_URLS);
  const backup = siteBackup(node, env, metrics, context);
  const holder: { replicator?: Replicator } = {};
  const voterStorage = new SqliteVoterStorage(join(context.siteDir, 'topology.db'));
  const topology = new TopologyService({
    env,
    config: node.config,
    host: {
      siteId: node.siteId,
      store: node.store,
      wakePulls: () => holder.replicator?.wakePulls(),
      caughtUp: () => holder.replicator?.caughtUp() ?? false,
      // a `down` site comes back once caught up with the active sites (not with other down ones)
      caughtUpWith: (sites) => {
        const links = holder.replicator?.peerStatus() ?? {};
        return sites.every((s) => links[s]?.connected === true && links[s].lagEntries <= 100);
      },
      // what this site has heard of: applied here, or reported by peers' acks (a forced failover's report)
      heardVector: () => {
        let heard: VersionVector = node.vector();
        for (const ack of holder.replicator?.acks().values() ?? []) heard = joinVectors(joinVectors(heard, ack.vector), { [ack.origin]: ack.ownSeq });
        return heard;
      },
    },
    auth: { cluster: node.config.cluster, secret: node.config.secret, knownSites: new Set(node.config.sites.map((s) => s.id)) },
    storage: voterStorage,
    ...(peerUrls ? { urls: peerUrls } : {}),
  });
  node.attachOwnership(topology);
  topology.onChange(() => node.ownershipChanged());
  const homes = new HomeRegistry({
    env,
    node,
    topology,
    auth: { cluster: node.config.cluster, secret: node.config.secret, knownSites: new Set(node.config.sites.map((s) => s.id)) },
    peerUrl: (id) => peerUrls?.[id] ?? node.config.sites.find((s) => s.id === id)?.url ?? topology.record().members.find((m) => m.id === id)?.url,
    awaitQuorum: (dot) => holder.replicator?.awaitDurability(dot, 'quorum') ?? Promise.resolve(false),
  });
  topology.useHomeDirectory(homes);
  const replicator = new Replicator({
    env,
    node,
    config: node.config,
    ...(peerUrls ? { peerUrls } : {}),
    extraRoutes: { ...topology.routes(), ...homes.routes() },
    // joint quorums while data membership changes (topology/members.ts)
    quorumSets: () => quorumSets(topology.record(), node.config.topology.degradedDurability),
    heartbeatMs: 500,
    ...(backup ? { archivedUpTo: (origin: string) => backup.backup.compactableUpTo(origin) } : {}),
    metrics: {
      setPeer(peer, s) {
        metrics.peerConnected.set({ peer }, s.connected ? 1 : 0);
        metrics.peerLagEntries.set({ peer }, s.lagEntries);
        metrics.peerLagMs.set({ peer }, s.lagMs);
      },
      repaired: (n) => metrics.repairs.inc(n),
    },
  });
  holder.replicator = replicator;
  // members added or removed online: store membership, pullers, peer URLs, peer auth (no restart)
  followMembership(topology, node.store, replicator, env.log);
  return {
    hooks: {
      peers: () => replicator.peerStatus(),
      ready: () => {
        const t = topology.readiness();
        return t.ready ? replicator.ready() : t;
      },
      topology,
      // forwards are data API calls: to the site's own URL (the proxies carry the peer protocol only)
      peerUrl: (id) => node.config.sites.find((s) => s.id === id)?.url ?? topology.record().members.find((m) => m.id === id)?.url,
      coveringPeer: (token) => replicator.coveringPeer(token),
      quorumReachable: (level) => replicator.quorumReachable(level),
      degradedSites: () => degradedSites(topology.record(), node.config.topology.degradedDurability),
      awaitDurability: (dot, level) => (level === 'local' ? Promise.resolve(true) : replicator.awaitDurability(dot, level)),
      peerHandler: replicator.handler,
      ...(backup ? { backup: { now: () => backup.backup.backupNow(), status: () => backup.backup.status() } } : {}),
    },
    start: () => {
      void homes.load().catch((e: unknown) => env.log.error({ err: e }, 'the home registry could not be read: homes are looked up on demand'));
      replicator.run();
      topology.run();
      backup?.start();
    },
    stop: async () => {
      // a site that owns units hands them over first (RPO 0, no lease wait), within a bound: a whole
      // cluster stopping at once finds every target stopping too and skips it (topology-service.ts)
      await topology.handOverBeforeStop(Math.min(node.config.topology.switchoverWaitMs, limits.shutdownDrainMsMax));
      await backup?.stop();
      await topology.stop();
      await replicator.stop();
      voterStorage.close();
    },
  };
};

// What a site process adds around the bare node: replication (pullers, feed, acks, anti-entropy).
// Peer URLs come from the config; TANDEM_PEER_URLS (JSON: { siteId: url }) overrides them, so tests
// and drills can route a site's peer traffic through link fault proxies.
import { Replicator } from '../replication/replicator.js';
import { siteBackup } from './backup-wiring.js';
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
  const replicator = new Replicator({
    env,
    node,
    config: node.config,
    ...(peerUrls ? { peerUrls } : {}),
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
  return {
    hooks: {
      peers: () => replicator.peerStatus(),
      ready: () => replicator.ready(),
      coveringPeer: (token) => replicator.coveringPeer(token),
      awaitDurability: (dot, level) => (level === 'local' ? Promise.resolve(true) : replicator.awaitDurability(dot, level)),
      peerHandler: replicator.handler,
      ...(backup ? { backup: { now: () => backup.backup.backupNow(), status: () => backup.backup.status() } } : {}),
    },
    start: () => {
      replicator.run();
      backup?.start();
    },
    stop: async () => {
      await backup?.stop();
      await replicator.stop();
    },
  };
};

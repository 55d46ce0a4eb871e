// The built-in demo cluster of `tandem up` (CONTRACT.md): N sites on one machine, every pattern
// and conflict policy represented in its tables.
import { parseConfig } from './load.js';
import type { ClusterConfig } from './schema.js';

const demoSites = [
  { id: 'us-east', region: 'us-east-1', location: { lat: 38.9, lon: -77.4 } },
  { id: 'eu-west', region: 'eu-west-1', location: { lat: 53.3, lon: -6.3 } },
  { id: 'ap-south', region: 'ap-south-1', location: { lat: 19.1, lon: 72.9 } },
];

export function demoConfig(options: { sites: number; basePort: number; secret?: string }): ClusterConfig {
  const { sites: n, basePort } = options;
  const sites = Array.from({ length: n }, (_, i) => {
    const known = demoSites[i];
    const id = known?.id ?? `site-${i + 1}`;
    return {
      id,
      url: `http://127.0.0.1:${basePort + i + 1}`,
      ...(known ? { region: known.region, location: known.location } : {}),
    };
  });
  const first = sites[0]!.id;
  return parseConfig(
    {
      cluster: 'demo',
      secret: options.secret ?? 'demo-secret-change-me-in-production',
      sites,
      tables: {
        profiles: { pattern: 'local', conflict: 'lww' },
        carts: { pattern: 'local', conflict: 'merge' },
        counters: { pattern: 'local', conflict: 'crdt', fields: { n: 'counter', tags: 'set' } },
        orders: { pattern: 'partitioned', home: { from: 'key-prefix', separator: ':' } },
        ledger: { pattern: 'global', writeSite: first, durability: 'quorum' },
        // "p7:s-1" lives where partition p7 was first written
        sessions: { pattern: 'partitioned', home: { from: 'first-writer', separator: ':' } },
      },
      router: {
        listen: `127.0.0.1:${basePort}`,
        policy: 'latency',
        dns: { listen: `127.0.0.1:${basePort + 53}`, zone: 'tandem.local', name: 'app', ttl: 5 },
      },
    },
    'demo config',
  );
}
